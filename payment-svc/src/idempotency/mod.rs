//! Idempotency for the money endpoints (SPEC §3): the same key and body replays the first
//! response, another body is refused, and never does one key cause two effects.
//!
//! The protocol: [`begin`] opens the transaction that will carry the request's effect and
//! inserts the key into it (a payment claims it in the statement that pays, see
//! `confirm_payment`). The primary key makes a concurrent duplicate's insert wait until the
//! first transaction ends; if it committed, the duplicate finds the saved response and replays
//! it; if it rolled back (the request failed), the duplicate proceeds as the first. [`save`]
//! stores the response in the same transaction as the effect, so a key is visible exactly when
//! its effect is. Failed requests are not stored: a retry with the same key tries again (a
//! client that got 402 can top up and retry with the same key). Responses are stored as the
//! exact bytes sent, so a replay is identical to the first response.

mod key;
mod store;

pub use key::IdempotencyKey;
pub use store::{
    begin, claimed, save, Begin, Claim, Endpoint, Request, RequestHash, StoredResponse,
};
