//! `activity-tracker bench`: the end-to-end benchmark, in one process, one
//! run, printing one table.
//!
//! 1. **producer**: the simulator and our producer send `--events` as fast
//!    as the broker accepts them (this preloads the backlog);
//! 2. **ceiling**: a consumer with our exact client configuration that only
//!    counts messages drains that backlog;
//! 3. **analytics**, **fraud**: each consumer, on the shared runtime, drains
//!    the same backlog with a fresh group; throughput is compared with the
//!    ceiling (same broker, same run — the ratio is the headline);
//! 4. **latency** at fixed offered rates: event timestamp → processed, and →
//!    its alert acknowledged by Kafka, from the runtime's own histograms
//!    (the ones `/metrics` exports);
//! 5. **rebalance pause**: under load, a second fraud replica joins and
//!    then leaves, under the classic protocol (cooperative-sticky) and
//!    KIP-848; per moved partition, last event on the old owner → first
//!    live event on the new one, from the audit trail; and **rebuild time**
//!    against replay volume (one partition, 10k–1M events in the window);
//! 6. **memory**: fraud state bytes per tracked user at 100k, 1M and 10M
//!    users, analytics memory at 10M distinct users (pure processors, no
//!    broker);
//! 7. **processing**: decode + process on one core, no broker.
//!
//! Last it prints the targets table: each target with this run's figure
//! and whether it was met ([`targets`]).
//!
//! With `KAFKA_BOOTSTRAP_SERVERS` set it runs against that cluster (real
//! Kafka: `scripts/kafka`), else on the embedded broker. Throughput is
//! timed from the first to the last message a consumer handles (group join
//! excluded, the same for every consumer). CPU is the whole process's (the
//! embedded broker runs in it too), so compare the columns, not the
//! absolute values, with a standalone broker's.
//!
//! Each phase has a module: `throughput` (1–3), `latency` (4),
//! `rebalance` (5), `memory` (6), `processing` (7); this one runs them and
//! holds what they share.

mod latency;
mod memory;
mod processing;
mod rebalance;
pub mod targets;
mod throughput;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::broker::EmbeddedBroker;
use crate::config::{Config, GroupProtocol, TopicsConfig};
use crate::consumers::{self, RunningConsumer};
use crate::producer::{self, ProduceOptions};
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

use latency::latency;
use memory::memory;
use processing::per_core;
use rebalance::{Rebuild, rebalance_pause, rebuild_time};
use targets::Figures;
use throughput::throughput;

/// What `bench` measures, and how much of it.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Events in the backlog the throughput phases drain.
    pub events: u64,
    /// Offered rates of the latency phase (events/s).
    pub rates: Vec<u64>,
    /// Seconds per offered rate.
    pub rate_seconds: u64,
    /// Tracked users of the fraud memory phase.
    pub fraud_users: Vec<u64>,
    /// Distinct users of the analytics memory phase.
    pub analytics_users: u64,
    /// Events a rebuilt partition replays, one measurement each.
    pub rebuild_volumes: Vec<u64>,
    /// Also rebuild a partition holding the fraud detector's whole replay
    /// window at [`targets::REBUILD_RATE`] (7.2 M events by default).
    pub rebuild_at_target_rate: bool,
    /// Simulated events the one-core processing phase decodes and processes.
    pub processing_events: usize,
    /// The phases to run.
    pub phases: Vec<Phase>,
}

/// A part of the run, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Producer maximum rate, the ceiling, both consumers draining a backlog.
    Throughput,
    Latency,
    Rebalance,
    Memory,
    /// Decode + process on one core.
    Processing,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Throughput,
        Phase::Latency,
        Phase::Rebalance,
        Phase::Memory,
        Phase::Processing,
    ];
    /// Their names for `--only`, in the order of [`Phase::ALL`].
    pub const NAMES: [&str; 5] = ["throughput", "latency", "rebalance", "memory", "processing"];
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        Phase::NAMES
            .iter()
            .position(|name| *name == s)
            .map(|i| Phase::ALL[i])
            .ok_or_else(|| format!("unknown bench phase {s:?}"))
    }
}

