//! Settings both binaries take, as clap argument groups with environment fallbacks.

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

use crate::telemetry::LogFormat;

/// How to reach Postgres.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = SecretParser::new(DatabaseUrl::parse))]
    pub database_url: DatabaseUrl,

    /// Most connections this process opens to Postgres.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
}

/// A Postgres URL, checked when the command line is parsed (a bad one is a one-line error naming
/// `DATABASE_URL`) and kept as a secret: it may hold a password, so `Debug` never prints it.
#[derive(Debug, Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        // sqlx's own message may quote the URL, password and all: name the problem only.
        value.parse::<PgConnectOptions>().map_err(|_| {
            "is not a valid Postgres URL (postgres://user:password@host:port/database)".to_owned()
        })?;
        Ok(Self(value.into()))
    }

    /// The options to connect with.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.0
            .expose_secret()
            .parse()
            .expect("parse checked that the URL is valid")
    }
}

/// Parses a setting that may hold a secret (a URL with a password, a signing key) without
/// echoing it: clap's usual report quotes a refused value. The error names the setting and what
/// is wrong, from `parse`'s message, which must not quote the value either.
pub struct SecretParser<T>(fn(&str) -> Result<T, String>);

impl<T> SecretParser<T> {
    pub const fn new(parse: fn(&str) -> Result<T, String>) -> Self {
        Self(parse)
    }
}

impl<T> Clone for SecretParser<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SecretParser<T> {}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for SecretParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let check = value
            .to_str()
            .ok_or_else(|| "is not valid UTF-8".to_owned())
            .and_then(self.0);
        check.map_err(|why| {
            let name = arg.map_or_else(|| "a secret setting".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{name}': {why}\n"),
            )
            .with_cmd(command)
        })
    }
}

/// How logs are written.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// `pretty` for people, `json` for log collectors (containers).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Parses the command line, printing a bad or missing setting as one line that names it.
///
/// clap's own report spans several lines (the error, a usage line, a hint); operators read the
/// first line of a crashed container's log, so it is folded into that line. `--help` and
/// `--version` print as usual.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    parse_from_or_exit(std::env::args_os())
}

/// [`parse_or_exit`] for a service whose bare name means one of its subcommands: when the command
/// line names none (`names_command` says whether it did), `default` is appended and it is parsed
/// again, so the subcommand's flags and environment variables still apply.
pub fn parse_with_default_command<T: clap::Parser>(
    default: &str,
    names_command: impl Fn(&T) -> bool,
) -> T {
    let parsed: T = parse_or_exit();
    if names_command(&parsed) {
        return parsed;
    }
    parse_from_or_exit(std::env::args_os().chain([default.into()]))
}

/// [`parse_or_exit`] over the given arguments.
pub fn parse_from_or_exit<T, I>(args: I) -> T
where
    T: clap::Parser,
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString> + Clone,
{
    T::try_parse_from(args).unwrap_or_else(|error| {
        use clap::error::ErrorKind;
        if matches!(
            error.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        ) || error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        {
            error.exit();
        }
        eprintln!("{}", one_line(&error.render().to_string()));
        std::process::exit(2);
    })
}

fn one_line(report: &str) -> String {
    report
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Usage:")
                && !line.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use clap::Args as _;

    use super::*;

    #[test]
    fn database_urls_are_checked_and_never_printed() {
        let url = DatabaseUrl::parse("postgres://app:hunter2@db:5432/booking").unwrap();
        assert_eq!(url.connect_options().get_database(), Some("booking"));
        assert!(!format!("{url:?}").contains("hunter2"));
        let refused = DatabaseArgs::augment_args(clap::Command::new("x"))
            .try_get_matches_from([
                "x",
                "--database-url",
                "postgres://app:hunter2@db:port/booking",
            ])
            .unwrap_err()
            .render()
            .to_string();
        assert!(refused.contains("--database-url"), "{refused}");
        assert!(
            !refused.contains("hunter2"),
            "the refusal shows the password: {refused}"
        );
    }

    #[test]
    fn clap_reports_fold_into_one_line() {
        let report = "error: the following required arguments were not provided:\n  --database-url <DATABASE_URL>\n\nUsage: x serve --database-url <DATABASE_URL>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(report),
            "error: the following required arguments were not provided: --database-url <DATABASE_URL>"
        );
    }
}
