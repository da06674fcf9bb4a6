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

    // Two seats: the second payment sells the schedule out, so its transaction also writes the
    // ConcertSoldOut event.
    let (_, schedules) = app.create_concert(1, 2, 100).await;
    assert_eq!(app.charge(1, 200).await.status(), StatusCode::OK);
    for seat in 1..=2 {
        let reservation = app.hold_ok(1, schedules[0], seat).await;
        let paid = app.pay(1, reservation, &format!("pay {seat}")).await;
        assert_eq!(paid.status(), StatusCode::CREATED);
    }
    assert_eq!(app.outbox_rows(schedules[0]).await, 1);

    let modes: Vec<(String, String)> =
        sqlx::query_as("SELECT written, synchronous_commit FROM commit_modes ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let expected = [
        ("reservations", "off"),
        ("payments", "on"),
        ("reservations", "off"),
        ("payments", "on"),
    ];
    assert_eq!(
        modes,
        expected.map(|(written, mode)| (written.to_owned(), mode.to_owned()))
    );
}
