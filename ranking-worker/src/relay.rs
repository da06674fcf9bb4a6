//! The ranking consumer: read the log after the ranking's position → apply the batch to Redis
//! and move the position there, in one script (SPEC §4–§5).
//!
//! The position that counts is the one in Redis, written by the script that applies the effect,
//! and moved only from the position the batch starts from (compare-and-set). So a crash at any
//! point leaves effect and position together: the next read starts where the effect ends, and
//! nothing is applied twice. A stale instance's script finds the position moved and writes
//! nothing. If Redis loses data (restarted empty, failed over to a lagging replica), its
//! position is missing or behind Postgres's mirror: the consumer resumes from Redis's own
//! position and re-applies what Redis lost, by itself.

use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use redis::aio::ConnectionManager;
use shared::events::ConcertSoldOut;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::consumer::{Cause, Pause, Sink, Step};
use crate::consumers::{self, RANKING};
use crate::leadership::Leadership;
use crate::log::{self, LogPosition, LogRow};
use crate::moderation;
use crate::ranking::{
    hidden_unloaded, member, ApplyResult, PreparedBatch, Ranking, SinkPosition, StoredPosition,
};

/// How the consumer reads and backs off.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Events per read and per apply script while keeping up (`BATCH_SIZE`); a drain reads
    /// `CATCH_UP_FACTOR` times as many.
    pub batch_size: i64,
    /// First pause after a failure; doubles per consecutive failure up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

/// The mirror in Postgres is moved at most this often while draining (and whenever the
/// consumer catches up): it serves status and lag, not correctness.
const MIRROR_EVERY: Duration = Duration::from_millis(250);

/// While a backlog is drained (the last read filled its batch), reads and scripts take this many
/// times `batch_size` events: each costs the worker, Postgres and Redis less per event (see
/// BENCHMARKS.md), while a consumer keeping up still holds Redis for one `batch_size` script at
/// most.
const CATCH_UP_FACTOR: i64 = 5;

/// What one [`Relay::relay_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows read from the log.
    pub read: usize,
    /// The read filled its batch: more rows are probably waiting.
    pub more: bool,
    /// `ConcertSoldOut` events written to the ranking.
    pub applied: usize,
    /// Events newly recorded as dead letters (undecodable, unknown version).
    pub dead_lettered: usize,
    /// Rows of other event types, which the ranking does not consume.
    pub skipped: usize,
    /// Committed rows exist that may not be read yet: an older transaction still runs.
    pub held_back: bool,
    /// How long the oldest of them has waited, when `held_back`.
    pub held_back_for: Duration,
    /// The position in Redis was not where this consumer left it (another instance moved it, or
    /// Redis lost it); the next step starts from Redis's position.
    pub position_moved: bool,
    /// This step started from a position behind Postgres's mirror (or none): Redis lost data,
    /// and what it lost is being applied again.
    pub resynced: bool,
}

impl Outcome {
    /// Nothing more to read right now.
    pub fn caught_up(&self) -> bool {
        !self.more && !self.held_back && !self.position_moved
    }
}

