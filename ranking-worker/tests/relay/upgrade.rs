//! The upgrade migration on a database populated by the previous schema, where the relay kept
//! its state in each outbox row (status, attempts, lease).

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{event, settings, Harness};

/// The first migration of the log-consumer outbox: the schema before it is the old one.
const LOG_MIGRATION: i64 = 20261125000001;

async fn old_schema(pool: &sqlx::PgPool) {
    let dir = std::env::temp_dir().join(format!("old-migrations-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version < LOG_MIGRATION {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    Migrator::new(dir.as_path())
        .await
        .unwrap()
        .run(pool)
        .await
        .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[sqlx::test(migrations = false)]
async fn the_old_outbox_becomes_a_log_and_the_first_worker_reapplies_it_once(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    old_schema(&harness.pool).await;

    // Rows in every old state, inserted out of creation order.
    let events: Vec<_> = (1..=6).map(event).collect();
    let states = [
        "PROCESSED",
        "PENDING",
        "PROCESSED",
        "PROCESSING",
        "PENDING",
        "PROCESSED",
    ];
    for (i, (event, status)) in events.iter().zip(states).enumerate().rev() {
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload,
                                 status, attempts, processed_at, created_at)
             VALUES ($1, 'ConcertSoldOut', 1, $2, $3, $4, 1,
                     CASE WHEN $4 = 'PROCESSED' THEN now() END,
                     now() - make_interval(mins => 10 - $5))",
        )
        .bind(event.event_id)
        .bind(event.schedule_id)
        .bind(serde_json::to_value(event).unwrap())
        .bind(status)
        .bind(i as i32)
        .execute(&harness.pool)
        .await
        .unwrap();
    }
    let dead: Uuid = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload, status,
                             attempts, last_error)
         VALUES (gen_random_uuid(), 'ConcertSoldOut', 1, 99, '{}', 'DEAD', 10, 'undecodable payload: missing field')
         RETURNING event_id",
    )
    .fetch_one(&harness.pool)
    .await
    .unwrap();

    shared::MIGRATOR.run(&harness.pool).await.unwrap();

    // Positions in creation order, under the fixed low transaction id.
    let order: Vec<(Uuid, String, i64)> =
        sqlx::query_as("SELECT event_id, tx_id::text, seq FROM outbox ORDER BY tx_id, seq")
            .fetch_all(&harness.pool)
            .await
            .unwrap();
    let mut expected: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    expected.push(dead);
    assert_eq!(order.iter().map(|r| r.0).collect::<Vec<_>>(), expected);
    assert!(order.iter().all(|r| r.1 == "1"));
    assert_eq!(
        order.iter().map(|r| r.2).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        harness.dead_letters().await,
        vec![dead],
        "the dead row keeps its error"
    );

    // A payment-svc of the previous version keeps inserting (only the columns it knows), and
    // its rows come after the old ones.
    let newer = event(7);
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
         VALUES ($1, 'ConcertSoldOut', 1, $2, $3)",
    )
    .bind(newer.event_id)
    .bind(newer.schedule_id)
    .bind(serde_json::to_value(&newer).unwrap())
    .execute(&harness.pool)
    .await
    .unwrap();

    // The first worker finds no position in Redis: it re-applies everything once, as a resync.
    let mut relay = harness.relay(settings());
    let outcome = harness.drain(&mut relay).await;
    assert!(outcome.resynced);
    assert_eq!(
        (outcome.applied, outcome.dead_lettered),
        (7, 0),
        "the old dead row is a dead letter already"
    );
    harness
        .assert_ranking_is(&[events, vec![newer]].concat())
        .await;
    assert_eq!(
        harness.dead_letters().await,
        vec![dead],
        "the one that decodes was applied and is no longer a dead letter"
    );
}
