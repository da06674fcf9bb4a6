//! `status`: each consumer's position, lag, state and dead letters; the log; the ranking.
//! Works while Redis is down (that is when it is needed most): Redis's parts then say so.

use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::consumers;
use crate::log::{self, Lag, LogPosition, Retained};
use crate::ranking::Ranking;
use crate::retention::{self, Pruned};

/// The state shown when no instance holds a consumer.
const NO_ACTIVE_INSTANCE: &str = "no active instance";

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub consumers: Vec<ConsumerStatus>,
    /// The rows the log holds now.
    pub log: Retained,
    /// What `prune` has deleted: the pruned-through watermark.
    pub pruned: Pruned,
    pub ranking_key: String,
    /// `None` while Redis does not answer.
    pub ranking_size: Option<u64>,
    /// Redis's `maxmemory-policy` (`allkeys-*` and `volatile-*` are refused), if Redis lets it be read.
    pub redis_maxmemory_policy: Option<String>,
    /// Why Redis's parts are missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    pub name: String,
    /// Where the sink says the consumer is (the ranking: the position in Redis).
    pub position: Option<LogPosition>,
    /// Postgres's mirror of it.
    pub mirror_position: LogPosition,
    pub lag: Lag,
    /// running, paused or stopped, as the active instance last reported; `no active instance`
    /// when none holds the consumer (all stopped, or the last one died without saying so).
    pub state: String,
    pub detail: Option<String>,
    /// Paused by an operator or disabled by its sink, until `consumers resume`.
    pub halted: Option<consumers::Halt>,
    pub active_instance: Option<String>,
    pub reported_at: chrono::DateTime<chrono::Utc>,
    pub dead_letters: i64,
}

pub async fn status(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    ranking: &Ranking,
) -> anyhow::Result<Status> {
    let log_id: Uuid = log::log_id(pool).await?;
    let from_redis = async {
        let position = ranking.position(redis).await?;
        let size = ranking.size(redis).await?;
        let policy = crate::redis_conn::eviction_policy(redis).await?;
        Ok::<_, redis::RedisError>((position, size, policy))
    };
    let (position, size, policy, redis_error) = match from_redis.await {
        Ok((position, size, policy)) => (position.in_log(log_id), Some(size), policy, None),
        Err(error) => (None, None, None, Some(error.to_string())),
    };
    let mut consumers = Vec::new();
    for row in consumers::all(pool).await? {
        let mirror = row.position();
        // The ranking's own position is in Redis; any other consumer's is the one in Postgres.
        let position = if row.name == consumers::RANKING {
            position
        } else {
            Some(mirror)
        };
        consumers.push(ConsumerStatus {
            lag: log::lag(pool, position.unwrap_or(mirror)).await?,
            dead_letters: consumers::count_dead_letters(pool, &row.name).await?,
            position,
            mirror_position: mirror,
            state: if crate::leadership::is_held(pool, &row.name).await? {
                row.state
            } else {
                NO_ACTIVE_INSTANCE.to_owned()
            },
            detail: row.detail,
            halted: consumers::halt_of(pool, &row.name).await?,
            active_instance: row.active_instance,
            reported_at: row.updated_at,
            name: row.name,
        });
    }
    Ok(Status {
        consumers,
        log: log::retained(pool).await?,
        pruned: retention::pruned(pool).await?,
        ranking_key: ranking.key().to_owned(),
        ranking_size: size,
        redis_maxmemory_policy: policy,
        redis_error,
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for consumer in &self.consumers {
            let state = match &consumer.detail {
                Some(detail) => format!("{} ({detail})", consumer.state),
                None => consumer.state.clone(),
            };
            writeln!(f, "consumer {}", consumer.name)?;
            writeln!(f, "  state           {state}")?;
            if let Some(halt) = &consumer.halted {
                writeln!(
                    f,
                    "  halted          {} since {} ({})",
                    halt.kind.as_str(),
                    time(Some(halt.since)),
                    halt.reason
                )?;
            }
            let instance = consumer.active_instance.as_deref().unwrap_or("-");
            if consumer.state == NO_ACTIVE_INSTANCE {
                writeln!(f, "  last active     {instance}")?;
            } else {
                writeln!(f, "  active instance {instance}")?;
            }
            match (consumer.position, &self.redis_error) {
                (Some(position), _) => writeln!(f, "  position        {position}")?,
                (None, Some(_)) => writeln!(f, "  position        unknown (Redis unreachable)")?,
                (None, None) => writeln!(f, "  position        none in Redis")?,
            }
            writeln!(f, "  mirror          {}", consumer.mirror_position)?;
            writeln!(
                f,
                "  lag             {} events, {:.3} s",
                consumer.lag.events, consumer.lag.seconds
            )?;
            writeln!(f, "  dead letters    {}", consumer.dead_letters)?;
        }
        writeln!(
            f,
            "log               {} events, {} .. {}",
            self.log.events,
            time(self.log.oldest),
            time(self.log.newest)
        )?;
        if self.pruned.rows > 0 {
            writeln!(
                f,
                "pruned            through {} ({} rows, last at {})",
                self.pruned.through,
                self.pruned.rows,
                time(self.pruned.at)
            )?;
        } else {
            writeln!(f, "pruned            nothing")?;
        }
        match (self.ranking_size, &self.redis_error) {
            (Some(size), _) => write!(f, "ranking           {size} ({})", self.ranking_key)?,
            (None, Some(error)) => write!(f, "ranking           unreachable: {error}")?,
            (None, None) => write!(f, "ranking           -")?,
        }
        if let Some(policy) = &self.redis_maxmemory_policy {
            write!(f, "\nredis policy      maxmemory-policy {policy}")?;
        }
        Ok(())
    }
}

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or("-".to_owned(), |at| {
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}
