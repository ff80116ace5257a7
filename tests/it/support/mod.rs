//! Shared helpers for the black-box integration tests: an embedded broker,
//! configuration, producing and reading topics, HTTP, and waiting for a
//! condition with a deadline (never a bare sleep).

#![allow(dead_code)]

mod kafka;

pub use kafka::{KafkaCluster, KafkaOptions};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use activity_tracker::broker::EmbeddedBroker;
use activity_tracker::config::{Config, Sources, TopicsConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

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
/// any extra `VAR=value` settings.
pub fn config(profile: activity_tracker::config::Profile, bootstrap: &str, extra: &[(&str, &str)]) -> Config {
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

/// A message to produce: key, payload, timestamp (ms).
pub struct Outgoing {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Outgoing {
    pub fn keyed(key: &str, payload: impl Into<Vec<u8>>, timestamp_ms: i64) -> Outgoing {
        Outgoing {
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload.into()),
            timestamp_ms,
            headers: Vec::new(),
        }
    }
}

/// Produces messages in order (idempotent, acks=all) and waits for all acks.
/// Counts delivery failures, so a refused record fails the test instead of
/// vanishing (a broker refuses, for example, timestamps more than
/// `message.timestamp.after.max.ms` ahead).
#[derive(Default)]
struct DeliveryCheck {
    failed: std::sync::Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for DeliveryCheck {}

impl rdkafka::producer::ProducerContext for DeliveryCheck {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.push(e.to_string());
        }
    }
}

pub fn produce(bootstrap: &str, topic: &str, messages: &[Outgoing]) {
    let producer: ThreadedProducer<DeliveryCheck> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.max.bytes", "16000000")
        .create_with_context(DeliveryCheck::default())
        .expect("producer");
    for m in messages {
        let mut headers = rdkafka::message::OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(rdkafka::message::Header { key: k, value: Some(v) });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).timestamp(m.timestamp_ms).headers(headers);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &m.payload {
            record = record.payload(p.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all messages acknowledged");
    let failed = producer.context().failed.lock().map(|f| f.clone()).unwrap_or_default();
    assert!(
        failed.is_empty(),
        "{} of {} records refused: {:?}",
        failed.len(),
        messages.len(),
        &failed[..failed.len().min(3)]
    );
}

/// A message read back from a topic.
#[derive(Clone, Debug)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
    /// The Kafka message timestamp.
    pub timestamp_ms: Option<i64>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is JSON")
    }
    pub fn header(&self, key: &str) -> String {
        String::from_utf8_lossy(self.headers.get(key).map(Vec::as_slice).unwrap_or_default()).into_owned()
    }
}

/// Reads every message currently in `topic` (up to the high watermarks).
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            remaining.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Offset(low)).expect("tpl");
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !remaining.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        // A node that is down answers nothing; librdkafka reports it and
        // reads from the partitions' new leaders.
        let m = match result {
            Ok(m) => m,
            Err(e) => {
                eprintln!("reading {topic}: {e}; reading on");
                continue;
            }
        };
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                headers.insert(header.key.to_string(), header.value.unwrap_or_default().to_vec());
            }
        }
        out.push(Received {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
        });
        if remaining
            .get(&m.partition())
            .is_some_and(|high| m.offset() + 1 >= *high)
        {
            remaining.remove(&m.partition());
        }
    }
    out
}

/// (alerts published, their distinct ids sorted) in `topic`.
pub fn unique_alerts(bootstrap: &str, topic: &str) -> (usize, Vec<String>) {
    let all: Vec<String> = read_all(bootstrap, topic)
        .iter()
        .map(|m| m.json()["alert_id"].as_str().unwrap().to_string())
        .collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    (all.len(), unique)
}

/// Holds a fault for `duration` while checking `invariant` throughout.
pub fn hold(duration: Duration, mut invariant: impl FnMut()) {
    let until = Instant::now() + duration;
    wait_until("the fault window to pass", duration + Duration::from_secs(5), || {
        invariant();
        Instant::now() >= until
    });
}

