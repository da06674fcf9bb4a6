//! Sell-out detection under concurrency: exactly one payment sees the last seat go.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::TestApp;

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn two_hundred_buyers_for_fifty_seats_make_fifty_payments_and_one_event(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const SEATS: i64 = 50;
    const BUYERS: i64 = 200;
    const PRICE: i64 = 1_000;
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, SEATS, PRICE).await;
    let schedule = schedules[0];
    for user in 1..=BUYERS {
        assert_eq!(app.charge(user, PRICE).await.status(), StatusCode::OK);
    }

    // Each buyer walks the seats from its own starting point, holds the first free one and pays.
    let buyers = (1..=BUYERS).map(|user| {
        let app = &app;
        async move {
            for offset in 0..SEATS {
                let seat = (user + offset) % SEATS + 1;
                let response = app.hold(user, schedule, seat).await;
                match response.status() {
                    StatusCode::CREATED => {
                        let hold: Value = response.json().await.unwrap();
                        let id = hold["reservation_id"].as_str().unwrap().parse().unwrap();
                        let paid = app.pay(user, id, &format!("pay-{user}")).await;
                        assert_eq!(paid.status(), StatusCode::CREATED);
                        return true;
                    }
                    StatusCode::CONFLICT => continue,
                    other => panic!("unexpected hold status {other}"),
                }
            }
            false
        }
    });
    let bought = join_all(buyers).await.into_iter().filter(|b| *b).count();

    assert_eq!(bought as i64, SEATS);
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(payments, SEATS);
    let seats_sold_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT seat_no FROM reservations WHERE status = 'CONFIRMED'
                               GROUP BY schedule_id, seat_no HAVING count(*) > 1) twice",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(seats_sold_twice, 0);
    let (confirmed_count, confirmed_reservations, sold_out): (i32, i64, bool) = sqlx::query_as(
        "SELECT s.confirmed_count,
                (SELECT count(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED'),
                s.sold_out_at IS NOT NULL
         FROM schedules s WHERE s.id = $1",
    )
    .bind(schedule)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(i64::from(confirmed_count), confirmed_reservations);
    assert_eq!(confirmed_reservations, SEATS);
    assert!(sold_out);
    assert_eq!(app.outbox_rows(schedule).await, 1);
    // Every buyer either paid once or kept its points.
    let spent: i64 = sqlx::query_scalar("SELECT count(*) FROM point_balances WHERE balance = 0")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(spent, SEATS);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_last_two_seats_paid_at_the_same_moment_yield_exactly_one_event(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const ROUNDS: usize = 50;
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(ROUNDS, 2, 100).await;
    let (alice, bob) = (1, 2);
    app.charge(alice, 100 * ROUNDS as i64).await;
    app.charge(bob, 100 * ROUNDS as i64).await;

    for (round, &schedule) in schedules.iter().enumerate() {
        let first = app.hold_ok(alice, schedule, 1).await;
        let second = app.hold_ok(bob, schedule, 2).await;
        // Both requests are in flight together, so their transactions overlap.
        let (key_a, key_b) = (format!("a-{round}"), format!("b-{round}"));
        let (a, b) = tokio::join!(app.pay(alice, first, &key_a), app.pay(bob, second, &key_b));
        assert_eq!(
            (a.status(), b.status()),
            (StatusCode::CREATED, StatusCode::CREATED)
        );
        let a: Value = a.json().await.unwrap();
        let b: Value = b.json().await.unwrap();
        let reported = [&a, &b]
            .iter()
            .filter(|r| r["schedule_sold_out"] == true)
            .count();
        assert_eq!(
            reported, 1,
            "round {round}: exactly one payment reports the sell-out"
        );
        assert_eq!(
            app.outbox_rows(schedule).await,
            1,
            "round {round}: exactly one event"
        );
    }
    let unsold: i64 =
        sqlx::query_scalar("SELECT count(*) FROM schedules WHERE sold_out_at IS NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(unsold, 0);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_second_sold_out_event_for_a_schedule_is_refused_by_the_database(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    // The unique index is the backstop should detection ever fire twice.
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 100).await;
    let insert = "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
                  VALUES (gen_random_uuid(), 'ConcertSoldOut', 1, $1, '{}')";
    sqlx::query(insert)
        .bind(schedules[0])
        .execute(&app.db)
        .await
        .unwrap();
    let second = sqlx::query(insert)
        .bind(schedules[0])
        .execute(&app.db)
        .await
        .unwrap_err();
    assert_eq!(
        second.as_database_error().and_then(|e| e.constraint()),
        Some("outbox_one_sold_out_per_schedule")
    );
}

/// The design relies on READ COMMITTED (a payment waiting for the schedule's row then sees the
/// count the previous payment left). A server whose default is REPEATABLE READ must not turn
/// that wait into a serialization failure, a 500.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_repeatable_read_default_does_not_fail_the_last_seat_race(
    pool: PgPoolOptions,
    database: PgConnectOptions,
) {
    let admin = pool.connect_with(database.clone()).await.unwrap();
    sqlx::query(
        "DO $$ BEGIN EXECUTE format(
             'ALTER DATABASE %I SET default_transaction_isolation = ''repeatable read''',
             current_database()); END $$",
    )
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;

    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 2, 100).await;
    let schedule = schedules[0];
    app.charge(1, 100).await;
    app.charge(2, 100).await;
    let first = app.hold_ok(1, schedule, 1).await;
    let last = app.hold_ok(2, schedule, 2).await;

    // A payment of this schedule is in flight, with the schedule's row updated, when the next
    // payment's transaction begins; it commits while the next one waits for the row.
    let mut in_flight = app.db.begin().await.unwrap();
    sqlx::query("UPDATE schedules SET confirmed_count = confirmed_count WHERE id = $1")
        .bind(schedule)
        .execute(&mut *in_flight)
        .await
        .unwrap();
    let (paid, ()) = futures::join!(app.pay(1, first, "first"), async {
        crate::helpers::eventually(std::time::Duration::from_secs(10), async || {
            sqlx::query_scalar(
                "SELECT count(*) > 0 FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'payment-svc'
                   AND wait_event_type = 'Lock'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
        })
        .await;
        in_flight.commit().await.unwrap();
    });
    assert_eq!(paid.status(), StatusCode::CREATED);
    let paid: Value = app.pay(2, last, "last").await.json().await.unwrap();
    assert_eq!(paid["schedule_sold_out"], true, "{paid}");
    assert_eq!(app.outbox_rows(schedule).await, 1);
}
