//! Shared helpers for the black-box integration tests: an embedded broker,
//! configuration, producing and reading topics, HTTP, and waiting for a
//! condition with a deadline (never a bare sleep).
//!
//! The brokers, configuration, scratch directories and the deadline helpers
//! are here; the rest has a module each: `kafka` (real Kafka), `topics`,
//! `http`, `processes` (the binary and consumers under test) and `audit`
//! (checking a run).

#![allow(dead_code)]

mod audit;
mod http;
mod kafka;
mod processes;
mod topics;

// Every helper keeps its name `support::…`; a binary that uses only a few
// (tests/trace_propagation.rs) leaves the rest of these unused.
#[allow(unused_imports)]
pub use audit::{assert_every_offset_processed, assert_produced_exactly_once, audit, audit_lines};
#[allow(unused_imports)]
pub use http::{HttpResponse, http_get, http_request, http_send, metric_sum};
pub use kafka::{KafkaCluster, KafkaOptions};
#[allow(unused_imports)]
pub use processes::{ConsumerProcess, InProcess, PipelineUnderLoad, Process, binary, reference_run};
#[allow(unused_imports)]
pub use topics::{
    Outgoing, Received, commit_offset, committed, committed_with_metadata, counted_to, group_members, high_watermarks,
    leader_of, produce, read_all, unique_alerts,
};

use std::time::{Duration, Instant};

use activity_tracker::broker::EmbeddedBroker;
use activity_tracker::config::{Config, Sources, TopicsConfig};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub const ACTIVITIES: &str = "user-activities";
pub const ALERTS: &str = "fraud-alerts";
pub const DLQ: &str = "user-activities-dlq";

/// 2024-01-15T10:00:00Z, the start of every scripted stream.
pub const T0: i64 = 1_705_312_800_000;

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50)); // the poll interval
    }
}

/// Tests that break a broker on purpose (their recovery times are what they
/// check) and tests that load the machine heavily take this lock, so that
/// on a two-core machine none of them runs beside another: a broker
/// restart under a retry storm can outlast any sensible deadline. The rest
/// of the suite still runs in parallel with them.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static EXCLUSIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    EXCLUSIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Which broker [`broker`] starts: `TEST_BROKER=kafka` for real Apache
/// Kafka, anything else (or unset) for the embedded one.
pub fn real_kafka_selected() -> bool {
    std::env::var("TEST_BROKER").is_ok_and(|v| v.eq_ignore_ascii_case("kafka"))
}

/// A broker for one test, with the three topics: the embedded broker
/// unless `TEST_BROKER=kafka` selects real Apache Kafka. Suites whose
/// meaning is Kafka's own behaviour call [`kafka`] instead.
pub fn broker(partitions: i32) -> TestBroker {
    if real_kafka_selected() {
        kafka(partitions)
    } else {
        let topics = TopicsConfig {
            activities: ACTIVITIES.into(),
            partitions,
            replication_factor: 1,
            retention_ms: 604_800_000,
            alerts: ALERTS.into(),
            dlq: DLQ.into(),
        };
        TestBroker::Embedded(EmbeddedBroker::start(1, &topics).expect("embedded broker starts"))
    }
}

/// Real Apache Kafka (one node) with the three topics, whatever
/// `TEST_BROKER` says.
pub fn kafka(partitions: i32) -> TestBroker {
    kafka_with(&KafkaOptions::default(), partitions)
}

/// Real Apache Kafka started with `options`, with the three topics.
pub fn kafka_with(options: &KafkaOptions, partitions: i32) -> TestBroker {
    let broker = TestBroker::Kafka(KafkaCluster::start(options));
    for topic in [ACTIVITIES, ALERTS, DLQ] {
        broker.create_topic(topic, partitions);
    }
    broker
}

/// The broker a test runs on.
pub enum TestBroker {
    Embedded(EmbeddedBroker),
    Kafka(KafkaCluster),
}

impl TestBroker {
    pub fn bootstrap_servers(&self) -> &str {
        match self {
            TestBroker::Embedded(b) => b.bootstrap_servers(),
            TestBroker::Kafka(k) => k.bootstrap_servers(),
        }
    }

    /// The real cluster, for node control and its listeners.
    pub fn real(&mut self) -> &mut KafkaCluster {
        match self {
            TestBroker::Kafka(k) => k,
            TestBroker::Embedded(_) => panic!("this test needs real Kafka (support::kafka)"),
        }
    }

    /// The embedded broker's fault injection (real Kafka has none).
    pub fn cluster(&self) -> &rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        match self {
            TestBroker::Embedded(b) => b.cluster(),
            TestBroker::Kafka(_) => panic!("this test injects faults through the embedded broker"),
        }
    }

    /// Creates a topic (replication factor: every node, at most 3) and waits
    /// until every partition has a leader.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// [`TestBroker::create_topic`] with topic configs (real Kafka only).
    pub fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        match self {
            TestBroker::Embedded(b) if configs.is_empty() => b.create_topic(name, partitions).expect("topic created"),
            TestBroker::Embedded(_) => panic!("topic configs need real Kafka"),
            TestBroker::Kafka(k) => create_real_topic(k.bootstrap_servers(), name, partitions, configs),
        }
    }
}

fn create_real_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let nodes = bootstrap.split(',').count().min(3) as i32;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(nodes));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = runtime
        .block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("CreateTopics answered");
    for r in results {
        if let Err((topic, code)) = r {
            panic!("cannot create topic {topic}: {code}");
        }
    }
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("reader");
    wait_until(
        &format!("topic {name} to have leaders"),
        Duration::from_secs(30),
        || {
            reader
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .is_ok_and(|m| {
                    m.topics().first().is_some_and(|t| {
                        t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
        },
    );
}

/// A configuration pointing at `bootstrap`, with test-friendly timeouts and
/// any extra `VAR=value` settings. The profile's settings and port, not its
/// own defaults: the tests run the pipeline as the consumer commands do (a
/// minute of lateness), not as `demo` shows it.
pub fn config(profile: activity_tracker::config::Profile, bootstrap: &str, extra: &[(&str, &str)]) -> Config {
    let profile = activity_tracker::config::Profile {
        defaults: &[],
        ..profile
    };
    let mut pairs: Vec<(&str, &str)> = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("DRAIN_TIMEOUT", "5s"),
        ("SHUTDOWN_TIMEOUT", "15s"),
        ("KAFKA_COMMIT_INTERVAL_MS", "200"),
        ("LOG_LEVEL", "WARNING"),
    ];
    pairs.extend_from_slice(extra);
    Config::load(profile, &Sources::from_pairs(pairs)).expect("test configuration is valid")
}

/// Holds a fault for `duration` while checking `invariant` throughout.
pub fn hold(duration: Duration, mut invariant: impl FnMut()) {
    let until = Instant::now() + duration;
    wait_until("the fault window to pass", duration + Duration::from_secs(5), || {
        invariant();
        Instant::now() >= until
    });
}

/// A fresh directory under the system temp dir, removed when the guard is
/// dropped — unless the test is failing, when it is kept (and named on
/// stderr) for the post-mortem.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    /// `at-<name>-<pid>`, emptied if a previous run left it behind.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("at-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for the post-mortem", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
