//! The consumer fleet: scaling up, down, a graceful stop and a `kill -9`
//! change nothing in the results.
//!
//! Replicas are separate processes of the real binary (a `kill -9` must be a
//! real one), against real Apache Kafka under both group protocols
//! (classic cooperative-sticky and KIP-848), where a moved partition's
//! state is rebuilt from the offset Kafka finds by timestamp. Every replica writes an audit log
//! (`AUDIT_LOG`) of the offsets it processed live, flushed before offsets are
//! stored, so "every event processed at least once" is observed, not assumed.
//!
//! The suites: `scaling` (a fleet scaled and crashed), `handover` (a
//! partition moving between owners), `snapshots` (rebuilds from partition
//! snapshots and their fallbacks), `membership` (leaving, eviction,
//! static membership, back-pressure) and `edges` (one consumer's offsets,
//! lag and a missing alerts topic). The helpers they share are here.

mod edges;
mod handover;
mod membership;
mod scaling;
mod snapshots;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::*;
use activity_tracker::commands::{Run, fraud::Fraud};
use activity_tracker::consumers::{self, Kind};
use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};
use activity_tracker::shutdown::Shutdown;
use activity_tracker::telemetry::Telemetry;
use serde_json::{Value, json};

const PARTITIONS: i32 = 6;
const CHUNK: usize = 1_500;

/// The stream every run processes: 6,000 simulated events with 15 % fraud,
/// 50 ms apart in event time, so fraud incidents straddle the moments the
/// fleet changes.
fn stream() -> Vec<Outgoing> {
    let mut sim = Simulator::new(&SimulatorConfig {
        seed: 2024,
        users: 2_000,
        fraud_rate: 0.15,
        events_per_second: 20.0,
    });
    sim.warm_up(T0);
    (0..4 * CHUNK)
        .map(|i| {
            let t = T0 + i as i64 * 50;
            let e = sim.next_event(t);
            Outgoing::keyed(&e.user_id, e.to_json(), t)
        })
        .collect()
}

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("fleet-{name}"))
}

type Replica = ConsumerProcess;

/// Replica `n` of `kind` under the classic protocol, with the fleet tests'
/// short timeouts.
fn start(kind: &str, bootstrap: &str, dir: &Path, n: usize) -> Replica {
    start_with(kind, bootstrap, dir, n, "classic")
}

/// Replica `n` of `kind` under group `protocol` (classic or consumer).
fn start_with(kind: &str, bootstrap: &str, dir: &Path, n: usize, protocol: &str) -> Replica {
    start_env(kind, bootstrap, dir, n, protocol, &[])
}

/// [`start_with`], with `extra` settings.
fn start_env(kind: &str, bootstrap: &str, dir: &Path, n: usize, protocol: &str, extra: &[(&str, &str)]) -> Replica {
    let mut env = vec![
        ("KAFKA_GROUP_PROTOCOL", protocol),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("DRAIN_TIMEOUT", "3s"),
        ("KAFKA_COMMIT_INTERVAL_MS", "200"),
    ];
    env.extend_from_slice(extra);
    ConsumerProcess::start(kind, bootstrap, dir, n, &env)
}

fn stop(r: &mut Replica) {
    r.stop();
}

fn report(r: &Replica) -> Option<Value> {
    r.report()
}

/// Waits until every partition is owned by exactly one of `replicas`, evenly,
/// none rebuilding; returns each replica's partitions.
fn wait_settled(replicas: &[&Replica]) -> Vec<Vec<i64>> {
    wait_settled_within(replicas, Duration::from_secs(120))
}

