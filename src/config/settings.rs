//! The settings table: every setting the system reads, declared once with
//! its environment variable, default, the groups of commands that read it,
//! the values it accepts and its help. Parsing ([`super::Config::load`]),
//! the "expected …" text of an error, the CLI flags and the README's
//! configuration table all come from this table.

use std::time::Duration;

/// Groups of settings, as a bit set. A command's [`Profile`] names the groups
/// it reads; a setting belongs to one or more groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uses(u16);

impl Uses {
    /// Connecting to Kafka: brokers, TLS, SASL.
    pub const KAFKA: Uses = Uses(1);
    /// The three topic names.
    pub const TOPICS: Uses = Uses(1 << 1);
    /// How the topics are created: partitions, replication, retention.
    pub const TOPIC_ADMIN: Uses = Uses(1 << 2);
    /// The activity simulator.
    pub const SIMULATOR: Uses = Uses(1 << 3);
    /// A consumer-group member: assignment, session, commits.
    pub const GROUP_MEMBER: Uses = Uses(1 << 4);
    /// A long-running consumer process: reports, rebuild, drain, lateness.
    pub const CONSUMER: Uses = Uses(1 << 5);
    /// Decoding and validating events.
    pub const DECODER: Uses = Uses(1 << 6);
    /// The analytics processor.
    pub const ANALYTICS: Uses = Uses(1 << 7);
    /// The fraud detector.
    pub const FRAUD: Uses = Uses(1 << 8);
    /// How IP addresses are shown.
    pub const IP_PRIVACY: Uses = Uses(1 << 9);
    /// The HTTP collector.
    pub const COLLECTOR: Uses = Uses(1 << 10);
    /// A process with an HTTP server and a graceful stop.
    pub const SERVICE: Uses = Uses(1 << 11);
    /// Reading the dead-letter topic.
    pub const DEAD_LETTERS: Uses = Uses(1 << 12);
    /// Logs and traces: every command.
    pub const LOGS: Uses = Uses(1 << 13);
    pub const NONE: Uses = Uses(0);
    pub const ALL: Uses = Uses(u16::MAX);

    pub const fn or(self, other: Uses) -> Uses {
        Uses(self.0 | other.0)
    }

    pub const fn contains(self, other: Uses) -> bool {
        self.0 & other.0 != 0
    }
}

/// What a command needs from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The subcommand's name, as typed (`fraud`); logs and traces say
    /// `activity-tracker-<name>`.
    pub name: &'static str,
    /// The settings it reads: these become its flags and `config` shows them.
    pub uses: Uses,
    /// The port of HTTP_ADDR when unset (0: any free port).
    pub http_port: u16,
    /// Defaults of its own, over the table's (`demo` waits less for late
    /// events); the environment and flags still win.
    pub defaults: &'static [(&'static str, &'static str)],
}

/// The values a setting accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Any text.
    Text,
    /// A file or directory path.
    Path,
    /// Any text, never printed.
    Secret,
    /// true/false (also 1/0, yes/no, on/off).
    Bool,
    /// A whole number from `min` to `max`, or `sentinel` (meaning `means`).
    Whole {
        min: i128,
        max: i128,
        unit: &'static str,
        sentinel: Option<(i128, &'static str)>,
    },
    /// A finite number above `min` (or from it, when `min_included`), up to `max`.
    Number {
        min: f64,
        min_included: bool,
        max: Option<f64>,
        unit: &'static str,
    },
    /// A duration with a unit (`250ms`, `20s`, `5m`, `1h`, `7d`), from `min` to `max`.
    Duration { min: Duration, max: Duration },
    /// One of these words, in any case.
    Choice(&'static [&'static str]),
    /// A form checked by its own parser in `load`; the text names it.
    Form(&'static str),
}

