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

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
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

    /// The first response of a request whose statement stored it itself (a payment's, by
    /// `booking_pay`): sent as stored, so what is sent and what a replay sends cannot differ.
    pub fn first(status: StatusCode, body: Vec<u8>) -> Self {
        Self {
            status,
            body,
            replayed: false,
        }
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
/// While another request holds the key the claim waits; the pool's `lock_timeout` bounds that
/// wait, after which the client gets 409 `IDEMPOTENCY_KEY_IN_USE` and may retry.
pub async fn begin(pool: &PgPool, request: Request<'_>) -> Result<Begin, ApiError> {
    let mut tx = crate::db::begin(pool).await?;
    // One statement: idempotency_claim (migrations/20261125193000_idempotency_claim_in_sql.sql)
    // claims the key or reads the first request's response.
    let claim = sqlx::query!(
        r#"SELECT outcome AS "outcome!", response_status, response_bytes
           FROM idempotency_claim($1, $2, $3, $4)"#,
        request.user.get(),
        request.endpoint.as_str(),
        request.key.as_str(),
        &request.hash.0[..],
    )
    .fetch_one(&mut *tx)
    .await?;
    match claimed(&claim.outcome, claim.response_status, claim.response_bytes)? {
        Claim::Claimed => Ok(Begin::Fresh(tx)),
        Claim::Replay(saved) => {
            tx.rollback().await?;
            Ok(Begin::Replay(saved))
        }
    }
}

/// What `idempotency_claim` said: the key is this request's, or the first response to replay.
pub enum Claim {
    Claimed,
    Replay(StoredResponse),
}

/// Reads `idempotency_claim`'s outcome and, for a replay, its response columns. A key reused
/// with another body, or still held by the first request, is the client's error.
pub fn claimed(
    outcome: &str,
    status: Option<i16>,
    body: Option<Vec<u8>>,
) -> Result<Claim, ApiError> {
    match outcome {
        "CLAIMED" => Ok(Claim::Claimed),
        "REUSED" => Err(ApiError::IdempotencyKeyReused),
        "IN_USE" => Err(ApiError::IdempotencyKeyInUse),
        "REPLAY" => match (
            status.and_then(|s| StatusCode::from_u16(s as u16).ok()),
            body,
        ) {
            (Some(status), Some(body)) => Ok(Claim::Replay(StoredResponse {
                status,
                body,
                replayed: true,
            })),
            // The response is stored in the transaction that created the row, so a committed
            // row always has one; a row without it is a bug, not a client error.
            _ => Err(anyhow::anyhow!("idempotency key committed without a response").into()),
        },
        other => Err(anyhow::anyhow!("idempotency_claim said {other}").into()),
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
    sqlx::query!(
        r#"SELECT idempotency_save($1, $2, $3, $4, $5) AS "saved: ()""#,
        request.user.get(),
        request.endpoint.as_str(),
        request.key.as_str(),
        response.status.as_u16() as i16,
        &response.body,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
