//! Configuration: environment, `.env` file and command-line flags, read once
//! into one typed [`Config`].
//!
//! Every setting is declared once in [`SETTINGS`] (`settings.rs`): its
//! environment variable (the Python demo's names and defaults), the flag
//! derived from it (`EVENTS_PER_SECOND` → `--events-per-second`), its
//! default, which groups of commands read it ([`Uses`]), the values it
//! accepts ([`Kind`]) and its help text. Parsing, the error text, the CLI
//! flags, the `config` subcommand and the README's configuration table all
//! come from that one table. A command says which groups it reads with its
//! [`Profile`].
//!
//! Precedence: flag, then environment, then `.env` in the working directory,
//! then the default. Nothing else in the crate reads the environment; other
//! modules receive the typed values. A bad value is a [`ConfigError`] whose
//! one-line message names the variable (or flag) and the expected form; the
//! binary prints it and exits with code 2.
//!
//! Secrets (`KAFKA_SASL_PASSWORD`, `KAFKA_SSL_KEY_PASSWORD`, `IP_HASH_KEY`,
//! `COLLECT_WRITE_KEYS`) can also be given as a `*_FILE` path, as Kubernetes
//! mounts Secrets, and are never printed: [`Config::describe`] redacts them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::event::DecodeLimits;

mod read;
mod settings;
mod types;

use read::{Reader, given};
pub use settings::{FOREVER, Kind, Profile, SETTINGS, Setting, Uses, Value, markdown_table, parse_duration};
pub use types::*;

/// Settings of the pure core (`activity-tracker-core`), defined there so the
/// processors need nothing from this crate.
pub use activity_tracker_core::analytics::AnalyticsConfig;
pub use activity_tracker_core::eventtime::DEFAULT_ALLOWED_LATENESS;
pub use activity_tracker_core::fraud::FraudConfig;
pub use activity_tracker_core::privacy::{IpPrivacy, Secret};

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

