//! A real payment-svc on port 0 against a fresh database per test (`#[sqlx::test]`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use payment_svc::auth::{mint_token, JwtSecret};
use payment_svc::domain::{Role, UserId};
use payment_svc::startup::{Application, Limits, Settings};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
pub use shared::testing::eventually;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

pub struct TestApp {
    pub base: String,
    /// A separate pool for assertions on the database behind the app.
    pub db: PgPool,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn settings() -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        jwt_secret: JwtSecret::parse(SECRET).unwrap(),
        hold_ttl: Duration::from_secs(300),
        lock_timeout: Duration::from_secs(5),
        max_connections: 20,
    }
}

impl TestApp {
    pub async fn spawn(database: PgConnectOptions) -> Self {
        Self::spawn_with(database, settings()).await
    }

    pub async fn spawn_with(database: PgConnectOptions, settings: Settings) -> Self {
        Self::spawn_with_limits(database, settings, Limits::default()).await
    }

    pub async fn spawn_with_limits(
        database: PgConnectOptions,
        settings: Settings,
        limits: Limits,
    ) -> Self {
        shared::telemetry::init_for_tests();
        let app = Application::build_with_limits(settings, limits, database.clone())
            .await
            .expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let db = shared::db::pool_options(5).connect_lazy_with(database);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        Self {
            base,
            db,
            client,
            shutdown,
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.base))
    }

    /// Creates a concert whose schedules are on sale now; returns (concert_id, schedule_ids).
    pub async fn create_concert(
        &self,
        schedules: usize,
        seat_count: i64,
        price: i64,
    ) -> (i64, Vec<i64>) {
        let now = Utc::now();
        self.create_concert_at(
            schedules,
            seat_count,
            price,
            now - chrono::Duration::minutes(1),
            now + chrono::Duration::days(30),
        )
        .await
    }

    pub async fn create_concert_at(
        &self,
        schedules: usize,
        seat_count: i64,
        price: i64,
        sale_starts_at: DateTime<Utc>,
        starts_at: DateTime<Utc>,
    ) -> (i64, Vec<i64>) {
        let schedule = json!({
            "starts_at": starts_at, "sale_starts_at": sale_starts_at,
            "seat_count": seat_count, "price": price,
        });
        let response = self
            .post("/admin/concerts")
            .bearer_auth(admin_token())
            .json(&json!({ "title": "Test concert", "schedules": vec![schedule; schedules] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let ids = body["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["schedule_id"].as_i64().unwrap())
            .collect();
        (body["concert_id"].as_i64().unwrap(), ids)
    }

    pub async fn charge(&self, user: i64, amount: i64) -> Response {
        self.post("/points/charge")
            .bearer_auth(token(user))
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&json!({ "amount": amount }))
            .send()
            .await
            .unwrap()
    }

    pub async fn hold(&self, user: i64, schedule_id: i64, seat_no: i64) -> Response {
        self.post("/reservations")
            .bearer_auth(token(user))
            .json(&json!({ "schedule_id": schedule_id, "seat_no": seat_no }))
            .send()
            .await
            .unwrap()
    }

    /// Holds a seat that must be free; returns the reservation id.
    pub async fn hold_ok(&self, user: i64, schedule_id: i64, seat_no: i64) -> Uuid {
        let response = self.hold(user, schedule_id, seat_no).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["reservation_id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn pay(&self, user: i64, reservation_id: Uuid, key: &str) -> Response {
        self.post("/payments")
            .bearer_auth(token(user))
            .header("Idempotency-Key", key)
            .json(&json!({ "reservation_id": reservation_id }))
            .send()
            .await
            .unwrap()
    }

    /// GET /reservations/{id} as `user`, its body whatever the status.
    pub async fn reservation(&self, user: i64, id: Uuid) -> Value {
        self.get(&format!("/reservations/{id}"))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The service's Prometheus metrics, as text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn balance(&self, user: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE((SELECT balance FROM point_balances WHERE user_id = $1), 0)",
        )
        .bind(user)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    /// How many payments were made, by anyone.
    pub async fn payments(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn outbox_rows(&self, schedule_id: i64) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE aggregate_id = $1")
            .bind(schedule_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// A digest of every table's contents: equal before and after means nothing changed.
    pub async fn fingerprint(&self) -> String {
        let mut digest = String::new();
        for table in [
            "concerts",
            "schedules",
            "reservations",
            "point_balances",
            "point_charges",
            "payments",
            "idempotency_keys",
            "outbox",
        ] {
            let sql = format!("SELECT md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t");
            let table_digest: String = sqlx::query_scalar(&sql).fetch_one(&self.db).await.unwrap();
            digest.push_str(&table_digest);
        }
        digest
    }
}

pub fn token(user: i64) -> String {
    mint(user, Role::User, Duration::from_secs(3600))
}

pub fn admin_token() -> String {
    mint(1_000_000, Role::Admin, Duration::from_secs(3600))
}

pub fn mint(user: i64, role: Role, ttl: Duration) -> String {
    mint_token(
        &JwtSecret::parse(SECRET).unwrap(),
        UserId::parse(user).unwrap(),
        role,
        ttl,
    )
    .unwrap()
}

/// Sends `head`, a request whose body stops short, to the app at `address` on a connection of
/// its own; returns what the app answers until it names `REQUEST_TIMEOUT` or closes the
/// connection, asserting it answers within 5 s.
pub async fn answer_to_a_stalled_body(address: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            response.extend_from_slice(&buffer[..n]);
            if n == 0 || String::from_utf8_lossy(&response).contains("REQUEST_TIMEOUT") {
                break;
            }
        }
    })
    .await;
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(read.is_ok(), "no answer within 5 s: {response:?}");
    response
}

/// Asserts a problem+json response with this status and code; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for expected {code}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    body
}
