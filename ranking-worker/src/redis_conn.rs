//! The Redis connection: one multiplexed connection that reconnects by itself.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo;
use secrecy::{ExposeSecret, SecretString};

/// Bounds every command, so an unreachable Redis is an error to retry, not a hang.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis URL (`REDIS_URL`), checked when the command line is parsed (a bad one is a one-line
/// error naming it) and kept as a secret: it may hold a password (`redis://:password@host`), so
/// `Debug` never prints it.
#[derive(Debug, Clone)]
pub struct RedisUrl(SecretString);

impl RedisUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        // The redis crate's own message may quote the URL, password and all: name the problem
        // only.
        value.into_connection_info().map_err(|_| {
            "is not a valid Redis URL (redis://[[user]:password@]host[:port][/db])".to_owned()
        })?;
        Ok(Self(value.into()))
    }
}

impl ExposeSecret<str> for RedisUrl {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Connects lazily: the worker starts while Redis is down and retries until it is back.
pub fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    connect_waiting(url, Duration::ZERO)
}

/// [`connect`], for commands that may wait up to `block` for their answer (`XREAD BLOCK`):
/// a connection of their own, since a waiting command holds it.
pub fn connect_waiting(url: &str, block: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).map_err(|error| anyhow::anyhow!("REDIS_URL: {error}"))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT + block))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Redis's `maxmemory-policy`, or `None` where `CONFIG` is not allowed (some managed services).
pub async fn eviction_policy(redis: &mut ConnectionManager) -> redis::RedisResult<Option<String>> {
    let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(redis)
        .await;
    match reply {
        Ok(pair) => Ok(pair.into_iter().nth(1)),
        Err(error) if error.code().is_some() => {
            tracing::warn!(%error, "cannot read Redis's maxmemory-policy; make sure it is noeviction");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Refuses an eviction policy that may evict the ranking's keys: an `allkeys-*` policy could
/// evict the ranking but keep its position, and nothing could tell the ranking lost entries; a
/// `volatile-*` one could evict the period boards, the only ranking keys with an expiry, just
/// as silently.
pub fn refuse_evicting_policy(policy: Option<&str>) -> anyhow::Result<()> {
    match policy {
        Some(policy) if policy.starts_with("allkeys-") || policy.starts_with("volatile-") => {
            anyhow::bail!(
                "REDIS_URL: Redis's maxmemory-policy is {policy}, which may evict the ranking \
                 (allkeys-*) or its period boards, which expire (volatile-*); set it to noeviction"
            )
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn only_a_policy_that_evicts_no_ranking_key_is_accepted() {
        for evicting in [
            "allkeys-lru",
            "allkeys-random",
            "volatile-lru",
            "volatile-ttl",
        ] {
            let refused = refuse_evicting_policy(Some(evicting))
                .unwrap_err()
                .to_string();
            assert!(refused.contains(evicting), "{refused}");
            assert!(refused.contains("set it to noeviction"), "{refused}");
        }
        assert!(refuse_evicting_policy(Some("noeviction")).is_ok());
        // CONFIG not allowed: warned about, not refused.
        assert!(refuse_evicting_policy(None).is_ok());
    }

    #[derive(Debug, Parser)]
    struct Args {
        #[arg(long, value_parser = shared::config::SecretParser::new(RedisUrl::parse))]
        redis_url: RedisUrl,
    }

    #[test]
    fn redis_urls_are_checked_and_never_printed() {
        let url = RedisUrl::parse("redis://:hunter2@cache:6379/0").unwrap();
        assert_eq!(url.expose_secret(), "redis://:hunter2@cache:6379/0");
        assert!(!format!("{url:?}").contains("hunter2"));
        let parsed = Args::try_parse_from(["x", "--redis-url", "redis://:hunter2@cache:6379"]);
        assert!(!format!("{parsed:?}").contains("hunter2"));
        let refused = Args::try_parse_from(["x", "--redis-url", "redis://:hunter2@cache:port"])
            .unwrap_err()
            .render()
            .to_string();
        assert!(refused.contains("--redis-url"), "{refused}");
        assert!(
            !refused.contains("hunter2"),
            "the refusal shows the password: {refused}"
        );
    }
}
