//! Configuration: environment, `.env` file and command-line flags, read once
//! into one typed [`Config`].
//!
//! Every setting is declared once in [`SETTINGS`]: its environment variable
//! (the seed demo's names and defaults), the flag derived from it
//! (`EVENTS_PER_SECOND` → `--events-per-second`), its default, which commands
//! use it, and its help text. The CLI, the `config` subcommand and the README's
//! configuration table are all generated from that one table.
//!
//! Precedence: flag, then environment, then `.env` in the working directory,
//! then the default. Nothing else in the crate reads the environment; other
//! modules receive the typed values. A bad value is a [`ConfigError`] whose
//! one-line message names the variable (or flag) and the expected form; the
//! binary prints it and exits with code 2.
//!
//! Secrets (`KAFKA_SASL_PASSWORD`, `KAFKA_SSL_KEY_PASSWORD`, `IP_HASH_KEY`)
//! can also be given as a `*_FILE` path, as Kubernetes mounts Secrets, and are
//! never printed: [`Config::describe`] redacts them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::event::DecodeLimits;

/// Settings of the pure core (`activity-tracker-core`), defined there so the
/// processors need nothing from this crate.
pub use activity_tracker_core::analytics::AnalyticsConfig;
pub use activity_tracker_core::eventtime::DEFAULT_ALLOWED_LATENESS;
pub use activity_tracker_core::fraud::FraudConfig;
pub use activity_tracker_core::privacy::{IpPrivacy, Secret};

/// The commands, as a bit set, so each setting can say where it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope(u16);

impl Scope {
    pub const BROKER: Scope = Scope(1);
    pub const TOPICS: Scope = Scope(1 << 1);
    pub const PRODUCE: Scope = Scope(1 << 2);
    pub const ANALYTICS: Scope = Scope(1 << 3);
    pub const FRAUD: Scope = Scope(1 << 4);
    pub const DEMO: Scope = Scope(1 << 5);
    pub const DLQ: Scope = Scope(1 << 6);
    pub const COLLECT: Scope = Scope(1 << 7);
    pub const BENCH: Scope = Scope(1 << 8);
    pub const FLEET: Scope = Scope(1 << 9);

    pub const CONSUMERS: Scope = Scope(Self::ANALYTICS.0 | Self::FRAUD.0 | Self::DEMO.0 | Self::FLEET.0);
    pub const KAFKA: Scope =
        Scope(Self::TOPICS.0 | Self::PRODUCE.0 | Self::CONSUMERS.0 | Self::DLQ.0 | Self::COLLECT.0 | Self::BENCH.0);
    pub const ALL: Scope = Scope(u16::MAX);
    pub const NONE: Scope = Scope(0);

    pub const fn or(self, other: Scope) -> Scope {
        Scope(self.0 | other.0)
    }

    pub fn contains(self, other: Scope) -> bool {
        self.0 & other.0 != 0
    }
}

/// One documented setting.
#[derive(Debug)]
pub struct Setting {
    pub var: &'static str,
    pub default: Option<&'static str>,
    pub scope: Scope,
    pub help: &'static str,
    /// Never printed; redacted in [`Config::describe`].
    pub secret: bool,
}

impl Setting {
    /// The command-line flag: `EVENTS_PER_SECOND` → `events-per-second`.
    pub fn flag(&self) -> String {
        self.var.to_ascii_lowercase().replace('_', "-")
    }
}

const fn s(var: &'static str, default: Option<&'static str>, scope: Scope, help: &'static str) -> Setting {
    Setting {
        var,
        default,
        scope,
        help,
        secret: false,
    }
}

const fn secret(var: &'static str, scope: Scope, help: &'static str) -> Setting {
    Setting {
        var,
        default: None,
        scope,
        help,
        secret: true,
    }
}

const TOPIC_ADMIN: Scope = Scope::BROKER
    .or(Scope::TOPICS)
    .or(Scope::DEMO)
    .or(Scope::BENCH)
    .or(Scope::FLEET);
const PRODUCERS: Scope = Scope::PRODUCE.or(Scope::DEMO).or(Scope::BENCH).or(Scope::FLEET);
const ANALYTICS: Scope = Scope::ANALYTICS.or(Scope::DEMO).or(Scope::FLEET).or(Scope::BENCH);
const FRAUD: Scope = Scope::FRAUD.or(Scope::DEMO).or(Scope::FLEET).or(Scope::BENCH);
const DECODERS: Scope = Scope::CONSUMERS.or(Scope::DLQ).or(Scope::COLLECT).or(Scope::BENCH);
const HTTP: Scope = Scope::PRODUCE.or(Scope::CONSUMERS).or(Scope::COLLECT);

