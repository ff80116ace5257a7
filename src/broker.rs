//! The embedded Kafka-protocol broker, for the demo, the tests and the
//! seed's three-terminal walkthrough.
//!
//! It is librdkafka's mock cluster: real Kafka protocol over TCP on
//! 127.0.0.1, consumer groups (cooperative-sticky included), offset commits
//! with metadata, idempotent producers, and fault injection (broker down/up,
//! request errors, round-trip delay) for reliability tests. Any Kafka client
//! can connect to it.
//!
//! Limits, stated so nobody is surprised: it keeps about 5 MB or 100,000
//! message sets per partition and silently deletes older data, it cannot look
//! offsets up by timestamp, and it does not implement the CreateTopics admin
//! call (so [`EmbeddedBroker::start`] creates our topics itself). Data lives
//! in memory and is gone when the process exits. It answers a fetch only
//! after `fetch.wait.max.ms` even when data arrives sooner (a real broker
//! answers at once), so consumers of it in this process (demo, bench) wait
//! at most [`FETCH_WAIT_MAX`].

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::config::TopicsConfig;

/// fetch.wait.max.ms for consumers of the embedded broker (librdkafka's
/// default, 500 ms, would set every latency on it).
pub const FETCH_WAIT_MAX: Duration = Duration::from_millis(5);

/// A running embedded broker; dropping it stops it.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap_servers: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start the embedded broker: {0}")]
pub struct BrokerError(#[from] rdkafka::error::KafkaError);

impl EmbeddedBroker {
    /// Starts `brokers` brokers and creates the activities, alerts and
    /// dead-letter topics, each with the configured partition count.
    pub fn start(brokers: i32, topics: &TopicsConfig) -> Result<EmbeddedBroker, BrokerError> {
        let cluster = MockCluster::new(brokers)?;
        // -1 (the broker's default) is a real cluster's setting; the
        // embedded cluster has no default to fall back on.
        let replication = if topics.replication_factor < 1 {
            1
        } else {
            topics.replication_factor.min(brokers)
        };
        for topic in [&topics.activities, &topics.alerts, &topics.dlq] {
            cluster.create_topic(topic, topics.partitions, replication)?;
        }
        let bootstrap_servers = cluster.bootstrap_servers();
        Ok(EmbeddedBroker {
            cluster,
            bootstrap_servers,
        })
    }

    /// `host:port,...` for `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// The mock cluster, for fault injection.
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }

    /// Creates another topic (tests, benchmarks).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), BrokerError> {
        Ok(self.cluster.create_topic(name, partitions, 1)?)
    }
}

/// The `broker` command: start, print `KAFKA_BOOTSTRAP_SERVERS=…` as the
/// first (and only) line of standard output, serve until SIGINT/SIGTERM.
/// Everything else goes to standard error, so a script can read the first
/// line and close the pipe without harming the broker.
pub async fn run_command(
    config: crate::config::Config,
    brokers: i32,
    shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<()> {
    use std::io::Write;
    let broker = EmbeddedBroker::start(brokers, &config.topics)?;
    let line = format!("KAFKA_BOOTSTRAP_SERVERS={}\n", broker.bootstrap_servers());
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "cannot write to standard output; the broker keeps running");
    }
    drop(out);
    eprintln!(
        "🧪 Embedded Kafka broker ready: {} ({} partitions), {}, {}. In other terminals: export KAFKA_BOOTSTRAP_SERVERS={}",
        config.topics.activities,
        config.topics.partitions,
        config.topics.alerts,
        config.topics.dlq,
        broker.bootstrap_servers()
    );
    shutdown.wait().await;
    drop(broker);
    tracing::info!("embedded broker stopped");
    Ok(())
}
