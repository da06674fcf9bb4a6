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

/// What `booking_pay_with_key` (migrations/20261125193000_idempotency_claim_in_sql.sql) did:
/// the claim of the Idempotency-Key (`idempotency_claim`), and if claimed the outcome of
/// `booking_confirm_payment` (migrations/20261125191000_seat_counters.sql) and the response
/// `booking_pay` (migrations/20261125192000_payment_response_in_sql.sql) stored.
#[derive(sqlx::FromRow)]
struct Confirmation {
    claim: String,
    response_status: Option<i16>,
    response_bytes: Option<Vec<u8>>,
    outcome: Option<String>,
    amount: Option<i64>,
    balance: Option<i64>,
    schedule_id: Option<i64>,
    concert_id: Option<i64>,
    concert_title: Option<String>,
    seat_count: Option<i32>,
    sale_starts_at: Option<DateTime<Utc>>,
    sold_out_at: Option<DateTime<Utc>>,
}

/// A payment request's result: a new payment, or the first response to the same request.
pub enum PayOutcome {
    /// Paid on the caller's transaction, with the response stored under the request's key;
    /// the caller commits, then sends the response.
    Made(Receipt, StoredResponse),
    /// The key was used before with the same body: answer with this; the caller rolls back.
    Replay(StoredResponse),
}

/// Claims `request`'s Idempotency-Key and confirms the payment on `tx`, storing the response
/// under the key; or finds the first response to the same request.
pub async fn confirm_payment(
    tx: &mut PgConnection,
    request: &idempotency::Request<'_>,
    reservation_id: Uuid,
) -> Result<PayOutcome, ApiError> {
    // The claim, steps 1 to 4 and the stored response in one statement: idempotency_claim
    // claims the key (waiting for a request in flight with it) or reads the first response;
    // booking_confirm_payment locks the hold and judges it by the clock after the lock,
    // deducts, inserts the payment and counts the seat, each step commented where it is;
    // booking_pay stores the response. Any outcome but PAID leaves a partial payment on `tx`,
    // which the caller drops (rolls back) with the error.
    let user = request.user;
    let payment_id = Uuid::now_v7();
    let done: Confirmation =
        sqlx::query_as("SELECT * FROM booking_pay_with_key($1, $2, $3, $4, $5, $6)")
            .bind(user.get())
            .bind(reservation_id)
            .bind(payment_id)
            .bind(request.endpoint.as_str())
            .bind(request.key.as_str())
            .bind(request.hash.as_bytes())
            .fetch_one(&mut *tx)
            .await?;
    match idempotency::claimed(
        &done.claim,
        done.response_status,
        done.response_bytes.clone(),
    )? {
        idempotency::Claim::Replay(saved) => return Ok(PayOutcome::Replay(saved)),
        idempotency::Claim::Claimed => {}
    }
    let outcome = done.outcome.clone().unwrap_or_default();
    let unexpected =
        || anyhow::anyhow!("booking_confirm_payment said {outcome:?} without its columns");
    match outcome.as_str() {
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
    Ok(PayOutcome::Made(receipt, response))
}
