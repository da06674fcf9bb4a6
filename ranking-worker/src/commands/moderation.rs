//! `ranking remove <MEMBER> --reason TEXT` and `ranking restore <MEMBER>`: hide an entry on every
//! board, or bring it back. Postgres records the decision first (so whatever rebuilds the boards
//! from the outbox keeps it), then Redis follows, and the feed tells every live board and read
//! cache to take a fresh snapshot. Both hold the [`ModerationLock`] from the first step to the
//! last, so a remove and a restore of one entry, or either and a rebuild's swap, never
//! interleave. Both are idempotent: one that stopped halfway is finished by running it again.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;
use shared::events::ConcertSoldOut;
use sqlx::PgPool;

use crate::commands::replay;
use crate::log::LogPosition;
use crate::moderation::{self, Member, ModerationLock};
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
    /// Whether it is on the boards now (`false`: the consumer has not reached its event yet,
    /// and will write it).
    pub reapplied: bool,
    /// Postgres had it restored already (a restore that stopped halfway, or ran twice): Redis
    /// was made to follow again.
    pub already_restored: bool,
}

/// The sold-out event of `member`'s schedule, if it ever sold out.
async fn sold_out_event(pool: &PgPool, member: &Member) -> anyhow::Result<Option<ConcertSoldOut>> {
    let end = LogPosition {
        tx_id: i64::MAX,
        seq: i64::MAX,
    };
    Ok(moderation::events_of(pool, member, end)
        .await?
        .into_iter()
        .next())
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
    anyhow::ensure!(
        sold_out_event(pool, member).await?.is_some(),
        "{member} never sold out: the outbox holds no ConcertSoldOut for it"
    );
    let lock = ModerationLock::acquire(pool, ranking).await?;
    let removed = remove_locked(pool, redis, ranking, member, reason, by).await;
    lock.release().await;
    removed
}

async fn remove_locked(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    member: &Member,
    reason: &str,
    by: &str,
) -> anyhow::Result<Removed> {
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
    let was_ranked = ranking.hide(redis, &member.to_string()).await?;
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
/// score, on every board. A member Postgres has restored already is made visible in Redis again
/// (a restore that stopped after its first step is finished so). Refused, with nothing changed,
/// for a member never hidden.
pub async fn restore(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    member: &Member,
    by: &str,
) -> anyhow::Result<Restored> {
    crate::retention::sold_out_kept(pool).await??;
    let lock = ModerationLock::acquire(pool, ranking).await?;
    let restored = restore_locked(pool, redis, ranking, member, by).await;
    lock.release().await;
    restored
}

async fn restore_locked(
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
    let mut already_restored = false;
    if closed.is_none() {
        // Restored before (Redis may not have followed), or hidden in Redis only (a restore
        // that raced a reload of the list): both are finished the same way.
        let ever_hidden = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM ranking_hidden WHERE member = $1) AS "ever!""#,
            member.to_string(),
        )
        .fetch_one(pool)
        .await?;
        anyhow::ensure!(
            ever_hidden || ranking.is_hidden(redis, &member.to_string()).await?,
            "{member} is not hidden (never removed): nothing to restore"
        );
        already_restored = ever_hidden;
    }
    ranking.unhide(redis, &member.to_string()).await?;
    // Only what the consumer has passed: an event it has not reached yet, it writes itself.
    // Writing it back announces a `reset` on the feed, as every replay that changes a board.
    let upto = replay::passed(pool, redis, ranking).await?.2;
    moderation::reapply(pool, redis, ranking, member, upto).await?;
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(ranking.key())
        .arg(member.to_string())
        .query_async(redis)
        .await?;
    tracing::info!(%member, by, "ranking entry restored");
    Ok(Restored {
        member: member.to_string(),
        reapplied: score.is_some(),
        already_restored,
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
        if self.reapplied && self.already_restored {
            write!(
                f,
                "{} was already restored; re-applied it on every board",
                self.member
            )
        } else if self.reapplied {
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
