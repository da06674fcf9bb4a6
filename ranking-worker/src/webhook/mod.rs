//! The `webhook` consumer (SPEC §4, §6): POSTs each `ConcertSoldOut` to
//! `SOLD_OUT_WEBHOOK_URL`, signed per the Standard Webhooks specification, at least once and
//! in log order, with the event id as the receiver's dedupe key.
//!
//! A receiver cannot store our position with its effect, so the position lives in Postgres
//! (`outbox_consumers`), and moves after each delivery by compare-and-set on the session that
//! holds the consumer's lock. A crash between a delivery and that move delivers the event
//! again; an instance that lost its lock cannot move the position at all, and learns at its
//! next move that it must stop. What each answer means is in [`verdict`].

pub mod signer;
pub mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use shared::config::SecretParser;
use shared::events::ConcertSoldOut;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::consumer::{Cause, Pause, Sink, Step};
use crate::consumers::{self, HaltKind};
use crate::leadership::Leadership;
use crate::log::{self, LogPosition, LogRow};
use crate::relay::RelaySettings;
use signer::Signer;
use verdict::{excerpt, Verdict};

/// The webhook consumer's name: its row, its lock, its metrics' label.
pub const WEBHOOK: &str = "webhook";

/// How much of a refusing receiver's body a dead letter keeps.
const EXCERPT_CHARS: usize = 200;
/// Events delivered per step at most (fewer with a smaller `BATCH_SIZE`): deliveries are one
/// at a time, and a step is finished before shutdown or a check of the lock.
const DELIVERIES_PER_STEP: i64 = 20;

/// The webhook's settings on the command line; the consumer runs only with a URL.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Where to POST each sold-out event (JSON, signed per Standard Webhooks). Unset: no
    /// webhook consumer.
    #[arg(long, env = "SOLD_OUT_WEBHOOK_URL", value_parser = parse_url)]
    pub sold_out_webhook_url: Option<Url>,

    /// Signing secrets, space-separated, each `whsec_` + base64 of at least 24 bytes; every
    /// request is signed with each (for rotation). Required with the URL.
    #[arg(long, env = "SOLD_OUT_WEBHOOK_SECRET", hide_env_values = true,
          value_parser = SecretParser::new(WebhookSecret::parse))]
    pub sold_out_webhook_secret: Option<WebhookSecret>,

    /// Longest one delivery may take (connecting, sending, the receiver's answer), in
    /// milliseconds; longer counts as the receiver being unavailable.
    #[arg(long, env = "SOLD_OUT_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub sold_out_webhook_timeout_ms: u64,

    /// A webhook consumer configured for the first time delivers every event in the log,
    /// not only those from now on. No effect once the consumer exists.
    #[arg(long, env = "SOLD_OUT_WEBHOOK_FROM_START")]
    pub sold_out_webhook_from_start: bool,
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("an http or https URL is required, not {other}:")),
    }
}

/// `SOLD_OUT_WEBHOOK_SECRET` as given, kept as a secret so `Debug` never prints it; checked by
/// [`Signer::parse`] when the webhook is configured (a URL is set).
#[derive(Debug, Clone)]
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    /// Takes any text: [`WebhookArgs::settings`] checks it, and only when a URL is set.
    pub fn parse(value: &str) -> Result<Self, String> {
        Ok(Self(value.into()))
    }
}

impl WebhookArgs {
    /// The consumer's settings, `None` when no URL is set. A URL without a usable secret is
    /// refused with one line that names what is wrong.
    pub fn settings(&self) -> anyhow::Result<Option<WebhookSettings>> {
        let Some(url) = self.sold_out_webhook_url.clone() else {
            return Ok(None);
        };
        let secret = self.sold_out_webhook_secret.as_ref().ok_or_else(|| {
            anyhow::anyhow!("SOLD_OUT_WEBHOOK_SECRET is required when SOLD_OUT_WEBHOOK_URL is set")
        })?;
        let signer = Signer::parse(secret.0.expose_secret()).map_err(anyhow::Error::msg)?;
        Ok(Some(WebhookSettings {
            url,
            signer: Arc::new(signer),
            timeout: Duration::from_millis(self.sold_out_webhook_timeout_ms),
            from_start: self.sold_out_webhook_from_start,
        }))
    }
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: Url,
    pub signer: Arc<Signer>,
    pub timeout: Duration,
    /// A new consumer starts at the log's start rather than its head.
    pub from_start: bool,
}

/// One signed POST of one event, and what came of it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub verdict: Verdict,
    /// The receiver's status, or why there is none (`timeout`, `connection`).
    pub status: String,
    /// What went wrong, for a pause or a dead letter; empty when delivered.
    pub error: String,
    pub latency: Duration,
}

