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
//!   offset `c` is started *earlier*, at the offset where its processor's
//!   window begins (from the commit metadata, or `offsets_for_times` on
//!   brokers that support it). Events before `c` are replayed in warm-up
//!   mode — state updated, nothing emitted, nothing counted — and processing
//!   goes live at `c`. The new owner's state then equals the old owner's, so
//!   alerts and distinct counts do not change when partitions move.
//! - **Nothing poisons a partition.** A message that fails decoding or
//!   validation is published to the dead-letter topic with its reason, and
//!   its offset moves on once that copy is acknowledged.
//!
//! Everything happens on one thread: the poll loop calls into the rebalance
//! callback, so state is never touched concurrently; the mutex around it only
//! satisfies librdkafka's callback signature and is never contended.

pub mod effects;
pub mod tracker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, Statistics, TopicPartitionList};
use serde::Serialize;

use crate::config::{ConsumerConfig, KafkaConfig};
use crate::event::{DecodeLimits, RejectReason, Rejection, check_key, decode};
use crate::eventtime::{Rfc3339, now_ms};
use crate::processor::{Mode, Processor};
use crate::shutdown::Shutdown;
use crate::telemetry::ConsumerMetrics;
use effects::{Delivery, Effects, Pending};
pub use effects::{EffectKind, Record};
use tracker::{CommitMetadata, OffsetTracker};

/// Records awaiting acknowledgement before the runtime stops reading.
const MAX_IN_FLIGHT_EFFECTS: usize = 10_000;
/// Fetching resumes once the records awaiting acknowledgement drop below
/// this (hysteresis: not a pause and resume per acknowledgement).
const RESUME_IN_FLIGHT_EFFECTS: usize = MAX_IN_FLIGHT_EFFECTS / 2;
/// One live event in this many has its processing time measured.
const PROCESSING_SAMPLE: u64 = 8;
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
/// Longest the final close of the Kafka client may take: by then offsets are
/// committed and alerts flushed, and leaving the group takes milliseconds.
const CLOSE_BUDGET: Duration = Duration::from_secs(5);
/// Part of SHUTDOWN_TIMEOUT left for what happens around the runtime's own
/// stop: noticing the signal (one poll) and printing the final summary.
const EXIT_MARGIN: Duration = Duration::from_millis(300);
/// Longest a new owner waits for the previous owner's handoff commit (also
/// capped by `DRAIN_TIMEOUT`).
const HANDOFF_WAIT: Duration = Duration::from_secs(5);
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

    /// The report body for `/report` (and the metrics snapshot behind
    /// `/metrics`), for the partitions owned now.
    fn snapshot(&mut self, partitions: &[(i32, &<Self::Processor as Processor>::State)]) -> serde_json::Value;

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
}

/// A partition as shown in `/report`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
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

/// The runtime's own view, merged into `/report` under `consumer`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
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
    /// Live events seen, for sampling the processing-time histogram.
    sampled: u64,
    e2e: prometheus::local::LocalHistogram,
    counts: LocalCounts,
    totals: LocalCounts,
    next_epoch: u64,
    outputs: Vec<<A::Processor as Processor>::Output>,
    rebalances: u64,
    live_since_report: u64,
    last_report: Instant,
    rejection_log: RateLimitedLog,
    /// `AUDIT_LOG`: one line per live-processed offset, flushed before any
    /// offset is stored or committed.
    audit: Option<std::io::BufWriter<std::fs::File>>,
}

/// At most a few log lines per second for repetitive warnings.
struct RateLimitedLog {
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

impl RateLimitedLog {
    const PER_SECOND: u32 = 5;

    fn new() -> RateLimitedLog {
        RateLimitedLog {
            window_start: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether to log now; reports how many were suppressed before.
    fn allow(&mut self) -> Option<u64> {
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        if self.in_window < Self::PER_SECOND {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
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
    topic: String,
    rebuild: bool,
    window_ms: i64,
    skew_ms: i64,
}

impl<A: ConsumerApp> ClientContext for RuntimeContext<A> {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }
    fn stats(&self, statistics: Statistics) {
        crate::kafka::observe(&statistics);
        if let Some(topic) = statistics.topics.get(&self.topic)
            && let Ok(mut offsets) = self.broker_offsets.lock()
        {
            for (p, stats) in &topic.partitions {
                if *p >= 0 && stats.hi_offset >= 0 {
                    offsets.insert(
                        *p,
                        BrokerOffsets {
                            high: stats.hi_offset,
                            low: (stats.lo_offset >= 0).then_some(stats.lo_offset),
                            committed: (stats.committed_offset >= 0).then_some(stats.committed_offset),
                        },
                    );
                }
            }
        }
    }
}

impl<A: ConsumerApp> ConsumerContext for RuntimeContext<A> {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.prepare_assignment(consumer, tpl);
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot apply the partition assignment");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                self.revoke(consumer, tpl, lost);
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot release revoked partitions");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; releasing the assignment");
                let all = self.owned();
                self.revoke(consumer, &all, true);
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.metrics.commits_ok.inc(),
            Err(e) => {
                self.metrics.commits_failed.inc();
                // During a rebalance the coordinator refuses commits; the
                // revocation path commits synchronously once it completes.
                if is_rebalancing(&e) {
                    tracing::debug!(error = %e, "offset commit deferred by a rebalance");
                } else {
                    tracing::warn!(error = %e, "offset commit failed; the next commit will carry the same offsets");
                }
            }
        }
    }
}

/// Whether the coordinator refused a commit because the group is between
/// generations: rebalancing, or already on a generation this member has not
/// joined yet. Both pass once the member has rejoined, so such a commit is
/// worth retrying.
fn is_rebalancing(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            rdkafka::error::RDKafkaErrorCode::RebalanceInProgress | rdkafka::error::RDKafkaErrorCode::IllegalGeneration
        )
    )
}

