//! The `webhook` consumer against a real receiver on 127.0.0.1: every sell-out arrives, in log
//! order, signed (checked by Python's `standardwebhooks`); each kind of answer does what SPEC §4
//! says; it never holds the ranking up; crashes redeliver but never skip; a stale instance
//! delivers and moves nothing.

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ranking_worker::commands::dead_letters;
use ranking_worker::consumer::{Cause, Pause, Sink, Step};
use ranking_worker::consumers::{self, HaltKind};
use ranking_worker::leadership::Leadership;
use ranking_worker::log::{self, LogPosition};
use ranking_worker::webhook::signer::Signer;
use ranking_worker::webhook::{Delivery, WebhookSettings, WebhookSink, WEBHOOK};
use shared::events::ConcertSoldOut;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{
    eventually, free_port, get_json, get_text, settings, stop_with_sigterm, Harness,
};
use crate::receiver::{url_on, verify_with_python, Receiver, Reply, SECRETS};

fn webhook(url: &str, from_start: bool) -> WebhookSettings {
    WebhookSettings {
        url: url.parse().unwrap(),
        signer: Arc::new(Signer::parse(SECRETS).unwrap()),
        timeout: Duration::from_secs(2),
        from_start,
    }
}

fn ids(events: &[ConcertSoldOut]) -> Vec<Uuid> {
    events.iter().map(|event| event.event_id).collect()
}

/// Starts a worker in this process whose webhook consumer delivers to `url`; it runs until
/// `shutdown` is cancelled. Returns its base URL.
async fn start(
    harness: &Harness,
    shutdown: &CancellationToken,
    url: &str,
    from_start: bool,
) -> String {
    let webhook = Some(webhook(url, from_start));
    harness
        .start_worker_with(Duration::from_millis(50), shutdown, webhook)
        .await
}

/// The webhook consumer's position, as Postgres keeps it.
async fn position(harness: &Harness) -> LogPosition {
    consumers::get(&harness.pool, WEBHOOK)
        .await
        .unwrap()
        .position()
}

async fn webhook_letters(harness: &Harness) -> Vec<consumers::DeadLetter> {
    consumers::dead_letters(&harness.pool, Some(WEBHOOK))
        .await
        .unwrap()
}

/// A webhook sink driven step by step, holding the consumer's lock.
async fn sink_holding_the_lock(
    harness: &Harness,
    url: &str,
    application_name: &str,
) -> (WebhookSink, Leadership) {
    let sink = WebhookSink::new(harness.pool.clone(), webhook(url, true), settings()).unwrap();
    let mut lock = Leadership::new(
        harness.database.clone().application_name(application_name),
        WEBHOOK,
    );
    let mut held = false;
    eventually(Duration::from_secs(10), async || {
        held = lock.try_acquire().await.unwrap();
        held
    })
    .await;
    (sink, lock)
}

