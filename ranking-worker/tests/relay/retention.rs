//! Retention (`prune`) and the operator's consumer commands (`consumers`, `pause`, `resume`,
//! `remove`, `reset --since`), against a real Postgres and Redis.

use chrono::{DateTime, Duration, Utc};
use ranking_worker::commands::consumers::{self, ConsumerState};
use ranking_worker::commands::prune::{self, HeldBackByConsumer, Kept};
use ranking_worker::commands::replay;
use ranking_worker::consumers::{self as table, HaltKind, RANKING};
use ranking_worker::leadership::Leadership;
use ranking_worker::log::{self, LogPosition, ReplayFilter};
use ranking_worker::relay::RelayError;
use ranking_worker::retention::{self, SoldOutGone};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{eventually, settings, Harness};

const WEBHOOK: &str = "webhook";

/// A row of a type only other consumers read (the ranking skips it), created at `created_at`.
async fn other_row(pool: &PgPool, created_at: DateTime<Utc>) -> (LogPosition, Uuid) {
    let id = Uuid::now_v7();
    let (tx_id, seq): (i64, i64) = sqlx::query_as(
        "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload, created_at)
         VALUES ($1, 'SeatsReleased', 1, 1, '{}', $2)
         RETURNING tx_id::text::bigint, seq",
    )
    .bind(id)
    .bind(created_at)
    .fetch_one(pool)
    .await
    .unwrap();
    (LogPosition { tx_id, seq }, id)
}

/// A consumer whose position lives in Postgres (as the webhook's does), at `position`.
async fn add_consumer(pool: &PgPool, name: &str, position: LogPosition) {
    sqlx::query(
        "INSERT INTO outbox_consumers (name, position_tx, position_seq)
         VALUES ($1, $2::bigint::text::xid8, $3)",
    )
    .bind(name)
    .bind(position.tx_id)
    .bind(position.seq)
    .execute(pool)
    .await
    .unwrap();
}

async fn event_ids(pool: &PgPool) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM outbox ORDER BY tx_id, seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn position_of(pool: &PgPool, name: &str) -> LogPosition {
    table::get(pool, name).await.unwrap().position()
}

