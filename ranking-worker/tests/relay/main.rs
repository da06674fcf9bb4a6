//! ranking-worker against a real Postgres and Redis.

mod helpers;

mod board_cache;
mod crash;
mod end_to_end;
mod failures;
mod log_order;
mod moderation;
mod openapi;
mod operations;
mod periods;
mod receiver;
mod replay;
mod retention;
mod stream;
mod ties;
mod upgrade;
mod webhook;
mod workers;
