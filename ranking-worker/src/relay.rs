//! The relay: claim a batch of outbox rows → apply them to the Redis ranking → ack them.
//!
//! An event is marked PROCESSED only after Redis accepted it. A crash between the two leaves
//! the row PROCESSING until its lease expires; the next claim applies it again, and the
//! ranking's applied-event record turns that second application into a counted no-op.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use redis::aio::ConnectionManager;
use shared::events::{ConcertSoldOut, OutboxEvent};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::queue::{self, Claimed, Failure};
use crate::ranking::{member, Ranking};

/// How the relay claims and retries.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub batch_size: i64,
    /// How long a claim is held before another worker may take the rows over.
    pub lease: Duration,
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

/// What one [`Relay::relay_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub claimed: usize,
    pub applied: usize,
    /// Already applied before (redelivery): acked without a second effect.
    pub duplicates: usize,
    pub retried: usize,
    pub dead_lettered: usize,
}

pub struct Relay {
    pool: PgPool,
    redis: ConnectionManager,
    ranking: Ranking,
    settings: RelaySettings,
}

/// A claimed row and what decoding its payload gave.
struct Decoded {
    row: Claimed,
    event: Result<ConcertSoldOut, String>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        redis: ConnectionManager,
        ranking: Ranking,
        settings: RelaySettings,
    ) -> Self {
        Self {
            pool,
            redis,
            ranking,
            settings,
        }
    }

    /// Claims one batch and carries every row in it to an end state for this attempt:
    /// PROCESSED, PENDING with a retry time, or DEAD.
    pub async fn relay_once(&self) -> anyhow::Result<Outcome> {
        let token = Uuid::new_v4();
        let rows = queue::claim(
            &self.pool,
            self.settings.batch_size,
            self.settings.lease,
            token,
        )
        .await?;
        let applied = self.apply(rows).await;
        let mut outcome = Outcome {
            claimed: applied.claimed,
            ..Outcome::default()
        };

        let acked = applied
            .new
            .iter()
            .chain(&applied.duplicates)
            .copied()
            .collect::<Vec<_>>();
        queue::ack(&self.pool, token, &acked).await?;
        outcome.applied = applied.new.len();
        outcome.duplicates = applied.duplicates.len();
        metrics::counter!("relay_events_applied_total").increment(outcome.applied as u64);
        metrics::counter!("relay_duplicates_suppressed_total").increment(outcome.duplicates as u64);

        let dead = queue::fail(
            &self.pool,
            token,
            &applied.failures,
            self.settings.max_attempts,
        )
        .await?;
        outcome.dead_lettered = dead.len();
        outcome.retried = applied.failures.len() - dead.len();
        for failure in &applied.failures {
            if dead.contains(&failure.event_id) {
                tracing::error!(event_id = %failure.event_id, error = %failure.error, "event dead-lettered");
            } else {
                tracing::warn!(
                    event_id = %failure.event_id, error = %failure.error,
                    retry_in_ms = failure.retry_in.as_millis() as u64, "event will be retried"
                );
            }
        }
        metrics::counter!("relay_events_retried_total").increment(outcome.retried as u64);
        metrics::counter!("relay_events_dead_lettered_total")
            .increment(outcome.dead_lettered as u64);
        Ok(outcome)
    }

    /// Applies claimed rows to Redis, one round trip for the batch. Nothing is acked here.
    async fn apply(&self, rows: Vec<Claimed>) -> Applied {
        let claimed = rows.len();
        let decoded: Vec<Decoded> = rows.into_iter().map(decode).collect();
        let mut failures = Vec::new();
        let mut events = Vec::new();
        for item in &decoded {
            match &item.event {
                Ok(event) => events.push((&item.row, event)),
                Err(error) => failures.push(self.failure(&item.row, error.clone())),
            }
        }
        let (mut new, mut duplicates) = (Vec::new(), Vec::new());
        let batch: Vec<&ConcertSoldOut> = events.iter().map(|(_, event)| *event).collect();
        let mut redis = self.redis.clone();
        match self.ranking.apply(&mut redis, &batch).await {
            Ok(flags) => {
                for ((row, event), was_new) in events.iter().zip(flags) {
                    if was_new {
                        log_applied(row, event);
                        new.push(row.event_id);
                    } else {
                        tracing::info!(event_id = %row.event_id, member = %member(event), "duplicate suppressed");
                        duplicates.push(row.event_id);
                    }
                }
            }
            Err(error) => {
                let error = format!("redis: {error}");
                failures.extend(
                    events
                        .iter()
                        .map(|(row, _)| self.failure(row, error.clone())),
                );
            }
        }
        Applied {
            claimed,
            new,
            duplicates,
            failures,
        }
    }

    fn failure(&self, row: &Claimed, error: String) -> Failure {
        Failure {
            event_id: row.event_id,
            retry_in: backoff(
                row.attempts,
                self.settings.retry_base,
                self.settings.retry_cap,
            ),
            error,
        }
    }

    pub fn batch_size(&self) -> usize {
        self.settings.batch_size as usize
    }
}