impl BenchOptions {
    /// The full run recorded in BENCHMARKS.md.
    pub fn full() -> BenchOptions {
        BenchOptions {
            events: 2_000_000,
            rates: vec![1_000, 10_000, 50_000],
            rate_seconds: 10,
            fraud_users: vec![100_000, 1_000_000, targets::POD_USERS],
            analytics_users: targets::POD_USERS,
            rebuild_volumes: vec![10_000, 100_000, 1_000_000],
            rebuild_at_target_rate: true,
            processing_events: 200_000,
            phases: Phase::ALL.to_vec(),
        }
    }

    /// A short run that proves every phase works (CI).
    pub fn quick() -> BenchOptions {
        BenchOptions {
            events: 50_000,
            rates: vec![1_000, 5_000],
            rate_seconds: 2,
            fraud_users: vec![10_000],
            analytics_users: 200_000,
            rebuild_volumes: vec![5_000],
            rebuild_at_target_rate: false,
            processing_events: 20_000,
            phases: Phase::ALL.to_vec(),
        }
    }
}

/// One line of the result table.
struct Row {
    what: String,
    value: String,
    note: String,
}

/// Events the embedded broker holds per partition (it caps a partition's
/// log at a few MB; lz4 batches of our events are ~150 bytes per event).
const EVENTS_PER_PARTITION: u64 = 25_000;

pub async fn run_command(config: Config, options: BenchOptions) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run(config, &options)).await?
}

fn run(mut config: Config, options: &BenchOptions) -> anyhow::Result<()> {
    let run_id = format!("{}-{}", std::process::id(), crate::eventtime::now_ms() % 1_000_000);
    // The embedded broker silently drops a partition's data past a few MB,
    // so the backlog is spread over enough partitions; a real broker keeps
    // everything, and 12 partitions is what the other phases use.
    let partitions = if config.kafka.bootstrap_servers_set {
        12
    } else {
        ((options.events.div_ceil(EVENTS_PER_PARTITION)) as i32).max(12)
    };
    let topics = TopicsConfig {
        activities: format!("bench-activities-{run_id}"),
        partitions,
        alerts: format!("bench-alerts-{run_id}"),
        dlq: format!("bench-dlq-{run_id}"),
        ..config.topics.clone()
    };
    let broker = if config.kafka.bootstrap_servers_set {
        create_topics(None, &config, &topics)?;
        println!(
            "🏁 bench on {} ({} partitions)",
            config.kafka.bootstrap_servers, partitions
        );
        None
    } else {
        let broker = EmbeddedBroker::start(1, &topics)?;
        config.kafka.bootstrap_servers = broker.bootstrap_servers().to_string();
        println!("🏁 bench on the embedded broker ({partitions} partitions)");
        Some(broker)
    };
    config.topics = topics;
    if broker.is_some() {
        // The mock broker holds every fetch for fetch.wait.max.ms (500 ms by
        // default) even when data arrives, where a real broker answers at
        // once; without this the mock, not the pipeline, sets every latency.
        config.consumer.fetch_wait_max = Some(crate::broker::FETCH_WAIT_MAX);
    }
    // No console reports or alerts: this measures the pipeline, not a terminal.
    config.consumer.stats_interval = u64::MAX;
    config.consumer.audit_log = None;

    let mut rows = Vec::new();
    let mut figures = Figures::default();
    if options.phases.contains(&Phase::Throughput) {
        rows.extend(throughput(&config, options, &run_id, &mut figures)?);
    }
    // 4 and 5. Latency at offered rates; a replica joining under load.
    if options.phases.contains(&Phase::Latency) {
        rows.extend(latency(broker.as_ref(), &config, options, &run_id, &mut figures)?);
    }
    if options.phases.contains(&Phase::Rebalance) {
        for protocol in [GroupProtocol::Classic, GroupProtocol::Consumer] {
            rows.extend(rebalance_pause(
                broker.as_ref(),
                &config,
                options,
                &run_id,
                protocol,
                &mut figures,
            )?);
        }
        let at_target_rate = options.rebuild_at_target_rate.then(|| {
            use crate::processor::Processor;
            let window_ms = crate::fraud::FraudDetector::new(
                crate::fraud::FraudRules::from_config(&config.fraud),
                crate::privacy::IpRenderer::new(config.ip_privacy.clone()),
            )
            .rebuild_window_ms();
            window_ms.max(0) as u64 * targets::REBUILD_RATE / 1000
        });
        for &volume in &options.rebuild_volumes {
            let (row, _) = rebuild_time(broker.as_ref(), &config, volume, &run_id, Rebuild::Replay)?;
            rows.push(row);
        }
        // Snapshots: restored after a graceful hand-over, and after a crash
        // with the traffic of one snapshot interval to replay since.
        let (volume, tail) = match at_target_rate {
            Some(v) => (v, targets::REBUILD_RATE * config.consumer.snapshot_interval.as_secs()),
            None => {
                let v = options.rebuild_volumes.iter().copied().max().unwrap_or(5_000);
                (v, v / 5)
            }
        };
        let mut volumes = vec![(volume, Rebuild::HandOver), (volume, Rebuild::Crash { tail })];
        if at_target_rate.is_some() {
            volumes.insert(0, (volume, Rebuild::Replay));
        }
        for (volume, how) in volumes {
            if broker.is_some() && volume > EVENTS_PER_PARTITION {
                rows.push(Row {
                    what: format!("state rebuild ({how:?}), {} events", thousands(volume as f64)),
                    value: "–".into(),
                    note: "not measurable on the embedded broker (it keeps a few MB per partition)".into(),
                });
                continue;
            }
            let (row, seconds) = rebuild_time(broker.as_ref(), &config, volume, &run_id, how)?;
            if matches!(how, Rebuild::Crash { .. }) && at_target_rate.is_some() {
                figures.rebuild_at_rate = Some(seconds);
            }
            rows.push(row);
        }
    }
    // 6 and 7. The pure processors: memory, and speed on one core.
    if options.phases.contains(&Phase::Memory) {
        rows.extend(memory(&config, options, &mut figures));
    }
    if options.phases.contains(&Phase::Processing) {
        rows.extend(per_core(&config, options.processing_events, &mut figures));
    }

    println!("\n| measure | result | notes |\n|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.what, r.value, r.note);
    }
    if broker.is_some() {
        // The embedded broker's figures say little about Kafka's (see
        // BENCHMARKS.md): judge the targets on a real cluster.
        println!("\nTargets are judged on real Kafka: `scripts/kafka -- activity-tracker bench`.");
        figures = Figures {
            per_core: figures.per_core,
            fraud_bytes_per_user: figures.fraud_bytes_per_user,
            fraud_pod_bytes: figures.fraud_pod_bytes,
            analytics_pod_bytes: figures.analytics_pod_bytes,
            ..Figures::default()
        };
    }
    println!("\n{}", targets::table(&figures));
    Ok(())
}

