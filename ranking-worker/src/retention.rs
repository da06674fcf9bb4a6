//! What has been deleted from the log, as the database records it (`outbox_log`, kept by the
//! trigger of migration `20261125180100_outbox_retention.sql` whoever deletes), and the check
//! that the ranking's source is whole.
//!
//! The ranking heals and rebuilds from every `ConcertSoldOut`, so those rows are never pruned
//! and the database refuses to delete one. Should one go all the same (the trigger dropped or
//! disabled), replay and rebuild refuse instead of writing a board that silently lacks it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::log::LogPosition;

/// The pruned-through watermark and what went.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Pruned {
    /// The highest position of a deleted row: rows at or before it may be gone, except those
    /// kept (every `ConcertSoldOut`, rows with open dead letters, rows at a consumer's
    /// position). [`LogPosition::START`]: nothing was ever deleted.
    pub through: LogPosition,
    /// Rows deleted so far.
    pub rows: i64,
    /// `ConcertSoldOut` rows deleted so far: 0 unless someone removed the database's guard.
    pub sold_out_deleted: i64,
    /// When rows were last deleted.
    pub at: Option<DateTime<Utc>>,
}

pub async fn pruned(pool: &PgPool) -> sqlx::Result<Pruned> {
    let row = sqlx::query!(
        r#"SELECT pruned_through_tx::text::bigint AS "tx_id!", pruned_through_seq, pruned_rows,
                  sold_out_deleted, pruned_at
           FROM outbox_log"#
    )
    .fetch_one(pool)
    .await?;
    Ok(Pruned {
        through: LogPosition {
            tx_id: row.tx_id,
            seq: row.pruned_through_seq,
        },
        rows: row.pruned_rows,
        sold_out_deleted: row.sold_out_deleted,
        at: row.pruned_at,
    })
}

/// The log no longer holds every `ConcertSoldOut`: a ranking healed, replayed or rebuilt from
/// it would lack those sell-outs.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} ConcertSoldOut rows were deleted from the outbox (rows up to position {} are pruned, \
     last at {}): the log no longer holds every sell-out, so the ranking cannot be restored \
     from it; refusing rather than shrinking the board",
    .0.sold_out_deleted,
    .0.through,
    .0.at.map_or("-".to_owned(), |at| at.to_rfc3339())
)]
pub struct SoldOutGone(pub Pruned);

/// `Ok(Err(_))` when `ConcertSoldOut` rows have been deleted.
pub async fn sold_out_kept(pool: &PgPool) -> sqlx::Result<Result<(), SoldOutGone>> {
    let pruned = pruned(pool).await?;
    Ok(if pruned.sold_out_deleted > 0 {
        Err(SoldOutGone(pruned))
    } else {
        Ok(())
    })
}
