//! The process-wide Prometheus recorder behind every `/metrics` endpoint, and the request
//! metrics both HTTP services record.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder on first use and returns the handle that renders it.
///
/// Idempotent because tests start several applications in one process, and a process may
/// have only one global recorder.
pub fn prometheus_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("the bucket list is a non-empty constant")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder is only ever installed by this function, under the OnceLock.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The `/metrics` answer: everything recorded, in Prometheus's text format.
pub fn exposition(handle: &PrometheusHandle) -> impl axum::response::IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// The `route` label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `method` label: one of a fixed set. Series are never evicted, so a label taken from the
/// request as sent would let any client add series (and memory) without bound by inventing
/// methods; every method outside the standard ones is `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Middleware: counts and times every request, labelled by method (from [`method_label`]),
/// route template (never the raw path, whose ids would make unbounded label sets) and status.
/// Add it with `axum::middleware::from_fn` inside the router, where `MatchedPath` is known.
pub async fn record_request(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || UNMATCHED_ROUTE.to_owned(),
        |path| path.as_str().to_owned(),
    );
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_are_other() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&invented), "OTHER");
    }
}
