//! Commit-to-ranking latency (figure 3): sell-outs committed at a steady rate, each timed from
//! its commit to its application in Redis, with LISTEN/NOTIFY and with polling alone, and with
//! LISTEN/NOTIFY while payments run beside it on the same database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::events::ConcertSoldOut;
use uuid::Uuid;

use super::payments::{Beside, BesideLoad};
use super::report::Report;
use super::setup::{percentile, ranking_key, Env, Memory};

pub struct Wakeup {
    pub label: &'static str,
    /// Whether the writer notifies, as payment-svc does; without it the worker only polls.
    pub notify: bool,
    pub poll_interval_ms: u32,
    /// Payment clients running hold → pay on the same database meanwhile (payments figure's
    /// load): their short write transactions hold the log's horizon back while they run.
    pub payments_beside: Option<BesideLoad>,
}

/// Where payment-svc listens when it runs beside the latency figure.
const BESIDE_PORT: u16 = 18_070;
const WORKER_PORT: u16 = 18_091;

pub async fn latency(
    env: &Env,
    report: &mut Report,
    rate: u32,
    seconds: u32,
    wakeup: &Wakeup,
) -> anyhow::Result<Memory> {
    let database = env.fresh_database("bench_latency").await?;
    let log = env.work_dir.join(format!(
        "latency-worker-{}-{}ms{}.log",
        if wakeup.notify { "listen" } else { "poll" },
        wakeup.poll_interval_ms,
        match wakeup.payments_beside {
            Some(load) => format!(
                "-payments-{}-{}",
                load.clients,
                load.per_second.unwrap_or(0)
            ),
            None => String::new(),
        }
    ));
    let poll = wakeup.poll_interval_ms.to_string();
    let key = ranking_key("latency");
    let worker = env.spawn_worker(
        &database,
        &key,
        WORKER_PORT,
        &[("POLL_INTERVAL_MS", &poll)],
        &log,
    )?;
    let beside = match wakeup.payments_beside {
        Some(load) => Some(Beside::start(env, &database, load, BESIDE_PORT).await?),
        None => None,
    };
    // Let the worker's LISTEN connection (and the payments) come up before the first commit.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let events = rate * seconds;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    let started = Instant::now();
    for n in 0..events {
        ticks.tick().await;
        let mut tx = database.pool.begin().await?;
        let event = event(i64::from(n) + 1);
        if wakeup.notify {
            shared::outbox::enqueue(&mut tx, &event).await?;
        } else {
            shared::outbox::insert_without_wakeup(&mut tx, &event).await?;
        }
        tx.commit().await?;
    }
    let payments = match beside {
        Some(beside) => Some(beside.finish().await?),
        None => None,
    };
    database
        .wait_applied(
            &env.redis_url,
            &key,
            started,
            Duration::from_secs(u64::from(seconds) + 60),
        )
        .await?;
    let memory = worker.memory()?;
    worker.stop()?;
    database.drop_now().await?;

    let mut lags = applied_lags_ms(&std::fs::read_to_string(&log)?);
    anyhow::ensure!(
        lags.len() == events as usize,
        "the log shows {} of {events} events applied",
        lags.len()
    );
    lags.sort_by(f64::total_cmp);
    let beside = match (wakeup.payments_beside, payments) {
        (Some(load), Some(rate)) => {
            format!(", payments beside it ({load}: {rate:.0} payments/s)")
        }
        _ => String::new(),
    };
    report.figure(
        &format!(
            "commit → ranking, {rate} sell-outs/s for {seconds} s, {}{beside}",
            wakeup.label
        ),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&lags, 50.0),
            percentile(&lags, 99.0),
            lags.last().copied().unwrap_or(f64::NAN)
        ),
    );
    Ok(memory)
}

/// No worker: sell-outs committed at `rate` for `seconds` with `clients` payment clients
/// beside them, and how long each row waited after its commit until a consumer could read it
/// (its transaction id below `pg_snapshot_xmin(pg_current_snapshot())`, the log's horizon),
/// probed about every millisecond. The part of the commit-to-ranking time no consumer can
/// avoid while other write transactions run.
pub async fn horizon(
    env: &Env,
    report: &mut Report,
    rate: u32,
    seconds: u32,
    load: BesideLoad,
) -> anyhow::Result<()> {
    let database = env.fresh_database("bench_horizon").await?;
    let beside = Beside::start(env, &database, load, BESIDE_PORT).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn({
        let (pool, stop) = (database.pool.clone(), stop.clone());
        async move {
            let mut probes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let xmin: i64 = sqlx::query_scalar(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                )
                .fetch_one(&pool)
                .await?;
                probes.push((Instant::now(), xmin));
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            anyhow::Ok(probes)
        }
    });
    let mut commits = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    for n in 0..rate * seconds {
        ticks.tick().await;
        let mut tx = database.pool.begin().await?;
        shared::outbox::enqueue(&mut tx, &event(i64::from(n) + 1)).await?;
        let tx_id: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        commits.push((Instant::now(), tx_id));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let probes = prober.await??;
    let payments = beside.finish().await?;
    database.drop_now().await?;

    // Both in time order, and the horizon never moves back: one pass.
    let mut waits = Vec::with_capacity(commits.len());
    let mut first = 0;
    for (committed, tx_id) in commits {
        while probes.get(first).is_some_and(|(at, _)| *at < committed) {
            first += 1;
        }
        if let Some((at, _)) = probes[first..].iter().find(|(_, xmin)| *xmin > tx_id) {
            waits.push((*at - committed).as_secs_f64() * 1000.0);
        }
    }
    waits.sort_by(f64::total_cmp);
    report.figure(
        &format!(
            "no worker: commit → row readable (below the log's horizon), {rate} sell-outs/s \
             for {seconds} s, payments beside it ({load}: {payments:.0} payments/s), \
             probed every ~1 ms"
        ),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&waits, 50.0),
            percentile(&waits, 99.0),
            waits.last().copied().unwrap_or(f64::NAN)
        ),
    );
    Ok(())
}

fn event(schedule_id: i64) -> ConcertSoldOut {
    let now = Utc::now();
    ConcertSoldOut {
        event_id: Uuid::now_v7(),
        concert_id: schedule_id,
        schedule_id,
        concert_title: format!("Latency concert {schedule_id}"),
        seat_count: 100,
        sale_started_at: now - chrono::Duration::seconds(60),
        sold_out_at: now,
    }
}

/// `lag_ms` of every `event applied` line: from the row's commit-time stamp to Redis.
fn applied_lags_ms(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["message"] == "event applied")
        .filter_map(|entry| entry["lag_ms"].as_f64())
        .collect()
}
