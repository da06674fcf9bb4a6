//! Wake-ups: LISTEN for the payment transaction's `pg_notify` on a connection of its own.
//!
//! The listener does not take a connection from the worker's pool, so even a pool of one
//! cannot be starved by it. sqlx offers no TCP keepalive, and a silently dead socket would
//! never deliver another notification: the listener is probed with a query whenever it has
//! been quiet for a while, and reconnected if the probe fails.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::Executor;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Quiet this long, the listener is probed.
const PROBE_WHEN_QUIET_FOR: Duration = Duration::from_secs(10);
/// A probe not answered within this is a dead connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Wakes each consumer's `wake` on every outbox notification until `shutdown`. `Notify` keeps
/// at most one pending wake-up, so a burst of notifications becomes one read. After a
/// reconnect it wakes the consumers once, since notifications sent meanwhile are gone (the
/// poll would also catch them).
pub async fn listen_for_wakeups(
    options: PgConnectOptions,
    wakes: Vec<Arc<Notify>>,
    shutdown: CancellationToken,
) {
    // One Notify per consumer: notify_one wakes a single waiter, and each consumer must wake.
    let wake = || wakes.iter().for_each(|wake| wake.notify_one());
    while !shutdown.is_cancelled() {
        let listener = async {
            // A pool of one of its own: PgListener reconnects through a pool.
            let own = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options.clone());
            let mut listener = PgListener::connect_with(&own).await?;
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
        wake();
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = tokio::time::timeout(PROBE_WHEN_QUIET_FOR, listener.try_recv()) => received,
            };
            match received {
                Ok(Ok(Some(_))) => wake(),
                Ok(Ok(None)) => {
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    wake();
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "LISTEN failed; reconnecting");
                    break;
                }
                Err(_quiet) => {
                    let probe = tokio::time::timeout(PROBE_TIMEOUT, listener.execute("SELECT 1"));
                    if !matches!(probe.await, Ok(Ok(_))) {
                        tracing::warn!("LISTEN connection does not answer; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
