//! Command line and configuration (SPEC §6–7): every flag also reads its environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use clap::{Args, Parser, Subcommand};
use shared::config::{DatabaseArgs, LogArgs, SecretParser};
use uuid::Uuid;

use crate::moderation::Member;
use crate::periods::{self, PeriodKind, PeriodSettings};
use crate::ranking::{Ranking, RankingKeys};
use crate::redis_conn::RedisUrl;
use crate::relay::RelaySettings;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Relays ConcertSoldOut events from the outbox into the Redis ranking"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the consumers and the HTTP API (the default). Several may run: one is active, the
    /// others stand by and take over.
    Run(RunArgs),
    /// Re-apply ConcertSoldOut events the ranking has passed to Redis (all unless filtered).
    Replay(ReplayArgs),
    /// Show each consumer's position, lag, state and dead letters, the log, and the ranking.
    Status(StatusArgs),
    /// Inspect and redrive events a consumer could not handle (undecodable, unknown version).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// List the consumers (position, lag, state, dead letters), or pause, resume, remove or
    /// reset one.
    Consumers(ConsumersArgs),
    /// Delete log rows created before a time that every consumer has passed and none retains
    /// (never a ConcertSoldOut, an unconsumed row or one with open dead letters).
    Prune(PruneArgs),
    /// Print the ranking, fastest sell-out first.
    Top(TopArgs),
    /// Hide an entry on every board (a test or fraudulent sell-out), or restore it.
    #[command(subcommand)]
    Ranking(RankingCommand),
    /// Exit 0 if the worker on RANKING_HTTP_ADDR is ready (its /readyz), else 1: for a
    /// container's HEALTHCHECK.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The address the worker listens on; a wildcard address is asked on loopback.
    #[arg(
        long,
        env = "RANKING_HTTP_ADDR",
        value_name = "RANKING_HTTP_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub http_addr: SocketAddr,
}

/// How to reach Redis and which ranking to use.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis connection URL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = "redis://127.0.0.1:6379",
          value_parser = SecretParser::new(RedisUrl::parse))]
    pub redis_url: RedisUrl,

    /// The ranking's sorted-set key; helper keys are named `{RANKING_KEY}:...`.
    #[arg(long, env = "RANKING_KEY", default_value = "concert:schedule:ranking", value_parser = RankingKeys::parse)]
    pub ranking_key: RankingKeys,

    /// The time zone whose calendar days, ISO weeks and months the period boards follow (an
    /// IANA name).
    #[arg(long, env = "RANKING_TIMEZONE", default_value = "Asia/Seoul", value_parser = periods::parse_timezone)]
    pub ranking_timezone: Tz,

    /// Days a period board is kept after its period ends; replay and rebuild do not write
    /// boards past it again. The default keeps last year's same month for comparison.
    #[arg(long, env = "RANKING_PERIOD_RETENTION_DAYS", default_value_t = periods::DEFAULT_RETENTION_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(periods::MAX_RETENTION_DAYS)))]
    pub ranking_period_retention_days: u32,
}

impl RedisArgs {
    pub fn periods(&self) -> PeriodSettings {
        PeriodSettings {
            timezone: self.ranking_timezone,
            retention_days: self.ranking_period_retention_days,
        }
    }

    /// The ranking these settings name.
    pub fn ranking(&self) -> Ranking {
        Ranking::new(self.ranking_key.clone()).with_periods(self.periods())
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Address of the ranking API, health and metrics.
    #[arg(
        long,
        env = "RANKING_HTTP_ADDR",
        value_name = "RANKING_HTTP_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub http_addr: SocketAddr,

    /// How often to look for work when no notification arrives, in milliseconds.
    #[arg(long, env = "POLL_INTERVAL_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub poll_interval_ms: u64,

    /// Events claimed and applied per batch.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// First pause after a failure (Redis or Postgres unavailable), in milliseconds; doubles
    /// per consecutive failure.
    #[arg(long, env = "RETRY_BASE_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub retry_base_ms: u64,

    /// Longest pause between retries, in milliseconds.
    #[arg(long, env = "RETRY_MAX_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub retry_max_ms: u64,

    /// Most clients of the live stream (GET /rankings/sold-out/stream) served at once; more
    /// are answered 503.
    #[arg(long, env = "STREAM_MAX_CLIENTS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub stream_max_clients: u32,

    /// The sold-out webhook consumer (off unless SOLD_OUT_WEBHOOK_URL is set).
    #[command(flatten)]
    pub webhook: crate::webhook::WebhookArgs,
}

impl RunArgs {
    pub fn relay_settings(&self) -> RelaySettings {
        RelaySettings {
            batch_size: i64::from(self.batch_size),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_cap: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms)),
        }
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Only events committed at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,

