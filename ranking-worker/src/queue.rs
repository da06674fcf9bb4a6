//! The outbox as the relay's work queue: every SQL statement the worker runs against `outbox`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::events::{ConcertSoldOut, OutboxEvent};
use sqlx::PgPool;
use uuid::Uuid;

/// A row claimed for processing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: i32,
    pub payload: serde_json::Value,
    /// Including this claim.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due rows for `lease`: PENDING rows whose retry time has come, and
/// PROCESSING rows whose lease expired because their worker died.
///
/// SKIP LOCKED lets any number of workers claim at once without waiting on each other; the
/// status, attempt count and lease are set in the same statement, so a claimed row is never
/// visible as unclaimed. The scan uses the partial index `outbox_unfinished_by_due_time`.
pub async fn claim(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
    token: Uuid,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(
        "WITH due AS (
             SELECT event_id FROM outbox
             WHERE status IN ('PENDING', 'PROCESSING') AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE outbox o
         SET status = 'PROCESSING',
             attempts = o.attempts + 1,
             next_attempt_at = now() + make_interval(secs => $2),
             claim_token = $3
         FROM due WHERE o.event_id = due.event_id
         RETURNING o.event_id, o.event_type, o.event_version, o.payload, o.attempts, o.created_at",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(token)
    .fetch_all(pool)
    .await
}

/// Marks applied rows PROCESSED, if this claim still holds them.
pub async fn ack(pool: &PgPool, token: Uuid, event_ids: &[Uuid]) -> sqlx::Result<u64> {
    if event_ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE outbox
         SET status = 'PROCESSED', processed_at = now(), last_error = NULL, claim_token = NULL
         WHERE event_id = ANY($1) AND claim_token = $2 AND status = 'PROCESSING'",
    )
    .bind(event_ids)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A row that could not be applied this time.
#[derive(Debug, Clone)]
pub struct Failure {
    pub event_id: Uuid,
    pub retry_in: Duration,
    pub error: String,
}

/// Schedules failed rows for a retry, or dead-letters those that used up `max_attempts`.
/// Returns the ids that were dead-lettered.
pub async fn fail(
    pool: &PgPool,
    token: Uuid,
    failures: &[Failure],
    max_attempts: i32,
) -> sqlx::Result<Vec<Uuid>> {
    if failures.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = failures.iter().map(|f| f.event_id).collect();
    let delays: Vec<f64> = failures.iter().map(|f| f.retry_in.as_secs_f64()).collect();
    let errors: Vec<&str> = failures.iter().map(|f| f.error.as_str()).collect();
    sqlx::query_scalar(
        "UPDATE outbox o
         SET status = CASE WHEN o.attempts >= $4 THEN 'DEAD' ELSE 'PENDING' END,
             next_attempt_at = now() + make_interval(secs => f.delay),
             last_error = f.error,
             claim_token = NULL
         FROM UNNEST($1::uuid[], $2::float8[], $3::text[]) AS f(event_id, delay, error)
         WHERE o.event_id = f.event_id AND o.claim_token = $5 AND o.status = 'PROCESSING'
         RETURNING CASE WHEN o.status = 'DEAD' THEN o.event_id END",
    )
    .bind(&ids)
    .bind(&delays)
    .bind(&errors)
    .bind(max_attempts)
    .bind(token)
    .fetch_all(pool)
    .await
    .map(|dead: Vec<Option<Uuid>>| dead.into_iter().flatten().collect())
}

/// The backlog, for `status` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize, sqlx::FromRow)]
pub struct Backlog {
    /// Waiting for their first attempt.
    pub pending: i64,
    /// Failed at least once, waiting for a retry.
    pub retrying: i64,
    /// Claimed by a worker right now.
    pub processing: i64,
    /// Out of attempts, waiting for an operator.
    pub dead: i64,
    /// Age of the oldest event that is due and unclaimed, in seconds.
    pub oldest_ready_age_seconds: Option<f64>,
}

pub async fn backlog(pool: &PgPool) -> sqlx::Result<Backlog> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'PENDING' AND attempts = 0) AS pending,
                count(*) FILTER (WHERE status = 'PENDING' AND attempts > 0) AS retrying,
                count(*) FILTER (WHERE status = 'PROCESSING') AS processing,
                count(*) FILTER (WHERE status = 'DEAD') AS dead,
                EXTRACT(EPOCH FROM now() - min(created_at) FILTER (
                    WHERE status = 'PENDING' AND next_attempt_at <= now()))::float8 AS oldest_ready_age_seconds
         FROM outbox WHERE status <> 'PROCESSED'",
    )
    .fetch_one(pool)
    .await
}

/// A dead-lettered event, for `dead-letters list`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_id: i64,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn dead_letters(pool: &PgPool) -> sqlx::Result<Vec<DeadLetter>> {
    sqlx::query_as(
        "SELECT event_id, event_type, aggregate_id, attempts, last_error, created_at
         FROM outbox WHERE status = 'DEAD' ORDER BY created_at, event_id",
    )
    .fetch_all(pool)
    .await
}

/// Requeues dead letters (`None`: all of them) for a fresh set of attempts and wakes the relay.
/// Returns how many were requeued.
pub async fn requeue_dead(pool: &PgPool, event_id: Option<Uuid>) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let requeued = sqlx::query(
        "UPDATE outbox SET status = 'PENDING', attempts = 0, next_attempt_at = now()
         WHERE status = 'DEAD' AND ($1::uuid IS NULL OR event_id = $1)",
    )
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(shared::outbox::NOTIFY_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(requeued)
}

/// Which processed events a replay covers.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub schedule_id: Option<i64>,
    pub event_id: Option<Uuid>,
}

/// Processed `ConcertSoldOut` payloads matching `filter`, a page at a time in commit order:
/// those after `after` (created_at, event_id), at most `limit`.
pub async fn processed_sold_out(
    pool: &PgPool,
    filter: &ReplayFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<(DateTime<Utc>, Uuid, serde_json::Value)>> {
    let sql = format!(
        "SELECT created_at, event_id, payload FROM outbox {REPLAY_WHERE}
           AND ($6::timestamptz IS NULL OR (created_at, event_id) > ($6, $7))
         ORDER BY created_at, event_id
         LIMIT $8"
    );
    bind_filter(sqlx::query_as(&sql), filter)
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// How many events [`processed_sold_out`] will page through.
pub async fn count_processed_sold_out(pool: &PgPool, filter: &ReplayFilter) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM outbox {REPLAY_WHERE}");
    let (count,): (i64,) = bind_filter(sqlx::query_as(&sql), filter)
        .fetch_one(pool)
        .await?;
    Ok(count)
}

/// The replay filter, parameters $1 to $5 (bound by [`bind_filter`]).
const REPLAY_WHERE: &str = "
    WHERE status = 'PROCESSED' AND event_type = $1
      AND ($2::timestamptz IS NULL OR created_at >= $2)
      AND ($3::timestamptz IS NULL OR created_at < $3)
      AND ($4::bigint IS NULL OR aggregate_id = $4)
      AND ($5::uuid IS NULL OR event_id = $5)";

const EVENT_TYPE: &str = <ConcertSoldOut as OutboxEvent>::EVENT_TYPE;

type PgQueryAs<'q, T> = sqlx::query::QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>;

fn bind_filter<'q, T>(query: PgQueryAs<'q, T>, filter: &ReplayFilter) -> PgQueryAs<'q, T> {
    query
        .bind(EVENT_TYPE)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.schedule_id)
        .bind(filter.event_id)
}
