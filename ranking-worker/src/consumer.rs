//! A consumer of the log, whatever its sink (SPEC §4): stand by until this instance holds the
//! consumer's lock, then step (read after the position, hand the batch to the sink, move the
//! position) until shutdown or until the hold is lost; pause with capped backoff and jitter
//! while anything is unavailable; deliver nothing while the consumer is halted; report the
//! state to Postgres and `GET /consumers`.
//!
//! What differs between consumers is the [`Sink`]: where its position lives and how a batch
//! is applied. A consumer is a `Sink` plus one line in `worker.rs`, which runs each in a task
//! of its own with its own lock, backoff and connections, so no consumer waits on another.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::consumers::{self, Halt, RANKING};
use crate::health::{ConsumerHealth, Role, State};
use crate::leadership::Leadership;
use crate::relay::backoff;

/// How often a standby tries to take the consumer over: a dead active instance is replaced
/// within this (plus the moment Postgres takes to notice its session is gone).
const TAKEOVER_EVERY: Duration = Duration::from_millis(500);
/// How often the active instance checks that its hold's session is alive.
const CHECK_HOLD_EVERY: Duration = Duration::from_secs(1);
/// How often, at most, the active instance reads whether an operator halted the consumer: a
/// draining consumer steps far more often than that, and a halt needs no faster answer. A
/// sink may also notice a halt itself (the webhook's position update returns it).
const CHECK_HALT_EVERY: Duration = Duration::from_millis(100);
/// While rows wait behind an open transaction, read again after this: they are applied within a
/// millisecond of the transaction's end, not a poll later (its end sends no notification).
const HELD_BACK_REREAD: Duration = Duration::from_millis(1);
/// Once rows have waited this long, the transaction holding them is a long one (a migration, a
/// payment waiting on a lock): read again after a tenth of the wait so far, up to the cap,
/// rather than a thousand times a second for as long as it runs.
const HELD_BACK_LONG: Duration = Duration::from_millis(100);
const HELD_BACK_REREAD_CAP: Duration = Duration::from_millis(50);
/// The longest wait a receiver's `Retry-After` can ask for.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// Where a consumer's events go, and where its position lives.
pub trait Sink: Send {
    /// The consumer's name: its row in `outbox_consumers`, its lock, its metrics' label.
    fn name(&self) -> &'static str;

    /// Rows read per step while keeping up (shown when the consumer starts).
    fn batch_size(&self) -> usize;

    /// First pause after a failure, and its cap.
    fn retry(&self) -> (Duration, Duration);

    /// The position this consumer works from, if it knows it (for `GET /consumers`).
    fn position(&self) -> Option<String>;

    /// Forgets the cached position, so the next step reads it from where it is kept: after
    /// taking the consumer over from another instance, or after a failure.
    fn forget_position(&mut self);

    /// Reads one batch after the position, hands it to the sink and moves the position.
    /// `lock` is the session holding the consumer's lock: a sink whose position lives in
    /// Postgres moves it there, so only the holder can. A sink whose events take long to hand
    /// over (a slow receiver) stops at `shutdown`, leaving the position where its last handed
    /// event is: SIGTERM must not wait for a whole batch of timeouts.
    fn step(
        &mut self,
        lock: &mut Leadership,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<Step, Pause>> + Send;

    /// Makes sure the consumer's row exists, before this instance reports its state there: the
    /// ranking's comes with the migrations; a new webhook consumer's is made at the log's head.
    fn register(&mut self) -> impl Future<Output = Result<(), Pause>> + Send {
        async { Ok(()) }
    }

    /// After a failed step, before the backoff: e.g. a fresh connection to the sink.
    fn recover(&mut self, _pause: &Pause) {}
}

/// What one step did, as the loop needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Rows read from the log.
    pub read: usize,
    /// The read filled its batch (which may be larger than `batch_size` while draining): more
    /// rows are probably waiting, so the loop steps again at once.
    pub more: bool,
    /// Committed rows exist that may not be read yet: an older transaction still runs.
    pub held_back: bool,
    /// How long the oldest of them has waited, when `held_back`.
    pub held_back_for: Duration,
    /// The position was not where this instance left it; the next step reads it again.
    pub position_moved: bool,
    /// The sink noticed the consumer is halted (or halted it itself).
    pub halted: bool,
}

