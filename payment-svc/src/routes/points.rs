//! Points balances and charges.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::ChargeAmount;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::idempotency::{self, Begin, Endpoint, IdempotencyKey, StoredResponse};
use crate::openapi;
use crate::state::AppState;

/// A user's points balance and charging it.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/points", get(balance))
        .route("/points/charge", post(charge))
}

#[derive(Serialize, ToSchema)]
pub struct Balance {
    user_id: i64,
    /// Points; never negative.
    balance: i64,
}

/// My points balance (0 before the first charge).
#[utoipa::path(
    get,
    path = "/points",
    tag = "points",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "My balance", body = Balance),
        openapi::Unauthenticated,
        openapi::Always,
    )
)]
pub async fn balance(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Balance>, ApiError> {
    let balance = sqlx::query_scalar!(
        "SELECT balance FROM point_balances WHERE user_id = $1",
        caller.user.get()
    )
    .fetch_optional(&state.pool)
    .await?
    .unwrap_or(0);
    Ok(Json(Balance {
        user_id: caller.user.get(),
        balance,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    #[serde(deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 1, maximum = 2_000_000)]
    amount: i64,
}

/// Adds points to my balance.
#[utoipa::path(
    post,
    path = "/points/charge",
    tag = "points",
    security(("bearer" = [])),
    params(openapi::IdempotencyKeyHeader),
    request_body = Charge,
    responses(
        (status = 200, description = "Charged; or, for a retry with the same key and body, the first response again", body = Balance,
         headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        openapi::Malformed,
        openapi::Unauthenticated,
        (status = 409, description = "`IDEMPOTENCY_KEY_IN_USE`: the first request with this key is still in flight", body = openapi::Problem, content_type = "application/problem+json"),
        openapi::BodyErrors,
        openapi::Always,
    )
)]
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
    sqlx::query!(
        "INSERT INTO point_charges (id, user_id, amount) VALUES ($1, $2, $3)",
        Uuid::now_v7(),
        caller.user.get(),
        amount.get()
    )
    .execute(&mut *tx)
    .await?;
    let balance = sqlx::query_scalar!(
        "INSERT INTO point_balances (user_id, balance) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE
             SET balance = point_balances.balance + EXCLUDED.balance, updated_at = now()
         RETURNING balance",
        caller.user.get(),
        amount.get()
    )
    .fetch_one(&mut *tx)
    .await?;

    let response = StoredResponse::json(
        StatusCode::OK,
        &Balance {
            user_id: caller.user.get(),
            balance,
        },
    )?;
    idempotency::save(tx, request(), &response).await?;
    Ok(response.into_response())
}
