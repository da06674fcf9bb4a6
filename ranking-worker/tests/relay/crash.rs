//! Crashes: between apply and ack, and a worker process SIGKILLed again and again.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;
use ranking_worker::queue;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{eventually, redis_url, settings, Harness};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_crash_between_apply_and_ack_applies_the_event_once(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = harness.enqueue(1).await;

    // A worker claims with a short lease, applies to Redis, and dies before its ack.
    let token = Uuid::new_v4();
    let claimed = queue::claim(&harness.pool, 10, Duration::from_millis(200), token)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let mut redis = harness.redis.clone();
    let first = harness
        .ranking
        .apply(&mut redis, &[&events[0]])
        .await
        .unwrap();
    assert_eq!(first, vec![true]);
    let score_after_crash = harness.scores().await;

    // Once the lease expires, another worker reclaims the row: the effect is not repeated.
    let relay = harness.relay(settings());
    let mut duplicates = 0;
    eventually(Duration::from_secs(10), async || {
        duplicates += relay.relay_once().await.unwrap().duplicates;
        duplicates == 1
    })
    .await;
    assert_eq!(harness.count_with_status("PROCESSED").await, 1);
    assert_eq!(harness.scores().await, score_after_crash);
    harness.assert_ranking_is(&events).await;
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM outbox")
        .fetch_one(&harness.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 2);
    // The dead worker's late ack cannot touch a row it no longer holds.
    assert_eq!(
        queue::ack(&harness.pool, token, &[events[0].event_id])
            .await
            .unwrap(),
        0
    );
}

fn spawn_worker(harness: &Harness, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_ranking-worker"))
        .arg("run")
        .env_clear()
        .env("DATABASE_URL", harness.database_url())
        .env("REDIS_URL", redis_url())
        .env("RANKING_KEY", &harness.key)
        .env("RANKING_HTTP_ADDR", "127.0.0.1:0")
        .env("LEASE_MS", "300")
        .env("BATCH_SIZE", "50")
        .env("POLL_INTERVAL_MS", "50")
        .env("MAX_ATTEMPTS", "1000")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_worker_killed_again_and_again_loses_nothing_and_applies_nothing_twice(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const EVENTS: usize = 5_000;
    const KILLS: usize = 12;
    // The kills that matter most land after Redis applied a batch and before Postgres acked it.
    const KILLS_BETWEEN_APPLY_AND_ACK: usize = 3;
    let harness = Harness::new(database).await;
    let events = harness.enqueue(EVENTS).await;
    let log = std::env::temp_dir().join(format!("ranking-worker-kill-{}.log", Uuid::new_v4()));

    // Each life runs until it has acked something, then is killed after a random pause, so
    // the kill lands at a random point of its claim → apply → ack cycle, mid-drain.
    let (mut kills, mut between_apply_and_ack) = (0, 0);
    let mut redelivered = HashSet::new();
    while kills < KILLS || between_apply_and_ack < KILLS_BETWEEN_APPLY_AND_ACK {
        let processed = harness.count_with_status("PROCESSED").await as usize;
        assert!(
            processed < EVENTS * 9 / 10,
            "events ran out after {kills} kills, {between_apply_and_ack} between apply and ack"
        );
        let mut worker = spawn_worker(&harness, &log);
        eventually(Duration::from_secs(60), async || {
            harness.count_with_status("PROCESSED").await as usize > processed
        })
        .await;
        let pause = rand::thread_rng().gen_range(0..4_000);
        tokio::time::sleep(Duration::from_micros(pause)).await;
        worker.kill().unwrap(); // SIGKILL: no chance to finish or release anything
        worker.wait().unwrap();
        // A statement the worker sent just before dying still runs to its end: look once
        // its sessions are gone.
        eventually(Duration::from_secs(10), async || {
            harness.sessions_named("ranking-worker").await == 0
        })
        .await;
        kills += 1;
        let caught = harness.applied_but_not_acked().await;
        if !caught.is_empty() {
            between_apply_and_ack += 1;
            redelivered.extend(caught.into_iter().map(|id| id.to_string()));
        }
    }
    println!("{kills} kills, {between_apply_and_ack} between apply and ack");
    let processed_before_final_run = harness.count_with_status("PROCESSED").await;
    assert!(
        (processed_before_final_run as usize) < EVENTS,
        "the kills interrupted the drain"
    );

    // A final, clean run drains the rest, then stops on SIGTERM with exit code 0.
    let mut worker = spawn_worker(&harness, &log);
    eventually(Duration::from_secs(60), async || {
        harness.count_with_status("PROCESSED").await as usize == EVENTS
    })
    .await;
    let pid = worker.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(worker.wait().unwrap().success(), "SIGTERM exits 0");

    harness.assert_ranking_is(&events).await;
    // No event's effect ran twice. A kill can land before a life logs what it applied, so
    // the log alone is not enough: every event caught applied-but-not-acked at a kill must
    // have come back as a suppressed duplicate, and no event is logged as applied twice.
    let (mut applied, mut suppressed) = (HashMap::<String, usize>::new(), HashSet::new());
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let event_id = entry["event_id"].as_str().unwrap_or_default().to_owned();
        if entry["message"] == "event applied" {
            *applied.entry(event_id).or_default() += 1;
        } else if entry["message"] == "duplicate suppressed" {
            suppressed.insert(event_id);
        }
    }
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    let reapplied: Vec<_> = redelivered.difference(&suppressed).collect();
    assert!(
        reapplied.is_empty(),
        "redelivered but not suppressed: {reapplied:?}"
    );
    assert!(applied.len() > EVENTS / 2, "the log shows the applications");
    let _ = std::fs::remove_file(&log);
}