/// Why a step failed. Never the event's fault: those are dead letters, not errors.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("redis: {0}")]
    Sink(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Log(#[from] sqlx::Error),
    /// Redis is set up in a way that could lose the ranking unnoticed.
    #[error("{0}")]
    UnsafeSink(String),
    /// A heal needs rows the log no longer holds.
    #[error("{0}")]
    LogIncomplete(#[from] crate::retention::SoldOutGone),
}

pub struct Relay {
    /// Reads the log; keeps the mirror and dead letters.
    pool: PgPool,
    /// Where to reconnect to Redis: after a failover the old connection may point at a demoted
    /// node, so failures get a fresh one.
    redis_url: String,
    redis: ConnectionManager,
    ranking: Ranking,
    settings: RelaySettings,
    /// This log's identity, read once.
    log_id: Option<Uuid>,
    /// The position in Redis as this consumer last wrote or read it; `None`: read it again.
    position: Option<SinkPosition>,
    /// The position last written to the mirror, and when.
    mirrored: (LogPosition, Instant),
    /// Which try this step is at applying the batch after the position: 1, plus one per step
    /// that failed since the last success. Logged with each event.
    attempt: u32,
    /// Whether this consumer has dead letters: those applied after all (a newer worker, an old
    /// relay's dead row, a heal re-applying a repaired event) are then resolved.
    dead_letters_recorded: bool,
    /// Whether the last read filled its batch: the next reads `CATCH_UP_FACTOR` times as many.
    catching_up: bool,
    /// While draining, the next batch is read and prepared while Redis applies this one: the
    /// read after the position this batch ends at, started in the background.
    prefetched: Option<(LogPosition, i64, JoinHandle<sqlx::Result<Prepared>>)>,
    /// Writes the `event applied` lines beside the next batch's script.
    applied_log: AppliedLog,
}

/// A batch read from the log and made ready for the apply script.
struct Prepared {
    rows: Vec<LogRow>,
    /// See [`log::Batch::held_back_for`].
    held_back_for: Option<f64>,
    /// The `ConcertSoldOut` events among `rows`, each with its row's index.
    events: Vec<(usize, ConcertSoldOut)>,
    letters: Vec<Letter>,
    /// Rows of other event types, which the ranking does not consume.
    skipped: usize,
    script: PreparedBatch,
}

impl Prepared {
    /// Decodes `batch` and works out its script's arguments: the worker's costliest part of a
    /// batch, done (while draining) as the batch before it runs in Redis.
    fn new(ranking: &Ranking, batch: log::Batch) -> Self {
        let (events, letters, skipped) = decode(&batch.rows);
        let script = ranking.prepare(
            &events
                .iter()
                .map(|(index, event)| (batch.rows[*index].position(), event))
                .collect::<Vec<_>>(),
        );
        Self {
            rows: batch.rows,
            held_back_for: batch.held_back_for,
            events,
            letters,
            skipped,
            script,
        }
    }
}

impl Relay {
    pub fn new(
        pool: PgPool,
        redis_url: &str,
        ranking: Ranking,
        settings: RelaySettings,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            redis_url: redis_url.to_owned(),
            redis: crate::redis_conn::connect(redis_url)?,
            ranking,
            settings,
            log_id: None,
            position: None,
            mirrored: (LogPosition::START, Instant::now()),
            attempt: 1,
            dead_letters_recorded: false,
            catching_up: false,
            prefetched: None,
            applied_log: AppliedLog::start(),
        })
    }

    pub fn batch_size(&self) -> usize {
        self.settings.batch_size as usize
    }

    pub fn settings(&self) -> &RelaySettings {
        &self.settings
    }

    /// The position this consumer works from, if it knows it.
    pub fn position(&self) -> Option<&SinkPosition> {
        self.position.as_ref()
    }

    /// Forgets the cached position, so the next step reads it from Redis: after taking the
    /// consumer over from another instance, or after a failure.
    pub fn forget_position(&mut self) {
        self.position = None;
    }

    /// A fresh Redis connection.
    pub fn reconnect(&mut self) {
        match crate::redis_conn::connect(&self.redis_url) {
            Ok(redis) => self.redis = redis,
            Err(error) => tracing::warn!(%error, "cannot reconnect to Redis"),
        }
    }

    /// Reads one batch after the position and applies it with the position's move, or records
    /// that the position moved under it. Nothing of an event is ever written twice in effect.
    pub async fn relay_once(&mut self) -> Result<Outcome, RelayError> {
        let step = self.step().await;
        self.attempt = if step.is_ok() { 1 } else { self.attempt + 1 };
        step
    }

    async fn step(&mut self) -> Result<Outcome, RelayError> {
        let log_id = match self.log_id {
            Some(id) => id,
            None => *self.log_id.insert(log::log_id(&self.pool).await?),
        };
        let mut outcome = Outcome::default();
        let from = match self.position.clone() {
            Some(position) => position,
            None => {
                let (position, resynced) = self.resume(log_id).await?;
                outcome.resynced = resynced;
                self.position.insert(position).clone()
            }
        };
        let start = from.in_log(log_id).unwrap_or(LogPosition::START);
        let Prepared {
            rows,
            held_back_for,
            events,
            letters,
            skipped,
            script,
        } = self.read(start).await?;
        outcome.read = rows.len();
        outcome.skipped = skipped;
        outcome.more = self.catching_up;
        outcome.held_back = held_back_for.is_some();
        outcome.held_back_for = Duration::from_secs_f64(held_back_for.unwrap_or(0.0).max(0.0));
        metrics::gauge!("outbox_head_held_back_seconds").set(held_back_for.unwrap_or(0.0));
        let Some(last) = rows.last().map(LogRow::position) else {
            // Idle: check Redis still holds this position, so a Redis that lost data is healed
            // without waiting for the next event.
            let stored = self.ranking.position(&mut self.redis).await?;
            if stored.expected() != from.expected() {
                self.position = None;
                outcome.position_moved = true;
            }
            self.mirror(start, true).await?;
            return Ok(outcome);
        };

        // Recorded before the position moves past them: a crash in between meets them again.
        let new_letters = consumers::dead_letter(&self.pool, RANKING, &letters).await?;
        self.dead_letters_recorded |= !letters.is_empty();
        let to = StoredPosition {
            log_id,
            position: last,
        };
        match self.apply(&from, to, &script).await? {
            ApplyResult::Applied => {
                let applied_at = Utc::now();
                self.position = Some(SinkPosition::Stored(to));
                outcome.applied = events.len();
                outcome.dead_lettered = new_letters.len();
                for (event_id, error) in letters.iter().filter(|(id, _)| new_letters.contains(id)) {
                    tracing::error!(%event_id, %error, consumer = RANKING, "event dead-lettered");
                }
                metrics::counter!("consumer_events_applied_total", "consumer" => RANKING)
                    .increment(outcome.applied as u64);
                metrics::counter!("consumer_events_dead_lettered_total", "consumer" => RANKING)
                    .increment(outcome.dead_lettered as u64);
                let applied_ids: Vec<Uuid> = if self.dead_letters_recorded {
                    events
                        .iter()
                        .map(|(index, _)| rows[*index].event_id)
                        .collect()
                } else {
                    Vec::new()
                };
                // Handed over before anything below can fail: the batch is applied whatever
                // happens next, and so gets its lines.
                self.applied_log
                    .write(AppliedBatch {
                        rows,
                        events,
                        attempt: self.attempt,
                        applied_at,
                    })
                    .await;
                if !applied_ids.is_empty() {
                    consumers::resolve_dead_letters(&self.pool, RANKING, &applied_ids).await?;
                }
                self.mirror(last, !outcome.more).await?;
            }
            ApplyResult::PositionMoved(stored) => {
                tracing::info!(expected = %from, found = %stored, "the ranking's position moved; reading it again");
                self.position = None;
                outcome.position_moved = true;
            }
        }
        Ok(outcome)
    }

    /// Applies the batch; if Redis has lost the hidden members (restarted empty), loads them
    /// from Postgres and applies it then, so no hidden entry comes back.
    async fn apply(
        &mut self,
        from: &SinkPosition,
        to: StoredPosition,
        batch: &PreparedBatch,
    ) -> Result<ApplyResult, RelayError> {
        let (ranking, redis) = (&self.ranking, &mut self.redis);
        match ranking.apply_prepared(redis, from, to, batch).await {
            Err(error) if hidden_unloaded(&error) => {
                moderation::load_hidden(&self.pool, redis, ranking).await?;
                Ok(ranking.apply_prepared(redis, from, to, batch).await?)
            }
            applied => Ok(applied?),
        }
    }

    /// Where to resume: Redis's own position. If it is missing, foreign or behind Postgres's
    /// mirror, Redis lost data; say so once, count it, and re-apply from there. Returns the
    /// position and whether it was such a resync.
    async fn resume(&mut self, log_id: Uuid) -> Result<(SinkPosition, bool), RelayError> {
        let policy = crate::redis_conn::eviction_policy(&mut self.redis).await?;
        if let Err(refused) = crate::redis_conn::refuse_evicting_policy(policy.as_deref()) {
            return Err(RelayError::UnsafeSink(refused.to_string()));
        }
        let stored = self.ranking.position(&mut self.redis).await?;
        let mirror = consumers::get(&self.pool, RANKING).await?.position();
        self.dead_letters_recorded = consumers::count_dead_letters(&self.pool, RANKING).await? > 0;
        if let Some(position) = stored.in_log(log_id) {
            if !log::holds(&self.pool, position).await? {
                tracing::error!(
                    consumer = RANKING,
                    redis_position = %stored,
                    "the ranking's position in Redis is not a place in the log as it is now \
                     (Postgres restored to an earlier point, or failed over to a replica that \
                     missed commits); applying the log from its start. The ranking may hold \
                     entries of events Postgres lost: `replay --rebuild` drops them"
                );
                self.refuse_heal_from_incomplete_log(LogPosition::START)
                    .await?;
                metrics::counter!("consumer_resyncs_total", "consumer" => RANKING).increment(1);
                return Ok((stored.unusable(), true));
            }
        }
        let behind = match stored.in_log(log_id) {
            Some(position) => position < mirror,
            None => mirror > LogPosition::START || log_has_rows(&self.pool).await?,
        };
        if behind {
            self.refuse_heal_from_incomplete_log(
                stored.in_log(log_id).unwrap_or(LogPosition::START),
            )
            .await?;
            let why = match &stored {
                SinkPosition::Missing => "the ranking has no position in Redis (a new ranking, or Redis lost data); applying the log from its start",
                SinkPosition::Stored(position) if position.log_id == log_id => "the ranking's position in Redis is behind Postgres's mirror (Redis lost data); re-applying from Redis's position",
                _ => "the ranking's position in Redis is not one of this log's; applying the log from its start",
            };
            tracing::warn!(
                consumer = RANKING,
                redis_position = %stored,
                mirror_position = %mirror,
                "{why}"
            );
            metrics::counter!("consumer_resyncs_total", "consumer" => RANKING).increment(1);
        } else {
            tracing::info!(consumer = RANKING, position = %stored, "resuming from the ranking's position");
        }
        Ok((stored, behind))
    }

    /// A heal re-applies the log after `from`; if `ConcertSoldOut` rows there were deleted (the
    /// database's guard removed), it would silently write a smaller board: refused, loudly,
    /// and retried with the consumer's backoff until the log is whole again.
    async fn refuse_heal_from_incomplete_log(&self, from: LogPosition) -> Result<(), RelayError> {
        match crate::retention::sold_out_kept(&self.pool).await? {
            Err(gone) if from < gone.0.through => {
                tracing::error!(consumer = RANKING, heal_from = %from, error = %gone, "cannot heal the ranking");
                Err(gone.into())
            }
            _ => Ok(()),
        }
    }

    /// Moves the mirror to `position` if it is due (or `now`).
    async fn mirror(&mut self, position: LogPosition, now: bool) -> Result<(), RelayError> {
        let (mirrored, at) = self.mirrored;
        if position > mirrored && (now || at.elapsed() >= MIRROR_EVERY) {
            consumers::advance_mirror(&self.pool, RANKING, position).await?;
            self.mirrored = (position, Instant::now());
        }
        Ok(())
    }

    /// The batch after `start`, prepared: the one read ahead if it starts there, else read now.
    /// A full batch starts the read of the next one, which overlaps this batch's Redis script.
    ///
    /// Reading ahead is safe for the same reason reading is: every row it returns is below the
    /// horizon, so no transaction can still add a row before the last one it returns.
    async fn read(&mut self, start: LogPosition) -> Result<Prepared, RelayError> {
        let (batch, limit) = match self.prefetched.take() {
            Some((from, limit, read)) if from == start => match read.await {
                Ok(batch) => (batch?, limit),
                Err(_aborted) => self.read_now(start).await?,
            },
            other => {
                if let Some((_, _, read)) = other {
                    read.abort();
                }
                self.read_now(start).await?
            }
        };
        self.catching_up = batch.rows.len() as i64 == limit;
        if let (true, Some(last)) = (self.catching_up, batch.rows.last()) {
            let (pool, ranking) = (self.pool.clone(), self.ranking.clone());
            let (next, limit) = (last.position(), self.read_limit());
            let read = tokio::spawn(async move {
                let batch = log::read_after(&pool, next, limit).await?;
                Ok(Prepared::new(&ranking, batch))
            });
            self.prefetched = Some((next, limit, read));
        }
        Ok(batch)
    }

    async fn read_now(&self, start: LogPosition) -> sqlx::Result<(Prepared, i64)> {
        let limit = self.read_limit();
        let batch = log::read_after(&self.pool, start, limit).await?;
        Ok((Prepared::new(&self.ranking, batch), limit))
    }

    /// Rows per read: `batch_size` while keeping up, more while draining a backlog.
    fn read_limit(&self) -> i64 {
        if self.catching_up {
            self.settings.batch_size * CATCH_UP_FACTOR
        } else {
            self.settings.batch_size
        }
    }
}

