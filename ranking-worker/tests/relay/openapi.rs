//! The OpenAPI document at /openapi.json: every route is in it, and what the worker answers
//! conforms to it.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use shared::testing::violations;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{eventually, get_json, Harness};

/// The router's routes, as (method, path template).
const ROUTES: [(&str, &str); 8] = [
    ("get", "/"),
    ("get", "/rankings/sold-out"),
    ("get", "/rankings/sold-out/stream"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/consumers"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

async fn document(client: &reqwest::Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Asserts that `response` is documented for GET `path` (a route template) and that its body
/// conforms to the documented schema; returns the body (JSON, or a string for text).
async fn conforms(document: &Value, path: &str, response: Response) -> Value {
    let status = response.status().as_str().to_owned();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let documented = &document["paths"][path]["get"]["responses"][&status];
    assert!(
        documented.is_object(),
        "GET {path} does not document {status}"
    );
    let media = content_type.split(';').next().unwrap();
    let schema = &documented["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "GET {path} {status} does not document {media}"
    );
    let text = response.text().await.unwrap();
    let body = if media == "text/plain" {
        Value::String(text)
    } else {
        serde_json::from_str(&text).unwrap()
    };
    let errors = violations(document, schema, &body);
    assert!(
        errors.is_empty(),
        "GET {path} {status}: {errors:?} in {body}"
    );
    body
}

#[test]
fn the_check_refuses_what_does_not_conform() {
    let document = json!({ "components": { "schemas": {
        "Lag": { "type": "object", "required": ["events"],
                 "properties": { "events": { "type": "integer" } } }
    } } });
    let schema = json!({ "$ref": "#/components/schemas/Lag" });
    assert!(violations(&document, &schema, &json!({ "events": 1 })).is_empty());
    assert!(!violations(&document, &schema, &json!({})).is_empty());
    assert!(!violations(&document, &schema, &json!({ "events": "1" })).is_empty());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn every_route_is_documented(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let document = document(&reqwest::Client::new(), &base).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));

    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    for (method, path) in ROUTES {
        for (status, response) in document["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
        {
            if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
    let ranking = &document["paths"]["/rankings/sold-out"]["get"];
    let parameter = |name: &str| {
        ranking["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|parameter| parameter["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(
        (
            parameter("limit")["minimum"].as_i64(),
            parameter("limit")["maximum"].as_i64()
        ),
        (Some(1), Some(100))
    );
    assert_eq!(
        (
            parameter("offset")["minimum"].as_i64(),
            parameter("offset")["maximum"].as_i64()
        ),
        (Some(0), Some(100_000))
    );
}

/// Each response, success or error, conforms to the document.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn responses_conform_to_the_document(_: PgPoolOptions, database: PgConnectOptions) {
    let harness = Harness::new(database).await;
    harness.enqueue(3).await;
    let (base, _stop) = harness.start_worker_guarded().await;
    let client = reqwest::Client::new();
    let doc = document(&client, &base).await;
    let url = format!("{base}/rankings/sold-out");
    eventually(Duration::from_secs(10), async || {
        get_json(&client, &url).await["entries"]
            .as_array()
            .is_some_and(|entries| entries.len() == 3)
    })
    .await;

    let get = |path: &str| client.get(format!("{base}{path}")).send();
    let page = conforms(
        &doc,
        "/rankings/sold-out",
        get("/rankings/sold-out").await.unwrap(),
    )
    .await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    let month = conforms(
        &doc,
        "/rankings/sold-out",
        get("/rankings/sold-out?period=month&at=2026-11-01")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(month["period"]["name"], "2026-11");
    assert_eq!(month["entries"].as_array().unwrap().len(), 3);
    for query in ["limit=0", "offset=100001", "sort=asc", "period=year"] {
        let response = get(&format!("/rankings/sold-out?{query}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        conforms(&doc, "/rankings/sold-out", response).await;
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        conforms(&doc, path, get(path).await.unwrap()).await;
    }
    let consumers = conforms(&doc, "/consumers", get("/consumers").await.unwrap()).await;
    assert_eq!(consumers["consumers"][0]["name"], "ranking");
    assert_eq!(consumers["consumers"][0]["dead_letters"], 0);
    ranking_worker::consumers::halt(
        &harness.pool,
        "ranking",
        ranking_worker::consumers::HaltKind::Paused,
        "maintenance",
    )
    .await
    .unwrap();
    let consumers = conforms(&doc, "/consumers", get("/consumers").await.unwrap()).await;
    assert_eq!(consumers["consumers"][0]["halted"]["kind"], "paused");
    assert_eq!(consumers["consumers"][0]["halted"]["reason"], "maintenance");
}
