//! What Postgres keeps about each consumer: the mirror of its position, the health its active
//! instance reports, and its dead letters (tables `outbox_consumers`, `outbox_dead_letters`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::log::LogPosition;

/// The ranking consumer's name.
pub const RANKING: &str = "ranking";

/// A consumer's row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumerRow {
    pub name: String,
    /// The position (for the ranking: the mirror of Redis's), as [`ConsumerRow::position`].
    #[serde(skip)]
    position_tx: i64,
    #[serde(skip)]
    position_seq: i64,
    pub state: String,
    pub detail: Option<String>,
    pub active_instance: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl ConsumerRow {
    pub fn position(&self) -> LogPosition {
        LogPosition {
            tx_id: self.position_tx,
            seq: self.position_seq,
        }
    }
}

pub async fn get(pool: &PgPool, name: &str) -> sqlx::Result<ConsumerRow> {
    select(pool, Some(name))
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)
}

pub async fn all(pool: &PgPool) -> sqlx::Result<Vec<ConsumerRow>> {
    select(pool, None).await
}

/// The row of `name`, or every row in name order.
async fn select(pool: &PgPool, name: Option<&str>) -> sqlx::Result<Vec<ConsumerRow>> {
    sqlx::query_as!(
        ConsumerRow,
        r#"SELECT name, position_tx::text::bigint AS "position_tx!", position_seq,
                  state, detail, active_instance, updated_at
           FROM outbox_consumers WHERE $1::text IS NULL OR name = $1 ORDER BY name"#,
        name
    )
    .fetch_all(pool)
    .await
}

/// Moves the mirror forward to `position`; never back, so a late write from a slower instance
/// cannot undo a newer one.
pub async fn advance_mirror(pool: &PgPool, name: &str, position: LogPosition) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE outbox_consumers
         SET position_tx = $2::bigint::text::xid8, position_seq = $3, updated_at = now()
         WHERE name = $1 AND (position_tx, position_seq) < ($2::bigint::text::xid8, $3)",
        name,
        position.tx_id,
        position.seq
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records what the active instance is doing, for `status` run from anywhere.
pub async fn report_state(
    pool: &PgPool,
    name: &str,
    state: &str,
    detail: Option<&str>,
    instance: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE outbox_consumers SET state = $2, detail = $3, active_instance = $4, updated_at = now()
         WHERE name = $1",
        name,
        state,
        detail,
        instance
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records dead letters; recording one again changes nothing (a crash between this and the
/// position's move, or a heal, makes the consumer meet the event a second time). Returns the
/// ids that were new.
pub async fn dead_letter(
    pool: &PgPool,
    consumer: &str,
    letters: &[(Uuid, String)],
) -> sqlx::Result<Vec<Uuid>> {
    if letters.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = letters.iter().map(|(id, _)| *id).collect();
    let errors: Vec<&str> = letters.iter().map(|(_, error)| error.as_str()).collect();
    sqlx::query_scalar!(
        "INSERT INTO outbox_dead_letters (consumer, event_id, error)
         SELECT $1, * FROM UNNEST($2::uuid[], $3::text[])
         ON CONFLICT ON CONSTRAINT outbox_dead_letters_pkey DO NOTHING
         RETURNING event_id",
        consumer,
        &ids,
        &errors as &[&str]
    )
    .fetch_all(pool)
    .await
}

/// A dead letter, for `dead-letters list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub consumer: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_id: i64,
    pub error: String,
    pub created_at: DateTime<Utc>,
}

/// Dead letters in log order, of one consumer or all.
pub async fn dead_letters(pool: &PgPool, consumer: Option<&str>) -> sqlx::Result<Vec<DeadLetter>> {
    sqlx::query_as!(
        DeadLetter,
        "SELECT d.consumer, d.event_id, o.event_type, o.aggregate_id, d.error, d.created_at
         FROM outbox_dead_letters d JOIN outbox o USING (event_id)
         WHERE $1::text IS NULL OR d.consumer = $1
         ORDER BY d.consumer, o.tx_id, o.seq",
        consumer
    )
    .fetch_all(pool)
    .await
}

pub async fn count_dead_letters(pool: &PgPool, consumer: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM outbox_dead_letters WHERE consumer = $1"#,
        consumer
    )
    .fetch_one(pool)
    .await
}

