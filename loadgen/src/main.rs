//! loadgen: drives payment-svc and ranking-worker over HTTP, as their users would.
//!
//! - `demo`: concerts open for sale at different moments and crowds sell them out;
//! - `check`: the end-to-end check of scripts/test: sells schedules out and verifies the
//!   ranking's members, order and exact scores through ranking-worker's API;
//! - `sell-out`: one new concert sold out, for scripts that need a real sell-out;
//! - `bench`: the figures of BENCHMARKS.md (scripts/bench).

mod api;
mod bench;
mod buyers;
mod check;
mod demo;
mod sell;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Drives payment-svc and ranking-worker over HTTP")]
struct Cli {
    /// payment-svc's base URL.
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:8080")]
    payment_url: String,

    /// ranking-worker's base URL.
    #[arg(long, env = "RANKING_URL", default_value = "http://127.0.0.1:8081")]
    ranking_url: String,

    /// The secret payment-svc verifies tokens with, to mint buyers' and the admin's tokens.
    #[arg(
        long,
        env = "JWT_SECRET",
        hide_env_values = true,
        required = false,
        default_value = ""
    )]
    jwt_secret: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sell out several concerts at different speeds.
    Demo,
    /// Sell out schedules and verify the ranking end to end; exits 1 on any mismatch.
    Check,
    /// Sell out one schedule of a new concert.
    SellOut(sell::SellOutArgs),
    /// Run the benchmarks; the services are started by the benchmark itself.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() {
    let cli: Cli = shared::config::parse_or_exit();
    if let Err(error) = execute(cli).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let api = api::Api::new(&cli.payment_url, &cli.ranking_url);
    match cli.command {
        Command::Demo => demo::run(&api, &api::Tokens::new(&cli.jwt_secret)?).await,
        Command::Check => check::run(&api, &api::Tokens::new(&cli.jwt_secret)?).await,
        Command::SellOut(args) => sell::run(&api, &api::Tokens::new(&cli.jwt_secret)?, args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
