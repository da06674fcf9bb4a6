//! `replay`: re-apply ConcertSoldOut events the ranking has passed, and `replay --rebuild`.
//!
//! Both read the log up to the ranking's position (Redis's, or Postgres's mirror when Redis has
//! none): what lies beyond is the consumer's to apply. Both refuse when `ConcertSoldOut` rows
//! have been deleted from the log (`retention::sold_out_kept`): what they would write would
//! silently lack those sell-outs.

use indicatif::{ProgressBar, ProgressStyle};
use redis::aio::ConnectionManager;
use serde::Serialize;
use shared::events::ConcertSoldOut;
use sqlx::PgPool;

use uuid::Uuid;

use crate::consumers;
use crate::log::{self, LogPosition, ReplayFilter};
use crate::moderation;
use crate::ranking::{Ranking, SinkPosition, StoredPosition, SwapResult};

/// Events read from Postgres and written to Redis per round trip.
const PAGE: i64 = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Events the filter matched.
    pub matched: u64,
    /// Events whose member, score or details were missing or different, now restored
    /// (with --dry-run: that would be restored).
    pub restored: u64,
    /// Events the ranking already held exactly.
    pub unchanged: u64,
    /// Matched rows whose payload could not be decoded, left alone.
    pub skipped: u64,
    /// Ranking size after a rebuild.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking_size: Option<u64>,
}

/// Walks the matching events in `(after, upto]` a page at a time, handing each page to `apply`.
async fn for_each_page<F>(
    pool: &PgPool,
    filter: &ReplayFilter,
    (after, upto): (LogPosition, LogPosition),
    progress: &ProgressBar,
    mut apply: F,
) -> anyhow::Result<ReplayReport>
where
    F: AsyncFnMut(&[&ConcertSoldOut]) -> anyhow::Result<Vec<bool>>,
{
    let mut report = ReplayReport::default();
    let mut after = after;
    loop {
        let rows = log::sold_out_between(pool, filter, after, upto, PAGE).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.position();
        report.matched += rows.len() as u64;
        let events: Vec<ConcertSoldOut> = rows
            .iter()
            .filter_map(|row| match row.decode_sold_out() {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(event_id = %row.event_id, %error, "skipping an undecodable event");
                    None
                }
            })
            .collect();
        report.skipped += (rows.len() - events.len()) as u64;
        let changed = apply(&events.iter().collect::<Vec<_>>()).await?;
        let restored = changed.iter().filter(|c| **c).count() as u64;
        report.restored += restored;
        report.unchanged += changed.len() as u64 - restored;
        progress.inc(rows.len() as u64);
    }
    Ok(report)
}

/// How far the ranking has read the log: Redis's position, or the mirror when Redis has none
/// of this log's.
async fn passed(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
) -> anyhow::Result<(Uuid, SinkPosition, LogPosition)> {
    let log_id = log::log_id(pool).await?;
    let stored = ranking.position(redis).await?;
    let upto = match stored.in_log(log_id) {
        Some(position) => position,
        None => consumers::get(pool, consumers::RANKING).await?.position(),
    };
    Ok((log_id, stored, upto))
}

fn progress_bar(total: i64) -> ProgressBar {
    // Drawn on stderr only when it is a terminal, so scripts and --json output stay clean.
    let bar = ProgressBar::new(total.max(0) as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// Re-applies matching events the ranking has passed. Idempotent: a second run restores nothing.
pub async fn replay(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    filter: &ReplayFilter,
    dry_run: bool,
) -> anyhow::Result<ReplayReport> {
    crate::retention::sold_out_kept(pool).await??;
    let (_, _, upto) = passed(pool, redis, ranking).await?;
    let range = (LogPosition::START, upto);
    let progress = progress_bar(log::count_sold_out_between(pool, filter, range.0, range.1).await?);
    let report = for_each_page(pool, filter, range, &progress, async |events| {
        Ok(if dry_run {
            ranking.differs(redis, events).await?
        } else {
            moderation::restore(pool, redis, ranking, events).await?
        })
    })
    .await;
    progress.finish_and_clear();
    report
}

/// Builds the ranking afresh from every event it has passed beside the live one, then swaps it
/// in atomically with the position it covers: readers see the old ranking until the new one is
/// complete. Events the consumer applies meanwhile are added to the rebuild before the swap,
/// which happens only if the live position is still the one the rebuild reached.
pub async fn rebuild(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
) -> anyhow::Result<ReplayReport> {
    crate::retention::sold_out_kept(pool).await??;
    let all = ReplayFilter::default();
    let (log_id, mut live, mut upto) = passed(pool, redis, ranking).await?;
    let progress =
        progress_bar(log::count_sold_out_between(pool, &all, LogPosition::START, upto).await?);
    let fresh = ranking.begin_rebuild(redis).await?;
    let mut after = LogPosition::START;
    let mut report = ReplayReport::default();
    let built = loop {
        let caught_up = for_each_page(pool, &all, (after, upto), &progress, async |events| {
            Ok(moderation::restore(pool, redis, &fresh, events).await?)
        })
        .await;
        let caught_up = match caught_up {
            Ok(caught_up) => caught_up,
            Err(error) => break Err(error),
        };
        report.matched += caught_up.matched;
        report.skipped += caught_up.skipped;
        let to = StoredPosition {
            log_id,
            position: upto,
        };
        match ranking.swap_in(redis, &fresh, &live, to).await? {
            SwapResult::Swapped(size) => {
                report.ranking_size = Some(size);
                break Ok(());
            }
            SwapResult::RebuildLost => break Err(anyhow::anyhow!(
                "Redis lost the rebuild while it ran (restarted?); nothing was swapped in, run it again"
            )),
            SwapResult::PositionMoved => {}
        }
        // The consumer moved on while the rebuild ran: add what it applied, then try again.
        after = upto;
        (_, live, upto) = passed(pool, redis, ranking).await?;
        if upto < after {
            break Err(anyhow::anyhow!(
                "the ranking's position went back during the rebuild (Redis lost data); run it again"
            ));
        }
    };
    if built.is_err() {
        // Best effort: a failed rebuild's keys are of no use to anyone.
        let _ = fresh.discard(redis).await;
    }
    built?;
    progress.finish_and_clear();
    Ok(report)
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ranking_size {
            Some(size) => write!(
                f,
                "rebuilt from {} events; ranking size {size}",
                self.matched
            )?,
            None => write!(
                f,
                "matched {}, restored {}, unchanged {}",
                self.matched, self.restored, self.unchanged
            )?,
        }
        if self.skipped > 0 {
            write!(f, ", skipped {} undecodable", self.skipped)?;
        }
        Ok(())
    }
}
