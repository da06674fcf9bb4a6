//! Failures: Redis unreachable, and a poison event.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ranking_worker::commands::dead_letters;
use ranking_worker::relay::Relay;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{eventually, settings, Harness};

/// A Redis of this test's own, so it can be stopped without disturbing other tests.
struct PrivateRedis {
    port: u16,
    process: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            process: None,
        };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.process = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn while_redis_is_down_nothing_is_marked_processed_and_all_apply_when_it_returns(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut private = PrivateRedis::start();
    let mut harness = Harness::new(database).await;
    harness.redis = ranking_worker::redis_conn::connect(&private.url()).unwrap();
    let events = harness.enqueue(20).await;
    let mut relay_settings = settings();
    relay_settings.max_attempts = 1_000;
    let relay: Relay = harness.relay(relay_settings);

    private.stop();
    let mut retried = 0;
    eventually(Duration::from_secs(30), async || {
        retried += relay.relay_once().await.unwrap().retried;
        retried >= 60 // every event failed at least three times
    })
    .await;
    assert_eq!(harness.count_with_status("PROCESSED").await, 0);
    assert_eq!(harness.count_with_status("DEAD").await, 0);
    let (min_attempts, error): (i32, String) =
        sqlx::query_as("SELECT min(attempts), min(last_error) FROM outbox")
            .fetch_one(&harness.pool)
            .await
            .unwrap();
    assert!(min_attempts >= 2, "retried with backoff");
    assert!(error.starts_with("redis"), "{error}");
    // Backoff: a failed event is not due again at once.
    let due_now: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE next_attempt_at <= now() - interval '1 second'",
    )
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    assert_eq!(due_now, 0);

    private.restart();
    eventually(Duration::from_secs(30), async || {
        relay.relay_once().await.unwrap();
        harness.count_with_status("PROCESSED").await == 20
    })
    .await;
    harness.assert_ranking_is(&events).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_poison_event_is_dead_lettered_while_others_flow_and_can_be_requeued(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let poison: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
         VALUES (gen_random_uuid(), 'ConcertSoldOut', 1, -1, '{\"schedule_id\": \"not a number\"}')
         RETURNING event_id",
    )
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    let first = harness.enqueue(10).await;
    let mut relay_settings = settings();
    relay_settings.max_attempts = 3;
    let relay = harness.relay(relay_settings);

    // The good events are applied on the first pass; the poison one is retried meanwhile.
    let outcome = relay.relay_once().await.unwrap();
    assert_eq!((outcome.applied, outcome.retried), (10, 1));
    harness.assert_ranking_is(&first).await;
    let later = harness.enqueue(5).await;
    eventually(Duration::from_secs(10), async || {
        relay.relay_once().await.unwrap();
        harness.count_with_status("DEAD").await == 1
    })
    .await;
    harness.assert_ranking_is(&[first, later].concat()).await;

    let (attempts, error): (i32, String) =
        sqlx::query_as("SELECT attempts, last_error FROM outbox WHERE event_id = $1")
            .bind(poison)
            .fetch_one(&harness.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 3, "dead-lettered after MAX_ATTEMPTS");
    assert!(
        error.starts_with("undecodable payload: schedule_id: invalid type"),
        "the error names the field: {error}"
    );
    let letters = dead_letters::list(&harness.pool).await.unwrap();
    assert_eq!(
        letters.iter().map(|l| l.event_id).collect::<Vec<_>>(),
        vec![poison]
    );
    assert!(dead_letters::render(&letters).contains(&poison.to_string()));

    assert_eq!(
        dead_letters::retry(&harness.pool, Some(poison))
            .await
            .unwrap(),
        1
    );
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM outbox WHERE event_id = $1")
            .bind(poison)
            .fetch_one(&harness.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("PENDING", 0));
    assert!(
        dead_letters::retry(&harness.pool, Some(poison))
            .await
            .is_err(),
        "no longer dead"
    );
    assert_eq!(dead_letters::retry(&harness.pool, None).await.unwrap(), 0);
}
