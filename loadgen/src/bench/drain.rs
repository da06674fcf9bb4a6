//! Drain and replay (figure 4) and scale (figure 5): how fast new events reach Redis, beside
//! the bare read of the log that bounds any consumer of it.

use std::time::{Duration, Instant};

use ranking_worker::log::{self, LogPosition};

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
    let bare = bare_read(env, events, 0).await?;
    let (rate, peak) = workers_drain(env, events, 0, 1, &[]).await?;
    report.compare(
        &format!("drain {events} events, 1 worker"),
        (rate, "events/s"),
        "bare log read SQL, 1 loop",
        (bare, "events/s"),
    );
    memory.push(("ranking-worker draining".to_owned(), peak));
    let graphile = graphile_worker(env, events).await?;
    let (rate, _) = workers_drain(env, events, 0, 1, &[]).await?;
    report.compare(
        &format!("drain {events} events, 1 worker"),
        (rate, "events/s"),
        &format!("graphile-worker, {events} no-op jobs, concurrency {GRAPHILE_CONCURRENCY}"),
        (graphile, "jobs/s"),
    );
    // Larger batches: fewer statements per event, but each Redis script runs longer.
    let bare = bare_read(env, events, 0).await?;
    let (rate, _) = workers_drain(env, events, 0, 1, &[("BATCH_SIZE", "1000")]).await?;
    report.compare(
        &format!("drain {events} events, 1 worker, BATCH_SIZE=1000"),
        (rate, "events/s"),
        &format!("bare log read SQL (batches of {BATCH}), 1 loop"),
        (bare, "events/s"),
    );
    let rebuild = rebuild(env, events).await?;
    let bare = bare_read(env, events, 0).await?;
    report.compare(
        &format!("replay --rebuild of {events} events"),
        (rebuild, "events/s"),
        "bare log read SQL, 1 loop",
        (bare, "events/s"),
    );
    Ok(memory)
}

/// Figure 5: the same drain with `retained` older rows kept in the log, vs none.
pub async fn scale(
    env: &Env,
    report: &mut Report,
    events: i64,
    retained: i64,
) -> anyhow::Result<()> {
    let (empty_rate, _) = workers_drain(env, events, 0, 1, &[]).await?;
    let (retained_rate, _) = workers_drain(env, events, retained, 1, &[]).await?;
    report.compare(
        &format!("drain {events} events with {retained} older rows retained"),
        (retained_rate, "events/s"),
        "none retained",
        (empty_rate, "events/s"),
    );
    let empty_read = read_cost(env, events, 0).await?;
    let retained_read = read_cost(env, events, retained).await?;
    report.compare(
        &format!("read of {BATCH} with {retained} older rows retained"),
        (retained_read, "ms"),
        "none retained",
        (empty_read, "ms"),
    );
    Ok(())
}

/// A database with `retained` rows the ranking `key` has passed, then `events` new ones.
async fn prepared(
    env: &Env,
    name: &str,
    events: i64,
    retained: i64,
    key: &str,
) -> anyhow::Result<Database> {
    let database = env.fresh_database(name).await?;
    if retained > 0 {
        database.fill(1, retained).await?;
        database.mark_passed(&env.redis_url, key).await?;
    }
    database.fill(retained + 1, events).await?;
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
    let key = ranking_key("drain");
    let database = prepared(env, "bench_drain", events, retained, &key).await?;
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

/// Events/s for the consumer's own read statement in one loop, without Redis: the ceiling the
/// database sets for any consumer of this log.
async fn bare_read(env: &Env, events: i64, retained: i64) -> anyhow::Result<f64> {
    let database = prepared(env, "bench_bare", events, retained, &ranking_key("bare")).await?;
    let started = Instant::now();
    let (mut position, mut read) = (LogPosition::START, 0);
    loop {
        let rows = log::read_after(&database.pool, position, BATCH).await?;
        let Some(last) = rows.last() else { break };
        position = last.position();
        read += rows.len() as i64;
    }
    let took = started.elapsed();
    anyhow::ensure!(read == events + retained, "the bare loop read {read} rows");
    database.drop_now().await?;
    Ok(events as f64 / took.as_secs_f64())
}

/// Mean milliseconds per read of `BATCH` rows after the retained ones, while reading `events`.
async fn read_cost(env: &Env, events: i64, retained: i64) -> anyhow::Result<f64> {
    let key = ranking_key("read");
    let database = prepared(env, "bench_read", events, retained, &key).await?;
    let mirror = ranking_worker::consumers::get(&database.pool, ranking_worker::consumers::RANKING)
        .await?
        .position();
    let (mut position, mut reads, mut reading) = (mirror, 0u32, Duration::ZERO);
    loop {
        let started = Instant::now();
        let rows = log::read_after(&database.pool, position, BATCH).await?;
        reading += started.elapsed();
        let Some(last) = rows.last() else { break };
        position = last.position();
        reads += 1;
    }
    database.drop_now().await?;
    Ok(reading.as_secs_f64() * 1000.0 / f64::from(reads.max(1)))
}

/// Events/s for `ranking-worker replay --rebuild` over `events` processed events.
async fn rebuild(env: &Env, events: i64) -> anyhow::Result<f64> {
    let key = ranking_key("rebuild");
    let database = env.fresh_database("bench_rebuild").await?;
    database.fill(1, events).await?;
    database.mark_passed(&env.redis_url, &key).await?;
    let started = Instant::now();
    let output = std::process::Command::new(env.bin_dir.join("ranking-worker"))
        .args(["replay", "--rebuild"])
        .env_clear()
        .env("DATABASE_URL", &database.url)
        .env("REDIS_URL", &env.redis_url)
        .env("RANKING_KEY", &key)
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