/// The entries of a pending handoff `commit` whose offset is beyond what
/// `group` (the group's committed offsets, read just now) holds: a handoff
/// that arrives after the new owner committed further must not move the
/// group's offset backwards.
fn still_ahead(commit: &TopicPartitionList, group: &TopicPartitionList) -> TopicPartitionList {
    let mut ahead = TopicPartitionList::new();
    for e in commit.elements() {
        let Offset::Offset(ours) = e.offset() else { continue };
        let theirs = group
            .find_partition(e.topic(), e.partition())
            .and_then(|g| match g.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        if theirs.is_none_or(|t| t < ours)
            && ahead.add_partition_offset(e.topic(), e.partition(), e.offset()).is_ok()
            && let Some(mut added) = ahead.find_partition(e.topic(), e.partition())
        {
            added.set_metadata(e.metadata());
        }
    }
    ahead
}

/// Errors a group coordinator answers while it loads or moves (a broker
/// restarted, the offsets topic's leader changed): asking again shortly
/// succeeds. librdkafka returns them from `committed_offsets` as they come.
fn is_coordinator_moving(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::NotCoordinator | C::CoordinatorLoadInProgress | C::CoordinatorNotAvailable | C::RequestTimedOut)
    )
}

/// The group's committed offsets for `tpl`, asking again while the
/// coordinator is loading or moving, within `budget` in all. Without this a
/// partition assigned just after a broker restart would start without its
/// state rebuilt.
fn committed_offsets_retrying<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    budget: Duration,
) -> KafkaResult<TopicPartitionList> {
    let deadline = Instant::now() + budget;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.committed_offsets(tpl.clone(), left.max(Duration::from_millis(100))) {
            Err(e) if is_coordinator_moving(&e) && Instant::now() + COORDINATOR_RETRY < deadline => {
                tracing::debug!(error = %e, "the group coordinator is loading or moving; asking again");
                std::thread::sleep(COORDINATOR_RETRY);
            }
            other => return other,
        }
    }
}

fn partition_ids(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    let mut ids: Vec<i32> = tpl
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect();
    ids.sort_unstable();
    ids
}

fn format_ids(ids: &[i32]) -> String {
    let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!("[{}]", s.join(","))
}

