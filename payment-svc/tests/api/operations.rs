//! What operators rely on: health, readiness, metrics, a 503 when Postgres is gone, the CLI.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use payment_svc::startup::Settings;

use crate::helpers::{assert_problem, settings, token, TestApp, SECRET};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn health_readiness_and_metrics(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let health = app.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({ "status": "ok" })
    );
    let ready = app.get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({ "status": "ready" })
    );

    let (_, schedules) = app.create_concert(1, 1, 10).await;
    app.charge(1, 10).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;
    assert_eq!(
        app.pay(1, reservation, "m").await.status(),
        StatusCode::CREATED
    );

    let metrics = app.metrics().await;
    for series in [
        "payments_confirmed_total",
        "schedules_sold_out_total",
        r#"http_requests_total{method="POST",route="/payments",status="201"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/payments""#,
    ] {
        assert!(metrics.contains(series), "metrics lack {series}");
    }
}

/// Every response carries the request's `x-request-id`: the client's own when it sent one, a
/// new UUID when not, on success and on error alike.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn every_response_carries_a_request_id(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    for path in ["/healthz", "/concerts/not-a-number", "/nowhere"] {
        let response = app.get(path).send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: {id}");
    }
    let response = app
        .get("/points")
        .header("x-request-id", "trace-me-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-request-id"], "trace-me-7");
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn connections_postgres_dropped_cost_a_503_at_most_then_the_service_recovers(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    const POOL: u32 = 4;
    let app = TestApp::spawn_with(
        database,
        Settings {
            max_connections: POOL,
            ..settings()
        },
    )
    .await;
    let (concert_id, _) = app.create_concert(1, 1, 10).await;
    let path = format!("/concerts/{concert_id}");
    // Fill the pool with open connections.
    futures::future::join_all((0..2 * POOL).map(|_| app.get(&path).send())).await;

    // Postgres drops every one of them, as a restart would. Pooled connections are pinged only
    // after sitting idle, so the requests that meet a dead one fail, and retryably.
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'payment-svc'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(dropped >= 1, "the pool had connections open");
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(app.get(&path).send().await.unwrap().status());
    }
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "only 200 or a retryable 503: {statuses:?}"
    );
    let failed = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(
        failed <= POOL as usize,
        "at most one failure per dropped connection: {statuses:?}"
    );
    assert!(
        statuses[statuses.len() - 5..]
            .iter()
            .all(|s| *s == StatusCode::OK),
        "recovered: {statuses:?}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after() {
    // Nothing listens on port 1.
    let database = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(1)
        .username("postgres");
    let app = TestApp::spawn(database).await;
    assert_eq!(
        app.get("/healthz").send().await.unwrap().status(),
        StatusCode::OK
    );
    let ready = app.get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({ "status": "unavailable", "postgres": "unreachable" })
    );
    let response = app
        .get("/points")
        .bearer_auth(token(1))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
}

fn payment_svc() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payment-svc"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

#[test]
fn token_prints_only_a_token() {
    let output = payment_svc()
        .env("JWT_SECRET", SECRET)
        .args(["token", "--user-id", "42", "--admin", "--ttl", "30d"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].split('.').count(), 3, "a JWT has three parts");
}

#[test]
fn a_bad_setting_is_refused_naming_it() {
    let cases = [
        (
            vec![("JWT_SECRET", "short")],
            vec!["token", "--user-id", "1"],
            "JWT_SECRET",
        ),
        (
            vec![("JWT_SECRET", SECRET)],
            vec!["token", "--user-id", "0"],
            "--user-id",
        ),
        (
            vec![
                ("JWT_SECRET", SECRET),
                ("DATABASE_URL", "postgres://x"),
                ("HOLD_TTL_SECONDS", "0"),
            ],
            vec!["serve"],
            "HOLD_TTL_SECONDS",
        ),
        (
            vec![
                ("JWT_SECRET", SECRET),
                ("DATABASE_URL", "postgres://x"),
                ("HTTP_ADDR", "nowhere"),
            ],
            vec!["serve"],
            "HTTP_ADDR",
        ),
        (
            vec![("LOG_FORMAT", "xml"), ("DATABASE_URL", "postgres://x")],
            vec!["migrate"],
            "LOG_FORMAT",
        ),
        (
            // compose.yaml's former fallback: published in the repository, so anyone could
            // mint admin tokens for a deployment that kept it.
            vec![("JWT_SECRET", "change-me-to-a-secret-of-at-least-32-bytes")],
            vec!["token", "--user-id", "1"],
            "JWT_SECRET",
        ),
        (
            vec![("JWT_SECRET", SECRET)],
            vec!["token", "--user-id", "1", "--ttl", "31d"],
            "--ttl",
        ),
        (vec![("JWT_SECRET", SECRET)], vec!["serve"], "DATABASE_URL"),
        (vec![("DATABASE_URL", "postgres://x")], vec![], "JWT_SECRET"),
    ];
    for (env, args, setting) in cases {
        let output = payment_svc().envs(env).args(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(
            stderr.contains(setting),
            "{setting} not named in {stderr:?}"
        );
    }
}

/// Request metrics are labelled from fixed sets: an invented method or an unknown path cannot
/// make a new series, so unauthenticated clients cannot grow `/metrics` or the process.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn invented_methods_and_paths_add_no_metric_series(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let invented = format!("INVENTED{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    let unknown_path = format!("/nowhere-{}", uuid::Uuid::new_v4().simple());
    for path in ["/concerts", unknown_path.as_str()] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).unwrap();
        let response = app
            .client
            .request(method, format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{path}");
    }
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains(&invented),
        "the invented method is a label"
    );
    assert!(!metrics.contains(&unknown_path), "the raw path is a label");
    assert!(
        metrics.contains(r#"http_requests_total{method="OTHER",route="/concerts",status="405"}"#),
        "{metrics}"
    );
}

/// A method a route does not have is 405 with `Allow` naming those it has (RFC 9110 §15.5.6),
/// as problem+json; found by the fuzzer (scripts/fuzz), which sent TRACE and got 400.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_method_the_route_lacks_is_405_with_allow(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    for (method, path, allow) in [
        (reqwest::Method::TRACE, "/concerts", "GET,HEAD"),
        (reqwest::Method::PUT, "/reservations", "GET,HEAD,POST"),
        (reqwest::Method::GET, "/admin/concerts", "POST"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let mut allowed: Vec<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|method| method.trim().to_owned())
            .collect();
        allowed.sort();
        assert_eq!(allowed.join(","), allow, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    }
}

/// compose.yaml has no fallback secret: `docker compose up` without JWT_SECRET refuses to start
/// instead of publishing port 8080 with a secret printed in the repository.
#[test]
fn compose_requires_a_jwt_secret() {
    let compose =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../compose.yaml")).unwrap();
    let uses: Vec<&str> = compose
        .match_indices("${JWT_SECRET")
        .map(|(at, _)| &compose[at..])
        .collect();
    assert!(!uses.is_empty(), "compose.yaml passes JWT_SECRET on");
    for used in uses {
        assert!(
            used.starts_with("${JWT_SECRET:?"),
            "JWT_SECRET must be required, not defaulted: {}",
            used.lines().next().unwrap_or_default()
        );
    }
}
