//! One tracing subscriber builder for both binaries.

use std::io::{BufWriter, IsTerminal};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
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

/// Keeps the service's log writer running; dropped (on the way out of `main`), it writes the
/// lines still queued and stops.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Installs the global subscriber for a service, writing to stdout. `RUST_LOG` overrides the
/// default filter.
///
/// Lines are formatted where they are logged and written by a thread of their own, each burst
/// in one `write(2)`: a consumer draining a backlog logs a line per event, and writing them one
/// call each cost it about a tenth of its time (BENCHMARKS.md). Never lossy: a full queue
/// (128,000 lines) makes the logging thread wait rather than drop lines. Lines still queued
/// when the process is killed (SIGKILL) are lost; a clean exit writes them.
pub fn init(format: LogFormat) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(BufWriter::new(std::io::stdout()));
    install(
        format,
        DEFAULT_FILTER,
        writer,
        std::io::stdout().is_terminal(),
    );
    LogGuard { _writer: guard }
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
    static GUARD: OnceLock<LogGuard> = OnceLock::new();
    if std::env::var_os("TEST_LOG").is_some() {
        GUARD.get_or_init(|| init(LogFormat::Pretty));
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