/// Every setting the system reads. Keep in the order the README presents them.
#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    // Kafka connection and topics.
    s("KAFKA_BOOTSTRAP_SERVERS", Some("localhost:9092"), Scope::KAFKA, "Kafka brokers, comma-separated host:port. `demo` starts an embedded broker unless this is set."),
    s("KAFKA_ACTIVITIES_TOPIC", Some("user-activities"), Scope::KAFKA.or(Scope::BROKER), "Topic of user activity events, keyed by user_id."),
    s("KAFKA_ACTIVITIES_PARTITIONS", Some("6"), TOPIC_ADMIN, "Partitions of the activities topic when we create it; the upper bound on useful consumer replicas."),
    s("KAFKA_REPLICATION_FACTOR", Some("1"), TOPIC_ADMIN, "Replication factor of the topics we create; -1 = the broker's `default.replication.factor`."),
    s("KAFKA_RETENTION_MS", Some("604800000"), TOPIC_ADMIN, "retention.ms of the topics we create (default 7 days)."),
    s("KAFKA_ALERTS_TOPIC", Some("fraud-alerts"), Scope::KAFKA.or(Scope::BROKER), "Topic the fraud detector publishes alerts to, keyed by user_id."),
    s("KAFKA_DLQ_TOPIC", Some("user-activities-dlq"), Scope::KAFKA.or(Scope::BROKER), "Dead-letter topic for events that fail decoding or validation."),
    s("KAFKA_ANALYTICS_GROUP", Some("analytics-processors"), ANALYTICS, "Consumer group of the analytics consumers."),
    s("KAFKA_FRAUD_GROUP", Some("fraud-detectors"), FRAUD, "Consumer group of the fraud detectors."),
    s("KAFKA_ASSIGNMENT_STRATEGY", Some("cooperative-sticky"), Scope::CONSUMERS.or(Scope::BENCH), "partition.assignment.strategy: cooperative-sticky (incremental rebalances), range or roundrobin."),
    s("KAFKA_GROUP_PROTOCOL", Some("classic"), Scope::CONSUMERS.or(Scope::BENCH), "Consumer group protocol: classic (the client assigns, KAFKA_ASSIGNMENT_STRATEGY) or consumer (KIP-848, Kafka 4.0+: the broker assigns incrementally and owns the session timeout)."),
    s("KAFKA_GROUP_INSTANCE_ID", None, Scope::CONSUMERS, "Static group membership id (e.g. the StatefulSet pod name): a restart within the session timeout keeps the partitions without a rebalance."),
    s("KAFKA_AUTO_OFFSET_RESET", Some("earliest"), Scope::CONSUMERS.or(Scope::DLQ).or(Scope::BENCH), "Where a group with no committed offset starts: earliest or latest."),
    s("KAFKA_SESSION_TIMEOUT_MS", Some("45000"), Scope::CONSUMERS.or(Scope::BENCH), "Consumer group session timeout; a crashed consumer's partitions move after this."),
    s("KAFKA_COMMIT_INTERVAL_MS", Some("1000"), Scope::CONSUMERS.or(Scope::BENCH), "How often stored offsets are committed; bounds the events reprocessed after a crash."),
    s("KAFKA_SECURITY_PROTOCOL", Some("plaintext"), Scope::KAFKA, "plaintext, ssl, sasl_plaintext or sasl_ssl."),
    s("KAFKA_SASL_MECHANISM", None, Scope::KAFKA, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (required with sasl_*)."),
    s("KAFKA_SASL_USERNAME", None, Scope::KAFKA, "SASL user name."),
    secret("KAFKA_SASL_PASSWORD", Scope::KAFKA, "SASL password (prefer KAFKA_SASL_PASSWORD_FILE)."),
    s("KAFKA_SASL_PASSWORD_FILE", None, Scope::KAFKA, "File holding the SASL password, e.g. a mounted Kubernetes Secret."),
    s("KAFKA_SSL_CA_LOCATION", None, Scope::KAFKA, "CA certificate (PEM) to verify the brokers."),
    s("KAFKA_SSL_CERTIFICATE_LOCATION", None, Scope::KAFKA, "Client certificate (PEM) for mutual TLS."),
    s("KAFKA_SSL_KEY_LOCATION", None, Scope::KAFKA, "Client private key (PEM) for mutual TLS."),
    secret("KAFKA_SSL_KEY_PASSWORD", Scope::KAFKA, "Password of the client private key (prefer KAFKA_SSL_KEY_PASSWORD_FILE)."),
    s("KAFKA_SSL_KEY_PASSWORD_FILE", None, Scope::KAFKA, "File holding the client key password."),
    // Producer (simulator).
    s("EVENTS_PER_SECOND", Some("10"), PRODUCERS, "Simulated events per second; 0 sends as fast as the broker accepts."),
    s("MAX_EVENTS", None, PRODUCERS, "Stop after this many events (unset: run until stopped)."),
    s("VERBOSE", Some("false"), PRODUCERS, "Print every delivery report."),
    s("FRAUD_RATE", Some("0.1"), PRODUCERS, "Share of simulated sessions played by fraudulent actors (0 to 1)."),
    s("SIM_USERS", Some("9000"), PRODUCERS, "Size of the simulated user population (user-1000 …)."),
    s("SIM_SEED", None, PRODUCERS, "Seed of the simulator; the same seed gives the same users, sessions and fraud."),
    s("SIM_START_TIME", None, PRODUCERS, "Simulate traffic starting at this RFC 3339 time instead of now: event i is stamped start + i/EVENTS_PER_SECOND and sent as fast as possible."),
    // Consumers.
    s("STATS_INTERVAL", Some("50"), Scope::CONSUMERS, "Print a report every N events (at most one per second)."),
    s("HTTP_ADDR", None, HTTP, "Listen address of /metrics, /healthz, /readyz and /report (and the collector's /v1 routes). Default 127.0.0.1 with a per-command port (demo 9100, analytics 9101, fraud 9102, produce 9103, collect 8080); use 0.0.0.0:PORT in containers, port 0 for any free port."),
    s("STATE_REBUILD", Some("true"), Scope::CONSUMERS, "Rebuild a newly assigned partition's windowed state by replaying its recent events before going live."),
    s("SHUTDOWN_TIMEOUT", Some("20s"), Scope::CONSUMERS.or(Scope::PRODUCE).or(Scope::COLLECT), "Upper bound on a graceful stop (drain, commit, leave the group); keep it below Kubernetes' terminationGracePeriodSeconds."),
    s("DRAIN_TIMEOUT", Some("10s"), Scope::CONSUMERS, "How long a revoked partition may wait for its in-flight alerts before its offsets are committed; below the session timeout."),
    s("ALLOWED_LATENESS", Some("60s"), Scope::CONSUMERS, "How far behind its partition's event time an event is still on time: windowed fraud rules and analytics windows take it at its own timestamp. Later events are late: counted, judged by HIGH_VALUE_PURCHASE, kept out of windows (activity_late_events_total). PURCHASE_WITHOUT_ACTIVITY alerts wait this long in event time. 0s to 1h."),
    s("AUDIT_LOG", None, Scope::CONSUMERS, "Directory for a processing audit: each consumer process appends `partition offset unix_ms` per live-processed event to its own file, flushed before offsets are stored (for verifying delivery; costs one write per batch)."),
    s("MAX_EVENT_BYTES", Some("65536"), DECODERS, "Largest accepted event; bigger ones are dead-lettered as too_large."),
    s("MAX_EVENT_FUTURE_SKEW", Some("5m"), DECODERS, "How far after its Kafka timestamp (or receipt) an event may be stamped."),
    s("MAX_EVENT_AGE", Some("7d"), DECODERS, "How far before its Kafka timestamp (or receipt) an event may be stamped."),
    s("MAX_ORDER_VALUE", Some("1000000"), DECODERS, "Largest accepted price / cart_value."),
    // Analytics.
    s("ANALYTICS_WINDOW", Some("1h"), ANALYTICS, "Event-time window of the distinct-user figures (funnel, active users, top users)."),
    s("ANALYTICS_SESSION_TIMEOUT", Some("30m"), ANALYTICS, "Inactivity after which a session is closed for the session-duration figures."),
    s("REPORT_USER_IDS", Some("false"), ANALYTICS, "List the most active users' ids in /report (`top_users`). Off by default: /report is served without authentication on the pod's HTTP port; the console report lists them either way."),
    s("ANALYTICS_MAX_USERS_PER_PARTITION", Some("250000"), ANALYTICS, "Users tracked exactly per partition (about 120 bytes each at the cap, hash-table headroom included); beyond it distinct counts use a HyperLogLog sketch."),
    // Fraud.
    s("HIGH_VALUE_THRESHOLD", Some("500.0"), FRAUD, "HIGH_VALUE_PURCHASE: purchase amount at or above this."),
    s("VELOCITY_THRESHOLD", Some("5"), FRAUD, "HIGH_VELOCITY: transactional events within 60 s, counting the current one."),
    s("RAPID_LOCATION_CHANGE_MINUTES", Some("10"), FRAUD, "RAPID_LOCATION_CHANGE: country or city changed less than this many minutes after the previous event."),
    s("MULTIPLE_IP_THRESHOLD", Some("3"), FRAUD, "MULTIPLE_IPS: distinct IPs within the last hour, counting the current one."),
    s("FRAUD_COOLDOWN", None, FRAUD, "Quiet period before a (user, rule) alert may fire again; default: each rule's own window."),
    s("IP_PRIVACY", Some("none"), FRAUD.or(Scope::COLLECT), "How IP addresses appear in alerts, logs and metrics: none, truncate (IPv4 /24, IPv6 /48) or hash (keyed HMAC)."),
    secret("IP_HASH_KEY", FRAUD.or(Scope::COLLECT), "Key of IP_PRIVACY=hash (prefer IP_HASH_KEY_FILE)."),
    s("IP_HASH_KEY_FILE", None, FRAUD.or(Scope::COLLECT), "File holding the IP hashing key."),
    // HTTP collector.
    secret("COLLECT_WRITE_KEYS", Scope::COLLECT, "Write keys the collector accepts, comma-separated (prefer COLLECT_WRITE_KEYS_FILE); at least one is required."),
    s("COLLECT_WRITE_KEYS_FILE", None, Scope::COLLECT, "File holding the write keys, one per line or comma-separated, e.g. a mounted Kubernetes Secret."),
    s("COLLECT_ALLOWED_ORIGINS", None, Scope::COLLECT, "Browser origins allowed to send events (CORS), comma-separated such as https://shop.example.com; `*` allows any. Unset: requests carrying an Origin header are refused."),
    s("COLLECT_TRUSTED_PROXIES", Some("0"), Scope::COLLECT, "Proxies in front of the collector that append to X-Forwarded-For (load balancer, ingress); the client IP is the address that many hops from the right. 0: the socket's peer address."),
    s("COLLECT_COUNTRY_HEADER", None, Scope::COLLECT, "Request header holding the client's ISO country code, set by a trusted edge (e.g. CF-IPCountry, CloudFront-Viewer-Country); used when COLLECT_GEOIP_DB has no answer."),
    s("COLLECT_GEOIP_DB", None, Scope::COLLECT, "MaxMind-format database (.mmdb, GeoIP2/GeoLite2 City or Country) for each event's location."),
    s("COLLECT_RATE_LIMIT", Some("100"), Scope::COLLECT, "Events per second accepted from one client IP (sustained); 0 turns the limit off."),
    s("COLLECT_RATE_BURST", Some("1000"), Scope::COLLECT, "Events one client IP may send at once before COLLECT_RATE_LIMIT applies."),
    s("COLLECT_MAX_BODY_BYTES", Some("1048576"), Scope::COLLECT, "Largest request body; larger requests get 413."),
    s("COLLECT_MAX_BATCH", Some("500"), Scope::COLLECT, "Most events in one request; more get 413."),
    s("COLLECT_MAX_CONNECTIONS", Some("1024"), Scope::COLLECT, "Connections the collector keeps open at once; further ones are closed as soon as they are accepted (each buffers at most 32 KiB of headers)."),
    s("COLLECT_REQUEST_TIMEOUT", Some("10s"), Scope::COLLECT, "Longest a request may take, body upload and broker acknowledgement included (408 for a slow upload); also the deadline for each request's headers and for an idle keep-alive connection."),
    s("COLLECT_SHUTDOWN_DELAY", Some("0s"), Scope::COLLECT, "After SIGTERM, how long the collector keeps serving while answering not ready, so load balancers and Ingress controllers stop routing to it before it closes its port (0–60 s; the chart sets 5 s). SHUTDOWN_TIMEOUT starts after it."),
    s("COLLECT_ACK_TIMEOUT", Some("5s"), Scope::COLLECT, "How long the collector waits for the brokers to acknowledge a request's events before answering 503 (librdkafka message.timeout.ms)."),
    // Logging.
    s("LOG_LEVEL", Some("INFO"), Scope::ALL, "DEBUG, INFO, WARNING or ERROR (or a tracing filter such as `info,rdkafka=debug`)."),
    s("LOG_FORMAT", Some("pretty"), Scope::ALL, "pretty or json."),
    s("LOG_DIR", None, Scope::ALL, "Also write logs to a daily-rotated file in this directory."),
    s("OTEL_EXPORTER_OTLP_ENDPOINT", None, Scope::ALL, "Export OpenTelemetry traces over OTLP/HTTP to this base endpoint (e.g. http://otel-collector:4318; /v1/traces is appended); unset: no tracing. The other standard OTEL_* variables (headers, sampler) are honoured by the SDK."),
    s("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None, Scope::ALL, "The traces URL itself (used as given; wins over OTEL_EXPORTER_OTLP_ENDPOINT)."),
    s("OTEL_EXPORTER_OTLP_PROTOCOL", None, Scope::ALL, "http/protobuf, the one OTLP transport built in (grpc is refused with an error rather than ignored); OTEL_EXPORTER_OTLP_TRACES_PROTOCOL overrides it."),
    s("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None, Scope::ALL, "See OTEL_EXPORTER_OTLP_PROTOCOL."),
    s("OTEL_SERVICE_NAME", None, Scope::ALL, "Service name in traces; default activity-tracker-<command>."),
];

/// A value that could not be used. Its message names the variable or flag,
/// the offending value and the form that is expected, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: expected {expected}")]
    Invalid {
        name: String,
        value: String,
        expected: String,
    },
    #[error("{name}: cannot read {path}: {reason}")]
    File { name: String, path: String, reason: String },
    #[error("{0}")]
    Inconsistent(String),
}

/// Where raw values come from: flags first, then the environment (which
/// already includes `.env`). Built once by the binary, or by tests directly.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Flag values by variable name.
    pub flags: BTreeMap<String, String>,
    /// The process environment merged over `.env`.
    pub env: BTreeMap<String, String>,
}

