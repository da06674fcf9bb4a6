//! The ranking in Redis (SPEC §5): the sorted set, its helper keys, and the scripts that change
//! or read them. Every write goes through a Lua script, so each is atomic.
//!
//! Keys, for a ranking key `K`:
//! - `K`: sorted set, member `concert:{concert_id}:schedule:{schedule_id}`, score the sell-out
//!   duration in seconds;
//! - `{K}:details`: hash member → display details (JSON);
//! - `{K}:applied`: hash event_id → member, the record of applied events that makes a
//!   redelivery a no-op;
//! - `{K}:rebuild`, `{K}:rebuild:details`, `{K}:rebuild:applied`: a rebuild in progress.
//!
//! The helper keys carry `K` in braces, so Redis Cluster puts them in `K`'s slot and one script
//! may touch them all.

use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};
use shared::events::ConcertSoldOut;

/// The names of one ranking's keys.
#[derive(Debug, Clone)]
pub struct RankingKeys {
    pub ranking: String,
    details: String,
    applied: String,
}

impl RankingKeys {
    /// Keys for the ranking `name`. Braces are refused: they would change the hash slot.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(format!(
                "must be non-empty and contain no braces, got {name:?}"
            ));
        }
        Ok(Self {
            ranking: name.to_owned(),
            details: format!("{{{name}}}:details"),
            applied: format!("{{{name}}}:applied"),
        })
    }

    /// Where `replay --rebuild` builds the new ranking before swapping it in.
    fn rebuild(&self) -> Self {
        let name = &self.ranking;
        Self {
            ranking: format!("{{{name}}}:rebuild"),
            details: format!("{{{name}}}:rebuild:details"),
            applied: format!("{{{name}}}:rebuild:applied"),
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.ranking, &self.details, &self.applied]
    }
}

/// The sorted-set member for a schedule.
pub fn member(event: &ConcertSoldOut) -> String {
    format!(
        "concert:{}:schedule:{}",
        event.concert_id, event.schedule_id
    )
}

/// What the read API shows beside the score, stored in `{K}:details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    pub concert_id: i64,
    pub schedule_id: i64,
    pub concert_title: String,
    pub sale_started_at: chrono::DateTime<chrono::Utc>,
    pub sold_out_at: chrono::DateTime<chrono::Utc>,
}

impl From<&ConcertSoldOut> for Details {
    fn from(event: &ConcertSoldOut) -> Self {
        Self {
            concert_id: event.concert_id,
            schedule_id: event.schedule_id,
            concert_title: event.concert_title.clone(),
            sale_started_at: event.sale_started_at,
            sold_out_at: event.sold_out_at,
        }
    }
}

/// The script arguments for a batch: (event_id, member, score, details) per event. The score
/// comes from the payload alone, so applying an event again can never change it.
fn event_args(events: &[&ConcertSoldOut]) -> Vec<String> {
    let mut args = Vec::with_capacity(events.len() * 4);
    for event in events {
        args.push(event.event_id.to_string());
        args.push(member(event));
        args.push(event.sold_out_seconds().to_string());
        // Serialising a struct of plain fields cannot fail.
        args.push(serde_json::to_string(&Details::from(*event)).unwrap_or_default());
    }
    args
}

/// Applies each event once: an event whose id is already recorded is skipped (a redelivery
/// after a crash between apply and ack, or a second worker's lease takeover).
const APPLY: &str = r#"
local result = {}
for i = 1, #ARGV, 4 do
  local event_id, member, score, details = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HSETNX', KEYS[3], event_id, member) == 1 then
    redis.call('ZADD', KEYS[1], score, member)
    redis.call('HSET', KEYS[2], member, details)
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
return result
"#;

