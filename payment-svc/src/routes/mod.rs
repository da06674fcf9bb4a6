//! HTTP handlers, one module per resource (SPEC §3).

pub mod concerts;
pub mod health;
pub mod page;
pub mod payments;
pub mod points;
pub mod reservations;
