//! Reading the log in order: a transaction that took an earlier position but commits after a
//! later one must not be skipped (the gap problem of tailing a sequence), and a backlog is read
//! in larger batches.

use std::time::Duration;

use ranking_worker::log::{self, LogPosition};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{event, eventually, settings, Harness};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_transaction_that_commits_after_a_later_one_is_not_skipped(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let mut relay = harness.relay(settings());

    // The early transaction takes its position first and stays open (briefly: while it is,
    // every consumer on this Postgres is held back)...
    let early_event = event(1_000);
    let mut early = harness.pool.begin().await.unwrap();
    shared::outbox::enqueue(&mut early, &early_event)
        .await
        .unwrap();
    // ...while a later one commits.
    let later = harness.enqueue(1).await;
    let outcome = relay.relay_once().await.unwrap();
    assert_eq!(
        outcome.read, 0,
        "the later row waits behind the open transaction"
    );
    assert!(outcome.held_back);

    early.commit().await.unwrap();
    let outcome = harness.drain(&mut relay).await;
    assert_eq!(outcome.applied, 2);
    harness
        .assert_ranking_is(&[vec![early_event], later].concat())
        .await;
}

/// A backlog is read in larger batches than a consumer keeping up (cheaper per event); the
/// first read after catching up is `batch_size` again.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_backlog_is_read_in_larger_batches_than_a_live_consumer(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let mut relay = harness.relay(settings());
    let batch_size = settings().batch_size as usize;
    let events = harness.enqueue(batch_size * 3).await;
    // Until then, another test's open transaction may hold some of them back.
    eventually(Duration::from_secs(30), async || {
        let readable = log::read_after(&harness.pool, LogPosition::START, 1_000).await;
        readable.unwrap().rows.len() == events.len()
    })
    .await;

    let first = relay.relay_once().await.unwrap();
    assert_eq!((first.read, first.more), (batch_size, true));
    let second = relay.relay_once().await.unwrap();
    assert_eq!(
        (second.read, second.more),
        (batch_size * 2, false),
        "the rest in one read"
    );

    let later = harness.enqueue(batch_size + 1).await;
    let live = harness.drain(&mut relay).await;
    assert_eq!(live.read, batch_size + 1);
    harness.assert_ranking_is(&[events, later].concat()).await;
}
