//! Seat holds.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::SeatNo;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::startup::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    schedule_id: i64,
    seat_no: i64,
}

#[derive(Serialize, sqlx::FromRow)]
pub struct Reservation {
    reservation_id: Uuid,
    schedule_id: i64,
    seat_no: i32,
    price: i64,
    status: String,
    held_until: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SaleWindow {
    seat_count: i32,
    /// Judged by the database clock, the one every hold and payment is timed by.
    open: bool,
}

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
    // Lazy expiry: a stale hold keeps its slot in reservations_one_live_per_seat until someone
    // wants the seat. Flipping it here frees the slot for the insert below. The row lock this
    // takes serialises with a concurrent payment of that hold: whichever is second sees the
    // other's outcome.
    sqlx::query(
        "UPDATE reservations SET status = 'EXPIRED'
         WHERE schedule_id = $1 AND seat_no = $2 AND status = 'HELD' AND held_until <= now()",
    )
    .bind(body.schedule_id)
    .bind(seat.get())
    .execute(&mut *tx)
    .await?;
    // The unique index on live reservations decides races for the seat: the loser's insert
    // fails with reservations_one_live_per_seat, which maps to 409 SEAT_UNAVAILABLE.
    let reservation: Reservation = sqlx::query_as(
        "INSERT INTO reservations (id, user_id, schedule_id, seat_no, price, status, held_until)
         SELECT $1, $2, s.id, $3, s.price, 'HELD', now() + make_interval(secs => $4)
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

pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    Path(reservation_id): Path<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    // Another user's reservation is reported as not found, so ids cannot be probed.
    let reservation: Option<Reservation> = sqlx::query_as(
        "SELECT id AS reservation_id, schedule_id, seat_no, price,
                CASE WHEN status = 'HELD' AND held_until <= now() THEN 'EXPIRED' ELSE status END AS status,
                held_until
         FROM reservations WHERE id = $1 AND user_id = $2",
    )
    .bind(reservation_id)
    .bind(caller.user.get())
    .fetch_optional(&state.pool)
    .await?;
    reservation
        .map(Json)
        .ok_or(ApiError::NotFound("reservation"))
}
