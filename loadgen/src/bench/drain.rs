//! Drain and replay (figure 4) and scale (figure 5): how fast pending events reach Redis, beside
//! the bare claim-and-ack SQL that bounds any relay built on this table.

use std::time::{Duration, Instant};

use ranking_worker::queue;
use uuid::Uuid;

use super::report::Report;
use super::setup::{ranking_key, Database, Env, Memory};

const LIMIT: Duration = Duration::from_secs(600);
const BATCH: i64 = 200;
/// graphile-worker's concurrency in its baseline: jobs in flight at once in its one process.
const GRAPHILE_CONCURRENCY: u32 = 10;

pub async fn drain(
    env: &Env,
    report: &mut Report,
    events: i64,
) -> anyhow::Result<Vec<(String, Memory)>> {
    let mut memory = Vec::new();
    for workers in [1u16, 2] {
        let bare = bare_claim_and_ack(env, events, 0, workers).await?;
        let (rate, peak) = workers_drain(env, events, 0, workers, &[]).await?;
        report.compare(
            &format!(
                "drain {events} events, {workers} worker{}",
                if workers == 1 { "" } else { "s" }
            ),
            (rate, "events/s"),
            &format!(
                "bare claim+ack SQL, {workers} loop{}",
                if workers == 1 { "" } else { "s" }
            ),
            (bare, "events/s"),
        );
        memory.push((format!("ranking-worker draining, {workers} of them"), peak));
    }
    let graphile = graphile_worker(env, events).await?;
    let (rate, _) = workers_drain(env, events, 0, 1, &[]).await?;
    report.compare(
        &format!("drain {events} events, 1 worker"),
        (rate, "events/s"),
        &format!("graphile-worker, {events} no-op jobs, concurrency {GRAPHILE_CONCURRENCY}"),
        (graphile, "jobs/s"),
    );
    // Larger batches: fewer statements per event, but each Redis script runs longer.
    let bare = bare_claim_and_ack(env, events, 0, 1).await?;
    let (rate, _) = workers_drain(env, events, 0, 1, &[("BATCH_SIZE", "1000")]).await?;
    report.compare(
        &format!("drain {events} events, 1 worker, BATCH_SIZE=1000"),
        (rate, "events/s"),
        "bare claim+ack SQL (batches of 200), 1 loop",
        (bare, "events/s"),
    );
    let rebuild = rebuild(env, events).await?;
    let bare = bare_claim_and_ack(env, events, 0, 1).await?;
    report.compare(
        &format!("replay --rebuild of {events} events"),
        (rebuild, "events/s"),
        "bare claim+ack SQL, 1 loop",
        (bare, "events/s"),
    );
    Ok(memory)
}

/// Figure 5: the same drain with `retained` processed rows kept in the table, vs none.
pub async fn scale(
    env: &Env,
    report: &mut Report,
    events: i64,
    retained: i64,
) -> anyhow::Result<()> {
    let (empty_rate, _) = workers_drain(env, events, 0, 1, &[]).await?;
    let (retained_rate, _) = workers_drain(env, events, retained, 1, &[]).await?;
    report.compare(
        &format!("drain {events} events with {retained} processed rows retained"),
        (retained_rate, "events/s"),
        "none retained",
        (empty_rate, "events/s"),
    );
    let empty_claim = claim_cost(env, events, 0).await?;
    let retained_claim = claim_cost(env, events, retained).await?;
    report.compare(
        &format!("claim of {BATCH} with {retained} processed rows retained"),
        (retained_claim, "ms"),
        "none retained",
        (empty_claim, "ms"),
    );
    Ok(())
}

/// A database with `retained` processed rows and then `events` pending ones.
async fn prepared(env: &Env, name: &str, events: i64, retained: i64) -> anyhow::Result<Database> {
    let database = env.fresh_database(name).await?;
    if retained > 0 {
        database.fill(1, retained, true).await?;
    }
    database.fill(retained + 1, events, false).await?;
    Ok(database)
}

