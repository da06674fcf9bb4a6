//! The read path (issue 13 item 6): `GET /rankings/sold-out?limit=10` on a board of 50 ranked
//! schedules against `GET /healthz` on the same worker process, under the same load: wrk with 32
//! connections, the two in turns (healthz, ranking, ranking, healthz) so neither gets the
//! quieter moments of the machine, the better of two each.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::drain::{prepared, Backlog};
use super::report::Report;
use super::setup::{ranking_key, Env};

const PORT: u16 = 18_084;
/// Ranked schedules on the board read.
const RANKED: i64 = 50;
/// wrk's connections, as the issue measured it; its threads, one per core of the machine.
const CONNECTIONS: u32 = 32;
const THREADS: u32 = 2;

pub async fn read_path(env: &Env, report: &mut Report, seconds: u64) -> anyhow::Result<()> {
    let key = ranking_key("read");
    let database = prepared(
        env,
        "bench_read",
        Backlog::new(RANKED),
        &key,
        &env.redis_url,
    )
    .await?;
    let log = env.work_dir.join("read-worker.log");
    let worker = env.spawn_worker(
        &database,
        &key,
        PORT,
        // One line per request would measure the log writer, not the read path.
        &[("RUST_LOG", "warn")],
        &log,
    )?;
    database
        .wait_applied(
            &env.redis_url,
            &key,
            Instant::now(),
            Duration::from_secs(60),
        )
        .await?;

    let base = format!("http://127.0.0.1:{PORT}");
    let ranking_url = format!("{base}/rankings/sold-out?limit=10");
    let healthz_url = format!("{base}/healthz");
    let page: serde_json::Value = reqwest::get(&ranking_url).await?.json().await?;
    let shown = page["entries"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        shown == 10,
        "the page shows {shown} entries, not 10: {page}"
    );

    let (mut ranking, mut healthz) = (Vec::new(), Vec::new());
    for url in [&healthz_url, &ranking_url, &ranking_url, &healthz_url] {
        let rate = wrk(url, seconds)?;
        if *url == ranking_url {
            ranking.push(rate);
        } else {
            healthz.push(rate);
        }
    }
    let runs = |rates: &[f64]| {
        rates
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.compare(
        &format!(
            "GET /rankings/sold-out?limit=10, {RANKED} ranked schedules, wrk {CONNECTIONS} \
             connections {seconds} s (best of 2: {} req/s; target ≥ 0.5×)",
            runs(&ranking)
        ),
        (best(&ranking), "req/s"),
        &format!(
            "GET /healthz on the same process (best of 2: {} req/s)",
            runs(&healthz)
        ),
        (best(&healthz), "req/s"),
    );
    worker.stop()?;
    database.drop_now().await?;
    Ok(())
}

/// The highest of `rates`.
fn best(rates: &[f64]) -> f64 {
    rates.iter().copied().fold(0.0, f64::max)
}

/// Requests per second wrk gets from `url` in `seconds`; any answer but a 2xx or 3xx fails it.
fn wrk(url: &str, seconds: u64) -> anyhow::Result<f64> {
    let output = Command::new("wrk")
        .args(["-t", &THREADS.to_string()])
        .args(["-c", &CONNECTIONS.to_string()])
        .args(["-d", &format!("{seconds}s")])
        .arg(url)
        .output()
        .context("running wrk (scripts/bench installs it: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed on {url}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if let Some(line) = text.lines().find(|line| line.contains("Non-2xx or 3xx")) {
        bail!("wrk on {url}: {}", line.trim());
    }
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output on {url}: {text}"))
}
