//! Public reads stay cheap whatever the client asks for: seats come in pages, responses are
//! compressed for clients that accept it, slow statements and slow clients are cut short.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use payment_svc::startup::{Limits, Settings};

use crate::helpers::{answer_to_a_stalled_body, assert_problem, settings, token, TestApp};

async fn seats(app: &TestApp, schedule: i64, query: &str) -> Value {
    let response = app
        .get(&format!("/schedules/{schedule}/seats{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

/// The page's seat numbers as (first, last, count), with their contiguity checked.
fn seat_numbers(page: &Value) -> Option<(i64, i64, usize)> {
    let numbers: Vec<i64> = page["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|seat| seat["seat_no"].as_i64().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "contiguous"
    );
    Some((*numbers.first()?, *numbers.last()?, numbers.len()))
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn seats_come_in_pages_of_at_most_a_thousand(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 2_500, 100).await;
    let schedule = schedules[0];
    app.charge(1, 100).await;
    let sold = app.hold_ok(1, schedule, 1_001).await;
    assert_eq!(app.pay(1, sold, "p").await.status(), StatusCode::CREATED);
    app.hold_ok(2, schedule, 2_500).await;

    let first = seats(&app, schedule, "").await;
    assert_eq!(first["schedule_id"], schedule);
    assert_eq!(seat_numbers(&first), Some((1, 100, 100)));
    assert_eq!(first["next_after"], 100);

    let second = seats(&app, schedule, "?after=1000&limit=1000").await;
    assert_eq!(seat_numbers(&second), Some((1_001, 2_000, 1_000)));
    assert_eq!(second["seats"][0]["status"], "SOLD");
    assert_eq!(second["seats"][1]["status"], "AVAILABLE");
    assert_eq!(second["seats"][0]["price"], 100);
    assert_eq!(second["next_after"], 2_000);

    let last = seats(&app, schedule, "?after=2000&limit=1000").await;
    assert_eq!(seat_numbers(&last), Some((2_001, 2_500, 500)));
    assert_eq!(last["seats"][499]["status"], "HELD");
    assert!(last["next_after"].is_null());

    let beyond = seats(&app, schedule, "?after=2500").await;
    assert_eq!(seat_numbers(&beyond), None);
    assert!(beyond["next_after"].is_null());

    for bad in [
        "?limit=1001",
        "?limit=0",
        "?after=-1",
        "?after=99999999999",
        "?after=x",
    ] {
        let response = app
            .get(&format!("/schedules/{schedule}/seats{bad}"))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    }
    let unknown = app.get("/schedules/999999/seats").send().await.unwrap();
    assert_problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn responses_are_compressed_for_clients_that_accept_it(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1_000, 100).await;
    let path = format!("/schedules/{}/seats?limit=1000", schedules[0]);

    let plain = app.get(&path).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();

    let gzipped = app
        .get(&path)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), StatusCode::OK);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let gzipped = gzipped.bytes().await.unwrap();
    assert!(
        gzipped.len() * 10 < plain.len(),
        "{} bytes gzipped, {} plain",
        gzipped.len(),
        plain.len()
    );
}

/// A statement that runs past STATEMENT_TIMEOUT_MS ends, and its request gets a retryable 503,
/// however long the lock timeout: here the concerts table is locked and stays locked.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_statement_past_its_timeout_is_a_503(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn_with_limits(
        database,
        Settings {
            lock_timeout: Duration::from_secs(60),
            ..settings()
        },
        Limits {
            statement_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;
    let mut locker = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE concerts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), app.get("/concerts").send())
        .await
        .expect("answered before the lock is released")
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    locker.rollback().await.unwrap();
}

/// A client that sends its body too slowly gets 408 problem+json within REQUEST_TIMEOUT_MS,
/// and what it started changes nothing.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_client_too_slow_to_send_its_body_gets_408(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn_with_limits(
        database,
        settings(),
        Limits {
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;
    let before = app.fingerprint().await;
    let address = app.base.trim_start_matches("http://");
    let head = format!(
        "POST /points/charge HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: slow\r\nContent-Length: 100\r\n\r\n\
         {{\"amount\"",
        token(1)
    );
    // ... and the rest of the body never comes.
    let response = answer_to_a_stalled_body(address, &head).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    assert!(
        response.contains(r#""code":"REQUEST_TIMEOUT""#),
        "{response}"
    );
    assert_eq!(app.fingerprint().await, before);
}
