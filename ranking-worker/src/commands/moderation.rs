//! `ranking remove <MEMBER> --reason TEXT` and `ranking restore <MEMBER>`: hide an entry on every
//! board, or bring it back. Postgres records the decision first (so whatever rebuilds the boards
//! from the outbox keeps it), then Redis follows, and the feed tells every live board and read
//! cache to take a fresh snapshot.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;
use shared::events::ConcertSoldOut;
use sqlx::PgPool;

use crate::commands::replay;
use crate::log::{self, LogPosition, ReplayFilter};
use crate::moderation::Member;
use crate::ranking::Ranking;

/// A hidden entry as Postgres records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hidden {
    pub member: String,
    pub reason: String,
    pub hidden_by: String,
    pub hidden_at: DateTime<Utc>,
}

/// What `ranking remove` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Removed {
    /// Hidden now; `was_ranked`: it was on the all-time board.
    Hidden { hidden: Hidden, was_ranked: bool },
    /// It was hidden already (then, by, why): nothing recorded again.
    AlreadyHidden { hidden: Hidden },
}

/// What `ranking restore` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub member: String,
    /// Whether its event was written back (`false`: the consumer has not reached it yet, and
    /// will write it).
    pub reapplied: bool,
}

/// The sold-out event of `member`'s schedule, if it ever sold out.
async fn sold_out_event(pool: &PgPool, member: &Member) -> anyhow::Result<Option<ConcertSoldOut>> {
    let filter = ReplayFilter {
        schedule_id: Some(member.schedule_id),
        ..ReplayFilter::default()
    };
    let end = LogPosition {
        tx_id: i64::MAX,
        seq: i64::MAX,
    };
    let rows = log::sold_out_between(pool, &filter, LogPosition::START, end, 10).await?;
    Ok(rows
        .iter()
        .filter_map(|row| row.decode_sold_out().ok())
        .find(|event| event.concert_id == member.concert_id))
}

/// Hides `member` on every board, recorded with `reason` and `by`. Refused, with nothing
/// changed, for an empty reason or a member that never sold out.
pub async fn remove(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    member: &Member,
    reason: &str,
    by: &str,
) -> anyhow::Result<Removed> {
    let reason = reason.trim();
    anyhow::ensure!(
        !reason.is_empty(),
        "--reason must say why the entry is hidden"
    );
    let event = sold_out_event(pool, member).await?.ok_or_else(|| {
        anyhow::anyhow!("{member} never sold out: the outbox holds no ConcertSoldOut for it")
    })?;
    let inserted = sqlx::query_as!(
        Hidden,
        "INSERT INTO ranking_hidden (member, reason, hidden_by) VALUES ($1, $2, $3)
         ON CONFLICT (member) WHERE restored_at IS NULL DO NOTHING
         RETURNING member, reason, hidden_by, hidden_at",
        member.to_string(),
        reason,
        by,
    )
    .fetch_optional(pool)
    .await?;
    // Redis follows Postgres, also when the entry was hidden already: a removal that failed
    // halfway (Redis unreachable) is finished by running it again.
    let was_ranked = ranking.hide(redis, &event).await?;
    let outcome = match inserted {
        Some(hidden) => {
            tracing::info!(%member, reason, by, "ranking entry hidden");
            Removed::Hidden { hidden, was_ranked }
        }
        None => Removed::AlreadyHidden {
            hidden: open_row(pool, member).await?,
        },
    };
    Ok(outcome)
}

/// The open row of a member hidden now.
async fn open_row(pool: &PgPool, member: &Member) -> sqlx::Result<Hidden> {
    sqlx::query_as!(
        Hidden,
        "SELECT member, reason, hidden_by, hidden_at FROM ranking_hidden
         WHERE member = $1 AND restored_at IS NULL",
        member.to_string(),
    )
    .fetch_one(pool)
    .await
}

/// Brings a hidden `member` back: its event is written again from the outbox, with its exact
/// score, on every board. Refused, with nothing changed, for a member not hidden.
pub async fn restore(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    member: &Member,
    by: &str,
) -> anyhow::Result<Restored> {
    let closed = sqlx::query_scalar!(
        "UPDATE ranking_hidden SET restored_by = $2, restored_at = now()
         WHERE member = $1 AND restored_at IS NULL
         RETURNING member",
        member.to_string(),
        by,
    )
    .fetch_optional(pool)
    .await?;
    // Hidden in Redis only (a restore that raced a reload of the list): repaired the same way.
    anyhow::ensure!(
        closed.is_some() || ranking.is_hidden(redis, &member.to_string()).await?,
        "{member} is not hidden (never removed, or restored already): nothing to restore"
    );
    ranking.unhide(redis, &member.to_string()).await?;
    // Only what the consumer has passed: an event it has not reached yet, it writes itself.
    // Writing it back announces a `reset` on the feed, as every replay that changes a board.
    let filter = ReplayFilter {
        schedule_id: Some(member.schedule_id),
        ..ReplayFilter::default()
    };
    let report = replay::replay(pool, redis, ranking, &filter, false).await?;
    tracing::info!(%member, by, "ranking entry restored");
    Ok(Restored {
        member: member.to_string(),
        reapplied: report.matched > 0,
    })
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removed::Hidden { hidden, was_ranked } => write!(
                f,
                "hid {} on every board{} (reason: {})",
                hidden.member,
                if *was_ranked {
                    ""
                } else {
                    " (it was not ranked yet)"
                },
                hidden.reason
            ),
            Removed::AlreadyHidden { hidden } => write!(
                f,
                "{} is already hidden, since {} by {} (reason: {}); nothing recorded again",
                hidden.member,
                hidden
                    .hidden_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                hidden.hidden_by,
                hidden.reason
            ),
        }
    }
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reapplied {
            write!(f, "restored {} on every board", self.member)
        } else {
            write!(
                f,
                "{} is no longer hidden; the consumer will rank it when it reaches its event",
                self.member
            )
        }
    }
}