/// Signs and POSTs events to the receiver.
#[derive(Debug, Clone)]
pub struct Delivery {
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl Delivery {
    pub fn new(settings: WebhookSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A signed request goes only where it was configured to go.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ranking-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, settings })
    }

    /// POSTs `event` once, signed afresh with this moment's timestamp.
    pub async fn post(&self, event: &ConcertSoldOut) -> Attempt {
        let started = Instant::now();
        let attempt = self.try_post(event).await;
        let latency = started.elapsed();
        let attempt = match attempt {
            Ok((verdict, status, error)) => Attempt {
                verdict,
                status,
                error,
                latency,
            },
            Err(error) => {
                let status = if error.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                };
                Attempt {
                    verdict: Verdict::Unavailable { retry_after: None },
                    status: status.to_owned(),
                    error: format!("webhook receiver unavailable: {}", causes(error)),
                    latency,
                }
            }
        };
        metrics::histogram!("webhook_delivery_seconds", "consumer" => WEBHOOK)
            .record(latency.as_secs_f64());
        metrics::counter!("webhook_responses_total", "consumer" => WEBHOOK, "status" => attempt.status.clone())
            .increment(1);
        attempt
    }

    async fn try_post(&self, event: &ConcertSoldOut) -> reqwest::Result<(Verdict, String, String)> {
        let id = event.event_id.to_string();
        // The payload as the event type writes it: the contract's fields, compact.
        let body = serde_json::to_vec(event).unwrap_or_default();
        let timestamp = Utc::now().timestamp();
        let signature = match self.settings.signer.sign(&id, timestamp, &body) {
            Ok(signature) => signature,
            Err(error) => return Ok((Verdict::Misconfigured, "unsigned".to_owned(), error)),
        };
        let response = self
            .client
            .post(self.settings.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp.to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let verdict = Verdict::of(status, retry_after.as_deref(), Utc::now());
        let error = match &verdict {
            Verdict::Delivered => String::new(),
            Verdict::Refused => format!(
                "the receiver refused the event with {status}: {}",
                read_excerpt(response).await
            ),
            Verdict::Unavailable { .. } => format!("webhook receiver unavailable: {status}"),
            Verdict::Misconfigured => format!(
                "the webhook receiver refuses our requests with {status}: check \
                 SOLD_OUT_WEBHOOK_URL and that the receiver has SOLD_OUT_WEBHOOK_SECRET"
            ),
            Verdict::Gone => format!("the webhook receiver answered {status}"),
        };
        Ok((verdict, status.as_u16().to_string(), error))
    }
}

/// A request's error with its causes (`error sending request: ...: Connection refused`),
/// without the URL, which may hold a token of the receiver's: never in a log line.
fn causes(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// The first few hundred bytes of a body, as text on one line.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    excerpt(&String::from_utf8_lossy(&bytes), EXCERPT_CHARS)
}

/// The webhook as a [`Sink`]: its position in `outbox_consumers`, moved after each delivery.
pub struct WebhookSink {
    /// Its own connections (reads, dead letters), so it never waits for the ranking's.
    pool: PgPool,
    delivery: Delivery,
    relay: RelaySettings,
    from_start: bool,
    /// Whether the consumer's row is known to exist.
    registered: bool,
    /// The position as this instance last read or moved it.
    position: Option<LogPosition>,
    /// The event being tried and which try this is: 1, plus one per failed attempt.
    attempt: (Uuid, u32),
}

