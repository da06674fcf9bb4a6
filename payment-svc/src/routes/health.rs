//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::state::AppState;

/// Liveness, readiness and the Prometheus metrics.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Readiness must answer promptly even when Postgres hangs.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `unreachable` when Postgres does not answer; absent when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<&'static str>,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: 200 when Postgres answers, else 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Postgres does not answer", body = Readiness),
    )
)]
pub async fn readyz(State(pool): State<PgPool>) -> (StatusCode, Json<Readiness>) {
    let ready = tokio::time::timeout(READY_CHECK_TIMEOUT, shared::db::ping(&pool))
        .await
        .unwrap_or(false);
    if ready {
        (
            StatusCode::OK,
            Json(Readiness {
                status: "ready",
                postgres: None,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "unavailable",
                postgres: Some("unreachable"),
            }),
        )
    }
}

/// Prometheus metrics, in its text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(metrics): State<PrometheusHandle>) -> impl IntoResponse {
    shared::metrics::exposition(&metrics)
}
