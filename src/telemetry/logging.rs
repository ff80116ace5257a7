//! Logs: `tracing` to stderr (pretty or JSON) and optionally to a
//! daily-rotated file in `LOG_DIR`, as the seed's `logs/` directory.
//!
//! Standard output is kept for what the seed printed there (reports, alerts,
//! progress lines); diagnostics go to standard error, so piping a report or
//! the alert stream never mixes in log lines.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// Keeps the file writer flushing until dropped (hold it for the whole run).
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global subscriber. Later calls (tests) are no-ops.
pub fn init(config: &LogConfig, service: &str) -> LogGuard {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let (file_layer, guard) = match &config.dir {
        Some(dir) => {
            let appender = tracing_appender::rolling::daily(dir, format!("{service}.log"));
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer().json().with_writer(writer).boxed();
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file_layer)
        .try_init();
    LogGuard { _file: guard }
}
