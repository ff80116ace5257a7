//! The consumer runtime: the one place that owns Kafka for both consumers.
//!
//! It runs a consumer-group member on the activities topic and keeps, for
//! every partition it owns, the processor's state for that partition. That is
//! the whole scaling model: a pod's state is exactly the states of the
//! partitions it owns, and when Kafka moves a partition the runtime moves its
//! state — dropped here, rebuilt there. Processors never learn that pods
//! exist.
//!
//! What it guarantees, and how:
//!
//! - **In order, at least once.** Messages of a partition are processed one at
//!   a time in offset order. An offset is *stored* (for librdkafka's periodic
//!   commit) only when every effect of every earlier event is acknowledged by
//!   the broker ([`tracker::OffsetTracker`]), so a crash re-processes at most
//!   the uncommitted tail and never skips anything.
//! - **Revocation drains.** Before a partition is given up (rebalance,
//!   shutdown) the runtime stops reading it, waits up to `DRAIN_TIMEOUT` for
//!   its in-flight alerts, commits its offsets synchronously, then drops its
//!   state. With cooperative-sticky assignment only the moving partitions
//!   pause; the others keep processing.
//! - **Assignment rebuilds.** A newly assigned partition with a committed
//!   offset `c` is restored from its newest usable snapshot at an offset
//!   `s ≤ c` ([`snapshots`]) and started at `s`; without one it is started
//!   *earlier*, at the offset where its processor's
//!   window begins (from the commit metadata, or `offsets_for_times` on
//!   brokers that support it). Events before `c` are replayed in warm-up
//!   mode — state updated, nothing emitted, nothing counted — and processing
//!   goes live at `c`. The new owner's state then equals the old owner's, so
//!   alerts and distinct counts do not change when partitions move.
//! - **Nothing poisons a partition.** A message that fails decoding or
//!   validation is published to the dead-letter topic with its reason, and
//!   its offset moves on once that copy is acknowledged.
//!
//! State is touched on one thread: the poll loop calls into the rebalance
//! callback, so state is never touched concurrently; the mutex around it only
//! satisfies librdkafka's callback signature and is never contended. Only
//! decoding, which needs no state, spreads a large batch of polled messages
//! over the machine's cores before they are processed in order.
//!
//! This file holds the types and [`run`] (the poll loop and the stop);
//! each concern has its own file: `batch` (what one iteration polls, decoded
//! in parallel), `handling` (one message), `rebalance`
//! (revocation, hand-over commits, assignment and where replay starts),
//! [`snapshots`] (partition states in the group's state topic), [`effects`] (records awaiting acknowledgement), [`tracker`] (which
//! offsets may be committed), `dead_letter` (the copy of a rejected
//! message), `status` (`/report` and the console report) and `ffi` (the one
//! unsafe call, with its SAFETY note).

mod batch;
mod dead_letter;
pub mod effects;
mod ffi;
mod handling;
mod rebalance;
pub mod snapshots;
mod status;
mod stop;
pub mod tracker;

use batch::{Decoded, Polled};
use dead_letter::*;
use ffi::*;
use rebalance::*;
use status::*;
use stop::*;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, Statistics, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::config::{ConsumerConfig, KafkaConfig};
use crate::event::{DecodeLimits, RejectReason, Rejection};
use crate::eventtime::{Rfc3339, now_ms};
use crate::processor::{Mode, Processor};
use crate::shutdown::Shutdown;
use crate::telemetry::ConsumerMetrics;
use crate::telemetry::throttle::LogThrottle;
use effects::{Delivery, Effects, Pending};
pub use effects::{EffectKind, Record};
use tracker::{CommitMetadata, OffsetTracker};

