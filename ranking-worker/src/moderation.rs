//! Entries hidden by an operator (`ranking remove` / `ranking restore`): a test or fraudulent
//! sell-out taken off every board.
//!
//! Postgres records them (`ranking_hidden`); Redis holds a copy (`{K}:hidden`) that every script
//! writing the boards reads, so the consumer, a heal, `replay` and `replay --rebuild` all skip
//! them. When Redis has lost the copy, those scripts refuse to run (`ranking::hidden_unloaded`)
//! until it is loaded again from Postgres: a Redis restarted empty cannot bring a hidden entry
//! back.
//!
//! Whatever changes the hidden members in Postgres and Redis together (`ranking remove` and
//! `ranking restore`, the reconciliation when the consumer becomes active, a rebuild's start
//! and its swap) holds [`ModerationLock`], so none of them sees the other halfway.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use shared::events::ConcertSoldOut;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

use crate::log::{self, LogPosition, ReplayFilter};
use crate::ranking::{hidden_unloaded, Ranking};

/// A ranking member as an operator names it: `concert:{concert_id}:schedule:{schedule_id}`,
/// exactly as the boards spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub concert_id: i64,
    pub schedule_id: i64,
}

impl FromStr for Member {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = || {
            let rest = text.strip_prefix("concert:")?;
            let (concert, schedule) = rest.split_once(":schedule:")?;
            let member = Member {
                concert_id: concert.parse().ok()?,
                schedule_id: schedule.parse().ok()?,
            };
            // Only the spelling the boards use: `+1` or `01` would name no entry.
            (member.to_string() == text && member.concert_id >= 0 && member.schedule_id >= 0)
                .then_some(member)
        };
        parse().ok_or_else(|| {
            format!("not a ranking member (concert:{{concert_id}}:schedule:{{schedule_id}}), got {text:?}")
        })
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "concert:{}:schedule:{}",
            self.concert_id, self.schedule_id
        )
    }
}

/// The right to change a ranking's hidden members in Postgres and Redis: a session advisory
/// lock, per ranking key, on a connection of its own (taken out of the pool), so it is held
/// until [`Self::release`] or until the connection closes, a dead process's too.
pub struct ModerationLock {
    session: PgConnection,
}

impl ModerationLock {
    /// Waits for the lock.
    pub async fn acquire(pool: &PgPool, ranking: &Ranking) -> sqlx::Result<Self> {
        let mut session = pool.acquire().await?.detach();
        // The lock's key for the ranking named by `$1`.
        sqlx::query!(
            r#"SELECT pg_advisory_lock(hashtextextended('ranking moderation ' || $1, 0))
                   AS "locked: ()""#,
            ranking.key(),
        )
        .execute(&mut session)
        .await?;
        Ok(Self { session })
    }

    /// Postgres's clock, read while the lock is held: a restore that commits after the lock is
    /// released closes its row later than this.
    pub async fn now(&mut self) -> sqlx::Result<DateTime<Utc>> {
        sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
            .fetch_one(&mut self.session)
            .await
    }

    /// Gives the lock up (closing its session frees it).
    pub async fn release(self) {
        let _ = self.session.close().await;
    }
}

/// The members restored at or after `since` and not hidden again.
pub async fn restored_since(pool: &PgPool, since: DateTime<Utc>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT member AS "member!" FROM ranking_hidden AS closed
           WHERE restored_at >= $1
             AND NOT EXISTS (SELECT 1 FROM ranking_hidden AS open
                             WHERE open.member = closed.member AND open.restored_at IS NULL)"#,
        since
    )
    .fetch_all(pool)
    .await
}

/// The sold-out events of `member` at most at `upto`: what the boards hold of it once it is not
/// hidden (the consumer writes what lies beyond).
pub async fn events_of(
    pool: &PgPool,
    member: &Member,
    upto: LogPosition,
) -> sqlx::Result<Vec<ConcertSoldOut>> {
    let filter = ReplayFilter {
        schedule_id: Some(member.schedule_id),
        ..ReplayFilter::default()
    };
    let rows = log::sold_out_between(pool, &filter, LogPosition::START, upto, 10).await?;
    Ok(rows
        .iter()
        .filter_map(|row| row.decode_sold_out().ok())
        .filter(|event| event.concert_id == member.concert_id)
        .collect())
}

