//! A fresh database per test (`#[sqlx::test]`) and a unique ranking key per test in the real Redis;
//! private Redis servers and a TCP proxy for the tests that break Redis.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ranking_worker::ranking::{Ranking, RankingKeys};
use ranking_worker::redis_conn::RedisUrl;
use ranking_worker::relay::{Outcome, Relay, RelaySettings};
use ranking_worker::webhook::WebhookSettings;
use ranking_worker::worker::{Worker, WorkerSettings};
use redis::aio::ConnectionManager;
use shared::events::ConcertSoldOut;
pub use shared::testing::eventually;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct Harness {
    pub pool: PgPool,
    pub database: PgConnectOptions,
    /// The Redis the ranking lives in: the shared one, or a test's private one.
    pub redis_url: String,
    pub redis: ConnectionManager,
    pub key: String,
    pub ranking: Ranking,
}

pub fn settings() -> RelaySettings {
    RelaySettings {
        batch_size: 100,
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
    }
}

impl Harness {
    pub async fn new(database: PgConnectOptions) -> Self {
        Self::with_redis(database, &redis_url()).await
    }

    /// A harness whose ranking lives in the Redis at `redis_url`.
    pub async fn with_redis(database: PgConnectOptions, redis_url: &str) -> Self {
        shared::telemetry::init_for_tests();
        let pool = shared::db::pool_options(10).connect_lazy_with(database.clone());
        let redis = ranking_worker::redis_conn::connect(redis_url).unwrap();
        let key = format!("test:{}:ranking", Uuid::new_v4());
        let ranking = Ranking::new(RankingKeys::parse(&key).unwrap());
        Self {
            pool,
            database,
            redis_url: redis_url.to_owned(),
            redis,
            key,
            ranking,
        }
    }

    pub fn relay(&self, settings: RelaySettings) -> Relay {
        Relay::new(
            self.pool.clone(),
            &self.redis_url,
            self.ranking.clone(),
            settings,
        )
        .unwrap()
    }

    /// Starts a worker (relay and HTTP) in this process on the test's database and ranking;
    /// it runs until `shutdown` is cancelled. Returns its base URL.
    pub async fn start_worker(
        &self,
        poll_interval: Duration,
        shutdown: &CancellationToken,
    ) -> String {
        self.start_worker_with(poll_interval, shutdown, None).await
    }

    /// [`Self::start_worker`], polling every 50 ms, until the guard it returns with the base URL
    /// is dropped.
    pub async fn start_worker_guarded(&self) -> (String, DropGuard) {
        let shutdown = CancellationToken::new();
        let base = self
            .start_worker(Duration::from_millis(50), &shutdown)
            .await;
        (base, shutdown.drop_guard())
    }

    /// [`Self::start_worker`], with the webhook consumer when `webhook` is set.
    pub async fn start_worker_with(
        &self,
        poll_interval: Duration,
        shutdown: &CancellationToken,
        webhook: Option<WebhookSettings>,
    ) -> String {
        let settings = WorkerSettings {
            webhook,
            ..self.worker_settings(poll_interval)
        };
        self.start_worker_from(settings, shutdown).await
    }

    /// Starts two workers in this process on the test's database and ranking: the first, once
    /// it is active; the second, once it stands by.
    pub async fn start_active_and_standby(&self) -> ActiveAndStandby {
        let (active_stop, standby_stop) = (CancellationToken::new(), CancellationToken::new());
        let guards = (
            active_stop.clone().drop_guard(),
            standby_stop.clone().drop_guard(),
        );
        let client = reqwest::Client::new();
        let active = self
            .start_worker(Duration::from_millis(50), &active_stop)
            .await;
        eventually(Duration::from_secs(10), async || {
            role(&client, &active).await == "active"
        })
        .await;
        let standby = self
            .start_worker(Duration::from_millis(50), &standby_stop)
            .await;
        eventually(Duration::from_secs(10), async || {
            role(&client, &standby).await == "standby"
        })
        .await;
        ActiveAndStandby {
            active,
            standby,
            active_stop,
            _stop: guards,
        }
    }

