//! Request extractors whose rejections are problem+json errors with SPEC §3's codes.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};

use crate::deadline::RequestDeadline;
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
        let deadline = request.extensions().get::<RequestDeadline>().copied();
        let read = Bytes::from_request(request, state);
        let read = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.at, read)
                .await
                .map_err(|_| ApiError::RequestTimeout(deadline.allowed.as_millis()))?,
            None => read.await,
        };
        let bytes = read.map_err(|rejection| {
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

/// `deserialize_with` for the integer fields of a body: a JSON number whose value is whole, as
/// `1`, `1.0` or `1e3`. That is what `integer` means in JSON Schema, which the OpenAPI document
/// speaks, and JSON itself has one number type: a client that writes `1.0` (as Python's floats
/// and many JSON encoders do) sends the same number as one that writes `1`. Found by the fuzzer
/// (scripts/fuzz): `{"schedule_id": 1.0, "seat_no": 1}` conforms to the document and was 422.
///
/// A fraction, or a written fraction beyond 2^53 (where a float no longer holds every whole
/// number, so `9007199254740993.0` would silently become another id), is refused.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Whole;
    impl Visitor<'_> for Whole {
        type Value = i64;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a whole number")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
            /// 2^53: every whole number up to it, and none much beyond, is exact as a float.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if value.fract() == 0.0 && value.abs() <= EXACT {
                // Whole and within ±2^53: the conversion is exact.
                Ok(value as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }
    deserializer.deserialize_i64(Whole)
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