fn soon() -> DateTime<Utc> {
    Utc::now() + Duration::seconds(5)
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn prune_never_removes_a_sold_out_or_a_row_a_consumer_still_needs(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let pool = &harness.pool;
    let sold_out = harness.enqueue(3).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(other_row(pool, Utc::now()).await);
    }
    harness.drain(&mut harness.relay(settings())).await;
    assert_eq!(position_of(pool, RANKING).await, others[4].0);
    // A lagging consumer at the third of them, and a dead letter on the first.
    add_consumer(pool, WEBHOOK, others[2].0).await;
    table::dead_letter(pool, RANKING, &[(others[0].1, "refused".into())])
        .await
        .unwrap();

    let dry = prune::prune(pool, soon(), true).await.unwrap();
    assert_eq!(dry.pruned, 1);
    assert_eq!(event_ids(pool).await.len(), 8, "a dry run deletes nothing");

    let report = prune::prune(pool, soon(), false).await.unwrap();
    assert_eq!(report.pruned, 1, "{report}");
    assert_eq!(
        report.kept,
        Kept {
            retained: 3,
            not_consumed: 2,
            dead_lettered: 1,
            at_positions: 1,
        }
    );
    assert_eq!(report.held_back_by.len(), 1);
    assert_eq!(report.held_back_by[0].consumer, WEBHOOK);
    assert_eq!(report.held_back_by[0].position, others[2].0);
    assert_eq!(report.pruned_through, others[1].0);
    let text = report.to_string();
    assert!(
        text.contains(&format!("held back by webhook (at {}", others[2].0)),
        "{text}"
    );
    let left = event_ids(pool).await;
    assert!(!left.contains(&others[1].1), "the one prunable row went");
    for kept in sold_out.iter().map(|event| event.event_id).chain(
        others
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| *id != others[1].1),
    ) {
        assert!(left.contains(&kept), "{kept} kept");
    }

    // Paused, it still holds back what it has not consumed; with nothing prunable left because
    // of it, prune refuses and names it.
    table::halt(pool, WEBHOOK, HaltKind::Paused, "maintenance")
        .await
        .unwrap();
    let refused = prune::prune(pool, soon(), false).await.unwrap_err();
    let held = refused
        .downcast_ref::<HeldBackByConsumer>()
        .expect("refused because of a consumer");
    assert_eq!(held.rows, 2);
    let message = refused.to_string();
    assert!(
        message.contains(&format!("webhook (at {}, paused", others[2].0)),
        "{message}"
    );
    assert!(
        prune::prune(pool, soon(), true).await.is_err(),
        "dry run too"
    );
    assert_eq!(event_ids(pool).await.len(), 7);

    // Once removed, it no longer holds anything back; its dead letters would go with it.
    consumers::remove(pool, WEBHOOK).await.unwrap();
    let report = prune::prune(pool, soon(), false).await.unwrap();
    assert_eq!(report.pruned, 2, "{report}");
    assert_eq!(report.kept.not_consumed, 0);
    assert_eq!(report.kept.at_positions, 1, "the ranking's position row");
    assert_eq!(report.kept.dead_lettered, 1);
    assert_eq!(report.pruned_through, others[3].0);
    assert_eq!(event_ids(pool).await.len(), 5);

    // Rows created after T are never pruned.
    let report = prune::prune(pool, Utc::now() - Duration::hours(1), false)
        .await
        .unwrap();
    assert_eq!((report.pruned, report.kept), (0, Kept::default()));
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn rebuild_and_heal_after_prune_yield_the_same_board(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let pool = &harness.pool;
    let mut events = Vec::new();
    for _ in 0..4 {
        other_row(pool, Utc::now()).await;
        events.extend(harness.enqueue(5).await);
        other_row(pool, Utc::now()).await;
    }
    harness.drain(&mut harness.relay(settings())).await;
    let mut redis = harness.redis.clone();
    let board = harness.ranking.top(&mut redis, 0, 100).await.unwrap();
    let before_prune = harness.ranking.position(&mut redis).await.unwrap();

    let report = prune::prune(pool, soon(), false).await.unwrap();
    assert_eq!(report.pruned, 7, "{report}");
    assert_eq!(report.kept.retained, 20);
    assert_eq!(log::retained(pool).await.unwrap().events, 21);

    let rebuilt = replay::rebuild(pool, &mut redis, &harness.ranking)
        .await
        .unwrap();
    assert_eq!(rebuilt.ranking_size, Some(20));
    assert_eq!(
        harness.ranking.top(&mut redis, 0, 100).await.unwrap(),
        board
    );

    // Redis loses the ranking and its position: the consumer heals it from what is left.
    let keys = harness.ranking.keys();
    redis::cmd("DEL")
        .arg(&harness.key)
        .arg(keys.position())
        .exec_async(&mut redis)
        .await
        .unwrap();
    let healed = harness.drain(&mut harness.relay(settings())).await;
    assert!(healed.resynced);
    assert_eq!(
        harness.ranking.top(&mut redis, 0, 100).await.unwrap(),
        board
    );
    harness.assert_ranking_is(&events).await;
    assert_eq!(
        harness.ranking.position(&mut redis).await.unwrap(),
        before_prune
    );

    // A position in the pruned range is still a place in the log (a Redis restored from an
    // old snapshot resumes from it), whether or not its row is gone.
    let pruned = retention::pruned(pool).await.unwrap();
    assert_eq!(pruned.rows, 7);
    assert!(log::holds(pool, pruned.through).await.unwrap());
    let gone = LogPosition {
        tx_id: pruned.through.tx_id,
        seq: pruned.through.seq - 1,
    };
    assert!(log::holds(pool, gone).await.unwrap());
    let future = LogPosition {
        tx_id: i64::from(u32::MAX) * 4,
        seq: 1,
    };
    assert!(!log::holds(pool, future).await.unwrap());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_sold_out_row_cannot_be_deleted_and_replay_refuses_once_one_is_gone(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let pool = &harness.pool;
    let events = harness.enqueue(3).await;
    harness.drain(&mut harness.relay(settings())).await;

    let refused = sqlx::query("DELETE FROM outbox WHERE event_id = $1")
        .bind(events[0].event_id)
        .execute(pool)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("never deleted"), "{refused}");
    assert_eq!(event_ids(pool).await.len(), 3);

    // Someone removes the guard and deletes one: replay and rebuild refuse, the board stays.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("ALTER TABLE outbox DISABLE TRIGGER outbox_keep_sold_out")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM outbox WHERE event_id = $1")
        .bind(events[0].event_id)
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut redis = harness.redis.clone();
    let rebuild = replay::rebuild(pool, &mut redis, &harness.ranking)
        .await
        .unwrap_err();
    assert!(rebuild.downcast_ref::<SoldOutGone>().is_some(), "{rebuild}");
    assert!(rebuild
        .to_string()
        .contains("1 ConcertSoldOut rows were deleted"));
    let replayed = replay::replay(
        pool,
        &mut redis,
        &harness.ranking,
        &ReplayFilter::default(),
        false,
    )
    .await
    .unwrap_err();
    assert!(
        replayed.downcast_ref::<SoldOutGone>().is_some(),
        "{replayed}"
    );
    harness.assert_ranking_is(&events).await;

    // Redis loses the ranking: the heal would re-apply a log that lacks a sell-out, so it
    // refuses, and writes nothing.
    let _: () = redis::cmd("DEL")
        .arg(&harness.key)
        .arg(harness.ranking.keys().position())
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut relay = harness.relay(settings());
    let heal = relay.relay_once().await.unwrap_err();
    assert!(matches!(heal, RelayError::LogIncomplete(_)), "{heal}");
    assert!(heal
        .to_string()
        .contains("1 ConcertSoldOut rows were deleted"));
    assert!(harness.scores().await.is_empty());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn reset_since_redelivers_exactly_the_rows_it_names(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let pool = &harness.pool;
    let since = Utc::now() - Duration::hours(1);
    // Log order is not creation order: the third row was created before `since`.
    let first = other_row(pool, since - Duration::hours(2)).await;
    let second = other_row(pool, since + Duration::minutes(1)).await;
    let third = other_row(pool, since - Duration::minutes(30)).await;
    let fourth = other_row(pool, since + Duration::minutes(2)).await;
    let fifth = other_row(pool, since + Duration::minutes(3)).await;
    add_consumer(pool, WEBHOOK, fourth.0).await;

    let report = consumers::reset(pool, WEBHOOK, since).await.unwrap();
    assert_eq!((report.from, report.to), (fourth.0, first.0));
    assert_eq!(position_of(pool, WEBHOOK).await, first.0);
    assert_eq!(report.rows, 3);
    assert_eq!((report.first, report.last), (second.0, fourth.0));
    assert_eq!(
        report
            .created_before_since
            .iter()
            .map(|(position, _)| *position)
            .collect::<Vec<_>>(),
        vec![third.0]
    );
    // What the consumer reads from its new position: the three again, then the one it had not
    // reached.
    // (Another test's open transaction may hide rows for a moment.)
    let mut redelivered = Vec::new();
    eventually(std::time::Duration::from_secs(30), async || {
        redelivered = log::read_after(pool, report.to, 100)
            .await
            .unwrap()
            .rows
            .iter()
            .map(|row| row.event_id)
            .collect();
        redelivered.len() == 4
    })
    .await;
    assert_eq!(redelivered, vec![second.1, third.1, fourth.1, fifth.1]);
    let text = report.to_string();
    assert!(text.contains("delivers again the 3 rows"), "{text}");
    assert!(text.contains("1 of them were created before"), "{text}");
    assert!(text.contains(&third.0.to_string()), "{text}");

    // Again: it has not passed that row any more, so nothing moves (never forward).
    let again = consumers::reset(pool, WEBHOOK, since).await.unwrap_err();
    assert!(again.to_string().contains("unchanged"), "{again}");
    let future = consumers::reset(pool, WEBHOOK, Utc::now() + Duration::hours(1))
        .await
        .unwrap_err();
    assert!(future.to_string().contains("no log row"), "{future}");
    assert_eq!(position_of(pool, WEBHOOK).await, first.0);

    // The ranking's position lives in Redis: reset says replay is its tool.
    let ranking_before = position_of(pool, RANKING).await;
    let refused = consumers::reset(pool, RANKING, since).await.unwrap_err();
    assert!(refused.to_string().contains("replay --since"), "{refused}");
    assert_eq!(position_of(pool, RANKING).await, ranking_before);

    // While a reset holds the consumer's row, the active instance's compare-and-set move waits,
    // then finds the position moved and moves nothing.
    let mut reset = pool.begin().await.unwrap();
    let locked = table::lock_position(&mut reset, WEBHOOK).await.unwrap();
    assert_eq!(locked, Some(first.0));
    let instance = tokio::spawn({
        let pool = pool.clone();
        async move { table::move_position(&pool, WEBHOOK, first.0, fifth.0).await }
    });
    table::move_position(&mut *reset, WEBHOOK, first.0, third.0)
        .await
        .unwrap()
        .expect("moved under the lock");
    reset.commit().await.unwrap();
    assert_eq!(
        instance.await.unwrap().unwrap(),
        None,
        "the stale move moved nothing"
    );
    assert_eq!(position_of(pool, WEBHOOK).await, third.0);
}

fn state_of(views: &[consumers::ConsumerView], name: &str) -> (ConsumerState, Option<String>) {
    let view = views
        .iter()
        .find(|view| view.name == name)
        .unwrap_or_else(|| panic!("{name} listed"));
    (view.state, view.detail.clone())
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn pause_resume_and_remove_change_what_consumers_shows(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database.clone()).await;
    let pool = &harness.pool;
    let (_, row) = other_row(pool, Utc::now()).await;
    add_consumer(pool, WEBHOOK, LogPosition::START).await;
    table::dead_letter(pool, WEBHOOK, &[(row, "422 refused".into())])
        .await
        .unwrap();

    let views = consumers::list(pool).await.unwrap();
    assert_eq!(
        views.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        vec![RANKING, WEBHOOK]
    );
    assert_eq!(state_of(&views, WEBHOOK).0, ConsumerState::NoActiveInstance);
    let webhook = views.iter().find(|v| v.name == WEBHOOK).unwrap();
    assert_eq!((webhook.lag.events, webhook.dead_letters), (1, 1));

    let said = consumers::pause(pool, WEBHOOK, "receiver migration")
        .await
        .unwrap();
    assert!(said.starts_with("paused webhook"), "{said}");
    let views = consumers::list(pool).await.unwrap();
    assert_eq!(
        state_of(&views, WEBHOOK),
        (ConsumerState::Paused, Some("receiver migration".into()))
    );
    let again = consumers::pause(pool, WEBHOOK, "other").await.unwrap();
    assert!(again.contains("already paused"), "{again}");

    // An instance takes it up: still paused (the halt wins) until resumed, then active.
    let mut instance = Leadership::new(database.clone(), WEBHOOK);
    assert!(instance.try_acquire().await.unwrap());
    assert_eq!(
        state_of(&consumers::list(pool).await.unwrap(), WEBHOOK).0,
        ConsumerState::Paused
    );
    let said = consumers::resume(pool, WEBHOOK).await.unwrap();
    assert!(said.starts_with("resumed webhook (paused since"), "{said}");
    assert_eq!(
        state_of(&consumers::list(pool).await.unwrap(), WEBHOOK).0,
        ConsumerState::Active
    );
    let said = consumers::resume(pool, WEBHOOK).await.unwrap();
    assert!(said.contains("nothing changed"), "{said}");
    table::report_state(pool, WEBHOOK, "paused", Some("receiver: 503"), "test")
        .await
        .unwrap();
    assert_eq!(
        state_of(&consumers::list(pool).await.unwrap(), WEBHOOK),
        (ConsumerState::SinkUnavailable, Some("receiver: 503".into()))
    );
    table::halt(pool, WEBHOOK, HaltKind::Disabled, "410 Gone")
        .await
        .unwrap();
    assert_eq!(
        state_of(&consumers::list(pool).await.unwrap(), WEBHOOK).0,
        ConsumerState::Disabled
    );

    // Not while an instance runs it; never the ranking.
    let refused = consumers::remove(pool, WEBHOOK).await.unwrap_err();
    assert!(
        refused.to_string().contains("active instance (test)"),
        "{refused}"
    );
    assert_eq!(consumers::list(pool).await.unwrap().len(), 2);
    instance.release().await;
    // Postgres frees the lock once the closed session's backend has gone.
    eventually(std::time::Duration::from_secs(10), async || {
        !ranking_worker::leadership::is_held(pool, WEBHOOK)
            .await
            .unwrap()
    })
    .await;
    let refused = consumers::remove(pool, RANKING).await.unwrap_err();
    assert!(
        refused.to_string().contains("cannot be removed"),
        "{refused}"
    );

    let said = consumers::remove(pool, WEBHOOK).await.unwrap();
    assert!(said.contains("its 1 dead letters"), "{said}");
    let views = consumers::list(pool).await.unwrap();
    assert_eq!(views.len(), 1);
    assert!(harness.dead_letters().await.is_empty());
    let unknown = consumers::pause(pool, WEBHOOK, "x").await.unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "no consumer named \"webhook\"; known consumers: ranking"
    );
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_commands_refuse_bad_input_in_one_line_and_change_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let pool = &harness.pool;
    let (position, _) = other_row(pool, Utc::now() - Duration::hours(2)).await;
    add_consumer(pool, WEBHOOK, LogPosition::START).await;
    let rows = event_ids(pool).await;

    for args in [
        &["consumers", "pause", "nosuch"][..],
        &["consumers", "resume", "nosuch"],
        &["consumers", "remove", "nosuch"],
        &[
            "consumers",
            "reset",
            "nosuch",
            "--since",
            "2026-11-25T00:00:00Z",
        ],
        &["dead-letters", "list", "--consumer", "nosuch"],
    ] {
        let (ok, out, err) = harness.cli(args);
        assert!(!ok, "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("known consumers: ranking, webhook"),
            "{args:?}: {err}"
        );
    }
    for args in [
        &["consumers", "reset", WEBHOOK, "--since", "yesterday"][..],
        &["consumers", "reset", WEBHOOK],
        &["prune", "--before", "2026-13-01"],
        &["prune"],
        &["consumers", "remove", RANKING],
        &[
            "consumers",
            "reset",
            RANKING,
            "--since",
            "2026-11-25T00:00:00Z",
        ],
    ] {
        let (ok, out, err) = harness.cli(args);
        assert!(!ok, "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // The webhook holds everything back: prune refuses, naming it, in one line.
    let (ok, _, err) = harness.cli(&["prune", "--before", &Utc::now().to_rfc3339()]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not consumed yet by ranking (at 0/0"), "{err}");
    assert!(err.contains("webhook (at 0/0; 1 rows)"), "{err}");
    assert_eq!(event_ids(pool).await, rows, "nothing deleted");
    assert_eq!(position_of(pool, WEBHOOK).await, LogPosition::START);
    assert_eq!(table::halt_of(pool, WEBHOOK).await.unwrap(), None);

    // And the good paths print what they did.
    let (ok, out, _) = harness.cli(&["consumers", "pause", WEBHOOK]);
    assert!(ok);
    assert!(out.starts_with("paused webhook"), "{out}");
    let (ok, table, _) = harness.cli(&["consumers"]);
    assert!(ok);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("webhook") && line.contains("paused")),
        "{table}"
    );
    let (_, json, _) = harness.cli(&["consumers", "--json"]);
    let listed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(listed["consumers"][1]["name"], WEBHOOK);
    assert_eq!(listed["consumers"][1]["state"], "paused");
    assert_eq!(listed["consumers"][1]["lag"]["events"], 1);
    let (ok, out, _) = harness.cli(&["consumers", "resume", WEBHOOK]);
    assert!(ok && out.starts_with("resumed webhook"), "{out}");
    let (ok, out, err) = harness.cli(&[
        "consumers",
        "reset",
        WEBHOOK,
        "--since",
        "2026-11-25T00:00:00Z",
    ]);
    assert!(!ok, "{out}");
    assert!(err.contains("unchanged"), "{err}");
    assert_eq!(position_of(pool, WEBHOOK).await, LogPosition::START);

    // Both consumers pass a second row: the first may go, the second is at their position.
    let (second, _) = other_row(pool, Utc::now() - Duration::hours(2)).await;
    sqlx::query(
        "UPDATE outbox_consumers SET position_tx = $1::bigint::text::xid8, position_seq = $2",
    )
    .bind(second.tx_id)
    .bind(second.seq)
    .execute(pool)
    .await
    .unwrap();
    let (ok, out, _) = harness.cli(&["prune", "--before", &Utc::now().to_rfc3339(), "--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.starts_with("dry run: would prune 1 rows"), "{out}");
    let (ok, out, _) = harness.cli(&["prune", "--before", &Utc::now().to_rfc3339()]);
    assert!(ok, "{out}");
    assert!(out.starts_with("pruned 1 rows"), "{out}");
    let (ok, status, _) = harness.cli(&["status"]);
    assert!(ok);
    assert!(
        status.contains(&format!("pruned            through {position} (1 rows")),
        "{status}"
    );
    assert!(status.contains("log               1 events"), "{status}");
}

/// What the consumers rely on holds for every session: the log cannot be truncated, and no row
/// can carry a time the consumers cannot compute with.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_log_refuses_truncation_and_unusable_times(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let pool = &harness.pool;
    harness.enqueue(2).await;

    let truncated = sqlx::query("TRUNCATE outbox CASCADE")
        .execute(pool)
        .await
        .unwrap_err();
    assert!(
        truncated.to_string().contains("never truncated"),
        "{truncated}"
    );
    for time in ["infinity", "-infinity", "12000-01-01"] {
        let refused = sqlx::query(
            "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload, created_at)
             VALUES (gen_random_uuid(), 'SomethingElse', 1, 1, '{}', $1::timestamptz)",
        )
        .bind(time)
        .execute(pool)
        .await
        .unwrap_err();
        assert!(
            refused.to_string().contains("outbox_created_at_finite"),
            "{time}: {refused}"
        );
    }
    assert_eq!(event_ids(pool).await.len(), 2);
}
