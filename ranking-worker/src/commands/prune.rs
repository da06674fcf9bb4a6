//! `prune --before T [--dry-run]`: deletes log rows created before T that every consumer has
//! passed and none retains, a batch per short transaction.
//!
//! Kept, whatever their age:
//! - every `ConcertSoldOut`: the ranking heals and rebuilds from all of them (one per schedule;
//!   the database refuses to delete one, see `retention`);
//! - rows after any consumer's position (a lagging, paused or disabled consumer holds them back;
//!   the report names it), and the row at a consumer's position;
//! - rows with open dead letters (they reference the row; `dead-letters retry` or
//!   `consumers remove` resolves them, and the next prune takes the row).
//!
//! Each batch reads the consumers' positions `FOR SHARE` in its own transaction: a consumer
//! moved back meanwhile (`consumers reset`) waits for the batch, and the next batch sees it, so
//! no row a consumer is about to read again is deleted. A batch looks at a bounded stretch of
//! the log, so no transaction holds its locks for long, however much of the log is kept.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use shared::events::{ConcertSoldOut, OutboxEvent};
use sqlx::PgPool;

use crate::consumers::HaltKind;
use crate::log::LogPosition;

/// Log rows looked at per batch (and transaction).
const BATCH: i64 = 1_000;

/// Event types a consumer rebuilds from, kept forever: the ranking's.
const RETAINED_TYPES: &[&str] = &[ConcertSoldOut::EVENT_TYPE];

/// The parts of "row `o` may go", over parameters $1 to $4 (bound by [`bind`]): created
/// before $1; of a type some consumer retains ($2); at or before every consumer's position
/// ($3/$4; NULL: there is no consumer); at a consumer's position; with a dead letter.
const CREATED_BEFORE: &str = "o.created_at < $1";
const RETAINED: &str = "o.event_type = ANY($2)";
const PASSED: &str = "($3::bigint IS NULL OR (o.tx_id, o.seq) <= ($3::bigint::text::xid8, $4))";
const AT_POSITION: &str = "EXISTS (SELECT 1 FROM outbox_consumers c
                                   WHERE c.position_tx = o.tx_id AND c.position_seq = o.seq)";
const DEAD_LETTERED: &str =
    "EXISTS (SELECT 1 FROM outbox_dead_letters d WHERE d.event_id = o.event_id)";

fn prunable() -> String {
    format!(
        "{CREATED_BEFORE} AND NOT {RETAINED} AND {PASSED} AND NOT {AT_POSITION} \
         AND NOT {DEAD_LETTERED}"
    )
}

type PgQueryAs<'q, T> = sqlx::query::QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>;

fn bind<'q, T>(
    query: PgQueryAs<'q, T>,
    before: DateTime<Utc>,
    horizon: Option<LogPosition>,
) -> PgQueryAs<'q, T> {
    query
        .bind(before)
        .bind(RETAINED_TYPES)
        .bind(horizon.map(|h| h.tx_id))
        .bind(horizon.map_or(0, |h| h.seq))
}

/// What a prune did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PruneReport {
    pub before: DateTime<Utc>,
    pub dry_run: bool,
    /// Rows deleted (with `--dry-run`: that would be).
    pub pruned: i64,
    /// Rows created before T that stay, and why.
    pub kept: Kept,
    /// Consumers whose position holds rows created before T back, lowest position first.
    pub held_back_by: Vec<HeldBack>,
    /// The log's pruned-through watermark after this run.
    pub pruned_through: LogPosition,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
pub struct Kept {
    /// `ConcertSoldOut` rows: the ranking rebuilds from them.
    pub retained: i64,
    /// Rows some consumer has not passed yet.
    pub not_consumed: i64,
    /// Rows with open dead letters.
    pub dead_lettered: i64,
    /// Rows a consumer's position names.
    pub at_positions: i64,
}

