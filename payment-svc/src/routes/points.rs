//! Points balances and charges.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::ChargeAmount;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::idempotency::{self, Begin, Endpoint, IdempotencyKey, StoredResponse};
use crate::startup::AppState;

pub async fn balance(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let balance: Option<(i64,)> =
        sqlx::query_as("SELECT balance FROM point_balances WHERE user_id = $1")
            .bind(caller.user.get())
            .fetch_optional(&state.pool)
            .await?;
    let balance = balance.map_or(0, |(b,)| b);
    Ok(Json(
        json!({ "user_id": caller.user.get(), "balance": balance }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    amount: i64,
}

pub async fn charge(
    caller: Caller,
    State(state): State<AppState>,
    key: IdempotencyKey,
    body: JsonBody<Charge>,
) -> Result<Response, ApiError> {
    let amount = ChargeAmount::parse(body.value.amount).map_err(ApiError::Validation)?;
    let request = || idempotency::Request {
        user: caller.user,
        endpoint: Endpoint::ChargePoints,
        key: &key,
        hash: &body.hash,
    };
    let mut tx = match idempotency::begin(&state.pool, request()).await? {
        Begin::Replay(saved) => return Ok(saved.into_response()),
        Begin::Fresh(tx) => tx,
    };

    // The ledger row and the balance move together, so charges can always be audited.
    sqlx::query("INSERT INTO point_charges (id, user_id, amount) VALUES ($1, $2, $3)")
        .bind(Uuid::now_v7())
        .bind(caller.user.get())
        .bind(amount.get())
        .execute(&mut *tx)
        .await?;
    let (balance,): (i64,) = sqlx::query_as(
        "INSERT INTO point_balances (user_id, balance) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE
             SET balance = point_balances.balance + EXCLUDED.balance, updated_at = now()
         RETURNING balance",
    )
    .bind(caller.user.get())
    .bind(amount.get())
    .fetch_one(&mut *tx)
    .await?;

    let response = StoredResponse::json(
        StatusCode::OK,
        &json!({ "user_id": caller.user.get(), "balance": balance }),
    )?;
    idempotency::save(tx, request(), &response).await?;
    Ok(response.into_response())
}
