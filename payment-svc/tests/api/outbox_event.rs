//! The ConcertSoldOut row: its payload matches SPEC §4 exactly, and it wakes the relay at commit.

use chrono::{Duration, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;

use crate::helpers::TestApp;

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_sold_out_payload_matches_the_contract(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (concert_id, schedules) = app.create_concert(1, 1, 500).await;
    let schedule = schedules[0];
    app.charge(7, 500).await;
    // The SQL spells the channel out ('outbox_ready'); listening on the relay's constant makes
    // this test fail if the two drift apart.
    let mut listener = PgListener::connect_with(&app.db).await.unwrap();
    listener
        .listen(shared::outbox::NOTIFY_CHANNEL)
        .await
        .unwrap();

    let reservation = app.hold_ok(7, schedule, 1).await;
    let response = app.pay(7, reservation, "k").await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let (event_id, event_type, event_version, aggregate_id, payload, written_by_payment): (
        uuid::Uuid,
        String,
        i32,
        i64,
        Value,
        bool,
    ) = sqlx::query_as(
        "SELECT o.event_id, o.event_type, o.event_version, o.aggregate_id, o.payload,
                o.tx_id = p.xmin::text::xid8
         FROM outbox o, payments p WHERE p.reservation_id = $1",
    )
    .bind(reservation)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let (sale_starts_at, sold_out_at): (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as("SELECT sale_starts_at, sold_out_at FROM schedules WHERE id = $1")
        .bind(schedule)
        .fetch_one(&app.db)
        .await
        .unwrap();

    assert_eq!(
        (event_type.as_str(), event_version, aggregate_id),
        ("ConcertSoldOut", 1, schedule)
    );
    assert!(
        written_by_payment,
        "the log position is the paying transaction's id"
    );
    assert_eq!(
        payload,
        json!({
            "event_id": event_id,
            "concert_id": concert_id,
            "schedule_id": schedule,
            "concert_title": "Test concert",
            "seat_count": 1,
            "sale_started_at": sale_starts_at,
            "sold_out_at": sold_out_at,
        })
    );
    // Millisecond precision, so the score derived from the payload is exact.
    assert_eq!(sold_out_at.timestamp_subsec_micros() % 1000, 0);
    assert_eq!(sale_starts_at.timestamp_subsec_micros() % 1000, 0);
    // It decodes as the shared event type, as the relay will decode it.
    let event: shared::events::ConcertSoldOut = serde_json::from_value(payload).unwrap();
    assert!(event.sold_out_seconds() > 0.0);

    let notification = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
        .await
        .expect("the payment's commit notifies the relay")
        .unwrap();
    assert_eq!(notification.payload(), event_id.to_string());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn payments_before_the_last_seat_write_no_event(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 3, 100).await;
    app.charge(1, 300).await;
    for seat in 1..=2 {
        let reservation = app.hold_ok(1, schedules[0], seat).await;
        let paid: Value = app
            .pay(1, reservation, &format!("k{seat}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(paid["schedule_sold_out"], false);
    }
    assert_eq!(app.outbox_rows(schedules[0]).await, 0);
}

/// The payload is written in SQL (`json_time`), and its times must read as serde writes
/// chrono's `DateTime<Utc>`, whatever their fraction and the session's time zone: the payload
/// test above compares them as strings.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn times_in_the_payload_are_written_as_serde_writes_them(pool: PgPool) {
    let mut db = pool.acquire().await.unwrap();
    sqlx::query("SET TIME ZONE 'Asia/Seoul'")
        .execute(&mut *db)
        .await
        .unwrap();
    let whole = Utc.with_ymd_and_hms(2026, 11, 26, 23, 30, 0).unwrap();
    for time in [
        whole,
        whole + Duration::milliseconds(1_500),
        whole + Duration::microseconds(1_000_001),
        whole + Duration::microseconds(7),
    ] {
        let written: String = sqlx::query_scalar("SELECT json_time($1)")
            .bind(time)
            .fetch_one(&mut *db)
            .await
            .unwrap();
        assert_eq!(json!(written), json!(time), "{time:?}");
    }
}