/// [`wait_settled`] within `timeout`.
fn wait_settled_within(replicas: &[&Replica], timeout: Duration) -> Vec<Vec<i64>> {
    let mut owned = Vec::new();
    wait_until(&format!("{} replicas to settle", replicas.len()), timeout, || {
        let views: Option<Vec<Value>> = replicas.iter().map(|r| report(r)).collect();
        let Some(views) = views else { return false };
        let mut all = Vec::new();
        owned.clear();
        for v in &views {
            let c = &v["consumer"];
            if c["ready"] != json!(true) {
                return false;
            }
            let parts = c["partitions"].as_array().cloned().unwrap_or_default();
            if parts.iter().any(|p| p["rebuilding"] == json!(true)) {
                return false;
            }
            let ids: Vec<i64> = parts.iter().filter_map(|p| p["partition"].as_i64()).collect();
            all.extend(ids.iter().copied());
            owned.push(ids);
        }
        let counts: Vec<usize> = owned.iter().map(Vec::len).collect();
        let balanced = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1;
        all.sort_unstable();
        balanced && all == (0..PARTITIONS as i64).collect::<Vec<_>>()
    });
    owned
}

fn wait_committed(bootstrap: &str, group: &str) {
    let ends: BTreeMap<i32, i64> = high_watermarks(bootstrap, ACTIVITIES, PARTITIONS)
        .into_iter()
        .filter(|(_, h)| *h > 0)
        .collect();
    wait_until(
        &format!("{group} to commit every partition's end"),
        Duration::from_secs(120),
        || committed(bootstrap, group, ACTIVITIES, PARTITIONS) == ends,
    );
}

fn alert_ids(bootstrap: &str) -> Vec<String> {
    read_all(bootstrap, ALERTS)
        .iter()
        .map(|a| a.json()["alert_id"].as_str().unwrap().to_string())
        .collect()
}

/// Runs a fraud consumer in this process; returns its handle.
fn in_process_fraud(bootstrap: &str, extra: &[(&str, &str)], shutdown: &Shutdown) -> consumers::RunningConsumer {
    let mut settings = vec![("KAFKA_SESSION_TIMEOUT_MS", "6000"), ("DRAIN_TIMEOUT", "3s")];
    settings.extend_from_slice(extra);
    let config = crate::support::config(Fraud::PROFILE, bootstrap, &settings);
    let _ = activity_tracker::telemetry::logging::init(&config.log, "fleet-test");
    let app = consumers::fraud_app(&config).quiet();
    consumers::spawn(
        app,
        &config,
        Kind::Fraud.group(&config),
        &Telemetry::new(),
        shutdown.clone(),
    )
    .unwrap()
}

fn owns(c: &consumers::RunningConsumer) -> Vec<i32> {
    c.shared
        .status
        .read()
        .map(|s| {
            s.partitions
                .iter()
                .filter(|p| !p.rebuilding)
                .map(|p| p.partition)
                .collect()
        })
        .unwrap_or_default()
}

fn cart(n: u32, at_s: i64) -> Outgoing {
    let t = T0 + at_s * 1000;
    let json = json!({
        "event_id": format!("cart-{n}"), "timestamp": activity_tracker::eventtime::format_rfc3339_ms(t),
        "user_id": "bot-7", "session_id": "s", "event_type": "add_to_cart",
        "properties": {"product_id": "p", "price": 5.0, "cart_value": 5.0 * f64::from(n)},
    });
    Outgoing::keyed("bot-7", json.to_string(), t)
}

/// `n` users with one $900 purchase each, `gap_ms` apart: two alerts each
/// (HIGH_VALUE_PURCHASE and PURCHASE_WITHOUT_ACTIVITY).
fn big_purchases(n: u32, gap_ms: i64) -> Vec<Outgoing> {
    (0..n)
        .map(|i| {
            let user = format!("buyer-{i}");
            let t = T0 + i64::from(i) * gap_ms;
            let json = json!({
                "event_id": format!("buy-{i}"), "timestamp": activity_tracker::eventtime::format_rfc3339_ms(t),
                "user_id": user, "session_id": "s", "event_type": "purchase",
                "properties": {"product_id": "p", "price": 900.0, "cart_value": 900.0},
            });
            Outgoing::keyed(&user, json.to_string(), t)
        })
        .collect()
}
