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
    fn as_str(self) -> &'static str {
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
    // response_body as well, for instances of the previous version during a rollout (see the
    // migration that added response_bytes).
    sqlx::query(
        "UPDATE idempotency_keys
         SET response_status = $4, response_bytes = $5,
             response_body = convert_from($5, 'UTF8')::jsonb
         WHERE user_id = $1 AND endpoint = $2 AND key = $3",
    )
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