impl<A: ConsumerApp> RuntimeContext<A> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Core<A>> {
        match self.core.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Synchronously commits, for `partitions`, everything processed, marked
    /// as a handoff: the commit of an owner giving the partitions up. The
    /// same offsets are stored too, so librdkafka's own commit on revocation
    /// carries the same metadata. On failure the commit is returned, to be
    /// retried.
    fn commit_handoff(
        &self,
        consumer: &BaseConsumer<Self>,
        core: &Core<A>,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<usize, (rdkafka::error::KafkaError, TopicPartitionList)> {
        let mut commit = TopicPartitionList::new();
        for p in partitions {
            if let Some(slot) = core.slots.get(p)
                && slot.rebuild.is_none()
                && let Some((offset, mut meta)) = slot.tracker.committable()
                && offset >= slot.live_from
            {
                meta.handoff = true;
                let _ = commit.add_partition_offset(&self.topic, *p, Offset::Offset(offset));
                if let Some(mut e) = commit.find_partition(&self.topic, *p) {
                    e.set_metadata(meta.encode());
                }
            }
        }
        if commit.count() == 0 {
            return Ok(0);
        }
        let _ = consumer.store_offsets(&commit);
        match crate::kafka::commit_within(consumer, &commit, timeout) {
            Ok(()) => {
                self.metrics.commits_ok.inc();
                Ok(commit.count())
            }
            Err(e) => {
                self.metrics.commits_failed.inc();
                Err((e, commit))
            }
        }
    }

    /// Retries a handoff commit the coordinator refused during a rebalance.
    /// Called from the poll loop until it is accepted or too old.
    fn retry_handoff(&self, consumer: &BaseConsumer<Self>) {
        let Ok(mut pending) = self.pending_handoff.lock() else {
            return;
        };
        let Some((commit, deadline)) = pending.take() else {
            return;
        };
        // Never below what the group has committed since (the new owner's
        // commits): only the partitions this handoff still moves forward.
        let commit = match consumer.committed_offsets(commit.clone(), REBALANCE_CALL_TIMEOUT) {
            Ok(group) => still_ahead(&commit, &group),
            Err(_) => commit,
        };
        if commit.count() == 0 {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match crate::kafka::commit_within(consumer, &commit, left.min(REBALANCE_CALL_TIMEOUT)) {
            Ok(()) => {
                self.metrics.commits_ok.inc();
                tracing::info!(
                    consumer = self.metrics.consumer,
                    "handoff commit for {} accepted after the rebalance",
                    format_ids(&partition_ids(&commit, &self.topic))
                );
            }
            Err(e) if Instant::now() < deadline && is_rebalancing(&e) => *pending = Some((commit, deadline)),
            Err(e) => {
                self.metrics.commits_failed.inc();
                tracing::warn!(
                    consumer = self.metrics.consumer,
                    error = %e,
                    "handoff commit for {} abandoned; the next owner re-processes from the last commit",
                    format_ids(&partition_ids(&commit, &self.topic))
                );
            }
        }
    }

    /// A new owner waits (up to [`HANDOFF_WAIT`]) for the previous owner's
    /// handoff commit on partitions whose committed offset is not one: the
    /// previous owner may be retrying a commit the coordinator refused
    /// mid-rebalance. After a crash no handoff comes; the wait expires and
    /// processing resumes from the last commit.
    fn await_handoffs(&self, consumer: &BaseConsumer<Self>, committed: &mut TopicPartitionList) {
        let waiting = |c: &TopicPartitionList| -> Vec<i32> {
            c.elements()
                .iter()
                .filter(|e| e.topic() == self.topic && matches!(e.offset(), Offset::Offset(_)))
                .filter(|e| CommitMetadata::decode(e.metadata()).is_some_and(|m| !m.handoff))
                .map(|e| e.partition())
                .collect()
        };
        let deadline = Instant::now() + self.handoff_wait;
        let mut pending = waiting(committed);
        while !pending.is_empty() && Instant::now() < deadline {
            // Polling the coordinator; the previous owner's retry lands
            // within a few hundred milliseconds of the rebalance.
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(fresh) = consumer.committed_offsets(committed.clone(), REBALANCE_CALL_TIMEOUT) {
                *committed = fresh;
            }
            pending = waiting(committed);
        }
        if !pending.is_empty() {
            tracing::info!(
                consumer = self.metrics.consumer,
                "no handoff from the previous owner of {} (it crashed?); resuming from its last commit",
                format_ids(&pending)
            );
        }
    }

    fn owned(&self) -> TopicPartitionList {
        let core = self.lock();
        let mut tpl = TopicPartitionList::new();
        for p in core.slots.keys() {
            tpl.add_partition(&self.topic, *p);
        }
        tpl
    }

    /// Chooses each newly assigned partition's start offset (earlier than the
    /// committed one when its state must be rebuilt) and creates its state.
    fn prepare_assignment(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let ids = partition_ids(tpl, &self.topic);
        self.metrics.rebalance_assign.inc();
        if ids.is_empty() {
            tracing::info!(consumer = self.metrics.consumer, "joined; no new partitions assigned");
            return;
        }
        let committed = match committed_offsets_retrying(consumer, tpl, REBALANCE_CALL_TIMEOUT) {
            Ok(mut c) => {
                self.await_handoffs(consumer, &mut c);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read committed offsets; starting from the group's stored positions without rebuild");
                None
            }
        };
        let mut plans = Vec::new();
        for &p in &ids {
            let element = committed.as_ref().and_then(|c| c.find_partition(&self.topic, p));
            let (committed_offset, metadata) = match &element {
                Some(e) => match e.offset() {
                    Offset::Offset(o) => (Some(o), CommitMetadata::decode(e.metadata())),
                    _ => (None, None),
                },
                None => (None, None),
            };
            let plan = self.plan_start(consumer, p, committed_offset, metadata);
            if let Some(start) = plan.start
                && let Err(e) = tpl.set_partition_offset(&self.topic, p, Offset::Offset(start))
            {
                tracing::warn!(partition = p, error = %e, "cannot set start offset");
            }
            plans.push((p, plan));
        }

        let mut core = self.lock();
        for (p, plan) in plans {
            let epoch = core.next_epoch;
            core.next_epoch += 1;
            let state = core.app.processor().new_state();
            let rebuilding = plan.start.is_some_and(|s| s < plan.live_from);
            core.slots.insert(
                p,
                Slot {
                    state,
                    tracker: OffsetTracker::new(self.window_ms),
                    epoch,
                    live_from: plan.live_from,
                    count_from: plan.count_from,
                    rebuild: rebuilding.then(|| Rebuild {
                        started: Instant::now(),
                        replayed: 0,
                    }),
                    replayed_total: 0,
                },
            );
            self.metrics.partition_assigned(&self.topic, p);
            if rebuilding {
                match plan.via {
                    ReplayFrom::CommitMetadata => self.metrics.rebuilds_by_commit_metadata.inc(),
                    _ => self.metrics.rebuilds_by_timestamp.inc(),
                }
                tracing::info!(
                    consumer = self.metrics.consumer,
                    partition = p,
                    from = plan.start.unwrap_or_default(),
                    live_from = plan.live_from,
                    via = plan.via.as_str(),
                    "rebuilding partition state by replay"
                );
            }
        }
        core.rebalances += 1;
        let owned: Vec<i32> = core.slots.keys().copied().collect();
        drop(core);
        tracing::info!(
            consumer = self.metrics.consumer,
            "assigned {} → owning {}",
            format_ids(&ids),
            format_ids(&owned)
        );
    }

    fn plan_start(
        &self,
        consumer: &BaseConsumer<Self>,
        partition: i32,
        committed: Option<i64>,
        metadata: Option<CommitMetadata>,
    ) -> StartPlan {
        let Some(c) = committed else {
            // Never committed: the group's auto.offset.reset decides, and
            // there is no earlier state to rebuild.
            return StartPlan {
                start: None,
                live_from: i64::MIN,
                count_from: i64::MIN,
                via: ReplayFrom::Nothing,
            };
        };
        let watermarks = consumer.fetch_watermarks(&self.topic, partition, REBALANCE_CALL_TIMEOUT);
        // A committed offset beyond the end of the log (the log was
        // truncated, or the topic deleted and created again) would make every
        // new event below it look already processed: replayed as warm-up,
        // never counted nor judged. The position is taken to be the end of
        // the log instead.
        let c = match &watermarks {
            Ok((_, high)) if c > *high => {
                tracing::warn!(
                    consumer = self.metrics.consumer,
                    partition,
                    committed = c,
                    end = *high,
                    "the committed offset is beyond the end of the partition (log truncated or topic recreated?); resuming at its end"
                );
                *high
            }
            _ => c,
        };
        // What the previous owner processed and counted beyond its commit
        // (its effects were still in flight when it gave the partition up,
        // or when it last committed before a crash) is processed again for
        // the effects but not counted twice.
        let count_from = metadata
            .and_then(|m| m.done)
            .filter(|&d| d > c)
            .map_or(c, |d| match &watermarks {
                Ok((_, high)) => d.min(*high),
                Err(_) => c,
            });
        let live = StartPlan {
            start: Some(c),
            live_from: c,
            count_from,
            via: ReplayFrom::Nothing,
        };
        if !self.rebuild || self.window_ms <= 0 {
            return live;
        }
        let low = match watermarks {
            Ok((low, _high)) => low,
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot read the partition's low watermark; not rebuilding");
                return live;
            }
        };
        let Some(meta) = metadata else {
            tracing::warn!(
                partition,
                "committed offset carries no replay metadata (committed by another tool?); starting without rebuild"
            );
            return live;
        };
        // The metadata's `from` covers the window in force when it was
        // written; a wider window now needs a timestamp lookup.
        let target_ms = meta.watermark_ms.saturating_sub(self.window_ms + self.skew_ms);
        let by_time = self.offset_for_time(consumer, partition, target_ms);
        let (from, via) = match by_time {
            Some(o) if meta.window_ms >= self.window_ms => (o.min(meta.replay_from), ReplayFrom::TimestampAndMetadata),
            Some(o) => (o, ReplayFrom::Timestamp),
            None => (meta.replay_from, ReplayFrom::CommitMetadata),
        };
        let from = from.max(low).min(c);
        StartPlan {
            start: Some(from),
            live_from: c,
            count_from,
            via,
        }
    }

    /// The earliest offset with a timestamp at or after `time_ms`, if the
    /// broker can say (librdkafka's mock cluster cannot).
    fn offset_for_time(&self, consumer: &BaseConsumer<Self>, partition: i32, time_ms: i64) -> Option<i64> {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(&self.topic, partition, Offset::Offset(time_ms))
            .ok()?;
        let answer = consumer.offsets_for_times(query, REBALANCE_CALL_TIMEOUT).ok()?;
        match answer.find_partition(&self.topic, partition)?.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        }
    }