/// Creates `topics` on the embedded broker (whose mock cluster has no
/// CreateTopics API) or on the cluster of `config`.
fn create_topics(broker: Option<&EmbeddedBroker>, config: &Config, topics: &TopicsConfig) -> anyhow::Result<()> {
    match broker {
        Some(b) => {
            for name in [&topics.activities, &topics.alerts, &topics.dlq] {
                b.create_topic(name, topics.partitions)?;
            }
        }
        None => {
            let runtime = tokio::runtime::Handle::current();
            runtime.block_on(crate::topics::ensure_topics(&config.kafka, topics, false))?;
        }
    }
    Ok(())
}

fn produce_options(config: &Config, rate: f64, max_events: Option<u64>) -> ProduceOptions {
    let mut producer = config.producer.clone();
    producer.events_per_second = rate;
    producer.max_events = max_events;
    producer.seed = Some(producer.seed.unwrap_or(42));
    producer.start_time_ms = None;
    ProduceOptions {
        kafka: config.kafka.clone(),
        topic: config.topics.activities.clone(),
        producer,
        truth_file: None,
        shutdown_timeout: Duration::from_secs(60),
        progress: false,
        trace: false,
    }
}

/// Sends `events` at `rate` (0 = as fast as possible), or until `stop` if
/// `events` is None; returns (delivered, elapsed).
fn produce_with(config: &Config, events: Option<u64>, rate: f64, stop: &Shutdown) -> anyhow::Result<(u64, Duration)> {
    let options = produce_options(config, rate, events);
    let stats = producer::run(&options, Telemetry::new().producer(&options.topic), stop)?;
    if stats.delivered != stats.sent {
        bail!("only {} of {} events were delivered", stats.delivered, stats.sent);
    }
    Ok((stats.delivered, stats.elapsed))
}