    /// Only events committed before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,

    /// Only this schedule's event.
    #[arg(long = "schedule")]
    pub schedule_id: Option<i64>,

    /// Only this event.
    #[arg(long = "event")]
    pub event_id: Option<Uuid>,

    /// Count what would change without writing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Rebuild the whole ranking into a fresh key and swap it in atomically.
    #[arg(long, conflicts_with_all = ["since", "until", "schedule_id", "event_id", "dry_run"])]
    pub rebuild: bool,

    /// Print the counts as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters with their error.
    List(DeadLettersListArgs),
    /// Apply one dead letter again (after a fix), or all of them with --all.
    Retry(Box<DeadLettersRetryArgs>),
}

#[derive(Debug, Args)]
pub struct DeadLettersListArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Only this consumer's dead letters.
    #[arg(long)]
    pub consumer: Option<String>,

    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeadLettersRetryArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// The event to apply again.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub event_id: Option<Uuid>,

    /// Apply every dead letter again.
    #[arg(long)]
    pub all: bool,

    /// The consumer whose dead letters to retry: `ranking` applies them to Redis, `webhook`
    /// delivers them to SOLD_OUT_WEBHOOK_URL again.
    #[arg(long, default_value = crate::consumers::RANKING, value_parser = ["ranking", "webhook"])]
    pub consumer: String,

    /// Where and how `--consumer webhook` delivers.
    #[command(flatten)]
    pub webhook: crate::webhook::WebhookArgs,
}

#[derive(Debug, Args)]
pub struct ConsumersArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<ConsumersCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ConsumersCommand {
    /// Stop a consumer delivering until `consumers resume`; its position stays.
    Pause {
        /// The consumer, as `consumers` lists it.
        name: String,
        /// Why, shown by `consumers` and `status`.
        #[arg(long, default_value = "paused by an operator")]
        reason: String,
    },
    /// Let a paused (or sink-disabled) consumer deliver again.
    Resume {
        /// The consumer, as `consumers` lists it.
        name: String,
    },
    /// Forget a consumer no longer configured, with its dead letters, so its position no
    /// longer holds back pruning. Refused while an instance runs it, and for `ranking`.
    Remove {
        /// The consumer, as `consumers` lists it.
        name: String,
    },
    /// Deliver again from the first log position whose row was created at or after --since
    /// (log order is commit order, so it says which rows that covers). Not for `ranking`,
    /// whose position lives in Redis: `replay` is its tool.
    Reset {
        /// The consumer, as `consumers` lists it.
        name: String,
        /// RFC 3339, e.g. 2026-11-25T10:00:00Z.
        #[arg(long)]
        since: DateTime<Utc>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RankingCommand {
    /// Hide an entry on the all-time board and its period boards; recorded in Postgres, so
    /// heal, replay and replay --rebuild keep it hidden.
    Remove(RankingRemoveArgs),
    /// Bring a hidden entry back, with its exact score, from its event in the outbox.
    Restore(RankingRestoreArgs),
}

#[derive(Debug, Args)]
pub struct RankingRemoveArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// The entry, as the boards name it: concert:{concert_id}:schedule:{schedule_id}.
    pub member: Member,

    /// Why it is hidden, kept with it.
    #[arg(long)]
    pub reason: String,

    /// Who hides it, kept with it.
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,

    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RankingRestoreArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// The hidden entry: concert:{concert_id}:schedule:{schedule_id}.
    pub member: Member,

    /// Who restores it, kept with the record.
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,

    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Delete only rows created before this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long)]
    pub before: DateTime<Utc>,

    /// Count what would be deleted and why the rest is kept, without deleting.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub redis: RedisArgs,

    /// How many entries to print.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,

    /// Print a period's board instead of the all-time one: day, week or month.
    #[arg(long)]
    pub period: Option<PeriodKind>,

    /// The period's date (YYYY-MM-DD, in RANKING_TIMEZONE); today by default.
    #[arg(long, requires = "period")]
    pub at: Option<NaiveDate>,

    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// Parses the command line; without a subcommand, `run` is meant.
    pub fn parse_with_default() -> Self {
        shared::config::parse_with_default_command("run", |cli: &Self| cli.command.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
