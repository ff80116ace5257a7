//! `activity-tracker dlq inspect|replay`: operating the dead-letter topic.
//!
//! Every consumer group dead-letters the messages it cannot accept, so one
//! bad source message usually has a copy per group (analytics and fraud).
//! Copies are identified by their source coordinates (topic, partition,
//! offset), carried in the `dlq.source.*` headers.
//!
//! `inspect` reads the whole topic and prints what is in it: counts by
//! reason and group, and the latest records with their key, detail and a
//! preview of the payload (or every record as JSON lines).
//!
//! `replay` sends dead letters back to the activities topic after a fix —
//! a configuration change (a larger `MAX_EVENT_BYTES`, a wider skew), a
//! corrected producer, or `--rekey` for events that arrived without the
//! `user_id` key. Each source message is replayed at most once:
//! - copies of the same source message are replayed once;
//! - a replay appends a *marker* to the dead-letter topic (no payload,
//!   `dlq.replayed.*` headers) once the event is acknowledged, and later runs
//!   skip what has a marker — so running replay twice changes nothing;
//! - a record that the current decoder still refuses is not replayed (it
//!   would only come back), and is listed with its reason;
//! - a truncated copy (originals over 256 KiB) is replayed from the original
//!   in the source topic if retention still holds it, else reported.
//!
//! The replayed message keeps the original key, payload, Kafka timestamp and
//! headers, plus `dlq.replayed.from`, so event-time checks and windows treat
//! it as the original. A crash between the event and its marker can replay
//! that event once more on the next run (at least once, like everything).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::dead_letter as dlq;
use crate::event::{RejectReason, check_key, decode};
use crate::eventtime::Rfc3339;
use crate::kafka::BaseContext;

/// How long reading a topic may go without progress before giving up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Events replayed per batch (sent together, then acknowledged together).
const BATCH: usize = 500;

/// Where a dead-lettered message came from: the identity of its copies.
pub use crate::dead_letter::Source;

/// One record of the dead-letter topic.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A rejected message.
    DeadLetter(Box<DeadLetter>),
    /// A replay marker: `source` was replayed.
    Replayed { source: Source, time: String },
    /// Something else (written by another tool): counted, never replayed.
    Foreign,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Position in the dead-letter topic.
    pub partition: i32,
    pub offset: i64,
    /// Why and where from: its `dlq.*` headers.
    pub why: dlq::Headers,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The original message's own headers (not `dlq.*`).
    pub headers: HeaderList,
}

/// Message headers as (name, value) pairs.
use crate::dead_letter::HeaderList;

/// Classifies one message of the dead-letter topic.
pub fn parse(m: &BorrowedMessage<'_>) -> Record {
    let pairs = || {
        m.headers()
            .into_iter()
            .flat_map(|h| h.iter())
            .map(|h| (h.key, h.value.unwrap_or_default()))
    };
    if let Some(marker) = dlq::ReplayMarker::decode(pairs()) {
        return Record::Replayed {
            source: marker.source,
            time: marker.time,
        };
    }
    let Some(why) = dlq::Headers::decode(pairs()) else {
        return Record::Foreign;
    };
    Record::DeadLetter(Box::new(DeadLetter {
        partition: m.partition(),
        offset: m.offset(),
        why,
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers: pairs()
            .filter(|(k, _)| !k.starts_with(dlq::PREFIX))
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
    }))
}

/// Reads `topic` from its start to its current end, calling `each` for every
/// message. Partitions are read in parallel; order holds within each.
pub fn scan(config: &Config, topic: &str, mut each: impl FnMut(&BorrowedMessage<'_>)) -> anyhow::Result<u64> {
    let consumer: BaseConsumer<BaseContext> = crate::kafka::reader(&config.kafka, "activity-tracker-dlq")
        .create_with_context(BaseContext)
        .context("cannot create the Kafka consumer")?;
    let metadata = crate::kafka::fetch_metadata(&consumer, Some(topic), Duration::from_secs(10))
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} not found");
    };
    if let Some(e) = t.error() {
        bail!("topic {topic}: {}", rdkafka::error::RDKafkaErrorCode::from(e));
    }
    let mut tpl = TopicPartitionList::new();
    let mut end: BTreeMap<i32, i64> = BTreeMap::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .with_context(|| format!("cannot read the offsets of {topic}/{}", p.id()))?;
        if high > low {
            end.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
        }
    }
    if end.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;
    let mut read = 0u64;
    let mut last_progress = Instant::now();
    while !end.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                read += 1;
                each(&m);
                if end.get(&m.partition()).is_some_and(|high| m.offset() + 1 >= *high) {
                    end.remove(&m.partition());
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, topic, "reading"),
            None => {
                // A partition whose last offsets are not messages (e.g.
                // transaction markers) ends at its position.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let Offset::Offset(o) = e.offset()
                            && end.get(&e.partition()).is_some_and(|high| o >= *high)
                        {
                            end.remove(&e.partition());
                        }
                    }
                }
                if last_progress.elapsed() > STALL_TIMEOUT {
                    bail!("reading {topic} made no progress for {STALL_TIMEOUT:?}; partitions left: {end:?}");
                }
            }
        }
    }
    Ok(read)
}