/// The ranking as a [`Sink`]: its position lives in Redis, moved by the apply script.
impl Sink for Relay {
    fn name(&self) -> &'static str {
        RANKING
    }

    fn batch_size(&self) -> usize {
        Relay::batch_size(self)
    }

    fn retry(&self) -> (Duration, Duration) {
        (self.settings.retry_base, self.settings.retry_cap)
    }

    fn position(&self) -> Option<String> {
        self.position.as_ref().map(ToString::to_string)
    }

    fn forget_position(&mut self) {
        Relay::forget_position(self)
    }

    /// The lock is not needed: the apply script's compare-and-set in Redis fences the position.
    /// A batch is one script, over in milliseconds: it is always finished.
    async fn step(
        &mut self,
        _lock: &mut Leadership,
        _shutdown: &CancellationToken,
    ) -> Result<Step, Pause> {
        let outcome = self.relay_once().await?;
        Ok(Step {
            read: outcome.read,
            more: outcome.more,
            held_back: outcome.held_back,
            held_back_for: outcome.held_back_for,
            position_moved: outcome.position_moved,
            halted: false,
        })
    }

    /// On becoming the active instance: Redis's hidden entries are made Postgres's (a remove or
    /// restore that stopped halfway, a Redis brought back from an older copy), before any batch.
    async fn register(&mut self) -> Result<(), Pause> {
        moderation::reconcile_locked(&self.pool, &mut self.redis, &self.ranking)
            .await
            .map(|_| ())
            .map_err(|error| {
                Pause::other(format!(
                    "cannot reconcile the hidden ranking entries with Postgres: {error:#}"
                ))
            })
    }

    /// A fresh connection is cheap beside the backoff, and after a failover the old one may
    /// point at a demoted node whatever the error says.
    fn recover(&mut self, pause: &Pause) {
        if matches!(pause.cause, Cause::SinkUnavailable { .. }) {
            self.reconnect();
        }
    }
}