impl Sources {
    /// The real environment merged over `.env` in the working directory
    /// (environment wins, as with dotenvy).
    pub fn from_process() -> Sources {
        let mut env = BTreeMap::new();
        if let Ok(iter) = dotenvy::from_path_iter(".env") {
            for (k, v) in iter.flatten() {
                env.insert(k, v);
            }
        }
        for (k, v) in std::env::vars_os() {
            if let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) {
                env.insert(k, v);
            }
        }
        Sources {
            flags: BTreeMap::new(),
            env,
        }
    }

    /// Sources with only environment-style values (for tests and tools).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Sources {
        Sources {
            flags: BTreeMap::new(),
            env: pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// The raw value and the name to blame if it is wrong.
    fn raw(&self, var: &str) -> Option<(String, String)> {
        if let Some(v) = self.flags.get(var) {
            return Some((format!("--{}", var.to_ascii_lowercase().replace('_', "-")), v.clone()));
        }
        self.env
            .get(var)
            .filter(|v| !v.is_empty())
            .map(|v| (var.to_string(), v.clone()))
    }
}

/// Which command is running; chooses defaults such as the HTTP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Broker,
    Topics,
    Produce,
    Analytics,
    Fraud,
    Demo,
    Dlq,
    Collect,
    Bench,
    Fleet,
    Config,
    Probe,
}