    /// Drains, commits and drops the revoked partitions.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList, lost: bool) {
        let ids = partition_ids(tpl, &self.topic);
        if lost {
            self.metrics.rebalance_lost.inc();
        } else {
            self.metrics.rebalance_revoke.inc();
        }
        if ids.is_empty() {
            return;
        }
        let mut core = self.lock();
        if !lost {
            // While stopping, the revocation the close makes fits in what is
            // left of the stop budget.
            let stop_deadline = self.stop_deadline.lock().ok().and_then(|d| *d);
            let bound = |wanted: Duration| {
                stop_deadline.map_or(wanted, |d| wanted.min(d.saturating_duration_since(Instant::now())))
            };
            let until = Instant::now() + bound(core.options.consumer.drain_timeout);
            core.drain(&ids, until);
            core.flush_audit();
            match self.commit_handoff(
                consumer,
                &core,
                &ids,
                bound(REBALANCE_CALL_TIMEOUT).max(Duration::from_millis(100)),
            ) {
                Ok(_) => {}
                Err((e, commit)) if is_rebalancing(&e) => {
                    tracing::info!(
                        consumer = self.metrics.consumer,
                        "the coordinator deferred the handoff commit of {} (rebalance in progress); retrying",
                        format_ids(&ids)
                    );
                    // The retry must land while the new owner still waits
                    // for it (up to `handoff_wait` from its assignment, which
                    // comes after this revocation): half of it leaves a
                    // margin for the request in flight. Later, the new owner
                    // may have committed further, and this commit would
                    // move the group's offset backwards.
                    let deadline = Instant::now() + self.handoff_wait / 2;
                    if let Ok(mut pending) = self.pending_handoff.lock() {
                        let merged = match pending.take() {
                            Some((mut earlier, _)) => {
                                for e in commit.elements() {
                                    let _ = earlier.add_partition_offset(e.topic(), e.partition(), e.offset());
                                    if let Some(mut m) = earlier.find_partition(e.topic(), e.partition()) {
                                        m.set_metadata(e.metadata());
                                    }
                                }
                                earlier
                            }
                            None => commit,
                        };
                        *pending = Some((merged, deadline));
                    }
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, "commit on revoke failed; the next owner re-processes from the last commit");
                }
            }
        }
        for p in &ids {
            core.slots.remove(p);
            self.metrics.partition_revoked(&self.topic, *p);
        }
        core.rebalances += 1;
        let owned: Vec<i32> = core.slots.keys().copied().collect();
        drop(core);
        if let Ok(mut offsets) = self.broker_offsets.lock() {
            for p in &ids {
                offsets.remove(p);
            }
        }
        let what = if lost { "lost" } else { "revoked" };
        tracing::info!(
            consumer = self.metrics.consumer,
            "{what} {} → owning {}",
            format_ids(&ids),
            format_ids(&owned)
        );
    }
}

struct StartPlan {
    start: Option<i64>,
    live_from: i64,
    count_from: i64,
    via: ReplayFrom,
}

/// How a rebuilding partition's replay start was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplayFrom {
    /// No rebuild: the partition starts at its committed offset (or where
    /// `auto.offset.reset` says).
    Nothing,
    /// ListOffsets by timestamp (`offsets_for_times`), the broker's index:
    /// the path every real Kafka takes.
    Timestamp,
    /// The earlier of the timestamp lookup and the previous owner's commit
    /// metadata (which also covers events older than their position).
    TimestampAndMetadata,
    /// The previous owner's commit metadata alone: the broker could not
    /// answer by timestamp (librdkafka's mock cluster cannot).
    CommitMetadata,
}

impl ReplayFrom {
    fn as_str(self) -> &'static str {
        match self {
            ReplayFrom::Nothing => "none",
            ReplayFrom::Timestamp => "offsets_for_times",
            ReplayFrom::TimestampAndMetadata => "offsets_for_times+metadata",
            ReplayFrom::CommitMetadata => "commit metadata",
        }
    }
}

