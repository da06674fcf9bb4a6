//! Bad input gets a problem+json error with its code, never a 5xx, and changes nothing.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{admin_token, assert_problem, token, TestApp};

struct Case {
    name: &'static str,
    request: RequestBuilder,
    status: StatusCode,
    code: &'static str,
}

fn case(
    name: &'static str,
    request: RequestBuilder,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        name,
        request,
        status,
        code,
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn each_error_code_is_reached_and_changes_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (concert, schedules) = app.create_concert(1, 3, 100).await;
    let schedule = schedules[0];
    let now = chrono::Utc::now();
    let (_, future) = app
        .create_concert_at(
            1,
            1,
            100,
            now + chrono::Duration::days(1),
            now + chrono::Duration::days(2),
        )
        .await;
    let (_, past) = app
        .create_concert_at(
            1,
            1,
            100,
            now - chrono::Duration::days(2),
            now - chrono::Duration::days(1),
        )
        .await;
    app.charge(1, 1_000).await;
    let paid = app.hold_ok(1, schedule, 1).await;
    assert_eq!(app.pay(1, paid, "paid").await.status(), StatusCode::CREATED);
    let _held_by_other = app.hold_ok(2, schedule, 2).await;

    let json_post = |path: &str, user: i64| {
        app.post(path)
            .bearer_auth(token(user))
            .header("content-type", "application/json")
    };
    let pay = |body: String| {
        json_post("/payments", 1)
            .header("Idempotency-Key", "k-bad")
            .body(body)
    };
    use StatusCode as S;
    let cases = vec![
        case(
            "not json",
            pay("{not json".into()),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "empty body",
            pay(String::new()),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "bad path id",
            app.get("/concerts/abc"),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "bad uuid",
            app.get("/reservations/nope").bearer_auth(token(1)),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "limit 0",
            app.get("/concerts?limit=0"),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "limit text",
            app.get("/concerts?limit=ten"),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "unknown query",
            app.get("/concerts?sort=desc"),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "no idempotency key",
            json_post("/payments", 1).body(json!({ "reservation_id": paid }).to_string()),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "blank idempotency key",
            json_post("/points/charge", 1)
                .header("Idempotency-Key", "")
                .body(r#"{"amount":1}"#),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "idempotency key too long",
            json_post("/points/charge", 1)
                .header("Idempotency-Key", "k".repeat(256))
                .body(r#"{"amount":1}"#),
            S::BAD_REQUEST,
            "MALFORMED_REQUEST",
        ),
        case(
            "wrong method",
            app.client.delete(format!("{}/concerts", app.base)),
            S::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "unknown concert",
            app.get("/concerts/999999"),
            S::NOT_FOUND,
            "NOT_FOUND",
        ),
        case(
            "unknown schedule",
            app.get("/schedules/999999/seats"),
            S::NOT_FOUND,
            "NOT_FOUND",
        ),
        case(
            "unknown route",
            app.get("/nowhere"),
            S::NOT_FOUND,
            "NOT_FOUND",
        ),
        case(
            "unknown reservation",
            pay(json!({ "reservation_id": uuid::Uuid::new_v4() }).to_string()),
            S::NOT_FOUND,
            "NOT_FOUND",
        ),
        case(
            "seat beyond the schedule",
            json_post("/reservations", 1)
                .body(json!({ "schedule_id": schedule, "seat_no": 4 }).to_string()),
            S::NOT_FOUND,
            "NOT_FOUND",
        ),
        case(
            "hold before the sale",
            json_post("/reservations", 1)
                .body(json!({ "schedule_id": future[0], "seat_no": 1 }).to_string()),
            S::CONFLICT,
            "SALE_NOT_OPEN",
        ),
        case(
            "hold after the show started",
            json_post("/reservations", 1)
                .body(json!({ "schedule_id": past[0], "seat_no": 1 }).to_string()),
            S::CONFLICT,
            "SALE_NOT_OPEN",
        ),
        case(
            "seat held by another",
            json_post("/reservations", 1)
                .body(json!({ "schedule_id": schedule, "seat_no": 2 }).to_string()),
            S::CONFLICT,
            "SEAT_UNAVAILABLE",
        ),
        case(
            "seat sold",
            json_post("/reservations", 3)
                .body(json!({ "schedule_id": schedule, "seat_no": 1 }).to_string()),
            S::CONFLICT,
            "SEAT_UNAVAILABLE",
        ),
        case(
            "paid again under another key",
            json_post("/payments", 1)
                .header("Idempotency-Key", "other")
                .body(json!({ "reservation_id": paid }).to_string()),
            S::CONFLICT,
            "RESERVATION_NOT_HELD",
        ),
        case(
            "body over 64 KiB",
            json_post("/points/charge", 1)
                .header("Idempotency-Key", "big")
                .body(format!(r#"{{"amount":1,"x":"{}"}}"#, "a".repeat(70_000))),
            S::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
        case(
            "no content type",
            app.post("/reservations")
                .bearer_auth(token(1))
                .body(r#"{"schedule_id":1,"seat_no":3}"#),
            S::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        case(
            "text/plain",
            app.post("/reservations")
                .bearer_auth(token(1))
                .header("content-type", "text/plain")
                .body(r#"{"schedule_id":1,"seat_no":3}"#),
            S::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        case(
            "missing field",
            json_post("/reservations", 1).body(json!({ "schedule_id": schedule }).to_string()),
            S::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        case(
            "seat 0",
            json_post("/reservations", 1)
                .body(json!({ "schedule_id": schedule, "seat_no": 0 }).to_string()),
            S::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        case(
            "charge too large",
            json_post("/points/charge", 1)
                .header("Idempotency-Key", "c")
                .body(r#"{"amount":2000001}"#),
            S::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        case(
            "concert without schedules",
            app.post("/admin/concerts")
                .bearer_auth(admin_token())
                .json(&json!({ "title": "t", "schedules": [] })),
            S::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        case(
            "sale after start",
            app.post("/admin/concerts").bearer_auth(admin_token()).json(
                &json!({ "title": "t", "schedules": [{
                "starts_at": "2030-01-01T00:00:00Z", "sale_starts_at": "2030-01-02T00:00:00Z",
                "seat_count": 1, "price": 1 }] }),
            ),
            S::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        case(
            "time without zone",
            app.post("/admin/concerts").bearer_auth(admin_token()).json(
                &json!({ "title": "t", "schedules": [{
                "starts_at": "2030-01-01T00:00:00", "sale_starts_at": "2029-01-01T00:00:00Z",
                "seat_count": 1, "price": 1 }] }),
            ),
            S::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
    ];
    let _ = concert;
    for case in cases {
        let before = app.fingerprint().await;
        let response = case.request.send().await.unwrap();
        assert_eq!(response.status(), case.status, "case {:?}", case.name);
        assert_problem(response, case.status, case.code).await;
        assert_eq!(
            app.fingerprint().await,
            before,
            "case {:?} changed state",
            case.name
        );
    }
}

/// Malformed bodies for every JSON endpoint: never a 5xx, always problem+json, no state change.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_corpus_of_malformed_bodies_never_yields_a_5xx(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let (_, schedules) = app.create_concert(1, 3, 100).await;
    app.charge(1, 1_000).await;
    let reservation = app.hold_ok(1, schedules[0], 1).await;
    let huge = format!(r#"{{"amount":{}}}"#, "9".repeat(400));
    let mebibyte = format!(r#"{{"title":"{}"}}"#, "a".repeat(1024 * 1024));
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let truncated =
        json!({ "reservation_id": reservation, "schedule_id": schedules[0], "seat_no": 2 })
            .to_string();
    let truncated = truncated[..truncated.len() / 2].to_owned();
    let bodies: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("whitespace", "   ".into()),
        ("truncated", truncated),
        ("null", "null".into()),
        ("array", "[]".into()),
        ("string", r#""hello""#.into()),
        ("number", "42".into()),
        ("wrong types", r#"{"amount":"10","schedule_id":"1","seat_no":true,"reservation_id":5,"title":1,"schedules":{}}"#.into()),
        ("negative", r#"{"amount":-1,"schedule_id":-1,"seat_no":-1}"#.into()),
        ("i64 overflow", r#"{"amount":9223372036854775808,"schedule_id":9223372036854775808,"seat_no":9223372036854775808}"#.into()),
        ("huge number", huge),
        ("float", r#"{"amount":1.5,"schedule_id":1.5,"seat_no":1.5}"#.into()),
        ("exponent", r#"{"amount":1e400}"#.into()),
        ("nulls", r#"{"amount":null,"schedule_id":null,"seat_no":null,"reservation_id":null,"title":null}"#.into()),
        ("unknown field", r#"{"amount":1,"schedule_id":1,"seat_no":1,"reservation_id":"00000000-0000-0000-0000-000000000000","title":"t","schedules":[],"extra":1}"#.into()),
        ("duplicate field", r#"{"amount":1,"amount":2}"#.into()),
        ("bad utf-8", String::from_utf8_lossy(b"{\"title\":\"\xff\xfe\"}").into_owned()),
        ("deep nesting", nested),
        ("1 MiB", mebibyte),
    ];
    let endpoints: Vec<(&str, bool, bool)> = vec![
        // (path, admin, needs Idempotency-Key)
        ("/admin/concerts", true, false),
        ("/points/charge", false, true),
        ("/reservations", false, false),
        ("/payments", false, true),
    ];
    for (path, admin, keyed) in &endpoints {
        for (name, body) in &bodies {
            for content_type in ["application/json", "application/x-www-form-urlencoded"] {
                let mut request = app
                    .post(path)
                    .bearer_auth(if *admin { admin_token() } else { token(1) })
                    .header("content-type", content_type)
                    .body(body.clone());
                if *keyed {
                    request = request.header("Idempotency-Key", format!("corpus-{name}"));
                }
                let before = app.fingerprint().await;
                let response = request.send().await.unwrap();
                let status = response.status();
                assert!(
                    status.is_client_error(),
                    "{path} {name} {content_type}: got {status}"
                );
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json",
                    "{path} {name}"
                );
                assert_eq!(
                    app.fingerprint().await,
                    before,
                    "{path} {name} changed state"
                );
            }
        }
    }
}

/// Admin input Postgres would refuse, or that is not what SPEC §3 allows, is a 422 before it
/// reaches the database: text with control or bidi-override characters or nothing visible,
/// times that are not strict RFC 3339 or fall outside the years 2000..=2100.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn hostile_admin_input_is_422_and_changes_nothing(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let create = |title: &str, starts_at: &str, sale_starts_at: &str| {
        app.post("/admin/concerts")
            .bearer_auth(admin_token())
            .json(&json!({ "title": title, "schedules": [{
                "starts_at": starts_at, "sale_starts_at": sale_starts_at,
                "seat_count": 1, "price": 1 }] }))
            .send()
    };
    let (start, sale) = ("2030-01-02T00:00:00Z", "2030-01-01T00:00:00Z");
    let refused = [
        ("NUL in the title", "a\u{0}b", start, sale),
        ("bell in the title", "a\u{7}b", start, sale),
        ("C1 control in the title", "a\u{85}b", start, sale),
        ("right-to-left override", "abc\u{202E}gpj.exe", start, sale),
        ("bidi isolate", "abc\u{2066}x", start, sale),
        ("only an ideographic space", "\u{3000}", start, sale),
        ("only zero-width spaces", "\u{200B}\u{FEFF}", start, sale),
        (
            "before 4714 BC",
            "t",
            "-5000-01-02T00:00:00Z",
            "-5000-01-01T00:00:00Z",
        ),
        ("one-digit month and day", "t", "2030-1-2T00:00:00Z", sale),
        (
            "one-digit year and a space",
            "t",
            start,
            "1-01-01 00:00:00 +00:00",
        ),
        ("six-digit year", "t", "+200000-01-01T00:00:00Z", sale),
        ("space for T", "t", "2030-01-02 00:00:00Z", sale),
        (
            "offset without colon",
            "t",
            "2030-01-02T00:00:00+0000",
            sale,
        ),
        ("year 1999", "t", start, "1999-12-31T23:59:59Z"),
        ("year 2101", "t", "2101-01-01T00:00:00Z", sale),
        (
            "2100 in UTC is 2101",
            "t",
            "2100-12-31T23:00:00-05:00",
            sale,
        ),
    ];
    for (case, title, starts_at, sale_starts_at) in refused {
        let before = app.fingerprint().await;
        let response = create(title, starts_at, sale_starts_at).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "case {case:?}"
        );
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(
            app.fingerprint().await,
            before,
            "case {case:?} changed state"
        );
    }

    // The edges of what is allowed, including RFC 3339's lowercase t and z and a leap second.
    let accepted = [
        (
            "first instant",
            "2000-01-01T00:00:01Z",
            "2000-01-01T00:00:00Z",
        ),
        (
            "last instant",
            "2100-12-31T23:59:59.999Z",
            "2100-12-31T23:59:59Z",
        ),
        (
            "lowercase",
            "2030-01-02t00:00:00z",
            "2030-01-01t00:00:00+09:00",
        ),
        (
            "leap second",
            "2030-01-02T00:00:00Z",
            "2016-12-31T23:59:60Z",
        ),
    ];
    for (case, starts_at, sale_starts_at) in accepted {
        let response = create(
            "Right-to-left: \u{5E9}\u{5DC}\u{5D5}\u{5DD}",
            starts_at,
            sale_starts_at,
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "case {case:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        if case == "leap second" {
            // Stored, like Postgres itself reads one, as the first instant after it.
            assert_eq!(
                body["schedules"][0]["sale_starts_at"],
                "2017-01-01T00:00:00Z"
            );
        }
    }
}

/// A data exception (SQLSTATE class 22) that bad input still provokes in Postgres is the
/// client's fault: 422, never 500.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_postgres_data_exception_is_422(pool: PgPoolOptions, database: PgConnectOptions) {
    use axum::response::IntoResponse;
    use payment_svc::error::ApiError;

    let pool = pool.connect_with(database).await.unwrap();
    let long_ago = "-5000-01-01T00:00:00Z"
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let errors = [
        sqlx::query("SELECT $1::text")
            .bind("a\u{0}b")
            .execute(&pool)
            .await,
        sqlx::query("SELECT 1 / 0").execute(&pool).await,
        sqlx::query("SELECT $1::timestamptz")
            .bind(long_ago)
            .execute(&pool)
            .await,
    ];
    for error in errors {
        let error = error.expect_err("Postgres refuses the value");
        let code = error
            .as_database_error()
            .and_then(|db| db.code())
            .unwrap()
            .into_owned();
        assert!(code.starts_with("22"), "{error}: {code}");
        let response = ApiError::from(error).into_response();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{code}"
        );
    }
}

/// An integer field takes any JSON number whose value is whole (`1.0`, `1e2`), as JSON Schema's
/// `integer` in the OpenAPI document does; found by the fuzzer, which sent
/// `{"schedule_id": 1.0, "seat_no": 1}` (conforming) and got 422. A fraction stays 422, and so
/// does a float too large to hold every whole number exactly.
#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn whole_numbers_written_as_floats_are_integers(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let app = TestApp::spawn(database).await;
    let user = token(7);
    let created = app
        .post("/admin/concerts")
        .bearer_auth(admin_token())
        .json(&json!({ "title": "Floats", "schedules": [{
            "starts_at": "2099-01-01T00:00:00Z", "sale_starts_at": "2000-01-01T00:00:00Z",
            "seat_count": 2.0, "price": 1e2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: serde_json::Value = created.json().await.unwrap();
    let schedule = &created["schedules"][0];
    assert_eq!(
        (&schedule["seat_count"], &schedule["price"]),
        (&json!(2), &json!(100))
    );
    let schedule_id = schedule["schedule_id"].as_i64().unwrap() as f64;

    let charge = |amount: serde_json::Value, key: &str| {
        app.post("/points/charge")
            .bearer_auth(&user)
            .header("Idempotency-Key", key)
            .json(&json!({ "amount": amount }))
            .send()
    };
    let charged = charge(json!(150.0), "a").await.unwrap();
    assert_eq!(charged.status(), StatusCode::OK);
    assert_eq!(
        charged.json::<serde_json::Value>().await.unwrap()["balance"],
        150
    );
    for (amount, key) in [
        (json!(1.5), "b"),
        (json!(1e300), "c"),
        (json!(9007199254740994.0), "d"),
    ] {
        let refused = charge(amount.clone(), key).await.unwrap();
        assert_problem(
            refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }

    let held = app
        .post("/reservations")
        .bearer_auth(&user)
        .json(&json!({ "schedule_id": schedule_id, "seat_no": 1.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), StatusCode::CREATED);
    let refused = app
        .post("/reservations")
        .bearer_auth(&user)
        .json(&json!({ "schedule_id": schedule_id + 0.5, "seat_no": 2 }))
        .send()
        .await
        .unwrap();
    assert_problem(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}
