//! `ranking remove` hides an entry on every board, and heal, replay and rebuild keep it hidden;
//! `ranking restore` brings it back with its exact score (SPEC §6).

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::NaiveDate;
use ranking_worker::commands::moderation::{self, Removed};
use ranking_worker::commands::replay;
use ranking_worker::log::ReplayFilter;
use ranking_worker::moderation::Member;
use ranking_worker::periods::PeriodKind;
use ranking_worker::ranking::{member, SinkPosition, SwapResult};
use redis::aio::ConnectionManager;
use shared::events::ConcertSoldOut;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{eventually, get_json, settings, Harness, PrivateRedis};

/// Four sell-outs on 25 November 2026 in Seoul, of distinct scores.
async fn sold_out(harness: &Harness) -> Vec<ConcertSoldOut> {
    let events: Vec<ConcertSoldOut> = (1..=4)
        .map(|schedule_id| {
            let mut event = crate::helpers::event(schedule_id);
            event.sold_out_at = "2026-11-25T03:00:00Z".parse().unwrap();
            event.sale_started_at = event.sold_out_at - chrono::Duration::seconds(30 * schedule_id);
            event
        })
        .collect();
    let mut tx = harness.pool.begin().await.unwrap();
    for event in &events {
        shared::outbox::enqueue(&mut tx, event).await.unwrap();
    }
    tx.commit().await.unwrap();
    harness.drain(&mut harness.relay(settings())).await;
    events
}

/// member → score on the all-time board and on each of the events' period boards.
async fn boards(harness: &Harness, redis: &mut ConnectionManager) -> Vec<HashMap<String, f64>> {
    let periods = harness.ranking.periods();
    let at = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
    let mut keys = vec![harness.key.clone()];
    for kind in [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month] {
        let period = periods.period(kind, at).unwrap();
        keys.push(harness.ranking.board_key(Some(&period)));
    }
    let mut boards = Vec::new();
    for key in keys {
        let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(redis)
            .await
            .unwrap();
        boards.push(entries.into_iter().collect());
    }
    boards
}

/// Asserts every board holds exactly `events`, each with its exact score.
async fn assert_boards_hold(
    harness: &Harness,
    redis: &mut ConnectionManager,
    events: &[&ConcertSoldOut],
) {
    let expected: HashMap<String, f64> = events
        .iter()
        .map(|event| (member(event), event.sold_out_seconds()))
        .collect();
    for (i, board) in boards(harness, redis).await.into_iter().enumerate() {
        assert_eq!(board, expected, "board {i} (all-time, day, week, month)");
    }
}

fn member_of(event: &ConcertSoldOut) -> Member {
    member(event).parse().unwrap()
}

