//! The configuration's specification: defaults, errors that name the
//! variable and the form, precedence, secrets, and the README table.

use super::*;

/// Every setting read, as `demo` reads them, on demo's port.
const EVERYTHING: Profile = Profile {
    name: "demo",
    uses: Uses::ALL,
    http_port: 9100,
    defaults: &[],
};

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(EVERYTHING, &Sources::from_pairs(pairs.iter().copied()))
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
        ("HIGH_VALUE_THRESHOLD", "-1", "positive number of currency units"),
        ("VELOCITY_THRESHOLD", "-5", "whole number"),
        ("MULTIPLE_IP_THRESHOLD", "three", "whole number"),
        ("RAPID_LOCATION_CHANGE_MINUTES", "0", "number of minutes above 0"),
        ("KAFKA_ACTIVITIES_PARTITIONS", "0", "partitions"),
        ("KAFKA_REPLICATION_FACTOR", "0", "-1 for the broker's default"),
        ("KAFKA_REPLICATION_FACTOR", "-2", "-1 for the broker's default"),
        ("VERBOSE", "maybe", "true or false"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO"),
        ("HTTP_ADDR", "localhost", "host:port"),
        ("SHUTDOWN_TIMEOUT", "soon", "duration"),
        ("FRAUD_RATE", "1.5", "a number from 0 to 1"),
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
    let c = Config::load(EVERYTHING, &sources).unwrap();
    assert_eq!(c.producer.events_per_second, 250.0);
    sources.flags.insert("EVENTS_PER_SECOND".into(), "lots".into());
    let err = Config::load(EVERYTHING, &sources).unwrap_err().to_string();
    assert!(err.starts_with("--events-per-second=\"lots\""), "{err}");
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
    let readme = include_str!("../../README.md");
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

#[test]
fn a_command_can_default_a_setting_of_its_own() {
    const QUICK: Profile = Profile {
        defaults: &[("ALLOWED_LATENESS", "10s")],
        ..EVERYTHING
    };
    let lateness = |profile, pairs: &[(&str, &str)]| {
        Config::load(profile, &Sources::from_pairs(pairs.iter().copied()))
            .unwrap()
            .analytics
            .allowed_lateness
    };
    assert_eq!(lateness(QUICK, &[]), std::time::Duration::from_secs(10));
    assert_eq!(
        lateness(QUICK, &[("ALLOWED_LATENESS", "30s")]),
        std::time::Duration::from_secs(30),
        "the environment wins"
    );
    assert_eq!(
        lateness(EVERYTHING, &[]),
        std::time::Duration::from_secs(60),
        "the table's default"
    );
}
