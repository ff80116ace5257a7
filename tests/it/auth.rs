//! Connecting to a real Apache Kafka cluster that enforces authentication
//! and encryption, as managed clusters do:
//! - SASL/SCRAM: valid credentials (SCRAM-SHA-512 and -256) produce and
//!   consume, a wrong password is refused at once with a clear error, no
//!   credentials get nothing, and no password reaches a log or a config dump;
//! - TLS with the brokers' certificate verified against a CA, and mutual TLS
//!   with a client certificate: events flow; without the CA, or without the
//!   client certificate where one is required, the connection is refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{ConsumerProcess, KafkaCluster, KafkaOptions, Process, Scratch, binary, wait_until};

const PASSWORD: &str = "pa55-w0rd-for-alice";
const BOB_PASSWORD: &str = "b0b-pa55-w0rd";
const EVENTS: u64 = 300;

/// What a run of the binary printed, and how it ended.
struct Run {
    code: i32,
    output: String,
    took: Duration,
}

/// Runs the binary with `env`, failing the test if it has not exited
/// within `timeout`.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Run {
    let out_path = dir.join("run.out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let started = Instant::now();
    let mut c = Command::new(binary());
    c.args(args)
        .envs(env.iter().copied())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .stdout(out.try_clone().expect("output file"))
        .stderr(out);
    let mut process = Process::spawn(&format!("{args:?}"), c);
    let code = process.wait(timeout);
    Run {
        code,
        output: std::fs::read_to_string(&out_path).unwrap_or_default(),
        took: started.elapsed(),
    }
}

fn alice(bootstrap: &str, password_file: &Path) -> Vec<(String, String)> {
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.into()),
        ("KAFKA_SECURITY_PROTOCOL".into(), "sasl_plaintext".into()),
        ("KAFKA_SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
        ("KAFKA_SASL_USERNAME".into(), "alice".into()),
        ("KAFKA_SASL_PASSWORD_FILE".into(), password_file.display().to_string()),
    ]
}

