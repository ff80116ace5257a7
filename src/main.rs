//! The `activity-tracker` binary: parse the command line, load the
//! configuration, turn signals into the library's stop token, run one entry
//! point. Everything else lives in the library, which never installs a
//! signal handler or exits the process.

use std::process::ExitCode;
use std::time::Duration;

use activity_tracker::config::{Command, Config, Sources};
use activity_tracker::shutdown::{Shutdown, WATCHDOG_SLACK, stop_budget};
use activity_tracker::{bench, broker, cli, collect, consumers, demo, dlq, fleet, producer, telemetry, topics};

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os(), Sources::from_process()) {
        Ok(i) => i,
        Err(e) => e.exit(),
    };
    if let Some((target, timeout)) = &invocation.probe {
        return activity_tracker::probe::run_command(target, *timeout);
    }
    if invocation.markdown {
        print!("{}", activity_tracker::config::markdown_table());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(invocation.command, &invocation.sources) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if invocation.command == Command::Config {
        print!("{}", config.describe());
        return ExitCode::SUCCESS;
    }
    let _logs = telemetry::logging::init(
        &config.log,
        &format!("activity-tracker-{:?}", invocation.command).to_lowercase(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        // The long-running commands stop gracefully on a signal; the others
        // (topics, dlq, bench) keep the default: a signal ends them.
        let shutdown = Shutdown::new();
        if matches!(
            invocation.command,
            Command::Broker
                | Command::Produce
                | Command::Analytics
                | Command::Fraud
                | Command::Demo
                | Command::Collect
                | Command::Fleet
        ) {
            on_signals(&shutdown, stop_budget(&config));
        }
        match invocation.command {
            Command::Broker => broker::run_command(config, invocation.brokers, shutdown).await,
            Command::Topics => topics::run_command(config, invocation.recreate).await,
            Command::Produce => producer::run_command(config, invocation.truth_file, shutdown).await,
            Command::Analytics => {
                consumers::run_command(consumers::Kind::Analytics, config, invocation.report_file, shutdown).await
            }
            Command::Fraud => {
                consumers::run_command(consumers::Kind::Fraud, config, invocation.report_file, shutdown).await
            }
            Command::Demo => demo::run_command(config, shutdown).await,
            Command::Collect => collect::run_command(config, shutdown).await,
            Command::Dlq => match invocation.dlq {
                Some(action) => dlq::run_command(config, action).await,
                None => anyhow::bail!("dlq action missing"),
            },
            Command::Bench => match invocation.bench {
                Some(options) => bench::run_command(config, options).await,
                None => anyhow::bail!("bench options missing"),
            },
            Command::Fleet => match invocation.fleet {
                Some(options) => fleet::run_command(config, options, shutdown).await,
                None => anyhow::bail!("fleet options missing"),
            },
            other => anyhow::bail!("{other:?} is not a runnable command"),
        }
    });
    // Consumer threads and the HTTP server have stopped; don't wait for idle
    // blocking-pool threads.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Some(fatal) = activity_tracker::kafka::fatal_error() {
        // Whatever the command made of it, this is why it stopped.
        eprintln!("error: {fatal}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Triggers `shutdown` on SIGINT or SIGTERM, and when a Kafka client meets
/// an error retrying cannot fix (`kafka::stop_on_fatal_error`). A
/// second signal exits at once with status 130, for a user who really means
/// it.
///
/// `budget` is how long the command's own graceful stop may take (its
/// `stop_budget`): every step of it is bounded, and a watchdog makes
/// that a promise — a process still running [`WATCHDOG_SLACK`] after the
/// budget exits with status 1, so a pod never outlives its grace period
/// because some network call did not return.
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
