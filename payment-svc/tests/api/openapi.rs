//! The OpenAPI document at /openapi.json: every route is in it, and what the service answers
//! conforms to it.

use std::collections::BTreeSet;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use shared::testing::violations;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{admin_token, token, TestApp};

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Asserts that `response` is documented for `method path` (a route template) and that its
/// body conforms to the documented schema; returns the body.
async fn conforms(document: &Value, method: &str, path: &str, response: Response) -> Value {
    let status = response.status().as_str().to_owned();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned());
    let documented = &document["paths"][path][method]["responses"][&status];
    assert!(
        documented.is_object(),
        "{method} {path} does not document {status}"
    );
    let body = response.text().await.unwrap();
    let Some(content_type) = content_type else {
        assert!(
            body.is_empty(),
            "{method} {path} {status}: a body without a content type"
        );
        assert!(
            documented["content"].is_null(),
            "{method} {path} {status}: no content"
        );
        return Value::Null;
    };
    let media = content_type.split(';').next().unwrap();
    let schema = &documented["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status} does not document {media}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    let errors = violations(document, schema, &body);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?} in {body}"
    );
    body
}

#[test]
fn the_check_refuses_what_does_not_conform() {
    let document = json!({ "components": { "schemas": {
        "Reservation": { "type": "object", "required": ["reservation_id"],
                         "properties": { "reservation_id": { "type": "string", "format": "uuid" } } }
    } } });
    let schema = json!({ "$ref": "#/components/schemas/Reservation" });
    let uuid = Uuid::nil().to_string();
    assert!(violations(&document, &schema, &json!({ "reservation_id": uuid })).is_empty());
    assert!(!violations(&document, &schema, &json!({})).is_empty());
    assert!(!violations(&document, &schema, &json!({ "reservation_id": "nope" })).is_empty());
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn every_route_is_documented_with_its_security(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let document = document(&app).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));

    // (method, path, needs a token): the router's routes.
    let routes = [
        ("get", "/healthz", false),
        ("get", "/readyz", false),
        ("get", "/metrics", false),
        ("get", "/openapi.json", false),
        ("post", "/admin/concerts", true),
        ("get", "/concerts", false),
        ("get", "/concerts/{concert_id}", false),
        ("get", "/schedules/{schedule_id}/seats", false),
        ("get", "/points", true),
        ("post", "/points/charge", true),
        ("post", "/reservations", true),
        ("get", "/reservations", true),
        ("get", "/reservations/{reservation_id}", true),
        ("delete", "/reservations/{reservation_id}", true),
        ("post", "/payments", true),
        ("get", "/payments/{payment_id}", true),
    ];
    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    for (method, path, secured) in routes {
        let operation = &document["paths"][path][method];
        assert_eq!(
            operation["security"] == json!([{ "bearer": [] }]),
            secured,
            "{method} {path} security"
        );
        if secured {
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} 401"
            );
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

/// A walk through the API: each response, success or error, conforms to the document.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn responses_conform_to_the_document(_: PgPoolOptions, database: PgConnectOptions) {
    let app = TestApp::spawn(database).await;
    let doc = document(&app).await;
    let admin = admin_token();
    let user = token(1);

    conforms(
        &doc,
        "get",
        "/healthz",
        app.get("/healthz").send().await.unwrap(),
    )
    .await;
    conforms(
        &doc,
        "get",
        "/readyz",
        app.get("/readyz").send().await.unwrap(),
    )
    .await;
    let created = conforms(
        &doc,
        "post",
        "/admin/concerts",
        app.post("/admin/concerts")
            .bearer_auth(&admin)
            .json(&json!({ "title": "Conformance", "schedules": [{
                "starts_at": "2099-01-02T00:00:00Z", "sale_starts_at": "2000-01-01T00:00:00Z",
                "seat_count": 2, "price": 100 }] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let concert = created["concert_id"].as_i64().unwrap();
    let schedule = created["schedules"][0]["schedule_id"].as_i64().unwrap();
    for (path, request) in [
        ("/concerts", app.get("/concerts?limit=1")),
        (
            "/concerts/{concert_id}",
            app.get(&format!("/concerts/{concert}")),
        ),
        ("/concerts/{concert_id}", app.get("/concerts/999999")),
        ("/concerts/{concert_id}", app.get("/concerts/x")),
        (
            "/schedules/{schedule_id}/seats",
            app.get(&format!("/schedules/{schedule}/seats?limit=1")),
        ),
        (
            "/schedules/{schedule_id}/seats",
            app.get(&format!("/schedules/{schedule}/seats?limit=0")),
        ),
        ("/points", app.get("/points")),
        ("/points", app.get("/points").bearer_auth(&user)),
    ] {
        conforms(&doc, "get", path, request.send().await.unwrap()).await;
    }
    let charge = || {
        app.post("/points/charge")
            .bearer_auth(&user)
            .header("Idempotency-Key", "c")
            .json(&json!({ "amount": 150 }))
    };
    conforms(
        &doc,
        "post",
        "/points/charge",
        charge().send().await.unwrap(),
    )
    .await;
    conforms(
        &doc,
        "post",
        "/points/charge",
        charge().send().await.unwrap(),
    )
    .await;
    conforms(
        &doc,
        "post",
        "/admin/concerts",
        app.post("/admin/concerts")
            .bearer_auth(&user)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;

    let hold = || {
        app.post("/reservations")
            .bearer_auth(&user)
            .json(&json!({ "schedule_id": schedule, "seat_no": 1 }))
    };
    let held = conforms(&doc, "post", "/reservations", hold().send().await.unwrap()).await;
    conforms(&doc, "post", "/reservations", hold().send().await.unwrap()).await;
    let reservation = held["reservation_id"].as_str().unwrap().to_owned();
    for (path, request) in [
        ("/reservations", app.get("/reservations").bearer_auth(&user)),
        (
            "/reservations/{reservation_id}",
            app.get(&format!("/reservations/{reservation}"))
                .bearer_auth(&user),
        ),
    ] {
        conforms(&doc, "get", path, request.send().await.unwrap()).await;
    }
    let pay = |key: &str| {
        app.post("/payments")
            .bearer_auth(&user)
            .header("Idempotency-Key", key)
            .json(&json!({ "reservation_id": reservation }))
    };
    let receipt = conforms(&doc, "post", "/payments", pay("p").send().await.unwrap()).await;
    conforms(
        &doc,
        "post",
        "/payments",
        pay("other").send().await.unwrap(),
    )
    .await;
    conforms(
        &doc,
        "get",
        "/payments/{payment_id}",
        app.get(&format!(
            "/payments/{}",
            receipt["payment_id"].as_str().unwrap()
        ))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap(),
    )
    .await;
    let delete = |id: &str| {
        app.client
            .delete(format!("{}/reservations/{id}", app.base))
            .bearer_auth(&user)
    };
    let path = "/reservations/{reservation_id}";
    conforms(
        &doc,
        "delete",
        path,
        delete(&reservation).send().await.unwrap(),
    )
    .await;
    let other = conforms(
        &doc,
        "post",
        "/reservations",
        app.post("/reservations")
            .bearer_auth(&user)
            .json(&json!({ "schedule_id": schedule, "seat_no": 2 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let other = other["reservation_id"].as_str().unwrap().to_owned();
    conforms(&doc, "delete", path, delete(&other).send().await.unwrap()).await;
    conforms(
        &doc,
        "delete",
        path,
        delete(&Uuid::new_v4().to_string()).send().await.unwrap(),
    )
    .await;
}
