//! Command line and configuration (SPEC §7): every flag also reads its environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shared::config::{DatabaseArgs, LogArgs};

use crate::auth::{JwtSecret, MAX_TOKEN_TTL};
use crate::domain::{Role, UserId};
use crate::startup::Limits;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Concert booking payments, writing ConcertSoldOut to the outbox"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Apply the database migrations, then exit.
    Migrate(MigrateArgs),
    /// Print a signed token, alone on stdout.
    Token(TokenArgs),
    /// Exit 0 if the service on HTTP_ADDR is ready (its /readyz), else 1: for a container's
    /// HEALTHCHECK.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The address the service listens on; a wildcard address is asked on loopback.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
}

#[derive(Debug, Args)]
pub struct JwtArgs {
    /// HS256 signing secret, at least 32 bytes.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = JwtSecret::parse)]
    pub jwt_secret: JwtSecret,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub jwt: JwtArgs,

    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// How long a seat hold lasts, in seconds.
    #[arg(long, env = "HOLD_TTL_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub hold_ttl_seconds: u64,

    /// Longest a request waits for a row lock, in milliseconds; a duplicate request waits this
    /// long for the first one holding its Idempotency-Key.
    #[arg(long, env = "LOCK_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub lock_timeout_ms: u64,

    /// Live (held, unexpired) holds one user may have at once.
    #[arg(long, env = "MAX_HOLDS_PER_USER", default_value_t = Limits::DEFAULT_MAX_HOLDS_PER_USER,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_holds_per_user: u32,

    /// Longest one SQL statement may run, in milliseconds; a request whose statement runs
    /// longer gets 503.
    #[arg(long, env = "STATEMENT_TIMEOUT_MS", default_value_t = Limits::DEFAULT_STATEMENT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub statement_timeout_ms: u64,

    /// Longest a client may take to send its request body, in milliseconds; a client that
    /// sends more slowly gets 408. A statement once sent is always answered with its outcome.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = Limits::DEFAULT_REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub jwt: JwtArgs,

    /// The user the token is for (a positive integer).
    #[arg(long, value_parser = parse_user_id)]
    pub user_id: UserId,

    /// Give the token the admin role.
    #[arg(long)]
    pub admin: bool,

    /// How long the token is valid, e.g. 30m, 1h, 7d; at most 30d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

impl TokenArgs {
    pub fn role(&self) -> Role {
        if self.admin {
            Role::Admin
        } else {
            Role::User
        }
    }
}

fn parse_user_id(value: &str) -> Result<UserId, String> {
    UserId::parse_str(value)
}

/// A token lifetime: payment-svc refuses tokens valid for longer than [`MAX_TOKEN_TTL`].
fn parse_ttl(value: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if ttl > MAX_TOKEN_TTL {
        return Err(format!(
            "at most {} (payment-svc refuses tokens valid for longer)",
            humantime::format_duration(MAX_TOKEN_TTL)
        ));
    }
    Ok(ttl)
}

impl ServeArgs {
    pub fn settings(&self) -> crate::startup::Settings {
        crate::startup::Settings {
            http_addr: self.http_addr,
            jwt_secret: self.jwt.jwt_secret.clone(),
            hold_ttl: Duration::from_secs(self.hold_ttl_seconds),
            lock_timeout: Duration::from_millis(self.lock_timeout_ms),
            max_connections: self.database.database_max_connections,
        }
    }
}

impl ServeArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_holds_per_user: self.max_holds_per_user,
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        }
    }
}

impl Cli {
    /// Parses the command line; without a subcommand, `serve` is meant.
    pub fn parse_with_default() -> Self {
        shared::config::parse_with_default_command("serve", |cli: &Self| cli.command.is_some())
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
