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

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::consumers;
use crate::log::{self, LogPosition, ReplayFilter};
use crate::moderation::{self, Member, ModerationLock};
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
pub(crate) async fn passed(
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
    let mut rebuild = Rebuild::begin(pool, redis, ranking).await?;
    if let Err(error) = rebuild.fill(pool, redis).await {
        rebuild.discard(redis).await;
        return Err(error);
    }
    rebuild.finish(pool, redis).await
}

/// A `replay --rebuild` in progress: [`Self::begin`], [`Self::fill`], then [`Self::finish`].
pub struct Rebuild {
    /// The live ranking it replaces.
    ranking: Ranking,
    /// Where it is built.
    fresh: Ranking,
    log_id: Uuid,
    /// The live position last read, and the place in the log it stands for.
    live: SinkPosition,
    upto: LogPosition,
    /// Written up to here.
    filled: LogPosition,
    /// Postgres's clock when it began: an entry restored since may be missing from its pages,
    /// written while the entry was still hidden.
    began: DateTime<Utc>,
    progress: ProgressBar,
    report: ReplayReport,
}

impl Rebuild {
    /// Starts a rebuild of `ranking` at its position now.
    pub async fn begin(
        pool: &PgPool,
        redis: &mut ConnectionManager,
        ranking: &Ranking,
    ) -> anyhow::Result<Self> {
        crate::retention::sold_out_kept(pool).await??;
        let all = ReplayFilter::default();
        let (log_id, live, upto) = passed(pool, redis, ranking).await?;
        let progress =
            progress_bar(log::count_sold_out_between(pool, &all, LogPosition::START, upto).await?);
        // Under the lock, so no restore is halfway: one that closed its row before this time
        // had also unhidden its entry in Redis before the first page is written. The hidden
        // entries the pages skip are Postgres's, not whatever Redis holds.
        let mut lock = ModerationLock::acquire(pool, ranking).await?;
        let began = match moderation::reconcile(pool, redis, ranking, &lock).await {
            Ok(_) => lock.now().await.map_err(anyhow::Error::from),
            Err(error) => Err(error),
        };
        lock.release().await;
        let began = began?;
        let fresh = ranking.begin_rebuild(redis).await?;
        Ok(Self {
            ranking: ranking.clone(),
            fresh,
            log_id,
            live,
            upto,
            filled: LogPosition::START,
            began,
            progress,
            report: ReplayReport::default(),
        })
    }

    /// Writes the events up to the live position last read.
    pub async fn fill(
        &mut self,
        pool: &PgPool,
        redis: &mut ConnectionManager,
    ) -> anyhow::Result<()> {
        let fresh = &self.fresh;
        let range = (self.filled, self.upto);
        let filled = for_each_page(
            pool,
            &ReplayFilter::default(),
            range,
            &self.progress,
            async |events| Ok(moderation::restore(pool, redis, fresh, events).await?),
        )
        .await?;
        self.report.matched += filled.matched;
        self.report.skipped += filled.skipped;
        self.filled = self.upto;
        Ok(())
    }

    /// Swaps it in; if the consumer moved on meanwhile, adds what it applied and tries again.
    /// A rebuild that fails is discarded.
    pub async fn finish(
        mut self,
        pool: &PgPool,
        redis: &mut ConnectionManager,
    ) -> anyhow::Result<ReplayReport> {
        let finished = self.swap_when_complete(pool, redis).await;
        if finished.is_err() {
            self.discard(redis).await;
        }
        self.progress.finish_and_clear();
        self.report.ranking_size = Some(finished?);
        Ok(self.report)
    }

    async fn swap_when_complete(
        &mut self,
        pool: &PgPool,
        redis: &mut ConnectionManager,
    ) -> anyhow::Result<u64> {
        loop {
            // Under the lock, no entry is restored or hidden between the last step and the swap.
            let lock = ModerationLock::acquire(pool, &self.ranking).await?;
            let swapped = self.swap_in(pool, redis, &lock).await;
            lock.release().await;
            match swapped? {
                SwapResult::Swapped(size) => return Ok(size),
                SwapResult::RebuildLost => anyhow::bail!(
                    "Redis lost the rebuild while it ran (restarted?); nothing was swapped in, run it again"
                ),
                SwapResult::BoardsKeptChanging => anyhow::bail!(
                    "the period boards kept changing during the swap; nothing was swapped in, run it again"
                ),
                SwapResult::PositionMoved => {}
            }
            // The consumer moved on while the rebuild ran: add what it applied, then try again.
            let after = self.upto;
            (_, self.live, self.upto) = passed(pool, redis, &self.ranking).await?;
            anyhow::ensure!(
                self.upto >= after,
                "the ranking's position went back during the rebuild (Redis lost data); run it again"
            );
            self.fill(pool, redis).await?;
        }
    }

    /// The last step, under the moderation lock: makes Redis's hidden entries Postgres's again,
    /// writes the entries restored since the rebuild began (its pages skipped those still
    /// hidden then; the live ranking has them back), then swaps it in. Entries hidden since,
    /// the swap takes out.
    async fn swap_in(
        &self,
        pool: &PgPool,
        redis: &mut ConnectionManager,
        lock: &ModerationLock,
    ) -> anyhow::Result<SwapResult> {
        let reconciled = moderation::reconcile(pool, redis, &self.ranking, lock).await?;
        let restored = moderation::restored_since(pool, self.began).await?;
        for member in restored.into_iter().chain(reconciled.unhidden) {
            // The table's check admits only members spelled as the boards spell them.
            let Ok(member) = member.parse::<Member>() else {
                continue;
            };
            moderation::reapply(pool, redis, &self.fresh, &member, self.upto).await?;
        }
        let to = StoredPosition {
            log_id: self.log_id,
            position: self.upto,
        };
        Ok(self
            .ranking
            .swap_in(redis, &self.fresh, &self.live, to)
            .await?)
    }

    /// Best effort: a failed rebuild's keys are of no use to anyone.
    async fn discard(&self, redis: &mut ConnectionManager) {
        let _ = self.fresh.discard(redis).await;
    }
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
