//! Liveness, readiness and metrics.

use axum::extract::State;
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

/// The shape of `shared::health::alive`, for the OpenAPI document.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`
    status: &'static str,
}

/// The shape of `shared::health::Readiness` naming failures only, for the OpenAPI document.
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
pub async fn healthz() -> Json<shared::health::Alive> {
    shared::health::alive()
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
pub async fn readyz(State(pool): State<PgPool>) -> shared::health::Readiness {
    shared::health::Readiness::naming_failures([shared::health::postgres(&pool).await])
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