impl<A: ConsumerApp> Core<A> {
    /// Handles one message of an owned partition.
    fn handle(&mut self, message: &BorrowedMessage<'_>, now: i64) {
        let partition = message.partition();
        let offset = message.offset();
        let Some(slot) = self.slots.get_mut(&partition) else {
            return; // revoked between fetch and poll
        };
        let mode = if offset < slot.live_from {
            Mode::Warmup
        } else if offset < slot.count_from {
            Mode::Redo
        } else {
            Mode::Live
        };
        if mode == Mode::Live
            && let Some(audit) = &mut self.audit
        {
            use std::io::Write;
            // One write per line: `writeln!` writes piece by piece, and a
            // buffer flush between pieces would leave half a line on disk
            // for a reader (or a kill -9) to find.
            let mut line = [0u8; 64];
            let mut cursor = std::io::Cursor::new(&mut line[..]);
            let _ = writeln!(cursor, "{partition} {offset} {now}");
            let len = cursor.position() as usize;
            let _ = audit.write_all(&line[..len]);
        }
        if mode == Mode::Warmup {
            if let Some(r) = &mut slot.rebuild {
                r.replayed += 1;
            }
        } else if slot.rebuild.is_some() {
            Self::finish_rebuild(&self.metrics, partition, slot);
        }
        let reference_ms = message.timestamp().to_millis().unwrap_or(now);
        let payload = message.payload().unwrap_or_default();
        // With tracing on, each live event is a span in the trace its
        // producer started (W3C context from the message headers).
        let span = (self.options.trace && mode == Mode::Live).then(|| {
            let span = tracing::info_span!(
                "process_event",
                otel.kind = "consumer",
                messaging.system = "kafka",
                messaging.destination.name = %message.topic(),
                messaging.kafka.partition = partition,
                messaging.kafka.offset = offset,
                consumer = self.metrics.consumer,
            );
            let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(
                &span,
                crate::telemetry::trace::extract(header_pairs(message)),
            );
            span
        });
        let _entered = span.as_ref().map(tracing::Span::enter);
        // Processing time is sampled (one live event in PROCESSING_SAMPLE):
        // two clock reads per event would cost more than a quantile needs.
        let started = (mode == Mode::Live && {
            self.sampled = self.sampled.wrapping_add(1);
            self.sampled.is_multiple_of(PROCESSING_SAMPLE)
        })
        .then(Instant::now);
        let decoded = decode(payload, reference_ms, &self.options.limits)
            .and_then(|event| check_key(message.key(), &event).map(|()| event));
        let slot = self.slots.get_mut(&partition).expect("slot checked above");
        match decoded {
            Ok(mut event) => {
                event.record = Some((partition, offset));
                let processor = self.app.processor();
                processor.process(&mut slot.state, &event, mode, &mut self.outputs);
                let mut effects = 0;
                if mode.counts() {
                    self.counts.consumed += 1;
                    self.counts.processed += 1;
                    if let Some(started) = started {
                        self.processing.observe(started.elapsed().as_secs_f64());
                    }
                    self.e2e.observe((now - event.timestamp_ms).max(0) as f64 / 1000.0);
                    self.live_since_report += 1;
                }
                if mode.emits() {
                    let epoch = slot.epoch;
                    for output in std::mem::take(&mut self.outputs) {
                        if let Some(mut record) = self.app.publish(output, now) {
                            // The alert continues the event's trace.
                            record.headers.extend(match &span {
                                Some(span) => crate::telemetry::trace::inject(span),
                                None => crate::telemetry::trace::passthrough(header_pairs(message)),
                            });
                            effects += 1;
                            self.effects.send(Box::new(Pending {
                                partition,
                                epoch,
                                offset,
                                event_time_ms: event.timestamp_ms,
                                kind: EffectKind::Alert,
                                record,
                                attempts: 0,
                            }));
                        }
                    }
                }
                self.outputs.clear();
                let slot = self.slots.get_mut(&partition).expect("slot checked above");
                let event_time = self.app.processor().event_time_ms(&slot.state);
                slot.tracker
                    .processed(offset, Some(event.timestamp_ms), effects, event_time);
                if mode == Mode::Warmup && offset + 1 >= slot.live_from {
                    Self::finish_rebuild(&self.metrics, partition, slot);
                }
            }
            Err(rejection) => {
                let mut effects = 0;
                if mode.counts() {
                    self.counts.consumed += 1;
                    self.counts.rejected[rejection.reason.index()] += 1;
                }
                if mode.emits() {
                    if let Some(suppressed) = self.rejection_log.allow() {
                        tracing::warn!(
                            consumer = self.metrics.consumer,
                            partition,
                            offset,
                            reason = rejection.reason.code(),
                            suppressed,
                            "❌ rejected event: {}; sent to the dead-letter topic",
                            rejection.detail
                        );
                    }
                    let record = dead_letter(message, &rejection, &self.options, now);
                    effects = 1;
                    self.effects.send(Box::new(Pending {
                        partition,
                        epoch: slot.epoch,
                        offset,
                        event_time_ms: 0,
                        kind: EffectKind::DeadLetter(rejection.reason),
                        record,
                        attempts: 0,
                    }));
                }
                let slot = self.slots.get_mut(&partition).expect("slot checked above");
                let event_time = self.app.processor().event_time_ms(&slot.state);
                slot.tracker.processed(offset, None, effects, event_time);
                if mode == Mode::Warmup && offset + 1 >= slot.live_from {
                    Self::finish_rebuild(&self.metrics, partition, slot);
                }
            }
        }
    }

    fn finish_rebuild(metrics: &ConsumerMetrics, partition: i32, slot: &mut Slot<<A::Processor as Processor>::State>) {
        if let Some(r) = slot.rebuild.take() {
            let seconds = r.started.elapsed().as_secs_f64();
            metrics.rebuild_events.inc_by(r.replayed);
            metrics.rebuild_seconds.observe(seconds);
            slot.replayed_total += r.replayed;
            tracing::info!(
                consumer = metrics.consumer,
                partition,
                replayed = r.replayed,
                seconds = format!("{seconds:.3}"),
                "partition rebuilt; live from offset {}",
                slot.live_from
            );
        }
    }

    /// Applies delivery reports, waiting up to `wait` for the first.
    fn apply_deliveries(&mut self, wait: Duration) {
        let mut timeout = wait;
        while let Some(report) = self.effects.next_delivery(timeout) {
            timeout = Duration::ZERO;
            match report {
                Delivery::Acknowledged(p) => {
                    // (The alert latency is observed by the producer's
                    // delivery callback, when the acknowledgement arrives.)
                    if let EffectKind::DeadLetter(reason) = p.kind {
                        self.counts.dlq[reason.index()] += 1;
                    }
                    if let Some(slot) = self.slots.get_mut(&p.partition)
                        && slot.epoch == p.epoch
                    {
                        slot.tracker.acknowledged(p.offset);
                    }
                }
                Delivery::Failed(p, e) if crate::kafka::is_permanent_delivery_error(&e) => {
                    crate::kafka::declare_fatal(format!(
                        "cannot publish to {}: {e} (check that the topic exists — KAFKA_ALERTS_TOPIC, KAFKA_DLQ_TOPIC, \
                         `activity-tracker topics create` — and that this client may write to it)",
                        p.record.topic
                    ));
                }
                Delivery::Failed(p, e) if self.slots.get(&p.partition).is_none_or(|s| s.epoch != p.epoch) => {
                    tracing::debug!(error = %e, partition = p.partition, "delivery failed for a partition no longer owned; dropped");
                }
                Delivery::Failed(p, e) => {
                    self.metrics.effects_retried.inc();
                    if let Some(suppressed) = self.rejection_log.allow() {
                        tracing::warn!(error = %e, topic = %p.record.topic, attempts = p.attempts, suppressed, "delivery failed; retrying");
                    }
                }
            }
        }
        let slots = &self.slots;
        self.effects
            .drop_retries(|p| slots.get(&p.partition).is_some_and(|s| s.epoch == p.epoch));
        self.effects.resend_due();
    }

