//! Settings both binaries take, as clap argument groups with environment fallbacks.

use clap::Args;

use crate::telemetry::LogFormat;

/// How to reach Postgres.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Most connections this process opens to Postgres.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
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
    use super::*;

    #[test]
    fn clap_reports_fold_into_one_line() {
        let report = "error: the following required arguments were not provided:\n  --database-url <DATABASE_URL>\n\nUsage: x serve --database-url <DATABASE_URL>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(report),
            "error: the following required arguments were not provided: --database-url <DATABASE_URL>"
        );
    }
}
