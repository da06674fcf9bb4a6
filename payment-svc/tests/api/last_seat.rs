//! Sell-out detection under concurrency: exactly one payment sees the last seat go.

use futures::future::join_all;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{settings, TestApp};

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
    let payments = app.payments().await;
    assert_eq!(payments, SEATS);
    let seats_sold_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT seat_no FROM reservations WHERE status = 'CONFIRMED'
                               GROUP BY schedule_id, seat_no HAVING count(*) > 1) twice",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(seats_sold_twice, 0);
    let (confirmed_count, confirmed_reservations, sold_out): (i64, i64, bool) = sqlx::query_as(
        "SELECT (SELECT sum(c.capacity - c.remaining) FROM schedule_seat_counters c
                 WHERE c.schedule_id = s.id),
                (SELECT count(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED'),
                s.sold_out_at IS NOT NULL
         FROM schedules s WHERE s.id = $1",
    )
    .bind(schedule)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(confirmed_count, confirmed_reservations);
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
    const ROUNDS: usize = 100;
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

/// What a schedule looks like after a race: seats paid, seats paid twice, events, and whether
/// it is stamped sold out.
async fn outcome(app: &TestApp, schedule: i64) -> (i64, i64, i64, bool) {
    let (paid, twice, sold_out): (i64, i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id
                 WHERE r.schedule_id = s.id),
                (SELECT count(*) FROM (SELECT 1 FROM reservations r
                                       WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED'
                                       GROUP BY r.seat_no HAVING count(*) > 1) twice),
                s.sold_out_at IS NOT NULL
         FROM schedules s WHERE s.id = $1",
    )
    .bind(schedule)
    .fetch_one(&app.db)
    .await
    .unwrap();
    (paid, twice, app.outbox_rows(schedule).await, sold_out)
}

/// Holds, then pays, the `(user, seat)` pairs of `buys` in `schedule`, all at once;
/// returns how many payments said they sold the schedule out.
async fn pay_at_once(app: &TestApp, schedule: i64, buys: &[(i64, i64)], round: usize) -> usize {
    let holds = join_all(
        buys.iter()
            .map(|&(user, seat)| async move { (user, app.hold_ok(user, schedule, seat).await) }),
    )
    .await;
    let paid = join_all(holds.iter().map(|&(user, reservation)| async move {
        let response = app
            .pay(user, reservation, &format!("{round}-{reservation}"))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()
    }))
    .await;
    paid.iter()
        .filter(|receipt| receipt["schedule_sold_out"] == true)
        .count()
}

/// A schedule of 128 seats counts them on 64 rows of 2, seat n's own row being (n - 1) % 64.
/// With seats 65 to 128 paid, 64 seats are left over the rows (one each when every payment
/// found its own row free; a payment whose row was locked counted on another); the 64 last
/// seats are then paid at once. The payments that empty a row look for seats left anywhere:
/// exactly one of them may find none.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_last_seats_of_different_counter_rows_paid_at_once_yield_exactly_one_event(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const ROUNDS: usize = 8;
    const SEATS: i64 = 128;
    const ROWS: i64 = 64;
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(ROUNDS, SEATS, 1).await;
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM schedule_seat_counters WHERE schedule_id = ANY($1)
         GROUP BY schedule_id",
    )
    .bind(&schedules)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(rows, vec![ROWS; ROUNDS], "the layout this test relies on");
    for user in 1..=ROWS {
        app.charge(user, 2 * ROUNDS as i64).await;
    }

    for (round, &schedule) in schedules.iter().enumerate() {
        let first: Vec<(i64, i64)> = (1..=ROWS).map(|user| (user, ROWS + user)).collect();
        assert_eq!(pay_at_once(&app, schedule, &first, round).await, 0);
        assert_eq!(outcome(&app, schedule).await, (ROWS, 0, 0, false));

        let last: Vec<(i64, i64)> = (1..=ROWS).map(|user| (user, user)).collect();
        let reported = pay_at_once(&app, schedule, &last, round).await;
        assert_eq!(
            reported, 1,
            "round {round}: exactly one payment reports the sell-out"
        );
        assert_eq!(
            outcome(&app, schedule).await,
            (SEATS, 0, 1, true),
            "round {round}: every seat paid once, one event, sold out"
        );
    }
}