impl WebhookSink {
    pub fn new(
        pool: PgPool,
        settings: WebhookSettings,
        relay: RelaySettings,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            from_start: settings.from_start,
            delivery: Delivery::new(settings)?,
            relay,
            registered: false,
            position: None,
            attempt: (Uuid::nil(), 0),
        })
    }

    /// Creates the consumer's row at the log's head (or start), the first time.
    async fn register_once(&mut self) -> Result<(), Pause> {
        if !self.registered {
            if consumers::register(&self.pool, WEBHOOK, self.from_start)
                .await
                .map_err(postgres)?
            {
                let at = if self.from_start { "start" } else { "head" };
                tracing::info!(
                    consumer = WEBHOOK,
                    "a new webhook consumer: delivering from the log's {at}"
                );
            }
            self.registered = true;
        }
        Ok(())
    }

    async fn deliver_batch(
        &mut self,
        lock: &mut Leadership,
        shutdown: &CancellationToken,
    ) -> Result<Step, Pause> {
        self.register_once().await?;
        let session = lock
            .session()
            .ok_or_else(|| Pause::other("the session holding the consumer's lock is gone"))?;
        let Some((from, halted)) = consumers::position_of(&mut *session, WEBHOOK)
            .await
            .map_err(postgres)?
        else {
            // Removed by an operator while running: registered again at the next step.
            self.registered = false;
            return Err(Pause::other("the webhook consumer's row is gone"));
        };
        let mut step = Step::default();
        if self.position.is_some_and(|known| known != from) {
            tracing::info!(consumer = WEBHOOK, expected = ?self.position.map(|p| p.to_string()), found = %from, "the webhook's position moved; delivering from there");
        }
        self.position = Some(from);
        if halted {
            step.halted = true;
            return Ok(step);
        }
        let batch = log::read_after(&self.pool, from, self.batch_size() as i64)
            .await
            .map_err(postgres)?;
        step.read = batch.rows.len();
        step.more = step.read == self.batch_size();
        step.held_back = batch.held_back_for.is_some();
        step.held_back_for = Duration::from_secs_f64(batch.held_back_for.unwrap_or(0.0).max(0.0));
        let (mut at, mut through) = (from, from);
        for row in &batch.rows {
            through = row.position();
            if !row.is_sold_out() {
                continue;
            }
            let letter = match row.decode_sold_out() {
                // At shutdown the request in flight is dropped and the position stays before
                // its event: whoever runs next sends it again (at least once), and SIGTERM
                // does not wait up to SOLD_OUT_WEBHOOK_TIMEOUT_MS per event of the batch.
                Ok(event) => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(step),
                    letter = self.deliver(row, &event, &mut step) => letter?,
                },
                Err(error) => Some(error),
            };
            if step.halted {
                return Ok(step);
            }
            if let Some(error) = letter {
                // Recorded before the position moves past it: a crash in between meets it again.
                let new =
                    consumers::dead_letter(&self.pool, WEBHOOK, &[(row.event_id, error.clone())])
                        .await
                        .map_err(postgres)?;
                if !new.is_empty() {
                    tracing::error!(event_id = %row.event_id, %error, consumer = WEBHOOK, "event dead-lettered");
                    metrics::counter!("consumer_events_dead_lettered_total", "consumer" => WEBHOOK)
                        .increment(1);
                }
            }
            if !self.advance(lock, at, through, &mut step).await? {
                return Ok(step);
            }
            at = through;
        }
        if through != at {
            // Rows of other types at the batch's end: passed over.
            self.advance(lock, at, through, &mut step).await?;
        }
        Ok(step)
    }

    /// Delivers one event. `Ok(None)`: delivered; `Ok(Some(error))`: refused, a dead letter;
    /// `Err`: pause; `step.halted`: the endpoint is gone and the consumer now disabled.
    async fn deliver(
        &mut self,
        row: &LogRow,
        event: &ConcertSoldOut,
        step: &mut Step,
    ) -> Result<Option<String>, Pause> {
        if self.attempt.0 != row.event_id {
            self.attempt = (row.event_id, 0);
        }
        self.attempt.1 += 1;
        let attempt = self.delivery.post(event).await;
        let latency_ms = (attempt.latency.as_secs_f64() * 10_000.0).round() / 10.0;
        match attempt.verdict {
            Verdict::Delivered => {
                let lag = (Utc::now() - row.created_at).to_std().unwrap_or_default();
                metrics::histogram!("consumer_commit_to_applied_seconds", "consumer" => WEBHOOK)
                    .record(lag.as_secs_f64());
                metrics::counter!("consumer_events_applied_total", "consumer" => WEBHOOK)
                    .increment(1);
                tracing::info!(
                    event_id = %row.event_id,
                    status = %attempt.status,
                    attempt = self.attempt.1,
                    latency_ms,
                    position = %row.position(),
                    lag_ms = (lag.as_secs_f64() * 10_000.0).round() / 10.0,
                    "webhook delivered"
                );
                // A dead letter of this event (a stale instance's, or one delivered again
                // after `consumers reset`) is resolved: `dead-letters retry` must not send it
                // once more.
                consumers::resolve_dead_letters(&self.pool, WEBHOOK, &[row.event_id])
                    .await
                    .map_err(postgres)?;
                Ok(None)
            }
            Verdict::Refused => Ok(Some(attempt.error)),
            Verdict::Gone => {
                let reason = format!("{} for event {}", attempt.error, row.event_id);
                consumers::halt(&self.pool, WEBHOOK, HaltKind::Disabled, &reason)
                    .await
                    .map_err(postgres)?;
                tracing::error!(
                    consumer = WEBHOOK,
                    event_id = %row.event_id,
                    status = %attempt.status,
                    "the webhook endpoint is gone (410 Gone); the consumer is disabled and \
                     delivers nothing until `ranking-worker consumers resume webhook`"
                );
                step.halted = true;
                Ok(None)
            }
            Verdict::Unavailable { retry_after } => {
                tracing::info!(event_id = %row.event_id, status = %attempt.status, attempt = self.attempt.1, latency_ms, retry_after_s = retry_after.map(|wait| wait.as_secs()), "webhook attempt failed");
                Err(Pause {
                    reason: attempt.error,
                    cause: Cause::SinkUnavailable { retry_after },
                })
            }
            Verdict::Misconfigured => {
                tracing::info!(event_id = %row.event_id, status = %attempt.status, attempt = self.attempt.1, latency_ms, "webhook attempt failed");
                Err(Pause {
                    reason: attempt.error,
                    cause: Cause::Misconfigured,
                })
            }
        }
    }

    /// Moves the position from `from` to `to` on the lock's session; `false` when it had moved
    /// (`step.position_moved`) or the consumer is halted now (`step.halted`): stop the batch.
    async fn advance(
        &mut self,
        lock: &mut Leadership,
        from: LogPosition,
        to: LogPosition,
        step: &mut Step,
    ) -> Result<bool, Pause> {
        let session = lock
            .session()
            .ok_or_else(|| Pause::other("the session holding the consumer's lock is gone"))?;
        match consumers::move_position(&mut *session, WEBHOOK, from, to)
            .await
            .map_err(postgres)?
        {
            Some(halted) => {
                self.position = Some(to);
                step.halted = halted;
                Ok(!halted)
            }
            None => {
                tracing::info!(consumer = WEBHOOK, expected = %from, "the webhook's position moved under this instance; reading it again");
                self.position = None;
                step.position_moved = true;
                Ok(false)
            }
        }
    }
}

