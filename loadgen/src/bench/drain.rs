//! Drain and replay (figure 4) and scale (figure 5): how fast new events reach Redis, beside
//! the bare read of the log that bounds any consumer of it, and beside graphile-worker.

use std::time::{Duration, Instant};

use ranking_worker::log::{self, LogPosition, LogRow};
use ranking_worker::ranking::{Ranking, RankingKeys, SinkPosition, StoredPosition};
use shared::events::ConcertSoldOut;

use super::report::{round, Report};
use super::setup::{cpu_time, percentile, ranking_key, Database, Env, Memory, RedisServer};

pub(super) const LIMIT: Duration = Duration::from_secs(600);
/// The worker's default batch size.
const BATCH: i64 = 200;
/// graphile-worker's settings, from its performance page: jobs in flight per instance (its pool
/// is one more), and the local queue's size.
const GRAPHILE_CONCURRENCY: u32 = 24;
const GRAPHILE_LOCAL_QUEUE: u32 = 500;

pub async fn drain(
    env: &Env,
    report: &mut Report,
    events: i64,
) -> anyhow::Result<Vec<(String, Memory)>> {
    let mut memory = Vec::new();
    // Every drain with the default settings in this figure, for the summary row.
    let mut defaults = Vec::new();
    let bare = bare_read(env, events, BATCH).await?;
    let run = worker_drain(env, Backlog::new(events), &[], None).await?;
    defaults.push(run.rate);
    report.compare(
        &format!("drain {events} events, 1 worker"),
        (run.rate, "events/s"),
        &format!("bare log read SQL (`log::read_after`, batches of {BATCH}), 1 loop"),
        (bare, "events/s"),
    );
    memory.push(("ranking-worker draining".to_owned(), run.memory));
    for instances in [1, 2] {
        let graphile = graphile_worker(env, events, instances).await?;
        let run = worker_drain(env, Backlog::new(events), &[], None).await?;
        defaults.push(run.rate);
        let which = if instances == 1 {
            "1 instance".to_owned()
        } else {
            format!("{instances} instances (one per core)")
        };
        report.compare(
            &format!("drain {events} events, 1 worker"),
            (run.rate, "events/s"),
            &format!(
                "graphile-worker, {events} no-op jobs, {which}, concurrency \
                 {GRAPHILE_CONCURRENCY}, local queue {GRAPHILE_LOCAL_QUEUE}, batched completion"
            ),
            (graphile, "jobs/s"),
        );
    }
    // Larger batches: fewer statements and scripts per event, but each script runs longer.
    let bare = bare_read(env, events, 1_000).await?;
    let run = worker_drain(env, Backlog::new(events), &[("BATCH_SIZE", "1000")], None).await?;
    report.compare(
        &format!("drain {events} events, 1 worker, BATCH_SIZE=1000"),
        (run.rate, "events/s"),
        "bare log read SQL (batches of 1000), 1 loop",
        (bare, "events/s"),
    );
    // The worker's per-event log line ("event applied", JSON to stdout) off, beside a drain
    // with it.
    let quiet = worker_drain(env, Backlog::new(events), &[("RUST_LOG", "warn")], None).await?;
    let run = worker_drain(env, Backlog::new(events), &[], None).await?;
    defaults.push(run.rate);
    report.compare(
        &format!("drain {events} events, 1 worker, RUST_LOG=warn (no per-event log line)"),
        (quiet.rate, "events/s"),
        "the same with the default log level",
        (run.rate, "events/s"),
    );
    defaults.push(where_time_goes(env, report, events).await?);
    defaults.sort_by(f64::total_cmp);
    report.figure(
        &format!(
            "drain {events} events, 1 worker, default settings: all {} drains above",
            defaults.len()
        ),
        format!(
            "median {} events/s (min {}, max {})",
            round(percentile(&defaults, 50.0)),
            round(defaults[0]),
            round(defaults[defaults.len() - 1])
        ),
    );
    let rebuild = rebuild(env, events).await?;
    let bare = bare_read(env, events, BATCH).await?;
    report.compare(
        &format!("replay --rebuild of {events} events"),
        (rebuild, "events/s"),
        "bare log read SQL, 1 loop",
        (bare, "events/s"),
    );
    Ok(memory)
}

