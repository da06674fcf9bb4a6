//! Failures that are never the events' fault pause the consumer and lose nothing: Redis
//! restarted empty, Redis down for long, a failover, a wrong-typed key. A poison event is the
//! one thing that is dead-lettered.

use std::time::Duration;

use ranking_worker::commands::{dead_letters, status};
use ranking_worker::relay::RelayError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    event, eventually, get_json, get_text, settings, Harness, PrivateRedis, Proxy,
};

/// A counter or gauge's value in a Prometheus text page, 0 when absent.
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_redis_restarted_empty_is_healed_without_any_command(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut redis = PrivateRedis::start();
    let harness = Harness::with_redis(database, &redis.url()).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let base = harness
        .start_worker(Duration::from_millis(100), &shutdown)
        .await;
    let events = harness.enqueue(50).await;
    eventually(Duration::from_secs(20), async || {
        harness.applied_events().await == 50
            && harness.consumer().await.position() > Default::default()
    })
    .await;

    redis.restart();
    eventually(Duration::from_secs(20), async || {
        harness
            .try_scores()
            .await
            .is_ok_and(|scores| scores.len() == 50)
    })
    .await;
    harness.assert_ranking_is(&events).await;
    let client = reqwest::Client::new();
    let page = get_text(&client, &format!("{base}/metrics")).await;
    assert!(
        metric(&page, "consumer_resyncs_total{consumer=\"ranking\"}") >= 1.0,
        "the heal is counted"
    );
    let consumers = get_json(&client, &format!("{base}/consumers")).await;
    assert_eq!(consumers["consumers"][0]["role"], "active");
    assert_eq!(consumers["consumers"][0]["state"], "running");
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn redis_down_far_longer_than_any_retry_budget_dead_letters_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut redis = PrivateRedis::start();
    let harness = Harness::with_redis(database, &redis.url()).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let mut events = harness.enqueue(5).await;
    eventually(Duration::from_secs(20), async || {
        harness.applied_events().await == 5
    })
    .await;

    redis.stop();
    let client = reqwest::Client::new();
    // Sell-outs continue while the consumer stays paused for 4 s: with backoff capped at 200 ms
    // that is dozens of failed tries, far beyond the old budget of ten attempts.
    let mut paused_since = None::<std::time::Instant>;
    eventually(Duration::from_secs(60), async || {
        events.extend(harness.enqueue(1).await);
        let status = status::status(&harness.pool, &mut harness.redis.clone(), &harness.ranking)
            .await
            .unwrap();
        if status.consumers[0].state == "paused" {
            paused_since.get_or_insert_with(std::time::Instant::now);
        }
        paused_since.is_some_and(|since| since.elapsed() >= Duration::from_secs(4))
    })
    .await;
    let page = get_text(&client, &format!("{base}/metrics")).await;
    assert!(
        metric(
            &page,
            "consumer_sink_unavailable_seconds_total{consumer=\"ranking\"}"
        ) > 0.0,
        "the pause is measured"
    );
    let status = status::status(&harness.pool, &mut harness.redis.clone(), &harness.ranking)
        .await
        .unwrap();
    assert!(
        status.consumers[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .starts_with("redis"),
        "status says why: {status:?}"
    );
    assert!(status.redis_error.is_some());
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({ "status": "unavailable", "postgres": "ok", "redis": "unreachable" })
    );
    assert!(harness.dead_letters().await.is_empty());

    redis.restart();
    eventually(Duration::from_secs(30), async || {
        harness
            .try_scores()
            .await
            .is_ok_and(|scores| scores.len() == events.len())
    })
    .await;
    harness.assert_ranking_is(&events).await;
    assert!(
        harness.dead_letters().await.is_empty(),
        "nothing dead-lettered"
    );
    eventually(Duration::from_secs(10), async || {
        harness.consumer().await.state == "running"
    })
    .await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn after_a_failover_the_consumer_reconnects_and_writes_to_the_new_primary(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let old = PrivateRedis::start();
    let new = PrivateRedis::start();
    let (mut old_conn, mut new_conn) = (old.connection().await, new.connection().await);
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(old.port)
        .exec_async(&mut new_conn)
        .await
        .unwrap();
    let proxy = Proxy::start(old.port).await;
    let mut harness = Harness::with_redis(database, &proxy.url()).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    harness
        .start_worker(Duration::from_millis(50), &shutdown)
        .await;
    let first = harness.enqueue(10).await;
    // The replica has caught up with what the primary applied.
    harness.redis = new_conn.clone();
    eventually(Duration::from_secs(20), async || {
        harness.applied_events().await == 10
    })
    .await;

    // Failover: the replica is promoted, the old primary demoted to its replica, and the name
    // the worker connects through now leads to the new primary.
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .exec_async(&mut new_conn)
        .await
        .unwrap();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new.port)
        .exec_async(&mut old_conn)
        .await
        .unwrap();
    proxy.retarget(new.port);

    let second = harness.enqueue(10).await;
    eventually(Duration::from_secs(30), async || {
        harness
            .try_scores()
            .await
            .is_ok_and(|scores| scores.len() == 20)
    })
    .await;
    harness.assert_ranking_is(&[first, second].concat()).await;
    assert_eq!(harness.applied_events().await, 20);
    assert!(harness.dead_letters().await.is_empty());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_wrong_typed_key_pauses_the_consumer_and_nothing_is_written_or_lost(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = harness.enqueue(10).await;
    let mut redis = harness.redis.clone();
    redis::cmd("SET")
        .arg(&harness.key)
        .arg("not a sorted set")
        .exec_async(&mut redis)
        .await
        .unwrap();

    let mut relay = harness.relay(settings());
    let mut refusals = 0;
    eventually(Duration::from_secs(30), async || {
        match relay.relay_once().await {
            Err(RelayError::Sink(error)) => {
                assert!(error.to_string().contains("WRONGTYPE"), "{error}");
                refusals += 1;
            }
            Ok(outcome) => assert_eq!(outcome.applied, 0),
            Err(other) => panic!("expected a Redis error, got {other:?}"),
        }
        refusals == 3
    })
    .await;
    let written: i64 = redis::cmd("EXISTS")
        .arg(harness.ranking.keys().position())
        .arg(harness.ranking.keys().details())
        .arg(harness.ranking.keys().applied_events())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(written, 0, "nothing written before the type check");
    assert!(harness.dead_letters().await.is_empty());

    redis::cmd("DEL")
        .arg(&harness.key)
        .exec_async(&mut redis)
        .await
        .unwrap();
    harness.drain(&mut relay).await;
    harness.assert_ranking_is(&events).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_poison_event_is_dead_lettered_while_others_flow_and_redriven_after_a_fix(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let first = harness.enqueue(10).await;
    let poison: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
         VALUES (gen_random_uuid(), 'ConcertSoldOut', 1, 900000, '{\"schedule_id\": \"not a number\"}')
         RETURNING event_id",
    )
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    let unknown_version: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
         VALUES (gen_random_uuid(), 'ConcertSoldOut', 99, 900001, '{}') RETURNING event_id",
    )
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    let later = harness.enqueue(5).await;
    let mut relay = harness.relay(settings());

    let outcome = harness.drain(&mut relay).await;
    assert_eq!((outcome.applied, outcome.dead_lettered), (15, 2));
    harness
        .assert_ranking_is(&[first.clone(), later.clone()].concat())
        .await;
    let letters = dead_letters::list(&harness.pool, Some("ranking"))
        .await
        .unwrap();
    assert_eq!(
        letters.iter().map(|l| l.event_id).collect::<Vec<_>>(),
        vec![poison, unknown_version],
        "in log order"
    );
    assert!(
        letters[0]
            .error
            .starts_with("undecodable payload: schedule_id: invalid type"),
        "the error names the field: {}",
        letters[0].error
    );
    assert_eq!(letters[1].error, "unsupported event ConcertSoldOut v99");
    assert!(dead_letters::render(&letters).contains(&poison.to_string()));

    // Retrying before a fix keeps it, with the error met.
    let mut redis = harness.redis.clone();
    let report = dead_letters::retry(
        &harness.pool,
        &mut redis,
        &harness.ranking,
        "ranking",
        Some(poison),
    )
    .await
    .unwrap();
    assert_eq!((report.applied, report.still_dead), (0, 1));

    // An operator repairs the payload; the redrive applies it behind the position.
    let mut fixed = event(900_000);
    fixed.event_id = poison;
    sqlx::query("UPDATE outbox SET payload = $2 WHERE event_id = $1")
        .bind(poison)
        .bind(serde_json::to_value(&fixed).unwrap())
        .execute(&harness.pool)
        .await
        .unwrap();
    let report = dead_letters::retry(
        &harness.pool,
        &mut redis,
        &harness.ranking,
        "ranking",
        Some(poison),
    )
    .await
    .unwrap();
    assert_eq!((report.applied, report.still_dead), (1, 0));
    harness
        .assert_ranking_is(&[first, later, vec![fixed]].concat())
        .await;
    assert_eq!(harness.dead_letters().await, vec![unknown_version]);
    assert!(
        dead_letters::retry(
            &harness.pool,
            &mut redis,
            &harness.ranking,
            "ranking",
            Some(poison)
        )
        .await
        .is_err(),
        "no longer a dead letter"
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_position_the_log_does_not_hold_is_not_trusted(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let first = harness.enqueue(10).await;
    harness.drain(&mut harness.relay(settings())).await;

    // Postgres restored to an earlier point: Redis holds a position past anything the log
    // will hand out for a while, so new rows would sort before it and be skipped.
    let log_id = ranking_worker::log::log_id(&harness.pool).await.unwrap();
    let mut redis = harness.redis.clone();
    redis::cmd("SET")
        .arg(harness.ranking.keys().position())
        .arg(format!("{log_id}:999999999999/1"))
        .exec_async(&mut redis)
        .await
        .unwrap();
    let later = harness.enqueue(5).await;

    let outcome = harness.drain(&mut harness.relay(settings())).await;
    assert!(outcome.resynced);
    assert_eq!(outcome.applied, 15, "applied from the log's start");
    harness.assert_ranking_is(&[first, later].concat()).await;
}