impl Kind {
    /// What a valid value looks like, for errors and the README.
    pub fn expected(&self) -> String {
        match *self {
            Kind::Text => "any text".into(),
            Kind::Secret => "any text (a secret: never printed)".into(),
            Kind::Path => "a path".into(),
            Kind::Bool => "true or false".into(),
            Kind::Whole {
                min,
                max,
                unit,
                sentinel,
            } => {
                let of = of(unit);
                let mut text = if max >= MAX {
                    format!("a whole number{of} from {min}")
                } else {
                    format!("a whole number{of} from {min} to {max}")
                };
                if let Some((value, means)) = sentinel {
                    text.push_str(&format!(", or {value} for {means}"));
                }
                text
            }
            Kind::Number {
                min,
                min_included,
                max,
                unit,
            } => {
                let of = of(unit);
                match (min_included, max) {
                    (true, Some(max)) => format!("a number{of} from {min} to {max}"),
                    (false, Some(max)) => format!("a number{of} above {min}, up to {max}"),
                    (true, None) => format!("a number{of} from {min}"),
                    (false, None) if min == 0.0 => format!("a positive number{of}"),
                    (false, None) => format!("a number{of} above {min}"),
                }
            }
            Kind::Duration { min, max } => {
                if max < FOREVER {
                    format!("a duration from {} to {}, e.g. 30s, 5m or 1h", human(min), human(max))
                } else if min.is_zero() {
                    "a duration such as 20s or 5m".into()
                } else if min == Duration::from_millis(1) {
                    "a positive duration such as 20s or 5m".into()
                } else {
                    format!("a duration of at least {} such as 20s or 5m", human(min))
                }
            }
            Kind::Choice(words) => match words {
                [] => String::new(),
                [one] => (*one).to_string(),
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
            },
            Kind::Form(text) => text.into(),
        }
    }

    /// Parses `text` (already trimmed) into the value this kind describes;
    /// `None` when it is not one.
    pub fn parse(&self, text: &str) -> Option<Value> {
        match *self {
            Kind::Text | Kind::Path | Kind::Secret | Kind::Form(_) => Some(Value::Text(text.to_string())),
            Kind::Bool => parse_bool(text).map(Value::Bool),
            Kind::Whole { min, max, sentinel, .. } => {
                let v: i128 = text.parse().ok()?;
                ((min..=max).contains(&v) || sentinel.is_some_and(|(s, _)| s == v)).then_some(Value::Whole(v))
            }
            Kind::Number {
                min, min_included, max, ..
            } => {
                let v: f64 = text.parse().ok()?;
                let above = if min_included { v >= min } else { v > min };
                (v.is_finite() && above && max.is_none_or(|m| v <= m)).then_some(Value::Number(v))
            }
            Kind::Duration { min, max } => parse_duration(text)
                .filter(|d| (min..=max).contains(d))
                .map(Value::Duration),
            Kind::Choice(words) => words
                .iter()
                .find(|w| w.eq_ignore_ascii_case(text))
                .map(|w| Value::Choice(w)),
        }
    }
}

/// " of bytes" for a unit, nothing without one.
fn of(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" of {unit}")
    }
}

/// A parsed setting value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Bool(bool),
    Whole(i128),
    Number(f64),
    Duration(Duration),
    /// The word as declared in [`Kind::Choice`].
    Choice(&'static str),
}

/// "No upper bound" for a whole number.
const MAX: i128 = i64::MAX as i128;

/// The longest duration a setting can name: "no upper bound".
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `3600s` → `1h`: the largest unit that divides the duration.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
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

/// One documented setting.
#[derive(Debug)]
pub struct Setting {
    pub var: &'static str,
    pub default: Option<&'static str>,
    pub uses: Uses,
    pub kind: Kind,
    pub help: &'static str,
}

impl Setting {
    /// The command-line flag: `EVENTS_PER_SECOND` → `events-per-second`.
    pub fn flag(&self) -> String {
        self.var.to_ascii_lowercase().replace('_', "-")
    }

    /// Never printed; redacted by [`super::Config::describe`].
    pub fn secret(&self) -> bool {
        self.kind == Kind::Secret
    }

    /// The declaration of `var`; a name missing from [`SETTINGS`] is a bug.
    pub fn named(var: &str) -> &'static Setting {
        SETTINGS
            .iter()
            .find(|s| s.var == var)
            .unwrap_or_else(|| panic!("setting {var} is not declared in SETTINGS"))
    }
}

const fn s(var: &'static str, default: Option<&'static str>, uses: Uses, kind: Kind, help: &'static str) -> Setting {
    Setting {
        var,
        default,
        uses,
        kind,
        help,
    }
}