struct Applied {
    claimed: usize,
    new: Vec<Uuid>,
    duplicates: Vec<Uuid>,
    failures: Vec<Failure>,
}

/// Decodes a row's payload. Failing is not final: a newer worker may understand a newer
/// version, so an undecodable event is retried like any failure and dead-lettered at the end.
fn decode(row: Claimed) -> Decoded {
    let event = if row.event_type != ConcertSoldOut::EVENT_TYPE
        || row.event_version != ConcertSoldOut::EVENT_VERSION
    {
        Err(format!(
            "unsupported event {} v{}",
            row.event_type, row.event_version
        ))
    } else {
        // The error names the offending field's path, e.g. `event_id: UUID parsing failed`.
        serde_path_to_error::deserialize::<_, ConcertSoldOut>(row.payload.clone())
            .map_err(|error| format!("undecodable payload: {error}"))
            .and_then(|event| {
                if event.event_id == row.event_id {
                    Ok(event)
                } else {
                    Err(format!(
                        "payload event_id {} differs from the row's",
                        event.event_id
                    ))
                }
            })
    };
    Decoded { row, event }
}

fn log_applied(row: &Claimed, event: &ConcertSoldOut) {
    let lag = (Utc::now() - row.created_at).to_std().unwrap_or_default();
    metrics::histogram!("relay_commit_to_applied_seconds").record(lag.as_secs_f64());
    tracing::info!(
        event_id = %row.event_id,
        member = %member(event),
        score = event.sold_out_seconds(),
        attempt = row.attempts,
        lag_ms = (lag.as_secs_f64() * 10_000.0).round() / 10.0,
        "event applied"
    );
}

/// Capped exponential backoff with jitter: attempt n waits between half and all of
/// `min(cap, base · 2^(n-1))`, so retries of one outage spread out instead of arriving together.
pub fn backoff(attempt: i32, base: Duration, cap: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
    let ceiling = base.saturating_mul(2u32.saturating_pow(exponent)).min(cap);
    let half = ceiling / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

/// Runs the relay until `shutdown`: a batch, then the next one at once if the batch was full,
/// else wait for a notification or the poll interval. A batch in hand is always finished.
pub async fn run(
    relay: Relay,
    wake: Arc<Notify>,
    poll_interval: Duration,
    shutdown: CancellationToken,
) {
    tracing::info!(
        batch_size = relay.batch_size(),
        poll_interval_ms = poll_interval.as_millis() as u64,
        "relay started"
    );
    while !shutdown.is_cancelled() {
        match relay.relay_once().await {
            Ok(outcome) if outcome.claimed == relay.batch_size() => continue,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "relay step failed; retrying after the poll interval")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
    }
    tracing::info!("relay stopped");
}

/// Wakes the relay on every outbox notification. `Notify` keeps at most one pending wake-up,
/// so a burst of notifications becomes one claim. After a lost connection it reconnects and
/// wakes the relay once, since notifications sent meanwhile are gone (the poll would also
/// catch them).
pub async fn listen_for_wakeups(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    const RECONNECT_DELAY: Duration = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(shared::outbox::NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for outbox notifications; polling meanwhile");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT_DELAY) => continue,
                }
            }
        };
        wake.notify_one();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                notification = listener.try_recv() => match notification {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => {
                        tracing::warn!("LISTEN connection lost; reconnecting");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
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
