//! One tracing subscriber builder for both binaries.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The filter when `RUST_LOG` is unset: our crates at info, dependencies at warn.
const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// For one-shot commands whose stdout is their output: only warnings.
const COMMAND_FILTER: &str = "warn";

/// Installs the global subscriber for a service, writing to stdout. `RUST_LOG` overrides the
/// default filter.
pub fn init(format: LogFormat) {
    install(
        format,
        DEFAULT_FILTER,
        std::io::stdout,
        std::io::stdout().is_terminal(),
    );
}

/// Installs the global subscriber for an operator command: stderr, so that stdout is the
/// command's own output.
pub fn init_for_commands(format: LogFormat) {
    install(
        format,
        COMMAND_FILTER,
        std::io::stderr,
        std::io::stderr().is_terminal(),
    );
}

/// For tests: logs only when `TEST_LOG` is set, so passing runs stay quiet.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(LogFormat::Pretty);
    }
}

/// `colour`: escape codes only for a terminal, never into a file or a pipe.
fn install<W>(format: LogFormat, default_filter: &str, writer: W, colour: bool)
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(colour)
        .with_writer(writer);
    // try_init: a second call (several apps in one test process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        // Span fields (a request's method and path) are flattened in beside the event's own.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
