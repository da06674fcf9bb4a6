//! The API's one error type. Every failure a client can see is a variant here, mapped to its
//! HTTP status and problem code (SPEC §3) in one place and rendered as RFC 9457 problem+json.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("this endpoint needs the admin role")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("balance {balance} is below the price {price}")]
    InsufficientBalance { balance: i64, price: i64 },
    #[error("the sale of this schedule is not open")]
    SaleNotOpen,
    #[error("the seat is held by someone else or sold")]
    SeatUnavailable,
    #[error("you already hold {0} seats, the most one user may hold at once: pay for or release one first")]
    TooManyHolds(u32),
    #[error("the hold expired before it was paid")]
    ReservationExpired,
    #[error("the reservation is not held: it was already paid")]
    ReservationNotHeld,
    #[error("a request with this Idempotency-Key is still in flight")]
    IdempotencyKeyInUse,
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body must be sent with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Validation(String),
    #[error("the database is unreachable")]
    Unavailable(#[source] sqlx::Error),
    #[error("the database did not answer in time")]
    TooSlow(#[source] sqlx::Error),
    #[error("the request body was not received within {0} ms")]
    RequestTimeout(u128),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            Malformed(_) => (StatusCode::BAD_REQUEST, "MALFORMED_REQUEST"),
            Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            InsufficientBalance { .. } => (StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_BALANCE"),
            SaleNotOpen => (StatusCode::CONFLICT, "SALE_NOT_OPEN"),
            SeatUnavailable => (StatusCode::CONFLICT, "SEAT_UNAVAILABLE"),
            TooManyHolds(_) => (StatusCode::CONFLICT, "TOO_MANY_HOLDS"),
            ReservationExpired => (StatusCode::CONFLICT, "RESERVATION_EXPIRED"),
            ReservationNotHeld => (StatusCode::CONFLICT, "RESERVATION_NOT_HELD"),
            IdempotencyKeyInUse => (StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_USE"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"),
            Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED"),
            Unavailable(_) | TooSlow(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }

    /// A 400 for an unparseable header, path or query value.
    pub fn malformed(what: impl std::fmt::Display) -> Self {
        Self::Malformed(what.to_string())
    }

    /// A 422 for a well-formed request with an unacceptable value.
    pub fn validation(what: impl std::fmt::Display) -> Self {
        Self::Validation(what.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            // The cause chain goes to the log, never to the client.
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
            ApiError::Unavailable(cause) => tracing::warn!(error = %cause, "database unavailable"),
            ApiError::TooSlow(cause) => tracing::warn!(error = %cause, "database too slow"),
            _ => {}
        }
        let (status, code) = self.status_and_code();
        let mut response = Problem::new(status, code, self.to_string()).into_response();
        if let ApiError::Unauthenticated(_) = self {
            // RFC 9110 §11.6.1: a 401 names the scheme the client should authenticate with.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Database errors that a handler did not map itself: an unreachable or too slow database is a
/// 503, a
/// violated business constraint is the conflict it names, a value Postgres refuses is a 422,
/// anything else is a 500.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if is_connectivity(&error) {
            return ApiError::Unavailable(error);
        }
        if let Some(db) = error.as_database_error() {
            match db.constraint() {
                Some("reservations_one_live_per_seat") => return ApiError::SeatUnavailable,
                Some("payments_one_per_reservation") => return ApiError::ReservationNotHeld,
                _ => {}
            }
            let code = db.code().unwrap_or_default();
            // lock_not_available: a row stayed locked longer than the pool's lock_timeout;
            // query_canceled: a statement ran longer than its statement_timeout.
            if code == "55P03" || code == "57014" {
                return ApiError::TooSlow(error);
            }
            // Class 22, data exception: Postgres refused a value (NUL in text, a time out of
            // its range, an overflow). Validation is meant to stop such input first; whatever
            // slips past is still the client's input, so 422, and logged so it can be closed.
            if code.starts_with("22") {
                tracing::warn!(%error, "the database refused a value validation let through");
                return ApiError::validation("a value is outside what the service can store");
            }
        }
        ApiError::Internal(error.into())
    }
}

fn is_connectivity(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    ) || error
        .as_database_error()
        .and_then(|db| db.code())
        // Class 08: connection exceptions; 57P01..03: the server is shutting down or starting.
        .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0"))
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::Internal(error)
    }
}
