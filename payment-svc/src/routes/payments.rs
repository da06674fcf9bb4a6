//! Paying for a hold, and looking a payment up.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::confirm_payment::{confirm_payment, PayOutcome, Receipt};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::idempotency::{self, Endpoint, IdempotencyKey};
use crate::observability;
use crate::openapi;
use crate::state::AppState;

/// Paying for a hold, and reading a payment back.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/payments", post(pay))
        .route("/payments/{payment_id}", get(show))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    /// A hold of mine, unexpired.
    reservation_id: Uuid,
}

/// Pays for my hold from my points. The payment that sells the schedule's last seat says so.
#[utoipa::path(
    post,
    path = "/payments",
    tag = "payments",
    security(("bearer" = [])),
    params(openapi::IdempotencyKeyHeader),
    request_body = Pay,
    responses(
        (status = 201, description = "Paid; or, for a retry with the same key and body, the first response again", body = Receipt,
         headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        openapi::Malformed,
        openapi::Unauthenticated,
        (status = 402, description = "`INSUFFICIENT_BALANCE`: my balance is below the price", body = openapi::Problem, content_type = "application/problem+json"),
        openapi::NotFound,
        (status = 409, description = "`RESERVATION_EXPIRED` (past `held_until`, or released), `RESERVATION_NOT_HELD` (already paid under another key) or `IDEMPOTENCY_KEY_IN_USE` (the first request with this key is still in flight)", body = openapi::Problem, content_type = "application/problem+json"),
        openapi::BodyErrors,
        openapi::Always,
    )
)]
pub async fn pay(
    caller: Caller,
    State(state): State<AppState>,
    key: IdempotencyKey,
    body: JsonBody<Pay>,
) -> Result<Response, ApiError> {
    let request = idempotency::Request {
        user: caller.user,
        endpoint: Endpoint::Pay,
        key: &key,
        hash: &body.hash,
    };
    // One statement, committed on its own: the key is claimed, the payment made and the
    // response stored together, or nothing is.
    let (response, sold_out) =
        match confirm_payment(&state.pool, &request, body.value.reservation_id).await? {
            PayOutcome::Made { response, sold_out } => (response, sold_out),
            PayOutcome::Replay(saved) => return Ok(saved.into_response()),
        };

    observability::payment_confirmed();
    if sold_out {
        observability::schedule_sold_out();
        tracing::info!(reservation_id = %body.value.reservation_id, "payment sold out its schedule");
    }
    Ok(response.into_response())
}

#[derive(Serialize, ToSchema)]
pub struct Payment {
    payment_id: Uuid,
    reservation_id: Uuid,
    schedule_id: i64,
    seat_no: i32,
    amount: i64,
    created_at: DateTime<Utc>,
}

/// My payment, for a client that lost the response to `POST /payments`.
#[utoipa::path(
    get,
    path = "/payments/{payment_id}",
    tag = "payments",
    security(("bearer" = [])),
    params(("payment_id" = Uuid, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment", body = Payment),
        openapi::Malformed,
        openapi::Unauthenticated,
        openapi::NotFound,
        openapi::Always,
    )
)]
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    Path(payment_id): Path<Uuid>,
) -> Result<Json<Payment>, ApiError> {
    // Another user's payment is reported as not found, so ids cannot be probed.
    let payment = sqlx::query_as!(
        Payment,
        "SELECT p.id AS payment_id, p.reservation_id, r.schedule_id, r.seat_no, p.amount,
                p.created_at
         FROM payments p JOIN reservations r ON r.id = p.reservation_id
         WHERE p.id = $1 AND p.user_id = $2",
        payment_id,
        caller.user.get(),
    )
    .fetch_optional(&state.pool)
    .await?;
    payment.map(Json).ok_or(ApiError::NotFound("payment"))
}
