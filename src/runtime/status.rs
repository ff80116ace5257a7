//! The runtime's reports: the snapshot behind `/report` and `/metrics`, and
//! the periodic console report.

use super::*;

pub(super) fn publish_snapshot<A: ConsumerApp>(
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
    let figures = app.snapshot(&views);
    drop(core);
    let report = Report {
        figures,
        consumer: status.clone(),
    };
    let report = match serde_json::to_value(&report) {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the report");
            serde_json::Value::Null
        }
    };
    if let Ok(mut r) = shared.report.write() {
        *r = report.clone();
    }
    if let Ok(mut s) = shared.status.write() {
        *s = status.clone();
    }
    (report, status)
}

pub(super) fn print_console_report<A: ConsumerApp>(
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
