//! Request extractors whose rejections are problem+json errors with SPEC §3's codes.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::idempotency::{IdempotencyKey, RequestHash};

/// Largest request body accepted (SPEC §3).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body, with the hash of its exact bytes for idempotency checks.
///
/// Syntax errors are 400 `MALFORMED_REQUEST`; well-formed JSON of the wrong shape (missing or
/// unknown field, wrong type) is 422 `VALIDATION_FAILED`.
pub struct JsonBody<T> {
    pub value: T,
    pub hash: RequestHash,
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(MAX_BODY_BYTES)
                } else {
                    ApiError::malformed(rejection.body_text())
                }
            })?;
        let axum::Json(value) =
            axum::Json::<T>::from_bytes(&bytes).map_err(|rejection| match rejection {
                JsonRejection::JsonDataError(error) => ApiError::validation(error.body_text()),
                other => ApiError::malformed(other.body_text()),
            })?;
        Ok(Self {
            value,
            hash: RequestHash::of(&bytes),
        })
    }
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// `axum::extract::Path` whose failures are 400 problem+json.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::malformed(rejection.body_text())
    }
}

/// `axum::extract::Query` whose failures are 400 problem+json.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::malformed(rejection.body_text())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let value = values
            .next()
            .ok_or_else(|| ApiError::malformed("the Idempotency-Key header is required"))?;
        // Which of two keys would count is anyone's guess: refuse rather than pick one.
        if values.next().is_some() {
            return Err(ApiError::malformed(
                "exactly one Idempotency-Key header is allowed",
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| ApiError::malformed("Idempotency-Key must be visible ASCII characters"))?;
        IdempotencyKey::parse(value).map_err(ApiError::Malformed)
    }
}