    /// The settings [`Self::start_worker`] uses, for a test to change one.
    pub fn worker_settings(&self, poll_interval: Duration) -> WorkerSettings {
        WorkerSettings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            redis_url: RedisUrl::parse(&self.redis_url).unwrap(),
            ranking_keys: RankingKeys::parse(&self.key).unwrap(),
            periods: self.ranking.periods().to_owned(),
            relay: settings(),
            poll_interval,
            // The smallest pool allowed: the consumer must not starve with it.
            max_connections: ranking_worker::worker::MIN_POOL_CONNECTIONS,
            webhook: None,
            stream_max_clients: 1_000,
        }
    }

    /// Starts a worker with `settings` on the test's database; it runs until `shutdown` is
    /// cancelled. Returns its base URL.
    pub async fn start_worker_from(
        &self,
        settings: WorkerSettings,
        shutdown: &CancellationToken,
    ) -> String {
        let worker = Worker::build(settings, self.database.clone())
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

    /// The `ranking-worker` binary with `args`, on this test's database, Redis and ranking and
    /// nothing else of the test's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ranking-worker"));
        command
            .args(args)
            .env_clear()
            .env("DATABASE_URL", self.database_url())
            .env("REDIS_URL", &self.redis_url)
            .env("RANKING_KEY", &self.key);
        command
    }

    /// Runs the binary with `args` on the test's database and ranking: (success, stdout,
    /// stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = self.command(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }

    /// Starts `ranking-worker run` as a process of its own on this test's database and ranking,
    /// with `env` added, its log (JSON lines) appended to `log`.
    pub fn spawn_worker(&self, log: &std::path::Path, env: &[(&str, &str)]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.command(&["run"])
            .env("DATABASE_MAX_CONNECTIONS", "3")
            .env("RANKING_HTTP_ADDR", "127.0.0.1:0")
            .env("BATCH_SIZE", "20")
            .env("POLL_INTERVAL_MS", "50")
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
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

    /// Steps the relay until it has applied `count` events (another test's open transaction may
    /// hold rows back for a moment).
    pub async fn apply_at_least(&self, relay: &mut Relay, count: usize) {
        let mut applied = 0;
        eventually(Duration::from_secs(30), async || {
            applied += relay.relay_once().await.unwrap().applied;
            applied >= count
        })
        .await;
    }

    /// Runs the relay until it has read everything committed, adding up the outcomes. Rows
    /// held back by another test's open transaction are waited for.
    pub async fn drain(&self, relay: &mut Relay) -> Outcome {
        let mut total = Outcome::default();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let outcome = relay.relay_once().await.unwrap();
            add(&mut total, &outcome);
            if outcome.caught_up() {
                return total;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "the drain never caught up"
            );
            if outcome.held_back {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// member → score, straight from Redis.
    pub async fn scores(&self) -> HashMap<String, f64> {
        self.try_scores().await.unwrap()
    }

    /// [`Self::scores`], for a Redis that may just have restarted (the first command on a
    /// broken connection fails).
    pub async fn try_scores(&self) -> redis::RedisResult<HashMap<String, f64>> {
        let mut redis = self.redis.clone();
        Ok(redis::cmd("ZRANGE")
            .arg(&self.key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async::<Vec<(String, f64)>>(&mut redis)
            .await?
            .into_iter()
            .collect())
    }

    /// How many events the apply script has applied: each exactly once, unless Redis lost data.
    pub async fn applied_events(&self) -> u64 {
        let mut redis = self.redis.clone();
        redis::cmd("GET")
            .arg(self.ranking.keys().applied_events())
            .query_async::<Option<u64>>(&mut redis)
            .await
            .unwrap()
            .unwrap_or(0)
    }

    /// The ranking consumer's row: mirror, state, active instance.
    pub async fn consumer(&self) -> ranking_worker::consumers::ConsumerRow {
        ranking_worker::consumers::get(&self.pool, ranking_worker::consumers::RANKING)
            .await
            .unwrap()
    }

    /// The process id in the `active_instance` that `consumer` reports (`host:pid`).
    pub async fn active_pid(&self, consumer: &str) -> Option<u32> {
        let instance = ranking_worker::consumers::get(&self.pool, consumer)
            .await
            .ok()?
            .active_instance?;
        instance.rsplit_once(':')?.1.parse().ok()
    }

    pub async fn dead_letters(&self) -> Vec<Uuid> {
        ranking_worker::consumers::dead_letters(&self.pool, None)
            .await
            .unwrap()
            .into_iter()
            .map(|letter| letter.event_id)
            .collect()
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
    total.read += outcome.read;
    total.applied += outcome.applied;
    total.dead_lettered += outcome.dead_lettered;
    total.skipped += outcome.skipped;
    total.resynced |= outcome.resynced;
}

/// Stops a worker process as docker stops a container (SIGTERM), asserting it exits 0.
pub fn stop_with_sigterm(mut worker: Child) {
    assert!(Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(worker.wait().unwrap().success(), "SIGTERM exits 0");
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

/// Two workers of one test, from [`Harness::start_active_and_standby`]: their base URLs.
pub struct ActiveAndStandby {
    pub active: String,
    pub standby: String,
    /// Cancelled, stops the active one; both stop when this is dropped.
    pub active_stop: CancellationToken,
    _stop: (DropGuard, DropGuard),
}

/// The ranking consumer's role on the worker at `base` (`active`, `standby`), as GET /consumers
/// shows it.
pub async fn role(client: &reqwest::Client, base: &str) -> serde_json::Value {
    get_json(client, &format!("{base}/consumers")).await["consumers"][0]["role"].clone()
}

/// The ranking's members for `events`, in their order.
pub fn members(events: &[ConcertSoldOut]) -> Vec<String> {
    events.iter().map(ranking_worker::ranking::member).collect()
}

/// GETs `url` and returns the body as text, whatever the status.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// GETs `url` and parses the JSON body, whatever the status.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis of a test's own, so it can be stopped, emptied or demoted without disturbing others.
pub struct PrivateRedis {
    pub port: u16,
    process: Option<Child>,
    /// Its working directory: a replica's full sync writes an RDB file there even with
    /// persistence off.
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("private-redis-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port: free_port(),
            process: None,
            dir,
        };
        redis.restart();
        redis
    }

    /// Starts it again, empty (it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.process = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection of the test's own, for commands like REPLICAOF.
    pub async fn connection(&self) -> ConnectionManager {
        ranking_worker::redis_conn::connect(&self.url()).unwrap()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy the test retargets, as a DNS name or a virtual IP is moved to a new primary in
/// production: new connections go to the current target, open ones stay where they are.
pub struct Proxy {
    pub port: u16,
    target: Arc<Mutex<u16>>,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(Mutex::new(target));
        let current = target.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let port = *current.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, target }
    }

    pub fn retarget(&self, port: u16) {
        *self.target.lock().unwrap() = port;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