impl Command {
    pub fn scope(self) -> Scope {
        match self {
            Command::Broker => Scope::BROKER,
            Command::Topics => Scope::TOPICS,
            Command::Produce => Scope::PRODUCE,
            Command::Analytics => Scope::ANALYTICS,
            Command::Fraud => Scope::FRAUD,
            Command::Demo => Scope::DEMO,
            Command::Dlq => Scope::DLQ,
            Command::Collect => Scope::COLLECT,
            Command::Bench => Scope::BENCH,
            Command::Fleet => Scope::FLEET,
            Command::Config => Scope::ALL,
            Command::Probe => Scope::NONE,
        }
    }

    fn default_http_port(self) -> u16 {
        match self {
            Command::Demo => 9100,
            Command::Analytics => 9101,
            Command::Fraud => 9102,
            Command::Produce => 9103,
            Command::Collect => 8080,
            _ => 0,
        }
    }
}

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

/// The whole configuration of one command.
#[derive(Clone, Debug)]
pub struct Config {
    pub command: Command,
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
    pub limits: DecodeLimits,
    pub analytics: AnalyticsConfig,
    pub fraud: FraudConfig,
    pub ip_privacy: IpPrivacy,
    pub collect: CollectConfig,
    pub log: LogConfig,
    pub http_addr: SocketAddr,
    /// Every setting's effective value, for `describe` (secrets redacted).
    effective: Vec<(&'static str, String)>,
}

struct Reader<'a> {
    sources: &'a Sources,
    effective: Vec<(&'static str, String)>,
}

impl Reader<'_> {
    fn setting(var: &str) -> &'static Setting {
        SETTINGS
            .iter()
            .find(|s| s.var == var)
            .unwrap_or_else(|| panic!("setting {var} is not declared in SETTINGS"))
    }

    /// The raw text of a setting, with the name to blame, or its default.
    fn text(&mut self, var: &'static str) -> Option<(String, String)> {
        let setting = Self::setting(var);
        let found = self
            .sources
            .raw(var)
            .or_else(|| setting.default.map(|d| (var.to_string(), d.to_string())));
        let shown = match (&found, setting.secret) {
            (Some(_), true) => "***".to_string(),
            (Some((_, v)), false) => v.clone(),
            (None, _) => String::new(),
        };
        self.effective.push((var, shown));
        found
    }

    fn string(&mut self, var: &'static str) -> String {
        self.text(var).map(|(_, v)| v).unwrap_or_default()
    }

    fn optional_string(&mut self, var: &'static str) -> Option<String> {
        self.text(var).map(|(_, v)| v)
    }

    fn parse<T>(
        &mut self,
        var: &'static str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.text(var) {
            None => Ok(None),
            Some((name, value)) => match parse(value.trim()) {
                Some(v) => Ok(Some(v)),
                None => Err(ConfigError::Invalid {
                    name,
                    value,
                    expected: expected.to_string(),
                }),
            },
        }
    }

    fn required<T>(
        &mut self,
        var: &'static str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        self.parse(var, expected, parse)?
            .ok_or_else(|| ConfigError::Inconsistent(format!("{var} has no value and no default")))
    }

    fn secret(&mut self, var: &'static str, file_var: &'static str) -> Result<Option<Secret>, ConfigError> {
        let direct = self.optional_string(var);
        let file = self.optional_string(file_var);
        match (direct, file) {
            (_, Some(path)) => std::fs::read_to_string(&path)
                .map(|s| Some(Secret::new(s.trim_end_matches(['\n', '\r']))))
                .map_err(|e| ConfigError::File {
                    name: file_var.to_string(),
                    path,
                    reason: e.to_string(),
                }),
            (Some(v), None) => Ok(Some(Secret::new(v))),
            (None, None) => Ok(None),
        }
    }
}

/// Parses a duration: a bare number is seconds; or a number with one of the
/// units `ms`, `s`, `m`, `h`, `d` (`250ms`, `20s`, `5m`, `1h`, `7d`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return None,
    };
    (0.0..1e10).contains(&seconds).then(|| Duration::from_secs_f64(seconds))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn positive_f64(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
}

fn non_negative_f64(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

fn log_filter(text: &str) -> Option<String> {
    let level = match text.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ if text.contains('=') || text.contains(',') => return Some(text.to_string()),
        _ => return None,
    };
    // librdkafka's own log lines are noisy at debug; keep them at warn unless
    // asked for by a filter directive.
    Some(format!("{level},librdkafka=warn,rdkafka=warn"))
}