/// Records awaiting acknowledgement before the runtime stops reading.
const MAX_IN_FLIGHT_EFFECTS: usize = 10_000;
/// Fetching resumes once the records awaiting acknowledgement drop below
/// this (hysteresis: not a pause and resume per acknowledgement).
const RESUME_IN_FLIGHT_EFFECTS: usize = MAX_IN_FLIGHT_EFFECTS / 2;
/// Timeout of the blocking broker calls made during a rebalance.
const REBALANCE_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between questions to a group coordinator that is loading or moving.
const COORDINATOR_RETRY: Duration = Duration::from_millis(100);
/// Dead-letter copies keep at most this many bytes of the original payload
/// (Kafka's default message size limit is 1 MB); longer ones are truncated
/// and marked with the `dlq.truncated` header.
pub const DLQ_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The original headers a dead-letter copy carries, at most (in bytes of
/// keys and values); further ones are left out and counted in
/// `dlq.headers.dropped`. With the payload cap this keeps every copy well
/// under Kafka's default 1 MB, whatever arrived: a copy that cannot be
/// written would hold its partition's offset back for ever.
pub const DLQ_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Keys longer than this are cut in the copy (`dlq.key.truncated`); the
/// source message keeps the original for replay.
pub const DLQ_MAX_KEY_BYTES: usize = 16 * 1024;
/// Longest a new owner waits for the previous owner's handoff commit (also
/// capped by `DRAIN_TIMEOUT`).
const HANDOFF_WAIT: Duration = Duration::from_secs(5);
/// Longest a revocation waits for its partitions' snapshots to be written
/// (also capped by what is left of a stop's budget).
const HANDOVER_SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// Repetitive warnings (rejected messages, poll errors) logged per second.
const REPEATED_WARNINGS_PER_SECOND: u32 = 5;
/// How stale the loop heartbeat may be before `/healthz` and `/readyz` fail.
pub const HEARTBEAT_TIMEOUT_MS: i64 = 30_000;

/// What a consumer (analytics, fraud) adds to the runtime: its processor and
/// how its outputs and reports look.
pub trait ConsumerApp: Send + 'static {
    type Processor: Processor;

    /// `analytics` or `fraud`: the metric label and log prefix.
    fn name(&self) -> &'static str;

    fn processor(&mut self) -> &mut Self::Processor;

    /// Prints an output and returns the record to publish for it, if any.
    /// `now_ms` is the wall-clock time of publication.
    fn publish(&mut self, output: <Self::Processor as Processor>::Output, now_ms: i64) -> Option<Record>;

    /// The consumer's figures in `/report`, beside the runtime's status.
    type Figures: Serialize;

    /// The consumer's own metric families; [`crate::consumers::spawn`]
    /// registers them, so a consumer cannot run without its metrics.
    fn metrics(&self) -> Arc<dyn crate::telemetry::metrics::FamilySource>;

    /// The report's figures for `/report` (and the metrics snapshot behind
    /// `/metrics`), for the partitions owned now.
    fn snapshot(&mut self, partitions: &[(i32, &<Self::Processor as Processor>::State)]) -> Self::Figures;

    /// The periodic console report.
    fn console_report(&mut self, partitions: &[(i32, &<Self::Processor as Processor>::State)], header: &str) -> String;

    /// The summary printed on exit.
    fn final_summary(&mut self, partitions: &[(i32, &<Self::Processor as Processor>::State)], header: &str) -> String;
}

/// Where and how to consume.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    pub client_id: String,
    pub consumer: ConsumerConfig,
    pub limits: DecodeLimits,
    /// Record a span per live event, continuing the trace in its headers.
    pub trace: bool,
    /// Write partition snapshots and restore from them (`None`: rebuilds
    /// replay the window).
    pub snapshots: Option<snapshots::SnapshotOptions>,
}

/// What `GET /report` serves for one consumer (and `--report-file` holds):
/// the consumer's figures and, under `consumer`, the runtime's status. The
/// local fleet reads the status of its replicas through it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report<F> {
    #[serde(flatten)]
    pub figures: F,
    pub consumer: ConsumerStatus,
}

/// A partition as shown in `/report`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionStatus {
    pub partition: i32,
    /// Next offset to process.
    pub position: Option<i64>,
    /// High watermark minus `position`.
    pub lag: Option<i64>,
    /// The group's committed offset, as librdkafka last saw it.
    pub committed: Option<i64>,
    /// High watermark minus the committed offset (the log's start if none).
    pub committed_lag: Option<i64>,
    /// Replaying to rebuild state; live from `live_from`.
    pub rebuilding: bool,
    pub live_from: Option<i64>,
    pub replayed_events: u64,
    pub effects_in_flight: usize,
}

/// The runtime's own view, in `/report` under `consumer`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConsumerStatus {
    pub consumer: String,
    pub group: String,
    pub member_id: Option<String>,
    pub group_instance_id: Option<String>,
    pub partitions: Vec<PartitionStatus>,
    pub events_consumed: u64,
    pub events_processed: u64,
    pub events_rejected: u64,
    pub rebalances: u64,
    pub ready: bool,
}

impl ConsumerStatus {
    pub fn partition_list(&self) -> String {
        let ids: Vec<String> = self.partitions.iter().map(|p| p.partition.to_string()).collect();
        format!("[{}]", ids.join(","))
    }
}

