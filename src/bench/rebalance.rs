//! Phase 5: the pause a rebalance causes under load, under either group
//! protocol, and the time a new owner takes to rebuild a partition's state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::broker::EmbeddedBroker;
use crate::config::{Config, GroupProtocol};
use crate::consumers;
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

use super::targets::Figures;
use super::{
    BenchOptions, Row, STALL, phase_config, produce, produce_with, start, stop, thousands, wait_handled, wait_live,
    wait_ready,
};

/// A second fraud replica joins a group under load, then leaves it
/// gracefully, under group `protocol`. For each moved partition the pause
/// is the time from the last event the old owner processed to the first
/// live event on the new one (drain, commit, hand-over and state rebuild
/// included), from the audit trail's wall times.
pub(super) fn rebalance_pause(
    broker: Option<&EmbeddedBroker>,
    config: &Config,
    options: &BenchOptions,
    run_id: &str,
    protocol: GroupProtocol,
    figures: &mut Figures,
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
    let longest = join_pauses
        .iter()
        .chain(&leave_pauses)
        .max()
        .map(|&ms| ms as f64 / 1000.0);
    match protocol {
        GroupProtocol::Classic => figures.pause_classic = longest,
        GroupProtocol::Consumer => figures.pause_kip848 = longest,
    }
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

/// How the owner whose rebuild is measured gets its partition's state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Rebuild {
    /// Snapshots off: the window is replayed.
    Replay,
    /// From the snapshot the previous owner wrote when it handed the
    /// partition over gracefully: nothing to replay.
    HandOver,
    /// After a crash: from the last snapshot, `tail` events before the
    /// committed offset (at most a snapshot interval of traffic), and a
    /// replay of that tail.
    Crash { tail: u64 },
}

/// Rebuild time of one partition holding `volume` events within the fraud
/// window, processed and committed by one owner before a fresh owner takes
/// it over, `how` says from what. The time is the runtime's own, from
/// assignment to live.
pub(super) fn rebuild_time(
    broker: Option<&EmbeddedBroker>,
    config: &Config,
    volume: u64,
    run_id: &str,
    how: Rebuild,
) -> anyhow::Result<(Row, f64)> {
    let name = match how {
        Rebuild::Replay => format!("rebuild-{volume}"),
        Rebuild::HandOver => format!("restore-{volume}"),
        Rebuild::Crash { tail } => format!("restore-{volume}-{tail}"),
    };
    let mut c = phase_config(broker, config, &name, run_id, 1)?;
    c.consumer.session_timeout = Duration::from_secs(6);
    if how == Rebuild::Replay {
        c.consumer.snapshot_interval = Duration::ZERO;
    }
    let tail = match how {
        Rebuild::Crash { tail } => tail.min(volume),
        _ => 0,
    };
    let group = format!("bench-{name}-{run_id}");
    // The first owner processes all but the tail and hands over (with a
    // snapshot, unless they are off).
    let (mut n, _) = produce(&c, volume - tail, 0.0)?;
    let first_stop = Shutdown::new();
    let first = start(&c, consumers::Kind::Fraud, &group, &first_stop)?;
    wait_handled(&[&first], n)?;
    stop(&first_stop, vec![first])?;
    if tail > 0 {
        // The tail goes to an owner that neither rebuilds nor snapshots: the
        // group commits past the snapshot, as after a crash between two.
        let (more, _) = produce(&c, tail, 0.0)?;
        let mut bare = c.clone();
        bare.consumer.state_rebuild = false;
        bare.consumer.snapshot_interval = Duration::ZERO;
        let second_stop = Shutdown::new();
        let second = start(&bare, consumers::Kind::Fraud, &group, &second_stop)?;
        wait_handled(&[&second], more)?;
        stop(&second_stop, vec![second])?;
        n += more;
    }
    let telemetry = Telemetry::new();
    let last_stop = Shutdown::new();
    let last = consumers::spawn(
        consumers::fraud_app(&c).quiet(),
        &c,
        group,
        &telemetry,
        last_stop.clone(),
    )?;
    let deadline = Instant::now() + STALL;
    let rebuilt = loop {
        let m = rebuild_metrics(&telemetry);
        if m.count >= 1.0 {
            break m;
        }
        if Instant::now() > deadline || last.thread.is_finished() {
            bail!("the partition of {volume} events was not rebuilt");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop(&last_stop, vec![last])?;
    let what = match how {
        Rebuild::Replay => format!("state rebuild by replay, {} events", thousands(n as f64)),
        Rebuild::HandOver => format!(
            "state restore from a hand-over snapshot, {} events in the window",
            thousands(n as f64)
        ),
        Rebuild::Crash { tail } => format!(
            "state rebuild from a snapshot + {} events since, {} in the window",
            thousands(tail as f64),
            thousands(n as f64)
        ),
    };
    let row = Row {
        what,
        value: format!("{:.2} s", rebuilt.seconds),
        note: format!(
            "{} events replayed ({} events/s), started from {}; {} snapshot bytes restored; fraud consumer, one partition",
            thousands(rebuilt.replayed),
            thousands(rebuilt.replayed / rebuilt.seconds.max(1e-9)),
            rebuilt.method,
            thousands(rebuilt.snapshot_bytes),
        ),
    };
    Ok((row, rebuilt.seconds))
}

/// A rebuild as a consumer's telemetry tells it.
#[derive(Default)]
struct Rebuilt {
    /// Rebuilds finished.
    count: f64,
    seconds: f64,
    replayed: f64,
    /// Where they started (the `method` label).
    method: String,
    /// Bytes of the snapshots restored.
    snapshot_bytes: f64,
}

/// The rebuild a consumer's telemetry reports.
fn rebuild_metrics(telemetry: &Telemetry) -> Rebuilt {
    let mut out = Rebuilt::default();
    for line in telemetry.render().lines() {
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if line.starts_with("activity_state_rebuild_seconds_count") {
            out.count += value();
        } else if line.starts_with("activity_state_rebuild_seconds_sum") {
            out.seconds += value();
        } else if line.starts_with("activity_state_rebuild_events_total") {
            out.replayed += value();
        } else if line.starts_with("activity_state_restored_bytes_total") {
            out.snapshot_bytes += value();
        } else if line.starts_with("activity_state_rebuilds_total")
            && value() > 0.0
            && let Some(method) = line.split("method=\"").nth(1).and_then(|m| m.split('"').next())
        {
            out.method = method.to_string();
        }
    }
    out
}