impl Config {
    /// Reads and validates every setting for `command`.
    pub fn load(command: Command, sources: &Sources) -> Result<Config, ConfigError> {
        let mut r = Reader {
            sources,
            effective: Vec::new(),
        };

        let bootstrap_servers_set = sources.raw("KAFKA_BOOTSTRAP_SERVERS").is_some();
        let bootstrap_servers = r.string("KAFKA_BOOTSTRAP_SERVERS");
        if bootstrap_servers.trim().is_empty() || bootstrap_servers.split(',').any(|s| !s.contains(':')) {
            return Err(ConfigError::Invalid {
                name: "KAFKA_BOOTSTRAP_SERVERS".into(),
                value: bootstrap_servers,
                expected: "comma-separated host:port pairs, e.g. localhost:9092".into(),
            });
        }
        let topics = TopicsConfig {
            activities: r.string("KAFKA_ACTIVITIES_TOPIC"),
            partitions: r.required(
                "KAFKA_ACTIVITIES_PARTITIONS",
                "a whole number of partitions from 1 to 10000",
                |t| t.parse::<i32>().ok().filter(|v| (1..=10_000).contains(v)),
            )?,
            replication_factor: r.required(
                "KAFKA_REPLICATION_FACTOR",
                "a whole number from 1 to 32, or -1 for the broker's default",
                |t| t.parse::<i32>().ok().filter(|v| (1..=32).contains(v) || *v == -1),
            )?,
            retention_ms: r.required("KAFKA_RETENTION_MS", "milliseconds > 0, or -1 for unlimited", |t| {
                t.parse::<i64>().ok().filter(|v| *v > 0 || *v == -1)
            })?,
            alerts: r.string("KAFKA_ALERTS_TOPIC"),
            dlq: r.string("KAFKA_DLQ_TOPIC"),
        };
        for (var, name) in [
            ("KAFKA_ACTIVITIES_TOPIC", &topics.activities),
            ("KAFKA_ALERTS_TOPIC", &topics.alerts),
            ("KAFKA_DLQ_TOPIC", &topics.dlq),
        ] {
            let valid = !name.is_empty()
                && name.len() <= 249
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid {
                return Err(ConfigError::Invalid {
                    name: var.into(),
                    value: name.clone(),
                    expected: "a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -".into(),
                });
            }
        }

        let consumer = ConsumerConfig {
            analytics_group: r.string("KAFKA_ANALYTICS_GROUP"),
            fraud_group: r.string("KAFKA_FRAUD_GROUP"),
            assignment_strategy: r.required(
                "KAFKA_ASSIGNMENT_STRATEGY",
                "cooperative-sticky, range or roundrobin",
                |t| matches!(t, "cooperative-sticky" | "range" | "roundrobin").then(|| t.to_string()),
            )?,
            group_protocol: r.required("KAFKA_GROUP_PROTOCOL", "classic or consumer", |t| {
                match t.to_ascii_lowercase().as_str() {
                    "classic" => Some(GroupProtocol::Classic),
                    "consumer" => Some(GroupProtocol::Consumer),
                    _ => None,
                }
            })?,
            group_instance_id: r.optional_string("KAFKA_GROUP_INSTANCE_ID"),
            auto_offset_reset: r.required("KAFKA_AUTO_OFFSET_RESET", "earliest or latest", |t| {
                match t.to_ascii_lowercase().as_str() {
                    "earliest" => Some(OffsetReset::Earliest),
                    "latest" => Some(OffsetReset::Latest),
                    _ => None,
                }
            })?,
            session_timeout: r.required("KAFKA_SESSION_TIMEOUT_MS", "milliseconds from 1000 to 3600000", |t| {
                t.parse::<u64>()
                    .ok()
                    .filter(|v| (1000..=3_600_000).contains(v))
                    .map(Duration::from_millis)
            })?,
            commit_interval: r.required("KAFKA_COMMIT_INTERVAL_MS", "milliseconds from 10 to 600000", |t| {
                t.parse::<u64>()
                    .ok()
                    .filter(|v| (10..=600_000).contains(v))
                    .map(Duration::from_millis)
            })?,
            stats_interval: r.required("STATS_INTERVAL", "a whole number of events > 0", |t| {
                t.parse::<u64>().ok().filter(|v| *v > 0)
            })?,
            state_rebuild: r.required("STATE_REBUILD", "true or false", parse_bool)?,
            shutdown_timeout: r.required("SHUTDOWN_TIMEOUT", "a duration such as 20s or 1m", |t| {
                parse_duration(t).filter(|d| !d.is_zero())
            })?,
            drain_timeout: r.required("DRAIN_TIMEOUT", "a duration such as 10s", |t| {
                parse_duration(t).filter(|d| !d.is_zero())
            })?,
            audit_log: r.optional_string("AUDIT_LOG").map(PathBuf::from),
            fetch_wait_max: None,
        };
        for (var, group) in [
            ("KAFKA_ANALYTICS_GROUP", &consumer.analytics_group),
            ("KAFKA_FRAUD_GROUP", &consumer.fraud_group),
        ] {
            if group.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    name: var.into(),
                    value: group.clone(),
                    expected: "a non-empty consumer group id".into(),
                });
            }
        }
        // Under KIP-848 the broker's group.consumer.session.timeout.ms
        // applies, which this process cannot see.
        if consumer.group_protocol == GroupProtocol::Classic && consumer.drain_timeout >= consumer.session_timeout {
            return Err(ConfigError::Inconsistent(format!(
                "DRAIN_TIMEOUT ({:?}) must be shorter than KAFKA_SESSION_TIMEOUT_MS ({:?}), or the group evicts a draining consumer",
                consumer.drain_timeout, consumer.session_timeout
            )));
        }

        let security_protocol = r.required(
            "KAFKA_SECURITY_PROTOCOL",
            "plaintext, ssl, sasl_plaintext or sasl_ssl",
            |t| match t.to_ascii_lowercase().as_str() {
                "plaintext" => Some(SecurityProtocol::Plaintext),
                "ssl" => Some(SecurityProtocol::Ssl),
                "sasl_plaintext" => Some(SecurityProtocol::SaslPlaintext),
                "sasl_ssl" => Some(SecurityProtocol::SaslSsl),
                _ => None,
            },
        )?;
        let sasl_mechanism = r.parse(
            "KAFKA_SASL_MECHANISM",
            "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
            |t| match t.to_ascii_uppercase().as_str() {
                "PLAIN" => Some(SaslMechanism::Plain),
                "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
                "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
                _ => None,
            },
        )?;
        let sasl_username = r.optional_string("KAFKA_SASL_USERNAME");
        let sasl_password = r.secret("KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE")?;
        if security_protocol.uses_sasl()
            && (sasl_mechanism.is_none() || sasl_username.is_none() || sasl_password.is_none())
        {
            return Err(ConfigError::Inconsistent(format!(
                "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)",
                security_protocol.as_str()
            )));
        }
        let path = |r: &mut Reader, var| r.optional_string(var).map(PathBuf::from);
        let ssl_ca_location = path(&mut r, "KAFKA_SSL_CA_LOCATION");
        let ssl_certificate_location = path(&mut r, "KAFKA_SSL_CERTIFICATE_LOCATION");
        let ssl_key_location = path(&mut r, "KAFKA_SSL_KEY_LOCATION");
        let ssl_key_password = r.secret("KAFKA_SSL_KEY_PASSWORD", "KAFKA_SSL_KEY_PASSWORD_FILE")?;
        let passthrough = sources
            .env
            .iter()
            .chain(sources.flags.iter())
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("KAFKA_CONFIG_")?;
                Some((kafka_property_name(name), v.clone()))
            })
            .collect();
        let kafka = KafkaConfig {
            bootstrap_servers,
            bootstrap_servers_set,
            security_protocol,
            sasl_mechanism,
            sasl_username,
            sasl_password,
            ssl_ca_location,
            ssl_certificate_location,
            ssl_key_location,
            ssl_key_password,
            passthrough,
        };

        let producer = ProducerConfig {
            events_per_second: r.required(
                "EVENTS_PER_SECOND",
                "a number of events per second >= 0 (0 = as fast as possible), e.g. 10 or 2500",
                non_negative_f64,
            )?,
            max_events: r.parse("MAX_EVENTS", "a whole number of events > 0", |t| {
                t.parse::<u64>().ok().filter(|v| *v > 0)
            })?,
            verbose: r.required("VERBOSE", "true or false", parse_bool)?,
            fraud_rate: r.required("FRAUD_RATE", "a share from 0 to 1, e.g. 0.1", |t| {
                t.parse::<f64>().ok().filter(|v| (0.0..=1.0).contains(v))
            })?,
            users: r.required("SIM_USERS", "a whole number of users from 10 to 1000000000", |t| {
                t.parse::<u64>().ok().filter(|v| (10..=1_000_000_000).contains(v))
            })?,
            seed: r.parse("SIM_SEED", "a whole number (u64)", |t| t.parse::<u64>().ok())?,
            start_time_ms: r.parse(
                "SIM_START_TIME",
                "an RFC 3339 time such as 2024-01-15T10:00:00Z",
                crate::eventtime::parse_rfc3339_ms,
            )?,
        };
        if producer.start_time_ms.is_some() && producer.events_per_second == 0.0 {
            return Err(ConfigError::Inconsistent(
                "SIM_START_TIME needs EVENTS_PER_SECOND > 0: it sets how fast simulated time advances".into(),
            ));
        }

        let limits = DecodeLimits {
            max_event_bytes: r.required(
                "MAX_EVENT_BYTES",
                "a whole number of bytes from 256 to 104857600",
                |t| t.parse::<usize>().ok().filter(|v| (256..=104_857_600).contains(v)),
            )?,
            max_future_skew_ms: r
                .required("MAX_EVENT_FUTURE_SKEW", "a duration such as 5m", parse_duration)?
                .as_millis() as i64,
            max_age_ms: r
                .required("MAX_EVENT_AGE", "a duration such as 7d", parse_duration)?
                .as_millis() as i64,
            max_order_value: r.required("MAX_ORDER_VALUE", "a positive amount", positive_f64)?,
        };

        let allowed_lateness = r.required("ALLOWED_LATENESS", "a duration from 0s to 1h, e.g. 60s", |t| {
            parse_duration(t).filter(|d| d.as_secs() <= 3600)
        })?;
        let analytics = AnalyticsConfig {
            allowed_lateness,
            window: r.required("ANALYTICS_WINDOW", "a duration from 1m to 7d, e.g. 1h", |t| {
                parse_duration(t).filter(|d| (60..=7 * 86_400).contains(&d.as_secs()))
            })?,
            session_timeout: r.required("ANALYTICS_SESSION_TIMEOUT", "a duration from 1m to 1d, e.g. 30m", |t| {
                parse_duration(t).filter(|d| (60..=86_400).contains(&d.as_secs()))
            })?,
            max_users_per_partition: r.required(
                "ANALYTICS_MAX_USERS_PER_PARTITION",
                "a whole number of users from 1000 to 100000000",
                |t| t.parse::<usize>().ok().filter(|v| (1000..=100_000_000).contains(v)),
            )?,
            report_user_ids: r.required("REPORT_USER_IDS", "true or false", parse_bool)?,
        };

        let fraud = FraudConfig {
            high_value_threshold: r.required("HIGH_VALUE_THRESHOLD", "a positive amount, e.g. 500.0", positive_f64)?,
            velocity_threshold: r.required("VELOCITY_THRESHOLD", "a whole number of events from 2 to 1000", |t| {
                t.parse::<u32>().ok().filter(|v| (2..=1000).contains(v))
            })?,
            rapid_location_change: r.required(
                "RAPID_LOCATION_CHANGE_MINUTES",
                "a positive number of minutes, e.g. 10",
                |t| {
                    positive_f64(t)
                        .filter(|m| *m <= 1440.0)
                        .map(|m| Duration::from_secs_f64(m * 60.0))
                },
            )?,
            multiple_ip_threshold: r.required("MULTIPLE_IP_THRESHOLD", "a whole number of IPs from 2 to 100", |t| {
                t.parse::<u32>().ok().filter(|v| (2..=100).contains(v))
            })?,
            cooldown: r.parse("FRAUD_COOLDOWN", "a duration such as 10m", |t| {
                parse_duration(t).filter(|d| d.as_secs() <= 7 * 86_400)
            })?,
            allowed_lateness,
        };

        let privacy_mode = r.required("IP_PRIVACY", "none, truncate or hash", |t| {
            matches!(t.to_ascii_lowercase().as_str(), "none" | "truncate" | "hash").then(|| t.to_ascii_lowercase())
        })?;
        let hash_key = r.secret("IP_HASH_KEY", "IP_HASH_KEY_FILE")?;
        let ip_privacy = match (privacy_mode.as_str(), hash_key) {
            ("none", _) => IpPrivacy::None,
            ("truncate", _) => IpPrivacy::Truncate,
            (_, Some(key)) if key.expose().len() >= 16 => IpPrivacy::Hash(key),
            _ => {
                return Err(ConfigError::Inconsistent(
                    "IP_PRIVACY=hash needs IP_HASH_KEY or IP_HASH_KEY_FILE with at least 16 characters".into(),
                ));
            }
        };

        let collect = Self::collect(&mut r, command)?;

        let log = LogConfig {
            filter: r.required("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", log_filter)?,
            format: r.required("LOG_FORMAT", "pretty or json", |t| {
                match t.to_ascii_lowercase().as_str() {
                    "pretty" | "text" => Some(LogFormat::Pretty),
                    "json" => Some(LogFormat::Json),
                    _ => None,
                }
            })?,
            dir: r.optional_string("LOG_DIR").map(PathBuf::from),
            otlp_endpoint: Self::otlp_traces_url(&mut r)?,
            service_name: r.optional_string("OTEL_SERVICE_NAME"),
        };

        let default_addr = SocketAddr::from(([127, 0, 0, 1], command.default_http_port()));
        let http_addr = r
            .parse("HTTP_ADDR", "host:port such as 127.0.0.1:9101 or 0.0.0.0:8080", |t| {
                t.parse::<SocketAddr>().ok()
            })?
            .unwrap_or(default_addr);

        Ok(Config {
            command,
            kafka,
            topics,
            producer,
            consumer,
            limits,
            analytics,
            fraud,
            ip_privacy,
            collect,
            log,
            http_addr,
            effective: r.effective,
        })
    }

    /// The OTLP traces URL, by the OpenTelemetry rules: the signal's own
    /// endpoint as given, else the base endpoint + `/v1/traces`.
    fn otlp_traces_url(r: &mut Reader<'_>) -> Result<Option<String>, ConfigError> {
        for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if r.parse(
                var,
                "http/protobuf (the OTLP transport built in; use the collector's HTTP port, 4318)",
                |t| (t == "http/protobuf").then_some(()),
            )?
            .is_some()
            {
                break;
            }
        }
        let traces = r.optional_string("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let base = r.optional_string("OTEL_EXPORTER_OTLP_ENDPOINT");
        Ok(traces
            .map(|t| t.trim().to_string())
            .or_else(|| base.map(|b| format!("{}/v1/traces", b.trim().trim_end_matches('/')))))
    }

    fn collect(r: &mut Reader<'_>, command: Command) -> Result<CollectConfig, ConfigError> {
        let keys = r.secret("COLLECT_WRITE_KEYS", "COLLECT_WRITE_KEYS_FILE")?;
        let write_keys: Vec<Secret> = keys
            .as_ref()
            .map(|k| {
                k.expose()
                    .split([',', '\n', '\r'])
                    .map(str::trim)
                    .filter(|k| !k.is_empty() && !k.starts_with('#'))
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        if command == Command::Collect && write_keys.is_empty() {
            return Err(ConfigError::Inconsistent(
                "collect needs at least one write key: set COLLECT_WRITE_KEYS or COLLECT_WRITE_KEYS_FILE".into(),
            ));
        }
        if let Some(short) = write_keys.iter().find(|k| k.expose().len() < 8) {
            return Err(ConfigError::Invalid {
                name: "COLLECT_WRITE_KEYS".into(),
                value: format!("{} characters", short.expose().len()),
                expected: "keys of at least 8 characters".into(),
            });
        }
        let allowed_origins = r
            .parse(
                "COLLECT_ALLOWED_ORIGINS",
                "`*` or comma-separated origins such as https://shop.example.com",
                |t| {
                    if t == "*" {
                        return Some(None);
                    }
                    let origins: Vec<String> = t
                        .split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                        .filter(|o| !o.is_empty())
                        .collect();
                    let valid = |o: &String| {
                        o.split_once("://").is_some_and(|(scheme, host)| {
                            matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')
                        })
                    };
                    origins.iter().all(valid).then_some(Some(origins))
                },
            )?
            .unwrap_or(Some(Vec::new()));
        let country_header = r.parse(
            "COLLECT_COUNTRY_HEADER",
            "an HTTP header name such as CF-IPCountry",
            |t| {
                let valid = !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                valid.then(|| t.to_ascii_lowercase())
            },
        )?;
        let count = |max: u32| move |t: &str| t.parse::<u32>().ok().filter(|v| *v <= max);
        let timeout = |t: &str| parse_duration(t).filter(|d| d.as_millis() >= 100 && d.as_secs() <= 300);
        let collect = CollectConfig {
            write_keys,
            allowed_origins,
            trusted_proxies: r.required(
                "COLLECT_TRUSTED_PROXIES",
                "a whole number of proxies from 0 to 10",
                count(10),
            )? as usize,
            country_header,
            geoip_db: r.optional_string("COLLECT_GEOIP_DB").map(PathBuf::from),
            rate_limit: r.required(
                "COLLECT_RATE_LIMIT",
                "events per second from 0 (off) to 1000000",
                count(1_000_000),
            )?,
            rate_burst: r.required(
                "COLLECT_RATE_BURST",
                "a whole number of events from 1 to 1000000",
                |t| count(1_000_000)(t).filter(|v| *v >= 1),
            )?,
            max_body_bytes: r.required("COLLECT_MAX_BODY_BYTES", "bytes from 1024 to 67108864", |t| {
                t.parse::<usize>().ok().filter(|v| (1024..=64 << 20).contains(v))
            })?,
            max_batch: r.required("COLLECT_MAX_BATCH", "a whole number of events from 1 to 10000", |t| {
                t.parse::<usize>().ok().filter(|v| (1..=10_000).contains(v))
            })?,
            request_timeout: r.required(
                "COLLECT_REQUEST_TIMEOUT",
                "a duration from 100ms to 5m, e.g. 10s",
                timeout,
            )?,
            ack_timeout: r.required("COLLECT_ACK_TIMEOUT", "a duration from 100ms to 5m, e.g. 5s", timeout)?,
            shutdown_delay: r.required("COLLECT_SHUTDOWN_DELAY", "a duration from 0s to 60s, e.g. 5s", |t| {
                parse_duration(t).filter(|d| d.as_secs_f64() <= 60.0)
            })?,
            max_connections: r.required(
                "COLLECT_MAX_CONNECTIONS",
                "a whole number of connections from 16 to 100000",
                |t| t.parse::<usize>().ok().filter(|v| (16..=100_000).contains(v)),
            )?,
        };
        if collect.ack_timeout >= collect.request_timeout {
            return Err(ConfigError::Inconsistent(format!(
                "COLLECT_ACK_TIMEOUT ({:?}) must be shorter than COLLECT_REQUEST_TIMEOUT ({:?})",
                collect.ack_timeout, collect.request_timeout
            )));
        }
        Ok(collect)
    }

    /// `VAR=value` lines of every setting this command uses, secrets shown as
    /// `***`, plus `KAFKA_CONFIG_*` pass-through names (values redacted, since
    /// they may carry credentials).
    pub fn describe(&self) -> String {
        let scope = self.command.scope();
        let mut out = String::new();
        for (var, value) in &self.effective {
            let in_scope = SETTINGS.iter().any(|s| s.var == *var && s.scope.contains(scope));
            if in_scope {
                out.push_str(&format!("{var}={value}\n"));
            }
        }
        for name in self.kafka.passthrough.keys() {
            out.push_str(&format!("KAFKA_CONFIG ({name})=***\n"));
        }
        out
    }
}

/// The README's configuration table, generated from [`SETTINGS`]
/// (`activity-tracker config --markdown`); a test keeps the README in sync.
pub fn markdown_table() -> String {
    let mut out = String::from("| Variable | Default | Meaning |\n|---|---|---|\n");
    for s in SETTINGS {
        let default = match s.default {
            Some(d) => format!("`{d}`"),
            None => "—".to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            s.var,
            default,
            s.help.replace('|', "\\|")
        ));
    }
    out
}

