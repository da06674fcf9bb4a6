//! ranking-worker: follows the outbox as a log and keeps the sold-out ranking in Redis.
//!
//! `run` (the default) runs the consumers (the ranking, and the sold-out webhook when one is
//! configured) and the HTTP API with the live board; several instances may run, one active per
//! consumer. The other subcommands are the operator's tools: `replay`, `status`, `consumers`,
//! `dead-letters`, `prune`, `top`, and `healthcheck` for the image. A failure is one line naming
//! what went wrong, and exit code 1.

use anyhow::Context;
use ranking_worker::cli::{
    Cli, Command, ConsumersCommand, DeadLettersCommand, RankingCommand, RedisArgs,
};
use ranking_worker::commands::{consumers, dead_letters, moderation, prune, replay, status, top};
use ranking_worker::log::ReplayFilter;
use ranking_worker::periods::PeriodView;
use ranking_worker::ranking::Ranking;
use ranking_worker::worker::{Worker, WorkerSettings};
use secrecy::ExposeSecret;
use shared::config::DatabaseArgs;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let cli = Cli::parse_with_default();
    if let Err(error) = execute(cli).await {
        // One line naming what went wrong, with its causes.
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        unreachable!("parse_with_default always yields a subcommand")
    };
    match command {
        Command::Run(args) => {
            let _log = shared::telemetry::init(cli.log.log_format);
            let database = args.database.database_url.connect_options();
            let settings = WorkerSettings {
                http_addr: args.http_addr,
                redis_url: args.redis.redis_url.clone(),
                ranking_keys: args.redis.ranking_key.clone(),
                periods: args.redis.periods(),
                relay: args.relay_settings(),
                poll_interval: args.poll_interval(),
                max_connections: args.database.database_max_connections,
                webhook: args.webhook.settings()?,
                stream_max_clients: args.stream_max_clients as usize,
            };
            let worker = Worker::build(settings, database).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(shared::signals::cancel_on_signal(shutdown.clone()));
            worker.run_until_stopped(shutdown).await?;
            tracing::info!("ranking-worker stopped");
        }
        Command::Replay(args) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            let (mut redis, ranking) = connect_ranking(&args.redis)?;
            let report = if args.rebuild {
                replay::rebuild(&pool, &mut redis, &ranking).await?
            } else {
                let filter = ReplayFilter {
                    since: args.since,
                    until: args.until,
                    schedule_id: args.schedule_id,
                    event_id: args.event_id,
                };
                replay::replay(&pool, &mut redis, &ranking, &filter, args.dry_run).await?
            };
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else if args.dry_run {
                println!("dry run: {report}");
            } else {
                println!("{report}");
            }
        }
        Command::Status(args) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            let (mut redis, ranking) = connect_ranking(&args.redis)?;
            let status = status::status(&pool, &mut redis, &ranking).await?;
            if args.json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                println!("{status}");
            }
        }
        Command::DeadLetters(DeadLettersCommand::List(args)) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            let letters = dead_letters::list(&pool, args.consumer.as_deref()).await?;
            if args.json {
                println!("{}", serde_json::to_string(&letters)?);
            } else {
                println!("{}", dead_letters::render(&letters));
            }
        }
        Command::DeadLetters(DeadLettersCommand::Retry(args)) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            let report = if args.consumer == ranking_worker::webhook::WEBHOOK {
                let settings = args.webhook.settings()?.context(
                    "retrying the webhook's dead letters delivers them: set SOLD_OUT_WEBHOOK_URL \
                     and SOLD_OUT_WEBHOOK_SECRET",
                )?;
                let delivery = ranking_worker::webhook::Delivery::new(settings)?;
                dead_letters::retry_webhook(&pool, &delivery, args.event_id).await?
            } else {
                let (mut redis, ranking) = connect_ranking(&args.redis)?;
                dead_letters::retry(&pool, &mut redis, &ranking, &args.consumer, args.event_id)
                    .await?
            };
            println!("{report}");
        }
        Command::Consumers(args) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            match args.command {
                None => {
                    let views = consumers::list(&pool).await?;
                    if args.json {
                        println!(
                            "{}",
                            serde_json::to_string(&serde_json::json!({ "consumers": views }))?
                        );
                    } else {
                        println!("{}", consumers::render(&views));
                    }
                }
                Some(ConsumersCommand::Pause { name, reason }) => {
                    println!("{}", consumers::pause(&pool, &name, &reason).await?);
                }
                Some(ConsumersCommand::Resume { name }) => {
                    println!("{}", consumers::resume(&pool, &name).await?);
                }
                Some(ConsumersCommand::Remove { name }) => {
                    println!("{}", consumers::remove(&pool, &name).await?);
                }
                Some(ConsumersCommand::Reset { name, since }) => {
                    println!("{}", consumers::reset(&pool, &name, since).await?);
                }
            }
        }
        Command::Prune(args) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            let report = prune::prune(&pool, args.before, args.dry_run).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Ranking(RankingCommand::Remove(args)) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            let (mut redis, ranking) = connect_ranking(&args.redis)?;
            let removed = moderation::remove(
                &pool,
                &mut redis,
                &ranking,
                &args.member,
                &args.reason,
                &args.by,
            )
            .await?;
            if args.json {
                println!("{}", serde_json::to_string(&removed)?);
            } else {
                println!("{removed}");
            }
        }
        Command::Ranking(RankingCommand::Restore(args)) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let pool = connect_db(&args.database).await?;
            let (mut redis, ranking) = connect_ranking(&args.redis)?;
            let restored =
                moderation::restore(&pool, &mut redis, &ranking, &args.member, &args.by).await?;
            if args.json {
                println!("{}", serde_json::to_string(&restored)?);
            } else {
                println!("{restored}");
            }
        }
        Command::Healthcheck(args) => {
            if let Err(why) = shared::healthcheck::check_ready(args.http_addr).await {
                eprintln!("unhealthy: {why}");
                std::process::exit(1);
            }
        }
        Command::Top(args) => {
            shared::telemetry::init_for_commands(cli.log.log_format);
            let (mut redis, ranking) = connect_ranking(&args.redis)?;
            let period = match args.period {
                Some(kind) => {
                    let at = args.at.unwrap_or_else(|| ranking.periods().today());
                    let period = ranking.periods().period(kind, at);
                    Some(
                        period
                            .with_context(|| format!("--at {at} has no {} board", kind.as_str()))?,
                    )
                }
                None => None,
            };
            let key = ranking.board_key(period.as_ref());
            let entries = ranking
                .top_of(&mut redis, period.as_ref(), 0, args.limit)
                .await
                .context("reading the ranking from Redis")?;
            if args.json {
                let mut page = serde_json::json!({ "key": key, "entries": entries });
                if let Some(period) = &period {
                    page["period"] = serde_json::to_value(PeriodView::new(period))?;
                }
                println!("{}", serde_json::to_string(&page)?);
            } else {
                println!("{}", top::render(&key, &entries));
            }
        }
    }
    Ok(())
}

async fn connect_db(args: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    shared::db::pool_options(2)
        .connect_with(args.database_url.connect_options())
        .await
        .context("connecting to Postgres (DATABASE_URL)")
}

fn connect_ranking(args: &RedisArgs) -> anyhow::Result<(redis::aio::ConnectionManager, Ranking)> {
    let redis = ranking_worker::redis_conn::connect(args.redis_url.expose_secret())?;
    Ok((redis, args.ranking()))
}