/// A consumer that has not passed rows created before T.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBack {
    pub consumer: String,
    pub position: LogPosition,
    /// paused or disabled, if it is halted.
    pub halted: Option<HaltKind>,
    /// Rows created before T (of types no consumer retains) after its position.
    pub rows: i64,
}

impl std::fmt::Display for HeldBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at {}", self.consumer, self.position)?;
        if let Some(kind) = self.halted {
            write!(f, ", {}", kind.as_str())?;
        }
        write!(f, "; {} rows)", self.rows)
    }
}

/// Nothing could be pruned, and a consumer is why.
#[derive(Debug, thiserror::Error)]
#[error(
    "nothing pruned: the {rows} rows created before {before} that could go are not consumed yet \
     by {consumers}; wait for it (`consumers resume NAME` if paused), or `consumers remove NAME` \
     if it is no longer configured",
    before = .before.to_rfc3339_opts(SecondsFormat::Millis, true),
    consumers = .held_back_by.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
)]
pub struct HeldBackByConsumer {
    pub before: DateTime<Utc>,
    pub rows: i64,
    pub held_back_by: Vec<HeldBack>,
}

pub async fn prune(
    pool: &PgPool,
    before: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<PruneReport> {
    let (prunable, _) = census(pool, before).await?;
    let pruned = if dry_run {
        prunable
    } else {
        delete_prunable(pool, before).await?
    };
    let (_, kept) = census(pool, before).await?;
    let held_back_by = held_back_by(pool, before).await?;
    if pruned == 0 && kept.not_consumed > 0 {
        return Err(HeldBackByConsumer {
            before,
            rows: kept.not_consumed,
            held_back_by,
        }
        .into());
    }
    Ok(PruneReport {
        before,
        dry_run,
        pruned,
        kept,
        held_back_by,
        pruned_through: crate::retention::pruned(pool).await?.through,
    })
}

/// The lowest consumer position, `None` when there is no consumer.
async fn horizon(conn: &mut sqlx::PgConnection, lock: bool) -> sqlx::Result<Option<LogPosition>> {
    // FOR SHARE: a consumer moved back (`consumers reset`) waits until this transaction ends.
    let positions: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT position_tx::text::bigint, position_seq FROM outbox_consumers {}",
        if lock { "FOR SHARE" } else { "" }
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(positions
        .into_iter()
        .map(|(tx_id, seq)| LogPosition { tx_id, seq })
        .min())
}

/// Deletes in batches, each its own transaction over the next `BATCH` rows of the log in
/// position order (up to the horizon), so every batch is short however many rows are kept.
async fn delete_prunable(pool: &PgPool, before: DateTime<Utc>) -> sqlx::Result<i64> {
    let mut after = LogPosition::START;
    let mut deleted = 0;
    loop {
        let mut tx = pool.begin().await?;
        let horizon = horizon(&mut tx, true).await?;
        // The next stretch of the log the consumers have all passed, and the rows of it that
        // may go. `stretch` is read once (a CTE named twice is materialised).
        let sql = format!(
            "WITH stretch AS (
                 SELECT o.event_id, o.tx_id, o.seq, ({}) AS prunable FROM outbox o
                 WHERE (o.tx_id, o.seq) > ($5::bigint::text::xid8, $6) AND {PASSED}
                 ORDER BY o.tx_id, o.seq
                 LIMIT $7),
             gone AS (
                 DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM stretch WHERE prunable)
                 RETURNING 1),
             last AS (
                 SELECT tx_id::text::bigint AS tx_id, seq FROM stretch
                 ORDER BY stretch.tx_id DESC, stretch.seq DESC LIMIT 1)
             SELECT (SELECT tx_id FROM last), (SELECT seq FROM last), (SELECT count(*) FROM gone)",
            prunable()
        );
        let (last_tx, last_seq, gone): (Option<i64>, Option<i64>, i64) =
            bind(sqlx::query_as(&sql), before, horizon)
                .bind(after.tx_id)
                .bind(after.seq)
                .bind(BATCH)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        deleted += gone;
        match (last_tx, last_seq) {
            (Some(tx_id), Some(seq)) => after = LogPosition { tx_id, seq },
            _ => return Ok(deleted),
        }
        if gone > 0 {
            tracing::debug!(deleted, through = %after, "pruned a batch");
        }
    }
}