/// Everything known about the dead-letter topic after one scan.
#[derive(Debug, Default)]
pub struct Inventory {
    pub records: u64,
    pub dead_letters: u64,
    pub foreign: u64,
    /// Distinct source messages, and which of them were replayed.
    pub sources: BTreeSet<Source>,
    pub replayed: HashSet<Source>,
    /// Pending (not replayed) source messages by reason, then group → copies.
    pub pending: BTreeMap<String, BTreeMap<String, u64>>,
}

fn inventory(config: &Config, mut also: impl FnMut(&Record)) -> anyhow::Result<Inventory> {
    let mut inv = Inventory::default();
    let mut letters: Vec<(Source, String, String)> = Vec::new();
    inv.records = scan(config, &config.topics.dlq, |m| {
        let record = parse(m);
        match &record {
            Record::DeadLetter(d) => {
                inv.dead_letters += 1;
                inv.sources.insert(d.why.source.clone());
                letters.push((d.why.source.clone(), d.why.reason.clone(), d.why.group.clone()));
            }
            Record::Replayed { source, .. } => {
                inv.replayed.insert(source.clone());
            }
            Record::Foreign => inv.foreign += 1,
        }
        also(&record);
    })?;
    for (source, reason, group) in letters {
        if !inv.replayed.contains(&source) {
            *inv.pending.entry(reason).or_default().entry(group).or_default() += 1;
        }
    }
    Ok(inv)
}

fn preview(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let mut out: String = text.chars().flat_map(char::escape_default).collect();
    if bytes.len() > max {
        out.push('…');
    }
    out
}

/// Options of `dlq inspect`.
#[derive(Clone, Debug, Default)]
pub struct InspectOptions {
    /// How many of the latest dead letters to show.
    pub limit: usize,
    /// Print every record as a JSON line instead of the summary.
    pub json: bool,
}

pub fn dead_letter_json(d: &DeadLetter, replayed: bool) -> serde_json::Value {
    serde_json::json!({
        "dlq_partition": d.partition,
        "dlq_offset": d.offset,
        "reason": d.why.reason,
        "detail": d.why.detail,
        "source": d.why.source.to_string(),
        "group": d.why.group,
        "time": d.why.time,
        "source_timestamp": d.why.source_timestamp.map(|t| Rfc3339(t).to_string()),
        "truncated_from_bytes": d.why.original_bytes,
        "key": d.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "payload": String::from_utf8_lossy(&d.payload),
        "replayed": replayed,
    })
}

/// `dlq inspect`.
pub fn inspect(config: &Config, options: &InspectOptions) -> anyhow::Result<String> {
    let mut latest: std::collections::VecDeque<DeadLetter> = std::collections::VecDeque::new();
    let mut lines: Vec<DeadLetter> = Vec::new();
    let inv = inventory(config, |r| {
        if let Record::DeadLetter(d) = r {
            if options.json {
                lines.push((**d).clone());
            } else if options.limit > 0 {
                if latest.len() == options.limit {
                    latest.pop_front();
                }
                latest.push_back((**d).clone());
            }
        }
    })?;
    if options.json {
        let mut out = String::new();
        for d in &lines {
            out.push_str(&dead_letter_json(d, inv.replayed.contains(&d.why.source)).to_string());
            out.push('\n');
        }
        return Ok(out);
    }
    let pending: u64 = inv.sources.iter().filter(|s| !inv.replayed.contains(s)).count() as u64;
    let mut out = format!(
        "📮 {}: {} records — {} dead letters of {} source messages ({} replayed, {} pending){}\n",
        config.topics.dlq,
        inv.records,
        inv.dead_letters,
        inv.sources.len(),
        inv.sources.len() as u64 - pending,
        pending,
        if inv.foreign > 0 {
            format!(", {} foreign records", inv.foreign)
        } else {
            String::new()
        }
    );
    if !inv.pending.is_empty() {
        out.push_str("   pending copies by reason and consumer group:\n");
        for (reason, groups) in &inv.pending {
            let by_group: Vec<String> = groups.iter().map(|(g, n)| format!("{g} {n}")).collect();
            out.push_str(&format!("     {reason:<24} {}\n", by_group.join(", ")));
        }
    }
    if !latest.is_empty() {
        out.push_str(&format!("   latest {}:\n", latest.len()));
        for d in &latest {
            out.push_str(&format!(
                "     {} {} from {} ({}){}\n       {}\n       key {:?} payload {}\n",
                d.why.time,
                d.why.reason,
                d.why.source,
                d.why.group,
                if inv.replayed.contains(&d.why.source) {
                    " — replayed"
                } else {
                    ""
                },
                d.why.detail,
                d.key
                    .as_deref()
                    .map(|k| preview(k, 64))
                    .unwrap_or_else(|| "(none)".into()),
                preview(&d.payload, 160),
            ));
        }
    }
    Ok(out)
}

