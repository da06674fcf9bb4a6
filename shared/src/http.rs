//! What both HTTP services put around their routes: a request id on every request and its
//! response, and one log line per request.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName};
use axum::response::Response;
use axum::Router;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id a client may choose; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Gives every request an id and logs one line per request, with method, path, request id,
/// status and latency (SPEC §7).
///
/// The id is the client's `x-request-id` when it sent one sane value (1 to
/// [`MAX_REQUEST_ID_LEN`] visible ASCII characters), else a new UUID; either way it is set on
/// the request (for the handlers and the log) and echoed on the response, so a client and an
/// operator can find the same request in the logs.
pub fn with_request_log<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    // The last layer added runs first: drop an insane id, set one, open the log span with it,
    // then copy it onto the response.
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                    )
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
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_insane_request_id))
}

/// Removes a client's `x-request-id` unless it is exactly one sane value, so that the next
/// layer gives the request a fresh one: an id is logged and echoed, and a client must not be
/// able to put kilobytes or several values into either.
async fn drop_insane_request_id(mut request: Request) -> Request {
    if !request.headers().contains_key(REQUEST_ID) {
        return request;
    }
    if !has_one_sane_request_id(request.headers()) {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

fn has_one_sane_request_id(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(REQUEST_ID).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => {
            let bytes = value.as_bytes();
            (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
                && bytes.iter().all(u8::is_ascii_graphic)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn one_short_visible_id_is_kept() {
        assert!(has_one_sane_request_id(&headers(&[b"abc-123_X.y:z"])));
        assert!(has_one_sane_request_id(&headers(&["a"
            .repeat(MAX_REQUEST_ID_LEN)
            .as_bytes()])));
    }

    #[test]
    fn empty_long_spaced_non_ascii_or_repeated_ids_are_replaced() {
        for insane in [
            headers(&[b""]),
            headers(&["a".repeat(MAX_REQUEST_ID_LEN + 1).as_bytes()]),
            headers(&[b"two words"]),
            headers(&[b"tab\there"]),
            headers(&["caf\u{e9}".as_bytes()]),
            headers(&[b"one", b"two"]),
        ] {
            assert!(!has_one_sane_request_id(&insane), "{insane:?}");
        }
    }

    /// Log lines written to memory, to read back.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A request id is kept when sane, made when missing or insane, echoed on the response
    /// and written in the access log line.
    #[tokio::test]
    async fn every_request_gets_an_id_echoed_and_logged() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(move || writer.clone())
            .finish();
        // A current-thread runtime: the server's tasks run on this thread, under this default.
        let _subscriber = tracing::subscriber::set_default(subscriber);
        let router = with_request_log(Router::new().route("/", axum::routing::get(|| async {})));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();
        let id_of = |response: reqwest::Response| {
            response.headers()[REQUEST_ID.as_str()]
                .to_str()
                .unwrap()
                .to_owned()
        };

        let made = id_of(client.get(&base).send().await.unwrap());
        assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
        let kept = id_of(
            client
                .get(&base)
                .header(REQUEST_ID.as_str(), "client-chosen-42")
                .send()
                .await
                .unwrap(),
        );
        assert_eq!(kept, "client-chosen-42");
        let replaced = id_of(
            client
                .get(&base)
                .header(REQUEST_ID.as_str(), "a".repeat(MAX_REQUEST_ID_LEN + 1))
                .send()
                .await
                .unwrap(),
        );
        assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");

        let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let served: Vec<serde_json::Value> = log
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|line: &serde_json::Value| line["message"] == "request served")
            .collect();
        let logged: Vec<&str> = served
            .iter()
            .map(|line| line["span"]["request_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            logged,
            [made.as_str(), "client-chosen-42", replaced.as_str()]
        );
    }
}