const fn whole(min: i128, max: i128, unit: &'static str) -> Kind {
    Kind::Whole {
        min,
        max,
        unit,
        sentinel: None,
    }
}

const fn positive(unit: &'static str) -> Kind {
    Kind::Number {
        min: 0.0,
        min_included: false,
        max: None,
        unit,
    }
}

const fn duration(min_ms: u64, max: Duration) -> Kind {
    Kind::Duration {
        min: Duration::from_millis(min_ms),
        max,
    }
}

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const KAFKA: Uses = Uses::KAFKA;
const TOPICS: Uses = Uses::TOPICS;
const TOPIC_ADMIN: Uses = Uses::TOPIC_ADMIN;
const SIM: Uses = Uses::SIMULATOR;
const MEMBER: Uses = Uses::GROUP_MEMBER;
const CONSUMER: Uses = Uses::CONSUMER;
const DECODER: Uses = Uses::DECODER;
const ANALYTICS: Uses = Uses::ANALYTICS;
const FRAUD: Uses = Uses::FRAUD;
const PRIVACY: Uses = Uses::IP_PRIVACY;
const COLLECT: Uses = Uses::COLLECTOR;
const LOGS: Uses = Uses::LOGS;
const TEXT: Kind = Kind::Text;
const PATH: Kind = Kind::Path;
const SECRET: Kind = Kind::Secret;
const BOOL: Kind = Kind::Bool;
const TOPIC: Kind = Kind::Form("a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -");
const GROUP: Kind = Kind::Form("a non-empty consumer group id");

