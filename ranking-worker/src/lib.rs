//! ranking-worker: consumes the Postgres outbox log into the Redis ranking of fastest sell-outs
//! with exactly-once effect, serves the ranking, and offers the operator commands.

pub mod board_cache;
pub mod cli;
pub mod commands;
pub mod consumer;
pub mod consumers;
pub mod error;
pub mod health;
pub mod http;
pub mod leadership;
pub mod log;
pub mod moderation;
pub mod openapi;
pub mod periods;
pub mod ranking;
pub mod redis_conn;
pub mod relay;
pub mod retention;
pub mod stream;
pub mod wakeup;
pub mod webhook;
pub mod worker;
