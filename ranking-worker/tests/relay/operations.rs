//! The worker's HTTP API edges and its operator CLI, run as the binary.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{get_json, get_text, settings, Harness};

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn bad_ranking_parameters_are_400_problems(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database.clone()).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let client = reqwest::Client::new();

    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "offset=-1",
        "offset=x",
        "offset=100001",
        "offset=100000000000000000",
        "sort=asc",
    ] {
        let response = client
            .get(format!("{base}/rankings/sold-out?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "MALFORMED_REQUEST", "{query}");
    }
    let empty: Value = get_json(
        &client,
        &format!("{base}/rankings/sold-out?limit=100&offset=5"),
    )
    .await;
    assert_eq!(empty["entries"], serde_json::json!([]));
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let ready: Value = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(
        ready,
        serde_json::json!({ "status": "ready", "postgres": "ok", "redis": "ok" })
    );
}

/// Request metrics are labelled by a fixed set of methods and by route template only: invented
/// methods and unknown paths (the raw path) add no series, which are never evicted.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn invented_methods_and_paths_add_no_metric_series(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let client = reqwest::Client::new();
    let invented = format!("INVENTED{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    let unknown_path = format!("/nowhere-{}", uuid::Uuid::new_v4().simple());
    for path in ["/rankings/sold-out", unknown_path.as_str()] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).unwrap();
        let response = client
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let ranking = client
        .get(format!("{base}/rankings/sold-out?limit=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(ranking.status(), StatusCode::OK);
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    assert!(
        !metrics.contains(&invented),
        "the invented method is a label"
    );
    assert!(!metrics.contains(&unknown_path), "the raw path is a label");
    for series in [
        r#"http_requests_total{method="OTHER",route="/rankings/sold-out",status="405"}"#,
        r#"http_requests_total{method="OTHER",route="unmatched",status="404"}"#,
        r#"http_requests_total{method="GET",route="/rankings/sold-out",status="200"}"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

/// Every response carries the request's `x-request-id` (the client's own, or a new UUID), and
/// every request is counted by method, route template and status.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn requests_get_ids_and_are_counted(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/rankings/sold-out?limit=0", "/nowhere"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: {id}");
    }
    let response = client
        .get(format!("{base}/readyz"))
        .header("x-request-id", "trace-me-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-7");

    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    for series in [
        r#"http_requests_total{method="GET",route="/healthz",status="200"}"#,
        r#"http_requests_total{method="GET",route="/rankings/sold-out",status="400"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/readyz""#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn the_operator_commands_print_tables_and_json(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let events = harness.enqueue(3).await;
    harness.drain(&mut harness.relay(settings())).await;
    harness.enqueue(1).await;

    let (ok, table, _) = harness.cli(&["top", "--limit", "2"]);
    assert!(ok);
    assert!(table.starts_with("RANK"), "{table}");
    assert_eq!(
        table.lines().count(),
        3,
        "a header and two entries: {table}"
    );
    let (_, json, _) = harness.cli(&["top", "--json"]);
    let top: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(top["entries"].as_array().unwrap().len(), 3);
    assert_eq!(
        top["entries"][0]["sold_out_seconds"].as_f64().unwrap(),
        events[0].sold_out_seconds()
    );

    let (ok, json, _) = harness.cli(&["status", "--json"]);
    assert!(ok);
    let status: Value = serde_json::from_str(&json).unwrap();
    let ranking = &status["consumers"][0];
    assert_eq!(ranking["name"], "ranking");
    assert_eq!(
        (
            ranking["lag"]["events"].as_i64(),
            status["ranking_size"].as_i64()
        ),
        (Some(1), Some(3))
    );
    assert_eq!(status["log"]["events"], 4);
    assert_eq!(ranking["position"], ranking["mirror_position"]);
    let (_, table, _) = harness.cli(&["status"]);
    assert!(table.contains("lag             1 events"), "{table}");
    assert!(
        table.contains("redis policy      maxmemory-policy"),
        "{table}"
    );

    let mut redis = harness.redis.clone();
    redis::cmd("DEL")
        .arg(&harness.key)
        .exec_async(&mut redis)
        .await
        .unwrap();
    let (ok, out, _) = harness.cli(&["replay", "--dry-run"]);
    assert!(ok);
    assert_eq!(out.trim(), "dry run: matched 3, restored 3, unchanged 0");
    let (_, out, _) = harness.cli(&["replay", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["restored"], 3);
    let (_, out, _) = harness.cli(&["replay", "--rebuild"]);
    assert_eq!(out.trim(), "rebuilt from 3 events; ranking size 3");
    harness.assert_ranking_is(&events).await;

    let (ok, out, _) = harness.cli(&["dead-letters", "list"]);
    assert!(ok);
    assert_eq!(out.trim(), "no dead letters");
    let (ok, _, err) = harness.cli(&[
        "dead-letters",
        "retry",
        "00000000-0000-0000-0000-000000000000",
    ]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a dead letter"), "{err}");
    let (ok, _, err) = harness.cli(&["dead-letters", "retry", "not-a-uuid"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn bad_settings_are_one_line_errors_naming_them() {
    for (env, setting) in [
        (("BATCH_SIZE", "0"), "BATCH_SIZE"),
        (("RETRY_BASE_MS", "many"), "RETRY_BASE_MS"),
        (("RANKING_KEY", "a{b}"), "RANKING_KEY"),
        (("POLL_INTERVAL_MS", "-5"), "POLL_INTERVAL_MS"),
        (("RANKING_HTTP_ADDR", "nowhere"), "RANKING_HTTP_ADDR"),
        (("RANKING_TIMEZONE", "Asia/Busan"), "RANKING_TIMEZONE"),
        (("RANKING_TIMEZONE", "+09:00"), "RANKING_TIMEZONE"),
        (
            ("RANKING_PERIOD_RETENTION_DAYS", "0"),
            "RANKING_PERIOD_RETENTION_DAYS",
        ),
        (
            ("RANKING_PERIOD_RETENTION_DAYS", "a year"),
            "RANKING_PERIOD_RETENTION_DAYS",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_ranking-worker"))
            .arg("run")
            .env_clear()
            .env("DATABASE_URL", "postgres://x")
            .env(env.0, env.1)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(setting), "{setting} not named in {stderr}");
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn healthcheck_exits_0_only_when_the_worker_is_ready(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let addr = base.trim_start_matches("http://").to_owned();
    let check = |addr: String| {
        Command::new(env!("CARGO_BIN_EXE_ranking-worker"))
            .arg("healthcheck")
            .env_clear()
            .env("RANKING_HTTP_ADDR", addr)
            .output()
            .unwrap()
    };
    let ready = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || check(addr)
    })
    .await
    .unwrap();
    assert!(ready.status.success(), "{ready:?}");

    let nobody = format!("127.0.0.1:{}", crate::helpers::free_port());
    let down = tokio::task::spawn_blocking(move || check(nobody))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8(down.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("unhealthy: no answer"), "{stderr}");
}