/// Where the drain's time goes, two ways. The worker's own steps in one loop in this process,
/// each timed (the Postgres read, the decoding, the Redis script), without its per-event log
/// line and metrics; and the worker itself draining into a private Redis, with the CPU time of
/// the worker, of its Postgres sessions and of Redis, and Redis's own count of script time.
/// Returns the rate of that drain.
async fn where_time_goes(env: &Env, report: &mut Report, events: i64) -> anyhow::Result<f64> {
    let steps = steps(env, events).await?;
    let batches = steps.batches.max(1) as f64;
    let ms = |total: Duration| total.as_secs_f64() * 1000.0 / batches;
    let bare = bare_read(env, events, BATCH).await?;
    report.compare(
        &format!(
            "the worker's steps in one loop, no log lines (loadgen), per batch of {BATCH}: \
             read {:.2} ms, decode {:.2} ms, apply script {:.2} ms",
            ms(steps.read),
            ms(steps.decode),
            ms(steps.apply)
        ),
        (steps.rate, "events/s"),
        "bare log read SQL, 1 loop",
        (bare, "events/s"),
    );

    let redis = RedisServer::start(&env.work_dir)?;
    let run = worker_drain(env, Backlog::new(events), &[], Some(&redis)).await?;
    let wall = run.took.as_secs_f64();
    let redis_cpu = run.redis_cpu.as_secs_f64();
    let (calls, usec) = run.scripts;
    drop(redis);
    report.figure(
        &format!("drain {events} events, 1 worker, private Redis: where the time goes"),
        format!(
            "{} events/s in {wall:.2} s; CPU: worker {:.2} s, its Postgres sessions {:.2} s, \
             Redis {redis_cpu:.2} s ({calls} scripts, {:.0} µs each inside Redis, {:.2} s)",
            round(run.rate),
            run.worker_cpu.as_secs_f64(),
            run.postgres_cpu.as_secs_f64(),
            usec as f64 / calls.max(1) as f64,
            usec as f64 / 1e6,
        ),
    );
    Ok(run.rate)
}

