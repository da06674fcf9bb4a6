//! A failing payment of the last seat leaves no trace: no event, no sell-out, no deduction.

use reqwest::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{assert_problem, TestApp};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn an_unaffordable_last_seat_rolls_everything_back(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 2, 1_000).await;
    let schedule = schedules[0];
    app.charge(1, 1_000).await;
    let first = app.hold_ok(1, schedule, 1).await;
    assert_eq!(
        app.pay(1, first, "first").await.status(),
        StatusCode::CREATED
    );

    // The buyer of the last seat can afford only part of it.
    app.charge(2, 999).await;
    let last = app.hold_ok(2, schedule, 2).await;
    let before = app.fingerprint().await;
    assert_problem(
        app.pay(2, last, "last").await,
        StatusCode::PAYMENT_REQUIRED,
        "INSUFFICIENT_BALANCE",
    )
    .await;

    assert_eq!(
        app.fingerprint().await,
        before,
        "a failed payment changes nothing"
    );
    assert_eq!(app.outbox_rows(schedule).await, 0);
    let (sold_out, confirmed): (bool, i64) = sqlx::query_as(
        "SELECT s.sold_out_at IS NOT NULL,
                (SELECT sum(c.capacity - c.remaining) FROM schedule_seat_counters c
                 WHERE c.schedule_id = s.id)
         FROM schedules s WHERE s.id = $1",
    )
    .bind(schedule)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((sold_out, confirmed), (false, 1));
    assert_eq!(app.balance(2).await, 999);

    // The failure stored nothing under the key: after topping up, the same key pays.
    app.charge(2, 1).await;
    let retried = app.pay(2, last, "last").await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.outbox_rows(schedule).await, 1);
    assert_eq!(app.balance(2).await, 0);
}
