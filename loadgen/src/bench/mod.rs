//! `loadgen bench`: every figure of BENCHMARKS.md, each beside a baseline measured in the same
//! run on the same Postgres and Redis. Run by scripts/bench against the release binaries.

mod board;
mod drain;
mod failover;
mod latency;
mod payments;
mod read;
mod report;
mod setup;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use latency::Wakeup;
use payments::BesideLoad;
use report::Report;
use setup::{ranking_key, Env, Memory};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A Postgres superuser's URL; each benchmark creates and drops its own database.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_url: String,

    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,

    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,

    /// Service logs and the results table go here.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,

    /// Small sizes, to check the benchmarks themselves run (figures are not meaningful).
    #[arg(long)]
    quick: bool,

    /// Run only these figures (all by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Figure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Figure {
    Payments,
    Rush,
    Latency,
    Drain,
    Scale,
    /// The drain with live-board clients connected.
    Board,
    /// The read API's requests per second beside /healthz's.
    Read,
    Takeover,
    Heal,
}

/// The sizes the figures are defined with, or small ones for `--quick`.
struct Sizes {
    seconds: u64,
    clients: Vec<usize>,
    /// (seats, buyers) of each last-seat rush: the one benchmarked since issue 9, and a
    /// popular schedule (issue 14), each beside its own baseline.
    rushes: [(i64, usize); 2],
    latency_rate: u32,
    latency_seconds: u32,
    /// Payments beside the LISTEN latency figure: as fast as they go, and paced at about half
    /// of that (a busy database that is not saturated).
    latency_payments: [BesideLoad; 2],
    drain_events: i64,
    scale_events: i64,
    scale_retained: i64,
    /// Live-board clients connected during the board figure's drains (of `scale_events`).
    board_clients: usize,
    takeovers: usize,
    heal_events: i64,
    heals: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                seconds: 2,
                clients: vec![8],
                rushes: [(200, 50), (1_000, 200)],
                latency_rate: 50,
                latency_seconds: 2,
                latency_payments: [
                    BesideLoad {
                        clients: 4,
                        per_second: None,
                    },
                    BesideLoad {
                        clients: 4,
                        per_second: Some(100),
                    },
                ],
                drain_events: 5_000,
                scale_events: 2_000,
                scale_retained: 20_000,
                board_clients: 20,
                takeovers: 2,
                heal_events: 1_000,
                heals: 2,
            }
        } else {
            Self {
                seconds: 10,
                clients: vec![8, 32, 128],
                rushes: [(2_000, 500), (50_000, 2_000)],
                latency_rate: 200,
                latency_seconds: 10,
                latency_payments: [
                    BesideLoad {
                        clients: 8,
                        per_second: None,
                    },
                    BesideLoad {
                        clients: 8,
                        per_second: Some(400),
                    },
                ],
                drain_events: 200_000,
                scale_events: 200_000,
                scale_retained: 1_000_000,
                board_clients: 1_000,
                takeovers: 10,
                heal_events: 10_000,
                heals: 5,
            }
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.work_dir)?;
    let env = Env {
        admin_url: args.admin_url,
        redis_url: args.redis_url,
        bin_dir: args.bin_dir,
        work_dir: args.work_dir,
    };
    let sizes = Sizes::new(args.quick);
    let wanted = |figure: Figure| args.only.is_empty() || args.only.contains(&figure);
    let mut report = Report::default();
    let mut memory: Vec<(String, Memory)> = Vec::new();

    println!("memory at rest");
    memory.push(("ranking-worker idle".into(), idle_worker(&env).await?));

    if wanted(Figure::Payments) {
        println!("payments (figure 1)");
        let peak = payments::payments(&env, &mut report, &sizes.clients, sizes.seconds).await?;
        memory.push(("payment-svc under the payments load".into(), peak));
    }
    if wanted(Figure::Rush) {
        for (seats, buyers) in sizes.rushes {
            println!("last-seat rush (figure 2): {seats} seats, {buyers} buyers");
            let peak = payments::rush(&env, &mut report, seats, buyers).await?;
            memory.push((format!("payment-svc in the rush of {buyers} buyers"), peak));
        }
    }
    let wakeups = if wanted(Figure::Latency) {
        println!("commit-to-ranking latency (figure 3)");
        vec![
            Wakeup {
                label: "LISTEN/NOTIFY (poll 1 s as fallback)",
                notify: true,
                poll_interval_ms: 1_000,
                payments_beside: None,
            },
            Wakeup {
                label: "LISTEN/NOTIFY (poll 1 s as fallback)",
                notify: true,
                poll_interval_ms: 1_000,
                payments_beside: Some(sizes.latency_payments[0]),
            },
            Wakeup {
                label: "LISTEN/NOTIFY (poll 1 s as fallback)",
                notify: true,
                poll_interval_ms: 1_000,
                payments_beside: Some(sizes.latency_payments[1]),
            },
            Wakeup {
                label: "poll only, every 1 s (the default interval)",
                notify: false,
                poll_interval_ms: 1_000,
                payments_beside: None,
            },
            Wakeup {
                label: "poll only, every 100 ms",
                notify: false,
                poll_interval_ms: 100,
                payments_beside: None,
            },
        ]
    } else {
        Vec::new()
    };
    for wakeup in wakeups {
        let peak = latency::latency(
            &env,
            &mut report,
            sizes.latency_rate,
            sizes.latency_seconds,
            &wakeup,
        )
        .await?;
        let beside = match wakeup.payments_beside {
            Some(load) => format!(", payments beside it ({load})"),
            None => String::new(),
        };
        memory.push((
            format!(
                "ranking-worker at {}/s, {}{beside}",
                sizes.latency_rate, wakeup.label
            ),
            peak,
        ));
    }

    if wanted(Figure::Latency) {
        for load in sizes.latency_payments {
            latency::horizon(
                &env,
                &mut report,
                sizes.latency_rate,
                sizes.latency_seconds,
                load,
            )
            .await?;
        }
    }

    if wanted(Figure::Drain) {
        println!("drain and replay (figure 4)");
        memory.extend(drain::drain(&env, &mut report, sizes.drain_events).await?);
    }
    if wanted(Figure::Scale) {
        println!("scale (figure 5)");
        drain::scale(&env, &mut report, sizes.scale_events, sizes.scale_retained).await?;
    }
    if wanted(Figure::Board) {
        println!("drain with live-board clients (figure 4b)");
        board::clients(&env, &mut report, sizes.scale_events, sizes.board_clients).await?;
    }
    if wanted(Figure::Read) {
        println!("read path (figure 4c)");
        read::read_path(&env, &mut report, sizes.seconds).await?;
    }
    if wanted(Figure::Takeover) {
        println!("takeover (figure 6)");
        failover::takeover(&env, &mut report, sizes.takeovers).await?;
    }
    if wanted(Figure::Heal) {
        println!("heal (figure 7)");
        failover::heal(&env, &mut report, sizes.heal_events, sizes.heals).await?;
    }

    println!("memory (figure 8)");
    for (what, memory) in &memory {
        report.figure(
            &format!("RSS: {what}"),
            format!(
                "now {:.1} MiB, peak {:.1} MiB",
                memory.current_mib, memory.peak_mib
            ),
        );
    }

    let table = report.markdown();
    let path = env.work_dir.join("results.md");
    std::fs::write(&path, &table)?;
    println!("\n{table}\n(written to {})", path.display());
    Ok(())
}

/// Resident memory of a worker that has started and has nothing to do.
async fn idle_worker(env: &Env) -> anyhow::Result<Memory> {
    let database = env.fresh_database("bench_idle").await?;
    let worker = env.spawn_worker(
        &database,
        &ranking_key("idle"),
        18_099,
        &[],
        &env.work_dir.join("idle-worker.log"),
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let memory = worker.memory()?;
    worker.stop()?;
    database.drop_now().await?;
    Ok(memory)
}