/// The leader node id of `topic`'s `partition` (-1 while it has none).
pub fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("reader");
    reader
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()
        .and_then(|m| {
            m.topics()
                .first()?
                .partitions()
                .iter()
                .find(|p| p.id() == partition)
                .map(|p| p.leader())
        })
        .unwrap_or(-1)
}

/// Members of consumer group `group` as its coordinator sees them (classic
/// protocol groups).
pub fn group_members(bootstrap: &str, group: &str) -> usize {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("client");
    let mut members = None;
    wait_until("the coordinator to describe the group", Duration::from_secs(30), || {
        members = client
            .fetch_group_list(Some(group), Duration::from_secs(5))
            .ok()
            .map(|list| list.groups().iter().map(|g| g.members().len()).sum());
        members.is_some()
    });
    members.unwrap_or(0)
}

/// The committed offsets of `group` on `topic`, by partition.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    committed_with_metadata(bootstrap, group, topic, partitions)
        .into_iter()
        .map(|(p, (o, _))| (p, o))
        .collect()
}

/// Where a new owner counts from, per partition: the committed offset, or
/// the `done` mark of its commit metadata (what the committing owner had
/// processed and counted) when that is further.
pub fn counted_to(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    committed_with_metadata(bootstrap, group, topic, partitions)
        .into_iter()
        .map(|(p, (o, meta))| {
            let done = activity_tracker::runtime::tracker::CommitMetadata::decode(&meta).and_then(|m| m.done);
            (p, done.map_or(o, |d| d.max(o)))
        })
        .collect()
}

/// Committed offsets with their metadata.
pub fn committed_with_metadata(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, (i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    // A real coordinator may still be loading the offsets topic (or have
    // just moved): those answers are retried, as a client would.
    let mut answer = None;
    wait_until("the group coordinator to answer", Duration::from_secs(30), || {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(c) => answer = Some(c),
            Err(e) => eprintln!("committed offsets of {group}: {e}; retrying"),
        }
        answer.is_some()
    });
    answer
        .expect("committed offsets")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), (o, e.metadata().to_string()))),
            _ => None,
        })
        .collect()
}

/// Commits `offset` (no metadata) for `group` on one partition, as another
/// tool or an operator resetting offsets would.
pub fn commit_offset(bootstrap: &str, group: &str, topic: &str, partition: i32, offset: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("partition");
    let mut done = false;
    wait_until("the offset commit", Duration::from_secs(30), || {
        match consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => done = true,
            Err(e) => eprintln!("committing {offset} for {group}: {e}; retrying"),
        }
        done
    });
}

/// High watermarks of `topic`.
pub fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// The sum of the samples of metric `name` at `addr`'s `/metrics` whose
/// labels include every `key="value"` of `labels` (0 when there are none).
pub fn metric_sum(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, text) = http_get(addr, "/metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path)
}

/// A minimal HTTP/1.1 request: (status, body); status 0 when nothing answers
/// (yet), so callers can poll.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let r = http_send(addr, method, path, &[], b"");
    (r.status, r.body)
}

/// An HTTP answer: status (0 if there was none), raw header block, body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    /// A header's value (case-insensitive name), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 request with extra headers and a body, on a new connection.
pub fn http_send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let failed = HttpResponse {
        status: 0,
        headers: String::new(),
        body: String::new(),
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return failed;
    };
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut raw = Vec::new();
    // A server may answer (413) and close before reading a large body.
    let sent = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body));
    if stream.read_to_end(&mut raw).is_err() && sent.is_err() {
        return failed;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    HttpResponse {
        status,
        headers: head.to_string(),
        body: dechunk(body),
    }
}

/// Undoes `Transfer-Encoding: chunked` if present.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size_line, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            return body.to_string();
        };
        if size == 0 {
            return out;
        }
        if after.len() < size {
            return body.to_string();
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_activity-tracker")
}

