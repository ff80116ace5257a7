//! The `activity-tracker` binary: parse the command line, load the
//! configuration, start logging and the async runtime, turn signals into
//! the library's stop token, run the command. Everything else lives in the
//! library, which never installs a signal handler or exits the process.

use std::process::ExitCode;
use std::time::Duration;

use activity_tracker::commands::{self, Context};
use activity_tracker::config::{Config, ConfigError, Sources};
use activity_tracker::shutdown::{Shutdown, WATCHDOG_SLACK};
use activity_tracker::telemetry;

fn main() -> ExitCode {
    let (command, sources) = match commands::parse(std::env::args_os(), Sources::from_process()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    let profile = command.profile();
    let config = match Config::load(profile, &sources) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _logs = telemetry::logging::init(&config.log, &format!("activity-tracker-{}", profile.name));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let context = Context {
        stop_on_signals: on_signals,
    };
    let result = runtime.block_on(command.run(config, context));
    // Consumer threads and the HTTP server have stopped; don't wait for idle
    // blocking-pool threads.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(fatal) = activity_tracker::kafka::fatal_error() {
        // Whatever the command made of it, this is why it stopped.
        eprintln!("error: {fatal}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A setting the command cannot run with, found when it starts.
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Triggers `shutdown` on SIGINT or SIGTERM, and when a Kafka client meets
/// an error retrying cannot fix (`kafka::stop_on_fatal_error`). A
/// second signal exits at once with status 130, for a user who really means
/// it. Long-running commands call this through [`Context::graceful`]; the
/// others keep the default: a signal ends them.
///
/// `budget` is how long the command's own graceful stop may take: every
/// step of it is bounded, and a watchdog makes that a promise — a process
/// still running [`WATCHDOG_SLACK`] after the budget exits with status 1, so
/// a pod never outlives its grace period because some network call did not
/// return.
fn on_signals(shutdown: &Shutdown, budget: Duration) {
    activity_tracker::kafka::stop_on_fatal_error(shutdown);
    exit_if_stuck(shutdown, budget + WATCHDOG_SLACK);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            signals += 1;
            if signals == 1 {
                tracing::info!(
                    "stop requested: finishing in-flight work (consumers drain, commit and leave their group); signal again to exit at once"
                );
                shutdown.trigger();
            } else {
                eprintln!("second stop signal: exiting immediately");
                std::process::exit(130);
            }
        }
    });
}

/// Exits the process (status 1) if it is still running `limit` after
/// `shutdown` was triggered.
fn exit_if_stuck(shutdown: &Shutdown, limit: Duration) {
    let shutdown = shutdown.clone();
    let spawned = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            while !shutdown.sleep(Duration::from_secs(3600)) {}
            std::thread::sleep(limit);
            eprintln!(
                "error: still stopping {limit:?} after the stop began; exiting now (anything not committed is re-processed by the next owner)"
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the shutdown watchdog");
    }
}
