//! payment-svc's HTTP API against a real Postgres. Each test gets a fresh database.

mod helpers;

mod auth;
mod bad_input;
mod counter_migration;
mod deadline;
mod healthcheck;
mod heavy_reads;
mod hold_expiry;
mod holds;
mod idempotency;
mod invariants;
mod last_seat;
mod money;
mod openapi;
mod operations;
mod outbox_event;
mod rollback;
