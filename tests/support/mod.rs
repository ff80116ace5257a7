//! Shared helpers for the black-box integration tests: an embedded broker,
//! configuration, producing and reading topics, HTTP, and waiting for a
//! condition with a deadline (never a bare sleep).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use activity_tracker::broker::EmbeddedBroker;
use activity_tracker::config::{Config, Sources, TopicsConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
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
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An embedded broker with the three topics.
pub fn broker(partitions: i32) -> EmbeddedBroker {
    let topics = TopicsConfig {
        activities: ACTIVITIES.into(),
        partitions,
        replication_factor: 1,
        retention_ms: 604_800_000,
        alerts: ALERTS.into(),
        dlq: DLQ.into(),
    };
    EmbeddedBroker::start(1, &topics).expect("embedded broker starts")
}

/// A configuration pointing at `bootstrap`, with test-friendly timeouts and
/// any extra `VAR=value` settings.
pub fn config(command: activity_tracker::config::Command, bootstrap: &str, extra: &[(&str, &str)]) -> Config {
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
    Config::load(command, &Sources::from_pairs(pairs)).expect("test configuration is valid")
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
pub fn produce(bootstrap: &str, topic: &str, messages: &[Outgoing]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.max.bytes", "16000000")
        .create()
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
}

/// A message read back from a topic.
#[derive(Clone, Debug)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
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
        let m = result.expect("read");
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

/// The committed offsets of `group` on `topic`, by partition.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
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
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    c.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
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

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path)
}

/// A minimal HTTP/1.1 request: (status, body); status 0 when nothing answers
/// (yet), so callers can poll.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    let mut raw = Vec::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_end(&mut raw).is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body))
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
