//! `dead-letters list` and `dead-letters retry`.

use sqlx::PgPool;
use uuid::Uuid;

use crate::queue::{self, DeadLetter};

pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<DeadLetter>> {
    Ok(queue::dead_letters(pool).await?)
}

/// Requeues one dead letter, or all with `None`. Asking for an event that is not dead is an
/// error, so a typo in an id is not silently ignored.
pub async fn retry(pool: &PgPool, event_id: Option<Uuid>) -> anyhow::Result<u64> {
    let requeued = queue::requeue_dead(pool, event_id).await?;
    if let (Some(event_id), 0) = (event_id, requeued) {
        anyhow::bail!("event {event_id} is not dead-lettered");
    }
    Ok(requeued)
}

/// A table: one line per dead letter.
pub fn render(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters".to_owned();
    }
    let mut out = format!(
        "{:<36}  {:<14}  {:>8}  {:<24}  LAST ERROR\n",
        "EVENT ID", "TYPE", "ATTEMPTS", "CREATED AT"
    );
    for letter in letters {
        out.push_str(&format!(
            "{:<36}  {:<14}  {:>8}  {:<24}  {}\n",
            letter.event_id,
            letter.event_type,
            letter.attempts,
            letter
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            letter.last_error.as_deref().unwrap_or("-"),
        ));
    }
    out.trim_end().to_owned()
}
