//! `consumers`: every consumer's position, lag, state and dead letters, and the operator's
//! levers on one: `pause`, `resume`, `remove`, `reset --since`.
//!
//! Everything here reads and writes Postgres only, so it works from any process while the
//! workers run. The ranking's position shown is Postgres's mirror of the one in Redis (at most
//! 250 ms behind while draining; `status` reads Redis's own).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::consumers::{self, ConsumerRow, Halt, HaltKind, RANKING};
use crate::log::{self, Lag, LogPosition};
use crate::retention;

/// A consumer's state as seen from Postgres, whichever instance runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    /// An instance holds it and delivers.
    Active,
    /// An instance holds it but its sink fails (Redis down, webhook receiver unavailable): it
    /// retries with backoff.
    SinkUnavailable,
    /// An operator paused it (`consumers pause`) until `consumers resume`.
    Paused,
    /// Its sink told it to stop (a webhook answering 410 Gone) until `consumers resume`.
    Disabled,
    /// No running instance holds it: none is configured for it, or all are stopped. Standby
    /// instances are not visible here (each one's `GET /consumers` shows its role).
    NoActiveInstance,
}

impl ConsumerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerState::Active => "active",
            ConsumerState::SinkUnavailable => "sink unavailable",
            ConsumerState::Paused => "paused",
            ConsumerState::Disabled => "disabled",
            ConsumerState::NoActiveInstance => "no active instance",
        }
    }

    /// A halt wins (it is the operator's or the sink's word, whatever the instance does); then
    /// whether an instance holds the consumer, and what it last reported.
    pub fn derive(halt: Option<&Halt>, held: bool, reported: &str) -> Self {
        match (halt.map(|halt| halt.kind), held) {
            (Some(HaltKind::Paused), _) => ConsumerState::Paused,
            (Some(HaltKind::Disabled), _) => ConsumerState::Disabled,
            (None, false) => ConsumerState::NoActiveInstance,
            // What `health::State::Paused` is stored as: the instance retries a failing sink.
            (None, true) if reported == "paused" => ConsumerState::SinkUnavailable,
            (None, true) => ConsumerState::Active,
        }
    }
}

/// One line of `consumers`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerView {
    pub name: String,
    /// Its position as Postgres keeps it (for the ranking: the mirror of Redis's).
    pub position: LogPosition,
    pub lag: Lag,
    pub state: ConsumerState,
    /// Why: the halt's reason, or the sink's error.
    pub detail: Option<String>,
    pub halted: Option<Halt>,
    /// The instance that last reported on it.
    pub active_instance: Option<String>,
    pub dead_letters: i64,
}

pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<ConsumerView>> {
    let mut views = Vec::new();
    for row in consumers::all(pool).await? {
        let halted = consumers::halt_of(pool, &row.name).await?;
        let held = crate::leadership::is_held(pool, &row.name).await?;
        let state = ConsumerState::derive(halted.as_ref(), held, &row.state);
        let detail = match (&halted, state) {
            (Some(halt), _) => Some(halt.reason.clone()),
            (None, ConsumerState::SinkUnavailable) => row.detail.clone(),
            _ => None,
        };
        views.push(ConsumerView {
            position: row.position(),
            lag: log::lag(pool, row.position()).await?,
            state,
            detail,
            halted,
            active_instance: row.active_instance,
            dead_letters: consumers::count_dead_letters(pool, &row.name).await?,
            name: row.name,
        });
    }
    Ok(views)
}

