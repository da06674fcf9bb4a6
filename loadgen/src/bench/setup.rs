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
        // The fill's dirty pages are written now, not by a checkpoint in the middle of the
        // figure that follows.
        sqlx::query("CHECKPOINT").execute(&self.pool).await?;
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
        // The apply script with no events: moves a missing position to `to`. Like every script
        // that writes the ranking, it runs only once the hidden entries are loaded.
        ranking_worker::moderation::load_hidden(&self.pool, &mut redis, &ranking).await?;
        ranking
            .apply(&mut redis, &SinkPosition::Missing, to, &[])
            .await?;
        consumers::advance_mirror(&self.pool, consumers::RANKING, last).await?;
        Ok(())
    }

    /// The position of the log's last row (the start if it has none).
    pub async fn last_position(&self) -> anyhow::Result<LogPosition> {
        Ok(sqlx::query_as::<_, (i64, i64)>(
            "SELECT tx_id::text::bigint, seq FROM outbox
             ORDER BY outbox.tx_id DESC, outbox.seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map_or(LogPosition::START, |(tx_id, seq)| LogPosition {
            tx_id,
            seq,
        }))
    }

    /// Waits until the ranking `key` in Redis has applied every row in the log now, read from
    /// the position Redis stores with the effect (one GET every 5 ms: nothing that competes
    /// with the drain); how long that took from `since`.
    pub async fn wait_applied(
        &self,
        redis_url: &str,
        key: &str,
        since: Instant,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let last = self.last_position().await?;
        let log_id = log::log_id(&self.pool).await?;
        let ranking = Ranking::new(RankingKeys::parse(key).map_err(anyhow::Error::msg)?);
        let mut redis = ranking_worker::redis_conn::connect(redis_url)?;
        loop {
            // A Redis being restarted (the heal figure) is an error here, not the end.
            if let Ok(stored) = ranking.position(&mut redis).await {
                if stored.in_log(log_id).is_some_and(|at| at >= last) {
                    return Ok(since.elapsed());
                }
            }
            if since.elapsed() > limit {
                bail!("not drained after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
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

    /// CPU time the process has used so far (user + system), from /proc.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }

    /// SIGTERM, then wait: the services' clean shutdown.
    pub fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child)
    }

    /// SIGKILL, then wait: a crash, with no chance to clean up.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// CPU time (user + system) process `pid` has used so far, from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of the line, indices 11 and 12 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// A `redis-server` of a benchmark's own, on a free port, without persistence: one the
/// benchmark may kill and restart empty (never the shared one of `REDIS_URL`). Killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on the first free port from 16379 on, working in `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = (16_379..16_479)
            .find(|&port| std::net::TcpStream::connect(("127.0.0.1", port)).is_err())
            .context("no free port for a private redis-server in 16379..16479")?;
        let mut server = Self {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        server.launch()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed?)")?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.command(&["PING"]).is_ok_and(|reply| reply == "PONG") {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!(
                    "redis-server on port {} did not answer within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGKILL: everything it held is gone (it persists nothing).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again on the same port, empty; returns once it answers PING.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.launch()
    }

    /// `INFO commandstats` line of `command`: (calls, microseconds in total).
    pub fn command_stats(&self, command: &str) -> anyhow::Result<(u64, u64)> {
        let info = self.command(&["INFO", "commandstats"])?;
        let line = info
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
            .unwrap_or("");
        let field = |name: &str| -> u64 {
            line.split(',')
                .find_map(|pair| pair.strip_prefix(name))
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("calls="), field("usec=")))
    }

    /// One command over a connection of its own; its reply as text (status, integer or bulk
    /// string; a nil is empty). Enough RESP for what the benchmarks ask.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        match line.split_at_checked(1) {
            Some(("+" | ":", rest)) => Ok(rest.to_owned()),
            Some(("$", "-1")) => Ok(String::new()),
            Some(("$", length)) => {
                let mut bulk = vec![0; length.parse::<usize>()? + 2];
                reader.read_exact(&mut bulk)?;
                bulk.truncate(bulk.len() - 2);
                Ok(String::from_utf8(bulk)?)
            }
            _ => bail!("redis-server on port {}: {line}", self.port),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
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
