//! The worker's HTTP API (SPEC §6): the ranking, health, readiness, consumers and metrics,
//! each request given an id and logged (`shared::http::with_request_log`) and counted and
//! timed (`shared::metrics::record_request`), each failure an `ApiError`; health and readiness
//! answer as `shared::health` does for both services. Its OpenAPI document is built from the
//! `#[utoipa::path]` attributes here (see `openapi.rs`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::json;
use shared::health::Readiness;
use sqlx::PgPool;
use utoipa::IntoParams;

use crate::board_cache::{BoardQuery, ReadCache, Rendered};
use crate::consumers;
use crate::error::ApiError;
use crate::health::ConsumerHealth;
use crate::log;
use crate::openapi;
use crate::periods::{Period, PeriodKind, PeriodView};
use crate::ranking::Ranking;
use crate::stream::{self, Feed};

#[derive(Clone)]
pub struct HttpState {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub ranking: Ranking,
    pub metrics: PrometheusHandle,
    /// The consumers this instance runs (active or standing by).
    pub consumers: Vec<ConsumerHealth>,
    /// The live board's feed: its clients subscribe to it.
    pub feed: Feed,
    /// The ranking's pages as last read, which the feed's reader invalidates.
    pub cache: ReadCache,
}

const MAX_LIMIT: i64 = 100;
/// Deeper pages are no use to a reader, and an offset near i64::MAX overflows Redis's range.
const MAX_OFFSET: i64 = 100_000;

pub fn router(state: HttpState) -> Router {
    let routes = Router::new()
        .route("/", get(board))
        .route("/rankings/sold-out", get(sold_out_ranking))
        .route("/rankings/sold-out/stream", get(sold_out_stream))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/consumers", get(consumers_health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::NotFound })
        // axum adds `Allow` to this answer.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Inside the router, where the matched route template is known.
        .layer(axum::middleware::from_fn(shared::metrics::record_request));
    shared::http::with_request_log(routes).with_state(state)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 10)]
    limit: Option<i64>,
    /// Entries to skip from the top.
    #[param(minimum = 0, maximum = 100000, default = 0)]
    offset: Option<i64>,
    /// A period's board instead of the all-time one: the calendar day, ISO week or month of
    /// the sell-out in `RANKING_TIMEZONE`.
    #[param(pattern = "^(day|week|month)$")]
    period: Option<String>,
    /// A date in the period (`YYYY-MM-DD`, in `RANKING_TIMEZONE`); today there by default.
    /// Only with `period`.
    #[param(format = Date)]
    at: Option<String>,
}

/// The period `period` and `at` ask for (`None`: the all-time board), or why they ask for none.
fn requested_period(ranking: &Ranking, page: &Page) -> Result<Option<Period>, String> {
    let kind = match (&page.period, &page.at) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err("at is only meaningful with period".to_owned()),
        (Some(kind), _) => kind
            .parse::<PeriodKind>()
            .map_err(|why| format!("period {why}"))?,
    };
    let at = match &page.at {
        None => ranking.periods().today(),
        Some(at) => NaiveDate::parse_from_str(at, "%Y-%m-%d")
            .map_err(|_| format!("at must be a date as YYYY-MM-DD, got {at:?}"))?,
    };
    let period = ranking.periods().period(kind, at);
    period
        .map(Some)
        .ok_or_else(|| format!("at {at} has no {} board", kind.as_str()))
}

/// The sell-out ranking, fastest first: the all-time board, or with `period` the board of a
/// day, ISO week or month. Served from this process's cache, which every change to the ranking
/// invalidates through the feed (on every instance, as fast as the live board learns of it),
/// with a strong `ETag` and `Cache-Control: no-cache`: a client or proxy may keep the body but
/// asks again each time, and `If-None-Match` with the current tag gets a 304.
#[utoipa::path(
    get,
    path = "/rankings/sold-out",
    tag = "ranking",
    params(
        Page,
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a page held: 304 if it is still the current one"),
    ),
    responses(
        (status = 200, description = "A page of the ranking", body = openapi::RankingPage,
            headers(("ETag" = String, description = "Strong validator of this page"),
                    ("Cache-Control" = String, description = "`no-cache`: revalidate before each use"))),
        (status = 304, description = "The page is unchanged since the `ETag` sent in `If-None-Match`"),
        openapi::RankingErrors,
    )
)]
pub async fn sold_out_ranking(
    State(state): State<HttpState>,
    headers: HeaderMap,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(page) = page.map_err(|rejection| ApiError::malformed(rejection.body_text()))?;
    let limit = page.limit.unwrap_or(10);
    let offset = page.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::malformed(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::malformed(format!(
            "offset must be between 0 and {MAX_OFFSET}, got {offset}"
        )));
    }
    let period = requested_period(&state.ranking, &page).map_err(ApiError::Malformed)?;
    let query = BoardQuery {
        board: period.as_ref().map(Period::name),
        limit: limit as u64,
        offset: offset as u64,
    };
    let page = match state.cache.get(&query) {
        Some(page) => page,
        None => {
            // Taken before Redis is read: if the ranking changes meanwhile, this read is not kept.
            let ticket = state.cache.ticket();
            let mut redis = state.redis.clone();
            let entries = state
                .ranking
                .top_of(&mut redis, period.as_ref(), query.offset, query.limit)
                .await?;
            let key = state.ranking.board_key(period.as_ref());
            let mut body = json!({ "key": key, "entries": entries });
            if let Some(period) = &period {
                body["period"] = json!(PeriodView::new(period));
            }
            let page = Arc::new(Rendered::new(body.to_string().into()));
            state.cache.insert(query, ticket, page.clone());
            page
        }
    };
    Ok(cached_response(&page, headers.get(header::IF_NONE_MATCH)))
}