/// A child process killed when the guard is dropped (a failing test leaves
/// nothing running).
pub struct Process {
    pub child: Child,
    pub name: String,
}

impl Process {
    pub fn spawn(name: &str, mut command: std::process::Command) -> Process {
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            child,
            name: name.into(),
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Waits for exit (polling with a deadline) and returns the exit code.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let mut code = None;
        wait_until(&format!("{} to exit", self.name), timeout, || {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    code = Some(status.code().unwrap_or(-1));
                    true
                }
                _ => false,
            }
        });
        code.unwrap_or(-1)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// (partition, offset) → how many times it was processed live, from the
/// `AUDIT_LOG` files in `dir` whose names start with `consumer` ("" = all);
/// empty while no consumer has created `dir` yet.
pub fn audit(dir: &std::path::Path, consumer: &str) -> BTreeMap<(i32, i64), u32> {
    let mut seen = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return seen,
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with(consumer) {
            continue;
        }
        for (p, o, _) in audit_lines(&path) {
            *seen.entry((p, o)).or_default() += 1;
        }
    }
    seen
}

/// The complete `partition offset unix_ms` lines of one audit file. A line
/// still being written (no newline yet) is not a record: the process writing
/// it may be running, or may have been killed mid-write.
pub fn audit_lines(path: &std::path::Path) -> Vec<(i32, i64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            let mut parts = line.split(' ').map(|part| {
                part.parse::<u64>()
                    .unwrap_or_else(|e| panic!("audit line {line:?} of {}: {e}", path.display()))
            });
            let mut next = || {
                parts
                    .next()
                    .unwrap_or_else(|| panic!("short audit line {line:?} of {}", path.display()))
            };
            (next() as i32, next() as i64, next())
        })
        .collect()
}

/// Asserts every offset of `topic` was processed at least once; returns how
/// many were processed more than once (extra copies).
pub fn assert_every_offset_processed(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    seen: &BTreeMap<(i32, i64), u32>,
) -> u32 {
    let mut duplicates = 0;
    for (p, high) in high_watermarks(bootstrap, topic, partitions) {
        for o in 0..high {
            let n = seen.get(&(p, o)).copied().unwrap_or(0);
            assert!(n >= 1, "partition {p} offset {o} was never processed");
            duplicates += n - 1;
        }
    }
    duplicates
}

/// Both consumers running in this process, as `demo` runs them.
pub struct InProcess {
    pub shutdown: activity_tracker::shutdown::Shutdown,
    pub analytics: activity_tracker::consumers::RunningConsumer,
    pub fraud: activity_tracker::consumers::RunningConsumer,
    pub telemetry: std::sync::Arc<activity_tracker::telemetry::Telemetry>,
}

impl InProcess {
    pub fn start(config: &Config) -> InProcess {
        use activity_tracker::consumers::{self, Kind};
        let shutdown = activity_tracker::shutdown::Shutdown::new();
        let telemetry = activity_tracker::telemetry::Telemetry::new();
        let analytics = consumers::spawn(
            consumers::analytics_app(config),
            config,
            Kind::Analytics.group(config),
            &telemetry,
            shutdown.clone(),
        )
        .unwrap();
        let fraud = consumers::spawn(
            consumers::fraud_app(config).quiet(),
            config,
            Kind::Fraud.group(config),
            &telemetry,
            shutdown.clone(),
        )
        .unwrap();
        InProcess {
            shutdown,
            analytics,
            fraud,
            telemetry,
        }
    }

    /// Messages seen (processed or rejected) by (analytics, fraud).
    pub fn seen(&self) -> (u64, u64) {
        let seen = |c: &activity_tracker::consumers::RunningConsumer| {
            c.shared
                .status
                .read()
                .map(|s| s.events_processed + s.events_rejected)
                .unwrap_or(0)
        };
        (seen(&self.analytics), seen(&self.fraud))
    }