/// Replay: writes each event's member, score and details whatever the applied record says
/// (the ranking may have been deleted while the record survived). Returns 1 for each event
/// that changed the ranking (restored), 0 where it already held it exactly (unchanged).
const RESTORE: &str = r#"
local result = {}
for i = 1, #ARGV, 4 do
  local event_id, member, score, details = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local changed = redis.call('ZADD', KEYS[1], 'CH', score, member)
  if redis.call('HGET', KEYS[2], member) ~= details then
    redis.call('HSET', KEYS[2], member, details)
    changed = 1
  end
  redis.call('HSET', KEYS[3], event_id, member)
  result[#result + 1] = changed
end
return result
"#;

/// Swaps a finished rebuild in. Events the relay applied to the live ranking while the rebuild
/// ran are carried over first, so the swap loses nothing; members no event accounts for are
/// dropped. RENAME replaces each live key in one step, so readers see the old ranking or the
/// new one, never an empty or partial one.
const SWAP: &str = r#"
local live = redis.call('HGETALL', KEYS[3])
for i = 1, #live, 2 do
  local event_id, member = live[i], live[i + 1]
  if redis.call('HEXISTS', KEYS[6], event_id) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], member)
    if score then
      redis.call('ZADD', KEYS[4], score, member)
      local details = redis.call('HGET', KEYS[2], member)
      if details then redis.call('HSET', KEYS[5], member, details) end
      redis.call('HSET', KEYS[6], event_id, member)
    end
  end