/// The rows created before `before`: how many may go, and why the others are kept.
async fn census(pool: &PgPool, before: DateTime<Utc>) -> sqlx::Result<(i64, Kept)> {
    let mut conn = pool.acquire().await?;
    let horizon = horizon(&mut conn, false).await?;
    let sql = format!(
        "SELECT count(*) FILTER (WHERE NOT retained AND passed AND NOT dead AND NOT at_position),
                count(*) FILTER (WHERE retained),
                count(*) FILTER (WHERE NOT retained AND NOT passed),
                count(*) FILTER (WHERE NOT retained AND passed AND dead),
                count(*) FILTER (WHERE NOT retained AND passed AND NOT dead AND at_position)
         FROM (SELECT {RETAINED} AS retained, {PASSED} AS passed, {DEAD_LETTERED} AS dead,
                      {AT_POSITION} AS at_position
               FROM outbox o WHERE {CREATED_BEFORE}) AS old"
    );
    let (prunable, retained, not_consumed, dead_lettered, at_positions) =
        bind(sqlx::query_as(&sql), before, horizon)
            .fetch_one(&mut *conn)
            .await?;
    Ok((
        prunable,
        Kept {
            retained,
            not_consumed,
            dead_lettered,
            at_positions,
        },
    ))
}

async fn held_back_by(pool: &PgPool, before: DateTime<Utc>) -> anyhow::Result<Vec<HeldBack>> {
    let rows = sqlx::query!(
        r#"SELECT c.name, c.position_tx::text::bigint AS "tx_id!", c.position_seq, c.halted,
                  (SELECT count(*) FROM outbox o
                   WHERE o.created_at < $1 AND o.event_type <> ALL($2)
                     AND (o.tx_id, o.seq) > (c.position_tx, c.position_seq)) AS "held!"
           FROM outbox_consumers c
           ORDER BY c.position_tx, c.position_seq, c.name"#,
        before,
        RETAINED_TYPES as &[&str]
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|row| row.held > 0)
        .map(|row| HeldBack {
            consumer: row.name,
            position: LogPosition {
                tx_id: row.tx_id,
                seq: row.position_seq,
            },
            halted: match row.halted.as_deref() {
                Some("paused") => Some(HaltKind::Paused),
                Some(_) => Some(HaltKind::Disabled),
                None => None,
            },
            rows: row.held,
        })
        .collect())
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let before = self.before.to_rfc3339_opts(SecondsFormat::Millis, true);
        if self.dry_run {
            write!(
                f,
                "dry run: would prune {} rows created before {before}",
                self.pruned
            )?;
        } else {
            write!(
                f,
                "pruned {} rows created before {before}; the log is pruned through {}",
                self.pruned, self.pruned_through
            )?;
        }
        let kept = &self.kept;
        write!(
            f,
            "\nkept {} ConcertSoldOut rows (the ranking heals and rebuilds from them)",
            kept.retained
        )?;
        if kept.not_consumed > 0 {
            let consumers: Vec<String> =
                self.held_back_by.iter().map(ToString::to_string).collect();
            write!(
                f,
                "\nkept {} rows not consumed yet, held back by {}",
                kept.not_consumed,
                consumers.join(", ")
            )?;
        }
        if kept.dead_lettered > 0 {
            write!(
                f,
                "\nkept {} rows with open dead letters (`dead-letters list`)",
                kept.dead_lettered
            )?;
        }
        if kept.at_positions > 0 {
            write!(
                f,
                "\nkept {} rows at a consumer's position",
                kept.at_positions
            )?;
        }
        Ok(())
    }
}