/// A cached page as the answer: 304 when the client holds it already.
fn cached_response(page: &Rendered, if_none_match: Option<&HeaderValue>) -> Response {
    let validators = [
        (header::ETAG, page.etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if if_none_match.is_some_and(|tags| page.matches(tags)) {
        return (StatusCode::NOT_MODIFIED, validators).into_response();
    }
    (
        validators,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        page.body.clone(),
    )
        .into_response()
}

/// The ranking as it changes, as Server-Sent Events: `snapshot` (the top 20, as
/// `/rankings/sold-out` shows it) on connect, then an `entry` each time a schedule enters the
/// ranking, with its rank then. Each event's `id` is a place in the log: a browser that
/// reconnects sends it as `Last-Event-ID` and gets the entries it missed (or a fresh snapshot
/// when they are too many or gone). A backlog drained at once comes as a new `snapshot`. A comment line every 15 s keeps the connection alive; a
/// client that falls far behind is disconnected, to resume the same way.
#[utoipa::path(
    get,
    path = "/rankings/sold-out/stream",
    tag = "ranking",
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received (`{tx_id}-{seq}`): resume after it")),
    responses(
        (status = 200, description = "The event stream (`event: snapshot`, data as `RankingPage`; then `event: entry`, data as `RankingEntry`, and a new `snapshot` after a backlog drained at once)", content_type = "text/event-stream", body = String),
        openapi::StreamErrors,
    )
)]
pub async fn sold_out_stream(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let mut redis = state.redis.clone();
    let events = state.feed.subscribe(&mut redis, last_event_id).await?;
    Ok((
        // Tells a buffering proxy (nginx) to pass each event on at once.
        [("x-accel-buffering", "no")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(stream::HEARTBEAT)),
    ))
}

/// The live board: one self-contained page (no external resource) that shows the ranking and
/// follows `/rankings/sold-out/stream`.
#[utoipa::path(
    get,
    path = "/",
    tag = "ranking",
    responses((status = 200, description = "The live board, an HTML page", content_type = "text/html", body = String))
)]
pub async fn board() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything it needs is inline; it may connect back to this origin only.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        BOARD_PAGE,
    )
}

/// The page, compiled in.
const BOARD_PAGE: &str = include_str!("page.html");

/// Liveness: 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = openapi::Alive))
)]
pub async fn healthz() -> Json<shared::health::Alive> {
    shared::health::alive()
}

/// Readiness: 200 when this instance can serve the ranking (Postgres and Redis answer), active
/// or standing by.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = openapi::Readiness),
        (status = 503, description = "Postgres or Redis does not answer", body = openapi::Readiness),
    )
)]
pub async fn readyz(State(state): State<HttpState>) -> Readiness {
    let mut redis = state.redis.clone();
    let ping = redis::cmd("PING");
    let ping = async move { ping.query_async::<String>(&mut redis).await.is_ok() };
    let (postgres, redis) = tokio::join!(
        shared::health::postgres(&state.pool),
        shared::health::probe("redis", ping),
    );
    Readiness::naming_all([postgres, redis])
}

/// Each consumer as this instance runs it (active or standby, running or paused and why), with
/// its lag from the position Postgres mirrors, whether an operator or its sink halted it, and
/// its dead letters. Not part of readiness: an unavailable sink must
/// not take the read API out of rotation.
#[utoipa::path(
    get,
    path = "/consumers",
    tag = "operations",
    responses((status = 200, description = "This instance's consumers", body = openapi::Consumers))
)]
pub async fn consumers_health(State(state): State<HttpState>) -> Response {
    let mut consumers = Vec::new();
    for consumer in &state.consumers {
        let health = consumer.snapshot();
        let lag = match consumers::get(&state.pool, &health.name).await {
            Ok(row) => log::lag(&state.pool, row.position()).await.ok(),
            Err(_) => None,
        };
        let halted = consumers::halt_of(&state.pool, &health.name)
            .await
            .ok()
            .flatten();
        let dead_letters = consumers::count_dead_letters(&state.pool, &health.name)
            .await
            .ok();
        let mut entry = serde_json::to_value(&health).unwrap_or_default();
        entry["lag"] = serde_json::to_value(lag).unwrap_or_default();
        entry["halted"] = serde_json::to_value(halted).unwrap_or_default();
        entry["dead_letters"] = serde_json::to_value(dead_letters).unwrap_or_default();
        consumers.push(entry);
    }
    Json(json!({ "consumers": consumers })).into_response()
}

/// Prometheus metrics. Lag gauges are read from Postgres at scrape time, so they are never stale.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Metrics in the Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
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
    shared::metrics::exposition(&state.metrics)
}
