//! The Redis connection: one multiplexed connection that reconnects by itself.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Bounds every command, so an unreachable Redis is an error to retry, not a hang.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

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
}
