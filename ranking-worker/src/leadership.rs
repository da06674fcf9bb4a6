//! One active instance per consumer: whoever holds the consumer's session advisory lock.
//!
//! The lock lives on a connection of its own, outside the pool, so it is held exactly as long
//! as that session: Postgres releases it the moment the process dies or its connection drops,
//! and a standby's next try takes it over. A stale active instance (one that lost its session
//! but has not noticed yet) is harmless: the position's compare-and-set in the sink refuses it.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

// The lock's key for the consumer named by `$1` is hashtextextended('outbox consumer ' || $1, 0),
// written out in each statement below (a checked query is one literal): keep them the same.

/// How long a check of the lock's session may take before the session is presumed lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Leadership {
    /// Where to open the lock's own session.
    options: PgConnectOptions,
    /// The consumer whose lock this is.
    consumer: String,
    /// The session holding (or trying for) the lock.
    session: Option<PgConnection>,
}

impl Leadership {
    pub fn new(options: PgConnectOptions, consumer: &str) -> Self {
        // A process that dies closes its socket and Postgres frees the lock at once; a host
        // that vanishes (power, partition) does not, and the server would keep the session and
        // its lock until the OS's TCP keepalive (hours). These make the server notice within
        // about 10 s. Session locks need a direct connection or a session-mode pooler.
        let options = options.options([
            ("tcp_keepalives_idle", "5"),
            ("tcp_keepalives_interval", "2"),
            ("tcp_keepalives_count", "3"),
            ("tcp_user_timeout", "10000"),
        ]);
        Self {
            options,
            consumer: consumer.to_owned(),
            session: None,
        }
    }

    /// Tries once to become the active instance; `Ok(false)`: another instance is.
    pub async fn try_acquire(&mut self) -> sqlx::Result<bool> {
        if self.session.is_none() {
            self.session = Some(PgConnection::connect_with(&self.options).await?);
        }
        let Some(session) = self.session.as_mut() else {
            return Ok(false);
        };
        let acquired = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock(hashtextextended('outbox consumer ' || $1, 0))
                   AS "acquired!""#,
            self.consumer,
        )
        .fetch_one(&mut *session)
        .await;
        if acquired.is_err() {
            self.session = None;
        }
        acquired
    }

    /// Whether the lock's session still answers; if not, it is dropped and the lock presumed
    /// lost (Postgres frees it when it notices the session is gone).
    pub async fn still_held(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let answered = tokio::time::timeout(CHECK_TIMEOUT, session.ping()).await;
        if matches!(answered, Ok(Ok(()))) {
            return true;
        }
        self.session = None;
        false
    }

    /// The session holding the lock, if any. A consumer whose position lives in Postgres moves
    /// it on this session: once the session is gone (and with it the lock), so is the move.
    pub fn session(&mut self) -> Option<&mut PgConnection> {
        self.session.as_mut()
    }

    /// Gives the consumer up, so a standby takes over at once.
    pub async fn release(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = tokio::time::timeout(CHECK_TIMEOUT, session.close()).await;
        }
    }
}

/// Whether some instance holds `consumer` right now (for `status`, from any process).
pub async fn is_held(pool: &sqlx::PgPool, consumer: &str) -> sqlx::Result<bool> {
    // pg_locks shows a bigint advisory key as its high (classid) and low (objid) halves.
    sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objsubid = 1
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND (classid::bigint << 32) | objid::bigint
                     = hashtextextended('outbox consumer ' || $1, 0)) AS "held!""#,
        consumer,
    )
    .fetch_one(pool)
    .await
}

/// Takes the consumer's lock for the rest of the caller's transaction, if no instance holds it
/// (`false` otherwise): no instance becomes active on `consumer` until that transaction ends.
/// For operator commands that must not race the active instance.
pub async fn try_lock_for_transaction(
    conn: &mut sqlx::PgConnection,
    consumer: &str,
) -> sqlx::Result<bool> {
    // Transaction and session advisory locks on one key conflict across sessions.
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock(hashtextextended('outbox consumer ' || $1, 0))
               AS "acquired!""#,
        consumer,
    )
    .fetch_one(&mut *conn)
    .await
}