/// `KAFKA_CONFIG_<NAME>` → librdkafka property: lower-case, `_` → `.`, and
/// `__` → `_` for the few properties whose names contain an underscore.
pub fn kafka_property_name(suffix: &str) -> String {
    suffix
        .to_ascii_lowercase()
        .split("__")
        .map(|part| part.replace('_', "."))
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(Command::Demo, &Sources::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = load(&[]).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert!(!c.kafka.bootstrap_servers_set);
        assert_eq!(c.topics.activities, "user-activities");
        assert_eq!(c.topics.partitions, 6);
        assert_eq!(c.topics.retention_ms, 604_800_000);
        assert_eq!(c.topics.replication_factor, 1);
        assert_eq!(
            load(&[("KAFKA_REPLICATION_FACTOR", "-1")])
                .unwrap()
                .topics
                .replication_factor,
            -1,
            "-1: the broker's default"
        );
        assert_eq!(c.topics.alerts, "fraud-alerts");
        assert_eq!(c.topics.dlq, "user-activities-dlq");
        assert_eq!(c.producer.events_per_second, 10.0);
        assert_eq!(c.producer.max_events, None);
        assert!(!c.producer.verbose);
        assert_eq!(c.consumer.analytics_group, "analytics-processors");
        assert_eq!(c.consumer.fraud_group, "fraud-detectors");
        assert_eq!(c.consumer.stats_interval, 50);
        assert_eq!(c.fraud, FraudConfig::default());
        assert_eq!(c.log.filter, "info,librdkafka=warn,rdkafka=warn");
        assert_eq!(c.http_addr, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(c.consumer.assignment_strategy, "cooperative-sticky");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_form() {
        let cases: &[(&str, &str, &str)] = &[
            ("EVENTS_PER_SECOND", "fast", "events per second"),
            ("EVENTS_PER_SECOND", "-3", "events per second"),
            ("HIGH_VALUE_THRESHOLD", "-1", "positive amount"),
            ("VELOCITY_THRESHOLD", "-5", "whole number"),
            ("MULTIPLE_IP_THRESHOLD", "three", "whole number"),
            ("RAPID_LOCATION_CHANGE_MINUTES", "0", "positive number of minutes"),
            ("KAFKA_ACTIVITIES_PARTITIONS", "0", "partitions"),
            ("KAFKA_REPLICATION_FACTOR", "0", "-1 for the broker's default"),
            ("KAFKA_REPLICATION_FACTOR", "-2", "-1 for the broker's default"),
            ("VERBOSE", "maybe", "true or false"),
            ("LOG_LEVEL", "LOUD", "DEBUG, INFO"),
            ("HTTP_ADDR", "localhost", "host:port"),
            ("SHUTDOWN_TIMEOUT", "soon", "duration"),
            ("FRAUD_RATE", "1.5", "share from 0 to 1"),
            ("KAFKA_ACTIVITIES_TOPIC", "user activities", "topic name"),
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka", "host:port"),
        ];
        for (var, value, expected) in cases {
            let err = load(&[(var, value)]).expect_err(var).to_string();
            assert!(err.starts_with(var), "{err}");
            assert!(err.contains(value), "{err}");
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn flags_override_environment_and_are_blamed_by_flag_name() {
        let mut sources = Sources::from_pairs([("EVENTS_PER_SECOND", "5")]);
        sources.flags.insert("EVENTS_PER_SECOND".into(), "250".into());
        let c = Config::load(Command::Produce, &sources).unwrap();
        assert_eq!(c.producer.events_per_second, 250.0);
        sources.flags.insert("EVENTS_PER_SECOND".into(), "lots".into());
        let err = Config::load(Command::Produce, &sources).unwrap_err().to_string();
        assert!(err.starts_with("--events-per-second=\"lots\""), "{err}");
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("20"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn secrets_come_from_files_and_are_never_described() {
        let dir = std::env::temp_dir().join(format!("at-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let file_text = file.to_string_lossy().to_string();
        let c = load(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "alice"),
            ("KAFKA_SASL_PASSWORD_FILE", &file_text),
            ("KAFKA_CONFIG_SASL_OAUTHBEARER_CONFIG", "token=abc"),
        ])
        .unwrap();
        assert_eq!(c.kafka.sasl_password.as_ref().unwrap().expose(), "s3cret-from-file");
        assert_eq!(c.kafka.sasl_mechanism, Some(SaslMechanism::ScramSha512));
        let described = c.describe();
        assert!(!described.contains("s3cret"), "{described}");
        assert!(!described.contains("token=abc"), "{described}");
        assert!(described.contains("KAFKA_SASL_USERNAME=alice"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let missing = load(&[("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/pw")]).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("KAFKA_SASL_PASSWORD_FILE: cannot read /nonexistent/pw")
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn sasl_without_credentials_is_refused() {
        let err = load(&[("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")]).unwrap_err();
        assert!(err.to_string().contains("KAFKA_SASL_MECHANISM"), "{err}");
    }

    #[test]
    fn passthrough_names_map_to_librdkafka_properties() {
        assert_eq!(
            kafka_property_name("SOCKET_KEEPALIVE_ENABLE"),
            "socket.keepalive.enable"
        );
        assert_eq!(
            kafka_property_name("QUEUED_MAX_MESSAGES_KBYTES"),
            "queued.max.messages.kbytes"
        );
        assert_eq!(kafka_property_name("SSL__KEY"), "ssl_key");
        let c = load(&[("KAFKA_CONFIG_FETCH_MAX_BYTES", "1048576")]).unwrap();
        assert_eq!(
            c.kafka.passthrough.get("fetch.max.bytes").map(String::as_str),
            Some("1048576")
        );
    }

    #[test]
    fn otlp_endpoints_follow_the_opentelemetry_rules() {
        assert_eq!(load(&[]).unwrap().log.otlp_endpoint, None, "no endpoint: no tracing");
        let base = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318/")]).unwrap();
        assert_eq!(base.log.otlp_endpoint.as_deref(), Some("http://otel:4318/v1/traces"));
        let signal = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/ingest"),
        ])
        .unwrap();
        assert_eq!(
            signal.log.otlp_endpoint.as_deref(),
            Some("http://traces:9999/ingest"),
            "used as given"
        );
        assert!(load(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).is_ok());
        let grpc = load(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
            .unwrap_err()
            .to_string();
        assert!(
            grpc.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && grpc.contains("http/protobuf"),
            "{grpc}"
        );
        assert!(load(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")]).is_err());
    }

    #[test]
    fn hash_privacy_needs_a_key() {
        assert!(load(&[("IP_PRIVACY", "hash")]).is_err());
        let c = load(&[("IP_PRIVACY", "hash"), ("IP_HASH_KEY", "0123456789abcdef-key")]).unwrap();
        assert!(matches!(c.ip_privacy, IpPrivacy::Hash(_)));
    }

    #[test]
    fn every_setting_is_read_by_load() {
        let c = load(&[]).unwrap();
        for s in SETTINGS {
            assert!(
                c.effective.iter().any(|(var, _)| var == &s.var),
                "{} is declared but never read",
                s.var
            );
        }
    }

    #[test]
    fn readme_configuration_table_is_generated_from_settings() {
        let readme = include_str!("../README.md");
        let begin = readme
            .find("<!-- settings:begin -->")
            .expect("README has the settings markers");
        let end = readme
            .find("<!-- settings:end -->")
            .expect("README has the settings markers");
        let table = readme[begin + "<!-- settings:begin -->".len()..end].trim();
        assert_eq!(
            table,
            markdown_table().trim(),
            "README's configuration table is stale: regenerate it with `activity-tracker config --markdown`"
        );
    }

    #[test]
    fn drain_must_fit_in_the_session() {
        let err = load(&[("DRAIN_TIMEOUT", "60s"), ("KAFKA_SESSION_TIMEOUT_MS", "30000")]).unwrap_err();
        assert!(err.to_string().contains("DRAIN_TIMEOUT"));
    }
}
