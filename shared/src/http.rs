//! What both HTTP services put around their routes: one log line per request.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use tower_http::trace::TraceLayer;
use tracing::Span;

/// Adds one log line per request, with method, path, status and latency (SPEC §7).
pub fn with_request_log<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(|request: &Request| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            })
            .on_request(())
            .on_response(|response: &Response, latency: Duration, _span: &Span| {
                tracing::info!(
                    status = response.status().as_u16(),
                    latency_ms = latency.as_secs_f64() * 1000.0,
                    "request served"
                );
            }),
    )
}
