//! `dead-letters list` and `dead-letters retry`.
//!
//! A retry applies the event again behind the consumer's position. That is safe because every
//! write of an event is absolute (`ZADD`/`HSET` of values taken from the payload alone): an
//! event applied twice leaves the ranking as once.

use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::consumers::{self, DeadLetter};
use crate::log;
use crate::ranking::Ranking;

pub async fn list(pool: &PgPool, consumer: Option<&str>) -> anyhow::Result<Vec<DeadLetter>> {
    Ok(consumers::dead_letters(pool, consumer).await?)
}

/// What a retry did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryReport {
    /// Decoded now and applied to the ranking; no longer dead letters.
    pub applied: u64,
    /// Still undecodable: kept, with the error this retry met.
    pub still_dead: u64,
}

impl std::fmt::Display for RetryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "applied {}, still dead {}",
            self.applied, self.still_dead
        )
    }
}

/// Applies one dead letter of `consumer` again, or all of them with `None`. Asking for an event
/// that is not a dead letter is an error, so a typo in an id is not silently ignored.
pub async fn retry(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    consumer: &str,
    event_id: Option<Uuid>,
) -> anyhow::Result<RetryReport> {
    let letters: Vec<Uuid> = consumers::dead_letters(pool, Some(consumer))
        .await?
        .into_iter()
        .map(|letter| letter.event_id)
        .filter(|id| event_id.is_none_or(|wanted| *id == wanted))
        .collect();
    if let (Some(event_id), true) = (event_id, letters.is_empty()) {
        anyhow::bail!("event {event_id} is not a dead letter of the {consumer} consumer");
    }
    let mut report = RetryReport::default();
    for row in log::rows_by_id(pool, &letters).await? {
        match row.decode_sold_out() {
            Ok(event) => {
                ranking.restore(redis, &[&event]).await?;
                consumers::resolve_dead_letters(pool, consumer, &[row.event_id]).await?;
                tracing::info!(event_id = %row.event_id, consumer, "dead letter applied");
                report.applied += 1;
            }
            Err(error) => {
                consumers::update_dead_letter(pool, consumer, row.event_id, &error).await?;
                report.still_dead += 1;
            }
        }
    }
    Ok(report)
}

/// A table: one line per dead letter.
pub fn render(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters".to_owned();
    }
    let mut out = format!(
        "{:<10}  {:<36}  {:<14}  {:<24}  ERROR\n",
        "CONSUMER", "EVENT ID", "TYPE", "RECORDED AT"
    );
    for letter in letters {
        out.push_str(&format!(
            "{:<10}  {:<36}  {:<14}  {:<24}  {}\n",
            letter.consumer,
            letter.event_id,
            letter.event_type,
            letter
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            letter.error,
        ));
    }
    out.trim_end().to_owned()
}