/// Forgets dead letters whose events have been handled after all.
pub async fn resolve_dead_letters(
    pool: &PgPool,
    consumer: &str,
    event_ids: &[Uuid],
) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM outbox_dead_letters WHERE consumer = $1 AND event_id = ANY($2)",
        consumer,
        event_ids
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Replaces a dead letter's error with the one its latest retry met.
pub async fn update_dead_letter(
    pool: &PgPool,
    consumer: &str,
    event_id: Uuid,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE outbox_dead_letters SET error = $3 WHERE consumer = $1 AND event_id = $2",
        consumer,
        event_id,
        error
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Why a consumer delivers nothing until `consumers resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltKind {
    /// An operator paused it.
    Paused,
    /// Its sink said to stop (a webhook endpoint answered 410 Gone).
    Disabled,
}

impl HaltKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HaltKind::Paused => "paused",
            HaltKind::Disabled => "disabled",
        }
    }
}

/// A halt in force: what, why and since when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Halt {
    pub kind: HaltKind,
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// The halt in force on `name`, if any (`None` also when there is no such consumer).
pub async fn halt_of(pool: &PgPool, name: &str) -> sqlx::Result<Option<Halt>> {
    let row = sqlx::query!(
        "SELECT halted, halted_reason, halted_at FROM outbox_consumers WHERE name = $1",
        name
    )
    .fetch_optional(pool)
    .await?
    .map(|row| (row.halted, row.halted_reason, row.halted_at));
    Ok(match row {
        Some((Some(kind), Some(reason), Some(since))) => Some(Halt {
            kind: if kind == "disabled" {
                HaltKind::Disabled
            } else {
                HaltKind::Paused
            },
            reason,
            since,
        }),
        _ => None,
    })
}

/// Halts `name` until [`resume`]; an earlier halt's reason is kept. `false`: no such consumer.
pub async fn halt(pool: &PgPool, name: &str, kind: HaltKind, reason: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE outbox_consumers
         SET halted = coalesce(halted, $2), halted_reason = coalesce(halted_reason, $3),
             halted_at = coalesce(halted_at, now()), updated_at = now()
         WHERE name = $1",
        name,
        kind.as_str(),
        reason
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Clears any halt on `name`. `false`: no such consumer.
pub async fn resume(pool: &PgPool, name: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE outbox_consumers
         SET halted = NULL, halted_reason = NULL, halted_at = NULL, updated_at = now()
         WHERE name = $1",
        name
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

// --- Consumers whose position lives here (the webhook): this row's position is the one that
// counts, moved by compare-and-set on the session holding the consumer's lock.

/// Creates `name`'s row if it has none, at the head of the log (the last row readers can see
/// now), or at its start with `from_start`; an existing row is left as it is. `true`: created.
pub async fn register(pool: &PgPool, name: &str, from_start: bool) -> sqlx::Result<bool> {
    let created = sqlx::query!(
        "INSERT INTO outbox_consumers (name, position_tx, position_seq)
         SELECT $1, coalesce(head.tx_id, '0'::xid8), coalesce(head.seq, 0)
         FROM (SELECT 1) AS one
         LEFT JOIN (SELECT tx_id, seq FROM outbox
                    WHERE NOT $2 AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY tx_id DESC, seq DESC LIMIT 1) AS head ON true
         ON CONFLICT ON CONSTRAINT outbox_consumers_pkey DO NOTHING",
        name,
        from_start
    )
    .execute(pool)
    .await?;
    Ok(created.rows_affected() == 1)
}

/// `name`'s position and whether it is halted, read on `executor` (the lock's session).
pub async fn position_of(
    executor: impl sqlx::PgExecutor<'_>,
    name: &str,
) -> sqlx::Result<Option<(LogPosition, bool)>> {
    let row = sqlx::query!(
        r#"SELECT position_tx::text::bigint AS "tx_id!", position_seq, halted IS NOT NULL AS "halted!"
           FROM outbox_consumers WHERE name = $1"#,
        name
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|row| {
        let position = LogPosition {
            tx_id: row.tx_id,
            seq: row.position_seq,
        };
        (position, row.halted)
    }))
}

/// Moves `name`'s position from `from` to `to` if it is still at `from` (compare-and-set), on
/// `executor` (the lock's session: a stale instance, whose session is gone, moves nothing).
/// `None`: the position was elsewhere and nothing moved; `Some(halted)`: moved, and whether the
/// consumer is halted now, so the next delivery needs no query of its own to know.
pub async fn move_position(
    executor: impl sqlx::PgExecutor<'_>,
    name: &str,
    from: LogPosition,
    to: LogPosition,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar!(
        r#"UPDATE outbox_consumers
           SET position_tx = $4::bigint::text::xid8, position_seq = $5, updated_at = now()
           WHERE name = $1 AND (position_tx, position_seq) = ($2::bigint::text::xid8, $3)
           RETURNING halted IS NOT NULL AS "halted!""#,
        name,
        from.tx_id,
        from.seq,
        to.tx_id,
        to.seq
    )
    .fetch_optional(executor)
    .await
}

/// Every consumer's name, in order: for messages that name the known ones.
pub async fn names(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!("SELECT name FROM outbox_consumers ORDER BY name")
        .fetch_all(pool)
        .await
}

/// Locks `name`'s row until the caller's transaction ends and returns its position (`None`:
/// no such consumer). The active instance's next move (by compare-and-set) and prune's next
/// batch wait meanwhile.
pub async fn lock_position(
    conn: &mut sqlx::PgConnection,
    name: &str,
) -> sqlx::Result<Option<LogPosition>> {
    let row = sqlx::query!(
        r#"SELECT position_tx::text::bigint AS "tx_id!", position_seq FROM outbox_consumers
           WHERE name = $1 FOR UPDATE"#,
        name
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| LogPosition {
        tx_id: row.tx_id,
        seq: row.position_seq,
    }))
}

/// Forgets the consumer `name` with its dead letters, on the caller's transaction. Returns
/// how many dead letters went with it, or `None` when there is no such consumer.
pub async fn remove(conn: &mut sqlx::PgConnection, name: &str) -> sqlx::Result<Option<u64>> {
    let letters = sqlx::query!("DELETE FROM outbox_dead_letters WHERE consumer = $1", name)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let removed = sqlx::query!("DELETE FROM outbox_consumers WHERE name = $1", name)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok((removed == 1).then_some(letters))
}