    /// Fails if a consumer thread has stopped on its own.
    pub fn assert_running(&self) {
        assert!(
            !self.analytics.thread.is_finished() && !self.fraud.thread.is_finished(),
            "a consumer stopped"
        );
    }

    /// Waits until both consumers have seen `n` messages.
    pub fn wait_seen(&self, n: u64, timeout: Duration) {
        wait_until(&format!("both consumers to see {n} messages"), timeout, || {
            self.assert_running();
            let (a, f) = self.seen();
            a >= n && f >= n
        });
    }

    /// Stops both; returns their outcomes and the final /metrics text.
    pub fn stop(
        self,
    ) -> (
        activity_tracker::runtime::RunOutcome,
        activity_tracker::runtime::RunOutcome,
        String,
    ) {
        let metrics = self.telemetry.render();
        self.shutdown.trigger();
        let a = self.analytics.thread.join().expect("no panic").expect("analytics ran");
        let f = self.fraud.thread.join().expect("no panic").expect("fraud ran");
        (a, f, metrics)
    }
}

/// A consumer (`fraud` or `analytics`) running as its own process, as a pod
/// runs it: its own HTTP port, an audit log and a report file in `dir`.
pub struct ConsumerProcess {
    pub process: Process,
    pub http: SocketAddr,
    pub report: std::path::PathBuf,
}

impl ConsumerProcess {
    pub fn start(
        kind: &str,
        bootstrap: &str,
        dir: &std::path::Path,
        n: usize,
        env: &[(&str, &str)],
    ) -> ConsumerProcess {
        Self::spawn(kind, bootstrap, dir, n, env, None)
    }

    /// [`ConsumerProcess::start`], with stderr (the log) written to `log`.
    pub fn start_logged(
        kind: &str,
        bootstrap: &str,
        dir: &std::path::Path,
        n: usize,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> ConsumerProcess {
        Self::spawn(kind, bootstrap, dir, n, env, Some(log))
    }

    fn spawn(
        kind: &str,
        bootstrap: &str,
        dir: &std::path::Path,
        n: usize,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> ConsumerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = SocketAddr::from(([127, 0, 0, 1], port));
        let report = dir.join(format!("report-{kind}-{n}.json"));
        let mut c = std::process::Command::new(binary());
        c.arg(kind)
            .arg("--report-file")
            .arg(&report)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("HTTP_ADDR", http.to_string())
            .env("AUDIT_LOG", dir.join("audit"))
            .env(
                "LOG_LEVEL",
                std::env::var("FLEET_TEST_LOG").unwrap_or_else(|_| "WARNING".into()),
            )
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null());
        if let Some(log) = log {
            c.stderr(std::fs::File::create(log).expect("the log file can be created"));
        }
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        ConsumerProcess {
            process: Process::spawn(&format!("{kind} {n}"), c),
            http,
            report,
        }
    }

    /// SIGTERM, and a clean exit within 30 s.
    pub fn stop(&mut self) {
        self.process.signal("TERM");
        assert_eq!(
            self.process.wait(Duration::from_secs(30)),
            0,
            "{} exits cleanly",
            self.process.name
        );
    }

