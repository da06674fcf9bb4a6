//! The HTTP API's one error type. Every failure a client of the worker can see is a variant
//! here, mapped to its HTTP status and problem code (SPEC §3, §6) in one place and rendered as
//! RFC 9457 problem+json by `shared::problem`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::problem::Problem;

use crate::stream::Refused;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad query parameter: `limit`, `offset`, `period`, `at`, or one not known.
    #[error("{0}")]
    Malformed(String),
    #[error("no such route")]
    NotFound,
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// Redis does not answer; the cause is logged, never shown.
    #[error("the ranking store is unreachable")]
    RankingUnavailable(#[source] redis::RedisError),
    /// The live stream already has `STREAM_MAX_CLIENTS` clients on this instance.
    #[error("this instance already serves its maximum of {0} live clients (STREAM_MAX_CLIENTS)")]
    TooManyStreamClients(usize),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            Malformed(_) => (StatusCode::BAD_REQUEST, "MALFORMED_REQUEST"),
            NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            RankingUnavailable(_) | TooManyStreamClients(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
            }
        }
    }

    /// A 400 for a bad query parameter.
    pub fn malformed(what: impl std::fmt::Display) -> Self {
        Self::Malformed(what.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::RankingUnavailable(error) = &self {
            tracing::warn!(%error, "cannot read the ranking");
        }
        let (status, code) = self.status_and_code();
        Problem::new(status, code, self.to_string()).into_response()
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        ApiError::RankingUnavailable(error)
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Full(max) => ApiError::TooManyStreamClients(max),
            Refused::Unavailable(error) => ApiError::RankingUnavailable(error),
        }
    }
}