    /// Waits for the in-flight effects of `partitions`, up to `deadline`.
    fn drain(&mut self, partitions: &[i32], deadline: Instant) {
        loop {
            let pending: usize = partitions
                .iter()
                .filter_map(|p| self.slots.get(p))
                .map(|s| s.tracker.in_flight())
                .sum();
            if pending == 0 {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    pending,
                    "drain timeout: committing up to the last fully acknowledged event; the rest will be re-processed by the next owner"
                );
                return;
            }
            self.apply_deliveries(Duration::from_millis(50));
        }
    }

    /// Makes the audit trail durable up to what has been processed; called
    /// before offsets are stored or committed.
    fn flush_audit(&mut self) {
        if let Some(audit) = &mut self.audit
            && let Err(e) = std::io::Write::flush(audit)
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    /// Stores the committable offset of every live partition that advanced.
    fn store_offsets(&mut self, consumer: &BaseConsumer<RuntimeContext<A>>) {
        self.flush_audit();
        let mut tpl = TopicPartitionList::new();
        for (p, slot) in &mut self.slots {
            if slot.rebuild.is_some() {
                continue;
            }
            if let Some((offset, meta)) = slot.tracker.take_new_committable()
                && offset >= slot.live_from
            {
                let _ = tpl.add_partition_offset(&self.options.topic, *p, Offset::Offset(offset));
                if let Some(mut e) = tpl.find_partition(&self.options.topic, *p) {
                    e.set_metadata(meta.encode());
                }
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.store_offsets(&tpl)
        {
            tracing::debug!(error = %e, "cannot store offsets (partition revoked meanwhile?)");
        }
    }

    fn flush_metrics(&mut self) {
        let c = std::mem::take(&mut self.counts);
        self.metrics.consumed.inc_by(c.consumed);
        self.metrics.processed.inc_by(c.processed);
        for (i, n) in c.rejected.iter().enumerate() {
            if *n > 0 {
                self.metrics.rejected[i].inc_by(*n);
            }
        }
        for (i, n) in c.dlq.iter().enumerate() {
            if *n > 0 {
                self.metrics.dlq[i].inc_by(*n);
            }
        }
        self.totals.consumed += c.consumed;
        self.totals.processed += c.processed;
        for i in 0..c.rejected.len() {
            self.totals.rejected[i] += c.rejected[i];
            self.totals.dlq[i] += c.dlq[i];
        }
        self.processing.flush();
        self.e2e.flush();
        self.metrics.in_flight.set(self.effects.in_flight() as i64);
    }

    fn status(
        &self,
        broker_offsets: &BTreeMap<i32, BrokerOffsets>,
        shared: &ConsumerShared,
        member_id: Option<String>,
    ) -> ConsumerStatus {
        let partitions = self
            .slots
            .iter()
            .map(|(p, s)| {
                let position = s
                    .tracker
                    .next_offset()
                    .or((s.live_from != i64::MIN).then_some(s.live_from));
                let broker = broker_offsets.get(p);
                let lag = match (broker, position) {
                    (Some(b), Some(pos)) => Some((b.high - pos).max(0)),
                    _ => None,
                };
                // Against the group's committed offset (or the log's start
                // when the group has committed nothing): what a restart now
                // would process, again or for the first time.
                let committed_lag = broker.and_then(|b| Some((b.high - b.committed.or(b.low)?).max(0)));
                PartitionStatus {
                    partition: *p,
                    position,
                    lag,
                    committed: broker.and_then(|b| b.committed),
                    committed_lag,
                    rebuilding: s.rebuild.is_some(),
                    live_from: (s.live_from != i64::MIN).then_some(s.live_from),
                    replayed_events: s.replayed_total + s.rebuild.as_ref().map_or(0, |r| r.replayed),
                    effects_in_flight: s.tracker.in_flight(),
                }
            })
            .collect();
        ConsumerStatus {
            consumer: self.app_name().to_string(),
            group: self.options.group.clone(),
            member_id,
            group_instance_id: self.options.consumer.group_instance_id.clone(),
            partitions,
            events_consumed: self.totals.consumed + self.counts.consumed,
            events_processed: self.totals.processed + self.counts.processed,
            events_rejected: self.totals.rejected.iter().sum::<u64>() + self.counts.rejected.iter().sum::<u64>(),
            rebalances: self.rebalances,
            ready: shared.ready(),
        }
    }

    fn app_name(&self) -> &'static str {
        self.metrics.consumer
    }

    fn header(&self, status: &ConsumerStatus) -> String {
        format!(
            "⏱️  {} events processed | {} rejected | group {} | partitions {}",
            status.events_processed,
            status.events_rejected,
            status.group,
            status.partition_list()
        )
    }
}

/// The dead-letter copy of a rejected message: original key and bytes, and
/// headers saying why and where it came from.
fn dead_letter(message: &BorrowedMessage<'_>, rejection: &Rejection, options: &RuntimeOptions, now: i64) -> Record {
    let payload = message.payload().unwrap_or_default();
    let truncated = payload.len() > DLQ_MAX_PAYLOAD_BYTES;
    let mut headers = vec![
        ("dlq.reason".to_string(), rejection.reason.code().as_bytes().to_vec()),
        ("dlq.detail".to_string(), rejection.detail.as_bytes().to_vec()),
        ("dlq.source.topic".to_string(), message.topic().as_bytes().to_vec()),
        (
            "dlq.source.partition".to_string(),
            message.partition().to_string().into_bytes(),
        ),
        (
            "dlq.source.offset".to_string(),
            message.offset().to_string().into_bytes(),
        ),
        ("dlq.consumer.group".to_string(), options.group.as_bytes().to_vec()),
        ("dlq.time".to_string(), Rfc3339(now).to_string().into_bytes()),
    ];
    if let Some(t) = message.timestamp().to_millis() {
        // Replay restores it, so event-time checks see the original.
        headers.push(("dlq.source.timestamp".to_string(), t.to_string().into_bytes()));
    }
    if truncated {
        headers.push(("dlq.truncated".to_string(), b"true".to_vec()));
        headers.push(("dlq.original.bytes".to_string(), payload.len().to_string().into_bytes()));
    }
    let key = message.key().map(|k| {
        if k.len() > DLQ_MAX_KEY_BYTES {
            headers.push(("dlq.key.truncated".to_string(), k.len().to_string().into_bytes()));
        }
        k[..k.len().min(DLQ_MAX_KEY_BYTES)].to_vec()
    });
    if let Some(original) = message.headers() {
        let mut budget = DLQ_MAX_HEADER_BYTES;
        let mut dropped = 0usize;
        for h in original.iter() {
            if h.key.starts_with("dlq.") {
                continue;
            }
            let value = h.value.unwrap_or_default();
            match budget.checked_sub(h.key.len() + value.len()) {
                Some(left) => {
                    budget = left;
                    headers.push((h.key.to_string(), value.to_vec()));
                }
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            headers.push(("dlq.headers.dropped".to_string(), dropped.to_string().into_bytes()));
        }
    }
    Record {
        topic: options.dlq_topic.clone(),
        key,
        payload: payload[..payload.len().min(DLQ_MAX_PAYLOAD_BYTES)].to_vec(),
        headers,
    }
}

/// A message's headers as (key, value) pairs.
fn header_pairs<'a>(message: &'a BorrowedMessage<'_>) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
    message
        .headers()
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value.unwrap_or_default()))
}