/// What the HTTP server reads while the runtime runs.
#[derive(Default)]
pub struct ConsumerShared {
    /// Wall-clock ms of the loop's last iteration.
    pub heartbeat_ms: AtomicI64,
    /// The consumer has joined its group (has a member id).
    pub joined: AtomicBool,
    pub stopping: AtomicBool,
    /// Messages handled so far (processed, replayed or rejected): a cheap
    /// progress counter for benchmarks and tests.
    pub handled: AtomicU64,
    /// The latest report: processor snapshot plus `consumer` status.
    pub report: RwLock<serde_json::Value>,
    pub status: RwLock<ConsumerStatus>,
}

impl ConsumerShared {
    /// `/healthz`: the loop is alive.
    pub fn healthy(&self) -> bool {
        now_ms() - self.heartbeat_ms.load(Ordering::Relaxed) < HEARTBEAT_TIMEOUT_MS
            && crate::kafka::fatal_error().is_none()
    }

    /// `/readyz`: joined the group, loop alive, not stopping.
    pub fn ready(&self) -> bool {
        self.healthy() && self.joined.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed)
    }
}

struct Rebuild {
    started: Instant,
    replayed: u64,
}

struct Slot<S> {
    state: S,
    tracker: OffsetTracker,
    epoch: u64,
    /// Offsets below this are replayed in warm-up mode.
    live_from: i64,
    /// Offsets from `live_from` up to this were processed and counted by the
    /// previous owner, whose effects may not have been acknowledged: they are
    /// processed again for their effects only ([`Mode::Redo`]).
    count_from: i64,
    rebuild: Option<Rebuild>,
    replayed_total: u64,
    /// Where this partition's next snapshot goes, and when it is due.
    snapshot: snapshots::Cursor,
    snapshot_due: Instant,
}

/// Counters batched locally and flushed to Prometheus a few times a second.
#[derive(Default)]
struct LocalCounts {
    consumed: u64,
    processed: u64,
    rejected: [u64; RejectReason::ALL.len()],
    dlq: [u64; RejectReason::ALL.len()],
}

struct Core<A: ConsumerApp> {
    app: A,
    options: RuntimeOptions,
    slots: BTreeMap<i32, Slot<<A::Processor as Processor>::State>>,
    effects: Effects,
    metrics: ConsumerMetrics,
    processing: prometheus::local::LocalHistogram,
    e2e: prometheus::local::LocalHistogram,
    counts: LocalCounts,
    totals: LocalCounts,
    next_epoch: u64,
    outputs: Vec<<A::Processor as Processor>::Output>,
    rebalances: u64,
    live_since_report: u64,
    last_report: Instant,
    rejection_log: LogThrottle,
    /// `AUDIT_LOG`: one line per live-processed offset, flushed before any
    /// offset is stored or committed.
    audit: Option<std::io::BufWriter<std::fs::File>>,
}

/// One partition as the brokers see it (librdkafka statistics, every
/// `statistics.interval.ms`).
#[derive(Clone, Copy, Debug)]
struct BrokerOffsets {
    high: i64,
    low: Option<i64>,
    committed: Option<i64>,
}

/// The librdkafka context: rebalance callbacks run here, on the poll thread.
struct RuntimeContext<A: ConsumerApp> {
    core: Mutex<Core<A>>,
    /// The brokers' view of each partition, from librdkafka statistics.
    broker_offsets: Mutex<BTreeMap<i32, BrokerOffsets>>,
    /// A handoff commit refused mid-rebalance, retried until this deadline.
    pending_handoff: Mutex<Option<(TopicPartitionList, Instant)>>,
    /// How long a new owner waits for the previous owner's handoff.
    handoff_wait: Duration,
    /// Set by the stop: the revocations the final close makes must be done
    /// by then (the work they repeat was already done within the budget).
    stop_deadline: Mutex<Option<Instant>>,
    metrics: ConsumerMetrics,
    /// The state topic's writer and reader, when snapshots are on.
    snapshots: Option<snapshots::Snapshots>,
    topic: String,
    rebuild: bool,
    window_ms: i64,
    skew_ms: i64,
}

/// Errors that stop the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot create the Kafka consumer: {0}")]
    Consumer(rdkafka::error::KafkaError),
    #[error("cannot create the Kafka producer for alerts and dead letters: {0}")]
    Producer(rdkafka::error::KafkaError),
    #[error("cannot open the audit log {path}: {error}")]
    Audit { path: String, error: std::io::Error },
    #[error("cannot subscribe to {topic}: {error}")]
    Subscribe {
        topic: String,
        error: rdkafka::error::KafkaError,
    },
}

