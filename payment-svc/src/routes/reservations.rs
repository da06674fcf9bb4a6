//! Seat holds: taking one (or getting mine back), listing mine, showing and releasing one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::SeatNo;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query};
use crate::openapi;
use crate::routes::page;
use crate::state::AppState;

/// Seat holds: taking, listing, showing and releasing them.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/reservations", get(list).post(hold))
        .route("/reservations/{reservation_id}", get(show).delete(release))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    #[serde(deserialize_with = "crate::extract::whole_number")]
    schedule_id: i64,
    /// 1 to the schedule's seat count.
    #[serde(deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    seat_no: i64,
}

/// A reservation's status. A hold past `held_until`, or released, is EXPIRED.
#[derive(Serialize, sqlx::Type, ToSchema)]
#[sqlx(type_name = "text", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Expired,
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
pub struct Reservation {
    reservation_id: Uuid,
    schedule_id: i64,
    seat_no: i32,
    /// The seat's price at hold time: what paying charges.
    price: i64,
    status: ReservationStatus,
    /// Until when the hold may be paid (database clock).
    held_until: DateTime<Utc>,
}

/// A reservation as clients see it. Expiry is lazy (see the hold below), so a HELD row past
/// `held_until` is shown as the EXPIRED it already is.
const RESERVATION_COLUMNS: &str = "id AS reservation_id, schedule_id, seat_no, price,
     CASE WHEN status = 'HELD' AND held_until <= clock_timestamp() THEN 'EXPIRED' ELSE status END
       AS status,
     held_until";

/// What `booking_hold` (migrations/20261125190000_hold_and_pay_functions.sql) did: its
/// outcome, and the reservation for MINE and CREATED.
struct HoldOutcome {
    outcome: String,
    reservation_id: Option<Uuid>,
    schedule_id: Option<i64>,
    seat_no: Option<i32>,
    price: Option<i64>,
    held_until: Option<DateTime<Utc>>,
}

impl HoldOutcome {
    /// The reservation `booking_hold` returned, which is HELD by construction.
    fn reservation(self) -> Result<Reservation, ApiError> {
        match (
            self.reservation_id,
            self.schedule_id,
            self.seat_no,
            self.price,
            self.held_until,
        ) {
            (
                Some(reservation_id),
                Some(schedule_id),
                Some(seat_no),
                Some(price),
                Some(held_until),
            ) => Ok(Reservation {
                reservation_id,
                schedule_id,
                seat_no,
                price,
                status: ReservationStatus::Held,
                held_until,
            }),
            _ => Err(
                anyhow::anyhow!("booking_hold said {} without a reservation", self.outcome).into(),
            ),
        }
    }
}

