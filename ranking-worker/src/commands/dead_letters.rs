//! `dead-letters list` and `dead-letters retry`.
//!
//! A retry applies the event again behind the consumer's position. For the ranking that is
//! safe because every write of an event is absolute (`ZADD`/`HSET` of values taken from the
//! payload alone): an event applied twice leaves the ranking as once. The webhook delivers it
//! again, and its receiver dedupes by the event id.

use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::consumers::{self, DeadLetter};
use crate::log;
use crate::ranking::Ranking;
use crate::webhook::verdict::Verdict;
use crate::webhook::{Delivery, WEBHOOK};

/// Dead letters of every consumer, or of `consumer` (an error naming the known consumers if
/// there is none of that name: a typo must not look like "no dead letters").
pub async fn list(pool: &PgPool, consumer: Option<&str>) -> anyhow::Result<Vec<DeadLetter>> {
    if let Some(name) = consumer {
        super::consumers::known(pool, name).await?;
    }
    Ok(consumers::dead_letters(pool, consumer).await?)
}

/// What a retry did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryReport {
    /// Decoded now and applied to the ranking (or delivered to the webhook's receiver); no
    /// longer dead letters.
    pub applied: u64,
    /// Still undecodable (or refused by the receiver): kept, with the error this retry met.
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

/// Applies one dead letter of the ranking again, or all of them with `None`. Asking for an
/// event that is not a dead letter is an error, so a typo in an id is not silently ignored.
pub async fn retry(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    consumer: &str,
    event_id: Option<Uuid>,
) -> anyhow::Result<RetryReport> {
    let mut report = RetryReport::default();
    for row in letters_to_retry(pool, consumer, event_id).await? {
        match row.decode_sold_out() {
            Ok(event) => {
                crate::moderation::restore(pool, redis, ranking, &[&event]).await?;
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

/// Delivers one dead letter of the webhook again (signed afresh), or all of them in log order
/// with `None`, outside the consumer's position: the receiver dedupes by event id. A refusal
/// keeps the letter with the new answer; an unavailable, misconfigured or gone receiver stops
/// the retry with its error, keeping every letter not yet delivered.
pub async fn retry_webhook(
    pool: &PgPool,
    delivery: &Delivery,
    event_id: Option<Uuid>,
) -> anyhow::Result<RetryReport> {
    let mut report = RetryReport::default();
    for row in letters_to_retry(pool, WEBHOOK, event_id).await? {
        let event = match row.decode_sold_out() {
            Ok(event) => event,
            Err(error) => {
                consumers::update_dead_letter(pool, WEBHOOK, row.event_id, &error).await?;
                report.still_dead += 1;
                continue;
            }
        };
        let attempt = delivery.post(&event).await;
        match attempt.verdict {
            Verdict::Delivered => {
                consumers::resolve_dead_letters(pool, WEBHOOK, &[row.event_id]).await?;
                tracing::info!(event_id = %row.event_id, consumer = WEBHOOK, status = %attempt.status, "dead letter delivered");
                report.applied += 1;
            }
            Verdict::Refused => {
                consumers::update_dead_letter(pool, WEBHOOK, row.event_id, &attempt.error).await?;
                report.still_dead += 1;
            }
            Verdict::Unavailable { .. } | Verdict::Misconfigured | Verdict::Gone => {
                anyhow::bail!(
                    "{} (event {}); {report} so far, the rest kept",
                    attempt.error,
                    row.event_id
                )
            }
        }
    }
    Ok(report)
}

/// `consumer`'s dead letters to retry, in log order: all, or the one asked for.
async fn letters_to_retry(
    pool: &PgPool,
    consumer: &str,
    event_id: Option<Uuid>,
) -> anyhow::Result<Vec<log::LogRow>> {
    let letters: Vec<Uuid> = consumers::dead_letters(pool, Some(consumer))
        .await?
        .into_iter()
        .map(|letter| letter.event_id)
        .filter(|id| event_id.is_none_or(|wanted| *id == wanted))
        .collect();
    if let (Some(event_id), true) = (event_id, letters.is_empty()) {
        anyhow::bail!("event {event_id} is not a dead letter of the {consumer} consumer");
    }
    Ok(log::rows_by_id(pool, &letters).await?)
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
