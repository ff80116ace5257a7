//! The graceful stop: every partition given back through the revoke path
//! (drain, hand-over commit), alerts flushed, the group left — all of it
//! within SHUTDOWN_TIMEOUT, as one [`StopBudget`].

use super::*;

/// Longest the final close of the Kafka client may take: by then offsets are
/// committed and alerts flushed, and leaving the group takes milliseconds.
const CLOSE_BUDGET: Duration = Duration::from_secs(5);
/// Part of SHUTDOWN_TIMEOUT left for what happens around the runtime's own
/// stop: noticing the signal (one poll) and printing the final summary.
const EXIT_MARGIN: Duration = Duration::from_millis(300);

/// The time of a graceful stop, from the moment it starts: SHUTDOWN_TIMEOUT
/// less a margin for noticing the signal and printing the summary. The work
/// (drain, commit, flush) has until [`StopBudget::work_by`]; retrying a
/// commit refused mid-rebalance, at most the first half of that; the close
/// (leaving the group) has the reserve after it, a quarter of the budget up
/// to [`CLOSE_BUDGET`].
#[derive(Clone, Copy, Debug)]
pub(super) struct StopBudget {
    started: Instant,
    total: Duration,
    close_reserve: Duration,
}

impl StopBudget {
    pub fn start(shutdown_timeout: Duration) -> StopBudget {
        let total = shutdown_timeout.saturating_sub(EXIT_MARGIN);
        StopBudget {
            started: Instant::now(),
            total,
            close_reserve: (total / 4).min(CLOSE_BUDGET),
        }
    }

    /// When the work must be done.
    pub fn work_by(&self) -> Instant {
        self.started + self.total - self.close_reserve
    }

    /// Until when a refused final commit is retried.
    pub fn commit_retries_by(&self) -> Instant {
        self.started + (self.work_by() - self.started) / 2
    }

    /// When the whole stop must be over.
    pub fn ends(&self) -> Instant {
        self.started + self.total
    }

    pub fn work_left(&self) -> Duration {
        self.work_by().saturating_duration_since(Instant::now())
    }

    pub fn left(&self) -> Duration {
        self.ends().saturating_duration_since(Instant::now())
    }
}

/// Stops the consumer gracefully and returns what it leaves behind.
pub(super) fn stop<A: ConsumerApp>(
    consumer: BaseConsumer<RuntimeContext<A>>,
    ctx: &RuntimeContext<A>,
    shared: &ConsumerShared,
    options: &RuntimeOptions,
    metrics: &ConsumerMetrics,
) -> RunOutcome {
    // Graceful stop: give every partition back through the revoke path
    // (drain, commit, drop), then leave the group.
    shared.stopping.store(true, Ordering::Relaxed);
    metrics.ready.set(0);
    let budget = StopBudget::start(options.consumer.shutdown_timeout);
    let name = ctx.lock().app.name();
    tracing::info!(consumer = name, "stopping: revoking partitions");
    // Capture the final report while the partitions' state is still here.
    let (final_report, status) = publish_snapshot(&consumer, ctx, shared, true);
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
    let precommit_deadline = budget.commit_retries_by();
    loop {
        let result = {
            let mut core = ctx.lock();
            let owned: Vec<i32> = core.slots.keys().copied().collect();
            core.drain(
                &owned,
                precommit_deadline.min(Instant::now() + options.consumer.drain_timeout),
            );
            core.flush_audit();
            let left = budget.work_left().max(Duration::from_millis(100));
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
        if let Err(e) = core.effects.flush(budget.work_left()) {
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
        *d = Some(budget.ends());
    }
    close_within(consumer, budget.left(), name);
    // A close still at work past its budget holds the state: not waited for.
    if ctx.core.try_lock().map_or(true, |core| !core.slots.is_empty()) {
        tracing::warn!(
            consumer = name,
            "shutdown timeout before every partition was revoked; uncommitted events will be re-processed"
        );
    }
    tracing::info!(consumer = name, "stopped");
    RunOutcome {
        final_summary,
        final_report,
        status,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_fits_the_shutdown_timeout_with_the_close_last() {
        for timeout in [1, 4, 20, 120].map(Duration::from_secs) {
            let b = StopBudget::start(timeout);
            assert!(b.commit_retries_by() < b.work_by());
            assert!(b.work_by() < b.ends());
            assert!(b.ends() - b.started <= timeout - EXIT_MARGIN);
            let close = b.ends() - b.work_by();
            assert!(
                close <= CLOSE_BUDGET && close <= timeout / 4,
                "{timeout:?}: close {close:?}"
            );
        }
    }
}
