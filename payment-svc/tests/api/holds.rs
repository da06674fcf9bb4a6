//! Holds from the holder's side: retrying a hold, listing and releasing mine, the cap on live
//! holds per user, and looking a payment up.

use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{assert_problem, eventually, token, TestApp};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn holding_a_seat_i_already_hold_returns_my_hold(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 2, 100).await;
    let first = app.hold(1, schedules[0], 1).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();

    // The client lost the response and retries: it gets its hold back, and nothing changes.
    let before = app.fingerprint().await;
    let again = app.hold(1, schedules[0], 1).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.fingerprint().await, before);

    // Anyone else still finds the seat taken; once paid, so do I.
    assert_problem(
        app.hold(2, schedules[0], 1).await,
        StatusCode::CONFLICT,
        "SEAT_UNAVAILABLE",
    )
    .await;
    app.charge(1, 100).await;
    let reservation: Uuid = first["reservation_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        app.pay(1, reservation, "p").await.status(),
        StatusCode::CREATED
    );
    assert_problem(
        app.hold(1, schedules[0], 1).await,
        StatusCode::CONFLICT,
        "SEAT_UNAVAILABLE",
    )
    .await;
}

async fn list(app: &TestApp, user: i64, query: &str) -> Value {
    let response = app
        .get(&format!("/reservations{query}"))
        .bearer_auth(token(user))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<Uuid> {
    page["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reservation_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn my_reservations_are_listed_newest_first_in_pages(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 5, 100).await;
    app.charge(1, 100).await;
    let oldest = app.hold_ok(1, schedules[0], 1).await;
    assert_eq!(app.pay(1, oldest, "p").await.status(), StatusCode::CREATED);
    let middle = app.hold_ok(1, schedules[0], 2).await;
    let _others = app.hold_ok(2, schedules[0], 3).await;
    let newest = app.hold_ok(1, schedules[0], 4).await;

    let first = list(&app, 1, "?limit=2").await;
    assert_eq!(ids(&first), vec![newest, middle]);
    assert_eq!(first["reservations"][0]["status"], "HELD");
    let after = first["next_after"].as_str().unwrap();
    let second = list(&app, 1, &format!("?limit=2&after={after}")).await;
    assert_eq!(ids(&second), vec![oldest]);
    assert_eq!(second["reservations"][0]["status"], "CONFIRMED");
    assert!(second["next_after"].is_null());
    assert_eq!(ids(&list(&app, 1, "").await), vec![newest, middle, oldest]);

    for bad in ["?limit=0", "?limit=101", "?after=nope", "?sort=asc"] {
        let response = app
            .get(&format!("/reservations{bad}"))
            .bearer_auth(token(1))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    }
    let anonymous = app.get("/reservations").send().await.unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn releasing_my_hold_frees_the_seat_at_once(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 2, 100).await;
    app.charge(1, 1_000).await;
    let held = app.hold_ok(1, schedules[0], 1).await;
    let paid = app.hold_ok(1, schedules[0], 2).await;
    assert_eq!(app.pay(1, paid, "p").await.status(), StatusCode::CREATED);
    let delete = |user: i64, id: Uuid| {
        app.client
            .delete(format!("{}/reservations/{id}", app.base))
            .bearer_auth(token(user))
            .send()
    };

    // Not mine, unknown, confirmed: refused, and nothing changes.
    let before = app.fingerprint().await;
    assert_problem(
        delete(2, held).await.unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        delete(1, Uuid::new_v4()).await.unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        delete(1, paid).await.unwrap(),
        StatusCode::CONFLICT,
        "RESERVATION_NOT_HELD",
    )
    .await;
    assert_eq!(app.fingerprint().await, before);

    let released = delete(1, held).await.unwrap();
    assert_eq!(released.status(), StatusCode::NO_CONTENT);
    assert_eq!(released.text().await.unwrap(), "");
    // Releasing again is a no-op; the hold cannot be paid; the seat is someone else's to hold.
    assert_eq!(
        delete(1, held).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.pay(1, held, "late").await,
        StatusCode::CONFLICT,
        "RESERVATION_EXPIRED",
    )
    .await;
    let shown = app.reservation(1, held).await;
    assert_eq!(shown["status"], "EXPIRED");
    app.hold_ok(2, schedules[0], 1).await;
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_payment_can_be_looked_up_by_its_payer(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 700).await;
    app.charge(1, 1_000).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;
    let receipt: Value = app.pay(1, reservation, "p").await.json().await.unwrap();
    let payment = receipt["payment_id"].as_str().unwrap();

    let shown = app
        .get(&format!("/payments/{payment}"))
        .bearer_auth(token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    let shown: Value = shown.json().await.unwrap();
    assert_eq!(shown["payment_id"], payment);
    assert_eq!(shown["reservation_id"], reservation.to_string());
    assert_eq!(shown["schedule_id"], schedules[0]);
    assert_eq!(shown["seat_no"], 1);
    assert_eq!(shown["amount"], 700);
    assert!(shown["created_at"].is_string());

    for (user, path, status, code) in [
        (
            2,
            format!("/payments/{payment}"),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            1,
            format!("/payments/{}", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            1,
            "/payments/nope".to_owned(),
            StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
    ] {
        let response = app
            .get(&path)
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap();
        assert_problem(response, status, code).await;
    }
}

/// At most MAX_HOLDS_PER_USER (4) live holds per user, even when they are requested all at
/// once: a user's holds are serialised, so counting then inserting cannot let extras through.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn live_holds_per_user_are_capped_even_when_requested_at_once(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 20, 100).await;
    let schedule = schedules[0];
    let responses = join_all((1..=10).map(|seat| app.hold(1, schedule, seat))).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => {
                let body: Value = response.json().await.unwrap();
                held.push(
                    body["reservation_id"]
                        .as_str()
                        .unwrap()
                        .parse::<Uuid>()
                        .unwrap(),
                );
            }
            _ => {
                assert_problem(response, StatusCode::CONFLICT, "TOO_MANY_HOLDS").await;
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (4, 6));

    // Another user is not affected; a paid hold and a released one no longer count.
    app.hold_ok(2, schedule, 11).await;
    app.charge(1, 100).await;
    assert_eq!(app.pay(1, held[0], "p").await.status(), StatusCode::CREATED);
    app.hold_ok(1, schedule, 12).await;
    let released = app
        .client
        .delete(format!("{}/reservations/{}", app.base, held[1]))
        .bearer_auth(token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), StatusCode::NO_CONTENT);
    app.hold_ok(1, schedule, 13).await;
    let before = app.fingerprint().await;
    assert_problem(
        app.hold(1, schedule, 14).await,
        StatusCode::CONFLICT,
        "TOO_MANY_HOLDS",
    )
    .await;
    assert_eq!(app.fingerprint().await, before);
}

/// A hold that waited for its user's lock is judged by the database clock after the wait, not
/// at its transaction's start: a sale that opened while it waited is open to it.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_hold_that_waited_across_the_opening_finds_the_sale_open(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    // Far enough ahead that the hold is surely waiting before it, on a busy machine too.
    let opens = Utc::now() + chrono::Duration::seconds(4);
    let (_, schedules) = app
        .create_concert_at(1, 1, 100, opens, opens + chrono::Duration::days(1))
        .await;
    // Another hold of user 7 in flight: it holds the user's lock, as booking_hold takes it.
    let mut other_hold = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('holds of user ' || 7, 0))")
        .execute(&mut *other_hold)
        .await
        .unwrap();

    let (held, ()) = tokio::join!(app.hold(7, schedules[0], 1), async {
        // The hold is waiting for the lock before the sale opens...
        eventually(Duration::from_secs(5), async || {
            sqlx::query_scalar(
                "SELECT count(*) = 1 FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event = 'advisory'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
        })
        .await;
        let early: bool = sqlx::query_scalar("SELECT clock_timestamp() < $1")
            .bind(opens)
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert!(
            early,
            "the hold should have been waiting before the sale opened"
        );
        // ...and gets the lock after it opened.
        eventually(Duration::from_secs(10), async || {
            sqlx::query_scalar("SELECT clock_timestamp() > $1")
                .bind(opens)
                .fetch_one(&app.db)
                .await
                .unwrap()
        })
        .await;
        other_hold.commit().await.unwrap();
    });
    assert_eq!(held.status(), StatusCode::CREATED);
}
