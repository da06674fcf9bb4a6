//! Transactions as this service's SQL expects them.

use sqlx::{PgPool, Postgres, Transaction};

/// Begins a transaction at READ COMMITTED, whatever the server's or database's default.
///
/// The design relies on it: a payment that waited for its schedule's row lock goes on with the
/// count the previous payment committed, and a request that waited for another's
/// Idempotency-Key reads the response it saved. Under REPEATABLE READ both would fail with a
/// serialization error instead, a 500; naming the level in `BEGIN` costs no round trip.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
}
