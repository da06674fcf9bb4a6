//! The worker's HTTP API (SPEC §6): the ranking, health, readiness and metrics.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::json;
use shared::problem::Problem;
use sqlx::PgPool;

use crate::consumers;
use crate::health::ConsumerHealth;
use crate::log;
use crate::ranking::Ranking;

#[derive(Clone)]
pub struct HttpState {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub ranking: Ranking,
    pub metrics: PrometheusHandle,
    /// The consumers this instance runs (active or standing by).
    pub consumers: Vec<ConsumerHealth>,
}

const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_LIMIT: i64 = 100;
/// Deeper pages are no use to a reader, and an offset near i64::MAX overflows Redis's range.
const MAX_OFFSET: i64 = 100_000;

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/rankings/sold-out", get(sold_out_ranking))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/consumers", get(consumers_health))
        .route("/metrics", get(metrics))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

fn malformed(detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", detail).into_response()
}

/// Straight from Redis on every request: no cache can show a stale ranking.
async fn sold_out_ranking(
    State(state): State<HttpState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let Query(page) = match page {
        Ok(page) => page,
        Err(rejection) => return malformed(rejection.body_text()),
    };
    let limit = page.limit.unwrap_or(10);
    let offset = page.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return malformed(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        ));
    }
    if !(0..=MAX_OFFSET).contains(&offset) {
        return malformed(format!(
            "offset must be between 0 and {MAX_OFFSET}, got {offset}"
        ));
    }
    let mut redis = state.redis.clone();
    match state
        .ranking
        .top(&mut redis, offset as u64, limit as u64)
        .await
    {
        Ok(entries) => {
            Json(json!({ "key": state.ranking.key(), "entries": entries })).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the ranking");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the ranking store is unreachable",
            )
            .into_response()
        }
    }
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<serde_json::Value>) {
    let mut redis = state.redis.clone();
    let ping = redis::cmd("PING");
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(READY_CHECK_TIMEOUT, shared::db::ping(&state.pool)),
        tokio::time::timeout(READY_CHECK_TIMEOUT, ping.query_async::<String>(&mut redis)),
    );
    let postgres = postgres.unwrap_or(false);
    let redis = matches!(redis, Ok(Ok(_)));
    let status = if postgres && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |up: bool| if up { "ok" } else { "unreachable" };
    (
        status,
        Json(
            json!({ "status": if status == StatusCode::OK { "ready" } else { "unavailable" },
                          "postgres": word(postgres), "redis": word(redis) }),
        ),
    )
}

/// Each consumer as this instance runs it (active or standby, running or paused and why), with
/// its lag from the position Postgres mirrors. Not part of readiness: an unavailable sink must
/// not take the read API out of rotation.
async fn consumers_health(State(state): State<HttpState>) -> Response {
    let mut consumers = Vec::new();
    for consumer in &state.consumers {
        let health = consumer.snapshot();
        let lag = match consumers::get(&state.pool, &health.name).await {
            Ok(row) => log::lag(&state.pool, row.position()).await.ok(),
            Err(_) => None,
        };
        let mut entry = serde_json::to_value(&health).unwrap_or_default();
        entry["lag"] = serde_json::to_value(lag).unwrap_or_default();
        consumers.push(entry);
    }
    Json(json!({ "consumers": consumers })).into_response()
}

/// Lag gauges are read from Postgres at scrape time, so they are never stale.
async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    for consumer in &state.consumers {
        let name = consumer.name();
        let lag = async {
            let row = consumers::get(&state.pool, &name).await?;
            log::lag(&state.pool, row.position()).await
        };
        match lag.await {
            Ok(lag) => {
                metrics::gauge!("consumer_lag_events", "consumer" => name.clone())
                    .set(lag.events as f64);
                metrics::gauge!("consumer_lag_seconds", "consumer" => name).set(lag.seconds);
            }
            Err(error) => tracing::warn!(%error, "cannot read the consumers' lag for metrics"),
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
