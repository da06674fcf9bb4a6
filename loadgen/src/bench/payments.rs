//! Payments over HTTP (figure 1) and the last-seat rush (figure 2), beside pgbench's TPS for
//! its built-in simple-update transaction (`-N`) on the same Postgres.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use payment_svc::domain::Role;

use super::report::Report;
use super::setup::{percentile, Database, Env, Memory, Service};
use crate::api::{Api, NewSchedule, Tokens};
use crate::buyers::{sell_out, Sale};

const JWT_SECRET: &str = "benchmark-secret-of-at-least-32-bytes!!";
const PORT: u16 = 18_080;
/// Seats of each schedule set aside per round; more than a client buys in a round.
const SEATS_PER_ROUND: i64 = 30_000;
const PGBENCH_MAX_CLIENTS: usize = 64;

/// Hold + pay round trips per second with `clients` concurrent clients, each buying seats of
/// its own schedule (many schedules: no client waits for another's row lock).
pub async fn payments(
    env: &Env,
    report: &mut Report,
    clients: &[usize],
    seconds: u64,
) -> anyhow::Result<Memory> {
    let database = env.fresh_database("bench_payments").await?;
    let service = env.spawn_payment_svc(
        &database,
        JWT_SECRET,
        PORT,
        &env.work_dir.join("payment-svc.log"),
    )?;
    let shop = Shop::open(PORT, clients.iter().copied().max().unwrap_or(1)).await?;
    let pgbench = PgBench::prepare(env)?;

    for (round, &count) in clients.iter().enumerate() {
        let load = shop.start(count, round, None);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let latencies = load.finish().await?;
        let rate = latencies.len() as f64 / seconds as f64;
        // The server's max_connections (100 by default) leaves room for 64 pgbench clients
        // beside the service's pool; HTTP clients beyond that queue for the pool anyway.
        let pgbench_clients = count.min(PGBENCH_MAX_CLIENTS);
        let tps = pgbench.tps(pgbench_clients, seconds)?;
        report.compare(
            &format!(
                "payments (hold + pay over HTTP), {count} clients; p50 {:.1} ms, p99 {:.1} ms",
                percentile(&latencies, 50.0),
                percentile(&latencies, 99.0)
            ),
            (rate, "payments/s"),
            &format!("pgbench -N, {pgbench_clients} clients"),
            (tps, "transactions/s"),
        );
    }
    let memory = service.memory()?;
    service.stop()?;
    database.drop_now().await?;
    Ok(memory)
}

/// The payments load beside another figure: a payment-svc of its own on `database` and
/// Payments beside another figure: how many clients, and at what pace.
#[derive(Debug, Clone, Copy)]
pub struct BesideLoad {
    pub clients: usize,
    /// Payments per second for all clients together; `None`: as fast as they can.
    pub per_second: Option<u32>,
}

impl std::fmt::Display for BesideLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per_second {
            Some(rate) => write!(
                f,
                "{} clients paced at {rate} payments/s together",
                self.clients
            ),
            None => write!(f, "{} clients as fast as they can", self.clients),
        }
    }
}

/// Clients paying until [`Beside::finish`].
pub struct Beside {
    service: Service,
    load: Load,
    started: Instant,
}

impl Beside {
    pub async fn start(
        env: &Env,
        database: &Database,
        load: BesideLoad,
        port: u16,
    ) -> anyhow::Result<Self> {
        let service = env.spawn_payment_svc(
            database,
            JWT_SECRET,
            port,
            &env.work_dir.join("payment-svc-beside.log"),
        )?;
        let shop = Shop::open(port, load.clients).await?;
        // Each client starts a payment every `clients / per_second` seconds.
        let pace = load
            .per_second
            .map(|rate| Duration::from_secs(1) * load.clients as u32 / rate.max(1));
        let load = shop.start(load.clients, 0, pace);
        Ok(Self {
            service,
            load,
            started: Instant::now(),
        })
    }

    /// Stops the clients and the service; payments per second while it ran.
    pub async fn finish(self) -> anyhow::Result<f64> {
        let latencies = self.load.finish().await?;
        let rate = latencies.len() as f64 / self.started.elapsed().as_secs_f64();
        self.service.stop()?;
        Ok(rate)
    }
}

/// A payment-svc with one schedule of ample seats per client, and the tokens to use it.
struct Shop {
    api: Api,
    tokens: Tokens,
    schedule_ids: Vec<i64>,
}

impl Shop {
    async fn open(port: u16, clients: usize) -> anyhow::Result<Self> {
        let api = Api::new(&format!("http://127.0.0.1:{port}"), "http://127.0.0.1:1");
        let tokens = Tokens::new(JWT_SECRET)?;
        let admin = tokens.caller(1, Role::Admin)?;
        let schedules: Vec<NewSchedule> = (0..clients)
            .map(|_| NewSchedule {
                starts_at: Utc::now() + chrono::Duration::days(30),
                sale_starts_at: Utc::now() - chrono::Duration::hours(1),
                seat_count: 100_000,
                price: 1,
            })
            .collect();
        // One schedule per client; a concert holds at most 100.
        let mut schedule_ids = Vec::new();
        for chunk in schedules.chunks(100) {
            let concert = api
                .create_concert(&admin, "Payments benchmark", chunk)
                .await?;
            schedule_ids.extend(concert.schedules.iter().map(|s| s.schedule_id));
        }
        Ok(Self {
            api,
            tokens,
            schedule_ids,
        })
    }

