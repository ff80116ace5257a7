//! Crash recovery and memory under a burst, with consumers as separate
//! processes (as pods run them) against the embedded broker:
//! - `kill -9` of a fraud detector in the middle of a backlog, then a
//!   restart: no event lost; the events processed twice are exactly the
//!   uncommitted window; the alerts re-sent carry the same `alert_id`.
//! - a backlog far beyond what the consumer can process at once (a burst
//!   that arrived faster than it processes): its memory stays bounded by the
//!   prefetch limits, not by the backlog.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;
use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};

/// The two tests measure time and memory: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("recovery-{name}"))
}

/// `n` simulated events with fraud, 20 ms apart in event time.
fn events(n: usize, seed: u64) -> Vec<Outgoing> {
    let mut sim = Simulator::new(&SimulatorConfig {
        seed,
        users: 3_000,
        fraud_rate: 0.15,
        events_per_second: 50.0,
    });
    sim.warm_up(T0);
    (0..n)
        .map(|i| {
            let t = T0 + i as i64 * 20;
            let e = sim.next_event(t);
            Outgoing::keyed(&e.user_id, e.to_json(), t)
        })
        .collect()
}

/// The highest offset per partition in the audit files of `dir` whose names
/// start with `prefix`.
fn last_processed(dir: &Path, prefix: &str) -> BTreeMap<i32, i64> {
    let mut last = BTreeMap::new();
    for ((p, o), _) in audit(dir, prefix) {
        let e = last.entry(p).or_insert(o);
        *e = (*e).max(o);
    }
    last
}