/// A table: one line per consumer.
pub fn render(views: &[ConsumerView]) -> String {
    if views.is_empty() {
        return "no consumers".to_owned();
    }
    let name_width = views.iter().map(|v| v.name.len()).max().unwrap_or(0).max(4);
    let positions: Vec<String> = views.iter().map(|v| v.position.to_string()).collect();
    let position_width = positions.iter().map(String::len).max().unwrap_or(0).max(8);
    let mut out = format!(
        "{:<name_width$}  {:<position_width$}  {:>10}  {:>12}  {:<18}  {:>12}  DETAIL\n",
        "NAME", "POSITION", "LAG EVENTS", "LAG SECONDS", "STATE", "DEAD LETTERS"
    );
    for (view, position) in views.iter().zip(&positions) {
        let detail = match (&view.halted, &view.detail) {
            (Some(halt), _) => format!("{} since {}", halt.reason, time(halt.since)),
            (None, Some(detail)) => detail.clone(),
            (None, None) => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<name_width$}  {:<position_width$}  {:>10}  {:>12.3}  {:<18}  {:>12}  {}\n",
            view.name,
            position,
            view.lag.events,
            view.lag.seconds,
            view.state.as_str(),
            view.dead_letters,
            detail,
        ));
    }
    out.trim_end().to_owned()
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The consumer named `name`, or an error naming the known ones.
pub async fn known(pool: &PgPool, name: &str) -> anyhow::Result<ConsumerRow> {
    let names = consumers::names(pool).await?;
    if !names.iter().any(|known| known == name) {
        anyhow::bail!(
            "no consumer named {name:?}; known consumers: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(consumers::get(pool, name).await?)
}

/// Halts `name` until `resume`. Its active instance stops delivering at its next batch.
pub async fn pause(pool: &PgPool, name: &str, reason: &str) -> anyhow::Result<String> {
    known(pool, name).await?;
    if let Some(halt) = consumers::halt_of(pool, name).await? {
        return Ok(format!(
            "{name} is already {} since {} ({}); nothing changed",
            halt.kind.as_str(),
            time(halt.since),
            halt.reason
        ));
    }
    consumers::halt(pool, name, HaltKind::Paused, reason).await?;
    Ok(format!(
        "paused {name}: it delivers nothing until `ranking-worker consumers resume {name}`"
    ))
}

/// Clears a pause, or a sink's disable, on `name`.
pub async fn resume(pool: &PgPool, name: &str) -> anyhow::Result<String> {
    known(pool, name).await?;
    let Some(halt) = consumers::halt_of(pool, name).await? else {
        return Ok(format!("{name} is not paused or disabled; nothing changed"));
    };
    consumers::resume(pool, name).await?;
    Ok(format!(
        "resumed {name} ({} since {}: {})",
        halt.kind.as_str(),
        time(halt.since),
        halt.reason
    ))
}

/// Forgets a consumer that is no longer configured, with its dead letters: otherwise its
/// position would hold back pruning forever. Done under the consumer's lock, so it is refused
/// while an instance runs it, and no instance takes it up until the removal has committed.
/// The ranking is part of every ranking-worker and cannot be removed.
pub async fn remove(pool: &PgPool, name: &str) -> anyhow::Result<String> {
    if name == RANKING {
        anyhow::bail!(
            "the ranking consumer is part of every ranking-worker and cannot be removed; \
             `consumers pause ranking` stops it"
        );
    }
    let row = known(pool, name).await?;
    let mut tx = pool.begin().await?;
    if !crate::leadership::try_lock_for_transaction(&mut tx, name).await? {
        anyhow::bail!(
            "{name} is run by an active instance ({}); stop that instance or remove {name} from \
             its configuration first",
            row.active_instance.as_deref().unwrap_or("unknown")
        );
    }
    let Some(letters) = consumers::remove(&mut tx, name).await? else {
        anyhow::bail!("{name} was removed meanwhile");
    };
    tx.commit().await?;
    Ok(format!(
        "removed {name} (it was at {}) and its {letters} dead letters; it no longer holds back pruning",
        row.position()
    ))
}

/// What `consumers reset` did: which rows the consumer will deliver again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResetReport {
    pub consumer: String,
    pub since: DateTime<Utc>,
    pub from: LogPosition,
    pub to: LogPosition,
    /// Rows after the new position up to the old one: delivered again.
    pub rows: i64,
    pub first: LogPosition,
    pub last: LogPosition,
    /// Those of them created before `since`: log order is commit order, not creation time, so
    /// a transaction that began earlier and committed later lies after the new position.
    pub created_before_since: Vec<(LogPosition, DateTime<Utc>)>,
    /// Rows up to here were pruned: those in the range that are gone cannot be delivered again.
    pub pruned_through: Option<LogPosition>,
}

/// How many rows created before `since` the report lists one by one.
const LISTED: usize = 10;

impl std::fmt::Display for ResetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reset {} from {} to {}: it delivers again the {} rows {} .. {}, from the first \
             created at or after {}",
            self.consumer,
            self.from,
            self.to,
            self.rows,
            self.first,
            self.last,
            time(self.since),
        )?;
        let early = &self.created_before_since;
        if !early.is_empty() {
            let listed: Vec<String> = early
                .iter()
                .take(LISTED)
                .map(|(position, at)| format!("{position} ({})", time(*at)))
                .collect();
            write!(
                f,
                "\n{} of them were created before {} (log order is commit order): {}{}",
                early.len(),
                time(self.since),
                listed.join(", "),
                if early.len() > LISTED { ", ..." } else { "" }
            )?;
        }
        if let Some(through) = self.pruned_through {
            write!(
                f,
                "\nrows up to {through} were pruned: those of this range that are gone are not delivered again"
            )?;
        }
        Ok(())
    }
}