/// Figure 5: the same drain with `retained` older rows kept in the log, vs none: the median of
/// three of each, run in the order none, kept, kept, none, none, kept (so neither side always
/// follows the other's fill). Single drains on this shared 2-core machine differ by more than
/// the 5% this figure is judged by.
pub async fn scale(
    env: &Env,
    report: &mut Report,
    events: i64,
    retained: i64,
) -> anyhow::Result<()> {
    // The same new events (schedules after the retained ones) in both, so both drains move
    // the same bytes: members and details of 7-digit schedules are longer than of 1-digit to
    // 6-digit ones, and Redis's script takes measurably longer over them.
    let with = Backlog {
        events,
        retained,
        first_new: retained + 1,
    };
    let without = Backlog {
        retained: 0,
        ..with
    };
    let (mut empty, mut kept) = (Vec::new(), Vec::new());
    for keep in [false, true, true, false, false, true] {
        if keep {
            kept.push(worker_drain(env, with, &[], None).await?.took.as_secs_f64());
        } else {
            empty.push(
                worker_drain(env, without, &[], None)
                    .await?
                    .took
                    .as_secs_f64(),
            );
        }
    }
    empty.sort_by(f64::total_cmp);
    kept.sort_by(f64::total_cmp);
    let seconds = |runs: &[f64]| {
        runs.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.compare(
        &format!(
            "drain {events} events with {retained} older rows retained, time (median of 3: {} s)",
            seconds(&kept)
        ),
        (percentile(&kept, 50.0), "s"),
        &format!("none retained (median of 3: {} s)", seconds(&empty)),
        (percentile(&empty, 50.0), "s"),
    );
    let empty_read = read_cost(env, without).await?;
    let retained_read = read_cost(env, with).await?;
    report.compare(
        &format!("read of {BATCH} with {retained} older rows retained"),
        (retained_read, "ms"),
        "none retained",
        (empty_read, "ms"),
    );
    Ok(())
}

/// What a figure's log holds: `retained` rows the ranking has passed (schedules 1 to
/// `retained`), then `events` new ones (schedules from `first_new` on).
#[derive(Debug, Clone, Copy)]
pub(super) struct Backlog {
    events: i64,
    retained: i64,
    first_new: i64,
}

impl Backlog {
    /// `events` new rows and nothing else.
    pub(super) fn new(events: i64) -> Self {
        Self {
            events,
            retained: 0,
            first_new: 1,
        }
    }
}

/// A database holding `backlog`, the retained rows passed by the ranking `key` in Redis.
pub(super) async fn prepared(
    env: &Env,
    name: &str,
    backlog: Backlog,
    key: &str,
    redis_url: &str,
) -> anyhow::Result<Database> {
    let database = env.fresh_database(name).await?;
    if backlog.retained > 0 {
        database.fill(1, backlog.retained).await?;
        database.mark_passed(redis_url, key).await?;
    }
    database.fill(backlog.first_new, backlog.events).await?;
    Ok(database)
}

/// One drain by one `ranking-worker run`.
struct DrainRun {
    rate: f64,
    took: Duration,
    /// Its peak RSS.
    memory: Memory,
    /// CPU time of the worker process, and of its Postgres sessions.
    worker_cpu: Duration,
    postgres_cpu: Duration,
    /// With a private Redis: its CPU time during the drain, and its (calls, µs) of scripts.
    redis_cpu: Duration,
    scripts: (u64, u64),
}

/// One ranking-worker process (default settings but `settings`) draining `events` new rows,
/// timed from its start until Redis holds the position of the last row. Into the shared Redis,
/// or into `private`, whose CPU and script time it then reports.
async fn worker_drain(
    env: &Env,
    backlog: Backlog,
    settings: &[(&str, &str)],
    private: Option<&RedisServer>,
) -> anyhow::Result<DrainRun> {
    let key = ranking_key("drain");
    let redis_url = private.map_or(env.redis_url.clone(), RedisServer::url);
    let database = prepared(env, "bench_drain", backlog, &key, &redis_url).await?;
    let redis_before = match private {
        Some(redis) => (
            redis.pid().map_or(Ok(Duration::ZERO), cpu_time)?,
            script_stats(redis)?,
        ),
        None => (Duration::ZERO, (0, 0)),
    };
    let started = Instant::now();
    let log = env.work_dir.join("drain-worker.log");
    let worker_env = Env {
        redis_url: redis_url.clone(),
        ..env.clone()
    };
    let worker = worker_env.spawn_worker(&database, &key, 18_081, settings, &log)?;
    let took = database
        .wait_applied(&redis_url, &key, started, LIMIT)
        .await?;
    let (redis_cpu, scripts) = match private {
        Some(redis) => {
            let cpu = redis.pid().map_or(Ok(Duration::ZERO), cpu_time)?;
            let (calls, usec) = script_stats(redis)?;
            (
                cpu.saturating_sub(redis_before.0),
                (calls - redis_before.1 .0, usec - redis_before.1 .1),
            )
        }
        None => (Duration::ZERO, (0, 0)),
    };
    let postgres_cpu = postgres_sessions_cpu(&database).await?;
    let worker_cpu = worker.cpu()?;
    let memory = worker.memory()?;
    worker.stop()?;
    database.drop_now().await?;
    Ok(DrainRun {
        rate: backlog.events as f64 / took.as_secs_f64(),
        took,
        memory,
        worker_cpu,
        postgres_cpu,
        redis_cpu,
        scripts,
    })
}

/// Scripts Redis has run: (calls, µs inside Redis), EVALSHA and EVAL together.
fn script_stats(redis: &RedisServer) -> anyhow::Result<(u64, u64)> {
    let (sha_calls, sha_usec) = redis.command_stats("evalsha")?;
    let (calls, usec) = redis.command_stats("eval")?;
    Ok((sha_calls + calls, sha_usec + usec))
}

/// CPU time of the ranking-worker's Postgres sessions on `database` (its pool, its advisory
/// lock's session and its LISTEN connection), from /proc: they are processes of this machine.
async fn postgres_sessions_cpu(database: &Database) -> anyhow::Result<Duration> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'ranking-worker'",
    )
    .fetch_all(&database.pool)
    .await?;
    Ok(pids
        .into_iter()
        .filter_map(|pid| cpu_time(pid as u32).ok())
        .sum())
}

