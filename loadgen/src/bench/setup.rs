//! What every benchmark needs: fresh databases, bulk outbox rows, the services as processes,
//! their memory, and percentiles.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ranking_worker::consumers;
use ranking_worker::log::{self, LogPosition};
use ranking_worker::ranking::{Ranking, RankingKeys, SinkPosition, StoredPosition};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

/// Where the benchmarks run: one Postgres and one Redis for everything, baselines included.
#[derive(Debug, Clone)]
pub struct Env {
    /// A superuser's URL; each benchmark creates its own database next to it.
    pub admin_url: String,
    pub redis_url: String,
    /// Where the release binaries of payment-svc and ranking-worker are.
    pub bin_dir: PathBuf,
    /// Scratch files: service logs, graphile-worker's install.
    pub work_dir: PathBuf,
}

/// A database created for one benchmark, migrated, dropped by [`Database::drop_now`].
pub struct Database {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin: PgConnectOptions,
}

impl Env {
    pub async fn fresh_database(&self, name: &str) -> anyhow::Result<Database> {
        let admin: PgConnectOptions = self.admin_url.parse()?;
        let mut connection = admin.connect().await.context("connecting to Postgres")?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut connection)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        let options = admin.clone().database(name);
        // The services' own pool settings, so the bare-SQL baselines run as fast as they can.
        let pool = shared::db::pool_options(8).connect_with(options).await?;
        shared::MIGRATOR.run(&pool).await?;
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(base, _)| base);
        Ok(Database {
            name: name.to_owned(),
            url: format!("{base}/{name}"),
            pool,
            admin,
        })
    }

    /// Starts `ranking-worker run` against `database`, logging JSON to `log`.
    pub fn spawn_worker(
        &self,
        database: &Database,
        ranking_key: &str,
        port: u16,
        settings: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Service> {
        let mut command = Command::new(self.bin_dir.join("ranking-worker"));
        command
            .arg("run")
            .env_clear()
            .env("DATABASE_URL", &database.url)
            .env("REDIS_URL", &self.redis_url)
            .env("RANKING_KEY", ranking_key)
            .env("RANKING_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json");
        for (key, value) in settings {
            command.env(key, value);
        }
        Service::spawn("ranking-worker", command, log, port)
    }

    /// Starts `payment-svc serve` against `database`.
    pub fn spawn_payment_svc(
        &self,
        database: &Database,
        jwt_secret: &str,
        port: u16,
        log: &Path,
    ) -> anyhow::Result<Service> {
        let mut command = Command::new(self.bin_dir.join("payment-svc"));
        command
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", &database.url)
            .env("JWT_SECRET", jwt_secret)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            // One line per request would measure the log writer, not the service.
            .env("RUST_LOG", "warn");
        Service::spawn("payment-svc", command, log, port)
    }
}

impl Database {
    pub async fn drop_now(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let mut connection = self.admin.connect().await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut connection)
        .await?;
        Ok(())
    }

    /// Inserts `count` ConcertSoldOut rows for schedules `first..first + count` in one
    /// statement, with payloads exactly as payment-svc writes them.
    pub async fn fill(&self, first: i64, count: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, payload)
             SELECT id, 'ConcertSoldOut', 1, s, jsonb_build_object(
                        'event_id', id, 'concert_id', s, 'schedule_id', s,
                        'concert_title', 'Bench concert ' || s, 'seat_count', 100,
                        'sale_started_at', '2026-01-01T00:00:00Z',
                        'sold_out_at', to_char((timestamptz '2026-01-01T00:00:00Z'
                            + s * interval '1 millisecond') AT TIME ZONE 'UTC',
                            'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))
             FROM (SELECT gen_random_uuid() AS id, s
                   FROM generate_series($1::bigint, $1 + $2 - 1) AS s) AS rows",
        )
        .bind(first)
        .bind(count)
        .execute(&self.pool)
        .await?;
        sqlx::query("VACUUM ANALYZE outbox")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records every row so far as passed by the ranking `key`, in Redis and in the mirror, as
    /// if a worker had applied them: they stay in the log as history (retained rows).
    pub async fn mark_passed(&self, redis_url: &str, key: &str) -> anyhow::Result<()> {
        let last: LogPosition = sqlx::query_as::<_, (i64, i64)>(
            "SELECT tx_id::text::bigint, seq FROM outbox ORDER BY tx_id DESC, seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map_or(LogPosition::START, |(tx_id, seq)| LogPosition {
            tx_id,
            seq,
        });
        let ranking = Ranking::new(RankingKeys::parse(key).map_err(anyhow::Error::msg)?);
        let mut redis = ranking_worker::redis_conn::connect(redis_url)?;
        let to = StoredPosition {
            log_id: log::log_id(&self.pool).await?,
            position: last,
        };
        // The apply script with no events: moves a missing position to `to`.
        ranking
            .apply(&mut redis, &SinkPosition::Missing, to, &[])
            .await?;
        consumers::advance_mirror(&self.pool, consumers::RANKING, last).await?;
        Ok(())
    }

    /// Rows the ranking consumer has not passed yet, by Postgres's mirror of its position.
    pub async fn unfinished(&self) -> anyhow::Result<i64> {
        let mirror = consumers::get(&self.pool, consumers::RANKING)
            .await?
            .position();
        Ok(log::lag(&self.pool, mirror).await?.events)
    }

    /// Waits until every row is processed; how long that took from `since`.
    pub async fn wait_drained(&self, since: Instant, limit: Duration) -> anyhow::Result<Duration> {
        loop {
            if self.unfinished().await? == 0 {
                return Ok(since.elapsed());
            }
            if since.elapsed() > limit {
                bail!("not drained after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A service process started by a benchmark; SIGTERMed on drop if still running.
pub struct Service {
    pub name: &'static str,
    child: Child,
}

impl Service {
    fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
        port: u16,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log)?;
        let child = command
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let service = Self { name, child };
        service.wait_ready(port)?;
        Ok(service)
    }

    fn wait_ready(&self, port: u16) -> anyhow::Result<()> {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("{} did not listen on {port} within 20 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, and its peak so far, in MiB (from /proc).
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> f64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        Ok(Memory {
            current_mib: field("VmRSS:"),
            peak_mib: field("VmHWM:"),
        })
    }

    /// SIGTERM, then wait: the services' clean shutdown.
    pub fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = terminate(&mut self.child);
        }
    }
}

fn terminate(child: &mut Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub current_mib: f64,
    pub peak_mib: f64,
}

/// The `p`-th percentile (0..=100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A ranking key of its own for each benchmark run.
pub fn ranking_key(name: &str) -> String {
    format!("bench:{name}:{}", Uuid::new_v4())
}
