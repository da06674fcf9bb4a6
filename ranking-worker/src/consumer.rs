//! Running the ranking consumer: stand by until this instance holds it, then read and apply
//! until shutdown or until the hold is lost; pause with backoff while anything is unavailable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::consumers::{self, RANKING};
use crate::health::{ConsumerHealth, Role, State};
use crate::leadership::Leadership;
use crate::relay::{backoff, Relay, RelayError};

/// How often a standby tries to take the consumer over: a dead active instance is replaced
/// within this (plus the moment Postgres takes to notice its session is gone).
const TAKEOVER_EVERY: Duration = Duration::from_millis(500);
/// How often the active instance checks that its hold's session is alive.
const CHECK_HOLD_EVERY: Duration = Duration::from_secs(1);
/// While rows wait behind an open transaction, read again after this: they are applied within a
/// millisecond of the transaction's end, not a poll later (its end sends no notification).
const HELD_BACK_REREAD: Duration = Duration::from_millis(1);
/// Once rows have waited this long, the transaction holding them is a long one (a migration, a
/// payment waiting on a lock): read again after a tenth of the wait so far, up to the cap,
/// rather than a thousand times a second for as long as it runs.
const HELD_BACK_LONG: Duration = Duration::from_millis(100);
const HELD_BACK_REREAD_CAP: Duration = Duration::from_millis(50);

/// What the consumer loop needs beside the relay.
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
pub async fn run(mut relay: Relay, mut run: ConsumerRun, shutdown: CancellationToken) {
    tracing::info!(
        consumer = RANKING,
        batch_size = relay.batch_size(),
        poll_interval_ms = run.poll_interval.as_millis() as u64,
        instance = %run.instance,
        "consumer started; standing by until it holds the consumer"
    );
    while !shutdown.is_cancelled() {
        run.health.set_role(Role::Standby);
        if !stand_by(&mut run, &shutdown).await {
            break;
        }
        tracing::info!(consumer = RANKING, instance = %run.instance, "this instance is now the active consumer");
        run.health.set_role(Role::Active);
        relay.forget_position();
        consume(&mut relay, &mut run, &shutdown).await;
        run.health.set_state(State::Idle);
    }
    run.health.set_role(Role::Stopped);
    if run.leadership.still_held().await {
        report(&run, State::Idle).await;
        run.leadership.release().await;
    }
    tracing::info!(consumer = RANKING, "consumer stopped");
}

/// Waits until this instance holds the consumer (`true`) or shutdown (`false`).
async fn stand_by(run: &mut ConsumerRun, shutdown: &CancellationToken) -> bool {
    let mut told = false;
    loop {
        match run.leadership.try_acquire().await {
            Ok(true) => return true,
            Ok(false) if !told => {
                tracing::info!(
                    consumer = RANKING,
                    "another instance is active; standing by"
                );
                told = true;
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(consumer = RANKING, %error, "cannot reach Postgres to take the consumer; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(TAKEOVER_EVERY) => {}
        }
    }
}

/// Reads and applies while this instance holds the consumer.
async fn consume(relay: &mut Relay, run: &mut ConsumerRun, shutdown: &CancellationToken) {
    let (mut failures, mut paused_at) = (0u32, None::<Instant>);
    let mut hold_checked = Instant::now();
    let mut held_back_since = None::<Instant>;
    report(run, State::Running).await;
    while !shutdown.is_cancelled() {
        if hold_checked.elapsed() >= CHECK_HOLD_EVERY {
            if !run.leadership.still_held().await {
                tracing::warn!(
                    consumer = RANKING,
                    "lost the hold on the consumer; standing by"
                );
                return;
            }
            hold_checked = Instant::now();
        }
        let step = relay.relay_once().await;
        if let Some(position) = relay.position() {
            run.health.set_position(position.to_string());
        }
        let outcome = match step {
            Ok(outcome) => outcome,
            Err(error) => {
                failures += 1;
                paused_at.get_or_insert_with(Instant::now);
                if failures == 1 {
                    tracing::warn!(consumer = RANKING, %error, "consumer paused; retrying with backoff");
                    let paused = State::Paused {
                        reason: error.to_string(),
                        since: chrono::Utc::now(),
                    };
                    report(run, paused).await;
                }
                // A fresh connection is cheap beside the backoff, and after a failover the old
                // one may point at a demoted node whatever the error says.
                if matches!(error, RelayError::Sink(_)) {
                    relay.reconnect();
                }
                relay.forget_position();
                let delay = backoff(
                    failures,
                    relay.settings().retry_base,
                    relay.settings().retry_cap,
                );
                let slept = Instant::now();
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                if matches!(error, RelayError::Sink(_)) {
                    // A gauge only ever increased: metrics counters are whole numbers.
                    metrics::gauge!("consumer_sink_unavailable_seconds_total", "consumer" => RANKING)
                        .increment(slept.elapsed().as_secs_f64());
                }
                continue;
            }
        };
        if let Some(since) = paused_at.take() {
            tracing::info!(
                consumer = RANKING,
                paused_for_ms = since.elapsed().as_millis() as u64,
                "consumer resumed"
            );
            report(run, State::Running).await;
            failures = 0;
        }
        // Time the log's head spent held back by an open transaction, as seen between steps.
        let now = Instant::now();
        if let (true, Some(since)) = (outcome.held_back, held_back_since) {
            metrics::gauge!("outbox_head_held_back_seconds_total")
                .increment(now.duration_since(since).as_secs_f64());
        }
        held_back_since = outcome.held_back.then_some(now);
        if outcome.read == relay.batch_size() || outcome.position_moved {
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

/// Tells Postgres what the active instance is doing: running, paused and why, or stopped.
async fn report(run: &ConsumerRun, state: State) {
    let (name, detail) = match &state {
        State::Paused { reason, .. } => (state.name(), Some(reason.clone())),
        _ => (state.name(), None),
    };
    run.health.set_state(state);
    if let Err(error) =
        consumers::report_state(&run.pool, RANKING, name, detail.as_deref(), &run.instance).await
    {
        tracing::debug!(%error, "cannot record the consumer's state in Postgres");
    }
}
