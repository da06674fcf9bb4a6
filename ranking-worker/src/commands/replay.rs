//! `replay`: re-apply processed ConcertSoldOut events to the ranking, and `replay --rebuild`.

use indicatif::{ProgressBar, ProgressStyle};
use redis::aio::ConnectionManager;
use serde::Serialize;
use shared::events::ConcertSoldOut;
use sqlx::PgPool;

use crate::queue::{self, ReplayFilter};
use crate::ranking::Ranking;

/// Events read from Postgres and written to Redis per round trip.
const PAGE: i64 = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Processed events the filter matched.
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

/// Walks the matching processed events a page at a time, handing each page to `apply`.
async fn for_each_page<F>(
    pool: &PgPool,
    filter: &ReplayFilter,
    progress: &ProgressBar,
    mut apply: F,
) -> anyhow::Result<ReplayReport>
where
    F: AsyncFnMut(&[&ConcertSoldOut]) -> anyhow::Result<Vec<bool>>,
{
    let mut report = ReplayReport::default();
    let mut after = None;
    loop {
        let rows = queue::processed_sold_out(pool, filter, after, PAGE).await?;
        let Some((created_at, event_id, _)) = rows.last() else {
            break;
        };
        after = Some((*created_at, *event_id));
        report.matched += rows.len() as u64;
        let events: Vec<ConcertSoldOut> = rows
            .iter()
            .filter_map(|(_, event_id, payload)| match serde_json::from_value(payload.clone()) {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(%event_id, %error, "skipping an undecodable processed event");
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
    progress.finish_and_clear();
    Ok(report)
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

/// Re-applies matching processed events. Idempotent: a second run restores nothing.
pub async fn replay(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    filter: &ReplayFilter,
    dry_run: bool,
) -> anyhow::Result<ReplayReport> {
    let progress = progress_bar(queue::count_processed_sold_out(pool, filter).await?);
    for_each_page(pool, filter, &progress, async |events| {
        Ok(if dry_run {
            ranking.differs(redis, events).await?
        } else {
            ranking.restore(redis, events).await?
        })
    })
    .await
}

/// Builds the ranking afresh from every processed event beside the live one, then swaps it
/// in atomically: readers see the old ranking until the new one is complete.
pub async fn rebuild(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
) -> anyhow::Result<ReplayReport> {
    let filter = ReplayFilter::default();
    let progress = progress_bar(queue::count_processed_sold_out(pool, &filter).await?);
    let fresh = ranking.begin_rebuild(redis).await?;
    let mut report = for_each_page(pool, &filter, &progress, async |events| {
        Ok(fresh.restore(redis, events).await?)
    })
    .await?;
    // Measured against the fresh key everything is "restored"; report against the live one.
    report.restored = 0;
    report.unchanged = 0;
    report.ranking_size = Some(ranking.swap_in(redis, &fresh).await?);
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