/// Holds a seat for `HOLD_TTL_SECONDS`: 201 with a new hold; 200 with my existing hold of this
/// seat (a retry that lost the response gets its hold back instead of "held by someone else").
#[utoipa::path(
    post,
    path = "/reservations",
    tag = "reservations",
    security(("bearer" = [])),
    request_body = Hold,
    responses(
        (status = 200, description = "I already hold this seat: my hold", body = Reservation),
        (status = 201, description = "Held", body = Reservation),
        openapi::Malformed,
        openapi::Unauthenticated,
        openapi::NotFound,
        (status = 409, description = "`SALE_NOT_OPEN` (before `sale_starts_at` or after `starts_at`), `SEAT_UNAVAILABLE` (held by someone else or sold) or `TOO_MANY_HOLDS` (`MAX_HOLDS_PER_USER` live holds already)", body = openapi::Problem, content_type = "application/problem+json"),
        openapi::BodyErrors,
        openapi::Always,
    )
)]
pub async fn hold(
    caller: Caller,
    State(state): State<AppState>,
    JsonBody { value: body, .. }: JsonBody<Hold>,
) -> Result<(StatusCode, Json<Reservation>), ApiError> {
    let seat = SeatNo::parse(body.seat_no).map_err(ApiError::Validation)?;
    // One statement, committed on its own: the sale window, the user's lock, my existing hold,
    // the cap on live holds, the lazy expiry of a stale hold of the seat and the insert all run
    // inside `booking_hold`, which says why each comes where it does. It writes only in its
    // last two statements, so a refusal writes nothing, and a lost race for the seat fails the
    // insert with reservations_one_live_per_seat (409 SEAT_UNAVAILABLE), undoing the expiry.
    let hold = sqlx::query_as!(
        HoldOutcome,
        r#"SELECT outcome AS "outcome!", reservation_id, schedule_id, seat_no, price, held_until
           FROM booking_hold($1, $2, $3, $4, $5, $6)"#,
        caller.user.get(),
        body.schedule_id,
        seat.get(),
        Uuid::now_v7(),
        state.hold_ttl_seconds,
        i64::from(state.max_holds_per_user),
    )
    .fetch_one(&state.pool)
    .await?;
    match hold.outcome.as_str() {
        "CREATED" => Ok((StatusCode::CREATED, Json(hold.reservation()?))),
        "MINE" => Ok((StatusCode::OK, Json(hold.reservation()?))),
        "NO_SCHEDULE" => Err(ApiError::NotFound("schedule")),
        "NO_SEAT" => Err(ApiError::NotFound("seat")),
        "SALE_NOT_OPEN" => Err(ApiError::SaleNotOpen),
        "TOO_MANY_HOLDS" => Err(ApiError::TooManyHolds(state.max_holds_per_user)),
        other => Err(anyhow::anyhow!("booking_hold said {other}").into()),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// Cursor: list reservations older than this one (the previous page's `next_after`).
    after: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct ReservationPage {
    /// Newest first.
    reservations: Vec<Reservation>,
    /// Pass as `after` for the next page; null when this page is not full.
    #[schema(required = true)]
    next_after: Option<Uuid>,
}

/// My reservations, newest first. Ids are UUIDv7, ordered by creation time, so the id is both
/// the order and the cursor.
#[utoipa::path(
    get,
    path = "/reservations",
    tag = "reservations",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of my reservations", body = ReservationPage),
        openapi::Malformed,
        openapi::Unauthenticated,
        openapi::Always,
    )
)]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<ReservationPage>, ApiError> {
    let limit = page::LIST.limit(params.limit)?;
    let reservations: Vec<Reservation> = sqlx::query_as(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations
         WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(caller.user.get())
    .bind(params.after)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let next_after = page::next_after(&reservations, limit, |r| r.reservation_id);
    Ok(Json(ReservationPage {
        reservations,
        next_after,
    }))
}

/// One of my reservations.
#[utoipa::path(
    get,
    path = "/reservations/{reservation_id}",
    tag = "reservations",
    security(("bearer" = [])),
    params(("reservation_id" = Uuid, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "The reservation", body = Reservation),
        openapi::Malformed,
        openapi::Unauthenticated,
        openapi::NotFound,
        openapi::Always,
    )
)]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    Path(reservation_id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    // Another user's reservation is reported as not found, so ids cannot be probed.
    let reservation: Option<Reservation> = sqlx::query_as(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1 AND user_id = $2"
    ))
    .bind(reservation_id)
    .bind(caller.user.get())
    .fetch_optional(&state.pool)
    .await?;
    reservation
        .map(Json)
        .ok_or(ApiError::NotFound("reservation"))
}

/// Releases my hold: 204, and the seat is free at once. Releasing a hold that already expired
/// or was released is a no-op (204 again); a paid one cannot be released.
#[utoipa::path(
    delete,
    path = "/reservations/{reservation_id}",
    tag = "reservations",
    security(("bearer" = [])),
    params(("reservation_id" = Uuid, Path, description = "The reservation's id")),
    responses(
        (status = 204, description = "Released (or already expired or released)"),
        openapi::Malformed,
        openapi::Unauthenticated,
        openapi::NotFound,
        (status = 409, description = "`RESERVATION_NOT_HELD`: it was paid", body = openapi::Problem, content_type = "application/problem+json"),
        openapi::Always,
    )
)]
pub async fn release(
    caller: Caller,
    State(state): State<AppState>,
    Path(reservation_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    // A released hold is an expired one, expired now: it leaves the live-reservation index (the
    // seat is free) and can never be paid. The row lock serialises this with a payment of the
    // same hold; whichever is second sees the other's outcome.
    let released = sqlx::query!(
        "UPDATE reservations
         SET status = 'EXPIRED', held_until = least(held_until, clock_timestamp())
         WHERE id = $1 AND user_id = $2 AND status = 'HELD'",
        reservation_id,
        caller.user.get(),
    )
    .execute(&state.pool)
    .await?
    .rows_affected();
    if released == 1 {
        return Ok(StatusCode::NO_CONTENT);
    }
    // CONFIRMED and EXPIRED are final, so what this reads cannot change under it.
    let status = sqlx::query_scalar!(
        "SELECT status FROM reservations WHERE id = $1 AND user_id = $2",
        reservation_id,
        caller.user.get(),
    )
    .fetch_optional(&state.pool)
    .await?;
    match status.as_deref() {
        None => Err(ApiError::NotFound("reservation")),
        Some("CONFIRMED") => Err(ApiError::ReservationNotHeld),
        Some(_) => Ok(StatusCode::NO_CONTENT),
    }
}