/// Events/s for the consumer's own read statement in one loop, `batch` rows at a time, without
/// Redis: the ceiling the database sets for any consumer reading this log this way.
async fn bare_read(env: &Env, events: i64, batch: i64) -> anyhow::Result<f64> {
    let key = ranking_key("bare");
    let database = prepared(
        env,
        "bench_bare",
        Backlog::new(events),
        &key,
        &env.redis_url,
    )
    .await?;
    let started = Instant::now();
    let (mut position, mut read) = (LogPosition::START, 0);
    loop {
        let rows = log::read_after(&database.pool, position, batch).await?.rows;
        let Some(last) = rows.last() else { break };
        position = last.position();
        read += rows.len() as i64;
    }
    let took = started.elapsed();
    anyhow::ensure!(read == events, "the bare loop read {read} rows");
    database.drop_now().await?;
    Ok(events as f64 / took.as_secs_f64())
}

/// The worker's steps in one loop, each timed.
struct Steps {
    rate: f64,
    batches: u64,
    read: Duration,
    decode: Duration,
    apply: Duration,
}

/// The consumer's loop without the consumer: read a batch after the position
/// (`log::read_after`), decode it, apply it with the position's move (the worker's apply
/// script), one after the other, as the worker does; no log lines, no metrics, no mirror.
async fn steps(env: &Env, events: i64) -> anyhow::Result<Steps> {
    let key = ranking_key("steps");
    let database = prepared(
        env,
        "bench_steps",
        Backlog::new(events),
        &key,
        &env.redis_url,
    )
    .await?;
    let ranking = Ranking::new(RankingKeys::parse(&key).map_err(anyhow::Error::msg)?);
    let mut redis = ranking_worker::redis_conn::connect(&env.redis_url)?;
    // As the worker does before its first batch: the apply script refuses to run until the
    // hidden entries are loaded from Postgres.
    ranking_worker::moderation::load_hidden(&database.pool, &mut redis, &ranking).await?;
    let log_id = log::log_id(&database.pool).await?;
    let mut steps = Steps {
        rate: 0.0,
        batches: 0,
        read: Duration::ZERO,
        decode: Duration::ZERO,
        apply: Duration::ZERO,
    };
    let (mut from, mut position) = (SinkPosition::Missing, LogPosition::START);
    let started = Instant::now();
    loop {
        let at = Instant::now();
        let rows = log::read_after(&database.pool, position, BATCH).await?.rows;
        steps.read += at.elapsed();
        let Some(last) = rows.last().map(LogRow::position) else {
            break;
        };
        let at = Instant::now();
        let decoded: Vec<ConcertSoldOut> = rows
            .iter()
            .map(LogRow::decode_sold_out)
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        // Each event with its log position: the apply script announces it on the feed.
        let batch: Vec<(LogPosition, &ConcertSoldOut)> =
            rows.iter().map(LogRow::position).zip(&decoded).collect();
        steps.decode += at.elapsed();
        let to = StoredPosition {
            log_id,
            position: last,
        };
        let at = Instant::now();
        ranking.apply(&mut redis, &from, to, &batch).await?;
        steps.apply += at.elapsed();
        (from, position) = (SinkPosition::Stored(to), last);
        steps.batches += 1;
    }
    steps.rate = events as f64 / started.elapsed().as_secs_f64();
    database.drop_now().await?;
    Ok(steps)
}

/// Mean milliseconds per read of `BATCH` rows after the retained ones, while reading the new.
async fn read_cost(env: &Env, backlog: Backlog) -> anyhow::Result<f64> {
    let key = ranking_key("read");
    let database = prepared(env, "bench_read", backlog, &key, &env.redis_url).await?;
    let mirror = ranking_worker::consumers::get(&database.pool, ranking_worker::consumers::RANKING)
        .await?
        .position();
    let (mut position, mut reads, mut reading) = (mirror, 0u32, Duration::ZERO);
    loop {
        let started = Instant::now();
        let rows = log::read_after(&database.pool, position, BATCH).await?.rows;
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
/// Postgres, with `instances` worker processes (loadgen/graphile-worker/drain.js; scripts/bench
/// installs it).
async fn graphile_worker(env: &Env, jobs: i64, instances: u32) -> anyhow::Result<f64> {
    let database = env.fresh_database("bench_graphile").await?;
    let output = std::process::Command::new("node")
        .arg("loadgen/graphile-worker/drain.js")
        .arg(&database.url)
        .arg(jobs.to_string())
        .arg(GRAPHILE_CONCURRENCY.to_string())
        .arg(instances.to_string())
        .arg(GRAPHILE_LOCAL_QUEUE.to_string())
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