impl From<moderation::LoadError> for RelayError {
    fn from(error: moderation::LoadError) -> Self {
        match error {
            moderation::LoadError::Redis(error) => RelayError::Sink(error),
            moderation::LoadError::Postgres(error) => RelayError::Log(error),
        }
    }
}

impl From<RelayError> for Pause {
    fn from(error: RelayError) -> Self {
        let cause = match error {
            RelayError::Sink(_) => Cause::SinkUnavailable { retry_after: None },
            RelayError::Log(_) | RelayError::UnsafeSink(_) | RelayError::LogIncomplete(_) => {
                Cause::Other
            }
        };
        Pause {
            reason: error.to_string(),
            cause,
        }
    }
}

async fn log_has_rows(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM outbox) AS "exists!""#)
        .fetch_one(pool)
        .await
}

/// A dead letter: the event and why the consumer cannot handle it.
type Letter = (Uuid, String);

/// Splits rows into the events the ranking applies (with their rows' indices), the dead letters,
/// and how many rows of other types it skips.
fn decode(rows: &[LogRow]) -> (Vec<(usize, ConcertSoldOut)>, Vec<Letter>, usize) {
    let (mut events, mut letters, mut skipped) = (Vec::with_capacity(rows.len()), Vec::new(), 0);
    for (index, row) in rows.iter().enumerate() {
        if !row.is_sold_out() {
            skipped += 1;
            continue;
        }
        match row.decode_sold_out() {
            Ok(event) => events.push((index, event)),
            Err(error) => letters.push((row.event_id, error)),
        }
    }
    (events, letters, skipped)
}