/// Writes `member`'s events up to `upto` into `ranking` again (skipped there while it is
/// hidden); `true` if any changed a board.
pub async fn reapply(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    member: &Member,
    upto: LogPosition,
) -> Result<bool, LoadError> {
    let events = events_of(pool, member, upto).await?;
    let changed = restore(pool, redis, ranking, &events.iter().collect::<Vec<_>>()).await?;
    Ok(changed.into_iter().any(|changed| changed))
}

/// The members hidden now: the open rows.
pub async fn hidden_members(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!("SELECT member FROM ranking_hidden WHERE restored_at IS NULL")
        .fetch_all(pool)
        .await
}

/// Why loading the hidden members failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
}

/// Loads the hidden members into Redis, unless it holds them; `true` when it loaded.
pub async fn load_hidden(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
) -> Result<bool, LoadError> {
    let members = hidden_members(pool).await?;
    let loaded = ranking.load_hidden(redis, &members).await?;
    if loaded {
        tracing::info!(
            hidden = members.len(),
            "loaded the hidden ranking entries from Postgres"
        );
    }
    Ok(loaded)
}

/// What [`reconcile`] changed in Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Hidden in Postgres, not in Redis (a remove that stopped before Redis): hidden now.
    pub hidden: Vec<String>,
    /// Hidden in Redis, restored in Postgres (a restore that stopped before Redis, Redis
    /// brought back from an older copy): visible again, their events written back.
    pub unhidden: Vec<String>,
}

/// Makes Redis's hidden members exactly Postgres's open rows: Redis's copy is loaded once and
/// then changed by `remove` and `restore` after Postgres, so one that stopped halfway, or a
/// Redis restored from an older copy or failed over to a lagging replica, leaves it wrong
/// until this runs. Needs the [`ModerationLock`]: a remove or restore halfway would look like
/// such a difference.
pub async fn reconcile(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    _held: &ModerationLock,
) -> anyhow::Result<Reconciled> {
    let recorded = hidden_members(pool).await?;
    ranking.load_hidden(redis, &recorded).await?;
    let held: HashSet<String> = redis::cmd("SMEMBERS")
        .arg(ranking.keys().hidden())
        .query_async(redis)
        .await?;
    let recorded: HashSet<String> = recorded.into_iter().collect();
    let mut reconciled = Reconciled::default();
    for member in recorded.difference(&held) {
        ranking.hide(redis, member).await?;
        reconciled.hidden.push(member.clone());
    }
    let upto = crate::commands::replay::passed(pool, redis, ranking)
        .await?
        .2;
    // The empty member marks the list as loaded.
    for member in held.iter().filter(|member| !member.is_empty()) {
        if recorded.contains(member) {
            continue;
        }
        ranking.unhide(redis, member).await?;
        if let Ok(parsed) = member.parse::<Member>() {
            reapply(pool, redis, ranking, &parsed, upto).await?;
        }
        reconciled.unhidden.push(member.clone());
    }
    if !reconciled.hidden.is_empty() || !reconciled.unhidden.is_empty() {
        tracing::warn!(
            hidden = ?reconciled.hidden,
            unhidden = ?reconciled.unhidden,
            "the hidden ranking entries in Redis differed from Postgres; made them agree"
        );
    }
    Ok(reconciled)
}

/// [`reconcile`] under the [`ModerationLock`], taken and released here.
pub async fn reconcile_locked(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
) -> anyhow::Result<Reconciled> {
    let lock = ModerationLock::acquire(pool, ranking).await?;
    let reconciled = reconcile(pool, redis, ranking, &lock).await;
    lock.release().await;
    reconciled
}

/// [`Ranking::restore`], loading the hidden members first when Redis has lost them.
pub async fn restore(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
    events: &[&ConcertSoldOut],
) -> Result<Vec<bool>, LoadError> {
    match ranking.restore(redis, events).await {
        Err(error) if hidden_unloaded(&error) => {
            load_hidden(pool, redis, ranking).await?;
            Ok(ranking.restore(redis, events).await?)
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_only_as_the_boards_spell_them() {
        let member: Member = "concert:12:schedule:345".parse().unwrap();
        assert_eq!(
            member,
            Member {
                concert_id: 12,
                schedule_id: 345
            }
        );
        assert_eq!(member.to_string(), "concert:12:schedule:345");
        for bad in [
            "",
            "concert:12",
            "concert:12:schedule:",
            "concert:+12:schedule:345",
            "concert:012:schedule:345",
            "concert:-1:schedule:345",
            "concert:12:schedule:345 ",
            "Concert:12:schedule:345",
            "concert:12:schedule:99999999999999999999",
        ] {
            assert!(bad.parse::<Member>().is_err(), "{bad:?}");
        }
    }
}