/// Options of `dlq replay`.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Only these reasons (empty: all).
    pub reasons: Vec<RejectReason>,
    /// Key events that arrived without the `user_id` key (or with another)
    /// by their `user_id`.
    pub rekey: bool,
    /// Say what would be replayed, send nothing.
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Debug, Default, PartialEq)]
pub struct ReplayOutcome {
    pub replayed: u64,
    pub already_replayed: u64,
    pub duplicate_copies: u64,
    pub filtered: u64,
    /// Still refused by the current decoder, by reason.
    pub still_rejected: BTreeMap<String, u64>,
    /// Truncated copies whose original is no longer in the source topic.
    pub unavailable: u64,
    pub failed: u64,
}

impl ReplayOutcome {
    pub fn summary(&self, dry_run: bool) -> String {
        let still: u64 = self.still_rejected.values().sum();
        let mut out = format!(
            "{} {} events; skipped: {} already replayed, {} duplicate copies, {} not selected, {} still rejected, {} unavailable{}",
            if dry_run {
                "🔎 would replay"
            } else {
                "♻️  replayed"
            },
            self.replayed,
            self.already_replayed,
            self.duplicate_copies,
            self.filtered,
            still,
            self.unavailable,
            if self.failed > 0 {
                format!("; {} FAILED to send (run again)", self.failed)
            } else {
                String::new()
            }
        );
        for (reason, n) in &self.still_rejected {
            out.push_str(&format!("\n   still rejected as {reason}: {n}"));
        }
        out
    }
}

/// Reads the original of a truncated copy from its source topic.
fn fetch_original(config: &Config, source: &Source) -> anyhow::Result<Option<Vec<u8>>> {
    let consumer: BaseConsumer<BaseContext> =
        crate::kafka::reader(&config.kafka, "activity-tracker-dlq-original").create_with_context(BaseContext)?;
    let (low, high) = consumer.fetch_watermarks(&source.topic, source.partition, Duration::from_secs(10))?;
    if source.offset < low || source.offset >= high {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&source.topic, source.partition, Offset::Offset(source.offset))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            return Ok((m.offset() == source.offset).then(|| m.payload().unwrap_or_default().to_vec()));
        }
    }
    Ok(None)
}

/// Decides whether and how a dead letter goes back: the key to use, or why
/// not.
fn revalidate(config: &Config, d: &DeadLetter, payload: &[u8], rekey: bool) -> Result<Option<Vec<u8>>, RejectReason> {
    let reference = d.why.source_timestamp.unwrap_or_else(crate::eventtime::now_ms);
    let event = decode(payload, reference, &config.limits).map_err(|r| r.reason)?;
    match check_key(d.key.as_deref(), &event) {
        Ok(()) => Ok(d.key.clone()),
        Err(_) if rekey => Ok(Some(event.user_id.as_bytes().to_vec())),
        Err(r) => Err(r.reason),
    }
}