/// A batch applied, for its `event applied` lines.
struct AppliedBatch {
    rows: Vec<LogRow>,
    events: Vec<(usize, ConcertSoldOut)>,
    attempt: u32,
    /// When its script returned: each line's lag ends there, not when the line is written.
    applied_at: chrono::DateTime<Utc>,
}

/// Writes one `event applied` line per event (SPEC §7), with its commit-to-applied lag, on a
/// thread of its own: formatting them costs the worker about a fifth of a batch, which this way
/// overlaps the next batch's script instead of delaying it. The lines keep the batches' order;
/// a few batches may wait (then the consumer waits for the thread), and those waiting are
/// written before the consumer is dropped.
struct AppliedLog {
    batches: Option<tokio::sync::mpsc::Sender<AppliedBatch>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Batches waiting for their lines before the consumer waits.
const APPLIED_LOG_BACKLOG: usize = 8;

impl AppliedLog {
    fn start() -> Self {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(APPLIED_LOG_BACKLOG);
        let thread = std::thread::Builder::new()
            .name("applied-log".to_owned())
            .spawn(move || {
                while let Some(batch) = receiver.blocking_recv() {
                    log_applied(&batch);
                }
            });
        match thread {
            Ok(thread) => Self {
                batches: Some(sender),
                thread: Some(thread),
            },
            // No thread to spare: the lines are written in line.
            Err(error) => {
                tracing::warn!(%error, "cannot start the applied-events log thread");
                Self {
                    batches: None,
                    thread: None,
                }
            }
        }
    }

