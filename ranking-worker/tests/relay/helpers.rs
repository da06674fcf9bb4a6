//! A fresh database per test (`#[sqlx::test]`) and a unique ranking key per test in the real Redis.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ranking_worker::ranking::{Ranking, RankingKeys};
use ranking_worker::relay::{Outcome, Relay, RelaySettings};
use ranking_worker::worker::{Worker, WorkerSettings};
use redis::aio::ConnectionManager;
use shared::events::ConcertSoldOut;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct Harness {
    pub pool: PgPool,
    pub database: PgConnectOptions,
    pub redis: ConnectionManager,
    pub key: String,
    pub ranking: Ranking,
}

pub fn settings() -> RelaySettings {
    RelaySettings {
        batch_size: 100,
        lease: Duration::from_secs(30),
        max_attempts: 10,
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
    }
}

impl Harness {
    pub async fn new(database: PgConnectOptions) -> Self {
        shared::telemetry::init_for_tests();
        let pool = shared::db::pool_options(10).connect_lazy_with(database.clone());
        let redis = ranking_worker::redis_conn::connect(&redis_url()).unwrap();
        let key = format!("test:{}:ranking", Uuid::new_v4());
        let ranking = Ranking::new(RankingKeys::parse(&key).unwrap());
        Self {
            pool,
            database,
            redis,
            key,
            ranking,
        }
    }

    pub fn relay(&self, settings: RelaySettings) -> Relay {
        Relay::new(
            self.pool.clone(),
            self.redis.clone(),
            self.ranking.clone(),
            settings,
        )
    }

    /// Starts a worker (relay and HTTP) in this process on the test's database and ranking;
    /// it runs until `shutdown` is cancelled. Returns its base URL.
    pub async fn start_worker(
        &self,
        poll_interval: Duration,
        shutdown: &CancellationToken,
    ) -> String {
        let worker = Worker::build(
            WorkerSettings {
                http_addr: "127.0.0.1:0".parse().unwrap(),
                redis_url: redis_url(),
                ranking_keys: RankingKeys::parse(&self.key).unwrap(),
                relay: settings(),
                poll_interval,
                max_connections: 5,
            },
            self.database.clone(),
        )
        .await
        .unwrap();
        let base = format!("http://127.0.0.1:{}", worker.port());
        tokio::spawn(worker.run_until_stopped(shutdown.clone()));
        base
    }

    /// The URL of this test's database, for worker processes.
    pub fn database_url(&self) -> String {
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by scripts/test");
        let base = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(head, _)| head)
            .to_owned();
        format!(
            "{base}/{}",
            self.database
                .get_database()
                .expect("sqlx::test names the database")
        )
    }

    /// Writes `count` sold-out events for distinct schedules, as payment-svc would.
    pub async fn enqueue(&self, count: usize) -> Vec<ConcertSoldOut> {
        let first: i64 =
            sqlx::query_scalar("SELECT COALESCE(max(aggregate_id), 0) + 1 FROM outbox")
                .fetch_one(&self.pool)
                .await
                .unwrap();
        let events: Vec<ConcertSoldOut> = (0..count as i64).map(|i| event(first + i)).collect();
        let mut tx = self.pool.begin().await.unwrap();
        for event in &events {
            shared::outbox::enqueue(&mut tx, event).await.unwrap();
        }
        tx.commit().await.unwrap();
        events
    }

    /// Runs the relay until a step claims nothing, adding up the outcomes.
    pub async fn drain(&self, relay: &Relay) -> Outcome {
        let mut total = Outcome::default();
        loop {
            let outcome = relay.relay_once().await.unwrap();
            if outcome.claimed == 0 {
                return total;
            }
            add(&mut total, &outcome);
        }
    }

    /// member → score, straight from Redis.
    pub async fn scores(&self) -> HashMap<String, f64> {
        let mut redis = self.redis.clone();
        redis::cmd("ZRANGE")
            .arg(&self.key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async::<Vec<(String, f64)>>(&mut redis)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// Claimed rows whose event Redis already records as applied: a worker died between its
    /// apply and its ack.
    pub async fn applied_but_not_acked(&self) -> Vec<Uuid> {
        let claimed: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM outbox WHERE status = 'PROCESSING'")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        if claimed.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = claimed.iter().map(Uuid::to_string).collect();
        let members: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(format!("{{{}}}:applied", self.key))
            .arg(ids)
            .query_async(&mut self.redis.clone())
            .await
            .unwrap();
        claimed
            .into_iter()
            .zip(members)
            .filter_map(|(event_id, member)| member.map(|_| event_id))
            .collect()
    }

    /// How many sessions on this test's database carry `application_name`.
    pub async fn sessions_named(&self, application_name: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
        )
        .bind(application_name)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    pub async fn count_with_status(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = $1")
            .bind(status)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Asserts the ranking holds exactly these events, each with its exact score.
    pub async fn assert_ranking_is(&self, events: &[ConcertSoldOut]) {
        let scores = self.scores().await;
        assert_eq!(scores.len(), events.len(), "one member per event");
        for event in events {
            let member = ranking_worker::ranking::member(event);
            assert_eq!(
                scores.get(&member),
                Some(&event.sold_out_seconds()),
                "{member}"
            );
        }
    }
}

pub fn add(total: &mut Outcome, outcome: &Outcome) {
    total.claimed += outcome.claimed;
    total.applied += outcome.applied;
    total.duplicates += outcome.duplicates;
    total.retried += outcome.retried;
    total.dead_lettered += outcome.dead_lettered;
}

/// A sold-out event for `schedule_id` with a duration that differs per schedule.
pub fn event(schedule_id: i64) -> ConcertSoldOut {
    let sale: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 11, 1, 11, 0, 0).unwrap();
    ConcertSoldOut {
        event_id: Uuid::now_v7(),
        concert_id: schedule_id / 3 + 1,
        schedule_id,
        concert_title: format!("Concert {}", schedule_id / 3 + 1),
        seat_count: 100,
        sale_started_at: sale,
        sold_out_at: sale + chrono::Duration::milliseconds(1_000 + schedule_id * 7_919 % 3_600_000),
    }
}

/// Polls `condition` until it holds, failing after `deadline`.
pub async fn eventually(deadline: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + deadline;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `url` and parses the JSON body, whatever the status.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}
