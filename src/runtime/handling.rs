//! Handling one decoded message: process it in the slot's mode (warm-up,
//! redo, live), publish the effects, track the offset, count. (Decoding
//! happens before, a batch at a time: `batch`.)

use super::*;

impl<A: ConsumerApp> Core<A> {
    /// Handles one message of an owned partition, polled when its slot had
    /// `epoch`, decoded into `decoded`.
    pub(super) fn handle(&mut self, message: &BorrowedMessage<'_>, epoch: u64, decoded: Decoded<'_>, now: i64) {
        let partition = message.partition();
        let offset = message.offset();
        let Some(slot) = self.slots.get_mut(&partition) else {
            return; // revoked between fetch and poll
        };
        if slot.epoch != epoch {
            // Revoked and assigned again since the poll: the new assignment
            // starts from its own position and fetches this message again.
            return;
        }
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
        // Processing time is sampled (the messages whose decoding was
        // timed): two clock reads per event would cost more than a quantile
        // needs.
        let started = decoded
            .took
            .filter(|_| mode == Mode::Live)
            .map(|took| (Instant::now(), took));
        let slot = self.slots.get_mut(&partition).expect("slot checked above");
        match decoded.result {
            Ok(mut event) => {
                event.record = Some((partition, offset));
                let processor = self.app.processor();
                processor.process(&mut slot.state, &event, mode, &mut self.outputs);
                let mut effects = 0;
                if mode.counts() {
                    self.counts.consumed += 1;
                    self.counts.processed += 1;
                    if let Some((started, decoding)) = started {
                        self.processing.observe((started.elapsed() + decoding).as_secs_f64());
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
    pub(super) fn apply_deliveries(&mut self, wait: Duration) {
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
    pub(super) fn drain(&mut self, partitions: &[i32], deadline: Instant) {
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
    pub(super) fn flush_audit(&mut self) {
        if let Some(audit) = &mut self.audit
            && let Err(e) = std::io::Write::flush(audit)
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    /// Stores the committable offset of every live partition that advanced.
    pub(super) fn store_offsets(&mut self, consumer: &BaseConsumer<RuntimeContext<A>>) {
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

    pub(super) fn flush_metrics(&mut self) {
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

    pub(super) fn status(
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

    pub(super) fn header(&self, status: &ConsumerStatus) -> String {
        format!(
            "⏱️  {} events processed | {} rejected | group {} | partitions {}",
            status.events_processed,
            status.events_rejected,
            status.group,
            status.partition_list()
        )
    }
}
