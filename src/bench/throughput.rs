//! Phases 1–3: the producer's maximum rate (which preloads the backlog), the
//! counting consumer's ceiling and both consumers draining that backlog.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::Config;
use crate::consumers;
use crate::kafka::BaseContext;
use crate::shutdown::Shutdown;

use super::targets::{Drain, Figures};
use super::{BenchOptions, Row, STALL, handled, process_cpu, produce, start, stop, thousands, wait_handled};

/// 1–3: the producer's maximum rate (which preloads the backlog), the
/// raw-consume ceiling and both consumers draining that backlog.
pub(super) fn throughput(
    config: &Config,
    options: &BenchOptions,
    run_id: &str,
    figures: &mut Figures,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // 1. Producer maximum rate (and the backlog).
    let produced = produce(config, options.events, 0.0)?;
    let producer_rate = produced.0 as f64 / produced.1.as_secs_f64();
    rows.push(Row {
        what: "producer, max rate".into(),
        value: format!("{} events/s", thousands(producer_rate)),
        note: format!(
            "{} events generated, sent and acknowledged (acks=all, idempotent)",
            produced.0
        ),
    });
    let n = produced.0;

    // 2. The ceiling.
    let ceiling = drain_ceiling(config, n)?;
    figures.ceiling = Some(ceiling.rate());
    rows.push(Row {
        what: "ceiling: counting consumer".into(),
        value: format!("{} events/s", thousands(ceiling.rate())),
        note: format!("{:.2} CPU-s per million events (process)", ceiling.cpu_per_million()),
    });

    // 3. The consumers on the same backlog.
    for kind in [consumers::Kind::Analytics, consumers::Kind::Fraud] {
        let drained = drain_consumer(config, kind, n, &format!("bench-{}-{run_id}", kind.name()))?;
        let drain = Some(Drain {
            rate: drained.rate(),
            cores: drained.cpu.as_secs_f64() / drained.elapsed.as_secs_f64().max(1e-9),
        });
        match kind {
            consumers::Kind::Analytics => figures.analytics = drain,
            consumers::Kind::Fraud => figures.fraud = drain,
        }
        rows.push(Row {
            what: format!("{} consumer", kind.name()),
            value: format!("{} events/s", thousands(drained.rate())),
            note: format!(
                "{:.0} % of the ceiling; {:.2} CPU-s per million events; {:.2} cores busy",
                100.0 * drained.rate() / ceiling.rate(),
                drained.cpu_per_million(),
                drained.cpu.as_secs_f64() / drained.elapsed.as_secs_f64().max(1e-9)
            ),
        });
    }

    Ok(rows)
}

/// A drained backlog: messages, first-to-last wall time, process CPU.
struct Drained {
    messages: u64,
    elapsed: Duration,
    cpu: Duration,
}

impl Drained {
    fn rate(&self) -> f64 {
        self.messages.saturating_sub(1) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn cpu_per_million(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }
}

fn drain_ceiling(config: &Config, n: u64) -> anyhow::Result<Drained> {
    let group = format!("bench-ceiling-{}", std::process::id());
    let consumer: BaseConsumer<BaseContext> = crate::kafka::consumer(&config.kafka, &config.consumer, &group, &group)
        .create_with_context(BaseContext)
        .context("cannot create the counting consumer")?;
    consumer.subscribe(&[&config.topics.activities])?;
    let mut count = 0u64;
    let mut first: Option<(Instant, Duration)> = None;
    let mut last_progress = Instant::now();
    while count < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if first.is_none() {
                    first = Some((Instant::now(), process_cpu()));
                }
                std::hint::black_box(m.payload().map(<[u8]>::len));
                count += 1;
                last_progress = Instant::now();
            }
            Some(Err(e)) => tracing::warn!(error = %e, "counting consumer"),
            None if last_progress.elapsed() > STALL => bail!("the counting consumer stalled at {count} of {n}"),
            None => {}
        }
    }
    let (t0, cpu0) = first.unwrap_or((Instant::now(), process_cpu()));
    Ok(Drained {
        messages: count,
        elapsed: t0.elapsed(),
        cpu: process_cpu().saturating_sub(cpu0),
    })
}

fn drain_consumer(config: &Config, kind: consumers::Kind, n: u64, group: &str) -> anyhow::Result<Drained> {
    let shutdown = Shutdown::new();
    let c = start(config, kind, group, &shutdown)?;
    // The CPU is sampled when the first message is handled.
    let deadline = Instant::now() + STALL;
    while handled(&c) == 0 {
        if Instant::now() > deadline || c.thread.is_finished() {
            bail!("the {} consumer handled nothing", kind.name());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let cpu0 = process_cpu();
    let (first, last) = wait_handled(&[&c], n)?;
    let cpu = process_cpu().saturating_sub(cpu0);
    stop(&shutdown, vec![c])?;
    Ok(Drained {
        messages: n,
        elapsed: last - first,
        cpu,
    })
}