/// The consumer's member id, once it has joined its group.
fn member_id<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<String> {
    // SAFETY: rd_kafka_memberid returns NULL or a string we own and must free
    // with rd_kafka_mem_free; the client pointer is valid for `consumer`'s life.
    unsafe {
        let ptr = consumer.client().native_ptr();
        let id = rdkafka::bindings::rd_kafka_memberid(ptr);
        if id.is_null() {
            return None;
        }
        let text = std::ffi::CStr::from_ptr(id).to_string_lossy().into_owned();
        rdkafka::bindings::rd_kafka_mem_free(ptr, id.cast());
        (!text.is_empty()).then_some(text)
    }
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
            sampled: 0,
            e2e: metrics.e2e_processed.local(),
            metrics: metrics.clone(),
            counts: LocalCounts::default(),
            totals: LocalCounts::default(),
            next_epoch: 1,
            outputs: Vec::new(),
            rebalances: 0,
            live_since_report: 0,
            last_report: Instant::now(),
            rejection_log: RateLimitedLog::new(),
            audit,
        }),
        broker_offsets: Mutex::new(BTreeMap::new()),
        pending_handoff: Mutex::new(None),
        handoff_wait: options.consumer.drain_timeout.min(HANDOFF_WAIT),
        stop_deadline: Mutex::new(None),
        metrics: metrics.clone(),
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
    let mut poll_errors = RateLimitedLog::new();
    // The wall-clock time of the message handled in the last iteration:
    // reused as this iteration's heartbeat, so a busy loop reads the wall
    // clock once and the monotonic clock once per message (reading clocks
    // was 10 % of a consumer thread's profile).
    let mut handled_at: Option<i64> = None;
    let mut paused = false;
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
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => {
                if let Some(suppressed) = poll_errors.allow() {
                    tracing::warn!(consumer = name, error = %e, suppressed, "consumer error (librdkafka retries by itself)");
                }
            }
            Some(Ok(message)) => {
                let mut core = ctx.lock();
                let at = now_ms();
                core.handle(&message, at);
                handled_at = Some(at);
                shared.handled.fetch_add(1, Ordering::Relaxed);
                let interval = core.options.consumer.stats_interval;
                if core.live_since_report >= interval && core.last_report.elapsed() >= Duration::from_secs(1) {
                    core.live_since_report = 0;
                    core.last_report = Instant::now();
                    drop(core);
                    print_console_report(&consumer, &ctx, &shared);
                }
            }
        }
    }

    // Graceful stop: give every partition back through the revoke path
    // (drain, commit, drop), then leave the group.
    shared.stopping.store(true, Ordering::Relaxed);
    metrics.ready.set(0);
    // Everything below fits in SHUTDOWN_TIMEOUT: the work (drain, commit,
    // revoke, flush) until `deadline`, and the close (leaving the group) in
    // the reserve after it.
    // The loop noticed the stop up to one poll late, and the process still
    // prints its summary after this returns: keep a margin for both.
    let stop_started = Instant::now();
    let stop_budget = options.consumer.shutdown_timeout.saturating_sub(EXIT_MARGIN);
    let close_reserve = (stop_budget / 4).min(CLOSE_BUDGET);
    let deadline = stop_started + stop_budget - close_reserve;
    tracing::info!(consumer = name, "stopping: revoking partitions");
    // Capture the final report while the partitions' state is still here.
    let (final_report, status) = publish_snapshot(&consumer, &ctx, &shared, true);
    let final_summary = {
        let mut core = ctx.lock();
        core.apply_deliveries(Duration::ZERO);
        core.store_offsets(&consumer);
        let header = core.header(&status);
        let Core { app, slots, .. } = &mut *core;
        let views: Vec<(i32, &<A::Processor as Processor>::State)> =
            slots.iter().map(|(p, s)| (*p, &s.state)).collect();
        app.final_summary(&views, &header)
    };
    // Commit everything processed while still a full member of the group.
    // A coordinator in the middle of someone else's rebalance may refuse
    // (librdkafka's mock does; Kafka refuses only between join and sync):
    // keep polling so this member takes part, and retry, for up to half the
    // shutdown budget. Messages polled meanwhile are not processed.
    let precommit_deadline = Instant::now() + (deadline - stop_started) / 2;
    loop {
        let result = {
            let mut core = ctx.lock();
            let owned: Vec<i32> = core.slots.keys().copied().collect();
            core.drain(
                &owned,
                precommit_deadline.min(Instant::now() + options.consumer.drain_timeout),
            );
            core.flush_audit();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            ctx.commit_handoff(&consumer, &core, &owned, left)
        };
        match result {
            Ok(_) => break,
            Err((e, _)) if Instant::now() < precommit_deadline && is_rebalancing(&e) => {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            Err((e, _)) => {
                tracing::warn!(consumer = name, error = %e, "final commit failed; the next owner re-processes from the last commit");
                break;
            }
        }
    }
    {
        let mut core = ctx.lock();
        core.flush_metrics();
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = core.effects.flush(remaining) {
            tracing::warn!(error = %e, "not every alert was acknowledged before exit");
        }
    }
    // The close gives every partition back through the revoke callback
    // (drain, hand-over commit, drop) and then leaves the group, waiting for
    // the coordinator's answer, so the rest of the group rebalances at once.
    // (An `unsubscribe()` first revokes too, but under the classic protocol
    // librdkafka 2.12 then often closes without a LeaveGroup: measured on
    // Kafka 4.4, the remaining replicas waited a whole session timeout.)
    if let Ok(mut d) = ctx.stop_deadline.lock() {
        *d = Some(stop_started + stop_budget);
    }
    let close_budget = (stop_started + stop_budget).saturating_duration_since(Instant::now());
    close_within(consumer, close_budget, name);
    // A close still at work past its budget holds the state: not waited for.
    if ctx.core.try_lock().map_or(true, |core| !core.slots.is_empty()) {
        tracing::warn!(
            consumer = name,
            "shutdown timeout before every partition was revoked; uncommitted events will be re-processed"
        );
    }
    tracing::info!(consumer = name, "stopped");
    Ok(RunOutcome {
        final_summary,
        final_report,
        status,
    })
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

/// Closes the Kafka consumer (leave the group, destroy the client), waiting
/// at most `budget`. Everything that matters (drain, handoff commit, alert
/// flush) is done by now; librdkafka's destroy can still block on a request
/// a broker never answers (seen with the embedded broker's coordinator), and
/// a pod must exit within its grace period regardless.
fn close_within<C: ConsumerContext + 'static>(consumer: BaseConsumer<C>, budget: Duration, name: &str) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let closer = std::thread::Builder::new()
        .name(format!("{name}-close"))
        .spawn(move || {
            drop(consumer);
            let _ = done_tx.send(());
        });
    if closer.is_err() || done_rx.recv_timeout(budget).is_err() {
        tracing::warn!(
            consumer = name,
            "the Kafka client did not close within the shutdown budget; exiting anyway"
        );
    }
}

