//! The drain with live-board clients connected (issue 13): each `GET /rankings/sold-out/stream`
//! client of the worker gets a snapshot whenever a drained batch resets the feed, so many clients
//! could slow the consumer that serves them.

use std::time::{Duration, Instant};

use ranking_worker::consumers::{self, HaltKind, RANKING};
use ranking_worker::ranking::{Ranking, RankingKeys, SinkPosition};
use tokio::sync::{mpsc, watch};

use super::drain::{prepared, Backlog, LIMIT};
use super::report::Report;
use super::setup::{ranking_key, Env};

const PORT: u16 = 18_083;

/// `events` drained with `clients` stream clients connected, against the same drain with none:
/// the better of two each, in the order none, clients, clients, none; each timed from its first
/// batch in Redis until its last.
pub async fn clients(
    env: &Env,
    report: &mut Report,
    events: i64,
    clients: usize,
) -> anyhow::Result<()> {
    let (mut watched, mut alone) = (Vec::new(), Vec::new());
    for connected in [0, clients, clients, 0] {
        let took = drain_watched(env, events, connected).await?.as_secs_f64();
        if connected == 0 {
            alone.push(took);
        } else {
            watched.push(took);
        }
    }
    let seconds = |runs: &[f64]| {
        runs.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.compare(
        &format!(
            "drain {events} events with {clients} live-board clients connected, time after the \
             first batch (best of 2: {} s)",
            seconds(&watched)
        ),
        (best(&watched), "s"),
        &format!("no client (best of 2: {} s)", seconds(&alone)),
        (best(&alone), "s"),
    );
    Ok(())
}

/// The shortest of `runs`.
fn best(runs: &[f64]) -> f64 {
    runs.iter().copied().fold(f64::INFINITY, f64::min)
}

/// When the ranking `key` first has a position in Redis (polled every millisecond).
async fn first_batch_applied(env: &Env, key: &str) -> anyhow::Result<Instant> {
    let ranking = Ranking::new(RankingKeys::parse(key).map_err(anyhow::Error::msg)?);
    let mut redis = ranking_worker::redis_conn::connect(&env.redis_url)?;
    let asked = Instant::now();
    while ranking.position(&mut redis).await? == SinkPosition::Missing {
        anyhow::ensure!(asked.elapsed() < LIMIT, "no batch applied after {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(Instant::now())
}

/// One drain of `events` by a worker whose consumer is paused until `clients` stream clients
/// hold their first snapshot; timed from its first batch in Redis until Redis holds the last
/// position.
async fn drain_watched(env: &Env, events: i64, clients: usize) -> anyhow::Result<Duration> {
    let key = ranking_key("watched");
    let database = prepared(
        env,
        "bench_watched",
        Backlog::new(events),
        &key,
        &env.redis_url,
    )
    .await?;
    consumers::halt(
        &database.pool,
        RANKING,
        HaltKind::Paused,
        "benchmark: clients connecting",
    )
    .await?;
    let log = env.work_dir.join("watched-worker.log");
    let worker = env.spawn_worker(
        &database,
        &key,
        PORT,
        &[("POLL_INTERVAL_MS", "10"), ("STREAM_MAX_CLIENTS", "5000")],
        &log,
    )?;

    let (stop, stopped) = watch::channel(false);
    let (ready, mut connected) = mpsc::channel(clients.max(1));
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{PORT}/rankings/sold-out/stream");
    let readers: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, ready, mut stopped) =
                (http.clone(), url.clone(), ready.clone(), stopped.clone());
            tokio::spawn(async move {
                let mut response = http.get(&url).send().await?.error_for_status()?;
                let mut bytes = 0;
                let mut told = false;
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return anyhow::Ok(bytes),
                        chunk = response.chunk() => match chunk? {
                            Some(chunk) => bytes += chunk.len(),
                            None => anyhow::bail!("the stream ended"),
                        },
                    }
                    if !told {
                        told = true;
                        let _ = ready.send(()).await;
                    }
                }
            })
        })
        .collect();
    for _ in 0..clients {
        connected
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("a client failed to connect"))?;
    }

    // Timed from the first batch in Redis: the paused consumer notices the resume at its next
    // check (every 100 ms), which would put up to 100 ms of noise into each drain.
    consumers::resume(&database.pool, RANKING).await?;
    let started = first_batch_applied(env, &key).await?;
    let took = database
        .wait_applied(&env.redis_url, &key, started, LIMIT)
        .await?;
    stop.send(true)?;
    for reader in readers {
        reader.await??;
    }
    worker.stop()?;
    database.drop_now().await?;
    Ok(took)
}
