//! The Postgres pool and the schema migrator.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// The schema, embedded at compile time from the workspace's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a request waits for a free connection before the service answers 503: long enough
/// to ride out a burst, short enough that a dead database is reported rather than queued behind.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Pool options every service uses; tests start from these too.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// Whether Postgres answers a trivial query.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