/// `ranking-worker` with `args` on the test's database and ranking. Waited for off the test's
/// thread: a worker running in the test may hold the moderation lock the command waits for,
/// and must go on meanwhile.
async fn cli(harness: &Harness, args: &[&str]) -> Output {
    let mut command = command(harness, args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// `ranking-worker` with `args` on the test's database and ranking, run by `alice`.
fn command(harness: &Harness, args: &[&str]) -> Command {
    let mut command = harness.command(args);
    command.env("USER", "alice");
    command
}

/// `ranking remove member --reason reason` by the binary, which must succeed: its output.
async fn remove_by_cli(harness: &Harness, member: &str, reason: &str) -> String {
    stdout(&cli(harness, &["ranking", "remove", member, "--reason", reason]).await)
}

/// `ranking restore member` by the binary, which must succeed: its output.
async fn restore_by_cli(harness: &Harness, member: &str) -> String {
    stdout(&cli(harness, &["ranking", "restore", member]).await)
}

/// Hides `member` through the library, as `alice` for `fraud`.
async fn remove_for_fraud(
    harness: &Harness,
    redis: &mut ConnectionManager,
    member: &Member,
) -> Removed {
    moderation::remove(
        &harness.pool,
        redis,
        &harness.ranking,
        member,
        "fraud",
        "alice",
    )
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The feed's last entry's fields.
async fn last_feed_entry(harness: &Harness, redis: &mut ConnectionManager) -> Vec<String> {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg(harness.ranking.keys().feed())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(redis)
        .await
        .unwrap();
    entries.into_iter().next().unwrap().1
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_removed_entry_leaves_every_board_and_top_and_restore_brings_it_back_exactly(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    let mut redis = harness.redis.clone();
    let hidden = member(&events[1]);
    // A worker's read API, its cache warm with the entry.
    let (base, _stop) = harness.start_worker_guarded().await;
    let client = reqwest::Client::new();
    let served = async |url: &str| -> Vec<String> {
        get_json(&client, &format!("{base}{url}")).await["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["member"].as_str().unwrap().to_owned())
            .collect()
    };
    let day_board = "/rankings/sold-out?period=day&at=2026-11-25";
    assert!(served("/rankings/sold-out").await.contains(&hidden));
    assert!(served(day_board).await.contains(&hidden));

    let removed = remove_by_cli(&harness, &hidden, "a test sale").await;
    assert_eq!(
        removed.trim(),
        format!("hid {hidden} on every board (reason: a test sale)")
    );
    assert_boards_hold(&harness, &mut redis, &[&events[0], &events[2], &events[3]]).await;
    let top = stdout(&cli(&harness, &["top", "--json"]).await);
    let top: serde_json::Value = serde_json::from_str(&top).unwrap();
    let ranked: Vec<(u64, &str)> = top["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["rank"].as_u64().unwrap(),
                entry["member"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [
            (1, member(&events[0]).as_str()),
            (2, member(&events[2]).as_str()),
            (3, member(&events[3]).as_str())
        ]
    );
    let day = stdout(&cli(&harness, &["top", "--period", "day", "--at", "2026-11-25"]).await);
    assert!(!day.contains(&hidden), "{day}");
    // Open live boards and read caches are told to take a fresh snapshot.
    assert_eq!(last_feed_entry(&harness, &mut redis).await[0], "reset");
    eventually(Duration::from_secs(10), async || {
        !served("/rankings/sold-out").await.contains(&hidden)
            && !served(day_board).await.contains(&hidden)
    })
    .await;
    let recorded: (String, String) = sqlx::query_as(
        "SELECT reason, hidden_by FROM ranking_hidden WHERE member = $1 AND restored_at IS NULL",
    )
    .bind(&hidden)
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    assert_eq!(recorded, ("a test sale".to_owned(), "alice".to_owned()));

    let restored = restore_by_cli(&harness, &hidden).await;
    assert_eq!(restored.trim(), format!("restored {hidden} on every board"));
    assert_boards_hold(&harness, &mut redis, &events.iter().collect::<Vec<_>>()).await;
    let entry = harness
        .ranking
        .top(&mut redis, 1, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((entry.rank, entry.member.as_str()), (2, hidden.as_str()));
    assert_eq!(
        entry.concert_title.as_deref(),
        Some(events[1].concert_title.as_str())
    );
    assert_eq!(last_feed_entry(&harness, &mut redis).await[0], "reset");
    eventually(Duration::from_secs(10), async || {
        served("/rankings/sold-out").await.contains(&hidden)
            && served(day_board).await.contains(&hidden)
    })
    .await;
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ranking_hidden WHERE member = $1 AND restored_at IS NULL",
    )
    .bind(&hidden)
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    assert_eq!(open, 0, "the record is closed, not deleted");
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_hidden_entry_stays_hidden_through_replay_rebuild_and_a_heal(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut server = PrivateRedis::start();
    let harness = Harness::with_redis(database, &server.url()).await;
    let events = sold_out(&harness).await;
    let mut redis = server.connection().await;
    let hidden = member_of(&events[2]);
    let outcome = remove_for_fraud(&harness, &mut redis, &hidden).await;
    assert!(matches!(
        outcome,
        Removed::Hidden {
            was_ranked: true,
            ..
        }
    ));
    let visible = [&events[0], &events[1], &events[3]];
    assert_boards_hold(&harness, &mut redis, &visible).await;

    let all = ReplayFilter::default();
    let report = replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, false)
        .await
        .unwrap();
    assert_eq!((report.restored, report.unchanged), (0, 4));
    assert_boards_hold(&harness, &mut redis, &visible).await;
    let dry = replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, true)
        .await
        .unwrap();
    assert_eq!(dry.restored, 0, "a hidden entry is held as it should be");

    let rebuilt = replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(rebuilt.ranking_size, Some(3));
    assert_boards_hold(&harness, &mut redis, &visible).await;

    // Redis restarts empty: the heal loads the hidden entries from Postgres before writing.
    server.restart();
    let mut redis = server.connection().await;
    let healed = harness.drain(&mut harness.relay(settings())).await;
    assert!(healed.resynced);
    assert_boards_hold(&harness, &mut redis, &visible).await;
    // And a replay onto a Redis that lost them again loads them too.
    redis::cmd("DEL")
        .arg(harness.ranking.keys().hidden())
        .arg(&harness.key)
        .exec_async(&mut redis)
        .await
        .unwrap();
    replay::replay(&harness.pool, &mut redis, &harness.ranking, &all, false)
        .await
        .unwrap();
    assert_eq!(
        boards(&harness, &mut redis).await[0],
        visible
            .iter()
            .map(|event| (member(event), event.sold_out_seconds()))
            .collect()
    );

    moderation::restore(&harness.pool, &mut redis, &harness.ranking, &hidden, "bob")
        .await
        .unwrap();
    assert_boards_hold(&harness, &mut redis, &events.iter().collect::<Vec<_>>()).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn bad_input_is_refused_with_one_line_and_changes_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    let mut redis = harness.redis.clone();
    let hidden = member(&events[0]);
    remove_by_cli(&harness, &hidden, "test").await;
    let before = boards(&harness, &mut redis).await;
    let rows = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM ranking_hidden")
            .fetch_one(&harness.pool)
            .await
            .unwrap()
    };
    assert_eq!(rows().await, 1);

    let never_sold_out = "concert:1:schedule:999";
    let wrong_concert = format!("concert:77:schedule:{}", events[1].schedule_id);
    let visible = member(&events[1]);
    for (args, says) in [
        (
            vec!["ranking", "remove", "concert:1", "--reason", "x"],
            "not a ranking member",
        ),
        (
            vec![
                "ranking",
                "remove",
                "concert:01:schedule:2",
                "--reason",
                "x",
            ],
            "not a ranking member",
        ),
        (
            vec!["ranking", "remove", never_sold_out, "--reason", "x"],
            "never sold out",
        ),
        (
            vec!["ranking", "remove", &wrong_concert, "--reason", "x"],
            "never sold out",
        ),
        (
            vec!["ranking", "remove", &visible, "--reason", "  "],
            "--reason",
        ),
        (vec!["ranking", "remove", &visible], "--reason"),
        (vec!["ranking", "restore", &visible], "is not hidden"),
        (
            vec!["ranking", "restore", "schedule:2"],
            "not a ranking member",
        ),
    ] {
        let output = cli(&harness, &args).await;
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(boards(&harness, &mut redis).await, before);
    assert_eq!(rows().await, 1);

    // Removing twice says so, and records nothing again.
    let again = remove_by_cli(&harness, &hidden, "other").await;
    assert!(
        again.starts_with(&format!("{hidden} is already hidden, since ")),
        "{again}"
    );
    assert!(again.contains("by alice (reason: test)"), "{again}");
    assert_eq!(rows().await, 1);
    assert_eq!(boards(&harness, &mut redis).await, before);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn an_entry_hidden_while_a_rebuild_runs_is_not_brought_back_by_its_swap(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    let mut redis = harness.redis.clone();
    let live = harness.ranking.position(&mut redis).await.unwrap();
    let SinkPosition::Stored(to) = live else {
        panic!("the drain stored a position, found {live}");
    };
    // The rebuild has written every event when the entry is hidden.
    let fresh = harness.ranking.begin_rebuild(&mut redis).await.unwrap();
    fresh
        .restore(&mut redis, &events.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    let hidden = member_of(&events[3]);
    remove_for_fraud(&harness, &mut redis, &hidden).await;

    let swapped = harness
        .ranking
        .swap_in(&mut redis, &fresh, &live, to)
        .await
        .unwrap();
    assert_eq!(swapped, SwapResult::Swapped(3));
    assert_boards_hold(&harness, &mut redis, &[&events[0], &events[1], &events[2]]).await;
    let details: Option<String> = redis::cmd("HGET")
        .arg(harness.ranking.keys().details())
        .arg(hidden.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(details, None);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn restore_repairs_an_entry_hidden_in_redis_only(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    let mut redis = harness.redis.clone();
    // As a reload of the list that read Postgres just before a restore would leave it.
    let stale = member_of(&events[0]);
    harness
        .ranking
        .hide(&mut redis, &stale.to_string())
        .await
        .unwrap();
    assert_boards_hold(&harness, &mut redis, &[&events[1], &events[2], &events[3]]).await;

    let restored = restore_by_cli(&harness, &stale.to_string()).await;
    assert_eq!(restored.trim(), format!("restored {stale} on every board"));
    assert_boards_hold(&harness, &mut redis, &events.iter().collect::<Vec<_>>()).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn an_entry_restored_while_a_rebuild_runs_is_on_the_boards_after_its_swap(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    let mut redis = harness.redis.clone();
    let hidden = member_of(&events[1]);
    remove_for_fraud(&harness, &mut redis, &hidden).await;
    // The rebuild writes its pages while the entry is hidden: they skip it.
    let mut rebuild = replay::Rebuild::begin(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    rebuild.fill(&harness.pool, &mut redis).await.unwrap();
    let restored = moderation::restore(&harness.pool, &mut redis, &harness.ranking, &hidden, "bob")
        .await
        .unwrap();
    assert!(restored.reapplied);
    assert_boards_hold(&harness, &mut redis, &events.iter().collect::<Vec<_>>()).await;

    let report = rebuild.finish(&harness.pool, &mut redis).await.unwrap();
    assert_eq!(report.ranking_size, Some(4));
    assert_boards_hold(&harness, &mut redis, &events.iter().collect::<Vec<_>>()).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_restore_that_stopped_after_postgres_is_finished_by_running_it_again(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    let mut redis = harness.redis.clone();
    let hidden = member(&events[2]);
    remove_by_cli(&harness, &hidden, "fraud").await;
    // As a restore leaves it that closed its row and unhid the entry, then died before writing
    // its event back.
    sqlx::query(
        "UPDATE ranking_hidden SET restored_by = 'bob', restored_at = now() WHERE member = $1",
    )
    .bind(&hidden)
    .execute(&harness.pool)
    .await
    .unwrap();
    harness.ranking.unhide(&mut redis, &hidden).await.unwrap();
    assert_boards_hold(&harness, &mut redis, &[&events[0], &events[1], &events[3]]).await;

    for _ in 0..2 {
        let restored = restore_by_cli(&harness, &hidden).await;
        assert_eq!(
            restored.trim(),
            format!("{hidden} was already restored; re-applied it on every board")
        );
        assert_boards_hold(&harness, &mut redis, &events.iter().collect::<Vec<_>>()).await;
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ranking_hidden")
        .fetch_one(&harness.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "nothing recorded again");
}

/// Redis's hidden entries differing from Postgres's, as two halfway moderations leave them:
/// `events[0]` hidden in Postgres only (a remove that stopped before Redis), `events[1]`
/// restored in Postgres but hidden in Redis (Redis brought back from an older copy).
async fn hidden_lists_disagree(harness: &Harness, events: &[ConcertSoldOut]) {
    let mut redis = harness.redis.clone();
    let stale = member_of(&events[1]);
    remove_for_fraud(harness, &mut redis, &stale).await;
    sqlx::query(
        "UPDATE ranking_hidden SET restored_by = 'bob', restored_at = now() WHERE member = $1",
    )
    .bind(stale.to_string())
    .execute(&harness.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ranking_hidden (member, reason, hidden_by) VALUES ($1, 'test', 'alice')",
    )
    .bind(member(&events[0]))
    .execute(&harness.pool)
    .await
    .unwrap();
    assert_boards_hold(harness, &mut redis, &[&events[0], &events[2], &events[3]]).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_consumer_makes_redis_hide_what_postgres_hides_when_it_becomes_active(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    hidden_lists_disagree(&harness, &events).await;
    let mut redis = harness.redis.clone();

    let mut relay = harness.relay(settings());
    ranking_worker::consumer::Sink::register(&mut relay)
        .await
        .unwrap();
    assert_boards_hold(&harness, &mut redis, &[&events[1], &events[2], &events[3]]).await;
    let ranking = &harness.ranking;
    assert!(ranking
        .is_hidden(&mut redis, &member(&events[0]))
        .await
        .unwrap());
    assert!(!ranking
        .is_hidden(&mut redis, &member(&events[1]))
        .await
        .unwrap());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_rebuild_hides_what_postgres_hides_not_what_redis_holds(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let events = sold_out(&harness).await;
    hidden_lists_disagree(&harness, &events).await;
    let mut redis = harness.redis.clone();

    let rebuilt = replay::rebuild(&harness.pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(rebuilt.ranking_size, Some(3));
    assert_boards_hold(&harness, &mut redis, &[&events[1], &events[2], &events[3]]).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn remove_from_a_shell_in_another_time_zone_clears_the_workers_period_boards(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    // 03:00 UTC on 25 November: the 25th in Seoul (the worker's boards), the 24th in Los Angeles.
    let events = sold_out(&harness).await;
    let mut redis = harness.redis.clone();
    let hidden = member(&events[0]);
    let output = command(
        &harness,
        &["ranking", "remove", &hidden, "--reason", "fraud"],
    )
    .env("RANKING_TIMEZONE", "America/Los_Angeles")
    .output()
    .unwrap();
    stdout(&output);
    assert_boards_hold(&harness, &mut redis, &[&events[1], &events[2], &events[3]]).await;
}
