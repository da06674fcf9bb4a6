//! Boards per period (SPEC §5): the day, ISO week and month of each sell-out in
//! `RANKING_TIMEZONE` (Asia/Seoul here), written by the apply script with the all-time board,
//! kept by replay, rebuild and a heal, each expiring its retention after the period ends.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use ranking_worker::commands::replay;
use ranking_worker::log::ReplayFilter;
use ranking_worker::periods::{PeriodKind, PeriodSettings};
use ranking_worker::ranking::member;
use redis::aio::ConnectionManager;
use shared::events::ConcertSoldOut;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{get_json, settings, Harness, PrivateRedis};

/// A sell-out of schedule `schedule_id` at `sold_out_at` (UTC), `seconds` after its sale opened.
fn sold_out(schedule_id: i64, sold_out_at: &str, seconds: i64) -> ConcertSoldOut {
    let sold_out_at: DateTime<Utc> = sold_out_at.parse().unwrap();
    ConcertSoldOut {
        event_id: Uuid::now_v7(),
        concert_id: 1,
        schedule_id,
        concert_title: format!("Concert 1, schedule {schedule_id}"),
        seat_count: 10,
        sale_started_at: sold_out_at - chrono::Duration::seconds(seconds),
        sold_out_at,
    }
}

/// Around midnight in Seoul (UTC+9), across the ISO week-year boundary, and two sell-outs of
/// equal score on one day.
fn sell_outs() -> Vec<ConcertSoldOut> {
    vec![
        // 00:30 on 25 November in Seoul, 15:30 on the 24th in UTC.
        sold_out(1, "2026-11-24T15:30:00Z", 90),
        // 23:30 on 24 November in Seoul.
        sold_out(2, "2026-11-24T14:30:00Z", 60),
        // 25 November in Seoul, the same score as schedule 1 but sold out later: ranked after it.
        sold_out(3, "2026-11-25T02:00:00Z", 90),
        // Thursday 31 December 2026 in Seoul: ISO week 2026-W53.
        sold_out(4, "2026-12-31T03:00:00Z", 30),
        // Friday 1 January 2027 in Seoul (16:00 on the 31st in UTC): still 2026-W53.
        sold_out(5, "2026-12-31T16:00:00Z", 45),
    ]
}

