//! The request deadline (`REQUEST_TIMEOUT_MS`), which bounds how long a client may take to send
//! its request, and only that.
//!
//! It does not cover the handler once the body is in. The writes are single statements
//! committed on their own (a payment, a hold) or transactions whose COMMIT may already be on
//! the wire: dropping the handler there would not undo them, and the client would be told 408
//! about a change that happened (SPEC §3: no state change on an error). So a statement, once
//! sent, is always waited for and its outcome answered. That wait is bounded anyway: a
//! connection is waited for at most the pool's acquire timeout, a statement runs at most
//! `STATEMENT_TIMEOUT_MS`.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

/// When the request must have been received in full, stored in the request's extensions by
/// [`start`] and enforced where the body is read ([`crate::extract::JsonBody`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline {
    pub at: Instant,
    /// `REQUEST_TIMEOUT_MS`, for the 408's message.
    pub allowed: Duration,
}

/// Middleware: starts the request's clock when its headers are in.
pub async fn start(State(allowed): State<Duration>, mut request: Request, next: Next) -> Response {
    let deadline = RequestDeadline {
        at: Instant::now() + allowed,
        allowed,
    };
    request.extensions_mut().insert(deadline);
    next.run(request).await
}
