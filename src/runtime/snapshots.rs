//! Partition snapshots in Kafka, so a rebuild does not grow with traffic
//! (the design, its costs and what it was measured against:
//! `docs/snapshots.md`).
//!
//! Each consumer group keeps a compacted **state topic** with as many
//! partitions as the activities topic; partition *p*'s snapshots live in its
//! partition *p*. A snapshot is the processor's partition state and the
//! offset tracker's checkpoints, encoded by the core
//! (`activity_tracker_core::snapshot`), taken when every event before an
//! offset *s* had been processed. It is written into one of two **slots**,
//! `a` and `b`, in turn: chunks keyed `a/0`, `a/1`, … then the slot's
//! manifest keyed `a/manifest`, last. The snapshot in the other slot stays
//! intact while one is written, so a crash mid-write loses the newest
//! snapshot, never both; compaction keeps one value per key, so the topic
//! holds two snapshots per partition.
//!
//! A new owner with committed offset *c* that would replay from *f* restores
//! the newest snapshot with *f* ≤ *s* ≤ *c*, the same format and the same
//! settings fingerprint, whole and with its checksum, and replays *[s, c)*
//! in warm-up mode. Anything else — no snapshot, a partial, corrupt or
//! foreign one, one older than the window or ahead of the commit — falls
//! back to replaying the window: a missing snapshot costs time, never
//! correctness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::tracker::SavedTracker;
use crate::config::KafkaConfig;
use crate::telemetry::ConsumerMetrics;

/// Largest chunk of a snapshot: Kafka's default message limit is 1 MB.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// The two slots written in turn.
const SLOTS: [&str; 2] = ["a", "b"];
/// The manifest's format; the state's own is the core's `FORMAT_VERSION`.
const MANIFEST_VERSION: u32 = 1;

/// Where and how often the runtime writes snapshots.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// The group's state topic.
    pub topic: String,
    /// Between two periodic snapshots of a partition.
    pub interval: Duration,
    /// Of the state topic, when the runtime creates it.
    pub replication_factor: i32,
}

impl SnapshotOptions {
    /// The state topic of `group` on `activities`.
    pub fn topic_for(activities: &str, group: &str) -> String {
        format!("{activities}-state-{group}")
    }
}

/// The record written last: which snapshot a slot holds and how to check it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The core's state format and the settings that give a state its
    /// meaning, hashed (see [`fingerprint`]).
    pub fingerprint: String,
    /// Random; every chunk of the snapshot starts with it.
    pub id: u64,
    pub partition: i32,
    /// Every event before this offset is in the state; none after.
    pub offset: i64,
    pub chunks: u32,
    pub bytes: u64,
    pub crc32: u32,
    pub written_at_ms: i64,
}

/// What a snapshot's payload holds.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope<S> {
    pub tracker: SavedTracker,
    pub state: S,
}

/// The fingerprint a snapshot must carry to be restored here: the core's
/// (state format and processor settings), the decoding limits (they decide
/// which events reach the state) and the replay window.
pub(super) fn fingerprint(processor: u64, limits: &crate::event::DecodeLimits, window_ms: i64) -> String {
    let text = format!("{processor:016x}|{limits:?}|{window_ms}");
    format!("{:016x}", activity_tracker_core::snapshot::fingerprint(&text))
}

/// A partition's writing position in the state topic.
#[derive(Clone, Debug, Default)]
pub(super) struct Cursor {
    /// The slot the next snapshot goes to.
    next_slot: usize,
    /// Chunks each slot held last (those beyond a new snapshot's count get
    /// tombstones), as far as this owner knows.
    chunks: [u32; 2],
    /// The offset of the last snapshot written or restored: an idle
    /// partition is not written again.
    pub last_offset: Option<i64>,
}

/// A snapshot read back, checked and ready to decode.
pub(super) struct Found {
    pub manifest: Manifest,
    pub payload: Vec<u8>,
}

/// What reading a partition's snapshots found.
pub(super) struct Lookup {
    /// Usable snapshots, newest first (decode the first that decodes).
    pub usable: Vec<Found>,
    /// Why the others were not usable, for the log.
    pub refused: Vec<String>,
    /// Whether the state topic held any snapshot for the partition.
    pub any: bool,
    /// Where this owner's next snapshot goes.
    pub cursor: Cursor,
}

