//! The OpenAPI 3.1 document of this API (SPEC §3), generated from the handlers' `#[utoipa::path]`
//! attributes and the request and response types, served at `GET /openapi.json`.
//!
//! Limits JSON Schema can express (lengths, ranges, formats) are in the schemas; the rest (the
//! years a time may fall in, what text may contain) are in their descriptions.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use crate::routes::{concerts, health, payments, points, reservations};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment-svc",
        description = "Concert booking: concerts, seats, points, seat holds and payments. The \
                       payment that sells a schedule's last seat writes ConcertSoldOut to the \
                       outbox. Errors are RFC 9457 problem details with a `code`.",
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        document,
        concerts::create,
        concerts::list,
        concerts::show,
        concerts::seats,
        points::balance,
        points::charge,
        reservations::hold,
        reservations::list,
        reservations::show,
        reservations::release,
        payments::pay,
        payments::show,
    ),
    modifiers(&BearerToken),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "concerts", description = "Concerts, schedules and seats"),
        (name = "points", description = "Points balances and charges"),
        (name = "reservations", description = "Seat holds"),
        (name = "payments", description = "Paying for holds"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme the operations name: `Authorization: Bearer <JWT>`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256, claims `sub` (the user id, canonical decimal), `role` (`user` or \
                         `admin`), `exp` (at most 30 days ahead) and optionally `nbf`.",
                    ))
                    .build(),
            ),
        );
    }
}

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

/// An error, as RFC 9457 problem details (`application/problem+json`). Mirrors
/// `shared::problem::Problem`, which this crate cannot give a schema to.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/` and the code in kebab case, e.g. `/problems/seat-unavailable`.
    #[serde(rename = "type")]
    kind: String,
    /// The status's reason phrase, e.g. `Conflict`.
    title: String,
    /// The HTTP status, as in the status line.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// What went wrong, for programs: one of the codes in the README's table, e.g.
    /// `SEAT_UNAVAILABLE`.
    #[schema(pattern = "^[A-Z_]+$")]
    code: String,
}

/// 400: a bad path or query parameter (or body syntax, or `Idempotency-Key`, where the
/// operation takes them).
#[derive(IntoResponses)]
pub enum Malformed {
    /// `MALFORMED_REQUEST`
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
}

/// 401: no valid token.
#[derive(IntoResponses)]
pub enum Unauthenticated {
    /// `UNAUTHENTICATED`: no, malformed, expired, not yet valid, too long-lived or badly signed
    /// token. With `WWW-Authenticate: Bearer`.
    #[response(
        status = 401,
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer`"))
    )]
    Unauthenticated(Problem),
}

/// 401 and 403: the admin operations.
#[derive(IntoResponses)]
pub enum AdminOnly {
    /// `UNAUTHENTICATED`: no valid token. With `WWW-Authenticate: Bearer`.
    #[response(
        status = 401,
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer`"))
    )]
    Unauthenticated(Problem),
    /// `FORBIDDEN`: a valid token without the admin role.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
}

/// 404.
#[derive(IntoResponses)]
pub enum NotFound {
    /// `NOT_FOUND`: no such id, or it belongs to another user.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// What a JSON body can go wrong with.
#[derive(IntoResponses)]
pub enum BodyErrors {
    /// `PAYLOAD_TOO_LARGE`: the body is over 64 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// `UNSUPPORTED_MEDIA_TYPE`: no `Content-Type: application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// `VALIDATION_FAILED`: well-formed JSON with a missing field, wrong type or out-of-range
    /// value; on the money operations also `IDEMPOTENCY_KEY_REUSED`, the key used before with
    /// another body.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

/// What any operation that reads Postgres can answer.
#[derive(IntoResponses)]
pub enum Always {
    /// `REQUEST_TIMEOUT`: the request body was not received within `REQUEST_TIMEOUT_MS`.
    #[response(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Problem),
    /// `UNAVAILABLE`: Postgres is unreachable or too slow. Retry after `Retry-After` seconds.
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))
    )]
    Unavailable(Problem),
}

/// The `Idempotency-Key` header of the money operations.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Exactly one, 1 to 255 visible ASCII characters, scoped per user and operation. The same
    /// key with the same body returns the first (successful) response again; a failed attempt
    /// does not bind its key.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    #[allow(dead_code)]
    idempotency_key: String,
}