/// A payment whose own counter row is locked by another payment in flight counts its seat on
/// a free row instead of waiting for that payment to commit; the counts still add up, and the
/// schedule sells out once, when its last seat is paid.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_payment_does_not_wait_for_a_counter_row_in_use(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    // A wait for the row would end in a lock timeout, a 503.
    let mut settings = settings();
    settings.lock_timeout = std::time::Duration::from_millis(200);
    let app = TestApp::spawn_with(database, settings).await;
    // Four seats, four rows of one seat each: seat n's own row is n - 1.
    let (_, schedules) = app.create_concert(1, 4, 1).await;
    let schedule = schedules[0];
    app.charge(1, 4).await;

    // A payment of another seat in flight, holding row 0.
    let mut in_flight = app.db.begin().await.unwrap();
    sqlx::query(
        "SELECT 1 FROM schedule_seat_counters WHERE schedule_id = $1 AND slot = 0
         FOR NO KEY UPDATE",
    )
    .bind(schedule)
    .execute(&mut *in_flight)
    .await
    .unwrap();
    let reservation = app.hold_ok(1, schedule, 1).await;
    let paid = app.pay(1, reservation, "seat-1").await;
    assert_eq!(paid.status(), StatusCode::CREATED);
    in_flight.rollback().await.unwrap();

    let remaining: Vec<i32> = sqlx::query_scalar(
        "SELECT remaining FROM schedule_seat_counters WHERE schedule_id = $1 ORDER BY slot",
    )
    .bind(schedule)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        remaining,
        vec![1, 0, 1, 1],
        "seat 1 counted on the first free row"
    );

    for seat in 2..=4 {
        let reservation = app.hold_ok(1, schedule, seat).await;
        let paid: Value = app
            .pay(1, reservation, &format!("seat-{seat}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(paid["schedule_sold_out"], seat == 4, "seat {seat}");
    }
    assert_eq!(outcome(&app, schedule).await, (4, 0, 1, true));
}

/// The rush as benchmarked: 500 buyers for 2,000 seats, in an order that empties the counter
/// rows at random moments, not all at the end.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn five_hundred_buyers_for_two_thousand_seats_make_one_event(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const SEATS: i64 = 2_000;
    const BUYERS: i64 = 500;
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, SEATS, 1).await;
    let schedule = schedules[0];
    for user in 1..=BUYERS {
        app.charge(user, SEATS).await;
    }
    let mut seats: Vec<i64> = (1..=SEATS).collect();
    seats.shuffle(&mut StdRng::seed_from_u64(14));
    let seats = std::sync::Mutex::new(seats);

    let buyers = (1..=BUYERS).map(|user| {
        let (app, seats) = (&app, &seats);
        async move {
            let mut reported = 0;
            loop {
                let Some(seat) = seats.lock().unwrap().pop() else {
                    return reported;
                };
                let reservation = app.hold_ok(user, schedule, seat).await;
                let paid = app.pay(user, reservation, &format!("seat-{seat}")).await;
                assert_eq!(paid.status(), StatusCode::CREATED);
                let paid: Value = paid.json().await.unwrap();
                reported += usize::from(paid["schedule_sold_out"] == true);
            }
        }
    });
    let reported: usize = join_all(buyers).await.into_iter().sum();

    assert_eq!(reported, 1, "exactly one payment reports the sell-out");
    assert_eq!(outcome(&app, schedule).await, (SEATS, 0, 1, true));
    let left: i64 = sqlx::query_scalar(
        "SELECT sum(remaining) FROM schedule_seat_counters WHERE schedule_id = $1",
    )
    .bind(schedule)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(left, 0);
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

/// Only the payment of a schedule's last seat stamps sold_out_at: a schedule inserted with it
/// already set (sold out with every seat unsold, never to be counted) is refused.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_schedule_is_not_created_sold_out(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (concert_id, _) = app.create_concert(1, 1, 100).await;
    let refused = sqlx::query(
        "INSERT INTO schedules (concert_id, starts_at, sale_starts_at, seat_count, price,
                                sold_out_at)
         VALUES ($1, now() + interval '1 day', now() - interval '1 day', 3, 10, now())",
    )
    .bind(concert_id)
    .execute(&app.db)
    .await
    .unwrap_err();
    assert_eq!(
        refused.as_database_error().and_then(|e| e.constraint()),
        Some("schedules_sold_out_when_full")
    );
    let schedules: i64 = sqlx::query_scalar("SELECT count(*) FROM schedules")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(schedules, 1);
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

    // A payment of this schedule is in flight, with the schedule's row locked (as the payment
    // that empties a counter row locks it), when the next payment's transaction begins; it
    // commits while the next one waits for the row. Each of the two seats has a counter row of
    // its own, so each payment empties one and locks the schedule's row.
    let mut in_flight = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM schedules WHERE id = $1 FOR NO KEY UPDATE")
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