/// Counts the manifests the brokers did not take: a snapshot whose manifest
/// is lost is not a snapshot (the slot's previous manifest still stands).
pub(super) struct Deliveries {
    failed: prometheus::IntCounter,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result
            && message.key().is_some_and(|k| k.ends_with(b"/manifest"))
        {
            self.failed.inc();
            tracing::warn!(error = %error, partition = message.partition(), "a partition snapshot was not written");
        }
    }
}

/// The state topic's writer and reader of one consumer.
pub(super) struct Snapshots {
    pub options: SnapshotOptions,
    pub fingerprint: String,
    producer: ThreadedProducer<Deliveries>,
    reader: BaseConsumer<crate::kafka::BaseContext>,
    metrics: ConsumerMetrics,
}

impl Snapshots {
    /// Makes sure the state topic exists with a partition for each of
    /// `activities`' and connects to it; `None` (logged) if it cannot be,
    /// and the runtime then rebuilds by replay alone.
    pub fn connect(
        kafka: &KafkaConfig,
        options: SnapshotOptions,
        activities: &str,
        client_id: &str,
        fingerprint: String,
        metrics: &ConsumerMetrics,
    ) -> Option<Snapshots> {
        if let Err(e) = ensure_topic(kafka, &options, activities) {
            tracing::warn!(
                topic = %options.topic,
                "partition snapshots are off: {e}; rebuilds replay the whole window"
            );
            return None;
        }
        let mut producer = crate::kafka::producer(kafka, &format!("{client_id}-snapshots"));
        // State is binary and barely compresses (hashes and times); chunks
        // are big enough to need no lingering.
        producer.set("compression.type", "none").set("linger.ms", "0");
        let producer = producer.create_with_context(Deliveries {
            failed: metrics.snapshots_failed.clone(),
        });
        let mut reader = crate::kafka::reader(kafka, &format!("{client_id}-snapshots"));
        // A restore reads to the end of a partition while the partition's
        // new owner waits: a fetch at the end must answer at once, not after
        // the default 500 ms wait for more data.
        crate::kafka::set_unless_passed_through(&mut reader, kafka, "fetch.wait.max.ms", "5");
        let reader = reader.create_with_context(crate::kafka::BaseContext);
        match (producer, reader) {
            (Ok(producer), Ok(reader)) => Some(Snapshots {
                options,
                fingerprint,
                producer,
                reader,
                metrics: metrics.clone(),
            }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "partition snapshots are off: cannot create their Kafka clients");
                None
            }
        }
    }

    /// Queues `payload`, the partition's state when every event before
    /// `offset` had been processed, as its next snapshot (see
    /// [`records`]). Delivery is the producer's (a failed manifest is
    /// counted); `flush` waits.
    pub fn write(
        &self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        cursor: &mut Cursor,
        deadline: Instant,
    ) -> Result<(), KafkaError> {
        let written = records(
            &self.fingerprint,
            partition,
            offset,
            payload,
            rand::random(),
            crate::eventtime::now_ms(),
            cursor,
        );
        for (key, value) in &written {
            self.send(partition, key, value.as_deref(), deadline)?;
        }
        self.metrics.snapshots_written.inc();
        self.metrics.snapshot_bytes.inc_by(payload.len() as u64);
        Ok(())
    }

    fn send(&self, partition: i32, key: &str, value: Option<&[u8]>, deadline: Instant) -> Result<(), KafkaError> {
        loop {
            let mut record = BaseRecord::<str, [u8]>::to(&self.options.topic)
                .partition(partition)
                .key(key);
            if let Some(v) = value {
                record = record.payload(v);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Waits up to `timeout` for everything queued to be acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "partition snapshots not all acknowledged before the hand-over");
        }
    }

    /// Reads `partition`'s snapshots and keeps those a new owner whose
    /// replay would run from `replay_from` to `committed` can restore.
    pub fn lookup(&self, partition: i32, replay_from: i64, committed: i64, timeout: Duration) -> Lookup {
        let deadline = Instant::now() + timeout;
        let records = match self.read_partition(partition, deadline) {
            Ok(r) => r,
            Err(e) => {
                return Lookup {
                    usable: Vec::new(),
                    refused: vec![format!("cannot read the state topic: {e}")],
                    any: false,
                    cursor: Cursor::default(),
                };
            }
        };
        let (usable, refused, cursor) = choose(&records, &self.fingerprint, partition, replay_from, committed);
        Lookup {
            any: !records.is_empty(),
            usable,
            refused,
            cursor,
        }
    }

    /// The latest value of every key in the partition, read from its start
    /// to the end it had when asked (compacted: a few records per key).
    fn read_partition(&self, partition: i32, deadline: Instant) -> Result<HashMap<String, Vec<u8>>, KafkaError> {
        let topic = &self.options.topic;
        let left = || deadline.saturating_duration_since(Instant::now());
        let (low, high) = self.reader.fetch_watermarks(topic, partition, left())?;
        let mut records = HashMap::new();
        if high <= low {
            return Ok(records);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(low))?;
        self.reader.assign(&tpl)?;
        let result = (|| {
            loop {
                if Instant::now() >= deadline {
                    return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut));
                }
                let Some(message) = self.reader.poll(left().min(Duration::from_millis(200))) else {
                    continue;
                };
                let message = message?;
                if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    match message.payload() {
                        Some(v) => records.insert(key.to_string(), v.to_vec()),
                        None => records.remove(key),
                    };
                }
                if message.offset() + 1 >= high {
                    return Ok(());
                }
            }
        })();
        let _ = self.reader.unassign();
        result.map(|()| records)
    }
}

