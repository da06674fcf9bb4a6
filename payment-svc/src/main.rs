//! payment-svc: the booking API (concerts, seat holds, points, payments) over HTTP.
//!
//! `serve` (the default) runs the API until SIGTERM/SIGINT, then lets requests in flight finish;
//! `migrate` applies the workspace's migrations; `token` mints a bearer token signed with
//! `JWT_SECRET`; `healthcheck` asks a running instance's `/readyz` (the images' HEALTHCHECK).
//! Everything else lives in the library, so tests build the same application.

use anyhow::Context;
use payment_svc::auth::mint_token;
use payment_svc::cli::{Cli, Command};
use payment_svc::startup::Application;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_with_default();
    match cli.command {
        Some(Command::Token(args)) => {
            // Nothing else may reach stdout: scripts capture the token with $(...).
            println!(
                "{}",
                mint_token(&args.jwt.jwt_secret, args.user_id, args.role(), args.ttl)?
            );
        }
        Some(Command::Migrate(args)) => {
            let _log = shared::telemetry::init(cli.log.log_format);
            let pool = shared::db::pool_options(1)
                .connect_with(args.database.database_url.connect_options())
                .await
                .context("connecting to DATABASE_URL")?;
            shared::MIGRATOR
                .run(&pool)
                .await
                .context("applying migrations")?;
            tracing::info!("migrations applied");
        }
        Some(Command::Serve(args)) => {
            let _log = shared::telemetry::init(cli.log.log_format);
            let database = args.database.database_url.connect_options();
            let app =
                Application::build_with_limits(args.settings(), args.limits(), database).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(shared::signals::cancel_on_signal(shutdown.clone()));
            app.run_until_stopped(shutdown).await?;
            tracing::info!("payment-svc stopped");
        }
        Some(Command::Healthcheck(args)) => {
            if let Err(why) = shared::healthcheck::check_ready(args.http_addr).await {
                eprintln!("unhealthy: {why}");
                std::process::exit(1);
            }
        }
        None => unreachable!("parse_with_default always yields a subcommand"),
    }
    Ok(())
}
