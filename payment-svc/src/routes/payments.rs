//! Paying for a hold, and looking a payment up.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::confirm_payment::confirm_payment;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::idempotency::{self, Begin, Endpoint, IdempotencyKey, StoredResponse};
use crate::observability;
use crate::startup::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    reservation_id: Uuid,
}

pub async fn pay(
    caller: Caller,
    State(state): State<AppState>,
    key: IdempotencyKey,
    body: JsonBody<Pay>,
) -> Result<Response, ApiError> {
    let request = || idempotency::Request {
        user: caller.user,
        endpoint: Endpoint::Pay,
        key: &key,
        hash: &body.hash,
    };
    let mut tx = match idempotency::begin(&state.pool, request()).await? {
        Begin::Replay(saved) => return Ok(saved.into_response()),
        Begin::Fresh(tx) => tx,
    };
    // On error the transaction is dropped, which rolls back the payment and frees the key.
    let receipt = confirm_payment(&mut tx, caller.user, body.value.reservation_id).await?;
    let response = StoredResponse::json(StatusCode::CREATED, &receipt)?;
    idempotency::save(tx, request(), &response).await?;

    observability::payment_confirmed();
    if receipt.schedule_sold_out {
        observability::schedule_sold_out();
        tracing::info!(reservation_id = %receipt.reservation_id, "payment sold out its schedule");
    }
    Ok(response.into_response())
}

#[derive(Serialize, sqlx::FromRow)]
pub struct Payment {
    payment_id: Uuid,
    reservation_id: Uuid,
    schedule_id: i64,
    seat_no: i32,
    amount: i64,
    created_at: DateTime<Utc>,
}

/// My payment, for a client that lost the response to `POST /payments`.
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    Path(payment_id): Path<Uuid>,
) -> Result<Json<Payment>, ApiError> {
    // Another user's payment is reported as not found, so ids cannot be probed.
    let payment: Option<Payment> = sqlx::query_as(
        "SELECT p.id AS payment_id, p.reservation_id, r.schedule_id, r.seat_no, p.amount,
                p.created_at
         FROM payments p JOIN reservations r ON r.id = p.reservation_id
         WHERE p.id = $1 AND p.user_id = $2",
    )
    .bind(payment_id)
    .bind(caller.user.get())
    .fetch_optional(&state.pool)
    .await?;
    payment.map(Json).ok_or(ApiError::NotFound("payment"))
}
