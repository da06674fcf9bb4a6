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
            tracing::warn!(%error, "cannot read Redis's maxmemory-policy; make sure it is not allkeys-*");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Refuses an eviction policy that may evict the ranking's keys: an `allkeys-*` policy could
/// evict the ranking but keep its position, and nothing could tell the ranking lost entries.
pub fn refuse_evicting_policy(policy: Option<&str>) -> anyhow::Result<()> {
    match policy {
        Some(policy) if policy.starts_with("allkeys-") => anyhow::bail!(
            "REDIS_URL: Redis's maxmemory-policy is {policy}, which may evict the ranking; \
             set it to noeviction (or a volatile-* policy)"
        ),
        _ => Ok(()),
    }
}
