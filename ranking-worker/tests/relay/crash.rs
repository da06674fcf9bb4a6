//! Crashes and stale instances: the position moves with the effect, so neither loses an event
//! nor applies one twice. Counted from Redis (ZCARD, exact scores, the script's own count of
//! applied events), not from log lines.

use std::process::Child;
use std::time::Duration;

use rand::Rng;
use ranking_worker::consumers::RANKING;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{eventually, settings, stop_with_sigterm, Harness};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_worker_that_dies_after_applying_is_resumed_where_its_effect_ends(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = harness.enqueue(250).await;

    // A worker applies a batch, then dies before Postgres's mirror hears of it.
    let mut first = harness.relay(settings());
    harness.apply_at_least(&mut first, 100).await;
    drop(first);
    let mirror = harness.consumer().await.position();
    let applied_first = harness.applied_events().await;
    assert!(applied_first < 250);

    // The next one starts from Redis's position, not the mirror: nothing is applied twice.
    let mut next = harness.relay(settings());
    let outcome = harness.drain(&mut next).await;
    assert_eq!(
        outcome.applied as u64,
        250 - applied_first,
        "only what the first worker had not applied"
    );
    assert!(!outcome.resynced, "Redis lost nothing");
    assert_eq!(harness.applied_events().await, 250);
    harness.assert_ranking_is(&events).await;
    assert!(
        harness.consumer().await.position() > mirror,
        "the mirror follows"
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_stale_instance_writes_nothing(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let events = harness.enqueue(30).await;
    let mut stale = harness.relay(settings());
    let mut active = harness.relay(settings());
    // Both know the same position; the active one moves it.
    harness.drain(&mut stale).await;
    let more = harness.enqueue(20).await;
    assert_eq!(harness.drain(&mut active).await.applied, 20);

    // The stale one still believes in the old position: its script refuses the batch.
    let outcome = stale.relay_once().await.unwrap();
    assert_eq!((outcome.applied, outcome.position_moved), (0, true));
    assert_eq!(harness.applied_events().await, 50);
    // Told so, it reads the position again and finds nothing left to do.
    assert_eq!(harness.drain(&mut stale).await.applied, 0);
    harness.assert_ranking_is(&[events, more].concat()).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn twenty_kills_of_the_active_instance_among_four_lose_nothing_and_double_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const EVENTS: usize = 5_000;
    const KILLS: usize = 20;
    let harness = Harness::new(database).await;
    let log = std::env::temp_dir().join(format!("ranking-worker-kill-{}.log", Uuid::new_v4()));
    let mut workers: Vec<Child> = (0..4).map(|_| harness.spawn_worker(&log, &[])).collect();

    // Events arrive at a pace, so the kills land while the consumer drains them.
    let feeder = {
        let harness = Harness::new(harness.database.clone()).await;
        tokio::spawn(async move {
            let mut events = Vec::new();
            while events.len() < EVENTS {
                events.extend(harness.enqueue(10).await);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            events
        })
    };

    let mut kills = 0;
    while kills < KILLS {
        // Wait for an active instance that has applied something since the last kill.
        let applied = harness.applied_events().await;
        let mut pid = None;
        eventually(Duration::from_secs(30), async || {
            pid = harness
                .active_pid(RANKING)
                .await
                .filter(|pid| workers.iter().any(|w| w.id() == *pid));
            pid.is_some() && harness.applied_events().await > applied
        })
        .await;
        let pause = rand::thread_rng().gen_range(0..20_000);
        tokio::time::sleep(Duration::from_micros(pause)).await;
        let index = workers.iter().position(|w| Some(w.id()) == pid).unwrap();
        let mut victim = workers.swap_remove(index);
        victim.kill().unwrap(); // SIGKILL: no chance to finish or release anything
        victim.wait().unwrap();
        kills += 1;
        workers.push(harness.spawn_worker(&log, &[]));
        assert!(
            (harness.applied_events().await as usize) < EVENTS,
            "the events ran out after {kills} kills"
        );
    }
    let events = feeder.await.unwrap();

    eventually(Duration::from_secs(60), async || {
        harness.applied_events().await as usize >= EVENTS
    })
    .await;
    for worker in workers {
        stop_with_sigterm(worker);
    }
    harness.assert_ranking_is(&events).await;
    assert_eq!(
        harness.applied_events().await as usize,
        EVENTS,
        "the script applied each event exactly once"
    );
    println!("{kills} kills of the active instance");
    let _ = std::fs::remove_file(&log);
}