    /// `count` clients looping hold → pay, each a fresh user on its own schedule, on seats no
    /// earlier `round` used; each starts a payment every `pace` if given (open loop: a slow
    /// payment does not lower the rate), else as soon as the last one ended.
    fn start(&self, count: usize, round: usize, pace: Option<Duration>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = (0..count)
            .map(|client| {
                let (api, stop) = (self.api.clone(), stop.clone());
                let schedule_id = self.schedule_ids[client];
                let buyer = self
                    .tokens
                    .caller(1_000 * (round as i64 + 1) + client as i64 + 2, Role::User);
                let first_seat = SEATS_PER_ROUND * round as i64;
                tokio::spawn(async move {
                    let buyer = buyer?;
                    api.charge(&buyer, 2_000_000).await?;
                    let mut latencies = Vec::new();
                    let mut seat = first_seat;
                    let mut ticks = pace.map(|pace| {
                        let mut ticks = tokio::time::interval(pace);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                        ticks
                    });
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(ticks) = ticks.as_mut() {
                            ticks.tick().await;
                        }
                        seat += 1;
                        anyhow::ensure!(
                            seat <= first_seat + SEATS_PER_ROUND,
                            "a client ran out of seats"
                        );
                        let started = Instant::now();
                        let reservation = api.hold(&buyer, schedule_id, seat).await?;
                        api.pay(&buyer, reservation.reservation_id).await?;
                        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    anyhow::Ok(latencies)
                })
            })
            .collect();
        Load { stop, runs }
    }
}

/// Clients paying until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    runs: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<f64>>>>,
}

impl Load {
    /// Stops the clients (each finishes the payment in hand); every payment's latency in ms,
    /// sorted.
    async fn finish(self) -> anyhow::Result<Vec<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        for run in futures::future::join_all(self.runs).await {
            latencies.extend(run??);
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    }
}

/// The last-seat rush: `buyers` concurrent buyers for one schedule of `seats` seats. Seats/s is
/// the product's own measure: seats over `sold_out_at − sale_starts_at`.
pub async fn rush(
    env: &Env,
    report: &mut Report,
    seats: i64,
    buyer_count: usize,
) -> anyhow::Result<Memory> {
    let database = env.fresh_database("bench_rush").await?;
    let service = env.spawn_payment_svc(
        &database,
        JWT_SECRET,
        PORT,
        &env.work_dir.join("payment-svc-rush.log"),
    )?;
    let api = Api::new(&format!("http://127.0.0.1:{PORT}"), "http://127.0.0.1:1");
    let tokens = Tokens::new(JWT_SECRET)?;
    let admin = tokens.caller(1, Role::Admin)?;
    // Opens once every buyer has been charged, so all of them rush at the opening: 8 s, or
    // 5 ms per buyer for larger crowds (charging is one request each, one after another).
    let lead =
        chrono::Duration::seconds(8).max(chrono::Duration::milliseconds(5 * buyer_count as i64));
    let schedule = NewSchedule {
        starts_at: Utc::now() + chrono::Duration::days(30),
        sale_starts_at: Utc::now() + lead,
        seat_count: seats,
        price: 1,
    };
    let concert = api
        .create_concert(&admin, "Rush benchmark", &[schedule])
        .await?;
    let buyers = (0..buyer_count)
        .map(|n| tokens.caller(n as i64 + 2, Role::User))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sale = Sale {
        schedule: concert.schedules[0].clone(),
        buyers,
        think_time: Duration::ZERO,
    };
    let sold = sell_out(&api, sale).await?;
    anyhow::ensure!(
        sold.sold_out_responses == 1,
        "{} payments said they sold the schedule out",
        sold.sold_out_responses
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&database.pool)
        .await?;
    anyhow::ensure!(events == 1, "{events} ConcertSoldOut rows for one schedule");
    let schedule = api.concert(concert.concert_id).await?.schedules.remove(0);
    let sold_out_at = schedule
        .sold_out_at
        .context("no sold_out_at after the rush")?;
    let took = (sold_out_at - schedule.sale_starts_at).num_milliseconds() as f64 / 1000.0;
    let tps = PgBench::prepare(env)?.tps(1, 10)?;
    report.compare(
        &format!("last-seat rush: {seats} seats, {buyer_count} buyers, exactly 1 event"),
        (seats as f64 / took, "seats/s"),
        "pgbench -N, 1 client",
        (tps, "transactions/s"),
    );
    let memory = service.memory()?;
    service.stop()?;
    database.drop_now().await?;
    Ok(memory)
}

/// pgbench's TPC-B-like transaction without the contended branch and teller updates (`-N`):
/// the rate at which this Postgres commits small read-write transactions.
struct PgBench {
    url: String,
}

impl PgBench {
    /// A pgbench database at scale 10 next to the benchmark's own.
    fn prepare(env: &Env) -> anyhow::Result<Self> {
        let base = env
            .admin_url
            .rsplit_once('/')
            .map_or(env.admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/bench_pgbench");
        let admin = Command::new("psql")
            .args([
                &env.admin_url,
                "-qc",
                "DROP DATABASE IF EXISTS bench_pgbench WITH (FORCE)",
            ])
            .args(["-c", "CREATE DATABASE bench_pgbench"])
            .output()?;
        anyhow::ensure!(
            admin.status.success(),
            "creating bench_pgbench: {}",
            String::from_utf8_lossy(&admin.stderr)
        );
        let init = Command::new("pgbench")
            .args(["-i", "-q", "-s", "10", &url])
            .output()?;
        anyhow::ensure!(
            init.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        Ok(Self { url })
    }

    fn tps(&self, clients: usize, seconds: u64) -> anyhow::Result<f64> {
        let clients = clients.to_string();
        let threads = clients.parse::<usize>()?.min(2).to_string();
        let output = Command::new("pgbench")
            .args([
                "-N",
                "-n",
                "-c",
                &clients,
                "-j",
                &threads,
                "-T",
                &seconds.to_string(),
                &self.url,
            ])
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "pgbench: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .context("pgbench printed no tps line")
    }
}
