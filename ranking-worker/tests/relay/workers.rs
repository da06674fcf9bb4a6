//! Several workers draining one outbox at once.

use futures::future::join_all;
use ranking_worker::relay::Outcome;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{add, settings, Harness};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn four_workers_apply_ten_thousand_events_exactly_once(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const EVENTS: usize = 10_000;
    let harness = Harness::new(database).await;
    let events = harness.enqueue(EVENTS).await;

    let workers = (0..4).map(|_| {
        let relay = harness.relay(settings());
        let harness = &harness;
        async move { harness.drain(&relay).await }
    });
    let outcomes = join_all(workers).await;

    let mut total = Outcome::default();
    for outcome in &outcomes {
        add(&mut total, outcome);
    }
    assert!(
        outcomes.iter().filter(|o| o.applied > 0).count() > 1,
        "the work was shared: {outcomes:?}"
    );
    assert_eq!(total.applied, EVENTS, "{outcomes:?}");
    assert_eq!(total.claimed, EVENTS, "SKIP LOCKED: no row claimed twice");
    assert_eq!(total.duplicates, 0);
    assert_eq!(
        harness.count_with_status("PROCESSED").await as usize,
        EVENTS
    );
    harness.assert_ranking_is(&events).await;
}
