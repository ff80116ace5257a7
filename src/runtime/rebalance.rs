//! Rebalances and hand-overs: the librdkafka context's callbacks. On
//! revocation a partition drains its in-flight effects, commits with its
//! metadata (event time, done mark) and drops its state; on assignment the
//! start plan decides where replay begins and where processing goes live.

use super::*;

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
pub(super) fn is_rebalancing(e: &rdkafka::error::KafkaError) -> bool {
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
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Core<A>> {
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
    pub(super) fn commit_handoff(
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
    pub(super) fn retry_handoff(&self, consumer: &BaseConsumer<Self>) {
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

    pub(super) fn owned(&self) -> TopicPartitionList {
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
        let assigned_at = Instant::now();
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
            let mut plan = self.plan_start(consumer, p, committed_offset, metadata);
            // A snapshot from within the replay bounds the replay to its tail.
            let (restored, cursor) = match (&self.snapshots, plan.start) {
                (Some(snapshots), Some(from)) if from < plan.live_from => {
                    self.restore(snapshots, p, from, plan.live_from)
                }
                _ => (None, snapshots::Cursor::default()),
            };
            if let Some(r) = &restored {
                plan.start = Some(r.offset);
                plan.via = ReplayFrom::Snapshot;
            }
            if let Some(start) = plan.start
                && let Err(e) = tpl.set_partition_offset(&self.topic, p, Offset::Offset(start))
            {
                tracing::warn!(partition = p, error = %e, "cannot set start offset");
            }
            plans.push((p, plan, restored, cursor));
        }

        let mut core = self.lock();
        let snapshot_interval = self.snapshots.as_ref().map_or(Duration::ZERO, |s| s.options.interval);
        for (p, plan, restored, cursor) in plans {
            let epoch = core.next_epoch;
            core.next_epoch += 1;
            let (state, tracker) = match restored {
                Some(r) => (r.state, r.tracker),
                None => (core.app.processor().new_state(), OffsetTracker::new(self.window_ms)),
            };
            let rebuilding = plan.start.is_some_and(|s| s < plan.live_from);
            core.slots.insert(
                p,
                Slot {
                    state,
                    tracker,
                    epoch,
                    live_from: plan.live_from,
                    count_from: plan.count_from,
                    rebuild: rebuilding.then_some(Rebuild {
                        started: assigned_at,
                        replayed: 0,
                    }),
                    replayed_total: 0,
                    snapshot: cursor,
                    snapshot_due: Instant::now() + snapshot_interval,
                },
            );
            self.metrics.partition_assigned(&self.topic, p);
            if plan.via == ReplayFrom::Snapshot && !rebuilding {
                // Restored exactly at the committed offset (a graceful
                // hand-over's snapshot): live at once, nothing to replay.
                self.metrics.rebuilds_by_snapshot.inc();
                self.metrics
                    .rebuild_seconds
                    .observe(assigned_at.elapsed().as_secs_f64());
            }
            if rebuilding {
                match plan.via {
                    ReplayFrom::Snapshot => self.metrics.rebuilds_by_snapshot.inc(),
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
    pub(super) fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList, lost: bool) {
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
            // The state now stands at the hand-over commit: its snapshot
            // lets the next owner go live without replaying anything.
            if let Some(snapshots) = &self.snapshots {
                let until = Instant::now() + bound(HANDOVER_SNAPSHOT_WAIT);
                core.write_snapshots(snapshots, &ids, until);
                snapshots.flush(until.saturating_duration_since(Instant::now()));
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
    /// A partition snapshot: only the events since it are replayed.
    Snapshot,
}

impl ReplayFrom {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ReplayFrom::Nothing => "none",
            ReplayFrom::Timestamp => "offsets_for_times",
            ReplayFrom::TimestampAndMetadata => "offsets_for_times+metadata",
            ReplayFrom::CommitMetadata => "commit metadata",
            ReplayFrom::Snapshot => "snapshot",
        }
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
