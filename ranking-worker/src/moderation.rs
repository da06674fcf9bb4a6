//! Entries hidden by an operator (`ranking remove` / `ranking restore`): a test or fraudulent
//! sell-out taken off every board.
//!
//! Postgres records them (`ranking_hidden`); Redis holds a copy (`{K}:hidden`) that every script
//! writing the boards reads, so the consumer, a heal, `replay` and `replay --rebuild` all skip
//! them. When Redis has lost the copy, those scripts refuse to run (`ranking::hidden_unloaded`)
//! until it is loaded again from Postgres: a Redis restarted empty cannot bring a hidden entry
//! back.

use std::fmt;
use std::str::FromStr;

use redis::aio::ConnectionManager;
use shared::events::ConcertSoldOut;
use sqlx::PgPool;

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