fn alert_counts(bootstrap: &str, topic: &str) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for m in read_all(bootstrap, topic) {
        *counts
            .entry(m.json()["alert_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[test]
fn kill_9_under_load_loses_nothing_and_repeats_only_the_uncommitted_window() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const PARTITIONS: i32 = 6;
    let broker = kafka(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch("kill9");
    // Under load: a backlog the detector is busy working through when it
    // is killed.
    const EVENTS: u64 = 60_000;
    produce(&bootstrap, ACTIVITIES, &events(EVENTS as usize, 91));
    // Production's commit interval (1 s); a short session timeout so the
    // dead member's partitions are released quickly.
    let env = [
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("DRAIN_TIMEOUT", "3s"),
        ("KAFKA_COMMIT_INTERVAL_MS", "1000"),
    ];

    let mut first = ConsumerProcess::start("fraud", &bootstrap, &dir, 1, &env);
    // Kill it after a commit has landed, while it has processed events it
    // has not committed yet (it commits every second; fetched chunks are
    // processed in bursts) — so the restart must resume from a commit, not
    // from the start.
    wait_until(
        "the first detector to be ahead of its last commit",
        Duration::from_secs(120),
        || {
            first.assert_running();
            let committed: i64 = committed(&bootstrap, "fraud-detectors", ACTIVITIES, PARTITIONS)
                .values()
                .sum();
            let processed = audit(&dir.join("audit"), "fraud").len() as i64;
            committed > 0 && processed >= 5_000 && processed > committed + 1_000
        },
    );
    first.process.signal("KILL");
    let killed_at = Instant::now();
    first.process.wait(Duration::from_secs(10));
    let processed_before = audit(&dir.join("audit"), "fraud").len();
    let committed_at_kill = committed(&bootstrap, "fraud-detectors", ACTIVITIES, PARTITIONS);
    let counted_at_kill = counted_to(&bootstrap, "fraud-detectors", ACTIVITIES, PARTITIONS);
    let last_before = last_processed(&dir.join("audit"), "fraud");
    // What the restart counts again: from what each last commit says was
    // processed (its `done` mark) to the last event the killed process got
    // through. (From the committed offset to that mark it processes events
    // again for their alerts only.)
    let window: i64 = last_before
        .iter()
        .map(|(p, last)| (last + 1 - counted_at_kill.get(p).copied().unwrap_or(0)).max(0))
        .sum();
    let redone: i64 = counted_at_kill
        .iter()
        .map(|(p, done)| done - committed_at_kill.get(p).copied().unwrap_or(0))
        .sum();
    assert!(processed_before > 0);

    let mut second = ConsumerProcess::start("fraud", &bootstrap, &dir, 2, &env);
    wait_until("the restarted detector to process", Duration::from_secs(60), || {
        second.assert_running();
        second.processed() > 0
    });
    let first_event_after = killed_at.elapsed();
    wait_until("every event processed", Duration::from_secs(120), || {
        second.report().is_some_and(|v| {
            let ends = high_watermarks(&bootstrap, ACTIVITIES, PARTITIONS);
            v["consumer"]["partitions"].as_array().is_some_and(|parts| {
                parts.len() == PARTITIONS as usize
                    && parts.iter().all(|p| {
                        p["position"].as_i64() == ends.get(&(p["partition"].as_i64().unwrap() as i32)).copied()
                    })
            })
        })
    });
    let caught_up = killed_at.elapsed();
    second.stop();

    // Nothing lost; the repeats are exactly the uncommitted window.
    let seen = audit(&dir.join("audit"), "fraud");
    let repeated = assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &seen);
    assert_eq!(
        i64::from(repeated),
        window,
        "events counted twice = those after the last commit's done mark"
    );

    // The alerts: the same set as a detector that never crashed; the
    // re-sent ones carry the same alert_id.
    let alerts = alert_counts(&bootstrap, ALERTS);
    crate::support::reference_run(&broker, PARTITIONS, EVENTS, Duration::from_secs(120));
    let expected = alert_counts(&bootstrap, "reference-alerts");
    assert!(!expected.is_empty());
    assert_eq!(
        alerts.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the crash changed the set of alerts"
    );
    let copies: u32 = alerts.values().map(|n| n - 1).sum();
    let dead = read_all(&bootstrap, DLQ).len();
    assert_eq!(dead, 0, "a crash dead-lettered events");
    let lost = EVENTS - seen.len() as u64;
    println!(
        "crash: kill -9 after {} of {} events, {} of them committed; {lost} lost, {dead} in the DLQ; {redone} events processed again for their alerts only (committed offset to the commit's done mark), {} counted twice (exactly those after the done mark; it commits every 1 s); {} alerts, {} re-sent with the same alert_id; restart: first event {:.1} s after the kill (the dead member's 6 s session, then a rebalance), caught up {:.1} s",
        processed_before,
        EVENTS,
        committed_at_kill.values().sum::<i64>(),
        repeated,
        alerts.len(),
        copies,
        first_event_after.as_secs_f64(),
        caught_up.as_secs_f64()
    );
}

/// Peak resident set size of a process (its high-water mark), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory a consumer may use whatever the backlog: librdkafka's prefetch
/// (16 MB), alerts in flight, the fraud state of the burst's users and the
/// binary itself, with room to spare.
const MEMORY_BOUND: u64 = 160 * 1024 * 1024;

#[test]
fn a_burst_far_beyond_the_processing_rate_keeps_memory_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Events padded with 9 KB of barely compressible text (an unknown field,
    // ignored by the decoder): a backlog of about 380 MB, spread so that no
    // partition holds more than the embedded broker's ~5 MB.
    const PARTITIONS: i32 = 160;
    const BURST: usize = 40_000;
    const PADDING: usize = 9_000;
    let broker = broker(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch("burst");
    let pool = text_pool(1 << 20);
    let mut stream = events(BURST, 7);
    for (i, m) in stream.iter_mut().enumerate() {
        let start = (i * 7_919) % (pool.len() - PADDING);
        if let Some(json) = m.payload.as_mut() {
            json.pop(); // the closing brace
            json.extend_from_slice(b",\"padding\":\"");
            json.extend_from_slice(&pool[start..start + PADDING]);
            json.extend_from_slice(b"\"}");
        }
    }
    let bytes: u64 = stream
        .iter()
        .map(|m| m.payload.as_ref().map_or(0, Vec::len) as u64)
        .sum();
    assert!(
        bytes > 2 * MEMORY_BOUND,
        "the backlog must dwarf the bound for the test to mean anything"
    );
    // The whole burst is in the topic before the consumer starts: arrivals
    // infinitely faster than processing.
    produce(&bootstrap, ACTIVITIES, &stream);
    drop(stream);

    let mut consumer = ConsumerProcess::start("fraud", &bootstrap, &dir, 1, &[]);
    let pid = consumer.process.child.id();
    let started = Instant::now();
    wait_until("the burst to be processed", Duration::from_secs(300), || {
        consumer.assert_running();
        consumer.processed() >= BURST as u64
    });
    let elapsed = started.elapsed();
    let peak = peak_rss(pid).expect("the consumer's /proc status");
    consumer.stop();
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "burst: {BURST} events ({:.0} MB of JSON) waiting before the consumer started; processed in {:.1} s; peak RSS {:.0} MB, bound {:.0} MB (librdkafka prefetch capped at 16 MB, effects in flight at 10,000)",
        mb(bytes),
        elapsed.as_secs_f64(),
        mb(peak),
        mb(MEMORY_BOUND)
    );
    // Bounded by the prefetch limits and the per-user state, not by the
    // backlog.
    assert!(
        peak < MEMORY_BOUND,
        "peak RSS {:.0} MB for a {:.0} MB backlog",
        mb(peak),
        mb(bytes)
    );
}

/// Printable text that compresses poorly (as real payloads in bulk do).
fn text_pool(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}