/// The records of a snapshot of `payload` at `offset`, in the order they
/// must be written: the chunks of the cursor's next slot, tombstones for that
/// slot's older chunks beyond the new count, and the slot's manifest, last.
/// Moves the cursor on to the other slot.
fn records(
    fingerprint: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
    id: u64,
    now_ms: i64,
    cursor: &mut Cursor,
) -> Vec<(String, Option<Vec<u8>>)> {
    let slot = cursor.next_slot;
    let name = SLOTS[slot];
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(CHUNK_BYTES).collect()
    };
    let mut out = Vec::with_capacity(chunks.len() + 1);
    for (i, chunk) in chunks.iter().enumerate() {
        let mut value = Vec::with_capacity(chunk.len() + 8);
        value.extend_from_slice(&id.to_le_bytes());
        value.extend_from_slice(chunk);
        out.push((format!("{name}/{i}"), Some(value)));
    }
    for i in chunks.len() as u32..cursor.chunks[slot] {
        out.push((format!("{name}/{i}"), None));
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        fingerprint: fingerprint.to_string(),
        id,
        partition,
        offset,
        chunks: chunks.len() as u32,
        bytes: payload.len() as u64,
        crc32: crc32fast::hash(payload),
        written_at_ms: now_ms,
    };
    let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
    out.push((format!("{name}/manifest"), Some(json)));
    cursor.chunks[slot] = manifest.chunks;
    cursor.next_slot = 1 - slot;
    cursor.last_offset = Some(offset);
    out
}

/// How long a new owner reads a partition's snapshots, at most.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a periodic snapshot may wait for room in the producer's queue.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// A partition's state restored from a snapshot.
pub(super) struct Restored<S> {
    /// Every event before this offset is in `state`.
    pub offset: i64,
    pub state: S,
    pub tracker: super::OffsetTracker,
}

impl<A: super::ConsumerApp> super::Core<A> {
    /// The periodic snapshots: one owned partition whose snapshot is due
    /// (the encoding runs on the loop's thread: one per batch spreads the
    /// pauses of partitions assigned together).
    pub(super) fn write_due_snapshots(&mut self, snapshots: &Snapshots, now: Instant) {
        let Some(p) = self
            .slots
            .iter()
            .find(|(_, slot)| slot.snapshot_due <= now)
            .map(|(p, _)| *p)
        else {
            return;
        };
        self.write_snapshots(snapshots, &[p], now + QUEUE_WAIT);
        if let Some(slot) = self.slots.get_mut(&p) {
            slot.snapshot_due = now + snapshots.options.interval;
        }
    }

