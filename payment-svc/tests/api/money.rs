//! Money is conserved: whatever mix of charges, holds, payments and retries runs concurrently,
//! for every user the charges equal the balance plus the payments.

use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::TestApp;

const USERS: i64 = 8;
const OPERATIONS_PER_USER: usize = 40;

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn charges_equal_balance_plus_payments_after_a_random_workload(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, cheap) = app.create_concert(2, 6, 300).await;
    let (_, dear) = app.create_concert(2, 6, 1_700).await;
    let schedules: Vec<i64> = cheap.into_iter().chain(dear).collect();

    let users = (1..=USERS).map(|user| {
        let (app, schedules) = (&app, &schedules);
        async move {
            let mut rng = StdRng::seed_from_u64(user as u64);
            let mut holds: Vec<Uuid> = Vec::new();
            let mut keys: Vec<(Uuid, String)> = Vec::new();
            for _ in 0..OPERATIONS_PER_USER {
                let status = match rng.gen_range(0..10) {
                    0..=2 => app.charge(user, rng.gen_range(1..=1_500)).await.status(),
                    3..=5 => {
                        let schedule = schedules[rng.gen_range(0..schedules.len())];
                        let response = app.hold(user, schedule, rng.gen_range(1..=6)).await;
                        let status = response.status();
                        if status == StatusCode::CREATED {
                            let body: Value = response.json().await.unwrap();
                            holds.push(body["reservation_id"].as_str().unwrap().parse().unwrap());
                        }
                        status
                    }
                    6..=8 if !holds.is_empty() => {
                        // A fresh key, or a retry of an earlier payment with its own key.
                        let (reservation, key) = if rng.gen_bool(0.3) && !keys.is_empty() {
                            keys[rng.gen_range(0..keys.len())].clone()
                        } else {
                            (
                                holds[rng.gen_range(0..holds.len())],
                                Uuid::new_v4().to_string(),
                            )
                        };
                        keys.push((reservation, key.clone()));
                        app.pay(user, reservation, &key).await.status()
                    }
                    _ => app
                        .get("/points")
                        .bearer_auth(crate::helpers::token(user))
                        .send()
                        .await
                        .unwrap()
                        .status(),
                };
                assert!(
                    !status.is_server_error(),
                    "no request may fail with {status}"
                );
            }
        }
    });
    join_all(users).await;

    let ledger: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT u.user_id,
                COALESCE((SELECT sum(amount) FROM point_charges c WHERE c.user_id = u.user_id), 0)::bigint,
                COALESCE((SELECT balance FROM point_balances b WHERE b.user_id = u.user_id), 0),
                COALESCE((SELECT sum(amount) FROM payments p WHERE p.user_id = u.user_id), 0)::bigint
         FROM (SELECT user_id FROM point_charges UNION SELECT user_id FROM payments) u",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(ledger.len() as i64, USERS);
    for (user, charges, balance, payments) in &ledger {
        assert_eq!(
            *charges,
            balance + payments,
            "user {user}: charges = balance + payments"
        );
    }
    let total_payments: i64 = ledger.iter().map(|row| row.3).sum();
    assert!(total_payments > 0, "the workload paid for something");

    // Every payment paid its reservation's price, and only confirmed reservations were paid.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id
         WHERE p.amount <> r.price OR r.status <> 'CONFIRMED' OR p.user_id <> r.user_id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    let counters_agree: bool = sqlx::query_scalar(
        "SELECT bool_and((SELECT sum(c.capacity - c.remaining) FROM schedule_seat_counters c
                          WHERE c.schedule_id = s.id)
                         = (SELECT count(*) FROM reservations r
                            WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED'))
         FROM schedules s",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(counters_agree);
}

/// The payment function refuses without writing anything, so even a caller that commits after
/// a refusal (a psql session, a job) leaves the hold unpaid and the money where it was.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_refused_payment_writes_nothing_even_if_its_transaction_commits(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 2, 500).await;
    let reservation = app.hold_ok(7, schedules[0], 1).await;
    app.charge(7, 499).await;

    // Autocommit: the function's own writes would stay.
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM booking_confirm_payment(7, $1, gen_random_uuid())")
            .bind(reservation)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(outcome, "INSUFFICIENT_BALANCE");
    let status: String = sqlx::query_scalar("SELECT status FROM reservations WHERE id = $1")
        .bind(reservation)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "HELD");
    let payments = app.payments().await;
    assert_eq!((payments, app.balance(7).await), (0, 499));

    // A seat whose counter row is missing is refused, not sold uncounted.
    app.charge(7, 1).await;
    sqlx::query("DELETE FROM schedule_seat_counters WHERE schedule_id = $1")
        .bind(schedules[0])
        .execute(&app.db)
        .await
        .unwrap();
    let uncounted = sqlx::query("SELECT booking_confirm_payment(7, $1, gen_random_uuid())")
        .bind(reservation)
        .execute(&app.db)
        .await
        .unwrap_err();
    assert!(
        uncounted.to_string().contains("no seat counter row"),
        "{uncounted}"
    );
    assert_eq!(app.balance(7).await, 500);
}
