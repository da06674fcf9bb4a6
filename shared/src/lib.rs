//! What payment-svc and ranking-worker share, each in one place: configuration pieces,
//! telemetry, the Postgres pool and migrator, the outbox and the events it carries.

pub mod config;
pub mod db;
pub mod events;
pub mod health;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod problem;
pub mod signals;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;

pub use db::MIGRATOR;
