//! The `analytics` and `fraud` commands: a processor, the shared runtime on
//! its own thread, the HTTP endpoints, signals, and the final summary.

pub mod analytics;
pub mod fraud;
pub mod metrics;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;

use crate::analytics::AnalyticsProcessor;
use crate::config::Config;
use crate::fraud::{FraudDetector, FraudRules};
use crate::http::{HttpState, serve};
use crate::privacy::IpRenderer;
use crate::runtime::{self, ConsumerApp, ConsumerShared, RunOutcome, RuntimeError, RuntimeOptions};
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

pub use analytics::AnalyticsApp;
pub use fraud::FraudApp;

/// Which consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Analytics,
    Fraud,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Analytics => "analytics",
            Kind::Fraud => "fraud",
        }
    }

    pub fn group(self, config: &Config) -> String {
        match self {
            Kind::Analytics => config.consumer.analytics_group.clone(),
            Kind::Fraud => config.consumer.fraud_group.clone(),
        }
    }
}

pub fn analytics_app(config: &Config) -> AnalyticsApp {
    AnalyticsApp::new(
        AnalyticsProcessor::new(config.analytics.clone()),
        &config.consumer.analytics_group,
    )
}

pub fn fraud_app(config: &Config) -> FraudApp {
    FraudApp::new(
        FraudDetector::new(
            FraudRules::from_config(&config.fraud),
            IpRenderer::new(config.ip_privacy.clone()),
        ),
        config.topics.alerts.clone(),
        &config.consumer.fraud_group,
    )
}

/// A consumer running on its own thread.
pub struct RunningConsumer {
    pub name: &'static str,
    pub shared: Arc<ConsumerShared>,
    pub thread: JoinHandle<Result<RunOutcome, RuntimeError>>,
}

/// Starts `app` on the shared runtime in a new thread.
pub fn spawn<A: ConsumerApp>(
    app: A,
    config: &Config,
    group: String,
    telemetry: &Arc<Telemetry>,
    shutdown: Shutdown,
) -> std::io::Result<RunningConsumer> {
    let name = app.name();
    telemetry.add_source(app.metrics());
    let shared = Arc::new(ConsumerShared::default());
    let options = RuntimeOptions {
        topic: config.topics.activities.clone(),
        dlq_topic: config.topics.dlq.clone(),
        client_id: format!("activity-tracker-{name}-{}", std::process::id()),
        group: group.clone(),
        consumer: config.consumer.clone(),
        limits: config.limits.clone(),
        trace: config.log.tracing(),
        snapshots: (!config.consumer.snapshot_interval.is_zero()).then(|| runtime::snapshots::SnapshotOptions {
            topic: runtime::snapshots::SnapshotOptions::topic_for(&config.topics.activities, &group),
            interval: config.consumer.snapshot_interval,
            replication_factor: config.topics.replication_factor,
        }),
    };
    let metrics = telemetry.consumer(name, &group);
    let kafka = config.kafka.clone();
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("{name}-consumer"))
        .spawn(move || runtime::run(app, options, &kafka, metrics, thread_shared, shutdown))?;
    Ok(RunningConsumer { name, shared, thread })
}

/// Waits for a consumer thread and returns its outcome.
pub async fn join(consumer: RunningConsumer) -> anyhow::Result<RunOutcome> {
    let name = consumer.name;
    let outcome = tokio::task::spawn_blocking(move || consumer.thread.join())
        .await
        .context("waiting for the consumer thread")?
        .map_err(|_| anyhow::anyhow!("the {name} consumer thread panicked"))??;
    Ok(outcome)
}

/// The `analytics` and `fraud` commands.
pub async fn run_command(
    kind: Kind,
    config: Config,
    report_file: Option<PathBuf>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let telemetry = Telemetry::new();
    let group = kind.group(&config);
    let consumer = match kind {
        Kind::Analytics => spawn(analytics_app(&config), &config, group, &telemetry, shutdown.clone())?,
        Kind::Fraud => spawn(fraud_app(&config), &config, group, &telemetry, shutdown.clone())?,
    };
    let state = HttpState {
        telemetry: telemetry.clone(),
        consumers: vec![(consumer.name, consumer.shared.clone())],
    };
    if let Err(e) = serve(config.http_addr, state, shutdown.clone()).await {
        shutdown.trigger();
        let _ = join(consumer).await;
        return Err(e.into());
    }
    let outcome = join(consumer).await?;
    shutdown.trigger();
    print!("{}", outcome.final_summary);
    if let Some(path) = report_file {
        write_report(&path, &outcome.final_report)?;
    }
    Ok(())
}

/// Writes a final report as pretty JSON (for scripts and the fleet tests).
pub fn write_report(path: &std::path::Path, report: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("cannot write the report to {}", path.display()))
}