/// Why a step failed. Never an event's fault: those are dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// What failed, as the WARN line and `status` say it.
    pub reason: String,
    pub cause: Cause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The sink does not answer (Redis down; a webhook receiver's 5xx, 408, 429, timeout):
    /// counted in `consumer_sink_unavailable_seconds_total`. Waits at least `retry_after`.
    SinkUnavailable { retry_after: Option<Duration> },
    /// The sink refuses this consumer as configured (a webhook receiver's 401 or 403): an
    /// operator must act, so it is an ERROR line, retried with the same backoff.
    Misconfigured,
    /// Anything else: Postgres unavailable, an unsafe sink, the lock's session lost.
    Other,
}

impl Pause {
    pub fn other(reason: impl std::fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            cause: Cause::Other,
        }
    }
}

/// What a consumer's loop needs beside its sink.
pub struct ConsumerRun {
    pub pool: PgPool,
    pub leadership: Leadership,
    pub health: ConsumerHealth,
    /// Who this instance is, in `status`.
    pub instance: String,
    /// Woken by the payment transaction's NOTIFY.
    pub wake: Arc<Notify>,
    pub poll_interval: Duration,
}

/// Runs the consumer until `shutdown`; a batch in hand is always finished.
pub async fn run<S: Sink>(mut sink: S, mut run: ConsumerRun, shutdown: CancellationToken) {
    let name = sink.name();
    tracing::info!(
        consumer = name,
        batch_size = sink.batch_size(),
        poll_interval_ms = run.poll_interval.as_millis() as u64,
        instance = %run.instance,
        "consumer started; standing by until it holds the consumer"
    );
    while !shutdown.is_cancelled() {
        run.health.set_role(Role::Standby);
        if !stand_by(name, &mut run, &shutdown).await {
            break;
        }
        tracing::info!(consumer = name, instance = %run.instance, "this instance is now the active consumer");
        run.health.set_role(Role::Active);
        sink.forget_position();
        consume(&mut sink, &mut run, &shutdown).await;
        run.health.set_state(State::Idle);
    }
    run.health.set_role(Role::Stopped);
    if run.leadership.still_held().await {
        report(name, &run, State::Idle).await;
        run.leadership.release().await;
    }
    tracing::info!(consumer = name, "consumer stopped");
}