/// Runs the binary with credentials the broker refuses: it must exit 1
/// and say why.
fn refused_run(dir: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let r = run(dir, args, &refs(env), Duration::from_secs(60));
    assert_eq!(r.code, 1, "{args:?} with a wrong password: {}", r.output);
    assert!(
        r.output.contains("error: Kafka refused authentication"),
        "{args:?}: {}",
        r.output
    );
    r
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn sasl_scram_credentials_are_enforced_end_to_end() {
    let dir = Scratch::new("auth");
    // The users exist before the first start (Kafka's StorageTool
    // --add-scram; on a running cluster kafka-configs or a Strimzi
    // KafkaUser does the same).
    let broker = KafkaCluster::start(&KafkaOptions {
        nodes: 1,
        scram: vec![("alice".into(), PASSWORD.into()), ("bob".into(), BOB_PASSWORD.into())],
        tls: false,
    });
    let bootstrap = broker.var("KAFKA_SASL_BOOTSTRAP_SERVERS").to_string();

    let password_file = dir.join("alice-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let wrong_file = dir.join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password").unwrap();
    let alice_env = alice(&bootstrap, &password_file);

    // No credentials: the broker answers nothing.
    let open = run(
        &dir,
        &["topics", "create"],
        &[("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)],
        Duration::from_secs(60),
    );
    assert_ne!(
        open.code, 0,
        "topics create without credentials succeeded: {}",
        open.output
    );

    // Valid SCRAM-SHA-512 credentials (password from a file, as a mounted
    // Kubernetes Secret): topics are created.
    let topics = run(&dir, &["topics", "create"], &refs(&alice_env), Duration::from_secs(60));
    assert_eq!(topics.code, 0, "topics create as alice: {}", topics.output);
    assert!(
        topics.output.contains("created user-activities (6 partitions)"),
        "{}",
        topics.output
    );
    // Idempotent: a second run reports the topics and changes nothing;
    // --recreate deletes and recreates them.
    let again = run(&dir, &["topics", "create"], &refs(&alice_env), Duration::from_secs(60));
    assert_eq!(again.code, 0, "topics create again: {}", again.output);
    assert_eq!(again.output.matches("already exists").count(), 3, "{}", again.output);
    // An existing topic with another partition count than configured is
    // reported loudly (and left alone).
    let mut more = refs(&alice_env);
    more.push(("KAFKA_ACTIVITIES_PARTITIONS", "12"));
    let mismatch = run(&dir, &["topics", "create"], &more, Duration::from_secs(60));
    assert_eq!(
        mismatch.code, 0,
        "topics create with 12 partitions: {}",
        mismatch.output
    );
    assert!(
        mismatch
            .output
            .contains("user-activities already exists with 6 partitions, not the configured 12"),
        "{}",
        mismatch.output
    );
    // -1 is the broker's default.replication.factor (what the chart uses on
    // a cluster it does not deploy).
    let mut broker_default = refs(&alice_env);
    broker_default.push(("KAFKA_REPLICATION_FACTOR", "-1"));
    let recreated = run(
        &dir,
        &["topics", "create", "--recreate"],
        &broker_default,
        Duration::from_secs(60),
    );
    assert_eq!(recreated.code, 0, "topics create --recreate: {}", recreated.output);
    assert_eq!(recreated.output.matches("recreated").count(), 3, "{}", recreated.output);

    // A consumer as bob, SCRAM-SHA-256, password from the environment.
    let bob_env = [
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_SASL_MECHANISM", "scram-sha-256"),
        ("KAFKA_SASL_USERNAME", "bob"),
        ("KAFKA_SASL_PASSWORD", BOB_PASSWORD),
        ("KAFKA_ANALYTICS_GROUP", "auth-test-analytics"),
        ("LOG_LEVEL", "INFO"),
    ];
    let log = dir.join("analytics.log");
    let mut analytics = ConsumerProcess::start_logged("analytics", &bootstrap, &dir, 0, &bob_env, &log);

    let mut produce_env = refs(&alice_env);
    let max_events = EVENTS.to_string();
    produce_env.extend([("MAX_EVENTS", max_events.as_str()), ("EVENTS_PER_SECOND", "1000")]);
    let started = Instant::now();
    let produced = run(&dir, &["produce"], &produce_env, Duration::from_secs(90));
    assert_eq!(produced.code, 0, "produce as alice: {}", produced.output);
    assert!(
        produced.output.contains(&format!("Delivered         : {EVENTS}")),
        "not every event delivered: {}",
        produced.output
    );

    wait_until(
        "bob's analytics to process every event",
        Duration::from_secs(120),
        || {
            analytics.assert_running();
            analytics.processed() >= EVENTS
        },
    );
    let consumed_after = started.elapsed();
    assert_eq!(analytics.processed(), EVENTS, "events processed exactly once");

    // A wrong password: refused at once, exit 1, and the error says why —
    // for a producer and for a consumer alike.
    let mut wrong_env = alice(&bootstrap, &wrong_file);
    wrong_env.push(("MAX_EVENTS".into(), "10".into()));
    let refused = refused_run(&dir, &["produce"], &wrong_env);
    assert!(
        refused.output.contains("KAFKA_SASL_PASSWORD"),
        "the error names what to check: {}",
        refused.output
    );
    let refused_admin = refused_run(&dir, &["topics", "create"], &wrong_env);
    let refused_consumer = refused_run(&dir, &["fraud"], &wrong_env);

    // Secrets never printed: not in the config dump, not in any log.
    let dump = run(&dir, &["config"], &refs(&alice_env), Duration::from_secs(10)).output;
    assert!(dump.contains("KAFKA_SASL_USERNAME=alice"), "{dump}");
    assert!(!dump.contains(PASSWORD), "password in the config dump");
    analytics.stop();
    let consumer_log = std::fs::read_to_string(&log).unwrap_or_default();
    for (what, output) in [
        ("produce", &produced.output),
        ("refused produce", &refused.output),
        ("refused fraud", &refused_consumer.output),
        ("refused topics create", &refused_admin.output),
        ("analytics", &consumer_log),
    ] {
        assert!(
            !output.contains(PASSWORD) && !output.contains(BOB_PASSWORD),
            "a password in the {what} output"
        );
    }
    drop(broker);

    println!(
        "auth: Apache Kafka with SASL/SCRAM enforced — {EVENTS} events produced as alice (SCRAM-SHA-512, password file), \
         {EVENTS} processed by bob's analytics (SCRAM-SHA-256, password env) {:.1} s after the producer started, 0 lost; \
         wrong password refused with exit 1 in {:.2} s (produce), {:.2} s (fraud) and {:.2} s (topics create); \
         no credentials refused; no password in any log or config dump; topics create idempotent, --recreate recreated 3",
        consumed_after.as_secs_f64(),
        refused.took.as_secs_f64(),
        refused_consumer.took.as_secs_f64(),
        refused_admin.took.as_secs_f64()
    );
}

#[test]
fn tls_verifies_the_brokers_and_mutual_tls_presents_a_client_certificate() {
    let dir = Scratch::new("tls");
    let broker = KafkaCluster::start(&KafkaOptions {
        nodes: 1,
        scram: Vec::new(),
        tls: true,
    });
    let ssl = broker.var("KAFKA_SSL_BOOTSTRAP_SERVERS");
    let mtls = broker.var("KAFKA_MTLS_BOOTSTRAP_SERVERS");
    let ca = broker.var("KAFKA_SSL_CA_LOCATION");
    let verified = [
        ("KAFKA_BOOTSTRAP_SERVERS", ssl),
        ("KAFKA_SECURITY_PROTOCOL", "ssl"),
        ("KAFKA_SSL_CA_LOCATION", ca),
    ];

    // TLS, the brokers' certificate verified against our CA.
    let topics = run(&dir, &["topics", "create"], &verified, Duration::from_secs(60));
    assert_eq!(topics.code, 0, "topics create over TLS: {}", topics.output);

    // Without the CA the brokers' certificate cannot be verified (it is
    // signed by no public authority): refused, never used unverified.
    let unverified = run(
        &dir,
        &["topics", "create"],
        &[("KAFKA_BOOTSTRAP_SERVERS", ssl), ("KAFKA_SECURITY_PROTOCOL", "ssl")],
        Duration::from_secs(90),
    );
    assert_ne!(
        unverified.code, 0,
        "an unverified broker was used: {}",
        unverified.output
    );
    assert!(
        unverified.output.contains("KAFKA_SSL_CA_LOCATION"),
        "the error names what to check: {}",
        unverified.output
    );

    // Mutual TLS: the consumer presents a client certificate signed by the
    // CA; the producer writes over server-authenticated TLS.
    let log = dir.join("analytics.log");
    let mtls_env = [
        ("KAFKA_SECURITY_PROTOCOL", "ssl"),
        ("KAFKA_SSL_CA_LOCATION", ca),
        (
            "KAFKA_SSL_CERTIFICATE_LOCATION",
            broker.var("KAFKA_SSL_CERTIFICATE_LOCATION"),
        ),
        ("KAFKA_SSL_KEY_LOCATION", broker.var("KAFKA_SSL_KEY_LOCATION")),
        ("KAFKA_ANALYTICS_GROUP", "tls-analytics"),
    ];
    let mut analytics = ConsumerProcess::start_logged("analytics", mtls, &dir, 0, &mtls_env, &log);
    let max_events = EVENTS.to_string();
    let mut produce_env = verified.to_vec();
    produce_env.extend([("MAX_EVENTS", max_events.as_str()), ("EVENTS_PER_SECOND", "1000")]);
    let produced = run(&dir, &["produce"], &produce_env, Duration::from_secs(90));
    assert_eq!(produced.code, 0, "produce over TLS: {}", produced.output);
    wait_until(
        "the mutual-TLS analytics to process every event",
        Duration::from_secs(120),
        || {
            analytics.assert_running();
            analytics.processed() >= EVENTS
        },
    );
    assert_eq!(analytics.processed(), EVENTS, "events processed exactly once");
    analytics.stop();

    // Where a client certificate is required, none is refused.
    let anonymous = run(
        &dir,
        &["topics", "create"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", mtls),
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", ca),
        ],
        Duration::from_secs(90),
    );
    assert_ne!(
        anonymous.code, 0,
        "mutual TLS without a certificate: {}",
        anonymous.output
    );
    assert!(
        anonymous.output.contains("KAFKA_SSL_CERTIFICATE_LOCATION"),
        "the error names what to check: {}",
        anonymous.output
    );
    println!(
        "tls: Apache Kafka over TLS — topics created with the brokers verified against the CA; {EVENTS} events produced over TLS \
         and processed by an analytics consumer over mutual TLS, 0 lost; without the CA refused with exit {} in {:.1} s; \
         without a client certificate refused with exit {} in {:.1} s",
        unverified.code,
        unverified.took.as_secs_f64(),
        anonymous.code,
        anonymous.took.as_secs_f64()
    );
}
