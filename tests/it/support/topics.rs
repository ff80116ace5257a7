//! Topics and groups seen from outside the code under test: producing and
//! reading messages, partition leaders, group members and committed offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::wait_until;

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
