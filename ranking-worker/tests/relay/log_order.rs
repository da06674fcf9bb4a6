//! The gap problem of tailing a sequence: a transaction that took an earlier position but
//! commits after a later one must not be skipped.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{event, settings, Harness};

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
