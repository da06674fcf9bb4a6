//! Authentication and authorisation.

use std::time::Duration;

use payment_svc::auth::{mint_token, JwtSecret};
use payment_svc::domain::{Role, UserId};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{assert_problem, token, TestApp};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn bad_credentials_are_401(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let forged = mint_token(
        &JwtSecret::parse("another-secret-that-is-at-least-32-bytes").unwrap(),
        UserId::parse(1).unwrap(),
        Role::User,
        Duration::from_secs(60),
    )
    .unwrap();
    // exp one second ago: expiry has no leeway.
    let expired = {
        let claims =
            json!({ "sub": "1", "role": "user", "exp": chrono::Utc::now().timestamp() - 1 });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(crate::helpers::SECRET.as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not bearer", Some(format!("Basic {}", token(1)))),
        ("garbage", Some("Bearer not.a.jwt".into())),
        ("bad signature", Some(format!("Bearer {forged}"))),
        ("expired", Some(format!("Bearer {expired}"))),
    ];
    for (case, header) in cases {
        let mut request = app.get("/points");
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let body = assert_problem(
            request.send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
        )
        .await;
        assert!(body["detail"].is_string(), "{case}");
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_user_on_an_admin_endpoint_is_403(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let before = app.fingerprint().await;
    let response = app
        .post("/admin/concerts")
        .bearer_auth(token(1))
        .json(&json!({ "title": "x", "schedules": [] }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(app.fingerprint().await, before);
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn another_users_reservation_is_404(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 1, 100).await;
    app.charge(2, 1_000).await;
    let alices = app.hold_ok(1, schedules[0], 1).await;

    let shown = app
        .get(&format!("/reservations/{alices}"))
        .bearer_auth(token(2))
        .send()
        .await
        .unwrap();
    assert_problem(shown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let before = app.fingerprint().await;
    assert_problem(
        app.pay(2, alices, "steal").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(app.fingerprint().await, before);
    assert_eq!(app.balance(2).await, 1_000);
}
