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
//! 6. **memory**: fraud state bytes per tracked user at 100k and 1M users,
//!    analytics memory at 10M distinct users (pure processors, no broker).
//!
//! With `KAFKA_BOOTSTRAP_SERVERS` set it runs against that cluster (real
//! Kafka: `scripts/kafka`), else on the embedded broker. Throughput is
//! timed from the first to the last message a consumer handles (group join
//! excluded, the same for every consumer). CPU is the whole process's (the
//! embedded broker runs in it too), so compare the columns, not the
//! absolute values, with a standalone broker's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::analytics::AnalyticsProcessor;
use crate::broker::EmbeddedBroker;
use crate::config::{Config, GroupProtocol, TopicsConfig};
use crate::consumers::{self, RunningConsumer};
use crate::event::{Device, Event, EventType, Location, Properties};
use crate::fraud::{FraudDetector, FraudRules};
use crate::kafka::BaseContext;
use crate::privacy::IpRenderer;
use crate::processor::{Mode, Processor};
use crate::producer::{self, ProduceOptions};
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

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
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Throughput, Phase::Latency, Phase::Rebalance, Phase::Memory];
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        match s {
            "throughput" => Ok(Phase::Throughput),
            "latency" => Ok(Phase::Latency),
            "rebalance" => Ok(Phase::Rebalance),
            "memory" => Ok(Phase::Memory),
            other => Err(format!("unknown bench phase {other:?}")),
        }
    }
}

