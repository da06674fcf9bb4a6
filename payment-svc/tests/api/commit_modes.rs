//! Which commits wait for their WAL flush: a hold's does not, a payment's does
//! (migrations/20261126150000_holds_commit_without_waiting_for_wal.sql says why that is safe).

use reqwest::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{settings, TestApp};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_hold_commits_without_waiting_for_the_wal_and_a_payment_waits(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    // One connection: each payment runs on the connection its hold ran on just before, so a
    // hold's setting that outlived its transaction would show in the payment.
    let mut one_connection = settings();
    one_connection.max_connections = 1;
    let app = TestApp::spawn_with(database, one_connection).await;

    // Postgres commits in the mode synchronous_commit names when the commit begins. A deferred
    // constraint trigger runs right then, inside the committing transaction, and writes that
    // setting down for each reservation and payment inserted.
    for statement in [
        "CREATE TABLE commit_modes (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             written text NOT NULL,
             synchronous_commit text NOT NULL)",
        "CREATE FUNCTION commit_mode_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO commit_modes (written, synchronous_commit)
             VALUES (TG_TABLE_NAME, current_setting('synchronous_commit'));
             RETURN NULL;
         END
         $$",
        "CREATE CONSTRAINT TRIGGER reservations_commit_mode AFTER INSERT ON reservations
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_mode_recorded()",
        "CREATE CONSTRAINT TRIGGER payments_commit_mode AFTER INSERT ON payments
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_mode_recorded()",
    ] {
        sqlx::query(statement).execute(&app.db).await.unwrap();
    }

    // Three seats: two held and paid over HTTP, then the last held and paid in one explicit
    // transaction (which payment-svc never runs, but a caller of the functions could): that
    // payment sells the schedule out, so its transaction also writes the ConcertSoldOut event.
    let (_, schedules) = app.create_concert(1, 3, 100).await;
    assert_eq!(app.charge(1, 300).await.status(), StatusCode::OK);
    for seat in 1..=2 {
        let reservation = app.hold_ok(1, schedules[0], seat).await;
        let paid = app.pay(1, reservation, &format!("pay-{seat}")).await;
        assert_eq!(paid.status(), StatusCode::CREATED);
    }
    let mut transaction = app.db.begin().await.unwrap();
    let reservation = uuid::Uuid::new_v4();
    let (held,): (String,) =
        sqlx::query_as("SELECT outcome FROM booking_hold_request(1, $1, 3, $2, 60, 10)")
            .bind(schedules[0])
            .bind(reservation)
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
    assert_eq!(held, "CREATED");
    let (paid, sold_out): (String, bool) = sqlx::query_as(
        "SELECT outcome, sold_out
         FROM booking_pay_request(1, $1, $2, $3, 'test', 'in-one-transaction', '\\x00')",
    )
    .bind(reservation)
    .bind(uuid::Uuid::new_v4())
    .bind(uuid::Uuid::new_v4())
    .fetch_one(&mut *transaction)
    .await
    .unwrap();
    assert_eq!((paid.as_str(), sold_out), ("PAID", true));
    transaction.commit().await.unwrap();
    assert_eq!(app.outbox_rows(schedules[0]).await, 1);

    // A payment commits as the session is configured (`on` unless the server says otherwise).
    let (configured,): (String,) = sqlx::query_as("SHOW synchronous_commit")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let modes: Vec<(String, String)> =
        sqlx::query_as("SELECT written, synchronous_commit FROM commit_modes ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let off = "off".to_owned();
    let expected = [
        ("reservations", &off),
        ("payments", &configured),
        ("reservations", &off),
        ("payments", &configured),
        // One transaction, one commit: in the payment's mode.
        ("reservations", &configured),
        ("payments", &configured),
    ];
    assert_eq!(
        modes,
        expected.map(|(written, mode)| (written.to_owned(), mode.clone()))
    );
}