/// One step of `sink` that reads something (or fails): rows another test's open transaction
/// holds back are waited for.
async fn step_reading(sink: &mut WebhookSink, lock: &mut Leadership) -> Result<Step, Pause> {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let step = sink.step(lock, &CancellationToken::new()).await;
        match &step {
            Ok(done) if done.read == 0 && done.held_back => {
                assert!(
                    tokio::time::Instant::now() < give_up,
                    "rows held back for 30 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => return step,
        }
    }
}

/// Waits until every row committed so far is visible to readers (no other test's open
/// transaction holds it back).
async fn all_visible(harness: &Harness) {
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&harness.pool)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), async || {
        log::read_after(&harness.pool, LogPosition::START, 10_000)
            .await
            .unwrap()
            .rows
            .len() as i64
            == committed
    })
    .await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn every_sell_out_reaches_the_receiver_in_log_order_signed_with_each_secret(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    // Committed before the consumer existed: delivered too, as told to start from the start.
    let mut events = harness.enqueue(3).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let base = start(&harness, &shutdown, &receiver.url, true).await;
    for _ in 0..4 {
        events.extend(harness.enqueue(5).await);
    }
    eventually(Duration::from_secs(30), async || {
        receiver.delivered().len() == events.len()
    })
    .await;
    assert_eq!(receiver.delivered(), ids(&events), "in log order");
    verify_with_python(&receiver.received());
    // The body is the event, as the event type writes it.
    let first: ConcertSoldOut = serde_json::from_str(&receiver.received()[0].body).unwrap();
    assert_eq!(first, events[0]);
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == events.len() as u64
    })
    .await;

    let client = reqwest::Client::new();
    let consumers = get_json(&client, &format!("{base}/consumers")).await;
    let webhook = consumers["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|consumer| consumer["name"] == WEBHOOK)
        .cloned()
        .unwrap();
    assert_eq!(webhook["role"], "active");
    assert_eq!(webhook["lag"]["events"], 0);
    let page = get_text(&client, &format!("{base}/metrics")).await;
    for series in [
        "consumer_events_applied_total{consumer=\"webhook\"}",
        "consumer_lag_events{consumer=\"webhook\"}",
        "webhook_delivery_seconds_count{consumer=\"webhook\"}",
        "webhook_responses_total{consumer=\"webhook\",status=\"204\"}",
    ] {
        assert!(page.contains(series), "{series} in /metrics");
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_new_consumer_starts_at_the_head_of_the_log(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    harness.enqueue(3).await;
    // Were they still held back when the consumer is made, they would count as after its head.
    all_visible(&harness).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    start(&harness, &shutdown, &receiver.url, false).await;
    eventually(Duration::from_secs(10), async || {
        consumers::get(&harness.pool, WEBHOOK).await.is_ok()
    })
    .await;
    let later = harness.enqueue(2).await;
    eventually(Duration::from_secs(10), async || {
        receiver.delivered().len() >= 2
    })
    .await;
    // Delivered in log order: had the first three been due, they would have come first.
    assert_eq!(receiver.delivered(), ids(&later));
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_ranking_goes_on_while_the_receiver_is_down_and_the_webhook_catches_up_after(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let port = free_port();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    start(&harness, &shutdown, &url_on(port), true).await;
    let events = harness.enqueue(10).await;
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == 10
    })
    .await;
    harness.assert_ranking_is(&events).await;
    eventually(Duration::from_secs(10), async || {
        consumers::get(&harness.pool, WEBHOOK)
            .await
            .is_ok_and(|row| {
                row.state == "paused"
                    && row
                        .detail
                        .is_some_and(|detail| detail.contains("unavailable"))
            })
    })
    .await;
    assert_eq!(position(&harness).await, LogPosition::START);
    assert!(webhook_letters(&harness).await.is_empty());

    let receiver = Receiver::start_on(port).await;
    eventually(Duration::from_secs(20), async || {
        receiver.delivered().len() == 10
    })
    .await;
    assert_eq!(receiver.delivered(), ids(&events));
    assert!(webhook_letters(&harness).await.is_empty());
    eventually(Duration::from_secs(10), async || {
        consumers::get(&harness.pool, WEBHOOK)
            .await
            .is_ok_and(|row| row.state == "running")
    })
    .await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_500_then_a_200_delivers_once_more_with_a_fresh_timestamp_and_no_dead_letter(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    receiver.queue(Reply::status(500));
    let events = harness.enqueue(2).await;
    let (mut sink, mut lock) = sink_holding_the_lock(&harness, &receiver.url, "webhook-a").await;

    let pause = step_reading(&mut sink, &mut lock).await.unwrap_err();
    assert_eq!(pause.cause, Cause::SinkUnavailable { retry_after: None });
    assert!(pause.reason.contains("500"), "{}", pause.reason);
    assert_eq!(position(&harness).await, LogPosition::START);
    let failed = receiver.received()[0].clone();
    // The next attempt comes in a later second, so its timestamp must differ.
    eventually(Duration::from_secs(3), async || {
        Utc::now().timestamp() > failed.timestamp
    })
    .await;
    let step = step_reading(&mut sink, &mut lock).await.unwrap();
    assert_eq!(step.read, 2);

    let attempts = receiver.attempts(events[0].event_id);
    assert_eq!(attempts.len(), 2, "delivered once more");
    assert_eq!((attempts[0].status, attempts[1].status), (500, 204));
    assert!(
        attempts[1].timestamp > attempts[0].timestamp,
        "a fresh timestamp"
    );
    assert_ne!(
        attempts[1].signature, attempts[0].signature,
        "signed afresh"
    );
    assert_eq!(receiver.delivered(), ids(&events));
    assert!(webhook_letters(&harness).await.is_empty());
    verify_with_python(&receiver.received());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_422_dead_letters_that_event_the_next_is_delivered_and_a_retry_redelivers_it(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    let events = harness.enqueue(3).await;
    let refused = events[1].event_id;
    receiver.always(
        refused,
        Reply {
            body: "{\"error\":\"schedule unknown here\"}".into(),
            ..Reply::status(422)
        },
    );
    let (mut sink, mut lock) = sink_holding_the_lock(&harness, &receiver.url, "webhook-a").await;
    let step = step_reading(&mut sink, &mut lock).await.unwrap();
    assert_eq!(step.read, 3);
    assert_eq!(
        receiver.delivered(),
        vec![events[0].event_id, events[2].event_id]
    );
    let letters = webhook_letters(&harness).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_id, refused);
    assert!(
        letters[0].error.contains("422") && letters[0].error.contains("schedule unknown here"),
        "status and body excerpt: {}",
        letters[0].error
    );
    assert!(
        position(&harness).await > LogPosition::START,
        "moved past all three"
    );
    assert_eq!(
        step_reading(&mut sink, &mut lock).await.unwrap().read,
        0,
        "nothing left to deliver"
    );

    // Fixed at the receiver: `dead-letters retry --consumer webhook` delivers it.
    receiver.clear_always();
    let delivery = Delivery::new(webhook(&receiver.url, true)).unwrap();
    let report = dead_letters::retry_webhook(&harness.pool, &delivery, None)
        .await
        .unwrap();
    assert_eq!((report.applied, report.still_dead), (1, 0));
    assert!(webhook_letters(&harness).await.is_empty());
    assert_eq!(receiver.attempts(refused).last().unwrap().status, 204);
    verify_with_python(&receiver.received());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_410_disables_the_consumer_the_ranking_goes_on_and_resume_delivers_the_rest(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    let mut events = harness.enqueue(5).await;
    receiver.always(events[2].event_id, Reply::status(410));
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    start(&harness, &shutdown, &receiver.url, true).await;
    eventually(Duration::from_secs(10), async || {
        consumers::halt_of(&harness.pool, WEBHOOK)
            .await
            .unwrap()
            .is_some_and(|halt| halt.kind == HaltKind::Disabled)
    })
    .await;
    events.extend(harness.enqueue(3).await);
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == 8
    })
    .await;
    harness.assert_ranking_is(&events).await;
    assert_eq!(receiver.delivered(), ids(&events[..2]));
    assert_eq!(
        receiver.attempts(events[2].event_id).len(),
        1,
        "nothing is tried while disabled"
    );
    assert!(webhook_letters(&harness).await.is_empty());

    receiver.clear_always();
    assert!(consumers::resume(&harness.pool, WEBHOOK).await.unwrap());
    eventually(Duration::from_secs(10), async || {
        receiver.delivered().len() == 8
    })
    .await;
    assert_eq!(receiver.delivered(), ids(&events));
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn an_operator_pause_stops_delivery_until_resumed(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    let (mut sink, mut lock) = sink_holding_the_lock(&harness, &receiver.url, "webhook-a").await;
    assert_eq!(
        step_reading(&mut sink, &mut lock).await.unwrap().read,
        0,
        "registers"
    );
    let first = harness.enqueue(2).await;
    receiver.set_delay(Duration::from_millis(0));
    // Paused before the step: nothing goes out.
    consumers::halt(&harness.pool, WEBHOOK, HaltKind::Paused, "maintenance")
        .await
        .unwrap();
    let step = step_reading(&mut sink, &mut lock).await.unwrap();
    assert!(step.halted);
    assert!(receiver.received().is_empty());
    consumers::resume(&harness.pool, WEBHOOK).await.unwrap();
    step_reading(&mut sink, &mut lock).await.unwrap();
    assert_eq!(receiver.delivered(), ids(&first));
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn retry_after_is_honoured(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    receiver.queue(Reply {
        retry_after: Some("2".into()),
        ..Reply::status(503)
    });
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    // Backoff alone would retry within 200 ms (settings()).
    start(&harness, &shutdown, &receiver.url, true).await;
    let events = harness.enqueue(1).await;
    eventually(Duration::from_secs(10), async || {
        receiver.delivered().len() == 1
    })
    .await;
    let attempts = receiver.attempts(events[0].event_id);
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1].at - attempts[0].at;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "waited {waited:?} as Retry-After: 2 asked"
    );
}

/// Worker processes, killed if the test fails before it stops them.
struct KillOnDrop(Vec<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn sigkill_during_delivery_may_deliver_an_event_twice_but_never_misses_one(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const EVENTS: usize = 60;
    const KILLS: usize = 4;
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    // Slow answers, so each kill lands while a request is in flight.
    receiver.set_delay(Duration::from_millis(40));
    let log = std::env::temp_dir().join(format!("webhook-kill-{}.log", Uuid::new_v4()));
    let env = [
        ("SOLD_OUT_WEBHOOK_URL", receiver.url.as_str()),
        ("SOLD_OUT_WEBHOOK_SECRET", SECRETS),
        ("SOLD_OUT_WEBHOOK_FROM_START", "true"),
        ("RETRY_BASE_MS", "20"),
        ("RETRY_MAX_MS", "200"),
    ];
    let mut workers = KillOnDrop((0..2).map(|_| harness.spawn_worker(&log, &env)).collect());
    let mut events = Vec::new();
    for kill in 0..KILLS {
        events.extend(harness.enqueue(EVENTS / KILLS).await);
        let mut pid = None;
        eventually(Duration::from_secs(30), async || {
            pid = harness
                .active_pid(WEBHOOK)
                .await
                .filter(|pid| workers.0.iter().any(|w| w.id() == *pid));
            pid.is_some() && receiver.in_flight() > 0
        })
        .await;
        let index = workers.0.iter().position(|w| Some(w.id()) == pid).unwrap();
        let mut victim = workers.0.swap_remove(index);
        victim.kill().unwrap(); // SIGKILL, mid-request
        victim.wait().unwrap();
        assert!(
            receiver.delivered().len() < events.len(),
            "kill {kill} came after the events were all delivered"
        );
        workers.0.push(harness.spawn_worker(&log, &env));
    }
    eventually(Duration::from_secs(60), async || {
        receiver.delivered().len() == EVENTS
    })
    .await;
    for worker in std::mem::take(&mut workers.0) {
        stop_with_sigterm(worker);
    }
    assert_eq!(
        receiver.delivered(),
        ids(&events),
        "none missed, first arrivals in log order"
    );
    let requests = receiver.received();
    println!(
        "{KILLS} kills: {} requests for {EVENTS} events",
        requests.len()
    );
    verify_with_python(&requests);
    let _ = std::fs::remove_file(&log);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_stale_instance_delivers_nothing_and_cannot_move_the_position_back(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    let first = harness.enqueue(3).await;
    let (mut stale, mut stale_lock) =
        sink_holding_the_lock(&harness, &receiver.url, "webhook-stale").await;
    step_reading(&mut stale, &mut stale_lock).await.unwrap();
    let stale_position = position(&harness).await;

    // Its session is cut (its host vanished, say); it has not noticed, and another instance
    // takes the consumer over and delivers the next events.
    let cut: bool = sqlx::query_scalar(
        "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'webhook-stale'",
    )
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    assert!(cut);
    let (mut active, mut active_lock) =
        sink_holding_the_lock(&harness, &receiver.url, "webhook-active").await;
    let second = harness.enqueue(3).await;
    step_reading(&mut active, &mut active_lock).await.unwrap();
    let third = harness.enqueue(2).await;
    let requests = receiver.received().len();
    let moved = position(&harness).await;
    assert!(moved > stale_position);

    // The stale instance tries: it delivers nothing and moves nothing.
    assert!(stale
        .step(&mut stale_lock, &CancellationToken::new())
        .await
        .is_err());
    assert_eq!(receiver.received().len(), requests, "nothing delivered");
    assert_eq!(position(&harness).await, moved);
    // A compare-and-set from where it last was cannot move the position back.
    assert_eq!(
        consumers::move_position(&harness.pool, WEBHOOK, stale_position, LogPosition::START)
            .await
            .unwrap(),
        None
    );
    assert_eq!(position(&harness).await, moved);

    step_reading(&mut active, &mut active_lock).await.unwrap();
    assert_eq!(
        receiver.delivered(),
        ids(&[first, second, third].concat()),
        "each once, in log order"
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_401_or_a_timeout_pauses_and_dead_letters_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    let events = harness.enqueue(1).await;
    let sink = WebhookSink::new(
        harness.pool.clone(),
        WebhookSettings {
            timeout: Duration::from_millis(300),
            ..webhook(&receiver.url, true)
        },
        settings(),
    )
    .unwrap();
    let (_, mut lock) = sink_holding_the_lock(&harness, &receiver.url, "webhook-a").await;
    let mut sink = sink;

    receiver.queue(Reply::status(401));
    let pause = step_reading(&mut sink, &mut lock).await.unwrap_err();
    assert_eq!(pause.cause, Cause::Misconfigured);
    assert!(pause.reason.contains("401"), "{}", pause.reason);

    // Slower than SOLD_OUT_WEBHOOK_TIMEOUT_MS: the receiver counts as unavailable.
    receiver.set_delay(Duration::from_millis(600));
    let pause = step_reading(&mut sink, &mut lock).await.unwrap_err();
    assert_eq!(pause.cause, Cause::SinkUnavailable { retry_after: None });
    assert!(pause.reason.contains("timed out"), "{}", pause.reason);

    assert_eq!(position(&harness).await, LogPosition::START);
    assert!(webhook_letters(&harness).await.is_empty());
    receiver.set_delay(Duration::ZERO);
    step_reading(&mut sink, &mut lock).await.unwrap();
    assert_eq!(receiver.delivered(), ids(&events));
}

/// SIGTERM while the receiver holds a request: the worker drops it and exits 0, rather than
/// wait for the request timeout (a container stop would kill it first); the event stays before
/// the position, and the next worker delivers it.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn sigterm_during_a_slow_delivery_drops_the_request_and_the_event_is_delivered_later(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_secs(30));
    let log = std::env::temp_dir().join(format!("webhook-sigterm-{}.log", Uuid::new_v4()));
    let env = [
        ("SOLD_OUT_WEBHOOK_URL", receiver.url.as_str()),
        ("SOLD_OUT_WEBHOOK_SECRET", SECRETS),
        ("SOLD_OUT_WEBHOOK_FROM_START", "true"),
        ("SOLD_OUT_WEBHOOK_TIMEOUT_MS", "3000"),
    ];
    let mut workers = KillOnDrop(vec![harness.spawn_worker(&log, &env)]);
    let events = harness.enqueue(1).await;
    eventually(Duration::from_secs(30), async || receiver.in_flight() > 0).await;

    stop_with_sigterm(workers.0.pop().unwrap());
    // It dropped the request: had it waited, the request would have timed out first (this
    // test's runtime, and so the receiver, is blocked while the worker stops) and the worker
    // would have paused for an unavailable receiver.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.contains("webhook receiver unavailable"),
        "the worker waited for the request in flight:\n{logged}"
    );

    receiver.set_delay(Duration::ZERO);
    workers.0.push(harness.spawn_worker(&log, &env));
    eventually(Duration::from_secs(30), async || {
        receiver.delivered() == ids(&events)
    })
    .await;
    stop_with_sigterm(workers.0.pop().unwrap());
    let _ = std::fs::remove_file(&log);
}
