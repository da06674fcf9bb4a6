//! An expired hold can never be paid, and frees its seat.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{assert_problem, eventually, settings, TestApp};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn paying_after_the_hold_expired_is_refused_and_frees_the_seat(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut settings = settings();
    settings.hold_ttl = Duration::from_secs(1);
    let app = TestApp::spawn_with(database, settings).await;
    let (_, schedules) = app.create_concert(1, 1, 100).await;
    let schedule = schedules[0];
    app.charge(1, 100).await;
    let reservation = app.hold_ok(1, schedule, 1).await;

    // Wait until the database clock, which times holds, has passed held_until.
    eventually(Duration::from_secs(10), async || {
        sqlx::query_scalar::<_, bool>("SELECT held_until < now() FROM reservations WHERE id = $1")
            .bind(reservation)
            .fetch_one(&app.db)
            .await
            .unwrap()
    })
    .await;

    let before = app.fingerprint().await;
    assert_problem(
        app.pay(1, reservation, "late").await,
        StatusCode::CONFLICT,
        "RESERVATION_EXPIRED",
    )
    .await;
    assert_eq!(app.fingerprint().await, before);
    assert_eq!(app.balance(1).await, 100);

    let seats: Value = app
        .get(&format!("/schedules/{schedule}/seats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seats["seats"][0]["status"], "AVAILABLE");
    let shown = app.reservation(1, reservation).await;
    assert_eq!(shown["status"], "EXPIRED");

    // Someone else can hold the freed seat, and the old hold stays unpayable.
    let other = app.hold_ok(2, schedule, 1).await;
    assert_ne!(other, reservation);
    assert_problem(
        app.pay(1, reservation, "later").await,
        StatusCode::CONFLICT,
        "RESERVATION_EXPIRED",
    )
    .await;
}

/// Whether some payment-svc session of this test's database is waiting for a lock.
async fn a_request_waits_for_a_lock(app: &TestApp) -> bool {
    sqlx::query_scalar(
        "SELECT count(*) > 0 FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'payment-svc'
           AND wait_event_type = 'Lock'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Makes the hold expire `seconds` from now by the database clock.
async fn expire_in(app: &TestApp, reservation: uuid::Uuid, seconds: f64) {
    sqlx::query(
        "UPDATE reservations SET held_until = clock_timestamp() + make_interval(secs => $2)
         WHERE id = $1",
    )
    .bind(reservation)
    .bind(seconds)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn until_expired(app: &TestApp, reservation: uuid::Uuid) {
    eventually(Duration::from_secs(10), async || {
        sqlx::query_scalar::<_, bool>(
            "SELECT held_until < clock_timestamp() FROM reservations WHERE id = $1",
        )
        .bind(reservation)
        .fetch_one(&app.db)
        .await
        .unwrap()
    })
    .await;
}

/// A payment that waited for the reservation's row lock while the hold expired is refused:
/// the hold is judged at the moment of payment, not when the payment's transaction began. The
/// lock's holder rolls back without changing the row, so Postgres does not re-check the row.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_hold_that_expires_while_its_payment_waits_for_the_row_lock_is_refused(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 100).await;
    app.charge(1, 100).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;
    expire_in(&app, reservation, 1.0).await;

    // Another transaction holds the row, as a competing payment of the same hold would.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM reservations WHERE id = $1 FOR UPDATE")
        .bind(reservation)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (paid, ()) = futures::join!(app.pay(1, reservation, "waits"), async {
        eventually(Duration::from_secs(10), async || {
            a_request_waits_for_a_lock(&app).await
        })
        .await;
        until_expired(&app, reservation).await;
        blocker.rollback().await.unwrap();
    });
    assert_problem(paid, StatusCode::CONFLICT, "RESERVATION_EXPIRED").await;
    assert_eq!(app.balance(1).await, 100);
}

/// The same when the wait was for the payment's Idempotency-Key, held by a first attempt that
/// then failed.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_hold_that_expires_while_its_payment_waits_for_its_key_is_refused(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 100).await;
    app.charge(1, 100).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;
    expire_in(&app, reservation, 1.0).await;

    let mut first_attempt = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, endpoint, key, request_hash)
         VALUES (1, 'POST /payments', 'waits', '\\x00')",
    )
    .execute(&mut *first_attempt)
    .await
    .unwrap();
    let (paid, ()) = futures::join!(app.pay(1, reservation, "waits"), async {
        eventually(Duration::from_secs(10), async || {
            a_request_waits_for_a_lock(&app).await
        })
        .await;
        until_expired(&app, reservation).await;
        first_attempt.rollback().await.unwrap();
    });
    assert_problem(paid, StatusCode::CONFLICT, "RESERVATION_EXPIRED").await;
    assert_eq!(app.balance(1).await, 100);
}

/// A payment's `created_at` is when it was made, not when its transaction began waiting.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_payment_records_when_it_was_made(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 100).await;
    app.charge(1, 100).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;

    let mut first_attempt = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, endpoint, key, request_hash)
         VALUES (1, 'POST /payments', 'waits', '\\x00')",
    )
    .execute(&mut *first_attempt)
    .await
    .unwrap();
    let (paid, released_at) = futures::join!(app.pay(1, reservation, "waits"), async {
        eventually(Duration::from_secs(10), async || {
            a_request_waits_for_a_lock(&app).await
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await; // a wait long enough to see
        let released_at: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(&mut *first_attempt)
                .await
                .unwrap();
        first_attempt.rollback().await.unwrap();
        released_at
    });
    assert_eq!(paid.status(), StatusCode::CREATED);
    let created_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM payments WHERE reservation_id = $1")
            .bind(reservation)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(
        created_at >= released_at,
        "paid at {created_at}, but the key was released at {released_at}"
    );
}
