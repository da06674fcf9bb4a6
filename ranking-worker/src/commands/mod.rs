//! The operator commands. Each is a library function returning a report, so tests drive it
//! directly; `main` only renders the report as a table or JSON.

pub mod consumers;
pub mod dead_letters;
pub mod moderation;
pub mod prune;
pub mod replay;
pub mod status;
pub mod top;
