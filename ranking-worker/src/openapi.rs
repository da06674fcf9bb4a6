//! The OpenAPI 3.1 document of the worker's HTTP API (SPEC §6), generated from the handlers'
//! `#[utoipa::path]` attributes in `http.rs` and the response schemas below, served at
//! `GET /openapi.json`.
//!
//! The response types here describe what the handlers serialise (`ranking::Entry`,
//! `health::Health`, `log::Lag`, `shared::problem::Problem`), which live in modules that know
//! nothing of OpenAPI; the conformance test in `tests/relay/operations.rs` checks real responses
//! against them, so the two cannot drift apart unnoticed.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoResponses, OpenApi, ToSchema};

use crate::http;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ranking-worker",
        description = "The sell-out ranking, from Redis through a cache that every change \
                       invalidates (with `ETag`; revalidate with `If-None-Match`), its live \
                       stream, and the worker's health: its readiness, its consumers and its \
                       metrics. Errors are RFC 9457 problem details with a `code`.",
    ),
    paths(
        http::sold_out_ranking,
        http::sold_out_stream,
        http::board,
        http::healthz,
        http::readyz,
        http::consumers_health,
        http::metrics,
        document,
    ),
    // Named by the error responses (`IntoResponses`), which do not register it themselves.
    components(schemas(Problem)),
    tags(
        (name = "ranking", description = "The sell-out ranking"),
        (name = "operations", description = "Health, readiness, consumers, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document, rendered once.
fn rendered() -> &'static Result<String, String> {
    static DOCUMENT: OnceLock<Result<String, String>> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .map_err(|error| error.to_string())
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn document() -> Response {
    match rendered() {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json.clone(),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document does not render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A page of the ranking.
#[derive(Serialize, ToSchema)]
pub struct RankingPage {
    /// The Redis key of the ranking read.
    key: String,
    /// The period whose board was read (`?period=`); absent for the all-time board.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<RankingPeriod>,
    /// Fastest sell-out first; equal scores share a rank.
    entries: Vec<RankingEntry>,
}

/// A period's board (`periods::PeriodView`).
#[derive(Serialize, ToSchema)]
pub struct RankingPeriod {
    /// `day`, `week` or `month`.
    kind: String,
    /// `2026-11-25`, `2026-W48` (ISO week) or `2026-11`.
    name: String,
    /// The IANA time zone the period is reckoned in (`RANKING_TIMEZONE`).
    time_zone: String,
    /// The first instant after the period.
    ends_at: DateTime<Utc>,
}

/// One ranked schedule (`ranking::Entry`).
#[derive(Serialize, ToSchema)]
pub struct RankingEntry {
    /// 1-based; entries with equal `sold_out_seconds` share it.
    #[schema(minimum = 1)]
    rank: u64,
    /// `concert:{concert_id}:schedule:{schedule_id}`.
    member: String,
    /// Null when the entry's details are missing.
    concert_id: Option<i64>,
    schedule_id: Option<i64>,
    concert_title: Option<String>,
    /// Seconds from the sale's start to the last seat sold: the score.
    sold_out_seconds: f64,
    sale_started_at: Option<DateTime<Utc>>,
    sold_out_at: Option<DateTime<Utc>>,
}

/// Readiness: whether this instance can serve the ranking.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: String,
    /// `ok` or `unreachable`.
    postgres: String,
    /// `ok` or `unreachable`.
    redis: String,
}

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok`.
    status: String,
}

/// The consumers this instance runs.
#[derive(Serialize, ToSchema)]
pub struct Consumers {
    consumers: Vec<Consumer>,
}

/// Whether this instance holds the consumer (`health::Role`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Active,
    Standby,
    Stopped,
}

/// What the consumer is doing (`health::State`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerState {
    Running,
    Paused,
    Idle,
}

/// One consumer as this instance runs it (`health::Health`, with its lag).
#[derive(Serialize, ToSchema)]
pub struct Consumer {
    name: String,
    role: Role,
    state: ConsumerState,
    /// Why it is paused (only when `paused`).
    reason: Option<String>,
    /// Since when it is paused (only when `paused`).
    since: Option<DateTime<Utc>>,
    /// The sink's position as this instance last knew it.
    position: Option<String>,
    /// How far it is behind the log's head; null when Postgres does not answer.
    lag: Option<Lag>,
    /// Paused by an operator or disabled by its sink until `consumers resume`, whatever this
    /// instance does (`consumers::Halt`); null when not halted (or Postgres does not answer).
    halted: Option<Halted>,
    /// Its dead letters; null when Postgres does not answer.
    dead_letters: Option<i64>,
}

/// Why a consumer delivers nothing until `consumers resume` (`consumers::Halt`).
#[derive(Serialize, ToSchema)]
pub struct Halted {
    kind: HaltKind,
    reason: String,
    since: DateTime<Utc>,
}

/// `consumers::HaltKind`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HaltKind {
    Paused,
    Disabled,
}

/// How far a consumer is behind the log's head (`log::Lag`).
#[derive(Serialize, ToSchema)]
pub struct Lag {
    /// Events after the position.
    events: i64,
    /// Age of the oldest of them, in seconds; 0 when there are none.
    seconds: f64,
}

/// An error, as RFC 9457 problem details (`application/problem+json`): the shape of
/// `shared::problem::Problem`, which this crate cannot give a schema to.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/` and the code in kebab case, e.g. `/problems/malformed-request`.
    #[serde(rename = "type")]
    kind: String,
    /// The status's reason phrase, e.g. `Bad Request`.
    title: String,
    /// The HTTP status, as in the status line.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// What went wrong, for programs, e.g. `MALFORMED_REQUEST`.
    #[schema(pattern = "^[A-Z_]+$")]
    code: String,
}

/// What reading the ranking can go wrong with.
#[derive(IntoResponses)]
pub enum RankingErrors {
    /// `MALFORMED_REQUEST`: an unknown query parameter, `limit` or `offset` not an integer in
    /// its range, `period` not `day`, `week` or `month`, or `at` not a date (`YYYY-MM-DD`) or
    /// given without `period`.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// `UNAVAILABLE`: Redis does not answer. Retry after `Retry-After` seconds.
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))
    )]
    Unavailable(Problem),
}

/// What opening the live stream can go wrong with.
#[derive(IntoResponses)]
pub enum StreamErrors {
    /// `UNAVAILABLE`: Redis does not answer, or this instance already serves
    /// `STREAM_MAX_CLIENTS` live clients. Retry after `Retry-After` seconds.
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))
    )]
    Unavailable(Problem),
}