    /// Fails if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.process.child.try_wait() {
            panic!("{} exited: {status}", self.process.name);
        }
    }

    /// `GET /report`, when it answers.
    pub fn report(&self) -> Option<serde_json::Value> {
        let (status, body) = http_get(self.http, "/report");
        (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Events processed, from `/report` (0 while it does not answer).
    pub fn processed(&self) -> u64 {
        self.report()
            .and_then(|v| v["consumer"]["events_processed"].as_u64())
            .unwrap_or(0)
    }
}

/// Both consumers in this process (each recording an audit trail) and a
/// producer sending `events` simulated events at 200 events/s, for tests
/// that break the broker while work flows.
pub struct PipelineUnderLoad {
    pub running: InProcess,
    pub producer: std::thread::JoinHandle<anyhow::Result<activity_tracker::producer::ProduceStats>>,
    /// Events the producer has handed to Kafka so far.
    pub sent: prometheus::IntCounter,
    pub audit: std::path::PathBuf,
    /// Holds the directory with the audit trail: bind it for as long as
    /// `audit` is read (a dropped guard removes the directory).
    pub scratch: Scratch,
}

impl PipelineUnderLoad {
    /// `session_timeout_ms` is longer than the failure the test causes, as
    /// in production (45 s by default): the group survives it.
    pub fn start(bootstrap: &str, name: &str, events: u64, seed: u64, session_timeout_ms: u64) -> PipelineUnderLoad {
        use activity_tracker::producer::{self, ProduceOptions};
        let dir = Scratch::new(name);
        let audit = dir.join("audit");
        let (events, seed, session) = (events.to_string(), seed.to_string(), session_timeout_ms.to_string());
        let config = config(
            <activity_tracker::commands::demo::Demo as activity_tracker::commands::Run>::PROFILE,
            bootstrap,
            &[
                ("AUDIT_LOG", audit.to_str().unwrap()),
                ("EVENTS_PER_SECOND", "200"),
                ("MAX_EVENTS", &events),
                ("FRAUD_RATE", "0.15"),
                ("SIM_SEED", &seed),
                ("KAFKA_SESSION_TIMEOUT_MS", &session),
            ],
        );
        let running = InProcess::start(&config);
        let produce = ProduceOptions {
            kafka: config.kafka.clone(),
            topic: config.topics.activities.clone(),
            producer: config.producer.clone(),
            truth_file: None,
            shutdown_timeout: Duration::from_secs(120),
            progress: false,
            trace: false,
        };
        let metrics = activity_tracker::telemetry::Telemetry::new().producer(&produce.topic);
        let sent = metrics.sent.clone();
        let producer =
            std::thread::spawn(move || producer::run(&produce, metrics, &activity_tracker::shutdown::Shutdown::new()));
        PipelineUnderLoad {
            running,
            producer,
            sent,
            audit,
            scratch: dir,
        }
    }
}

/// Waits for the producer of a run under failure and checks that it
/// delivered every one of `events`, each exactly once in the activities
/// topic (the idempotent producer wrote no duplicate). Returns its stats
/// and the topic's messages.
pub fn assert_produced_exactly_once(
    producer: std::thread::JoinHandle<anyhow::Result<activity_tracker::producer::ProduceStats>>,
    bootstrap: &str,
    events: u64,
) -> (activity_tracker::producer::ProduceStats, Vec<Received>) {
    let stats = producer.join().unwrap().expect("the producer finishes");
    assert_eq!(
        (stats.sent, stats.delivered, stats.failed),
        (events, events, 0),
        "every event acknowledged, none failed"
    );
    let messages = read_all(bootstrap, ACTIVITIES);
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| m.json()["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (messages.len() as u64, ids.len() as u64),
        (events, events),
        "every event in the topic once (the idempotent producer wrote no duplicate)"
    );
    (stats, messages)
}

/// Processes the activities topic once more, fault-free, with fresh groups,
/// publishing the alerts to `reference-alerts`: what a run that met no
/// fault produces, to compare a faulty run's alerts with.
pub fn reference_run(broker: &TestBroker, partitions: i32, events: u64, timeout: Duration) {
    broker.create_topic("reference-alerts", partitions);
    let reference = InProcess::start(&config(
        <activity_tracker::commands::demo::Demo as activity_tracker::commands::Run>::PROFILE,
        broker.bootstrap_servers(),
        &[
            ("KAFKA_ALERTS_TOPIC", "reference-alerts"),
            ("KAFKA_ANALYTICS_GROUP", "reference-analytics"),
            ("KAFKA_FRAUD_GROUP", "reference-fraud"),
        ],
    ));
    reference.wait_seen(events, timeout);
    let _ = reference.stop();
}
