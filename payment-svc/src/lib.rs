//! payment-svc: concerts, seat holds, points and payments. The payment that sells a schedule's
//! last seat writes `ConcertSoldOut` to the transactional outbox in the same transaction.

pub mod auth;
pub mod cli;
pub mod confirm_payment;
pub mod db;
pub mod deadline;
pub mod domain;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod observability;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod state;