/// Every setting the system reads. Keep in the order the README presents them.
#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    // Kafka connection and topics.
    s("KAFKA_BOOTSTRAP_SERVERS", Some("localhost:9092"), KAFKA, Kind::Form("comma-separated host:port pairs, e.g. localhost:9092"), "Kafka brokers. `demo` starts an embedded broker unless this is set."),
    s("KAFKA_ACTIVITIES_TOPIC", Some("user-activities"), TOPICS, TOPIC, "Topic of user activity events, keyed by user_id."),
    s("KAFKA_ACTIVITIES_PARTITIONS", Some("6"), TOPIC_ADMIN, whole(1, 10_000, "partitions"), "Partitions of the activities topic when we create it; the upper bound on useful consumer replicas."),
    s("KAFKA_REPLICATION_FACTOR", Some("1"), TOPIC_ADMIN, Kind::Whole { min: 1, max: 32, unit: "replicas", sentinel: Some((-1, "the broker's default")) }, "Replication factor of the topics we create; -1 = the broker's `default.replication.factor`."),
    s("KAFKA_RETENTION_MS", Some("604800000"), TOPIC_ADMIN, Kind::Whole { min: 1, max: MAX, unit: "milliseconds", sentinel: Some((-1, "unlimited")) }, "retention.ms of the topics we create (default 7 days)."),
    s("KAFKA_ALERTS_TOPIC", Some("fraud-alerts"), TOPICS, TOPIC, "Topic the fraud detector publishes alerts to, keyed by user_id."),
    s("KAFKA_DLQ_TOPIC", Some("user-activities-dlq"), TOPICS, TOPIC, "Dead-letter topic for events that fail decoding or validation."),
    s("KAFKA_ANALYTICS_GROUP", Some("analytics-processors"), ANALYTICS, GROUP, "Consumer group of the analytics consumers."),
    s("KAFKA_FRAUD_GROUP", Some("fraud-detectors"), FRAUD, GROUP, "Consumer group of the fraud detectors."),
    s("KAFKA_ASSIGNMENT_STRATEGY", Some("cooperative-sticky"), MEMBER, Kind::Choice(&["cooperative-sticky", "range", "roundrobin"]), "partition.assignment.strategy: cooperative-sticky (incremental rebalances), range or roundrobin."),
    s("KAFKA_GROUP_PROTOCOL", Some("classic"), MEMBER, Kind::Choice(&["classic", "consumer"]), "Consumer group protocol: classic (the client assigns, KAFKA_ASSIGNMENT_STRATEGY) or consumer (KIP-848, Kafka 4.0+: the broker assigns incrementally and owns the session timeout)."),
    s("KAFKA_GROUP_INSTANCE_ID", None, CONSUMER, TEXT, "Static group membership id (e.g. the StatefulSet pod name): a restart within the session timeout keeps the partitions without a rebalance."),
    s("KAFKA_AUTO_OFFSET_RESET", Some("earliest"), MEMBER.or(Uses::DEAD_LETTERS), Kind::Choice(&["earliest", "latest"]), "Where a group with no committed offset starts."),
    s("KAFKA_SESSION_TIMEOUT_MS", Some("45000"), MEMBER, whole(1000, 3_600_000, "milliseconds"), "Consumer group session timeout; a crashed consumer's partitions move after this."),
    s("KAFKA_COMMIT_INTERVAL_MS", Some("1000"), MEMBER, whole(10, 600_000, "milliseconds"), "How often stored offsets are committed; bounds the events reprocessed after a crash."),
    s("KAFKA_SECURITY_PROTOCOL", Some("plaintext"), KAFKA, Kind::Choice(&["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]), "How clients talk to the brokers."),
    s("KAFKA_SASL_MECHANISM", None, KAFKA, Kind::Choice(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]), "SASL mechanism (required with sasl_*)."),
    s("KAFKA_SASL_USERNAME", None, KAFKA, TEXT, "SASL user name."),
    s("KAFKA_SASL_PASSWORD", None, KAFKA, SECRET, "SASL password (prefer KAFKA_SASL_PASSWORD_FILE)."),
    s("KAFKA_SASL_PASSWORD_FILE", None, KAFKA, PATH, "File holding the SASL password, e.g. a mounted Kubernetes Secret."),
    s("KAFKA_SSL_CA_LOCATION", None, KAFKA, PATH, "CA certificate (PEM) to verify the brokers."),
    s("KAFKA_SSL_CERTIFICATE_LOCATION", None, KAFKA, PATH, "Client certificate (PEM) for mutual TLS."),
    s("KAFKA_SSL_KEY_LOCATION", None, KAFKA, PATH, "Client private key (PEM) for mutual TLS."),
    s("KAFKA_SSL_KEY_PASSWORD", None, KAFKA, SECRET, "Password of the client private key (prefer KAFKA_SSL_KEY_PASSWORD_FILE)."),
    s("KAFKA_SSL_KEY_PASSWORD_FILE", None, KAFKA, PATH, "File holding the client key password."),
    // Producer (simulator).
    s("EVENTS_PER_SECOND", Some("10"), SIM, Kind::Number { min: 0.0, min_included: true, max: None, unit: "events per second" }, "Simulated events per second; 0 sends as fast as the broker accepts."),
    s("MAX_EVENTS", None, SIM, whole(1, MAX, "events"), "Stop after this many events (unset: run until stopped)."),
    s("VERBOSE", Some("false"), SIM, BOOL, "Print every delivery report."),
    s("FRAUD_RATE", Some("0.1"), SIM, Kind::Number { min: 0.0, min_included: true, max: Some(1.0), unit: "" }, "Share of simulated sessions played by fraudulent actors."),
    s("SIM_USERS", Some("9000"), SIM, whole(10, 1_000_000_000, "users"), "Size of the simulated user population (user-1000 …)."),
    s("SIM_SEED", None, SIM, whole(0, u64::MAX as i128, ""), "Seed of the simulator; the same seed gives the same users, sessions and fraud."),
    s("SIM_START_TIME", None, SIM, Kind::Form("an RFC 3339 time such as 2024-01-15T10:00:00Z"), "Simulate traffic starting at this time instead of now: event i is stamped start + i/EVENTS_PER_SECOND and sent as fast as possible."),
    // Consumers.
    s("STATS_INTERVAL", Some("50"), CONSUMER, whole(1, MAX, "events"), "Print a report every N events (at most one per second)."),
    s("HTTP_ADDR", None, Uses::SERVICE, Kind::Form("host:port such as 127.0.0.1:9101 or 0.0.0.0:8080"), "Listen address of /metrics, /healthz, /readyz and /report (and the collector's /v1 routes). Default 127.0.0.1 with a per-command port (demo 9100, analytics 9101, fraud 9102, produce 9103, collect 8080); use 0.0.0.0:PORT in containers, port 0 for any free port."),
    s("STATE_REBUILD", Some("true"), CONSUMER, BOOL, "Rebuild a newly assigned partition's windowed state by replaying its recent events before going live."),
    s("STATE_SNAPSHOT_INTERVAL", Some("5m"), CONSUMER, duration(0, secs(86_400)), "How often each owned partition's state is written to the consumer group's compacted state topic (`<activities topic>-state-<group>`), and also at every graceful hand-over: a new owner restores the newest snapshot and replays only the events since it, instead of the whole window (docs/snapshots.md). 0 turns snapshots off; rebuilds then replay the window."),
    s("SHUTDOWN_TIMEOUT", Some("20s"), Uses::SERVICE, duration(1, FOREVER), "Upper bound on a graceful stop (drain, commit, leave the group); keep it below Kubernetes' terminationGracePeriodSeconds."),
    s("DRAIN_TIMEOUT", Some("10s"), CONSUMER, duration(1, FOREVER), "How long a revoked partition may wait for its in-flight alerts before its offsets are committed; below the session timeout."),
    s("ALLOWED_LATENESS", Some("60s"), CONSUMER, duration(0, secs(3600)), "How far behind its partition's event time an event is still on time: windowed fraud rules and analytics windows take it at its own timestamp. Later events are late: counted, judged by HIGH_VALUE_PURCHASE, kept out of windows (activity_late_events_total). PURCHASE_WITHOUT_ACTIVITY alerts and session figures wait this long in event time. `demo` defaults to 10s."),
    s("AUDIT_LOG", None, CONSUMER, PATH, "Directory for a processing audit: each consumer process appends `partition offset unix_ms` per live-processed event to its own file, flushed before offsets are stored (for verifying delivery; costs one write per batch)."),
    s("MAX_EVENT_BYTES", Some("65536"), DECODER, whole(256, 104_857_600, "bytes"), "Largest accepted event; bigger ones are dead-lettered as too_large."),
    s("MAX_EVENT_FUTURE_SKEW", Some("5m"), DECODER, duration(0, FOREVER), "How far after its Kafka timestamp (or receipt) an event may be stamped."),
    s("MAX_EVENT_AGE", Some("7d"), DECODER, duration(0, FOREVER), "How far before its Kafka timestamp (or receipt) an event may be stamped."),
    s("MAX_ORDER_VALUE", Some("1000000"), DECODER, positive("currency units"), "Largest accepted price / cart_value."),
    // Analytics.
    s("ANALYTICS_WINDOW", Some("1h"), ANALYTICS, duration(MINUTE, secs(7 * 86_400)), "Event-time window of the distinct-user figures (funnel, active users, top users)."),
    s("ANALYTICS_SESSION_TIMEOUT", Some("30m"), ANALYTICS, duration(MINUTE, secs(86_400)), "Inactivity after which a session is closed for the session-duration figures."),
    s("REPORT_USER_IDS", Some("false"), ANALYTICS, BOOL, "List the most active users' ids in /report (`top_users`). Off by default: /report is served without authentication on the pod's HTTP port; the console report lists them either way."),
    s("SITE_DOMAINS", None, ANALYTICS, Kind::Form("comma-separated host names such as shop.example.com,example.com"), "The site's own domains (and their subdomains): a session whose referrer is one of them is direct traffic, not a referral from ourselves. `demo` defaults to the simulated shop's, shop.example.com."),
    s("ANALYTICS_MAX_USERS_PER_PARTITION", Some("250000"), ANALYTICS, whole(1000, 100_000_000, "users"), "Users tracked exactly per partition (about 300 bytes each at the cap with an open session, hash-table headroom included: 75 MB per partition at the default); beyond it distinct counts use a HyperLogLog sketch."),
    // Fraud.
    s("HIGH_VALUE_THRESHOLD", Some("500.0"), FRAUD, positive("currency units"), "HIGH_VALUE_PURCHASE: purchase amount at or above this."),
    s("VELOCITY_THRESHOLD", Some("5"), FRAUD, whole(2, 1000, "events"), "HIGH_VELOCITY: transactional events within 60 s, counting the current one."),
    s("RAPID_LOCATION_CHANGE_MINUTES", Some("10"), FRAUD, Kind::Number { min: 0.0, min_included: false, max: Some(1440.0), unit: "minutes" }, "RAPID_LOCATION_CHANGE: country or city changed less than this many minutes after the previous event."),
    s("MULTIPLE_IP_THRESHOLD", Some("3"), FRAUD, whole(2, 100, "IPs"), "MULTIPLE_IPS: distinct IPs within the last hour, counting the current one."),
    s("FRAUD_COOLDOWN", None, FRAUD, duration(0, secs(7 * 86_400)), "Quiet period before a (user, rule) alert may fire again; default: each rule's own window."),
    s("IP_PRIVACY", Some("none"), PRIVACY, Kind::Choice(&["none", "truncate", "hash"]), "How IP addresses appear in alerts, logs and metrics: as sent, truncated (IPv4 /24, IPv6 /48) or hashed (keyed HMAC)."),
    s("IP_HASH_KEY", None, PRIVACY, SECRET, "Key of IP_PRIVACY=hash, at least 16 characters (prefer IP_HASH_KEY_FILE)."),
    s("IP_HASH_KEY_FILE", None, PRIVACY, PATH, "File holding the IP hashing key."),
    // HTTP collector.
    s("COLLECT_WRITE_KEYS", None, COLLECT, SECRET, "Write keys the collector accepts, comma-separated, each at least 8 characters (prefer COLLECT_WRITE_KEYS_FILE); at least one is required."),
    s("COLLECT_WRITE_KEYS_FILE", None, COLLECT, PATH, "File holding the write keys, one per line or comma-separated, e.g. a mounted Kubernetes Secret."),
    s("COLLECT_ALLOWED_ORIGINS", None, COLLECT, Kind::Form("`*` or comma-separated origins such as https://shop.example.com"), "Browser origins allowed to send events (CORS); `*` allows any. Unset: requests carrying an Origin header are refused."),
    s("COLLECT_TRUSTED_PROXIES", Some("0"), COLLECT, whole(0, 10, "proxies"), "Proxies in front of the collector that append to X-Forwarded-For (load balancer, ingress); the client IP is the address that many hops from the right. 0: the socket's peer address."),
    s("COLLECT_COUNTRY_HEADER", None, COLLECT, Kind::Form("an HTTP header name such as CF-IPCountry"), "Request header holding the client's ISO country code, set by a trusted edge (e.g. CF-IPCountry, CloudFront-Viewer-Country); used when COLLECT_GEOIP_DB has no answer."),
    s("COLLECT_GEOIP_DB", None, COLLECT, PATH, "MaxMind-format database (.mmdb, GeoIP2/GeoLite2 City or Country) for each event's location."),
    s("COLLECT_RATE_LIMIT", Some("100"), COLLECT, whole(0, 1_000_000, "events per second"), "Events per second accepted from one client IP (sustained); 0 turns the limit off."),
    s("COLLECT_RATE_BURST", Some("1000"), COLLECT, whole(1, 1_000_000, "events"), "Events one client IP may send at once before COLLECT_RATE_LIMIT applies."),
    s("COLLECT_MAX_BODY_BYTES", Some("1048576"), COLLECT, whole(1024, 64 << 20, "bytes"), "Largest request body; larger requests get 413."),
    s("COLLECT_MAX_BATCH", Some("500"), COLLECT, whole(1, 10_000, "events"), "Most events in one request; more get 413."),
    s("COLLECT_MAX_CONNECTIONS", Some("1024"), COLLECT, whole(16, 100_000, "connections"), "Connections the collector keeps open at once; further ones are closed as soon as they are accepted (each buffers at most 32 KiB of headers)."),
    s("COLLECT_REQUEST_TIMEOUT", Some("10s"), COLLECT, duration(100, secs(300)), "Longest a request may take, body upload and broker acknowledgement included (408 for a slow upload); also the deadline for each request's headers and for an idle keep-alive connection."),
    s("COLLECT_SHUTDOWN_DELAY", Some("0s"), COLLECT, duration(0, secs(60)), "After SIGTERM, how long the collector keeps serving while answering not ready, so load balancers and Ingress controllers stop routing to it before it closes its port (the chart sets 5 s). SHUTDOWN_TIMEOUT starts after it."),
    s("COLLECT_ACK_TIMEOUT", Some("5s"), COLLECT, duration(100, secs(300)), "How long the collector waits for the brokers to acknowledge a request's events before answering 503 (librdkafka message.timeout.ms); below COLLECT_REQUEST_TIMEOUT."),
    // Logging.
    s("LOG_LEVEL", Some("INFO"), LOGS, Kind::Form("DEBUG, INFO, WARNING or ERROR, or a tracing filter such as info,rdkafka=debug"), "How much to log."),
    s("LOG_FORMAT", Some("pretty"), LOGS, Kind::Choice(&["pretty", "json", "text"]), "Log lines for people (pretty, or its old name text) or for log collectors (json)."),
    s("LOG_DIR", None, LOGS, PATH, "Also write logs to a daily-rotated file in this directory."),
    s("OTEL_EXPORTER_OTLP_ENDPOINT", None, LOGS, TEXT, "Export OpenTelemetry traces over OTLP/HTTP to this base endpoint (e.g. http://otel-collector:4318; /v1/traces is appended); unset: no tracing. The other standard OTEL_* variables (headers, sampler) are honoured by the SDK."),
    s("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None, LOGS, TEXT, "The traces URL itself (used as given; wins over OTEL_EXPORTER_OTLP_ENDPOINT)."),
    s("OTEL_EXPORTER_OTLP_PROTOCOL", None, LOGS, Kind::Choice(&["http/protobuf"]), "The one OTLP transport built in (grpc is refused with an error rather than ignored: use the collector's HTTP port, 4318); OTEL_EXPORTER_OTLP_TRACES_PROTOCOL overrides it."),
    s("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None, LOGS, Kind::Choice(&["http/protobuf"]), "See OTEL_EXPORTER_OTLP_PROTOCOL."),
    s("OTEL_SERVICE_NAME", None, LOGS, TEXT, "Service name in traces; default activity-tracker-<command>."),
];

/// The README's configuration table (`activity-tracker config --markdown`);
/// a test keeps the README in sync.
pub fn markdown_table() -> String {
    let mut out = String::from("| Variable | Default | Accepts | Meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let default = match s.default {
            Some(d) => format!("`{d}`"),
            None => "—".to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.var,
            default,
            s.kind.expected().replace('|', "\\|"),
            s.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_a_value_its_setting_accepts() {
        for s in SETTINGS {
            if let Some(d) = s.default {
                assert!(
                    s.kind.parse(d).is_some(),
                    "{}'s default {d:?} is not {}",
                    s.var,
                    s.kind.expected()
                );
            }
        }
    }

    #[test]
    fn expected_texts_come_from_the_ranges() {
        let named = |var| Setting::named(var).kind.expected();
        assert_eq!(
            named("KAFKA_ACTIVITIES_PARTITIONS"),
            "a whole number of partitions from 1 to 10000"
        );
        assert_eq!(
            named("KAFKA_REPLICATION_FACTOR"),
            "a whole number of replicas from 1 to 32, or -1 for the broker's default"
        );
        assert_eq!(
            named("ALLOWED_LATENESS"),
            "a duration from 0s to 1h, e.g. 30s, 5m or 1h"
        );
        assert_eq!(named("KAFKA_GROUP_PROTOCOL"), "classic or consumer");
        assert_eq!(named("HIGH_VALUE_THRESHOLD"), "a positive number of currency units");
        let partitions = &Setting::named("KAFKA_ACTIVITIES_PARTITIONS").kind;
        assert_eq!(partitions.parse("10000"), Some(Value::Whole(10_000)));
        assert_eq!(partitions.parse("10001"), None);
        assert_eq!(partitions.parse("0"), None);
        let lateness = &Setting::named("ALLOWED_LATENESS").kind;
        assert_eq!(lateness.parse("1h"), Some(Value::Duration(secs(3600))));
        assert_eq!(lateness.parse("61m"), None);
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
        assert_eq!(human(Duration::from_millis(100)), "100ms");
        assert_eq!(human(secs(7 * 86_400)), "7d");
    }
}
