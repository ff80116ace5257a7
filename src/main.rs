//! The `activity-tracker` binary: parse the command line, load the
//! configuration, run one entry point. Everything else lives in the library.

use std::process::ExitCode;

use activity_tracker::config::{Command, Config, Sources};
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
        match invocation.command {
            Command::Broker => broker::run_command(config, invocation.brokers).await,
            Command::Topics => topics::run_command(config, invocation.recreate).await,
            Command::Produce => producer::run_command(config, invocation.truth_file).await,
            Command::Analytics => {
                consumers::run_command(consumers::Kind::Analytics, config, invocation.report_file).await
            }
            Command::Fraud => consumers::run_command(consumers::Kind::Fraud, config, invocation.report_file).await,
            Command::Demo => demo::run_command(config).await,
            Command::Collect => collect::run_command(config).await,
            Command::Dlq => match invocation.dlq {
                Some(action) => dlq::run_command(config, action).await,
                None => anyhow::bail!("dlq action missing"),
            },
            Command::Bench => match invocation.bench {
                Some(options) => bench::run_command(config, options).await,
                None => anyhow::bail!("bench options missing"),
            },
            Command::Fleet => match invocation.fleet {
                Some(options) => fleet::run_command(config, options).await,
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