end
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i + 3]) == 1 then
    redis.call('RENAME', KEYS[i + 3], KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
return redis.call('ZCARD', KEYS[1])
"#;

/// A page of the ranking with its details, read in one atomic step.
const READ: &str = r#"
local stop = tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1
local entries = redis.call('ZRANGE', KEYS[1], ARGV[1], stop, 'WITHSCORES')
local result = {}
for i = 1, #entries, 2 do
  result[#result + 1] = entries[i]
  result[#result + 1] = entries[i + 1]
  result[#result + 1] = redis.call('HGET', KEYS[2], entries[i]) or ''
end
return result
"#;

/// One ranked schedule as the read API and `top` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub rank: u64,
    pub member: String,
    pub concert_id: Option<i64>,
    pub schedule_id: Option<i64>,
    pub concert_title: Option<String>,
    pub sold_out_seconds: f64,
    pub sale_started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub sold_out_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The ranking: its keys and compiled scripts.
#[derive(Clone)]
pub struct Ranking {
    keys: RankingKeys,
    apply: std::sync::Arc<Script>,
    restore: std::sync::Arc<Script>,
    swap: std::sync::Arc<Script>,
    read: std::sync::Arc<Script>,
}

impl Ranking {
    pub fn new(keys: RankingKeys) -> Self {
        Self {
            keys,
            apply: Script::new(APPLY).into(),
            restore: Script::new(RESTORE).into(),
            swap: Script::new(SWAP).into(),
            read: Script::new(READ).into(),
        }
    }

    pub fn key(&self) -> &str {
        &self.keys.ranking
    }

    /// Applies a batch in one round trip; `true` per event that was new, `false` per duplicate.
    pub async fn apply(
        &self,
        redis: &mut ConnectionManager,
        events: &[&ConcertSoldOut],
    ) -> redis::RedisResult<Vec<bool>> {
        run_batch(&self.apply, &self.keys, redis, events).await
    }

    /// Writes a batch whatever was applied before; `true` per event that changed the ranking.
    pub async fn restore(
        &self,
        redis: &mut ConnectionManager,
        events: &[&ConcertSoldOut],
    ) -> redis::RedisResult<Vec<bool>> {
        run_batch(&self.restore, &self.keys, redis, events).await
    }

    /// `true` per event whose member, score or details differ from the ranking (dry run).
    pub async fn differs(
        &self,
        redis: &mut ConnectionManager,
        events: &[&ConcertSoldOut],
    ) -> redis::RedisResult<Vec<bool>> {
        let mut pipe = redis::pipe();
        for event in events {
            pipe.zscore(&self.keys.ranking, member(event))
                .hget(&self.keys.details, member(event));
        }
        let replies: Vec<(Option<f64>, Option<String>)> = pipe.query_async(redis).await?;
        Ok(events
            .iter()
            .zip(replies)
            .map(|(event, (score, details))| {
                let expected = serde_json::to_string(&Details::from(*event)).unwrap_or_default();
                score != Some(event.sold_out_seconds())
                    || details.as_deref() != Some(expected.as_str())
            })
            .collect())
    }

    /// Starts a rebuild: an empty ranking beside the live one. Restore into it, then [`Self::swap_in`].
    pub async fn begin_rebuild(
        &self,
        redis: &mut ConnectionManager,
    ) -> redis::RedisResult<Ranking> {
        let rebuild = Ranking {
            keys: self.keys.rebuild(),
            ..self.clone()
        };
        redis::cmd("DEL")
            .arg(&rebuild.keys.all()[..])
            .exec_async(redis)
            .await?;
        Ok(rebuild)
    }

    /// Atomically replaces this ranking with `rebuild`; returns the new ranking's size.
    pub async fn swap_in(
        &self,
        redis: &mut ConnectionManager,
        rebuild: &Ranking,
    ) -> redis::RedisResult<u64> {
        let mut invocation = self.swap.prepare_invoke();
        for key in self.keys.all().into_iter().chain(rebuild.keys.all()) {
            invocation.key(key);
        }
        invocation.invoke_async(redis).await
    }

    /// Entries `offset..offset + limit`, fastest first.
    pub async fn top(
        &self,
        redis: &mut ConnectionManager,
        offset: u64,
        limit: u64,
    ) -> redis::RedisResult<Vec<Entry>> {
        let flat: Vec<String> = self
            .read
            .key(&self.keys.ranking)
            .key(&self.keys.details)
            .arg(offset)
            .arg(limit)
            .invoke_async(redis)
            .await?;
        Ok(flat
            .chunks_exact(3)
            .zip(offset + 1..)
            .map(|(row, rank)| {
                let details: Option<Details> = serde_json::from_str(&row[2]).ok();
                Entry {
                    rank,
                    member: row[0].clone(),
                    concert_id: details.as_ref().map(|d| d.concert_id),
                    schedule_id: details.as_ref().map(|d| d.schedule_id),
                    concert_title: details.as_ref().map(|d| d.concert_title.clone()),
                    sold_out_seconds: row[1].parse().unwrap_or(f64::NAN),
                    sale_started_at: details.as_ref().map(|d| d.sale_started_at),
                    sold_out_at: details.as_ref().map(|d| d.sold_out_at),
                }
            })
            .collect())
    }

    /// How many schedules are ranked.
    pub async fn size(&self, redis: &mut ConnectionManager) -> redis::RedisResult<u64> {
        redis::cmd("ZCARD")
            .arg(&self.keys.ranking)
            .query_async(redis)
            .await
    }
}

async fn run_batch(
    script: &Script,
    keys: &RankingKeys,
    redis: &mut ConnectionManager,
    events: &[&ConcertSoldOut],
) -> redis::RedisResult<Vec<bool>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut invocation = script.prepare_invoke();
    for key in keys.all() {
        invocation.key(key);
    }
    for arg in event_args(events) {
        invocation.arg(arg);
    }
    let flags: Vec<i64> = invocation.invoke_async(redis).await?;
    Ok(flags.into_iter().map(|flag| flag == 1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_keys_share_the_ranking_keys_hash_slot() {
        let keys = RankingKeys::parse("concert:schedule:ranking").unwrap();
        assert_eq!(keys.details, "{concert:schedule:ranking}:details");
        assert_eq!(keys.applied, "{concert:schedule:ranking}:applied");
        assert_eq!(keys.rebuild().ranking, "{concert:schedule:ranking}:rebuild");
    }

    #[test]
    fn braces_in_the_ranking_key_are_refused() {
        assert!(RankingKeys::parse("a{b}").is_err());
        assert!(RankingKeys::parse("").is_err());
    }
}
