//! What the schema does when its own invariants do not hold: a clear 500 rather than a
//! client error, a migration that refuses what it cannot repair, and one that repairs an
//! index a failed build left invalid.

use std::borrow::Cow;

use reqwest::StatusCode;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::helpers::{assert_problem, TestApp};

const STUCK_SCHEDULES_CHECK: i64 = 20261126140000;
const LIVE_HOLDS_INDEX_REBUILD: i64 = 20261126140100;

/// Counter rows that say every seat is sold while one is still held: paying for it is an
/// internal error (500 INTERNAL), not the client's input (422), and changes nothing.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn counters_that_disagree_with_the_seats_are_a_500_that_changes_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 1_000).await;
    assert_eq!(app.charge(1, 1_000).await.status(), StatusCode::OK);
    let hold = app.hold_ok(1, schedules[0], 1).await;
    sqlx::query("UPDATE schedule_seat_counters SET remaining = 0 WHERE schedule_id = $1")
        .bind(schedules[0])
        .execute(&app.db)
        .await
        .unwrap();
    let before = app.fingerprint().await;

    let response = app.pay(1, hold, "disagreeing").await;
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL").await;
    assert_eq!(app.fingerprint().await, before);
}

fn migrator_before(version: i64) -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            shared::MIGRATOR
                .iter()
                .filter(|m| m.version < version)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

/// A schedule stamped sold out with seats unsold could never sell its last seat: migrating
/// stops, naming the problem, until the row is corrected.
#[sqlx::test(migrations = false)]
async fn a_schedule_sold_out_with_unsold_seats_stops_the_migration(pool: PgPool) {
    migrator_before(STUCK_SCHEDULES_CHECK)
        .run(&pool)
        .await
        .unwrap();
    // As a hand-made row from before 20261126110200 would be; the triggers that now refuse
    // it are off for this one statement's session.
    sqlx::raw_sql(
        "INSERT INTO concerts (title) VALUES ('Stamped by hand');
         INSERT INTO schedules (concert_id, starts_at, sale_starts_at, seat_count, price)
         VALUES (1, now() + interval '1 day', now() - interval '1 day', 2, 10);
         SET session_replication_role = replica;
         UPDATE schedules SET sold_out_at = now() WHERE id = 1;
         SET session_replication_role = DEFAULT;",
    )
    .execute(&pool)
    .await
    .unwrap();

    let refused = shared::MIGRATOR.run(&pool).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("sold_out_at set and unsold seats"),
        "{refused}"
    );

    sqlx::raw_sql(
        "SET session_replication_role = replica;
         UPDATE schedules SET sold_out_at = NULL WHERE id = 1;
         SET session_replication_role = DEFAULT;",
    )
    .execute(&pool)
    .await
    .unwrap();
    shared::MIGRATOR.run(&pool).await.unwrap();
}

async fn live_holds_index_is_valid(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index
          WHERE indexrelid = 'reservations_live_holds_by_user'::regclass",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The index a failed concurrent build left invalid is rebuilt valid by the migration that
/// follows, and running that migration on a valid index leaves it valid.
#[sqlx::test(migrations = false)]
async fn an_invalid_live_holds_index_is_rebuilt(pool: PgPool) {
    migrator_before(LIVE_HOLDS_INDEX_REBUILD)
        .run(&pool)
        .await
        .unwrap();
    // What a cancelled CREATE INDEX CONCURRENTLY leaves behind.
    sqlx::query(
        "UPDATE pg_index SET indisvalid = false
          WHERE indexrelid = 'reservations_live_holds_by_user'::regclass",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(!live_holds_index_is_valid(&pool).await);

    shared::MIGRATOR.run(&pool).await.unwrap();
    assert!(live_holds_index_is_valid(&pool).await);

    let rebuild = shared::MIGRATOR
        .iter()
        .find(|m| m.version == LIVE_HOLDS_INDEX_REBUILD)
        .unwrap();
    sqlx::raw_sql(&rebuild.sql).execute(&pool).await.unwrap();
    assert!(live_holds_index_is_valid(&pool).await);
}
