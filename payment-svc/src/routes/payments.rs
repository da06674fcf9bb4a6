//! Paying for a hold.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::confirm_payment::confirm_payment;
use crate::error::ApiError;
use crate::extract::JsonBody;
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