async fn enqueue(harness: &Harness, events: &[ConcertSoldOut]) {
    let mut tx = harness.pool.begin().await.unwrap();
    for event in events {
        shared::outbox::enqueue(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// A board as (rank, schedule id) pairs, fastest first.
async fn board(harness: &Harness, kind: PeriodKind, at: &str) -> Vec<(u64, i64)> {
    let period = harness
        .ranking
        .periods()
        .period(kind, at.parse::<NaiveDate>().unwrap())
        .unwrap();
    let mut redis = harness.redis.clone();
    harness
        .ranking
        .top_of(&mut redis, Some(&period), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| (entry.rank, entry.schedule_id.unwrap()))
        .collect()
}

/// Every period board in Redis, found by scanning the ranking's keys (so a stray one shows):
/// name → (member → score, expiry in Unix ms), and the list of boards the rebuild swaps.
type Boards = (
    BTreeMap<String, (BTreeMap<String, String>, i64)>,
    Vec<String>,
);

async fn all_boards(key: &str, redis: &mut ConnectionManager) -> Boards {
    let prefix = format!("{{{key}}}:");
    let pattern = format!("\\{{{key}\\}}:*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut boards = BTreeMap::new();
    for key in keys {
        let name = key.strip_prefix(&prefix).unwrap().to_owned();
        if !["day:", "week:", "month:"]
            .iter()
            .any(|kind| name.starts_with(kind))
        {
            continue;
        }
        let entries: Vec<(String, String)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(redis)
            .await
            .unwrap();
        let expiry: i64 = redis::cmd("PEXPIRETIME")
            .arg(&key)
            .query_async(redis)
            .await
            .unwrap();
        boards.insert(name, (entries.into_iter().collect(), expiry));
    }
    let listed: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}periods"))
        .arg(0)
        .arg(-1)
        .query_async(redis)
        .await
        .unwrap();
    (boards, listed)
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn sell_outs_land_on_their_day_week_and_month_in_seoul(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    enqueue(&harness, &sell_outs()).await;
    harness.drain(&mut harness.relay(settings())).await;

    use PeriodKind::{Day, Month, Week};
    assert_eq!(board(&harness, Day, "2026-11-24").await, [(1, 2)]);
    assert_eq!(board(&harness, Day, "2026-11-25").await, [(1, 1), (1, 3)]);
    // Monday 23 to Sunday 29 November 2026 is 2026-W48.
    assert_eq!(
        board(&harness, Week, "2026-11-29").await,
        [(1, 2), (2, 1), (2, 3)]
    );
    assert_eq!(board(&harness, Week, "2026-12-31").await, [(1, 4), (2, 5)]);
    assert_eq!(board(&harness, Week, "2027-01-03").await, [(1, 4), (2, 5)]);
    assert_eq!(board(&harness, Month, "2026-12-01").await, [(1, 4)]);
    assert_eq!(board(&harness, Month, "2027-01-20").await, [(1, 5)]);
    assert_eq!(board(&harness, Month, "2026-11-01").await.len(), 3);
    assert_eq!(board(&harness, Day, "2026-11-26").await, []);

    let mut redis = harness.redis.clone();
    let (boards, mut listed) = all_boards(&harness.key, &mut redis).await;
    assert_eq!(
        boards.keys().collect::<Vec<_>>(),
        [
            "day:Asia/Seoul:2026-11-24",
            "day:Asia/Seoul:2026-11-25",
            "day:Asia/Seoul:2026-12-31",
            "day:Asia/Seoul:2027-01-01",
            "month:Asia/Seoul:2026-11",
            "month:Asia/Seoul:2026-12",
            "month:Asia/Seoul:2027-01",
            "week:Asia/Seoul:2026-W48",
            "week:Asia/Seoul:2026-W53",
        ]
    );
    listed.sort();
    assert_eq!(listed, boards.keys().cloned().collect::<Vec<_>>());

    // Over HTTP, with the period named beside the key it read.
    let (base, _stop) = harness.start_worker_guarded().await;
    let client = reqwest::Client::new();
    let page = get_json(
        &client,
        &format!("{base}/rankings/sold-out?period=week&at=2027-01-01"),
    )
    .await;
    assert_eq!(
        page["key"],
        format!("{{{}}}:week:Asia/Seoul:2026-W53", harness.key)
    );
    assert_eq!(page["period"]["kind"], "week");
    assert_eq!(page["period"]["name"], "2026-W53");
    assert_eq!(page["period"]["time_zone"], "Asia/Seoul");
    assert_eq!(page["period"]["ends_at"], "2027-01-03T15:00:00Z");
    let ranked: Vec<(u64, String)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["rank"].as_u64().unwrap(),
                entry["member"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [
            (1, "concert:1:schedule:4".to_owned()),
            (2, "concert:1:schedule:5".to_owned())
        ]
    );
    let day = get_json(
        &client,
        &format!("{base}/rankings/sold-out?period=day&at=2026-11-25&limit=1&offset=1"),
    )
    .await;
    assert_eq!(day["entries"][0]["member"], "concert:1:schedule:3");
    assert_eq!(day["entries"][0]["rank"], 1, "a tie shares its rank");
    let all_time = get_json(&client, &format!("{base}/rankings/sold-out")).await;
    assert_eq!(all_time["key"], harness.key.as_str());
    assert!(all_time.get("period").is_none());
    assert_eq!(all_time["entries"].as_array().unwrap().len(), 5);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn replay_rebuild_and_a_heal_give_the_same_period_boards(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut server = PrivateRedis::start();
    let harness = Harness::with_redis(database, &server.url()).await;
    enqueue(&harness, &sell_outs()).await;
    harness.drain(&mut harness.relay(settings())).await;
    let mut redis = server.connection().await;
    let applied = all_boards(&harness.key, &mut redis).await;
    assert_eq!(applied.0.len(), 9);

    // Replay writes back a board lost, and changes nothing where all is there.
    redis::cmd("DEL")
        .arg(format!("{{{}}}:week:Asia/Seoul:2026-W53", harness.key))
        .exec_async(&mut redis)
        .await
        .unwrap();
    let all = ReplayFilter::default();
    let report = replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, false)
        .await
        .unwrap();
    assert_eq!((report.restored, report.unchanged), (2, 3));
    assert_eq!(all_boards(&harness.key, &mut redis).await, applied);

    // A rebuild replaces every board, a stray one included.
    redis::cmd("ZADD")
        .arg(format!("{{{}}}:day:Asia/Seoul:2026-11-25", harness.key))
        .arg(1)
        .arg("concert:9:schedule:99")
        .exec_async(&mut redis)
        .await
        .unwrap();
    let rebuilt = replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(rebuilt.ranking_size, Some(5));
    assert_eq!(all_boards(&harness.key, &mut redis).await, applied);

    // Redis restarts empty: the consumer heals every board by itself.
    server.restart();
    let mut redis = server.connection().await;
    assert!(all_boards(&harness.key, &mut redis).await.0.is_empty());
    let healed = harness.drain(&mut harness.relay(settings())).await;
    assert!(healed.resynced);
    assert_eq!(all_boards(&harness.key, &mut redis).await, applied);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_board_expires_its_retention_after_the_period_and_old_periods_are_not_written(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut harness = Harness::new(database).await;
    let retention = PeriodSettings {
        retention_days: 30,
        ..PeriodSettings::default()
    };
    harness.ranking = harness.ranking.clone().with_periods(retention);
    let today = Utc::now();
    let long_ago = today - chrono::Duration::days(120);
    let events = [
        sold_out(1, &today.to_rfc3339(), 40),
        sold_out(2, &long_ago.to_rfc3339(), 20),
    ];
    enqueue(&harness, &events).await;
    harness.drain(&mut harness.relay(settings())).await;
    harness.assert_ranking_is(&events).await;

    let mut redis = harness.redis.clone();
    let (boards, _) = all_boards(&harness.key, &mut redis).await;
    let periods = retention.periods_of(today).unwrap();
    let expected: BTreeMap<String, i64> = periods
        .iter()
        .map(|period| {
            (
                period.name(),
                retention.expires_at(period).unwrap().timestamp_millis(),
            )
        })
        .collect();
    let found: BTreeMap<String, i64> = boards
        .iter()
        .map(|(name, (entries, expiry))| {
            assert_eq!(entries.keys().collect::<Vec<_>>(), [&member(&events[0])]);
            (name.clone(), *expiry)
        })
        .collect();
    assert_eq!(
        found, expected,
        "only today's periods, each with its expiry"
    );

    // Neither replay nor rebuild writes the old periods' boards again.
    let all = ReplayFilter::default();
    let report = replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, false)
        .await
        .unwrap();
    assert_eq!((report.restored, report.unchanged), (0, 2));
    replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    let (after, _) = all_boards(&harness.key, &mut redis).await;
    assert_eq!(after, boards);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_bad_period_or_date_is_refused_and_changes_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    enqueue(&harness, &sell_outs()).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    crate::helpers::eventually(Duration::from_secs(20), async || {
        harness.applied_events().await == 5
    })
    .await;
    let mut redis = harness.redis.clone();
    let before = (
        all_boards(&harness.key, &mut redis).await,
        harness.scores().await,
    );

    let client = reqwest::Client::new();
    for query in [
        "at=2026-11-25",
        "period=year",
        "period=Day",
        "period=day&at=2026-13-01",
        "period=day&at=25-11-2026",
        "period=day&at=2026-11-25T00:00:00Z",
        "period=month&at=",
        "period=day&at=+262143-12-31",
    ] {
        let response = client
            .get(format!("{base}/rankings/sold-out?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "MALFORMED_REQUEST", "{query}");
    }
    let after = (
        all_boards(&harness.key, &mut redis).await,
        harness.scores().await,
    );
    assert_eq!(after, before);
}

/// The boards of one time zone: those whose name carries `zone`.
fn in_zone(boards: &Boards, zone: &str) -> BTreeMap<String, (BTreeMap<String, String>, i64)> {
    boards
        .0
        .iter()
        .filter(|(name, _)| name.contains(&format!(":{zone}:")))
        .map(|(name, board)| (name.clone(), board.clone()))
        .collect()
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_replay_in_another_time_zone_never_puts_an_event_on_two_boards_of_one_kind(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let mut events = sell_outs();
    // 01:00 on 1 December in Seoul, still 30 November in UTC.
    events.push(sold_out(6, "2026-11-30T16:00:00Z", 50));
    enqueue(&harness, &events).await;
    harness.drain(&mut harness.relay(settings())).await;
    let mut redis = harness.redis.clone();
    let applied = all_boards(&harness.key, &mut redis).await;
    let seoul = in_zone(&applied, "Asia/Seoul");
    assert_eq!(seoul.len(), applied.0.len(), "every board is Seoul's");

    // An operator's replay from a shell where RANKING_TIMEZONE is UTC.
    let in_utc = harness.ranking.clone().with_periods(PeriodSettings {
        timezone: chrono_tz::UTC,
        ..PeriodSettings::default()
    });
    let all = ReplayFilter::default();
    replay::replay(&harness.pool, &mut redis, &in_utc, &all, false)
        .await
        .unwrap();
    let replayed = all_boards(&harness.key, &mut redis).await;
    assert_eq!(
        in_zone(&replayed, "Asia/Seoul"),
        seoul,
        "Seoul's boards are as the consumer wrote them"
    );
    // Each event at most once per kind of board and zone: the board's name without its label.
    let mut seen = std::collections::HashSet::new();
    for (name, (entries, _)) in &replayed.0 {
        let (kind_and_zone, _) = name.rsplit_once(':').unwrap();
        for member in entries.keys() {
            assert!(
                seen.insert((kind_and_zone.to_owned(), member.clone())),
                "{member} is on two {kind_and_zone} boards"
            );
        }
    }
    // Reads in Seoul see Seoul's boards only: schedule 6 is December's there.
    use PeriodKind::Month;
    assert_eq!(board(&harness, Month, "2026-11-01").await.len(), 3);
    assert_eq!(board(&harness, Month, "2026-12-01").await, [(1, 4), (2, 6)]);

    // A rebuild in Seoul drops the other zone's boards.
    replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(all_boards(&harness.key, &mut redis).await, applied);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_shorter_retention_never_shortens_a_boards_expiry(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = [sold_out(1, &Utc::now().to_rfc3339(), 40)];
    enqueue(&harness, &events).await;
    harness.drain(&mut harness.relay(settings())).await;
    let mut redis = harness.redis.clone();
    let applied = all_boards(&harness.key, &mut redis).await;
    assert_eq!(applied.0.len(), 3);

    let with_retention = |retention_days| {
        harness.ranking.clone().with_periods(PeriodSettings {
            retention_days,
            ..PeriodSettings::default()
        })
    };
    // A replay and a rebuild with 30 days keep the 400 days the consumer set.
    let short = with_retention(30);
    let all = ReplayFilter::default();
    replay::replay(&harness.pool, &mut redis, &short, &all, false)
        .await
        .unwrap();
    assert_eq!(all_boards(&harness.key, &mut redis).await, applied);
    replay::rebuild(&harness.pool, &mut redis, &short)
        .await
        .unwrap();
    assert_eq!(all_boards(&harness.key, &mut redis).await, applied);

    // A longer one lengthens them.
    let long = with_retention(500);
    replay::replay(&harness.pool, &mut redis, &long, &all, false)
        .await
        .unwrap();
    let (boards, _) = all_boards(&harness.key, &mut redis).await;
    let expected: BTreeMap<String, i64> = long
        .periods()
        .periods_of(events[0].sold_out_at)
        .unwrap()
        .iter()
        .map(|period| {
            let expiry = long
                .periods()
                .expires_at(period)
                .unwrap()
                .timestamp_millis();
            (period.name(), expiry)
        })
        .collect();
    let found: BTreeMap<String, i64> = boards
        .iter()
        .map(|(name, (_, expiry))| (name.clone(), *expiry))
        .collect();
    assert_eq!(found, expected);
    let listed: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(format!("{{{}}}:periods", harness.key))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        listed.into_iter().collect::<BTreeMap<_, _>>(),
        expected,
        "the list's scores follow"
    );
}

/// The keys of every rebuild of the ranking.
async fn rebuild_keys(key: &str, redis: &mut ConnectionManager) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("\\{{{key}\\}}:rebuild:*"))
        .query_async(redis)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_swap_that_cannot_finish_changes_nothing_and_leaves_no_rebuild_behind(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    enqueue(&harness, &sell_outs()).await;
    harness.drain(&mut harness.relay(settings())).await;
    let mut redis = harness.redis.clone();
    // A stray entry a swap would drop, and a list of boards that is not one.
    redis::cmd("ZADD")
        .arg(&harness.key)
        .arg(1)
        .arg("concert:9:schedule:99")
        .exec_async(&mut redis)
        .await
        .unwrap();
    let periods = format!("{{{}}}:periods", harness.key);
    redis::cmd("SET")
        .arg(&periods)
        .arg("not a sorted set")
        .exec_async(&mut redis)
        .await
        .unwrap();
    let scores = harness.scores().await;
    let position = harness.ranking.position(&mut redis).await.unwrap();

    let failed = replay::rebuild(&harness.pool, &mut redis, &harness.ranking).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(harness.scores().await, scores, "not half swapped");
    assert_eq!(
        harness.ranking.position(&mut redis).await.unwrap(),
        position
    );
    assert_eq!(
        rebuild_keys(&harness.key, &mut redis).await,
        Vec::<String>::new()
    );

    // Put right, the rebuild goes through.
    redis::cmd("DEL")
        .arg(&periods)
        .exec_async(&mut redis)
        .await
        .unwrap();
    let rebuilt = replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(rebuilt.ranking_size, Some(5));
    assert_eq!(
        rebuild_keys(&harness.key, &mut redis).await,
        Vec::<String>::new()
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_swap_checks_the_rebuilds_boards_before_writing_anything(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sell_outs();
    enqueue(&harness, &events).await;
    harness.drain(&mut harness.relay(settings())).await;
    let mut redis = harness.redis.clone();
    redis::cmd("ZADD")
        .arg(&harness.key)
        .arg(1)
        .arg("concert:9:schedule:99")
        .exec_async(&mut redis)
        .await
        .unwrap();
    let scores = harness.scores().await;
    let before = all_boards(&harness.key, &mut redis).await;
    let live = harness.ranking.position(&mut redis).await.unwrap();
    let ranking_worker::ranking::SinkPosition::Stored(to) = live.clone() else {
        panic!("no position: {live:?}");
    };

    let fresh = harness.ranking.begin_rebuild(&mut redis).await.unwrap();
    fresh
        .restore(&mut redis, &events.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    // One of the rebuild's boards is something else now.
    let period = &harness
        .ranking
        .periods()
        .periods_of(events[3].sold_out_at)
        .unwrap()[1];
    let broken = fresh.board_key(Some(period));
    redis::pipe()
        .del(&broken)
        .set(&broken, "not a board")
        .exec_async(&mut redis)
        .await
        .unwrap();

    let error = harness
        .ranking
        .swap_in(&mut redis, &fresh, &live, to)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("WRONGTYPE"), "{error}");
    assert_eq!(harness.scores().await, scores, "nothing swapped");
    assert_eq!(all_boards(&harness.key, &mut redis).await, before);
    fresh.discard(&mut redis).await.unwrap();
    assert_eq!(
        rebuild_keys(&harness.key, &mut redis).await,
        Vec::<String>::new()
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_hidden_entry_leaves_the_boards_of_every_zone(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sell_outs();
    enqueue(&harness, &events).await;
    harness.drain(&mut harness.relay(settings())).await;
    let mut redis = harness.redis.clone();
    let in_utc = harness.ranking.clone().with_periods(PeriodSettings {
        timezone: chrono_tz::UTC,
        ..PeriodSettings::default()
    });
    let all = ReplayFilter::default();
    replay::replay(&harness.pool, &mut redis, &in_utc, &all, false)
        .await
        .unwrap();
    let hidden = member(&events[0]);
    let on_boards = |boards: &Boards| {
        boards
            .0
            .iter()
            .filter(|(_, (entries, _))| entries.contains_key(&hidden))
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>()
    };
    let before = all_boards(&harness.key, &mut redis).await;
    assert_eq!(on_boards(&before).len(), 6, "{:?}", on_boards(&before));

    harness.ranking.hide(&mut redis, &hidden).await.unwrap();
    let after = all_boards(&harness.key, &mut redis).await;
    assert_eq!(on_boards(&after), Vec::<String>::new());
}
