//! Commit-to-ranking latency (figure 3): sell-outs committed at a steady rate, each timed from
//! its commit to its application in Redis, with LISTEN/NOTIFY and with polling alone.

use std::time::{Duration, Instant};

use chrono::Utc;
use shared::events::ConcertSoldOut;
use uuid::Uuid;

use super::report::Report;
use super::setup::{percentile, ranking_key, Env, Memory};

pub struct Wakeup {
    pub label: &'static str,
    /// Whether the writer notifies, as payment-svc does; without it the worker only polls.
    pub notify: bool,
    pub poll_interval_ms: u32,
}

pub async fn latency(
    env: &Env,
    report: &mut Report,
    rate: u32,
    seconds: u32,
    wakeup: &Wakeup,
) -> anyhow::Result<Memory> {
    let database = env.fresh_database("bench_latency").await?;
    let log = env.work_dir.join("latency-worker.log");
    let poll = wakeup.poll_interval_ms.to_string();
    let worker = env.spawn_worker(
        &database,
        &ranking_key("latency"),
        18_091,
        &[("POLL_INTERVAL_MS", &poll)],
        &log,
    )?;
    // Let the worker's LISTEN connection come up before the first commit.
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
    database
        .wait_drained(started, Duration::from_secs(u64::from(seconds) + 60))
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
    report.figure(
        &format!(
            "commit → ranking, {rate} sell-outs/s for {seconds} s, {}",
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
