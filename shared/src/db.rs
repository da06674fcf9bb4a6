//! The Postgres pool and the schema migrator.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// The schema, embedded at compile time from the workspace's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a request waits for a free connection before the service answers 503: long enough
/// to ride out a burst, short enough that a dead database is reported rather than queued behind.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle longer than this is pinged before use: after a quiet spell is when
/// Postgres may have restarted or a firewall dropped the socket.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(30);

/// Pool options every service uses; tests start from these too.
///
/// sqlx pings every connection on every acquire by default: a round trip per transaction, a
/// fifth of a payment's. A connection in steady use is known good (a broken one fails its
/// query, and the pool discards it), so only connections that sat idle are pinged.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

/// Whether Postgres answers a trivial query.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