fn publish_snapshot<A: ConsumerApp>(
    consumer: &BaseConsumer<RuntimeContext<A>>,
    ctx: &RuntimeContext<A>,
    shared: &ConsumerShared,
    final_snapshot: bool,
) -> (serde_json::Value, ConsumerStatus) {
    let member = member_id(consumer);
    shared.joined.store(member.is_some(), Ordering::Relaxed);
    let broker_offsets = ctx.broker_offsets.lock().map(|h| h.clone()).unwrap_or_default();
    let mut core = ctx.lock();
    let status = core.status(&broker_offsets, shared, member);
    for p in &status.partitions {
        if let Some(lag) = p.lag {
            core.metrics.set_lag(&core.options.topic, p.partition, lag);
        }
        if let Some(lag) = p.committed_lag {
            core.metrics.set_committed_lag(&core.options.topic, p.partition, lag);
        }
    }
    core.metrics.ready.set(i64::from(status.ready && !final_snapshot));
    let Core { app, slots, .. } = &mut *core;
    let views: Vec<(i32, &<A::Processor as Processor>::State)> = slots.iter().map(|(p, s)| (*p, &s.state)).collect();
    let mut report = app.snapshot(&views);
    drop(core);
    if let serde_json::Value::Object(map) = &mut report {
        map.insert(
            "consumer".to_string(),
            serde_json::to_value(&status).unwrap_or_default(),
        );
    }
    if let Ok(mut r) = shared.report.write() {
        *r = report.clone();
    }
    if let Ok(mut s) = shared.status.write() {
        *s = status.clone();
    }
    (report, status)
}

fn print_console_report<A: ConsumerApp>(
    consumer: &BaseConsumer<RuntimeContext<A>>,
    ctx: &RuntimeContext<A>,
    shared: &ConsumerShared,
) {
    let (_, status) = publish_snapshot(consumer, ctx, shared, false);
    let mut core = ctx.lock();
    let header = core.header(&status);
    let Core { app, slots, .. } = &mut *core;
    let views: Vec<(i32, &<A::Processor as Processor>::State)> = slots.iter().map(|(p, s)| (*p, &s.state)).collect();
    let text = app.console_report(&views, &header);
    drop(core);
    if !text.is_empty() {
        print!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(entries: &[(i32, Option<i64>)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in entries {
            let offset = o.map_or(Offset::Invalid, Offset::Offset);
            tpl.add_partition_offset("t", p, offset).unwrap();
            tpl.find_partition("t", p).unwrap().set_metadata(format!("meta-{p}"));
        }
        tpl
    }

    #[test]
    fn a_late_handoff_never_moves_the_groups_offset_backwards() {
        let handoff = offsets(&[(0, Some(100)), (1, Some(100)), (2, Some(100)), (3, Some(100))]);
        // The new owners committed further on 0, the same on 1, less on 2;
        // nothing is committed on 3.
        let group = offsets(&[(0, Some(140)), (1, Some(100)), (2, Some(90)), (3, None)]);
        let ahead = still_ahead(&handoff, &group);
        let kept: Vec<(i32, Offset, String)> = ahead
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset(), e.metadata().to_string()))
            .collect();
        assert_eq!(
            kept,
            vec![
                (2, Offset::Offset(100), "meta-2".to_string()),
                (3, Offset::Offset(100), "meta-3".to_string())
            ]
        );
    }
}
