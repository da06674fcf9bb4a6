//! ranking-worker: relays `ConcertSoldOut` events from the Postgres outbox into the Redis
//! ranking of fastest sell-outs with exactly-once effect, serves the ranking, and offers the
//! operator commands.

pub mod cli;
pub mod commands;
pub mod http;
pub mod queue;
pub mod ranking;
pub mod redis_conn;
pub mod relay;
pub mod worker;
