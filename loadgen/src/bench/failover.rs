//! Takeover (figure 6) and heal (figure 7): how long the ranking stops following the log when
//! the active worker is SIGKILLed with a standby running, and when Redis restarts empty.

use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use ranking_worker::consumers::{self, RANKING};
use ranking_worker::ranking::{Ranking, RankingKeys};
use shared::events::ConcertSoldOut;
use uuid::Uuid;

use super::report::Report;
use super::setup::{percentile, ranking_key, Database, Env, RedisServer, Service};

/// Longer than any takeover or heal could take while things work.
const LIMIT: Duration = Duration::from_secs(60);
/// Where the workers of these figures listen, one port each (never reused within a run).
const FIRST_PORT: u16 = 18_101;

/// Two `ranking-worker run` processes on one database; `repetitions` times: SIGKILL the active
/// one (its pid is in `outbox_consumers.active_instance`), commit one sell-out right after,
/// and time from the kill until the ranking in Redis holds it, applied by the other; then start
/// a new standby.
pub async fn takeover(env: &Env, report: &mut Report, repetitions: usize) -> anyhow::Result<()> {
    let database = env.fresh_database("bench_takeover").await?;
    let key = ranking_key("takeover");
    let ranking = Ranking::new(RankingKeys::parse(&key).map_err(anyhow::Error::msg)?);
    let mut redis = ranking_worker::redis_conn::connect(&env.redis_url)?;
    let mut ports = FIRST_PORT..;
    let mut spawn = |n: usize| {
        let port = ports.next().unwrap_or(FIRST_PORT);
        let log = env.work_dir.join(format!("takeover-worker-{n}.log"));
        env.spawn_worker(&database, &key, port, &[], &log)
    };
    let mut workers: Vec<Service> = vec![spawn(0)?, spawn(1)?];
    let mut took = Vec::new();
    for n in 0..repetitions {
        // The new standby has long made its first try for the lock and stands by. A random
        // extra wait: standbys try every 500 ms, and a fixed wait would kill in step with them.
        tokio::time::sleep(Duration::from_secs(1) + random_up_to(Duration::from_millis(500))).await;
        let active = active_pid(&database, &workers).await?;
        let index = workers
            .iter()
            .position(|worker| worker.pid() == active)
            .unwrap_or(0);
        let victim = workers.swap_remove(index);
        let killed = Instant::now();
        victim.kill()?;
        let event = event(n as i64 + 1);
        let mut tx = database.pool.begin().await?;
        shared::outbox::enqueue(&mut tx, &event).await?;
        tx.commit().await?;
        loop {
            if !ranking.differs(&mut redis, &[&event]).await?[0] {
                break;
            }
            anyhow::ensure!(
                killed.elapsed() < LIMIT,
                "no takeover within {LIMIT:?} of the kill"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(killed.elapsed().as_secs_f64() * 1000.0);
        workers.push(spawn(n + 2)?);
    }
    for worker in workers {
        worker.stop()?;
    }
    database.drop_now().await?;
    took.sort_by(f64::total_cmp);
    report.figure(
        &format!(
            "takeover: SIGKILL of the active worker, 1 standby, until a sell-out committed \
             right after the kill is ranked ({repetitions} times)"
        ),
        format!(
            "median {:.0} ms, max {:.0} ms",
            percentile(&took, 50.0),
            took.last().copied().unwrap_or(f64::NAN)
        ),
    );
    Ok(())
}

/// The pid of the active instance, once one of `workers` reports itself active.
async fn active_pid(database: &Database, workers: &[Service]) -> anyhow::Result<u32> {
    let started = Instant::now();
    loop {
        let row = consumers::get(&database.pool, RANKING).await?;
        let pid = row
            .active_instance
            .as_deref()
            .and_then(|instance| instance.rsplit_once(':'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = pid.filter(|pid| workers.iter().any(|w| w.pid() == *pid)) {
            if row.state == "running" {
                return Ok(pid);
            }
        }
        anyhow::ensure!(
            started.elapsed() < LIMIT,
            "no worker became active within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A worker applies `events` sell-outs into a private `redis-server`; `repetitions` times,
/// that Redis is SIGKILLed and started again empty, and the time is taken from its answering
/// again until the ranking holds all `events` again (ZCARD, and the script's applied-events
/// counter, so each was applied once since), with no command run.
pub async fn heal(
    env: &Env,
    report: &mut Report,
    events: i64,
    repetitions: usize,
) -> anyhow::Result<()> {
    let mut redis = RedisServer::start(&env.work_dir)?;
    let key = ranking_key("heal");
    let keys = RankingKeys::parse(&key).map_err(anyhow::Error::msg)?;
    let database = env.fresh_database("bench_heal").await?;
    database.fill(1, events).await?;
    let worker_env = Env {
        redis_url: redis.url(),
        ..env.clone()
    };
    let log = env.work_dir.join("heal-worker.log");
    let worker = worker_env.spawn_worker(&database, &key, FIRST_PORT - 1, &[], &log)?;
    database
        .wait_applied(&redis.url(), &key, Instant::now(), LIMIT)
        .await?;
    let mut took = Vec::new();
    let mut down = Vec::new();
    for _ in 0..repetitions {
        // The worker is idle, waiting for a notification or its next poll (every second): a
        // random wait, not in step with the polls.
        tokio::time::sleep(Duration::from_secs(1) + random_up_to(Duration::from_secs(1))).await;
        let killed = Instant::now();
        redis.restart()?;
        let up = Instant::now();
        down.push((up - killed).as_secs_f64() * 1000.0);
        loop {
            let ranked = redis.command(&["ZCARD", &key])?;
            let applied = redis.command(&["GET", keys.applied_events()])?;
            if ranked == events.to_string() && applied == events.to_string() {
                break;
            }
            anyhow::ensure!(
                up.elapsed() < LIMIT,
                "the ranking holds {ranked} of {events} events {LIMIT:?} after Redis restarted"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(up.elapsed().as_secs_f64() * 1000.0);
    }
    worker.stop()?;
    drop(redis);
    database.drop_now().await?;
    took.sort_by(f64::total_cmp);
    down.sort_by(f64::total_cmp);
    report.figure(
        &format!(
            "heal: Redis restarted empty after {events} events were applied, until it ranks \
             all of them again ({repetitions} times; Redis down {:.0} ms at most)",
            down.last().copied().unwrap_or(f64::NAN)
        ),
        format!(
            "median {:.0} ms, max {:.0} ms",
            percentile(&took, 50.0),
            took.last().copied().unwrap_or(f64::NAN)
        ),
    );
    Ok(())
}

fn random_up_to(most: Duration) -> Duration {
    most.mul_f64(rand::thread_rng().gen::<f64>())
}

fn event(schedule_id: i64) -> ConcertSoldOut {
    let now = Utc::now();
    ConcertSoldOut {
        event_id: Uuid::now_v7(),
        concert_id: schedule_id,
        schedule_id,
        concert_title: format!("Takeover concert {schedule_id}"),
        seat_count: 100,
        sale_started_at: now - chrono::Duration::seconds(60),
        sold_out_at: now,
    }
}