    async fn write(&self, batch: AppliedBatch) {
        let unsent = match &self.batches {
            Some(sender) => sender.send(batch).await.err().map(|unsent| unsent.0),
            None => Some(batch),
        };
        if let Some(batch) = unsent {
            log_applied(&batch);
        }
    }
}

impl Drop for AppliedLog {
    fn drop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn log_applied(batch: &AppliedBatch) {
    for (index, event) in &batch.events {
        let row = &batch.rows[*index];
        let lag = (batch.applied_at - row.created_at)
            .to_std()
            .unwrap_or_default();
        metrics::histogram!("consumer_commit_to_applied_seconds", "consumer" => RANKING)
            .record(lag.as_secs_f64());
        tracing::info!(
            event_id = %row.event_id,
            member = %member(event),
            score = event.sold_out_seconds(),
            position = %row.position(),
            attempt = batch.attempt,
            lag_ms = (lag.as_secs_f64() * 10_000.0).round() / 10.0,
            "event applied"
        );
    }
}

/// Capped exponential backoff with jitter: failure n waits between half and all of
/// `min(cap, base · 2^(n-1))`, so retries of one outage spread out instead of arriving together.
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(2u32.saturating_pow(exponent)).min(cap);
    let half = ceiling / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            let first = backoff(1, base, cap);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(3, base, cap);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(50, base, cap);
            assert!(late >= Duration::from_millis(500) && late <= cap);
        }
    }
}
