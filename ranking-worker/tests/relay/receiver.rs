//! A webhook receiver on 127.0.0.1 for the webhook tests: records every request as it came
//! (headers and body bytes) and answers as the test scripts it. Signatures are checked by an
//! independent implementation, the `standardwebhooks` package from PyPI, run by
//! [`verify_with_python`].

use std::collections::{HashMap, VecDeque};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::Write;
use uuid::Uuid;

/// Two secrets, as during a rotation: every request must carry a valid signature for each.
pub const SECRETS: &str =
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oDdGVzdA==";

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: Uuid,
    pub timestamp: i64,
    pub signature: String,
    pub body: String,
    /// The status it was answered with.
    pub status: u16,
    pub at: Instant,
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            body: String::new(),
        }
    }
}

#[derive(Default)]
struct Script {
    received: Vec<Received>,
    /// Answers for the next requests, whatever their event.
    queue: VecDeque<Reply>,
    /// The answer for every request of an event, until cleared.
    always: HashMap<Uuid, Reply>,
    /// Requests being answered right now.
    in_flight: usize,
    /// How long each answer takes.
    delay: Duration,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// A receiver on `port` (0: any free one).
    pub async fn start_on(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: url_on(port),
            script,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// The events delivered (answered 2xx), each once, in the order they first arrived.
    pub fn delivered(&self) -> Vec<Uuid> {
        let mut seen = Vec::new();
        for request in self.received() {
            if (200..300).contains(&request.status) && !seen.contains(&request.id) {
                seen.push(request.id);
            }
        }
        seen
    }

    pub fn attempts(&self, id: Uuid) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|request| request.id == id)
            .collect()
    }

    pub fn queue(&self, reply: Reply) {
        self.script.lock().unwrap().queue.push_back(reply);
    }

    pub fn always(&self, id: Uuid, reply: Reply) {
        self.script.lock().unwrap().always.insert(id, reply);
    }

    pub fn clear_always(&self) {
        self.script.lock().unwrap().always.clear();
    }

    pub fn set_delay(&self, delay: Duration) {
        self.script.lock().unwrap().delay = delay;
    }

    pub fn in_flight(&self) -> usize {
        self.script.lock().unwrap().in_flight
    }
}

pub fn url_on(port: u16) -> String {
    format!("http://127.0.0.1:{port}/hooks/sold-out")
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id: Uuid = header("webhook-id").parse().unwrap_or_default();
    let (reply, delay) = {
        let mut script = script.lock().unwrap();
        script.in_flight += 1;
        let reply = match script.always.get(&id) {
            Some(reply) => reply.clone(),
            None => script
                .queue
                .pop_front()
                .unwrap_or_else(|| Reply::status(204)),
        };
        (reply, script.delay)
    };
    tokio::time::sleep(delay).await;
    {
        let mut script = script.lock().unwrap();
        script.in_flight -= 1;
        script.received.push(Received {
            id,
            timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
            signature: header("webhook-signature"),
            body: String::from_utf8_lossy(&body).into_owned(),
            status: reply.status,
            at: Instant::now(),
        });
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    if let Some(wait) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", wait.parse().unwrap());
    }
    response
}

/// The Python of the virtualenv holding the `standardwebhooks` package (scripts/test makes it).
fn verifier_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("WEBHOOK_VERIFIER_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| root.join("target/webhook-venv/bin/python"));
    assert!(
        python.exists(),
        "the independent signature verifier is missing: no {}. Create its virtualenv (Python \
         `standardwebhooks` from PyPI) with `scripts/webhook-receiver --setup`, which \
         scripts/test runs before cargo test",
        python.display()
    );
    python
}

/// Verifies every request's signature with each secret of [`SECRETS`] using the Python
/// `standardwebhooks` package, and that each body is the event its `webhook-id` names.
pub fn verify_with_python(requests: &[Received]) {
    assert!(!requests.is_empty(), "nothing to verify");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/webhook_receiver.py");
    let input = serde_json::json!({
        "secrets": SECRETS.split(' ').collect::<Vec<_>>(),
        "requests": requests.iter().map(|request| serde_json::json!({
            "headers": {
                "webhook-id": request.id.to_string(),
                "webhook-timestamp": request.timestamp.to_string(),
                "webhook-signature": request.signature,
            },
            "body": request.body,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(verifier_python())
        .arg(script)
        .arg("verify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Python verifier refused: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
