//! Idempotency-Key on the money endpoints: replays, conflicts, and never two effects.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{assert_problem, settings, token, TestApp};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn twenty_concurrent_payments_with_one_key_pay_once(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 5, 700).await;
    app.charge(1, 10_000).await;
    let reservation = app.hold_ok(1, schedules[0], 3).await;

    let responses = join_all((0..20).map(|_| app.pay(1, reservation, "same-key"))).await;
    let mut bodies = Vec::new();
    let mut replayed = 0;
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        replayed += usize::from(response.headers().get("idempotent-replayed").is_some());
        bodies.push(response.json::<Value>().await.unwrap());
    }
    assert_eq!(replayed, 19, "all but the first are replays");
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "identical bodies"
    );
    let payments = app.payments().await;
    assert_eq!(payments, 1);
    assert_eq!(app.balance(1).await, 10_000 - 700);
    assert_eq!(bodies[0]["balance"], 10_000 - 700);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_key_reused_with_another_body_is_refused(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 5, 700).await;
    app.charge(1, 10_000).await;
    let first = app.hold_ok(1, schedules[0], 1).await;
    let second = app.hold_ok(1, schedules[0], 2).await;
    assert_eq!(app.pay(1, first, "key").await.status(), StatusCode::CREATED);

    let before = app.fingerprint().await;
    assert_problem(
        app.pay(1, second, "key").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    assert_eq!(app.fingerprint().await, before);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn keys_are_scoped_per_user(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let charge = |user| {
        app.post("/points/charge")
            .bearer_auth(token(user))
            .header("Idempotency-Key", "shared-key")
            .json(&json!({ "amount": 100 }))
            .send()
    };
    assert_eq!(charge(1).await.unwrap().status(), StatusCode::OK);
    let other = charge(2).await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert!(other.headers().get("idempotent-replayed").is_none());
    assert_eq!((app.balance(1).await, app.balance(2).await), (100, 100));
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_replayed_charge_adds_nothing(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let charge = || {
        app.post("/points/charge")
            .bearer_auth(token(1))
            .header("Idempotency-Key", "charge-1")
            .json(&json!({ "amount": 250 }))
            .send()
    };
    let first = charge().await.unwrap();
    let first_body: Value = first.json().await.unwrap();
    let again = charge().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    assert_eq!(app.balance(1).await, 250);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_duplicate_of_a_stuck_request_gets_key_in_use(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut settings = settings();
    settings.lock_timeout = std::time::Duration::from_millis(200);
    let app = TestApp::spawn_with(database, settings).await;

    // Another request holds the key in an open transaction, as a slow first request would.
    let mut in_flight = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, endpoint, key, request_hash)
         VALUES (1, 'POST /points/charge', 'busy', '\\x00')",
    )
    .execute(&mut *in_flight)
    .await
    .unwrap();

    let response = app
        .post("/points/charge")
        .bearer_auth(token(1))
        .header("Idempotency-Key", "busy")
        .json(&json!({ "amount": 100 }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_USE").await;
    in_flight.rollback().await.unwrap();
    assert_eq!(app.balance(1).await, 0);
}

/// A replay is the first response itself, byte for byte: same status, same body text (not
/// merely an equal JSON value with its keys re-ordered).
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_replay_returns_the_first_responses_exact_bytes(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 700).await;
    let charge = || {
        app.post("/points/charge")
            .bearer_auth(token(1))
            .header("Idempotency-Key", "charge")
            .json(&json!({ "amount": 1_000 }))
            .send()
    };
    let first = charge().await.unwrap().text().await.unwrap();
    let replay = charge().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.headers()["content-type"], "application/json");
    assert_eq!(replay.text().await.unwrap(), first);

    let reservation = app.hold_ok(1, schedules[0], 1).await;
    let first = app.pay(1, reservation, "pay").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.text().await.unwrap();
    // The payment's response is written in SQL; it is the Receipt as serde writes it.
    let sent: Value = serde_json::from_str(&first).unwrap();
    let receipt = payment_svc::confirm_payment::Receipt {
        payment_id: sent["payment_id"].as_str().unwrap().parse().unwrap(),
        reservation_id: reservation,
        amount: 700,
        balance: 300,
        schedule_sold_out: true,
    };
    assert_eq!(first, serde_json::to_string(&receipt).unwrap());
    let replay = app.pay(1, reservation, "pay").await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.text().await.unwrap(), first);
}

/// Two `Idempotency-Key` headers are ambiguous: 400, and nothing happens.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn two_idempotency_keys_are_400(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let before = app.fingerprint().await;
    let response = app
        .post("/points/charge")
        .bearer_auth(token(1))
        .header("Idempotency-Key", "one")
        .header("Idempotency-Key", "two")
        .json(&json!({ "amount": 100 }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    assert_eq!(app.fingerprint().await, before);
}

/// A first attempt that fails (402 here, or 404, 409) does not bind its key: the client tops
/// up and retries with the same key and body, and the retry is a fresh attempt, not a replay
/// of the failure.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_failed_first_attempt_leaves_its_key_free_for_a_retry(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 700).await;
    app.charge(1, 500).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;

    let before = app.fingerprint().await;
    assert_problem(
        app.pay(1, reservation, "retry-me").await,
        StatusCode::PAYMENT_REQUIRED,
        "INSUFFICIENT_BALANCE",
    )
    .await;
    assert_eq!(
        app.fingerprint().await,
        before,
        "no key stored for a failure"
    );

    app.charge(1, 500).await;
    let retry = app.pay(1, reservation, "retry-me").await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.balance(1).await, 300);
}

/// A payment claims its key in the statement that pays, and the two waits in it end apart:
/// waiting past lock_timeout for its key (the first request still in flight) is 409
/// IDEMPOTENCY_KEY_IN_USE, waiting as long for its hold (a competing payment of it in flight)
/// is 503 UNAVAILABLE, not a 409 about a key no one else holds.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_payment_stuck_on_its_key_is_409_and_one_stuck_on_its_hold_503(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let mut settings = settings();
    settings.lock_timeout = std::time::Duration::from_millis(200);
    let app = TestApp::spawn_with(database, settings).await;
    let (_, schedules) = app.create_concert(1, 1, 700).await;
    app.charge(1, 1_000).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;
    let before = app.fingerprint().await;

    let mut first_attempt = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, endpoint, key, request_hash)
         VALUES (1, 'POST /payments', 'busy', '\\x00')",
    )
    .execute(&mut *first_attempt)
    .await
    .unwrap();
    assert_problem(
        app.pay(1, reservation, "busy").await,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_KEY_IN_USE",
    )
    .await;
    first_attempt.rollback().await.unwrap();

    let mut competing = app.db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM reservations WHERE id = $1 FOR UPDATE")
        .bind(reservation)
        .execute(&mut *competing)
        .await
        .unwrap();
    assert_problem(
        app.pay(1, reservation, "free").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
    )
    .await;
    competing.rollback().await.unwrap();

    assert_eq!(app.fingerprint().await, before, "neither changed anything");
    let paid = app.pay(1, reservation, "free").await;
    assert_eq!(paid.status(), StatusCode::CREATED);
    assert_eq!(app.balance(1).await, 300);
}
