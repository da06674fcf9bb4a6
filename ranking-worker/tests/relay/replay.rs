//! Replaying the outbox into the ranking.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ranking_worker::commands::replay::{self, ReplayReport};
use ranking_worker::log::ReplayFilter;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{settings, Harness};

async fn relayed(harness: &Harness, count: usize) -> Vec<shared::events::ConcertSoldOut> {
    let events = harness.enqueue(count).await;
    harness.drain(&mut harness.relay(settings())).await;
    events
}

fn report(matched: u64, restored: u64, unchanged: u64) -> ReplayReport {
    ReplayReport {
        matched,
        restored,
        unchanged,
        skipped: 0,
        ranking_size: None,
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn replay_restores_a_deleted_ranking_exactly_and_twice_equals_once(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = relayed(&harness, 30).await;
    let mut redis = harness.redis.clone();
    redis::cmd("DEL")
        .arg(&harness.key)
        .exec_async(&mut redis)
        .await
        .unwrap();
    assert!(harness.scores().await.is_empty());

    let all = ReplayFilter::default();
    let first = replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, false)
        .await
        .unwrap();
    assert_eq!(first, report(30, 30, 0));
    harness.assert_ranking_is(&events).await;
    let after_once = harness.scores().await;
    let top_once = harness.ranking.top(&mut redis, 0, 100).await.unwrap();

    let second = replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, false)
        .await
        .unwrap();
    assert_eq!(second, report(30, 0, 30));
    assert_eq!(harness.scores().await, after_once);
    assert_eq!(
        harness.ranking.top(&mut redis, 0, 100).await.unwrap(),
        top_once,
        "details too"
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn replay_filters_and_dry_run(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let events = relayed(&harness, 10).await;
    let mut redis = harness.redis.clone();
    let missing = ranking_worker::ranking::member(&events[3]);
    redis::cmd("ZREM")
        .arg(&harness.key)
        .arg(&missing)
        .exec_async(&mut redis)
        .await
        .unwrap();

    let dry = replay::replay(
        &harness.pool,
        &mut redis,
        &harness.ranking,
        &ReplayFilter::default(),
        true,
    )
    .await
    .unwrap();
    assert_eq!(dry, report(10, 1, 9));
    assert!(
        !harness.scores().await.contains_key(&missing),
        "a dry run writes nothing"
    );

    let by_schedule = ReplayFilter {
        schedule_id: Some(events[3].schedule_id),
        ..ReplayFilter::default()
    };
    let restored = replay::replay(
        &harness.pool,
        &mut redis,
        &harness.ranking,
        &by_schedule,
        false,
    )
    .await
    .unwrap();
    assert_eq!(restored, report(1, 1, 0));
    harness.assert_ranking_is(&events).await;

    let by_event = ReplayFilter {
        event_id: Some(events[5].event_id),
        ..ReplayFilter::default()
    };
    let matched = replay::replay(&harness.pool, &mut redis, &harness.ranking, &by_event, true)
        .await
        .unwrap();
    assert_eq!(matched, report(1, 0, 1));

    let future = ReplayFilter {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..ReplayFilter::default()
    };
    let none = replay::replay(&harness.pool, &mut redis, &harness.ranking, &future, false)
        .await
        .unwrap();
    assert_eq!(none, report(0, 0, 0));
    let past = ReplayFilter {
        until: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..ReplayFilter::default()
    };
    let all = replay::replay(&harness.pool, &mut redis, &harness.ranking, &past, true)
        .await
        .unwrap();
    assert_eq!(all, report(10, 0, 10));
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn rebuild_swaps_atomically_while_a_reader_polls(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const EVENTS: usize = 3_000;
    let harness = Harness::new(database).await;
    let events = relayed(&harness, EVENTS).await;
    let mut redis = harness.redis.clone();
    // A stray member no event accounts for: a rebuild drops it.
    redis::cmd("ZADD")
        .arg(&harness.key)
        .arg(0.5)
        .arg("concert:0:schedule:0")
        .exec_async(&mut redis)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let smallest_seen = Arc::new(AtomicU64::new(u64::MAX));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, smallest_seen, reads) = (stop.clone(), smallest_seen.clone(), reads.clone());
        let (ranking, mut redis) = (harness.ranking.clone(), harness.redis.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let size = ranking.size(&mut redis).await.unwrap();
                let page = ranking.top(&mut redis, 0, 100).await.unwrap();
                assert_eq!(page.len(), 100, "a full first page on every read");
                smallest_seen.fetch_min(size, Ordering::Relaxed);
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Rebuild until the reader has read many times while rebuilds ran, however slow or busy
    // this machine is.
    let mut rebuilds = 0;
    while rebuilds < 3 || reads.load(Ordering::Relaxed) < 20 {
        assert!(
            rebuilds < 200,
            "the reader never got to read during the rebuilds"
        );
        let rebuilt = replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
            .await
            .unwrap();
        assert_eq!(rebuilt.matched, EVENTS as u64);
        assert_eq!(rebuilt.ranking_size, Some(EVENTS as u64));
        rebuilds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();

    assert!(
        smallest_seen.load(Ordering::Relaxed) >= EVENTS as u64,
        "never empty or partial"
    );
    harness.assert_ranking_is(&events).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_rebuild_that_redis_lost_is_not_swapped_in(_: PgPoolOptions, database: PgConnectOptions) {
    use ranking_worker::ranking::{SinkPosition, SwapResult};

    let harness = Harness::new(database).await;
    let events = relayed(&harness, 5).await;
    let mut redis = harness.redis.clone();
    let live = harness.ranking.position(&mut redis).await.unwrap();
    let SinkPosition::Stored(to) = live else {
        panic!("the consumer stored its position: {live:?}")
    };
    let fresh = harness.ranking.begin_rebuild(&mut redis).await.unwrap();
    fresh.restore(&mut redis, &[&events[0]]).await.unwrap();
    // Redis restarted mid-rebuild: the rebuild's keys are gone; what would be written after
    // the restart is a fragment, not a ranking.
    fresh.discard(&mut redis).await.unwrap();
    fresh.restore(&mut redis, &[&events[1]]).await.unwrap();

    let swapped = harness
        .ranking
        .swap_in(&mut redis, &fresh, &live, to)
        .await
        .unwrap();
    assert_eq!(swapped, SwapResult::RebuildLost);
    harness.assert_ranking_is(&events).await;
    fresh.discard(&mut redis).await.unwrap();
}