/// Moves `name` back so it delivers again from the first log position whose row was created at
/// or after `since`: to the row before that one. Only ever back; not for the ranking, whose
/// position lives in Redis.
///
/// In one transaction holding the consumer's row: the active instance moves its position by
/// compare-and-set, so its next move waits, then finds the position moved and continues from
/// here instead of overwriting it; and prune's next batch waits too, so the rows this reports
/// are the rows the consumer will read again.
pub async fn reset(pool: &PgPool, name: &str, since: DateTime<Utc>) -> anyhow::Result<ResetReport> {
    if name == RANKING {
        anyhow::bail!(
            "the ranking's position lives in Redis with its effect and is not reset; \
             `ranking-worker replay --since {}` re-applies its events",
            time(since)
        );
    }
    known(pool, name).await?;
    let mut tx = pool.begin().await?;
    let Some(from) = consumers::lock_position(&mut tx, name).await? else {
        anyhow::bail!("{name} was removed meanwhile; nothing changed");
    };
    let Some(first) = first_created_since(&mut tx, since).await? else {
        anyhow::bail!(
            "no log row was created at or after {}; {name}'s position {from} is unchanged",
            time(since)
        );
    };
    let to = position_before(&mut tx, first).await?;
    let covered = covered(&mut tx, to, from, since).await?;
    let (true, Some(last)) = (to < from, covered.last) else {
        anyhow::bail!(
            "{name} has not passed the first row created at or after {} ({first}): its \
             position {from} is unchanged (reset only moves a consumer back)",
            time(since)
        );
    };
    if consumers::move_position(&mut *tx, name, from, to)
        .await?
        .is_none()
    {
        anyhow::bail!("{name}'s position moved meanwhile; nothing changed, try again");
    }
    let pruned = retention::pruned(pool).await?.through;
    tx.commit().await?;
    Ok(ResetReport {
        consumer: name.to_owned(),
        since,
        from,
        to,
        rows: covered.rows,
        first,
        last,
        created_before_since: covered.created_before_since,
        pruned_through: (pruned > to).then_some(pruned),
    })
}

/// The first row in log order created at or after `since`.
async fn first_created_since(
    conn: &mut sqlx::PgConnection,
    since: DateTime<Utc>,
) -> sqlx::Result<Option<LogPosition>> {
    let first = sqlx::query!(
        r#"SELECT tx_id::text::bigint AS "tx_id!", seq FROM outbox WHERE created_at >= $1
           ORDER BY outbox.tx_id, outbox.seq LIMIT 1"#,
        since
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(first.map(|row| LogPosition {
        tx_id: row.tx_id,
        seq: row.seq,
    }))
}

/// The position of the row before `position`: reading after it starts at `position`'s row.
/// A row's position, so the consumer's check that its position is a place in the log holds.
async fn position_before(
    conn: &mut sqlx::PgConnection,
    position: LogPosition,
) -> sqlx::Result<LogPosition> {
    let before = sqlx::query!(
        r#"SELECT tx_id::text::bigint AS "tx_id!", seq FROM outbox
           WHERE (tx_id, seq) < ($1::bigint::text::xid8, $2)
           ORDER BY outbox.tx_id DESC, outbox.seq DESC LIMIT 1"#,
        position.tx_id,
        position.seq
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(before.map_or(LogPosition::START, |row| LogPosition {
        tx_id: row.tx_id,
        seq: row.seq,
    }))
}

/// The rows in `(after, upto]`: how many, the last one's position, and those created before
/// `since`, in log order.
struct Covered {
    rows: i64,
    last: Option<LogPosition>,
    created_before_since: Vec<(LogPosition, DateTime<Utc>)>,
}

/// The range `(after, upto]`, parameters $1 to $4.
const RANGE: &str = "(tx_id, seq) > ($1::bigint::text::xid8, $2)
     AND (tx_id, seq) <= ($3::bigint::text::xid8, $4)";

async fn covered(
    conn: &mut sqlx::PgConnection,
    after: LogPosition,
    upto: LogPosition,
    since: DateTime<Utc>,
) -> sqlx::Result<Covered> {
    let (rows,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM outbox WHERE {RANGE}"))
        .bind(after.tx_id)
        .bind(after.seq)
        .bind(upto.tx_id)
        .bind(upto.seq)
        .fetch_one(&mut *conn)
        .await?;
    let last: Option<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT tx_id::text::bigint, seq FROM outbox WHERE {RANGE}
         ORDER BY outbox.tx_id DESC, outbox.seq DESC LIMIT 1"
    ))
    .bind(after.tx_id)
    .bind(after.seq)
    .bind(upto.tx_id)
    .bind(upto.seq)
    .fetch_optional(&mut *conn)
    .await?;
    let early: Vec<(i64, i64, DateTime<Utc>)> = sqlx::query_as(&format!(
        "SELECT tx_id::text::bigint, seq, created_at FROM outbox
         WHERE {RANGE} AND created_at < $5
         ORDER BY outbox.tx_id, outbox.seq"
    ))
    .bind(after.tx_id)
    .bind(after.seq)
    .bind(upto.tx_id)
    .bind(upto.seq)
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Covered {
        rows,
        last: last.map(|(tx_id, seq)| LogPosition { tx_id, seq }),
        created_before_since: early
            .into_iter()
            .map(|(tx_id, seq, at)| (LogPosition { tx_id, seq }, at))
            .collect(),
    })
}
