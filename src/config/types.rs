//! The typed sections of [`super::Config`], one per part of the system.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::Secret;

/// SASL mechanisms librdkafka supports without Kerberos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// Everything needed to connect a Kafka client.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Whether `KAFKA_BOOTSTRAP_SERVERS` was given explicitly (the demo uses
    /// its embedded broker otherwise).
    pub bootstrap_servers_set: bool,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<Secret>,
    pub ssl_ca_location: Option<PathBuf>,
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
    pub ssl_key_password: Option<Secret>,
    /// librdkafka properties from `KAFKA_CONFIG_<NAME>` variables, applied
    /// last so operators can set anything we did not think of.
    pub passthrough: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopicsConfig {
    pub activities: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub retention_ms: i64,
    pub alerts: String,
    pub dlq: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProducerConfig {
    /// 0 = unlimited.
    pub events_per_second: f64,
    pub max_events: Option<u64>,
    pub verbose: bool,
    pub fraud_rate: f64,
    pub users: u64,
    pub seed: Option<u64>,
    pub start_time_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

impl OffsetReset {
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// The consumer group rebalance protocol (`group.protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupProtocol {
    /// The classic protocol: the group leader assigns with
    /// `partition.assignment.strategy`; cooperative-sticky by default.
    Classic,
    /// KIP-848: the broker assigns, always incrementally, and owns the
    /// session and heartbeat timing (librdkafka refuses to set them).
    Consumer,
}

impl GroupProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerConfig {
    pub analytics_group: String,
    pub fraud_group: String,
    pub assignment_strategy: String,
    pub group_protocol: GroupProtocol,
    pub group_instance_id: Option<String>,
    pub auto_offset_reset: OffsetReset,
    pub session_timeout: Duration,
    pub commit_interval: Duration,
    pub stats_interval: u64,
    pub state_rebuild: bool,
    /// Between two snapshots of a partition's state; zero: no snapshots.
    pub snapshot_interval: Duration,
    pub shutdown_timeout: Duration,
    pub drain_timeout: Duration,
    pub audit_log: Option<PathBuf>,
    /// fetch.wait.max.ms when set; not a setting (KAFKA_CONFIG_FETCH_WAIT_MAX_MS
    /// is): the embedded broker's consumers need it, see [`crate::broker`].
    pub fetch_wait_max: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive.
    pub filter: String,
    pub format: LogFormat,
    pub dir: Option<PathBuf>,
    /// OTLP endpoint for traces; `None` disables tracing.
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

impl LogConfig {
    /// Whether spans are recorded and W3C trace context is written to Kafka.
    pub fn tracing(&self) -> bool {
        self.otlp_endpoint.is_some()
    }
}

/// The HTTP collector's settings (`collect`).
#[derive(Clone, Debug)]
pub struct CollectConfig {
    /// Accepted write keys; never empty when the collector runs.
    pub write_keys: Vec<Secret>,
    /// `None`: any origin (`*`); otherwise the exact origins allowed.
    pub allowed_origins: Option<Vec<String>>,
    pub trusted_proxies: usize,
    /// Lower-case header name.
    pub country_header: Option<String>,
    pub geoip_db: Option<PathBuf>,
    /// Events per second per client IP; 0 = unlimited.
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub request_timeout: Duration,
    pub ack_timeout: Duration,
    /// COLLECT_MAX_CONNECTIONS.
    pub max_connections: usize,
    /// COLLECT_SHUTDOWN_DELAY: serving, not ready, between SIGTERM and
    /// closing the port.
    pub shutdown_delay: Duration,
}
