//! Idempotency keys in Postgres (table `idempotency_keys`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use super::IdempotencyKey;
use crate::domain::UserId;
use crate::error::ApiError;

/// Which endpoint a key belongs to: keys are scoped per user and endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    ChargePoints,
    Pay,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChargePoints => "POST /points/charge",
            Endpoint::Pay => "POST /payments",
        }
    }
}

/// SHA-256 of a request body, to tell a retry from a different request under the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHash([u8; 32]);

impl RequestHash {
    pub fn of(body: &[u8]) -> Self {
        Self(Sha256::digest(body).into())
    }
}

/// A money endpoint's response as sent, and as stored for replays: a status and the body's
/// exact bytes, so a replay is the first response itself, not an equal JSON value.
pub struct StoredResponse {
    status: StatusCode,
    body: Vec<u8>,
    /// Answered from storage for a retry: sent with `Idempotent-Replayed: true`.
    replayed: bool,
}

impl StoredResponse {
    /// The first response of a request: `value` as JSON.
    pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Result<Self, ApiError> {
        Ok(Self {
            status,
            body: serde_json::to_vec(value).map_err(anyhow::Error::from)?,
            replayed: false,
        })
    }

    /// The first response of a request whose transaction stored it itself (a payment's, by
    /// `booking_pay`): sent only if `stored` is exactly `value` as JSON, as [`Self::json`]
    /// would store it, so what is sent and what a replay sends cannot differ.
    pub fn stored_json(
        status: StatusCode,
        value: &impl serde::Serialize,
        stored: Vec<u8>,
    ) -> Result<Self, ApiError> {
        let sent = Self::json(status, value)?;
        if sent.body != stored {
            return Err(anyhow::anyhow!(
                "the stored response {:?} is not the one to send, {:?}",
                String::from_utf8_lossy(&stored),
                String::from_utf8_lossy(&sent.body)
            )
            .into());
        }
        Ok(sent)
    }
}

impl IntoResponse for StoredResponse {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

pub enum Begin {
    /// First time this key is seen: do the work on this transaction, then [`save`].
    Fresh(Transaction<'static, Postgres>),
    /// The key was used before with the same body: answer with this.
    Replay(StoredResponse),
}

pub struct Request<'a> {
    pub user: UserId,
    pub endpoint: Endpoint,
    pub key: &'a IdempotencyKey,
    pub hash: &'a RequestHash,
}

/// Claims `key` for this request, or finds the response of the request that claimed it.
///
/// While another request holds the key the insert waits; the pool's `lock_timeout` bounds that
/// wait, after which the client gets 409 `IDEMPOTENCY_KEY_IN_USE` and may retry.
pub async fn begin(pool: &PgPool, request: Request<'_>) -> Result<Begin, ApiError> {
    let mut tx = crate::db::begin(pool).await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, endpoint, key, request_hash)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(request.user.get())
    .bind(request.endpoint.as_str())
    .bind(request.key.as_str())
    .bind(&request.hash.0[..])
    .execute(&mut *tx)
    .await
    .map_err(
        |error| match error.as_database_error().and_then(|db| db.code()) {
            // The wait for the first request outlasted lock_timeout (or statement_timeout).
            Some(code) if code == "55P03" || code == "57014" => ApiError::IdempotencyKeyInUse,
            _ => error.into(),
        },
    )?
    .rows_affected();
    if inserted == 1 {
        return Ok(Begin::Fresh(tx));
    }

    // Committed by an earlier request: READ COMMITTED shows it to this statement. Keys saved
    // before response_bytes existed are replayed from their jsonb value.
    let (hash, status, body): (Vec<u8>, Option<i16>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT request_hash, response_status,
                COALESCE(response_bytes, convert_to(response_body::text, 'UTF8'))
         FROM idempotency_keys WHERE user_id = $1 AND endpoint = $2 AND key = $3",
    )
    .bind(request.user.get())
    .bind(request.endpoint.as_str())
    .bind(request.key.as_str())
    .fetch_one(&mut *tx)
    .await?;
    tx.rollback().await?;
    if hash != request.hash.0 {
        return Err(ApiError::IdempotencyKeyReused);
    }
    match (
        status.and_then(|s| StatusCode::from_u16(s as u16).ok()),
        body,
    ) {
        (Some(status), Some(body)) => Ok(Begin::Replay(StoredResponse {
            status,
            body,
            replayed: true,
        })),
        // save() writes both in the transaction that created the row, so a committed row
        // always has them; a row without them is a bug, not a client error.
        _ => Err(anyhow::anyhow!("idempotency key committed without a response").into()),
    }
}

/// Stores the response for the key claimed by [`begin`] and commits the request's transaction.
pub async fn save(
    mut tx: Transaction<'static, Postgres>,
    request: Request<'_>,
    response: &StoredResponse,
) -> Result<(), ApiError> {
    // idempotency_save (migrations/20261125192000_payment_response_in_sql.sql) is the one
    // statement that stores a response; booking_pay calls it too.
    sqlx::query("SELECT idempotency_save($1, $2, $3, $4, $5)")
        .bind(request.user.get())
        .bind(request.endpoint.as_str())
        .bind(request.key.as_str())
        .bind(response.status.as_u16() as i16)
        .bind(&response.body)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_stored_by_sql_is_sent_only_if_it_is_the_serialised_value() {
        let value = serde_json::json!({"b": 1, "a": true});
        let same = StoredResponse::stored_json(
            StatusCode::CREATED,
            &value,
            br#"{"b":1,"a":true}"#.to_vec(),
        );
        assert_eq!(
            same.map(|r| r.body).ok(),
            Some(br#"{"b":1,"a":true}"#.to_vec())
        );
        // Equal as JSON values is not enough (spaces, key order): a replay must be the same bytes.
        for stored in [&br#"{"b": 1, "a": true}"#[..], br#"{"a":true,"b":1}"#] {
            let refused = StoredResponse::stored_json(StatusCode::CREATED, &value, stored.to_vec());
            assert!(matches!(refused, Err(ApiError::Internal(_))));
        }
    }
}
