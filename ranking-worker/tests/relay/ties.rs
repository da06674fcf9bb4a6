//! Equal scores (millisecond resolution) are ordered by the earlier `sold_out_at`, then schedule
//! id, in every read, and share a rank (SPEC §6). Redis alone orders them by member, which puts
//! `concert:1:schedule:10` before `concert:1:schedule:9`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use shared::events::ConcertSoldOut;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{settings, Harness};

/// A sell-out of schedule `schedule_id` of concert 1, `seconds` after a sale that opened
/// `opened_after` seconds after a fixed start.
fn sold_out(schedule_id: i64, opened_after: i64, seconds: i64) -> ConcertSoldOut {
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 11, 1, 11, 0, 0).unwrap();
    let sale_started_at = start + Duration::seconds(opened_after);
    ConcertSoldOut {
        event_id: Uuid::now_v7(),
        concert_id: 1,
        schedule_id,
        concert_title: "Ties".to_owned(),
        seat_count: 10,
        sale_started_at,
        sold_out_at: sale_started_at + Duration::seconds(seconds),
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn equal_scores_order_by_sold_out_at_then_schedule_and_share_a_rank(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = [
        sold_out(30, 0, 90),
        // 60 s each: schedule 9 sold out first, then 10; 11 and 12 at the same moment.
        sold_out(10, 20, 60),
        sold_out(9, 10, 60),
        sold_out(12, 30, 60),
        sold_out(11, 30, 60),
        sold_out(40, 0, 30),
    ];
    let mut tx = harness.pool.begin().await.unwrap();
    for event in &events {
        shared::outbox::enqueue(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    harness.drain(&mut harness.relay(settings())).await;

    let mut redis = harness.redis.clone();
    let board = harness.ranking.top(&mut redis, 0, 10).await.unwrap();
    let ranked: Vec<(u64, i64)> = board
        .iter()
        .map(|entry| (entry.rank, entry.schedule_id.unwrap()))
        .collect();
    assert_eq!(
        ranked,
        [(1, 40), (2, 9), (2, 10), (2, 11), (2, 12), (6, 30)]
    );

    // A page that starts or ends inside a group of equal scores cuts the same order.
    for offset in 0..6 {
        for limit in 1..=3 {
            let page = harness
                .ranking
                .top(&mut redis, offset, limit)
                .await
                .unwrap();
            let expected: Vec<_> = board
                .iter()
                .skip(offset as usize)
                .take(limit as usize)
                .cloned()
                .collect();
            assert_eq!(page, expected, "offset {offset}, limit {limit}");
        }
    }
}
