//! Logs and traces: `tracing` to stderr (pretty or JSON), optionally to a
//! daily-rotated file in `LOG_DIR` (as the seed's `logs/` directory), and to
//! OpenTelemetry when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Standard output is kept for what the seed printed there (reports, alerts,
//! progress lines); diagnostics go to standard error, so piping a report or
//! the alert stream never mixes in log lines.

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// Keeps the file writer and the trace exporter flushing until dropped (hold
/// it for the whole run); dropping it flushes pending spans.
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
    traces: Option<SdkTracerProvider>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: could not flush traces: {e}");
        }
    }
}

/// Installs the global subscriber for a command. Later calls (tests) are
/// no-ops.
pub fn init(config: &LogConfig, service: &str) -> LogGuard {
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            let name = config.service_name.clone().unwrap_or_else(|| service.to_string());
            match super::trace::provider(endpoint, &name) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("warning: {e}; continuing without traces");
                    None
                }
            }
        }
        None => None,
    };
    install(config, service, provider)
}

/// Installs the global subscriber with an explicit trace provider (tests use
/// an in-memory exporter).
pub fn install(config: &LogConfig, service: &str, traces: Option<SdkTracerProvider>) -> LogGuard {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (file_writer, guard) = match &config.dir {
        Some(dir) => {
            let appender = tracing_appender::rolling::daily(dir, format!("{service}.log"));
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(writer), Some(guard))
        }
        None => (None, None),
    };
    match &traces {
        // Spans go to OpenTelemetry whatever LOG_LEVEL filters out of the
        // logs, which needs per-layer filters.
        Some(provider) => {
            let otel =
                super::trace::layer(provider).with_filter(tracing_subscriber::filter::filter_fn(|m| m.is_span()));
            let _ = tracing_subscriber::registry()
                .with(output(config.format, file_writer).with_filter(filter))
                .with(otel)
                .try_init();
        }
        // Without traces the filter is global. A per-layer filter loses the
        // next event on a thread after a `log` record it refused (rdkafka logs
        // through `log`, and LOG_LEVEL keeps it at warn): tokio-rs/tracing#2519.
        None => {
            let registry = tracing_subscriber::registry().with(filter);
            let _ = registry.with(output(config.format, file_writer)).try_init();
        }
    }
    LogGuard { _file: guard, traces }
}

/// Standard error (pretty or JSON) and, with `LOG_DIR`, the JSON file.
fn output<S>(
    format: LogFormat,
    file: Option<tracing_appender::non_blocking::NonBlocking>,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let stderr = match format {
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
    match file {
        Some(writer) => stderr
            .and_then(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .boxed(),
        None => stderr,
    }
}
