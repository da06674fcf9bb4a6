//! The Postgres pool and the schema migrator.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseArgs;

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

/// A pool that connects lazily, so a service starts (and reports not-ready) while Postgres is
/// still coming up instead of crashing.
pub fn connect_lazy(args: &DatabaseArgs) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = args.database_url.parse()?;
    Ok(pool_options(args.database_max_connections).connect_lazy_with(options))
}

/// Whether Postgres answers a trivial query.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
