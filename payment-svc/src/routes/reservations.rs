//! Seat holds: taking one (or getting mine back), listing mine, showing and releasing one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
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
use crate::startup::AppState;

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

#[derive(sqlx::FromRow)]
struct SaleWindow {
    seat_count: i32,
    /// Judged by the database clock, the one every hold and payment is timed by.
    open: bool,
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
    let window: Option<SaleWindow> = sqlx::query_as(
        "SELECT seat_count, sale_starts_at <= now() AND now() < starts_at AS open
         FROM schedules WHERE id = $1",
    )
    .bind(body.schedule_id)
    .fetch_optional(&state.pool)
    .await?;
    let window = window.ok_or(ApiError::NotFound("schedule"))?;
    if seat.get() > window.seat_count {
        return Err(ApiError::NotFound("seat"));
    }
    if !window.open {
        return Err(ApiError::SaleNotOpen);
    }

    let mut tx = crate::db::begin(&state.pool).await?;
    // One hold at a time per user: the cap below counts, then inserts, and two concurrent holds
    // of one user would both count below it. A lock on the user, held until commit, makes the
    // second wait and count the first. Users have no row to lock, so it is an advisory lock on
    // a hash of the user id, prefixed so it shares no key with other advisory locks (such as
    // ranking-worker's consumer locks); a collision only makes two users' holds take turns.
    // Every statement after it reads the clock afresh (clock_timestamp()), as the wait may
    // have been long.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('holds of user ' || $1, 0))")
        .bind(caller.user.get())
        .execute(&mut *tx)
        .await?;
    // Lazy expiry: a stale hold keeps its slot in reservations_one_live_per_seat until someone
    // wants the seat. Flipping it here frees the slot for the insert below. The row lock this
    // takes serialises with a concurrent payment of that hold: whichever is second sees the
    // other's outcome.
    sqlx::query(
        "UPDATE reservations SET status = 'EXPIRED'
         WHERE schedule_id = $1 AND seat_no = $2 AND status = 'HELD'
           AND held_until <= clock_timestamp()",
    )
    .bind(body.schedule_id)
    .bind(seat.get())
    .execute(&mut *tx)
    .await?;
    let mine: Option<Reservation> = sqlx::query_as(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations
         WHERE schedule_id = $1 AND seat_no = $2 AND user_id = $3 AND status = 'HELD'"
    ))
    .bind(body.schedule_id)
    .bind(seat.get())
    .bind(caller.user.get())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(mine) = mine {
        tx.commit().await?;
        return Ok((StatusCode::OK, Json(mine)));
    }
    let (live,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM reservations
         WHERE user_id = $1 AND status = 'HELD' AND held_until > clock_timestamp()",
    )
    .bind(caller.user.get())
    .fetch_one(&mut *tx)
    .await?;
    if live >= i64::from(state.max_holds_per_user) {
        return Err(ApiError::TooManyHolds(state.max_holds_per_user));
    }
    // The unique index on live reservations decides races for the seat: the loser's insert
    // fails with reservations_one_live_per_seat, which maps to 409 SEAT_UNAVAILABLE.
    let reservation: Reservation = sqlx::query_as(
        "INSERT INTO reservations (id, user_id, schedule_id, seat_no, price, status, held_until)
         SELECT $1, $2, s.id, $3, s.price, 'HELD', clock_timestamp() + make_interval(secs => $4)
         FROM schedules s WHERE s.id = $5
         RETURNING id AS reservation_id, schedule_id, seat_no, price, status, held_until",
    )
    .bind(Uuid::now_v7())
    .bind(caller.user.get())
    .bind(seat.get())
    .bind(state.hold_ttl_seconds)
    .bind(body.schedule_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(reservation)))
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
    let released = sqlx::query(
        "UPDATE reservations
         SET status = 'EXPIRED', held_until = least(held_until, clock_timestamp())
         WHERE id = $1 AND user_id = $2 AND status = 'HELD'",
    )
    .bind(reservation_id)
    .bind(caller.user.get())
    .execute(&state.pool)
    .await?
    .rows_affected();
    if released == 1 {
        return Ok(StatusCode::NO_CONTENT);
    }
    // CONFIRMED and EXPIRED are final, so what this reads cannot change under it.
    let status: Option<(String,)> =
        sqlx::query_as("SELECT status FROM reservations WHERE id = $1 AND user_id = $2")
            .bind(reservation_id)
            .bind(caller.user.get())
            .fetch_optional(&state.pool)
            .await?;
    match status.as_ref().map(|(status,)| status.as_str()) {
        None => Err(ApiError::NotFound("reservation")),
        Some("CONFIRMED") => Err(ApiError::ReservationNotHeld),
        Some(_) => Ok(StatusCode::NO_CONTENT),
    }
}