    /// Writes a snapshot of each of `partitions` that is live (a state being
    /// rebuilt is not yet this owner's to write) and has moved since its
    /// last snapshot.
    pub(super) fn write_snapshots(&mut self, snapshots: &Snapshots, partitions: &[i32], deadline: Instant) {
        for p in partitions {
            let Some(slot) = self.slots.get_mut(p) else { continue };
            let Some(offset) = slot.tracker.next_offset() else {
                continue;
            };
            if slot.rebuild.is_some() || slot.snapshot.last_offset == Some(offset) {
                continue;
            }
            let payload = activity_tracker_core::snapshot::encode(&Envelope {
                tracker: slot.tracker.saved(),
                state: &slot.state,
            });
            if let Err(e) = snapshots.write(*p, offset, &payload, &mut slot.snapshot, deadline) {
                tracing::warn!(
                    consumer = self.metrics.consumer,
                    partition = p,
                    error = %e,
                    "cannot write the partition's snapshot; its next owner replays further"
                );
            }
        }
    }
}

impl<A: super::ConsumerApp> super::RuntimeContext<A> {
    /// The newest usable snapshot of `partition` for an owner that would
    /// replay from `replay_from` to `committed`, decoded; and where this
    /// owner's snapshots of it go.
    #[allow(clippy::type_complexity)]
    pub(super) fn restore(
        &self,
        snapshots: &Snapshots,
        partition: i32,
        replay_from: i64,
        committed: i64,
    ) -> (Option<Restored<<A::Processor as super::Processor>::State>>, Cursor) {
        let consumer = self.metrics.consumer;
        let lookup = snapshots.lookup(partition, replay_from, committed, LOOKUP_TIMEOUT);
        let mut refused = lookup.refused;
        for found in lookup.usable {
            match activity_tracker_core::snapshot::decode::<Envelope<_>>(&found.payload) {
                Ok(Envelope { tracker, state }) => {
                    self.metrics.restores_restored.inc();
                    self.metrics.restored_bytes.inc_by(found.manifest.bytes);
                    tracing::info!(
                        consumer,
                        partition,
                        offset = found.manifest.offset,
                        bytes = found.manifest.bytes,
                        "partition state restored from its snapshot"
                    );
                    let mut cursor = lookup.cursor;
                    cursor.last_offset = Some(found.manifest.offset);
                    let restored = Restored {
                        offset: found.manifest.offset,
                        state,
                        tracker: super::OffsetTracker::restored(self.window_ms, found.manifest.offset, tracker),
                    };
                    return (Some(restored), cursor);
                }
                Err(e) => refused.push(format!("offset {}: {e}", found.manifest.offset)),
            }
        }
        if lookup.any {
            self.metrics.restores_unusable.inc();
            tracing::warn!(
                consumer,
                partition,
                "no usable snapshot ({}); replaying the window",
                refused.join("; ")
            );
        } else {
            self.metrics.restores_missing.inc();
            tracing::info!(
                consumer,
                partition,
                "no snapshot of the partition yet; replaying the window"
            );
        }
        (None, lookup.cursor)
    }
}

/// Picks the usable snapshots among a partition's latest records, newest
/// first; says why the others are not; and where the next one goes.
fn choose(
    records: &HashMap<String, Vec<u8>>,
    fingerprint: &str,
    partition: i32,
    replay_from: i64,
    committed: i64,
) -> (Vec<Found>, Vec<String>, Cursor) {
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    let mut cursor = Cursor::default();
    let mut newest: Option<(usize, i64)> = None;
    for (slot, name) in SLOTS.iter().enumerate() {
        cursor.chunks[slot] = (0..)
            .take_while(|i| records.contains_key(&format!("{name}/{i}")))
            .count() as u32;
        let Some(raw) = records.get(&format!("{name}/manifest")) else {
            continue;
        };
        let manifest: Manifest = match serde_json::from_slice(raw) {
            Ok(m) => m,
            Err(e) => {
                refused.push(format!("slot {name}: unreadable manifest ({e})"));
                continue;
            }
        };
        if newest.is_none_or(|(_, o)| manifest.offset > o) {
            newest = Some((slot, manifest.offset));
        }
        match check(records, name, &manifest, fingerprint, partition, replay_from, committed) {
            Ok(payload) => usable.push(Found { manifest, payload }),
            Err(why) => refused.push(format!("slot {name} (offset {}): {why}", manifest.offset)),
        }
    }
    // The next snapshot overwrites the older slot, keeping the newest.
    cursor.next_slot = newest.map_or(0, |(slot, _)| 1 - slot);
    usable.sort_by_key(|f| std::cmp::Reverse(f.manifest.offset));
    (usable, refused, cursor)
}

