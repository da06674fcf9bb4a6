//! Confirming a payment: the one transaction that turns a hold into a sale (SPEC §1–2).
//!
//! In order: claim the request's Idempotency-Key, confirm the hold, deduct the balance, record
//! the payment, count the seat on its schedule, and, if that was the last seat, stamp
//! `sold_out_at` and write `ConcertSoldOut` to the outbox; then store the response under the
//! key. All of it is one statement, the SQL function `booking_pay_request`
//! (migrations/20261126110000_pay_in_one_statement.sql), sent on its own and so committed by
//! Postgres as its own transaction: if anything fails, none of it happened. One round trip per
//! payment, where BEGIN and COMMIT took two more.

use axum::http::StatusCode;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;
use crate::idempotency::{self, StoredResponse};

/// What the client is told about its payment. `booking_pay` writes these bytes in SQL (the
/// stored response is the one sent, and replayed); this type is their schema, and the tests
/// check the SQL writes exactly what serde would.
///
/// The comment in migrations/20261125192000_payment_response_in_sql.sql says payment-svc
/// compares the bytes with its own serialisation before it commits: no longer so. The
/// payment commits with its statement, before payment-svc sees the bytes, so there is nothing
/// left to refuse; that test (tests/api/idempotency.rs) is what keeps the two equal.
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

/// What `booking_pay_request` did: the claim of the Idempotency-Key (`idempotency_claim`), and
/// if claimed the outcome of `booking_confirm_payment` (as last defined, in
/// migrations/20261126140000_invariant_failures_are_internal_errors.sql) and the response
/// stored.
struct Confirmation {
    claim: String,
    outcome: Option<String>,
    amount: Option<i64>,
    balance: Option<i64>,
    sold_out: Option<bool>,
    response_status: Option<i16>,
    response_bytes: Option<Vec<u8>>,
}

/// A payment request's result: a new payment, or the first response to the same request.
pub enum PayOutcome {
    /// Paid and committed, with this response stored under the request's key.
    Made {
        response: StoredResponse,
        /// Whether this payment sold the schedule's last seat (and wrote its event).
        sold_out: bool,
    },
    /// The key was used before with the same body: answer with this.
    Replay(StoredResponse),
}

/// Claims `request`'s Idempotency-Key, pays for `reservation_id` and stores the response under
/// the key, committed; or finds the first response to the same request. A refusal is an error
/// and has changed nothing.
pub async fn confirm_payment(
    pool: &PgPool,
    request: &idempotency::Request<'_>,
    reservation_id: Uuid,
) -> Result<PayOutcome, ApiError> {
    // idempotency_claim claims the key (waiting for a request in flight with it) or reads the
    // first response; booking_confirm_payment locks the hold and judges it by the clock after
    // the lock, deducts, inserts the payment and counts the seat, each step commented where it
    // is; the payment of the last seat writes the event; booking_pay stores the response. The
    // event id is chosen here, as every id is, and used only if this payment sells out.
    let done = sqlx::query_as!(
        Confirmation,
        r#"SELECT claim AS "claim!", outcome, amount, balance, sold_out, response_status,
                  response_bytes
           FROM booking_pay_request($1, $2, $3, $4, $5, $6, $7)"#,
        request.user.get(),
        reservation_id,
        Uuid::now_v7(),
        Uuid::now_v7(),
        request.endpoint.as_str(),
        request.key.as_str(),
        request.hash.as_bytes(),
    )
    .fetch_one(pool)
    .await?;
    match idempotency::claimed(
        &done.claim,
        done.response_status,
        done.response_bytes.clone(),
    )? {
        idempotency::Claim::Replay(saved) => return Ok(PayOutcome::Replay(saved)),
        idempotency::Claim::Claimed => {}
    }
    match done.outcome.as_deref().unwrap_or_default() {
        "PAID" => {}
        "NOT_FOUND" => return Err(ApiError::NotFound("reservation")),
        "NOT_HELD" => return Err(ApiError::ReservationNotHeld),
        "EXPIRED" => return Err(ApiError::ReservationExpired),
        "INSUFFICIENT_BALANCE" => {
            let (Some(balance), Some(price)) = (done.balance, done.amount) else {
                return Err(anyhow::anyhow!("INSUFFICIENT_BALANCE without the balance").into());
            };
            return Err(ApiError::InsufficientBalance { balance, price });
        }
        other => return Err(anyhow::anyhow!("booking_pay_request said {other:?}").into()),
    }
    let (Some(sold_out), Some(bytes)) = (done.sold_out, done.response_bytes) else {
        return Err(anyhow::anyhow!("booking_pay_request paid without its response").into());
    };
    Ok(PayOutcome::Made {
        response: StoredResponse::first(StatusCode::CREATED, bytes),
        sold_out,
    })
}