impl BenchOptions {
    /// The full run recorded in BENCHMARKS.md.
    pub fn full() -> BenchOptions {
        BenchOptions {
            events: 2_000_000,
            rates: vec![1_000, 10_000, 50_000],
            rate_seconds: 10,
            fraud_users: vec![100_000, 1_000_000],
            analytics_users: 10_000_000,
            rebuild_volumes: vec![10_000, 100_000, 1_000_000],
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
    if options.phases.contains(&Phase::Throughput) {
        rows.extend(throughput(&config, options, &run_id)?);
    }
    // 4 and 5. Latency at offered rates; a replica joining under load.
    if options.phases.contains(&Phase::Latency) {
        rows.extend(latency(broker.as_ref(), &config, options, &run_id)?);
    }
    if options.phases.contains(&Phase::Rebalance) {
        for protocol in [GroupProtocol::Classic, GroupProtocol::Consumer] {
            rows.extend(rebalance_pause(broker.as_ref(), &config, options, &run_id, protocol)?);
        }
        for &volume in &options.rebuild_volumes {
            if broker.is_some() && volume > EVENTS_PER_PARTITION {
                rows.push(Row {
                    what: format!("state rebuild, {} events to replay", thousands(volume as f64)),
                    value: "–".into(),
                    note: "not measurable on the embedded broker (it keeps a few MB per partition)".into(),
                });
                continue;
            }
            rows.push(rebuild_time(broker.as_ref(), &config, volume, &run_id)?);
        }
    }
    // 6. Memory of the pure processors.
    if options.phases.contains(&Phase::Memory) {
        rows.extend(memory(&config, options));
    }

    println!("\n| measure | result | notes |\n|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.what, r.value, r.note);
    }
    Ok(())
}

/// 1–3: the producer's maximum rate (which preloads the backlog), the
/// raw-consume ceiling and both consumers draining that backlog.
fn throughput(config: &Config, options: &BenchOptions, run_id: &str) -> anyhow::Result<Vec<Row>> {
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
    rows.push(Row {
        what: "ceiling: counting consumer".into(),
        value: format!("{} events/s", thousands(ceiling.rate())),
        note: format!("{:.2} CPU-s per million events (process)", ceiling.cpu_per_million()),
    });

    // 3. The consumers on the same backlog.
    for kind in [consumers::Kind::Analytics, consumers::Kind::Fraud] {
        let drained = drain_consumer(config, kind, n, &format!("bench-{}-{run_id}", kind.name()))?;
        rows.push(Row {
            what: format!("{} consumer", kind.name()),
            value: format!("{} events/s", thousands(drained.rate())),
            note: format!(
                "{:.0} % of the ceiling; {:.2} CPU-s per million events",
                100.0 * drained.rate() / ceiling.rate(),
                drained.cpu_per_million()
            ),
        });
    }

    Ok(rows)
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

/// How long a drain may go without progress.
const STALL: Duration = Duration::from_secs(60);

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

fn latency(
    broker: Option<&EmbeddedBroker>,
    config: &Config,
    options: &BenchOptions,
    run_id: &str,
) -> anyhow::Result<Vec<Row>> {
    let c = phase_config(broker, config, "latency", run_id, 12)?;
    let shutdown = Shutdown::new();
    let telemetry = Telemetry::new();
    let fraud = consumers::spawn(
        consumers::fraud_app(&c).quiet(),
        &c,
        format!("bench-latency-fraud-{run_id}"),
        &telemetry,
        shutdown.clone(),
    )?;
    let analytics = consumers::spawn(
        consumers::analytics_app(&c),
        &c,
        format!("bench-latency-analytics-{run_id}"),
        &telemetry,
        shutdown.clone(),
    )?;
    wait_ready(&[&fraud, &analytics])?;
    let mut rows = Vec::new();
    let mut sent = 0;
    for &rate in &options.rates {
        let before = latency_buckets(&telemetry);
        let (n, _) = produce(&c, rate * options.rate_seconds, rate as f64)?;
        sent += n;
        wait_handled(&[&fraud], sent)?;
        wait_handled(&[&analytics], sent)?;
        // Alerts of the last events: acknowledged within a few ms.
        let in_flight = || {
            fraud
                .shared
                .status
                .read()
                .map(|s| s.partitions.iter().map(|p| p.effects_in_flight).sum::<usize>())
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while in_flight() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The runtime flushes its histograms every 250 ms: wait until every
        // event of this rate is in them.
        let mut after = latency_buckets(&telemetry);
        let deadline = Instant::now() + Duration::from_secs(5);
        while diff(&after, &before, "fraud", "processed")
            .last()
            .map_or(0, |(_, c)| *c)
            < n
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            after = latency_buckets(&telemetry);
        }
        for (stage, label) in [("processed", "processed"), ("alert_published", "alert acknowledged")] {
            let counts = diff(&after, &before, "fraud", stage);
            let total = counts.last().map_or(0, |(_, c)| *c);
            rows.push(Row {
                what: format!("latency at {} events/s, event → {label}", thousands(rate as f64)),
                value: format!(
                    "p50 {} · p99 {} · p99.9 {}",
                    ms(quantile(&counts, 0.5)),
                    ms(quantile(&counts, 0.99)),
                    ms(quantile(&counts, 0.999))
                ),
                note: format!(
                    "{total} {}; fraud consumer, the runtime's histogram, interpolated within buckets",
                    if stage == "processed" { "events" } else { "alerts" }
                ),
            });
        }
    }
    stop(&shutdown, vec![fraud, analytics])?;
    Ok(rows)
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

/// Cumulative bucket counts of the end-to-end latency histograms, by
/// (consumer, stage), from the text `/metrics` serves.
type Buckets = BTreeMap<(String, String), Vec<(f64, u64)>>;

fn latency_buckets(telemetry: &Telemetry) -> Buckets {
    let mut out: Buckets = BTreeMap::new();
    for line in telemetry.render().lines() {
        let Some(rest) = line.strip_prefix("activity_end_to_end_latency_seconds_bucket{") else {
            continue;
        };
        let label = |name: &str| {
            rest.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
                .map(str::to_string)
        };
        let (Some(consumer), Some(stage), Some(le)) = (label("consumer"), label("stage"), label("le")) else {
            continue;
        };
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let count: u64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        out.entry((consumer, stage)).or_default().push((le, count));
    }
    out
}

fn diff(after: &Buckets, before: &Buckets, consumer: &str, stage: &str) -> Vec<(f64, u64)> {
    let key = (consumer.to_string(), stage.to_string());
    let empty = Vec::new();
    let b = before.get(&key).unwrap_or(&empty);
    after
        .get(&key)
        .map(|a| {
            a.iter()
                .map(|(le, c)| {
                    let prior = b.iter().find(|(l, _)| l == le).map_or(0, |(_, c)| *c);
                    (*le, c.saturating_sub(prior))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The q-quantile of cumulative buckets, interpolated linearly within the
/// bucket it falls in (as PromQL's histogram_quantile does).
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = (count - below).max(1) as f64;
            return Some(lower + (le - lower) * (rank - below as f64) / within);
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

fn ms(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 0.01 => format!("{:.2} ms", s * 1000.0),
        Some(s) => format!("{:.0} ms", s * 1000.0),
        None => "–".into(),
    }
}

/// A second fraud replica joins a group under load, then leaves it
/// gracefully, under group `protocol`. For each moved partition the pause
/// is the time from the last event the old owner processed to the first
/// live event on the new one (drain, commit, hand-over and state rebuild
/// included), from the audit trail's wall times.
fn rebalance_pause(
    broker: Option<&EmbeddedBroker>,
    config: &Config,
    options: &BenchOptions,
    run_id: &str,
    protocol: GroupProtocol,
) -> anyhow::Result<Vec<Row>> {
    let name = format!("rebalance-{}", protocol.as_str());
    let mut c = phase_config(broker, config, &name, run_id, 12)?;
    let dir = std::env::temp_dir().join(format!("activity-tracker-bench-{name}-{run_id}"));
    let _ = std::fs::remove_dir_all(&dir);
    c.consumer.audit_log = Some(dir.clone());
    c.consumer.group_protocol = protocol;
    let rate = options.rates.iter().copied().find(|&r| r >= 5_000).unwrap_or(5_000);
    // The mock broker completes a rebalance only after a session timeout.
    c.consumer.session_timeout = Duration::from_secs(6);
    let group = format!("bench-{name}-{run_id}");
    let first_stop = Shutdown::new();
    let first = start(&c, consumers::Kind::Fraud, &group, &first_stop)?;
    wait_ready(&[&first])?;
    let load_stop = Shutdown::new();
    let (producer_config, stop_load) = (c.clone(), load_stop.clone());
    let load = std::thread::spawn(move || produce_with(&producer_config, None, rate as f64, &stop_load));
    std::thread::sleep(Duration::from_secs(2)); // let the load settle
    let second_stop = Shutdown::new();
    let second = start(&c, consumers::Kind::Fraud, &group, &second_stop)?;
    let joined = wait_ready(&[&second]).and_then(|()| wait_live(&first, |n| (1..12).contains(&n)));
    std::thread::sleep(Duration::from_secs(1)); // both owners under load
    let second_shared = second.shared.clone();
    let left = stop(&second_stop, vec![second]).and_then(|()| wait_live(&first, |n| n == 12));
    std::thread::sleep(Duration::from_secs(1)); // the first owner alone under load
    load_stop.trigger();
    let (n, _) = load.join().map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    joined?;
    left?;
    // Graceful hand-overs process nothing twice: the first replica handles
    // whatever the second did not.
    let by_second = second_shared.handled.load(Ordering::Relaxed);
    wait_handled(&[&first], n.saturating_sub(by_second))?;
    stop(&first_stop, vec![first])?;

    // partition → (owner file, wall ms) of every live-processed event.
    let mut times: BTreeMap<i32, Vec<(usize, i64)>> = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for (i, path) in files.iter().enumerate() {
        for line in std::fs::read_to_string(path)?.lines() {
            let mut parts = line.split_whitespace();
            let (Some(p), Some(_), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if let (Ok(p), Ok(t)) = (p.parse(), t.parse()) {
                times.entry(p).or_default().push((i, t));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Each change of owner in a partition's wall-time order is a hand-over:
    // to the joining replica, then back when it leaves.
    let (mut join_pauses, mut leave_pauses) = (Vec::new(), Vec::new());
    for entries in times.values_mut() {
        entries.sort_by_key(|&(_, t)| t);
        let original = entries[0].0;
        for w in entries.windows(2) {
            if w[0].0 != w[1].0 {
                let pause = w[1].1 - w[0].1;
                if w[1].0 == original {
                    leave_pauses.push(pause);
                } else {
                    join_pauses.push(pause);
                }
            }
        }
    }
    let strategy = match protocol {
        GroupProtocol::Classic => format!("classic {}", c.consumer.assignment_strategy),
        GroupProtocol::Consumer => "KIP-848 (group.protocol=consumer)".to_string(),
    };
    Ok([("joins", join_pauses), ("leaves", leave_pauses)]
        .into_iter()
        .map(|(what, mut pauses)| {
            pauses.sort_unstable();
            let median = pauses.get(pauses.len() / 2).copied().unwrap_or(0);
            Row {
                what: format!("rebalance pause, a replica {what} under load, {strategy}"),
                value: format!("max {} ms · median {median} ms", pauses.last().copied().unwrap_or(0)),
                note: format!(
                    "{} of 12 partitions moved at {} events/s; last event on the old owner → first live on the new (drain, commit, rebuild)",
                    pauses.len(),
                    thousands(rate as f64)
                ),
            }
        })
        .collect())
}

/// Rebuild time against replay volume: one partition holding `volume`
/// events within the fraud window is processed and committed by one owner,
/// which then leaves; a fresh owner rebuilds the state by replaying them.
/// The time is the runtime's own, from assignment to live.
fn rebuild_time(broker: Option<&EmbeddedBroker>, config: &Config, volume: u64, run_id: &str) -> anyhow::Result<Row> {
    let name = format!("rebuild-{volume}");
    let mut c = phase_config(broker, config, &name, run_id, 1)?;
    c.consumer.session_timeout = Duration::from_secs(6);
    let (n, _) = produce(&c, volume, 0.0)?;
    let group = format!("bench-{name}-{run_id}");
    let first_stop = Shutdown::new();
    let first = start(&c, consumers::Kind::Fraud, &group, &first_stop)?;
    wait_handled(&[&first], n)?;
    stop(&first_stop, vec![first])?;
    let telemetry = Telemetry::new();
    let second_stop = Shutdown::new();
    let second = consumers::spawn(
        consumers::fraud_app(&c).quiet(),
        &c,
        group,
        &telemetry,
        second_stop.clone(),
    )?;
    let deadline = Instant::now() + STALL;
    let rebuilt = loop {
        let (count, seconds, replayed, by_time) = rebuild_metrics(&telemetry);
        if count >= 1.0 {
            break (seconds, replayed, by_time);
        }
        if Instant::now() > deadline || second.thread.is_finished() {
            bail!("the partition of {volume} events was not rebuilt");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop(&second_stop, vec![second])?;
    let (seconds, replayed, by_time) = rebuilt;
    Ok(Row {
        what: format!("state rebuild, {} events to replay", thousands(n as f64)),
        value: format!("{:.2} s", seconds),
        note: format!(
            "{} events replayed ({} events/s), start found by {}; fraud consumer, one partition",
            thousands(replayed),
            thousands(replayed / seconds.max(1e-9)),
            if by_time { "timestamp" } else { "commit metadata" }
        ),
    })
}

/// (rebuilds finished, their seconds, events replayed, whether one found
/// its start by timestamp) from a consumer's telemetry.
fn rebuild_metrics(telemetry: &Telemetry) -> (f64, f64, f64, bool) {
    let mut out = (0.0, 0.0, 0.0, false);
    for line in telemetry.render().lines() {
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if line.starts_with("activity_state_rebuild_seconds_count") {
            out.0 += value();
        } else if line.starts_with("activity_state_rebuild_seconds_sum") {
            out.1 += value();
        } else if line.starts_with("activity_state_rebuild_events_total") {
            out.2 += value();
        } else if line.starts_with("activity_state_rebuilds_total") && line.contains("method=\"timestamp\"") {
            out.3 |= value() > 0.0;
        }
    }
    out
}

/// Memory of the pure processors: per tracked fraud user, and analytics at
/// many distinct users.
fn memory(config: &Config, options: &BenchOptions) -> Vec<Row> {
    let mut rows = Vec::new();
    let t0 = 1_705_312_800_000;
    for &users in &options.fraud_users {
        let mut fraud = FraudDetector::new(
            FraudRules::from_config(&config.fraud),
            IpRenderer::new(config.ip_privacy.clone()),
        );
        let mut state = fraud.new_state();
        let rss0 = rss_bytes();
        let mut out = Vec::new();
        // Each user: a page view, an add-to-cart and a purchase from one
        // address, within the hour the widest rule remembers.
        let span_ms = 3_000_000 / users.max(1) as i64;
        for u in 0..users {
            let user = format!("user-{u}");
            let ip = format!("10.{}.{}.{}", (u >> 16) & 255, (u >> 8) & 255, u & 255);
            for (k, event_type) in [EventType::PageView, EventType::AddToCart, EventType::Purchase]
                .into_iter()
                .enumerate()
            {
                let e = synthetic(&user, &ip, event_type, t0 + u as i64 * span_ms.max(1) + k as i64);
                fraud.process(&mut state, &e, Mode::Live, &mut out);
                out.clear();
            }
        }
        let rss = rss_bytes().saturating_sub(rss0);
        rows.push(Row {
            what: format!("fraud state, {} users", thousands(users as f64)),
            value: format!(
                "{:.0} bytes per user",
                state.heap_bytes() as f64 / state.tracked_users().max(1) as f64
            ),
            note: format!(
                "{} users tracked, {} MB of state; RSS grew {} MB",
                state.tracked_users(),
                state.heap_bytes() / 1_000_000,
                rss / 1_000_000
            ),
        });
    }

    // Analytics: one pod owning 12 partitions, every event a new user.
    let mut analytics = AnalyticsProcessor::new(config.analytics.clone());
    let mut states: Vec<_> = (0..12).map(|_| analytics.new_state()).collect();
    let rss0 = rss_bytes();
    let mut none = Vec::new();
    let users = options.analytics_users;
    for u in 0..users {
        let user = format!("user-{u}");
        let e = synthetic(&user, "10.0.0.1", EventType::PageView, t0 + (u as i64) / 1000);
        analytics.process(&mut states[(u % 12) as usize], &e, Mode::Live, &mut none);
    }
    let heap: usize = states.iter().map(|s| s.heap_bytes()).sum();
    let tracked: usize = states.iter().map(|s| s.tracked_users()).sum();
    rows.push(Row {
        what: format!("analytics state, {} distinct users", thousands(users as f64)),
        value: format!("{} MB", heap / 1_000_000),
        note: format!(
            "12 partitions; {tracked} users tracked exactly (cap {} per partition), the rest in HyperLogLog sketches; RSS grew {} MB",
            config.analytics.max_users_per_partition,
            rss_bytes().saturating_sub(rss0) / 1_000_000
        ),
    });
    rows
}

fn synthetic<'a>(user: &'a str, ip: &'a str, event_type: EventType, t: i64) -> Event<'a> {
    let purchase = event_type == EventType::Purchase;
    Event {
        event_id: std::borrow::Cow::Owned(format!("{user}-{t}")),
        timestamp_ms: t,
        user_id: user.into(),
        session_id: Some(user.into()),
        event_type,
        page_url: Some("https://shop.example.com/products/usb-c-hub".into()),
        referrer: None,
        user_agent: None,
        ip_address: Some(ip.into()),
        properties: Properties {
            price: purchase.then_some(49.99),
            cart_value: purchase.then_some(49.99),
            ..Properties::default()
        },
        device: Device::default(),
        location: Location {
            country: Some("US".into()),
            city: Some("New York".into()),
            timezone: None,
        },
        record: None,
        received_ms: None,
    }
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
    fn quantiles_interpolate_within_buckets() {
        // 100 observations: 50 ≤ 1 ms, 40 in (1, 2.5], 10 in (2.5, 5].
        let b = [(0.001, 50), (0.0025, 90), (0.005, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&b, 0.5), Some(0.001));
        let p90 = quantile(&b, 0.9).unwrap();
        assert!((p90 - 0.0025).abs() < 1e-12, "{p90}");
        let p95 = quantile(&b, 0.95).unwrap();
        assert!((p95 - 0.00375).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.5), None);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