/// What [`run`] returns when it stops.
pub struct RunOutcome {
    pub final_summary: String,
    pub final_report: serde_json::Value,
    pub status: ConsumerStatus,
}

/// Runs a consumer until `shutdown` is triggered, then stops gracefully:
/// revoke all partitions (drain, commit), leave the group, flush alerts.
pub fn run<A: ConsumerApp>(
    mut app: A,
    options: RuntimeOptions,
    kafka: &KafkaConfig,
    metrics: ConsumerMetrics,
    shared: Arc<ConsumerShared>,
    shutdown: Shutdown,
) -> Result<RunOutcome, RuntimeError> {
    let window_ms = app.processor().rebuild_window_ms();
    let snapshots = options
        .snapshots
        .clone()
        .filter(|_| options.consumer.state_rebuild && window_ms > 0)
        .and_then(|s| {
            let fingerprint = snapshots::fingerprint(app.processor().state_fingerprint(), &options.limits, window_ms);
            snapshots::Snapshots::connect(kafka, s, &options.topic, &options.client_id, fingerprint, &metrics)
        });
    let effects = Effects::new(
        &crate::kafka::effects_producer(kafka, &format!("{}-effects", options.client_id)),
        metrics.e2e_alert.clone(),
    )
    .map_err(RuntimeError::Producer)?;
    let name = app.name();
    let audit = match &options.consumer.audit_log {
        Some(dir) => {
            static INSTANCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{name}-{}-{n}.log", std::process::id()));
            let file = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(&path));
            match file {
                Ok(f) => Some(std::io::BufWriter::with_capacity(1 << 16, f)),
                Err(error) => {
                    return Err(RuntimeError::Audit {
                        path: path.display().to_string(),
                        error,
                    });
                }
            }
        }
        None => None,
    };
    let context = RuntimeContext {
        core: Mutex::new(Core {
            app,
            options: options.clone(),
            slots: BTreeMap::new(),
            effects,
            processing: metrics.processing.local(),
            e2e: metrics.e2e_processed.local(),
            metrics: metrics.clone(),
            counts: LocalCounts::default(),
            totals: LocalCounts::default(),
            next_epoch: 1,
            outputs: Vec::new(),
            rebalances: 0,
            live_since_report: 0,
            last_report: Instant::now(),
            rejection_log: LogThrottle::new(REPEATED_WARNINGS_PER_SECOND, Duration::from_secs(1)),
            audit,
        }),
        broker_offsets: Mutex::new(BTreeMap::new()),
        pending_handoff: Mutex::new(None),
        handoff_wait: options.consumer.drain_timeout.min(HANDOFF_WAIT),
        stop_deadline: Mutex::new(None),
        metrics: metrics.clone(),
        snapshots,
        topic: options.topic.clone(),
        rebuild: options.consumer.state_rebuild,
        window_ms,
        skew_ms: options.limits.max_future_skew_ms,
    };
    let consumer: BaseConsumer<RuntimeContext<A>> =
        crate::kafka::consumer(kafka, &options.consumer, &options.group, &options.client_id)
            .create_with_context(context)
            .map_err(RuntimeError::Consumer)?;
    consumer
        .subscribe(&[&options.topic])
        .map_err(|error| RuntimeError::Subscribe {
            topic: options.topic.clone(),
            error,
        })?;
    tracing::info!(
        consumer = name,
        group = %options.group,
        topic = %options.topic,
        protocol = options.consumer.group_protocol.as_str(),
        strategy = %options.consumer.assignment_strategy,
        instance = options.consumer.group_instance_id.as_deref().unwrap_or("-"),
        "consumer started"
    );

    let ctx = consumer.context().clone();
    let mut last_store = Instant::now();
    let mut last_flush = Instant::now();
    let mut last_snapshot = Instant::now() - Duration::from_secs(10);
    let mut poll_errors = LogThrottle::new(REPEATED_WARNINGS_PER_SECOND, Duration::from_secs(1));
    // The wall-clock time of the message handled in the last iteration:
    // reused as this iteration's heartbeat, so a busy loop reads the wall
    // clock once and the monotonic clock once per message (reading clocks
    // was 10 % of a consumer thread's profile).
    let mut handled_at: Option<i64> = None;
    let mut paused = false;
    let decode_threads = batch::decode_threads();
    let mut polled: Vec<Polled<'_>> = Vec::with_capacity(batch::MAX_BATCH);
    while !shutdown.is_triggered() {
        let now = handled_at.take().unwrap_or_else(now_ms);
        shared.heartbeat_ms.store(now, Ordering::Relaxed);
        let tick = Instant::now();
        {
            let mut core = ctx.lock();
            core.apply_deliveries(Duration::ZERO);
            // Backpressure: while too many records await acknowledgement,
            // stop fetching — pause every owned partition — but keep
            // polling, so the group keeps this member (a consumer that stops
            // polling is evicted after max.poll.interval.ms and its
            // partitions move, only to meet the same full queue elsewhere).
            let in_flight = core.effects.in_flight();
            if in_flight >= MAX_IN_FLIGHT_EFFECTS || (paused && in_flight > RESUME_IN_FLIGHT_EFFECTS) {
                if !paused {
                    tracing::warn!(
                        consumer = name,
                        in_flight,
                        "{in_flight} records await the brokers' acknowledgement; pausing fetches until they drop below {RESUME_IN_FLIGHT_EFFECTS}"
                    );
                }
                paused = true;
                let owned = core.slots.keys().copied().collect::<Vec<_>>();
                drop(core);
                // Every time: a partition assigned meanwhile is paused too.
                pause_partitions(&consumer, &options.topic, &owned);
                core = ctx.lock();
                core.apply_deliveries(Duration::from_millis(50));
            } else if paused {
                paused = false;
                let owned = core.slots.keys().copied().collect::<Vec<_>>();
                tracing::info!(consumer = name, in_flight, "acknowledgements caught up; fetching again");
                drop(core);
                resume_partitions(&consumer, &options.topic, &owned);
                core = ctx.lock();
            }
            if tick.duration_since(last_store) >= Duration::from_millis(100) {
                core.store_offsets(&consumer);
                last_store = tick;
                drop(core);
                ctx.retry_handoff(&consumer);
                core = ctx.lock();
            }
            if tick.duration_since(last_flush) >= Duration::from_millis(250) {
                core.flush_metrics();
                last_flush = tick;
            }
        }
        if tick.duration_since(last_snapshot) >= Duration::from_secs(1) {
            publish_snapshot(&consumer, &ctx, &shared, false);
            last_snapshot = tick;
        }
        // What librdkafka already holds, up to MAX_BATCH messages: the first
        // poll waits, the others do not.
        let mut next = consumer.poll(Duration::from_millis(100));
        while let Some(result) = next.take() {
            match result {
                Ok(message) => {
                    let epoch = ctx.lock().slots.get(&message.partition()).map_or(0, |s| s.epoch);
                    polled.push(Polled { message, epoch });
                    if polled.len() < batch::MAX_BATCH {
                        next = consumer.poll(Duration::ZERO);
                    }
                }
                Err(e) => {
                    if let Some(suppressed) = poll_errors.allow() {
                        tracing::warn!(consumer = name, error = %e, suppressed, "consumer error (librdkafka retries by itself)");
                    }
                }
            }
        }
        if polled.is_empty() {
            continue;
        }
        let decoded = batch::decode_batch(&polled, &options.limits, now_ms(), decode_threads);
        let mut core = ctx.lock();
        for (message, decoded) in polled.iter().zip(decoded) {
            let at = now_ms();
            core.handle(&message.message, message.epoch, decoded, at);
            handled_at = Some(at);
        }
        shared.handled.fetch_add(polled.len() as u64, Ordering::Relaxed);
        polled.clear();
        if let Some(snapshots) = &ctx.snapshots {
            core.write_due_snapshots(snapshots, Instant::now());
        }
        let interval = core.options.consumer.stats_interval;
        if core.live_since_report >= interval && core.last_report.elapsed() >= Duration::from_secs(1) {
            core.live_since_report = 0;
            core.last_report = Instant::now();
            drop(core);
            print_console_report(&consumer, &ctx, &shared);
        }
    }

    Ok(stop(consumer, &ctx, &shared, &options, &metrics))
}

fn partition_list(topic: &str, partitions: &[i32]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    tpl
}

fn pause_partitions<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partitions: &[i32]) {
    if let Err(e) = consumer.pause(&partition_list(topic, partitions)) {
        tracing::warn!(error = %e, "cannot pause fetching");
    }
}

fn resume_partitions<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partitions: &[i32]) {
    if let Err(e) = consumer.resume(&partition_list(topic, partitions)) {
        tracing::warn!(error = %e, "cannot resume fetching");
    }
}
