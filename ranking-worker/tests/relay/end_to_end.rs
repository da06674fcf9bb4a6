//! From a payment through payment-svc to the ranking served by ranking-worker, woken by LISTEN.

use std::time::Duration;

use payment_svc::auth::{mint_token, JwtSecret};
use payment_svc::domain::{Role, UserId};
use payment_svc::startup::{Application, Settings};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::helpers::{eventually, get_json, get_text, Harness};

const SECRET: &str = "end-to-end-secret-that-is-32-bytes-long";

struct Shop {
    base: String,
    client: reqwest::Client,
}

impl Shop {
    fn token(user: i64, role: Role) -> String {
        mint_token(
            &JwtSecret::parse(SECRET).unwrap(),
            UserId::parse(user).unwrap(),
            role,
            Duration::from_secs(600),
        )
        .unwrap()
    }

    async fn post(&self, path: &str, user: i64, role: Role, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(Self::token(user, role))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Creates a two-seat schedule and sells it out; returns (concert_id, schedule_id).
    async fn sell_out(&self, buyer: i64) -> (i64, i64) {
        let now = chrono::Utc::now();
        let concert = self
            .post(
                "/admin/concerts",
                1,
                Role::Admin,
                json!({ "title": "Live", "schedules": [{
                "starts_at": now + chrono::Duration::days(10),
                "sale_starts_at": now - chrono::Duration::seconds(93),
                "seat_count": 2, "price": 50 }] }),
            )
            .await;
        let schedule = concert["schedules"][0]["schedule_id"].as_i64().unwrap();
        self.post(
            "/points/charge",
            buyer,
            Role::User,
            json!({ "amount": 100 }),
        )
        .await;
        for seat in 1..=2 {
            let hold = self
                .post(
                    "/reservations",
                    buyer,
                    Role::User,
                    json!({ "schedule_id": schedule, "seat_no": seat }),
                )
                .await;
            self.post(
                "/payments",
                buyer,
                Role::User,
                json!({ "reservation_id": hold["reservation_id"] }),
            )
            .await;
        }
        (concert["concert_id"].as_i64().unwrap(), schedule)
    }
}

#[sqlx::test(migrator = "shared::MIGRATOR")]
async fn a_sold_out_schedule_reaches_the_ranking_promptly_with_its_exact_score(
    _: PgPoolOptions,
    database: PgConnectOptions,
) {
    let harness = Harness::new(database.clone()).await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();

    let shop = Application::build(
        Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            jwt_secret: JwtSecret::parse(SECRET).unwrap(),
            hold_ttl: Duration::from_secs(300),
            lock_timeout: Duration::from_secs(5),
            max_connections: 5,
        },
        database.clone(),
    )
    .await
    .unwrap();
    let shop_base = format!("http://127.0.0.1:{}", shop.port());
    tokio::spawn(shop.run_until_stopped(shutdown.clone()));

    // A poll interval of a minute: only LISTEN/NOTIFY can make the relay prompt.
    let worker_base = harness
        .start_worker(Duration::from_secs(60), &shutdown)
        .await;

    // Wait until the worker is listening, so the notification cannot arrive before it.
    eventually(Duration::from_secs(10), async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(&harness.pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    let client = reqwest::Client::new();

    let shop = Shop {
        base: shop_base,
        client: client.clone(),
    };
    for round in 0..2 {
        let (concert, schedule) = shop.sell_out(10 + round).await;
        let member = format!("concert:{concert}:schedule:{schedule}");
        let mut entries = Vec::new();
        eventually(Duration::from_secs(10), async || {
            let ranking: Value = get_json(
                &client,
                &format!("{worker_base}/rankings/sold-out?limit=100"),
            )
            .await;
            entries = ranking["entries"].as_array().unwrap().clone();
            entries.iter().any(|e| e["member"] == member)
        })
        .await;

        let (sale_starts_at, sold_out_at): (
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
        ) = sqlx::query_as("SELECT sale_starts_at, sold_out_at FROM schedules WHERE id = $1")
            .bind(schedule)
            .fetch_one(&harness.pool)
            .await
            .unwrap();
        let expected = (sold_out_at - sale_starts_at).num_milliseconds() as f64 / 1000.0;
        let entry = entries.iter().find(|e| e["member"] == member).unwrap();
        assert_eq!(entry["sold_out_seconds"].as_f64(), Some(expected));
        assert!(
            expected >= 93.0,
            "from sale opening, not from when the worker ran"
        );
        assert_eq!(entry["concert_id"], concert);
        assert_eq!(entry["schedule_id"], schedule);
        assert_eq!(entry["concert_title"], "Live");
        assert_eq!(
            entry["sold_out_at"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap(),
            sold_out_at
        );
        // The mirror is written just after the batch reaches Redis, so a reader can see the
        // entry a moment before the mirror catches up.
        eventually(Duration::from_secs(10), async || {
            let (position, mirror): (String, String) = sqlx::query_as(
                "SELECT o.tx_id::text || '/' || o.seq, c.position_tx::text || '/' || c.position_seq
                 FROM outbox o, outbox_consumers c WHERE o.aggregate_id = $1 AND c.name = 'ranking'",
            )
            .bind(schedule)
            .fetch_one(&harness.pool)
            .await
            .unwrap();
            position == mirror
        })
        .await;
    }

    let ranking: Value = get_json(&client, &format!("{worker_base}/rankings/sold-out")).await;
    assert_eq!(ranking["key"], harness.key.as_str());
    let ranks: Vec<i64> = ranking["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rank"].as_i64().unwrap())
        .collect();
    assert_eq!(ranks, vec![1, 2]);
    let scores: Vec<f64> = ranking["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sold_out_seconds"].as_f64().unwrap())
        .collect();
    assert!(scores[0] <= scores[1], "fastest first");
    // The recorder is process-wide and other tests' workers share it: check the series
    // exist, not their values. The lag histogram is recorded with the `event applied` lines, on
    // a thread of their own, so it may land just after the ranking does.
    let series = [
        "consumer_events_applied_total{consumer=\"ranking\"}",
        "consumer_commit_to_applied_seconds_bucket{consumer=\"ranking\"",
        "consumer_lag_events{consumer=\"ranking\"}",
        "consumer_lag_seconds{consumer=\"ranking\"}",
        "consumer_active{consumer=\"ranking\"}",
    ];
    eventually(Duration::from_secs(10), async || {
        let metrics = get_text(&client, &format!("{worker_base}/metrics")).await;
        series.iter().all(|series| metrics.contains(series))
    })
    .await;
}
