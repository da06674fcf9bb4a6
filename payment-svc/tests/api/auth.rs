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
    let expired =
        signed(json!({ "sub": "1", "role": "user", "exp": chrono::Utc::now().timestamp() - 1 }));
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

fn signed(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::SECRET.as_bytes()),
    )
    .unwrap()
}

/// Claims are held to RFC 7519 and to this service's limits: expired from the second `exp`
/// names, not before `nbf`, valid for at most 30 days ahead, `sub` in canonical decimal.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn tokens_outside_their_validity_or_with_odd_claims_are_401(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let now = chrono::Utc::now().timestamp();
    let day = 24 * 3600;
    let claims =
        |sub: &str, exp: serde_json::Value| json!({ "sub": sub, "role": "user", "exp": exp });
    let refused = [
        ("expiring this second", claims("1", json!(now))),
        ("expiring at u64::MAX", claims("1", json!(u64::MAX))),
        ("expiring in 31 days", claims("1", json!(now + 31 * day))),
        (
            "not before a minute from now",
            json!({ "sub": "1", "role": "user", "exp": now + 600, "nbf": now + 60 }),
        ),
        (
            "nbf not a number",
            json!({ "sub": "1", "role": "user", "exp": now + 600, "nbf": "soon" }),
        ),
        ("sub with a plus", claims("+1", json!(now + 600))),
        ("sub with leading zeros", claims("0001", json!(now + 600))),
        ("sub with a space", claims(" 1", json!(now + 600))),
    ];
    for (case, claims) in refused {
        let response = app
            .get("/points")
            .bearer_auth(signed(claims))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "case {case:?}");
    }
    let accepted = [
        ("expiring in 29 days", claims("1", json!(now + 29 * day))),
        (
            "valid since a minute ago",
            json!({ "sub": "1", "role": "user", "exp": now + 600, "nbf": now - 60 }),
        ),
    ];
    for (case, claims) in accepted {
        let response = app
            .get("/points")
            .bearer_auth(signed(claims))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "case {case:?}");
    }
}

/// The scheme in `Authorization` is case-insensitive (RFC 9110 §11.1), and every 401 says
/// which scheme to use (`WWW-Authenticate: Bearer`, RFC 9110 §11.6.1).
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_bearer_scheme_is_case_insensitive_and_401s_name_it(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = app
            .get("/points")
            .header("Authorization", format!("{scheme} {}", token(1)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    for header in [
        None,
        Some("Basic dXNlcjpwYXNz".to_owned()),
        Some("Bearer not.a.jwt".into()),
        Some("Bearer".into()),
    ] {
        let mut request = app.get("/points");
        if let Some(header) = &header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|value| value.to_str().unwrap().to_owned());
        assert_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{header:?}: WWW-Authenticate {challenge:?}"
        );
    }
}