/// Events/s for `workers` ranking-worker processes (default settings) draining the backlog, and
/// the largest peak RSS among them.
async fn workers_drain(
    env: &Env,
    events: i64,
    retained: i64,
    workers: u16,
    settings: &[(&str, &str)],
) -> anyhow::Result<(f64, Memory)> {
    let database = prepared(env, "bench_drain", events, retained).await?;
    let key = ranking_key("drain");
    let started = Instant::now();
    let mut services = Vec::new();
    for n in 0..workers {
        let log = env.work_dir.join(format!("drain-worker-{n}.log"));
        services.push(env.spawn_worker(&database, &key, 18_081 + n, settings, &log)?);
    }
    let took = database.wait_drained(started, LIMIT).await?;
    let mut peak = Memory {
        current_mib: 0.0,
        peak_mib: 0.0,
    };
    for service in services {
        let memory = service.memory()?;
        peak.peak_mib = peak.peak_mib.max(memory.peak_mib);
        peak.current_mib = peak.current_mib.max(memory.current_mib);
        service.stop()?;
    }
    database.drop_now().await?;
    Ok((events as f64 / took.as_secs_f64(), peak))
}

/// Events/s for the relay's own claim and ack statements in `loops` concurrent loops, without
/// Redis: the ceiling the database sets for any relay over this table.
async fn bare_claim_and_ack(
    env: &Env,
    events: i64,
    retained: i64,
    loops: u16,
) -> anyhow::Result<f64> {
    let database = prepared(env, "bench_bare", events, retained).await?;
    let started = Instant::now();
    let runs = (0..loops).map(|_| {
        let pool = database.pool.clone();
        tokio::spawn(async move {
            loop {
                let token = Uuid::new_v4();
                let claimed = queue::claim(&pool, BATCH, Duration::from_secs(10), token).await?;
                if claimed.is_empty() {
                    return anyhow::Ok(());
                }
                let ids: Vec<Uuid> = claimed.iter().map(|row| row.event_id).collect();
                queue::ack(&pool, token, &ids).await?;
            }
        })
    });
    for run in futures::future::join_all(runs).await {
        run??;
    }
    let took = started.elapsed();
    anyhow::ensure!(
        database.unfinished().await? == 0,
        "the bare loop left rows behind"
    );
    database.drop_now().await?;
    Ok(events as f64 / took.as_secs_f64())
}

/// Mean milliseconds per claim statement of `BATCH` rows while draining `events`.
async fn claim_cost(env: &Env, events: i64, retained: i64) -> anyhow::Result<f64> {
    let database = prepared(env, "bench_claim", events, retained).await?;
    let (mut claims, mut claiming) = (0u32, Duration::ZERO);
    loop {
        let token = Uuid::new_v4();
        let started = Instant::now();
        let claimed = queue::claim(&database.pool, BATCH, Duration::from_secs(10), token).await?;
        claiming += started.elapsed();
        if claimed.is_empty() {
            break;
        }
        claims += 1;
        let ids: Vec<Uuid> = claimed.iter().map(|row| row.event_id).collect();
        queue::ack(&database.pool, token, &ids).await?;
    }
    database.drop_now().await?;
    Ok(claiming.as_secs_f64() * 1000.0 / f64::from(claims.max(1)))
}

/// Events/s for `ranking-worker replay --rebuild` over `events` processed events.
async fn rebuild(env: &Env, events: i64) -> anyhow::Result<f64> {
    let database = env.fresh_database("bench_rebuild").await?;
    database.fill(1, events, true).await?;
    let started = Instant::now();
    let output = std::process::Command::new(env.bin_dir.join("ranking-worker"))
        .args(["replay", "--rebuild"])
        .env_clear()
        .env("DATABASE_URL", &database.url)
        .env("REDIS_URL", &env.redis_url)
        .env("RANKING_KEY", ranking_key("rebuild"))
        .output()?;
    let took = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "replay --rebuild failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    database.drop_now().await?;
    Ok(events as f64 / took.as_secs_f64())
}

/// Jobs/s for graphile-worker draining `jobs` no-op jobs on a fresh database of the same
/// Postgres (loadgen/graphile-worker/drain.js; scripts/bench installs it).
async fn graphile_worker(env: &Env, jobs: i64) -> anyhow::Result<f64> {
    let database = env.fresh_database("bench_graphile").await?;
    let output = std::process::Command::new("node")
        .arg("loadgen/graphile-worker/drain.js")
        .arg(&database.url)
        .arg(jobs.to_string())
        .arg(GRAPHILE_CONCURRENCY.to_string())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "graphile-worker baseline failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    database.drop_now().await?;
    result["rate"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("drain.js printed no rate"))
}