/// The whole configuration of one command.
#[derive(Clone, Debug)]
pub struct Config {
    /// The command it was loaded for.
    pub profile: Profile,
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
    /// Reads and validates every setting, for the command `profile` describes.
    pub fn load(profile: Profile, sources: &Sources) -> Result<Config, ConfigError> {
        let mut r = Reader::new(sources, profile.defaults);

        let bootstrap_servers_set = sources.raw("KAFKA_BOOTSTRAP_SERVERS").is_some();
        let bootstrap_servers = given(
            "KAFKA_BOOTSTRAP_SERVERS",
            r.form("KAFKA_BOOTSTRAP_SERVERS", |t| {
                (!t.is_empty() && t.split(',').all(|s| s.contains(':'))).then(|| t.to_string())
            })?,
        )?;
        let topic = |t: &str| {
            let valid = t.len() <= 249
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            (!t.is_empty() && valid).then(|| t.to_string())
        };
        let topics = TopicsConfig {
            activities: given("KAFKA_ACTIVITIES_TOPIC", r.form("KAFKA_ACTIVITIES_TOPIC", topic)?)?,
            partitions: given("KAFKA_ACTIVITIES_PARTITIONS", r.whole("KAFKA_ACTIVITIES_PARTITIONS")?)?,
            replication_factor: given("KAFKA_REPLICATION_FACTOR", r.whole("KAFKA_REPLICATION_FACTOR")?)?,
            retention_ms: given("KAFKA_RETENTION_MS", r.whole("KAFKA_RETENTION_MS")?)?,
            alerts: given("KAFKA_ALERTS_TOPIC", r.form("KAFKA_ALERTS_TOPIC", topic)?)?,
            dlq: given("KAFKA_DLQ_TOPIC", r.form("KAFKA_DLQ_TOPIC", topic)?)?,
        };

        let group = |t: &str| (!t.is_empty()).then(|| t.to_string());
        let consumer = ConsumerConfig {
            analytics_group: given("KAFKA_ANALYTICS_GROUP", r.form("KAFKA_ANALYTICS_GROUP", group)?)?,
            fraud_group: given("KAFKA_FRAUD_GROUP", r.form("KAFKA_FRAUD_GROUP", group)?)?,
            assignment_strategy: given(
                "KAFKA_ASSIGNMENT_STRATEGY",
                r.pick(
                    "KAFKA_ASSIGNMENT_STRATEGY",
                    &[
                        ("cooperative-sticky", "cooperative-sticky"),
                        ("range", "range"),
                        ("roundrobin", "roundrobin"),
                    ],
                )?,
            )?
            .to_string(),
            group_protocol: given(
                "KAFKA_GROUP_PROTOCOL",
                r.pick(
                    "KAFKA_GROUP_PROTOCOL",
                    &[
                        ("classic", GroupProtocol::Classic),
                        ("consumer", GroupProtocol::Consumer),
                    ],
                )?,
            )?,
            group_instance_id: r.optional_string("KAFKA_GROUP_INSTANCE_ID"),
            auto_offset_reset: given(
                "KAFKA_AUTO_OFFSET_RESET",
                r.pick(
                    "KAFKA_AUTO_OFFSET_RESET",
                    &[("earliest", OffsetReset::Earliest), ("latest", OffsetReset::Latest)],
                )?,
            )?,
            session_timeout: Duration::from_millis(given(
                "KAFKA_SESSION_TIMEOUT_MS",
                r.whole("KAFKA_SESSION_TIMEOUT_MS")?,
            )?),
            commit_interval: Duration::from_millis(given(
                "KAFKA_COMMIT_INTERVAL_MS",
                r.whole("KAFKA_COMMIT_INTERVAL_MS")?,
            )?),
            stats_interval: given("STATS_INTERVAL", r.whole("STATS_INTERVAL")?)?,
            state_rebuild: given("STATE_REBUILD", r.flag("STATE_REBUILD")?)?,
            snapshot_interval: given("STATE_SNAPSHOT_INTERVAL", r.duration("STATE_SNAPSHOT_INTERVAL")?)?,
            shutdown_timeout: given("SHUTDOWN_TIMEOUT", r.duration("SHUTDOWN_TIMEOUT")?)?,
            drain_timeout: given("DRAIN_TIMEOUT", r.duration("DRAIN_TIMEOUT")?)?,
            audit_log: r.path("AUDIT_LOG"),
            fetch_wait_max: None,
        };
        // Under KIP-848 the broker's group.consumer.session.timeout.ms
        // applies, which this process cannot see.
        if consumer.group_protocol == GroupProtocol::Classic && consumer.drain_timeout >= consumer.session_timeout {
            return Err(ConfigError::Inconsistent(format!(
                "DRAIN_TIMEOUT ({:?}) must be shorter than KAFKA_SESSION_TIMEOUT_MS ({:?}), or the group evicts a draining consumer",
                consumer.drain_timeout, consumer.session_timeout
            )));
        }

        let kafka = Self::kafka(&mut r, bootstrap_servers, bootstrap_servers_set)?;

        let producer = ProducerConfig {
            events_per_second: given("EVENTS_PER_SECOND", r.number("EVENTS_PER_SECOND")?)?,
            max_events: r.whole("MAX_EVENTS")?,
            verbose: given("VERBOSE", r.flag("VERBOSE")?)?,
            fraud_rate: given("FRAUD_RATE", r.number("FRAUD_RATE")?)?,
            users: given("SIM_USERS", r.whole("SIM_USERS")?)?,
            seed: r.whole("SIM_SEED")?,
            start_time_ms: r.form("SIM_START_TIME", crate::eventtime::parse_rfc3339_ms)?,
        };
        if producer.start_time_ms.is_some() && producer.events_per_second == 0.0 {
            return Err(ConfigError::Inconsistent(
                "SIM_START_TIME needs EVENTS_PER_SECOND > 0: it sets how fast simulated time advances".into(),
            ));
        }

        let limits = DecodeLimits {
            max_event_bytes: given("MAX_EVENT_BYTES", r.whole("MAX_EVENT_BYTES")?)?,
            max_future_skew_ms: given("MAX_EVENT_FUTURE_SKEW", r.duration("MAX_EVENT_FUTURE_SKEW")?)?.as_millis()
                as i64,
            max_age_ms: given("MAX_EVENT_AGE", r.duration("MAX_EVENT_AGE")?)?.as_millis() as i64,
            max_order_value: given("MAX_ORDER_VALUE", r.number("MAX_ORDER_VALUE")?)?,
        };

        let allowed_lateness = given("ALLOWED_LATENESS", r.duration("ALLOWED_LATENESS")?)?;
        let analytics = AnalyticsConfig {
            allowed_lateness,
            window: given("ANALYTICS_WINDOW", r.duration("ANALYTICS_WINDOW")?)?,
            session_timeout: given("ANALYTICS_SESSION_TIMEOUT", r.duration("ANALYTICS_SESSION_TIMEOUT")?)?,
            max_users_per_partition: given(
                "ANALYTICS_MAX_USERS_PER_PARTITION",
                r.whole("ANALYTICS_MAX_USERS_PER_PARTITION")?,
            )?,
            report_user_ids: given("REPORT_USER_IDS", r.flag("REPORT_USER_IDS")?)?,
            site_domains: r
                .form("SITE_DOMAINS", |t| {
                    let domains: Vec<String> = t
                        .split(',')
                        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                        .filter(|d| !d.is_empty())
                        .collect();
                    let valid = |d: &String| {
                        d.len() <= 253 && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    };
                    (!domains.is_empty() && domains.iter().all(valid)).then_some(domains)
                })?
                .unwrap_or_default(),
        };

        let fraud = FraudConfig {
            high_value_threshold: given("HIGH_VALUE_THRESHOLD", r.number("HIGH_VALUE_THRESHOLD")?)?,
            velocity_threshold: given("VELOCITY_THRESHOLD", r.whole("VELOCITY_THRESHOLD")?)?,
            rapid_location_change: Duration::from_secs_f64(
                given(
                    "RAPID_LOCATION_CHANGE_MINUTES",
                    r.number("RAPID_LOCATION_CHANGE_MINUTES")?,
                )? * 60.0,
            ),
            multiple_ip_threshold: given("MULTIPLE_IP_THRESHOLD", r.whole("MULTIPLE_IP_THRESHOLD")?)?,
            cooldown: r.duration("FRAUD_COOLDOWN")?,
            allowed_lateness,
        };

        #[derive(Clone, Copy)]
        enum Privacy {
            None,
            Truncate,
            Hash,
        }
        let privacy = given(
            "IP_PRIVACY",
            r.pick(
                "IP_PRIVACY",
                &[
                    ("none", Privacy::None),
                    ("truncate", Privacy::Truncate),
                    ("hash", Privacy::Hash),
                ],
            )?,
        )?;
        let hash_key = r.secret("IP_HASH_KEY", "IP_HASH_KEY_FILE")?;
        let ip_privacy = match (privacy, hash_key) {
            (Privacy::None, _) => IpPrivacy::None,
            (Privacy::Truncate, _) => IpPrivacy::Truncate,
            (Privacy::Hash, Some(key)) if key.expose().len() >= 16 => IpPrivacy::Hash(key),
            (Privacy::Hash, _) => {
                return Err(ConfigError::Inconsistent(
                    "IP_PRIVACY=hash needs IP_HASH_KEY or IP_HASH_KEY_FILE with at least 16 characters".into(),
                ));
            }
        };

        let collect = Self::collect(&mut r)?;

        let log = LogConfig {
            filter: given("LOG_LEVEL", r.form("LOG_LEVEL", log_filter)?)?,
            format: given(
                "LOG_FORMAT",
                r.pick(
                    "LOG_FORMAT",
                    &[
                        ("pretty", LogFormat::Pretty),
                        ("text", LogFormat::Pretty),
                        ("json", LogFormat::Json),
                    ],
                )?,
            )?,
            dir: r.path("LOG_DIR"),
            otlp_endpoint: Self::otlp_traces_url(&mut r)?,
            service_name: r.optional_string("OTEL_SERVICE_NAME"),
        };

        let default_addr = SocketAddr::from(([127, 0, 0, 1], profile.http_port));
        let http_addr = r
            .form("HTTP_ADDR", |t| t.parse::<SocketAddr>().ok())?
            .unwrap_or(default_addr);

        Ok(Config {
            profile,
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

    fn kafka(
        r: &mut Reader<'_>,
        bootstrap_servers: String,
        bootstrap_servers_set: bool,
    ) -> Result<KafkaConfig, ConfigError> {
        let security_protocol = given(
            "KAFKA_SECURITY_PROTOCOL",
            r.pick(
                "KAFKA_SECURITY_PROTOCOL",
                &[
                    ("plaintext", SecurityProtocol::Plaintext),
                    ("ssl", SecurityProtocol::Ssl),
                    ("sasl_plaintext", SecurityProtocol::SaslPlaintext),
                    ("sasl_ssl", SecurityProtocol::SaslSsl),
                ],
            )?,
        )?;
        let sasl_mechanism = r.pick(
            "KAFKA_SASL_MECHANISM",
            &[
                ("PLAIN", SaslMechanism::Plain),
                ("SCRAM-SHA-256", SaslMechanism::ScramSha256),
                ("SCRAM-SHA-512", SaslMechanism::ScramSha512),
            ],
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
        let passthrough = r
            .sources
            .env
            .iter()
            .chain(r.sources.flags.iter())
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("KAFKA_CONFIG_")?;
                Some((kafka_property_name(name), v.clone()))
            })
            .collect();
        Ok(KafkaConfig {
            bootstrap_servers,
            bootstrap_servers_set,
            security_protocol,
            sasl_mechanism,
            sasl_username,
            sasl_password,
            ssl_ca_location: r.path("KAFKA_SSL_CA_LOCATION"),
            ssl_certificate_location: r.path("KAFKA_SSL_CERTIFICATE_LOCATION"),
            ssl_key_location: r.path("KAFKA_SSL_KEY_LOCATION"),
            ssl_key_password: r.secret("KAFKA_SSL_KEY_PASSWORD", "KAFKA_SSL_KEY_PASSWORD_FILE")?,
            passthrough,
        })
    }

    /// The OTLP traces URL, by the OpenTelemetry rules: the signal's own
    /// endpoint as given, else the base endpoint + `/v1/traces`.
    fn otlp_traces_url(r: &mut Reader<'_>) -> Result<Option<String>, ConfigError> {
        // Only http/protobuf is built in; anything else is refused by kind.
        r.pick("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &[("http/protobuf", ())])?;
        r.pick("OTEL_EXPORTER_OTLP_PROTOCOL", &[("http/protobuf", ())])?;
        let traces = r.optional_string("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let base = r.optional_string("OTEL_EXPORTER_OTLP_ENDPOINT");
        Ok(traces
            .map(|t| t.trim().to_string())
            .or_else(|| base.map(|b| format!("{}/v1/traces", b.trim().trim_end_matches('/')))))
    }

    fn collect(r: &mut Reader<'_>) -> Result<CollectConfig, ConfigError> {
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
        if let Some(short) = write_keys.iter().find(|k| k.expose().len() < 8) {
            return Err(ConfigError::Invalid {
                name: "COLLECT_WRITE_KEYS".into(),
                value: format!("{} characters", short.expose().len()),
                expected: "keys of at least 8 characters".into(),
            });
        }
        let allowed_origins = r
            .form("COLLECT_ALLOWED_ORIGINS", |t| {
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
            })?
            .unwrap_or(Some(Vec::new()));
        let country_header = r.form("COLLECT_COUNTRY_HEADER", |t| {
            let valid = !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            valid.then(|| t.to_ascii_lowercase())
        })?;
        let collect = CollectConfig {
            write_keys,
            allowed_origins,
            trusted_proxies: given("COLLECT_TRUSTED_PROXIES", r.whole("COLLECT_TRUSTED_PROXIES")?)?,
            country_header,
            geoip_db: r.path("COLLECT_GEOIP_DB"),
            rate_limit: given("COLLECT_RATE_LIMIT", r.whole("COLLECT_RATE_LIMIT")?)?,
            rate_burst: given("COLLECT_RATE_BURST", r.whole("COLLECT_RATE_BURST")?)?,
            max_body_bytes: given("COLLECT_MAX_BODY_BYTES", r.whole("COLLECT_MAX_BODY_BYTES")?)?,
            max_batch: given("COLLECT_MAX_BATCH", r.whole("COLLECT_MAX_BATCH")?)?,
            request_timeout: given("COLLECT_REQUEST_TIMEOUT", r.duration("COLLECT_REQUEST_TIMEOUT")?)?,
            ack_timeout: given("COLLECT_ACK_TIMEOUT", r.duration("COLLECT_ACK_TIMEOUT")?)?,
            shutdown_delay: given("COLLECT_SHUTDOWN_DELAY", r.duration("COLLECT_SHUTDOWN_DELAY")?)?,
            max_connections: given("COLLECT_MAX_CONNECTIONS", r.whole("COLLECT_MAX_CONNECTIONS")?)?,
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
        let mut out = String::new();
        for (var, value) in &self.effective {
            if Setting::named(var).uses.contains(self.profile.uses) {
                out.push_str(&format!("{var}={value}\n"));
            }
        }
        for name in self.kafka.passthrough.keys() {
            out.push_str(&format!("KAFKA_CONFIG ({name})=***\n"));
        }
        out
    }
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
mod tests;
