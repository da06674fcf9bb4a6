//! Confirming a payment: the one transaction that turns a hold into a sale (SPEC §1–2).
//!
//! In order: confirm the hold, deduct the balance, record the payment, count the seat on its
//! schedule, and, if that was the last seat, stamp `sold_out_at` and write `ConcertSoldOut` to
//! the outbox. All on the caller's transaction: if anything fails, none of it happened. The
//! first four steps are one round trip, the SQL function `booking_confirm_payment`; the event,
//! once per schedule, is written by `shared::outbox` like every outbox row.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::events::ConcertSoldOut;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ApiError;
use crate::idempotency::{self, StoredResponse};

/// What the client is told about its payment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    pub payment_id: Uuid,
    pub reservation_id: Uuid,
    pub amount: i64,
    /// The payer's balance after this payment.
    pub balance: i64,
    /// Whether this payment sold the schedule's last seat.
    pub schedule_sold_out: bool,
}

/// What `booking_pay` (migrations/20261125192000_payment_response_in_sql.sql) did: the
/// outcome of `booking_confirm_payment` (migrations/20261125191000_seat_counters.sql), and for
/// a payment the response it stored under the request's Idempotency-Key.
#[derive(sqlx::FromRow)]
struct Confirmation {
    response_bytes: Option<Vec<u8>>,
    outcome: String,
    amount: Option<i64>,
    balance: Option<i64>,
    schedule_id: Option<i64>,
    concert_id: Option<i64>,
    concert_title: Option<String>,
    seat_count: Option<i32>,
    sale_starts_at: Option<DateTime<Utc>>,
    sold_out_at: Option<DateTime<Utc>>,
}

/// Confirms the payment on `tx`, which holds `request`'s Idempotency-Key (see
/// [`idempotency::begin`]), and stores the response under that key; the caller commits.
pub async fn confirm_payment(
    tx: &mut PgConnection,
    request: &idempotency::Request<'_>,
    reservation_id: Uuid,
) -> Result<(Receipt, StoredResponse), ApiError> {
    // Steps 1 to 4 and the stored response in one statement: booking_confirm_payment locks the
    // hold and judges it by the clock after the lock, deducts, inserts the payment and counts
    // the seat, each step commented where it is; booking_pay then stores the response. Any
    // outcome but PAID leaves a partial payment on `tx`, which the caller drops (rolls back)
    // with the error.
    let user = request.user;
    let payment_id = Uuid::now_v7();
    let done: Confirmation = sqlx::query_as("SELECT * FROM booking_pay($1, $2, $3, $4, $5)")
        .bind(user.get())
        .bind(reservation_id)
        .bind(payment_id)
        .bind(request.endpoint.as_str())
        .bind(request.key.as_str())
        .fetch_one(&mut *tx)
        .await?;
    let unexpected = || {
        anyhow::anyhow!(
            "booking_confirm_payment said {} without its columns",
            done.outcome
        )
    };
    match done.outcome.as_str() {
        "PAID" => {}
        "NOT_FOUND" => return Err(ApiError::NotFound("reservation")),
        "NOT_HELD" => return Err(ApiError::ReservationNotHeld),
        "EXPIRED" => return Err(ApiError::ReservationExpired),
        "INSUFFICIENT_BALANCE" => {
            let (Some(balance), Some(price)) = (done.balance, done.amount) else {
                return Err(unexpected().into());
            };
            return Err(ApiError::InsufficientBalance { balance, price });
        }
        other => return Err(anyhow::anyhow!("booking_confirm_payment said {other}").into()),
    }
    let (Some(amount), Some(balance), Some(schedule_id)) =
        (done.amount, done.balance, done.schedule_id)
    else {
        return Err(unexpected().into());
    };

    // 5. The last seat: the event goes out with this transaction or not at all.
    if let Some(sold_out_at) = done.sold_out_at {
        let (Some(concert_id), Some(concert_title), Some(seat_count), Some(sale_started_at)) = (
            done.concert_id,
            done.concert_title.clone(),
            done.seat_count,
            done.sale_starts_at,
        ) else {
            return Err(unexpected().into());
        };
        let event = ConcertSoldOut {
            event_id: Uuid::now_v7(),
            concert_id,
            schedule_id,
            concert_title,
            seat_count,
            sale_started_at,
            sold_out_at,
        };
        shared::outbox::enqueue(tx, &event).await?;
    }

    let receipt = Receipt {
        payment_id,
        reservation_id,
        amount,
        balance,
        schedule_sold_out: done.sold_out_at.is_some(),
    };
    let Some(stored) = done.response_bytes else {
        return Err(unexpected().into());
    };
    let response = StoredResponse::stored_json(StatusCode::CREATED, &receipt, stored)?;
    Ok((receipt, response))
}