fn postgres(error: sqlx::Error) -> Pause {
    Pause::other(format!("postgres: {error}"))
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        WEBHOOK
    }

    fn batch_size(&self) -> usize {
        self.relay.batch_size.min(DELIVERIES_PER_STEP) as usize
    }

    fn retry(&self) -> (Duration, Duration) {
        (self.relay.retry_base, self.relay.retry_cap)
    }

    fn position(&self) -> Option<String> {
        self.position.map(|position| position.to_string())
    }

    fn forget_position(&mut self) {
        self.position = None;
    }

    async fn step(
        &mut self,
        lock: &mut Leadership,
        shutdown: &CancellationToken,
    ) -> Result<Step, Pause> {
        self.deliver_batch(lock, shutdown).await
    }

    async fn register(&mut self) -> Result<(), Pause> {
        self.register_once().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, secret: Option<&str>) -> WebhookArgs {
        WebhookArgs {
            sold_out_webhook_url: url.map(|url| parse_url(url).unwrap()),
            sold_out_webhook_secret: secret.map(|secret| WebhookSecret::parse(secret).unwrap()),
            sold_out_webhook_timeout_ms: 10_000,
            sold_out_webhook_from_start: false,
        }
    }

    #[test]
    fn the_webhook_is_off_without_a_url_and_needs_a_secret_with_one() {
        assert!(args(None, Some("whsec_x")).settings().unwrap().is_none());
        let missing = args(Some("https://example.com/hook"), None).settings();
        assert_eq!(
            missing.unwrap_err().to_string(),
            "SOLD_OUT_WEBHOOK_SECRET is required when SOLD_OUT_WEBHOOK_URL is set"
        );
        let settings = args(
            Some("https://example.com/hook"),
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        )
        .settings()
        .unwrap()
        .unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(10));
    }

    #[test]
    fn webhook_secrets_are_never_printed() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let parsed = WebhookSecret::parse(secret).unwrap();
        assert!(!format!("{parsed:?}").contains("MfKQ9r8G"));
        let args = args(Some("https://example.com/hook"), Some(secret));
        assert!(!format!("{args:?}").contains("MfKQ9r8G"));
        assert!(!format!("{:?}", args.settings().unwrap()).contains("MfKQ9r8G"));
    }

    #[test]
    fn only_http_and_https_urls_are_taken() {
        assert!(parse_url("http://127.0.0.1:9000/hooks").is_ok());
        assert!(parse_url("ftp://example.com/")
            .unwrap_err()
            .contains("http or https"));
        assert!(parse_url("not a url").unwrap_err().starts_with("not a URL"));
    }
}
