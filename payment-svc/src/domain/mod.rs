//! Validated domain values. Each type can only be built through its parser, so code that holds
//! one never re-checks it (parse, don't validate).

mod concert;
mod points;
mod seat;
mod text;
mod time;
mod user;

pub use concert::{NewConcert, NewSchedule, RawSchedule};
pub use points::ChargeAmount;
pub use seat::SeatNo;
pub use text::check_text;
pub use time::Timestamp;
pub use user::{Role, UserId};
