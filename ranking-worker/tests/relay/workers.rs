//! Several instances: one holds the consumer, the others stand by and take over.

use std::process::Command;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{eventually, get_json, redis_url, role, Harness};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_standby_takes_over_when_the_active_instance_stops(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let workers = harness.start_active_and_standby().await;
    let second = &workers.standby;
    let client = reqwest::Client::new();

    let before = harness.enqueue(20).await;
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == 20
    })
    .await;
    // A standby still serves the ranking and is ready.
    let ready = client.get(format!("{second}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let ranking = get_json(&client, &format!("{second}/rankings/sold-out?limit=100")).await;
    assert_eq!(ranking["entries"].as_array().unwrap().len(), 20);

    workers.active_stop.cancel();
    eventually(Duration::from_secs(10), async || {
        role(&client, second).await == "active"
    })
    .await;
    let after = harness.enqueue(20).await;
    eventually(Duration::from_secs(10), async || {
        harness.applied_events().await == 40
    })
    .await;
    harness.assert_ranking_is(&[before, after].concat()).await;
}

#[test]
fn a_pool_too_small_for_the_consumer_is_refused_in_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_ranking-worker"))
        .arg("run")
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("DATABASE_MAX_CONNECTIONS", "1")
        .env("REDIS_URL", redis_url())
        .env("RANKING_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_MAX_CONNECTIONS"), "{stderr}");
}