fn produce(config: &Config, events: u64, rate: f64) -> anyhow::Result<(u64, Duration)> {
    produce_with(config, Some(events), rate, &Shutdown::new())
}

/// How long a drain may go without progress.
const STALL: Duration = Duration::from_secs(60);

fn start(config: &Config, kind: consumers::Kind, group: &str, shutdown: &Shutdown) -> anyhow::Result<RunningConsumer> {
    let telemetry = Telemetry::new();
    Ok(match kind {
        consumers::Kind::Analytics => consumers::spawn(
            consumers::analytics_app(config),
            config,
            group.to_string(),
            &telemetry,
            shutdown.clone(),
        )?,
        consumers::Kind::Fraud => consumers::spawn(
            consumers::fraud_app(config).quiet(),
            config,
            group.to_string(),
            &telemetry,
            shutdown.clone(),
        )?,
    })
}

fn handled(c: &RunningConsumer) -> u64 {
    c.shared.handled.load(Ordering::Relaxed)
}

/// Waits until `consumers` have handled `n` messages in all, polling every
/// millisecond; returns when the first and the n-th were handled.
fn wait_handled(consumers: &[&RunningConsumer], n: u64) -> anyhow::Result<(Instant, Instant)> {
    let mut first = None;
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    loop {
        let count: u64 = consumers.iter().map(|c| handled(c)).sum();
        let now = Instant::now();
        if count > 0 && first.is_none() {
            first = Some(now);
        }
        if count >= n {
            return Ok((first.unwrap_or(now), now));
        }
        if count != last_count {
            last_count = count;
            last_progress = now;
        } else if last_progress.elapsed() > STALL {
            bail!("consumers stalled at {count} of {n} messages");
        }
        if consumers.iter().any(|c| c.thread.is_finished()) {
            bail!("a consumer stopped");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn stop(shutdown: &Shutdown, consumers: Vec<RunningConsumer>) -> anyhow::Result<()> {
    shutdown.trigger();
    for c in consumers {
        c.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the {} consumer panicked", c.name))??;
    }
    Ok(())
}

/// A copy of `config` on fresh topics (created here) for a phase.
fn phase_config(
    broker: Option<&EmbeddedBroker>,
    config: &Config,
    name: &str,
    run_id: &str,
    partitions: i32,
) -> anyhow::Result<Config> {
    let mut c = config.clone();
    c.topics.activities = format!("bench-{name}-{run_id}");
    c.topics.alerts = format!("bench-{name}-alerts-{run_id}");
    c.topics.dlq = format!("bench-{name}-dlq-{run_id}");
    c.topics.partitions = partitions;
    create_topics(broker, &c, &c.topics)?;
    Ok(c)
}

/// Waits until `c` processes live a number of partitions that `wanted`
/// accepts (none of them rebuilding).
fn wait_live(c: &RunningConsumer, wanted: impl Fn(usize) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + STALL;
    while !c
        .shared
        .status
        .read()
        .map(|s| s.partitions.iter().all(|p| !p.rebuilding) && wanted(s.partitions.len()))
        .unwrap_or(false)
    {
        if Instant::now() > deadline {
            bail!("the partitions did not settle on the {} consumer", c.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until every consumer owns partitions and is live.
fn wait_ready(consumers: &[&RunningConsumer]) -> anyhow::Result<()> {
    let deadline = Instant::now() + STALL;
    while !consumers.iter().all(|c| {
        c.shared
            .status
            .read()
            .map(|s| s.ready && !s.partitions.is_empty())
            .unwrap_or(false)
    }) {
        if Instant::now() > deadline {
            bail!("the consumers did not become ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// CPU time of this process (user + system), from /proc.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime is
    // the 12th, stime the 13th, in clock ticks (USER_HZ, 100 on Linux).
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Resident set size of this process, from /proc.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 1234567.8 → "1,234,568".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
