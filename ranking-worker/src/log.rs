//! The outbox as an append-only log (SPEC §4): positions, and every statement that reads rows.
//!
//! A row's position is (the writing transaction's id, a sequence number). Readers see only rows
//! whose transaction id is below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest
//! transaction still running anywhere in the cluster: every transaction below it has ended, and
//! no new one can start below it, so a row that is not visible yet can never appear behind a
//! position already read past. `xid8` has no sqlx type; it crosses as `bigint` through `text`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use shared::events::{ConcertSoldOut, OutboxEvent};
use sqlx::{FromRow, PgPool, Row};
use uuid::Uuid;

/// A place in the log: after the row at (tx_id, seq). [`LogPosition::START`] is before every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct LogPosition {
    pub tx_id: i64,
    pub seq: i64,
}

impl LogPosition {
    pub const START: LogPosition = LogPosition { tx_id: 0, seq: 0 };
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tx_id, self.seq)
    }
}

impl FromStr for LogPosition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = || {
            let (tx_id, seq) = text.split_once('/')?;
            Some(LogPosition {
                tx_id: tx_id.parse().ok()?,
                seq: seq.parse().ok()?,
            })
        };
        parse().ok_or_else(|| format!("not a log position (tx_id/seq): {text:?}"))
    }
}

/// One row of the log, as consumers read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRow {
    pub tx_id: i64,
    pub seq: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: i32,
    /// The payload as JSON text: decoded straight into the event type, no intermediate value.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

impl LogRow {
    pub fn position(&self) -> LogPosition {
        LogPosition {
            tx_id: self.tx_id,
            seq: self.seq,
        }
    }

    /// The row as a `ConcertSoldOut`, or why it is not one this consumer understands.
    pub fn decode_sold_out(&self) -> Result<ConcertSoldOut, String> {
        if self.event_version != ConcertSoldOut::EVENT_VERSION {
            return Err(format!(
                "unsupported event {} v{}",
                self.event_type, self.event_version
            ));
        }
        let event: ConcertSoldOut = serde_json::from_str(&self.payload).map_err(|_| {
            // Decoded again for the error only: it names the offending field's path, e.g.
            // `schedule_id: invalid type`.
            let deserializer = &mut serde_json::Deserializer::from_str(&self.payload);
            match serde_path_to_error::deserialize::<_, ConcertSoldOut>(deserializer) {
                Err(error) => format!("undecodable payload: {error}"),
                Ok(_) => "undecodable payload".to_owned(),
            }
        })?;
        if event.event_id != self.event_id {
            return Err(format!(
                "payload event_id {} differs from the row's",
                event.event_id
            ));
        }
        Ok(event)
    }

    pub fn is_sold_out(&self) -> bool {
        self.event_type == ConcertSoldOut::EVENT_TYPE
    }
}

/// The columns of a [`LogRow`]. The `tx_id` alias shadows the column in ORDER BY: order by
/// `outbox.tx_id, outbox.seq`, or Postgres sorts by the bigint and cannot use the index.
const ROW_COLUMNS: &str = "tx_id::text::bigint AS tx_id, seq, event_id, event_type, event_version,
     payload::text AS payload, created_at";

/// One read of the log.
#[derive(Debug, Default)]
pub struct Batch {
    /// Up to the limit of rows after the position, in position order.
    pub rows: Vec<LogRow>,
    /// How long the first committed row the horizon still hides has waited, in seconds: rows
    /// of transactions that committed while an older one (anywhere in the cluster) still runs.
    /// `None` when no row is held back. Seen in the same snapshot as `rows`, so `None` means
    /// every row committed by then is in `rows` or after them.
    pub held_back_for: Option<f64>,
}

/// Up to `limit` rows after `after`, in position order, that no running transaction can still
/// precede, and whether committed rows wait behind the horizon. A range scan of
/// `outbox_log_position` from `after`, however many rows lie behind it, and one from the
/// horizon to the first held-back row. (Not `min(created_at)` of the held-back rows: Postgres
/// answers that by walking `outbox_created_at` from the oldest row of the whole log until one
/// is held back, every row of it when none is, and a drain read then cost 36 ms instead of 0.7.)
pub async fn read_after(pool: &PgPool, after: LogPosition, limit: i64) -> sqlx::Result<Batch> {
    // One statement, one snapshot: asking about held-back rows in a statement of its own would
    // see a later horizon, and rows that became readable in between would look read.
    let sql = format!(
        "WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
         held AS (SELECT (
             SELECT EXTRACT(EPOCH FROM clock_timestamp() - created_at)::float8 FROM outbox
             WHERE tx_id >= (SELECT xmin FROM horizon)
             ORDER BY outbox.tx_id, outbox.seq
             LIMIT 1) AS held_back_for)
         SELECT batch.*, held.held_back_for FROM held LEFT JOIN LATERAL (
             SELECT {ROW_COLUMNS} FROM outbox
             WHERE (tx_id, seq) > ($1::bigint::text::xid8, $2)
               AND tx_id < (SELECT xmin FROM horizon)
             ORDER BY outbox.tx_id, outbox.seq
             LIMIT $3) batch ON true
         ORDER BY batch.tx_id, batch.seq"
    );
    let records = sqlx::query(&sql)
        .bind(after.tx_id)
        .bind(after.seq)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let held_back_for = match records.first() {
        Some(record) => record.try_get("held_back_for")?,
        None => None,
    };
    let mut rows = Vec::with_capacity(records.len());
    for record in &records {
        // No row after the position: the one record carries only `held_back_for`.
        if record.try_get::<Option<i64>, _>("tx_id")?.is_some() {
            rows.push(LogRow::from_row(record)?);
        }
    }
    Ok(Batch {
        rows,
        held_back_for,
    })
}

