//! `activity-tracker demo`: the whole system in one process.
//!
//! An embedded broker (unless `KAFKA_BOOTSTRAP_SERVERS` is set), the
//! simulator, the analytics consumer and the fraud detector, each on its own
//! thread exactly as they run as separate commands, sharing one HTTP port
//! (`/report` is the analytics report, `/report/fraud` the detector's).
//! Ctrl+C stops everything gracefully and prints every summary. With
//! `MAX_EVENTS`, the demo stops by itself once both consumers have processed
//! every event.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::broker::EmbeddedBroker;
use crate::config::Config;
use crate::consumers::{self, Kind};
use crate::http::{HttpState, serve};
use crate::producer::{self, ProduceOptions};
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

/// How long a finished demo waits for the consumers to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run_command(mut config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let _broker = if config.kafka.bootstrap_servers_set {
        for outcome in crate::topics::ensure_topics(&config.kafka, &config.topics, false).await? {
            println!("{outcome}");
        }
        None
    } else {
        let broker = EmbeddedBroker::start(1, &config.topics)?;
        // It answers no CreateTopics: the consumers' state topics are made here.
        if !config.consumer.snapshot_interval.is_zero() {
            for kind in [Kind::Analytics, Kind::Fraud] {
                let topic = crate::runtime::snapshots::SnapshotOptions::topic_for(
                    &config.topics.activities,
                    &kind.group(&config),
                );
                broker.create_topic(&topic, config.topics.partitions)?;
            }
        }
        config.kafka.bootstrap_servers = broker.bootstrap_servers().to_string();
        config.consumer.fetch_wait_max = Some(crate::broker::FETCH_WAIT_MAX);
        println!(
            "🧪 Embedded Kafka broker on {} — topics {} ({} partitions), {}, {}",
            broker.bootstrap_servers(),
            config.topics.activities,
            config.topics.partitions,
            config.topics.alerts,
            config.topics.dlq
        );
        Some(broker)
    };

    let telemetry = Telemetry::new();
    let analytics = consumers::spawn(
        consumers::analytics_app(&config),
        &config,
        Kind::Analytics.group(&config),
        &telemetry,
        shutdown.clone(),
    )?;
    let fraud = consumers::spawn(
        consumers::fraud_app(&config),
        &config,
        Kind::Fraud.group(&config),
        &telemetry,
        shutdown.clone(),
    )?;
    let state = HttpState {
        telemetry: telemetry.clone(),
        consumers: vec![
            (analytics.name, analytics.shared.clone()),
            (fraud.name, fraud.shared.clone()),
        ],
    };
    let bound = serve(config.http_addr, state, shutdown.clone()).await;
    if let Ok(addr) = bound {
        println!(
            "🌐 http://{addr}/report (analytics), http://{addr}/report/fraud, http://{addr}/metrics — Ctrl+C to stop\n"
        );
    }

    let options = ProduceOptions {
        kafka: config.kafka.clone(),
        topic: config.topics.activities.clone(),
        producer: config.producer.clone(),
        truth_file: None,
        shutdown_timeout: config.consumer.shutdown_timeout,
        progress: true,
        trace: config.log.tracing(),
    };
    let metrics = telemetry.producer(&options.topic);
    let producer_shutdown = shutdown.clone();
    let stats = tokio::task::spawn_blocking(move || producer::run(&options, metrics, &producer_shutdown))
        .await
        .context("producer thread")??;

    if !shutdown.is_triggered() {
        // MAX_EVENTS reached: let both consumers finish what was sent.
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let caught_up = |c: &consumers::RunningConsumer| {
            c.shared
                .status
                .read()
                .map(|s| s.events_consumed >= stats.delivered)
                .unwrap_or(false)
        };
        while !shutdown.is_triggered() && Instant::now() < deadline && !(caught_up(&analytics) && caught_up(&fraud)) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        shutdown.trigger();
    }
    let analytics = consumers::join(analytics).await?;
    let fraud = consumers::join(fraud).await?;
    print!("{}", stats.render());
    print!("{}", analytics.final_summary);
    print!("{}", fraud.final_summary);
    Ok(())
}
