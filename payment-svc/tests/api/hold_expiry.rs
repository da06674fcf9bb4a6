//! An expired hold can never be paid, and frees its seat.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{assert_problem, eventually, settings, token, TestApp};

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
    let shown: Value = app
        .get(&format!("/reservations/{reservation}"))
        .bearer_auth(token(1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