/// Waits until this instance holds the consumer (`true`) or shutdown (`false`).
async fn stand_by(name: &str, run: &mut ConsumerRun, shutdown: &CancellationToken) -> bool {
    let mut told = false;
    loop {
        match run.leadership.try_acquire().await {
            Ok(true) => return true,
            Ok(false) if !told => {
                tracing::info!(consumer = name, "another instance is active; standing by");
                told = true;
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(consumer = name, %error, "cannot reach Postgres to take the consumer; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(TAKEOVER_EVERY) => {}
        }
    }
}

/// Steps while this instance holds the consumer.
async fn consume<S: Sink>(sink: &mut S, run: &mut ConsumerRun, shutdown: &CancellationToken) {
    let name = sink.name();
    let (mut failures, mut paused_at) = (0u32, None::<Instant>);
    let mut hold_checked = Instant::now();
    let mut held_back_since = None::<Instant>;
    let mut halt_checked = None::<Instant>;
    let mut halted = None::<Halt>;
    if let Err(pause) = sink.register().await {
        tracing::warn!(consumer = name, error = %pause.reason, "cannot register the consumer; retrying");
        let (base, cap) = sink.retry();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(backoff(1, base, cap)) => {}
        }
        return;
    }
    report(name, run, State::Running).await;
    while !shutdown.is_cancelled() {
        if hold_checked.elapsed() >= CHECK_HOLD_EVERY {
            if !run.leadership.still_held().await {
                tracing::warn!(
                    consumer = name,
                    "lost the hold on the consumer; standing by"
                );
                return;
            }
            hold_checked = Instant::now();
        }
        if halt_checked.is_none_or(|at| at.elapsed() >= CHECK_HALT_EVERY) {
            // Unreadable (Postgres down): the step meets the same failure and pauses.
            if let Ok(halt) = consumers::halt_of(&run.pool, name).await {
                note_halt(name, run, &mut halted, halt).await;
            }
            halt_checked = Some(Instant::now());
        }
        if halted.is_some() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = run.wake.notified() => {}
                _ = tokio::time::sleep(run.poll_interval.min(Duration::from_secs(1))) => {}
            }
            continue;
        }
        let step = sink.step(&mut run.leadership, shutdown).await;
        if let Some(position) = sink.position() {
            run.health.set_position(position);
        }
        let outcome = match step {
            Ok(outcome) => outcome,
            Err(pause) => {
                failures += 1;
                paused_at.get_or_insert_with(Instant::now);
                if failures == 1 {
                    if pause.cause == Cause::Misconfigured {
                        tracing::error!(consumer = name, error = %pause.reason, "consumer paused: the sink refuses it as configured; retrying with backoff");
                    } else {
                        tracing::warn!(consumer = name, error = %pause.reason, "consumer paused; retrying with backoff");
                    }
                    let paused = State::Paused {
                        reason: pause.reason.clone(),
                        since: chrono::Utc::now(),
                    };
                    report(name, run, paused).await;
                }
                sink.recover(&pause);
                sink.forget_position();
                let (base, cap) = sink.retry();
                let mut delay = backoff(failures, base, cap);
                if let Cause::SinkUnavailable {
                    retry_after: Some(wait),
                } = pause.cause
                {
                    delay = delay.max(wait.min(RETRY_AFTER_CAP));
                }
                let slept = Instant::now();
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                if matches!(pause.cause, Cause::SinkUnavailable { .. }) {
                    // A gauge only ever increased: metrics counters are whole numbers.
                    metrics::gauge!("consumer_sink_unavailable_seconds_total", "consumer" => name)
                        .increment(slept.elapsed().as_secs_f64());
                }
                continue;
            }
        };
        if let Some(since) = paused_at.take() {
            tracing::info!(
                consumer = name,
                paused_for_ms = since.elapsed().as_millis() as u64,
                "consumer resumed"
            );
            report(name, run, State::Running).await;
            failures = 0;
        }
        if outcome.halted {
            halt_checked = None;
            continue;
        }
        // Time the log's head spent held back by an open transaction, as seen between steps;
        // counted by the ranking alone, so two consumers do not count the same seconds twice.
        let now = Instant::now();
        if let (true, Some(since), RANKING) = (outcome.held_back, held_back_since, name) {
            metrics::gauge!("outbox_head_held_back_seconds_total")
                .increment(now.duration_since(since).as_secs_f64());
        }
        held_back_since = outcome.held_back.then_some(now);
        if outcome.more || outcome.position_moved {
            continue;
        }
        if outcome.held_back {
            let reread = if outcome.held_back_for < HELD_BACK_LONG {
                HELD_BACK_REREAD
            } else {
                (outcome.held_back_for / 10).min(HELD_BACK_REREAD_CAP)
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(reread.min(run.poll_interval)) => {}
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = run.wake.notified() => {}
            _ = tokio::time::sleep(run.poll_interval) => {}
        }
    }
}

/// Takes note of the halt in force (or none): says so once when it starts or ends, and
/// reports it as the consumer's state.
async fn note_halt(name: &str, run: &ConsumerRun, halted: &mut Option<Halt>, now: Option<Halt>) {
    match (halted.as_ref(), now.as_ref()) {
        (None, Some(halt)) => {
            tracing::warn!(
                consumer = name,
                halted = halt.kind.as_str(),
                reason = %halt.reason,
                "consumer halted; delivering nothing until `ranking-worker consumers resume {name}`"
            );
            let state = State::Paused {
                reason: format!("{}: {}", halt.kind.as_str(), halt.reason),
                since: halt.since,
            };
            report(name, run, state).await;
        }
        (Some(_), None) => {
            tracing::info!(consumer = name, "consumer resumed by an operator");
            report(name, run, State::Running).await;
        }
        _ => {}
    }
    *halted = now;
}

/// Tells Postgres what the active instance is doing: running, paused and why, or stopped.
async fn report(name: &str, run: &ConsumerRun, state: State) {
    let (state_name, detail) = match &state {
        State::Paused { reason, .. } => (state.name(), Some(reason.clone())),
        _ => (state.name(), None),
    };
    run.health.set_state(state);
    if let Err(error) = consumers::report_state(
        &run.pool,
        name,
        state_name,
        detail.as_deref(),
        &run.instance,
    )
    .await
    {
        tracing::debug!(%error, "cannot record the consumer's state in Postgres");
    }
}