/// The payload of the snapshot `manifest` describes, if it may be restored
/// by an owner replaying from `replay_from` to `committed`.
fn check(
    records: &HashMap<String, Vec<u8>>,
    slot: &str,
    manifest: &Manifest,
    fingerprint: &str,
    partition: i32,
    replay_from: i64,
    committed: i64,
) -> Result<Vec<u8>, String> {
    if manifest.version != MANIFEST_VERSION || manifest.fingerprint != fingerprint {
        return Err("written by another version or under other settings".into());
    }
    if manifest.partition != partition {
        return Err(format!("written for partition {}", manifest.partition));
    }
    if manifest.offset > committed {
        return Err(format!(
            "ahead of the committed offset {committed} (its owner stopped before committing)"
        ));
    }
    if manifest.offset < replay_from {
        return Err(format!("older than the replay window, which starts at {replay_from}"));
    }
    let mut payload = Vec::with_capacity(manifest.bytes.min(1 << 30) as usize);
    for i in 0..manifest.chunks {
        let chunk = records
            .get(&format!("{slot}/{i}"))
            .ok_or_else(|| format!("chunk {i} of {} missing", manifest.chunks))?;
        match chunk.split_first_chunk::<8>() {
            Some((id, data)) if u64::from_le_bytes(*id) == manifest.id => payload.extend_from_slice(data),
            _ => return Err(format!("chunk {i} belongs to another snapshot (written over mid-way?)")),
        }
    }
    if payload.len() as u64 != manifest.bytes || crc32fast::hash(&payload) != manifest.crc32 {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// Creates the state topic with `activities`' partition count, or adds the
/// partitions it lacks.
fn ensure_topic(kafka: &KafkaConfig, options: &SnapshotOptions, activities: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
    const TIMEOUT: Duration = Duration::from_secs(30);
    let reader: BaseConsumer<crate::kafka::BaseContext> = crate::kafka::reader(kafka, "activity-tracker-state-admin")
        .create_with_context(crate::kafka::BaseContext)
        .map_err(|e| e.to_string())?;
    let partitions = |name: &str| -> Result<Option<usize>, String> {
        let metadata = crate::kafka::fetch_metadata(&reader, None, TIMEOUT).map_err(|e| e.to_string())?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len()))
    };
    let wanted = partitions(activities)?.ok_or_else(|| format!("the topic {activities} does not exist"))?;
    let have = partitions(&options.topic)?;
    if have.is_some_and(|n| n >= wanted) {
        return Ok(());
    }
    // librdkafka's mock cluster (the embedded broker) answers no CreateTopics:
    // the request would only time out.
    if reader
        .client()
        .fetch_cluster_id(Duration::from_secs(5))
        .is_some_and(|id| id.starts_with("mockCluster"))
    {
        return Err("the embedded broker cannot create topics".into());
    }
    let admin: AdminClient<crate::kafka::BaseContext> = crate::kafka::admin(kafka)
        .create_with_context(crate::kafka::BaseContext)
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let admin_options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = runtime.block_on(async {
        match have {
            None => {
                let topic = NewTopic::new(
                    &options.topic,
                    wanted as i32,
                    TopicReplication::Fixed(options.replication_factor),
                )
                .set("cleanup.policy", "compact");
                admin.create_topics(&[topic], &admin_options).await
            }
            Some(_) => {
                admin
                    .create_partitions(&[NewPartitions::new(&options.topic, wanted)], &admin_options)
                    .await
            }
        }
    });
    match results.map_err(|e| e.to_string())?.into_iter().next() {
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists | RDKafkaErrorCode::InvalidPartitions)))
        | Some(Ok(_))
        | None => {}
        Some(Err((topic, code))) => return Err(format!("cannot create or grow {topic}: {code}")),
    }
    let deadline = Instant::now() + TIMEOUT;
    while partitions(&options.topic)?.is_none_or(|n| n < wanted) {
        if Instant::now() >= deadline {
            return Err(format!("{} did not appear with {wanted} partitions", options.topic));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!(topic = %options.topic, partitions = wanted, "partition snapshot topic ready");
    Ok(())
}

#[cfg(test)]
mod tests;