/// Whether `position` can be a place in this log as it is now: the row there exists (or lies
/// in the range `prune` deleted from, see `retention::pruned`), and its transaction is not in
/// the future. Not so after Postgres was restored to an earlier point or failed over to a
/// replica that missed commits: transaction ids and sequence numbers are then handed out again,
/// and a consumer keeping the later position would skip the new rows.
pub async fn holds(pool: &PgPool, position: LogPosition) -> sqlx::Result<bool> {
    if position == LogPosition::START {
        return Ok(true);
    }
    sqlx::query_scalar!(
        r#"SELECT (EXISTS (SELECT 1 FROM outbox
                           WHERE tx_id = $1::bigint::text::xid8 AND seq = $2)
                   OR ($1::bigint::text::xid8, $2)
                      <= (SELECT pruned_through_tx, pruned_through_seq FROM outbox_log))
              AND $1::bigint::text::xid8 < pg_snapshot_xmax(pg_current_snapshot()) AS "holds!""#,
        position.tx_id,
        position.seq
    )
    .fetch_one(pool)
    .await
}

/// This log's identity (see the `outbox_log` table).
pub async fn log_id(pool: &PgPool) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!("SELECT log_id FROM outbox_log")
        .fetch_one(pool)
        .await
}

/// How far a consumer at `position` is behind the log's head.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Lag {
    /// Rows after the position (visible or held back).
    pub events: i64,
    /// Age of the oldest of them, in seconds; 0 when there are none.
    pub seconds: f64,
}

pub async fn lag(pool: &PgPool, position: LogPosition) -> sqlx::Result<Lag> {
    sqlx::query_as!(
        Lag,
        r#"SELECT count(*) AS "events!",
                  coalesce(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8, 0)
                    AS "seconds!"
           FROM outbox WHERE (tx_id, seq) > ($1::bigint::text::xid8, $2)"#,
        position.tx_id,
        position.seq
    )
    .fetch_one(pool)
    .await
}

/// The rows the log holds: how many, and the creation times of the oldest and newest.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Retained {
    pub events: i64,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

pub async fn retained(pool: &PgPool) -> sqlx::Result<Retained> {
    sqlx::query_as!(
        Retained,
        r#"SELECT count(*) AS "events!", min(created_at) AS oldest, max(created_at) AS newest
           FROM outbox"#
    )
    .fetch_one(pool)
    .await
}

/// The rows with these event ids, in position order.
pub async fn rows_by_id(pool: &PgPool, event_ids: &[Uuid]) -> sqlx::Result<Vec<LogRow>> {
    let sql =
        format!("SELECT {ROW_COLUMNS} FROM outbox WHERE event_id = ANY($1) ORDER BY outbox.tx_id, outbox.seq");
    sqlx::query_as(&sql).bind(event_ids).fetch_all(pool).await
}

/// Which `ConcertSoldOut` rows a replay covers.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub schedule_id: Option<i64>,
    pub event_id: Option<Uuid>,
}

/// `ConcertSoldOut` rows matching `filter` in position order, after `after` and at most `upto`
/// (what the consumer has passed), at most `limit` of them.
pub async fn sold_out_between(
    pool: &PgPool,
    filter: &ReplayFilter,
    after: LogPosition,
    upto: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<LogRow>> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM outbox {REPLAY_WHERE}
         ORDER BY outbox.tx_id, outbox.seq
         LIMIT $10"
    );
    bind_filter(sqlx::query_as(&sql), filter, after, upto)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// How many rows [`sold_out_between`] will page through.
pub async fn count_sold_out_between(
    pool: &PgPool,
    filter: &ReplayFilter,
    after: LogPosition,
    upto: LogPosition,
) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM outbox {REPLAY_WHERE}");
    let (count,): (i64,) = bind_filter(sqlx::query_as(&sql), filter, after, upto)
        .fetch_one(pool)
        .await?;
    Ok(count)
}

/// The replay filter, parameters $1 to $9 (bound by [`bind_filter`]).
const REPLAY_WHERE: &str = "
    WHERE event_type = $1
      AND ($2::timestamptz IS NULL OR created_at >= $2)
      AND ($3::timestamptz IS NULL OR created_at < $3)
      AND ($4::bigint IS NULL OR aggregate_id = $4)
      AND ($5::uuid IS NULL OR event_id = $5)
      AND (tx_id, seq) > ($6::bigint::text::xid8, $7)
      AND (tx_id, seq) <= ($8::bigint::text::xid8, $9)";

type PgQueryAs<'q, T> = sqlx::query::QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>;

fn bind_filter<'q, T>(
    query: PgQueryAs<'q, T>,
    filter: &ReplayFilter,
    after: LogPosition,
    upto: LogPosition,
) -> PgQueryAs<'q, T> {
    query
        .bind(ConcertSoldOut::EVENT_TYPE)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.schedule_id)
        .bind(filter.event_id)
        .bind(after.tx_id)
        .bind(after.seq)
        .bind(upto.tx_id)
        .bind(upto.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_then_sequence_and_round_trip_as_text() {
        let early = LogPosition { tx_id: 7, seq: 90 };
        let late = LogPosition { tx_id: 8, seq: 3 };
        assert!(LogPosition::START < early && early < late);
        assert_eq!("8/3".parse::<LogPosition>(), Ok(late));
        assert_eq!(late.to_string(), "8/3");
        assert!("8".parse::<LogPosition>().is_err());
        assert!("a/3".parse::<LogPosition>().is_err());
    }
}
