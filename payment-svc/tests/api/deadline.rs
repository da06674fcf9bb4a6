//! REQUEST_TIMEOUT_MS bounds receiving a request; a statement once sent is answered with its
//! outcome, so a client is never told 408 about a payment that was made (SPEC §3).

use std::time::Duration;

use reqwest::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use payment_svc::startup::Limits;

use crate::helpers::{answer_to_a_stalled_body, settings, token, TestApp};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);

async fn spawn(database: PgConnectOptions) -> TestApp {
    let limits = Limits {
        request_timeout: REQUEST_TIMEOUT,
        ..Limits::default()
    };
    TestApp::spawn_with_limits(database, settings(), limits).await
}

/// A hold of user 1's, with the points to pay for it.
async fn payable_hold(app: &TestApp) -> uuid::Uuid {
    let (_, schedules) = app.create_concert(1, 1, 1_000).await;
    assert_eq!(app.charge(1, 1_000).await.status(), StatusCode::OK);
    app.hold_ok(1, schedules[0], 1).await
}

/// The pay statement waits on a row lock until after the request deadline; when it commits,
/// the client is told 201, not 408.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_payment_still_running_at_the_deadline_is_answered_with_its_outcome(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = spawn(database).await;
    let hold = payable_hold(&app).await;
    let mut locker = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM reservations WHERE id = $1 FOR UPDATE")
        .bind(hold)
        .execute(&mut *locker)
        .await
        .unwrap();

    let pay = tokio::spawn({
        let request = app
            .post("/payments")
            .bearer_auth(token(1))
            .header("Idempotency-Key", "late")
            .json(&serde_json::json!({ "reservation_id": hold }));
        async move { request.send().await.unwrap() }
    });
    // Once the statement waits on the lock, let the deadline pass, then let it commit.
    let waiting = "SELECT count(*) FROM pg_stat_activity
                   WHERE wait_event_type = 'Lock' AND query LIKE '%booking_pay_request%'";
    while sqlx::query_scalar::<_, i64>(waiting)
        .fetch_one(&app.db)
        .await
        .unwrap()
        == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
    locker.rollback().await.unwrap();

    let response = pay.await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(app.payments().await, 1);
}

/// A payment whose body does not arrive in time is 408, and nothing is paid; one sent
/// promptly on the same service succeeds.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_payment_body_sent_too_slowly_is_408_and_pays_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = spawn(database).await;
    let hold = payable_hold(&app).await;
    let body = serde_json::json!({ "reservation_id": hold }).to_string();
    let address = app.base.trim_start_matches("http://");
    let head = format!(
        "POST /payments HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: slow\r\nContent-Length: {}\r\n\r\n\
         {}",
        token(1),
        body.len(),
        &body[..10],
    );
    // ... and the rest of the body never comes.
    let response = answer_to_a_stalled_body(address, &head).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert_eq!(app.payments().await, 0);

    assert_eq!(
        app.pay(1, hold, "prompt").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.payments().await, 1);
}
