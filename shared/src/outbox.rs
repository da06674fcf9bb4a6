//! Writing to the transactional outbox. This is the only Rust code that inserts outbox rows;
//! payment-svc's payments write their `ConcertSoldOut` row inside the statement that pays, with
//! the SQL function `outbox_enqueue_concert_sold_out`
//! (migrations/20261126110000_pay_in_one_statement.sql), which writes the same row and
//! notification as [`enqueue`] does.

use sqlx::PgConnection;

use crate::events::OutboxEvent;

/// The `LISTEN`/`NOTIFY` channel that wakes the relay when an event is committed (also named
/// in `outbox_enqueue_concert_sold_out`).
pub const NOTIFY_CHANNEL: &str = "outbox_ready";

/// Inserts `event` into the outbox and notifies the relay, on the caller's transaction.
///
/// Both take effect only if that transaction commits: Postgres delivers a notification at
/// commit and drops it on rollback, so a rolled-back payment leaves neither row nor wake-up.
pub async fn enqueue<E: OutboxEvent>(tx: &mut PgConnection, event: &E) -> Result<(), sqlx::Error> {
    insert_without_wakeup(tx, event).await?;
    // The payload names the event for whoever reads it; the relay only needs the wake-up.
    sqlx::query!(
        "SELECT pg_notify($1, $2)",
        NOTIFY_CHANNEL,
        event.event_id().to_string()
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Inserts `event` without waking the relay, which then finds it only at its next poll.
/// Writers use [`enqueue`]; this half exists for measuring a poll-only relay.
pub async fn insert_without_wakeup<E: OutboxEvent>(
    tx: &mut PgConnection,
    event: &E,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query!(
        "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
         VALUES ($1, $2, $3, $4, $5)",
        event.event_id(),
        E::EVENT_TYPE,
        E::EVENT_VERSION,
        event.aggregate_id(),
        payload
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