/// `dlq replay`. Blocking (run it off the async runtime); `runtime` drives
/// the producer's acknowledgements.
pub fn replay(
    config: &Config,
    options: &ReplayOptions,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<ReplayOutcome> {
    // Pass 1: what has been replayed, and which copy of each source to use.
    let mut chosen: BTreeMap<Source, (i32, i64)> = BTreeMap::new();
    let inv = inventory(config, |r| {
        if let Record::DeadLetter(d) = r {
            chosen.entry(d.why.source.clone()).or_insert((d.partition, d.offset));
        }
    })?;
    let selected: HashSet<(i32, i64)> = chosen
        .iter()
        .filter(|(s, _)| !inv.replayed.contains(s))
        .map(|(_, at)| *at)
        .collect();

    // Pass 2: re-read, revalidate and send the chosen copies, in batches.
    let mut producer_config = crate::kafka::producer(&config.kafka, "activity-tracker-dlq-replay");
    // Room for the largest event the decoder now accepts (the broker's and
    // the topic's own limits still apply).
    let needed = config.limits.max_event_bytes + 64 * 1024;
    if needed > 1_000_000 && producer_config.get("message.max.bytes").is_none() {
        producer_config.set("message.max.bytes", needed.to_string());
    }
    let producer: FutureProducer<BaseContext> = producer_config
        .create_with_context(BaseContext)
        .context("cannot create the Kafka producer")?;
    let mut outcome = ReplayOutcome::default();
    let mut batch: Vec<(DeadLetter, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut error: Option<anyhow::Error> = None;
    scan(config, &config.topics.dlq, |m| {
        let Record::DeadLetter(d) = parse(m) else { return };
        if error.is_some() {
            return;
        }
        if inv.replayed.contains(&d.why.source) {
            outcome.already_replayed += 1;
            return;
        }
        if !selected.contains(&(d.partition, d.offset)) {
            outcome.duplicate_copies += 1;
            return;
        }
        let reason = RejectReason::from_code(&d.why.reason);
        if !options.reasons.is_empty() && !reason.is_some_and(|r| options.reasons.contains(&r)) {
            outcome.filtered += 1;
            return;
        }
        let payload = if d.why.original_bytes.is_some() {
            match fetch_original(config, &d.why.source) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    outcome.unavailable += 1;
                    return;
                }
                Err(e) => {
                    error = Some(e.context(format!("cannot read the original of {}", d.why.source)));
                    return;
                }
            }
        } else {
            d.payload.clone()
        };
        match revalidate(config, &d, &payload, options.rekey) {
            Ok(key) => batch.push((*d, payload, key)),
            Err(r) => *outcome.still_rejected.entry(r.code().to_string()).or_default() += 1,
        }
        if batch.len() >= BATCH {
            let full = std::mem::take(&mut batch);
            runtime.block_on(send_batch(config, &producer, full, options.dry_run, &mut outcome));
        }
    })?;
    if let Some(e) = error {
        return Err(e);
    }
    runtime.block_on(send_batch(config, &producer, batch, options.dry_run, &mut outcome));
    Ok(outcome)
}

async fn send_batch(
    config: &Config,
    producer: &FutureProducer<BaseContext>,
    batch: Vec<(DeadLetter, Vec<u8>, Option<Vec<u8>>)>,
    dry_run: bool,
    outcome: &mut ReplayOutcome,
) {
    if dry_run {
        outcome.replayed += batch.len() as u64;
        return;
    }
    let timeout = Duration::from_secs(60);
    // The events first, all in flight together; a marker only for each one
    // the broker acknowledged.
    let mut sends = Vec::with_capacity(batch.len());
    for (d, payload, key) in &batch {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &d.headers {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let from = d.why.source.to_string();
        headers = headers.insert(Header {
            key: dlq::REPLAYED_FROM,
            value: Some(&from),
        });
        let mut record = FutureRecord::to(&config.topics.activities)
            .payload(payload)
            .headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(t) = d.why.source_timestamp {
            record = record.timestamp(t);
        }
        sends.push(producer.send(record, timeout));
    }
    let results = futures_join(sends).await;
    let now = Rfc3339(crate::eventtime::now_ms()).to_string();
    let mut markers = Vec::new();
    for ((d, _, key), result) in batch.iter().zip(results) {
        if let Err((e, _)) = result {
            tracing::error!(source = %d.why.source, error = %e, "replay failed");
            outcome.failed += 1;
            continue;
        }
        let marker = dlq::ReplayMarker {
            source: d.why.source.clone(),
            to: config.topics.activities.clone(),
            time: now.clone(),
        };
        let mut headers = OwnedHeaders::new();
        for (k, v) in &marker.encode() {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let mut record: FutureRecord<'_, Vec<u8>, ()> = FutureRecord::to(&config.topics.dlq).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        markers.push(producer.send(record, timeout));
    }
    for result in futures_join(markers).await {
        match result {
            Ok(_) => outcome.replayed += 1,
            // The event went out; without its marker a later run replays it
            // again. Say so.
            Err((e, _)) => {
                tracing::error!(error = %e, "replayed, but the marker could not be written");
                outcome.replayed += 1;
                outcome.failed += 1;
            }
        }
    }
}

/// Awaits every future, in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

/// The `dlq` command.
pub async fn run_command(config: Config, action: DlqAction) -> anyhow::Result<()> {
    match action {
        DlqAction::Inspect(options) => {
            let text = tokio::task::spawn_blocking(move || inspect(&config, &options)).await??;
            print!("{text}");
        }
        DlqAction::Replay(options) => {
            let runtime = tokio::runtime::Handle::current();
            let dry_run = options.dry_run;
            let outcome = tokio::task::spawn_blocking(move || replay(&config, &options, &runtime)).await??;
            println!("{}", outcome.summary(dry_run));
            if outcome.failed > 0 {
                bail!("{} events could not be replayed or marked", outcome.failed);
            }
        }
    }
    Ok(())
}

/// Which `dlq` subcommand.
#[derive(Clone, Debug)]
pub enum DlqAction {
    Inspect(InspectOptions),
    Replay(ReplayOptions),
}
