//! The consumer fleet: scaling up, down, a graceful stop and a `kill -9`
//! change nothing in the results.
//!
//! Replicas are separate processes of the real binary (a `kill -9` must be a
//! real one), against real Apache Kafka under both group protocols
//! (classic cooperative-sticky and KIP-848), where a moved partition's
//! state is rebuilt from the offset Kafka finds by timestamp. Every replica writes an audit log
//! (`AUDIT_LOG`) of the offsets it processed live, flushed before offsets are
//! stored, so "every event processed at least once" is observed, not assumed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::support::*;
use activity_tracker::commands::{Run, fraud::Fraud};
use activity_tracker::consumers::{self, Kind};
use activity_tracker::fraud::Rule;
use activity_tracker::fraud::alert::alert_id;
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
    ConsumerProcess::start(
        kind,
        bootstrap,
        dir,
        n,
        &[
            ("KAFKA_GROUP_PROTOCOL", protocol),
            ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("DRAIN_TIMEOUT", "3s"),
            ("KAFKA_COMMIT_INTERVAL_MS", "200"),
        ],
    )
}

/// Rebuilds a replica made so far, by how it found the replay's start.
fn rebuilds(r: &Replica, method: &str) -> f64 {
    metric_sum(r.http, "activity_state_rebuilds_total", &[("method", method)])
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

/// Waits until the replicas' reports were taken after they reached the end
/// of every partition they own, and returns them.
fn fresh_reports(bootstrap: &str, replicas: &[&Replica]) -> Vec<Value> {
    let ends = high_watermarks(bootstrap, ACTIVITIES, PARTITIONS);
    let mut reports = Vec::new();
    wait_until("reports that include every event", Duration::from_secs(30), || {
        let views: Option<Vec<Value>> = replicas.iter().map(|r| report(r)).collect();
        let Some(views) = views else { return false };
        let complete = views.iter().all(|v| {
            v["consumer"]["partitions"].as_array().is_some_and(|parts| {
                parts.iter().all(|p| {
                    let partition = p["partition"].as_i64().unwrap_or(-1) as i32;
                    p["position"].as_i64() == ends.get(&partition).copied()
                })
            })
        });
        reports = views;
        complete
    });
    reports
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

#[test]
fn scaling_and_crashing_the_fraud_fleet_changes_no_alert_classic_protocol() {
    fraud_fleet("classic");
}

#[test]
fn scaling_and_crashing_the_fraud_fleet_changes_no_alert_kip848_protocol() {
    fraud_fleet("consumer");
}

/// One replica against a fleet that scales 1 → 3 → 2 → 4 with a graceful
/// stop and a kill -9, on real Kafka under group `protocol`.
fn fraud_fleet(protocol: &str) {
    let events = stream();

    // (a) one replica, start to end.
    let single = kafka(PARTITIONS);
    let bootstrap_a = single.bootstrap_servers().to_string();
    let dir_a = scratch(&format!("fraud-single-{protocol}"));
    produce(&bootstrap_a, ACTIVITIES, &events);
    let mut only = start_with("fraud", &bootstrap_a, &dir_a, 1, protocol);
    wait_committed(&bootstrap_a, "fraud-detectors");
    stop(&mut only);
    let expected: BTreeSet<String> = alert_ids(&bootstrap_a).into_iter().collect();
    assert!(expected.len() >= 50, "the stream raises alerts: {}", expected.len());

    // (b) a fleet that goes 1 → 3 → 2 → 4 mid-stream, with one graceful
    // stop and one kill -9.
    let fleet = kafka(PARTITIONS);
    let bootstrap = fleet.bootstrap_servers().to_string();
    let dir = scratch(&format!("fraud-fleet-{protocol}"));
    let chunks: Vec<&[Outgoing]> = events.chunks(CHUNK).collect();

    let r1 = start_with("fraud", &bootstrap, &dir, 1, protocol);
    produce(&bootstrap, ACTIVITIES, chunks[0]);
    wait_committed(&bootstrap, "fraud-detectors");

    let r2 = start_with("fraud", &bootstrap, &dir, 2, protocol);
    let mut r3 = start_with("fraud", &bootstrap, &dir, 3, protocol);
    println!("1 → 3 replicas: {:?}", wait_settled(&[&r1, &r2, &r3]));
    produce(&bootstrap, ACTIVITIES, chunks[1]);
    wait_committed(&bootstrap, "fraud-detectors");

    stop(&mut r3);
    println!("3 → 2 replicas (graceful stop): {:?}", wait_settled(&[&r1, &r2]));
    let before = report(&r2)
        .map(|v| v["consumer"]["events_processed"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    produce(&bootstrap, ACTIVITIES, chunks[2]);
    // Crash replica 2 while it works through the chunk.
    wait_until(
        "replica 2 to be working on the new chunk",
        Duration::from_secs(30),
        || report(&r2).is_some_and(|v| v["consumer"]["events_processed"].as_u64().unwrap_or(0) > before),
    );
    let mut r2 = r2;
    r2.process.signal("KILL");
    r2.process.wait(Duration::from_secs(10));
    let r4 = start_with("fraud", &bootstrap, &dir, 4, protocol);
    let r5 = start_with("fraud", &bootstrap, &dir, 5, protocol);
    let r6 = start_with("fraud", &bootstrap, &dir, 6, protocol);
    println!(
        "2 → 4 replicas (after kill -9 of one): {:?}",
        wait_settled(&[&r1, &r4, &r5, &r6])
    );
    produce(&bootstrap, ACTIVITIES, chunks[3]);
    wait_committed(&bootstrap, "fraud-detectors");
    // Real Kafka answers ListOffsets by timestamp: every rebuild took that
    // path, none fell back to the previous owner's commit metadata.
    let by_time: f64 = [&r1, &r4, &r5, &r6].iter().map(|r| rebuilds(r, "timestamp")).sum();
    let by_metadata: f64 = [&r1, &r4, &r5, &r6]
        .iter()
        .map(|r| rebuilds(r, "commit_metadata"))
        .sum();
    // Commits the coordinator refused (a stale member epoch under KIP-848,
    // a rebalance in progress under the classic protocol): counted, not
    // fatal — the next commit carries the same offsets.
    let refused: f64 = [&r1, &r4, &r5, &r6]
        .iter()
        .map(|r| metric_sum(r.http, "activity_consumer_commits_total", &[("result", "error")]))
        .sum();
    assert!(by_time > 0.0, "moved partitions were rebuilt by timestamp");
    assert_eq!(by_metadata, 0.0, "no rebuild fell back to commit metadata");
    for mut r in [r1, r4, r5, r6] {
        stop(&mut r);
    }

    let ids = alert_ids(&bootstrap);
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    // Every offset was processed at least once (a killed replica's audit
    // lines after its last commit may be lost; those events were processed
    // again by the new owner, so they still appear).
    assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &audit(&dir.join("audit"), ""));
    println!(
        "fleet ({protocol}): {} events, {} alerts published ({} unique; {} copies re-sent after the kill -9, dropped by alert_id); every offset processed at least once; {by_time} rebuilds by timestamp; {refused} commits refused by the coordinator",
        events.len(),
        ids.len(),
        unique.len(),
        ids.len() - unique.len()
    );
    assert_eq!(unique, expected, "the fleet raises exactly the single replica's alerts");
    let single = audit(&dir_a.join("audit"), "");
    assert_eq!(single.len(), events.len(), "the single replica processed every event");
    assert!(
        single.values().all(|&n| n == 1),
        "the single replica processed each event once"
    );
}

#[test]
fn analytics_totals_of_a_graceful_fleet_add_up_to_one_replicas() {
    let events = stream();
    let sum_cents = |v: &Value| (v.as_f64().unwrap() * 100.0).round() as i64;

    let single = kafka(PARTITIONS);
    let bootstrap_a = single.bootstrap_servers().to_string();
    let dir_a = scratch("analytics-single");
    produce(&bootstrap_a, ACTIVITIES, &events);
    let mut only = start("analytics", &bootstrap_a, &dir_a, 1);
    wait_committed(&bootstrap_a, "analytics-processors");
    let windowed_a = fresh_reports(&bootstrap_a, &[&only]).remove(0);
    assert_eq!(windowed_a["total_events"], json!(events.len()));
    stop(&mut only);
    let totals_a: Value = serde_json::from_str(&std::fs::read_to_string(&only.report).unwrap()).unwrap();

    let fleet = kafka(PARTITIONS);
    let bootstrap = fleet.bootstrap_servers().to_string();
    let dir = scratch("analytics-fleet");
    let chunks: Vec<&[Outgoing]> = events.chunks(CHUNK).collect();
    let r1 = start("analytics", &bootstrap, &dir, 1);
    produce(&bootstrap, ACTIVITIES, chunks[0]);
    wait_committed(&bootstrap, "analytics-processors");
    let r2 = start("analytics", &bootstrap, &dir, 2);
    let mut r3 = start("analytics", &bootstrap, &dir, 3);
    wait_settled(&[&r1, &r2, &r3]);
    produce(&bootstrap, ACTIVITIES, chunks[1]);
    wait_committed(&bootstrap, "analytics-processors");
    stop(&mut r3);
    wait_settled(&[&r1, &r2]);
    produce(&bootstrap, ACTIVITIES, chunks[2]);
    wait_committed(&bootstrap, "analytics-processors");
    let r4 = start("analytics", &bootstrap, &dir, 4);
    let r5 = start("analytics", &bootstrap, &dir, 5);
    wait_settled(&[&r1, &r2, &r4, &r5]);
    produce(&bootstrap, ACTIVITIES, chunks[3]);
    wait_committed(&bootstrap, "analytics-processors");

    // Distinct users: the replicas alive now own every partition once.
    let windowed = fresh_reports(&bootstrap, &[&r1, &r2, &r4, &r5]);
    for stage in ["page_view", "click", "search", "add_to_cart", "purchase"] {
        let sum: u64 = windowed
            .iter()
            .map(|v| v["funnel_users"][stage].as_u64().unwrap())
            .sum();
        assert_eq!(json!(sum), windowed_a["funnel_users"][stage], "funnel {stage}");
    }
    let active: u64 = windowed.iter().map(|v| v["active_users"].as_u64().unwrap()).sum();
    assert_eq!(json!(active), windowed_a["active_users"]);

    // Volume totals: every replica that ever ran, from its final report.
    let mut live = [r1, r2, r4, r5];
    for r in &live {
        r.process.signal("TERM");
    }
    for r in &mut live {
        assert_eq!(r.process.wait(Duration::from_secs(30)), 0);
    }
    let finals: Vec<Value> = live
        .iter()
        .chain([&r3])
        .map(|r| serde_json::from_str(&std::fs::read_to_string(&r.report).unwrap()).unwrap())
        .collect();
    assert_eq!(finals.len(), 5, "every replica that ran left a final report");
    let total = |key: &str| finals.iter().map(|f| f[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(total("total_events"), events.len() as u64, "each event counted once");
    assert_eq!(json!(total("total_events")), totals_a["total_events"]);
    assert_eq!(json!(total("purchase_count")), totals_a["purchase_count"]);
    let revenue: i64 = finals.iter().map(|f| sum_cents(&f["revenue_total"])).sum();
    assert_eq!(revenue, sum_cents(&totals_a["revenue_total"]));
    for key in ["event_types", "countries", "device_types"] {
        let mut merged: BTreeMap<String, u64> = BTreeMap::new();
        for f in &finals {
            for (k, v) in f[key].as_object().unwrap() {
                *merged.entry(k.clone()).or_default() += v.as_u64().unwrap();
            }
        }
        assert_eq!(serde_json::to_value(&merged).unwrap(), totals_a[key], "{key}");
    }
    let duplicates = assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &audit(&dir.join("audit"), ""));
    assert_eq!(duplicates, 0, "graceful moves process nothing twice");
    println!(
        "analytics fleet: {} events over 5 replicas summed to the single replica's totals; funnel and active users match",
        total("total_events")
    );
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

/// The velocity window of one user is split by a partition move: three cart
/// additions before, two after. With rebuild the new owner raises
/// HIGH_VELOCITY at the fifth, as a single replica would; without, it
/// cannot (the negative control shows the test can fail).
fn velocity_across_a_move(rebuild: bool) -> (Vec<String>, u64) {
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    let setting = [("STATE_REBUILD", if rebuild { "true" } else { "false" })];
    produce(&bootstrap, ACTIVITIES, &[cart(1, 0), cart(2, 5), cart(3, 10)]);
    let first_stop = Shutdown::new();
    let first = in_process_fraud(&bootstrap, &setting, &first_stop);
    wait_until(
        "the first owner to commit three events",
        Duration::from_secs(60),
        || committed(&bootstrap, "fraud-detectors", ACTIVITIES, 1).get(&0) == Some(&3),
    );
    let second_stop = Shutdown::new();
    let second = in_process_fraud(&bootstrap, &setting, &second_stop);
    wait_until("the second replica to join", Duration::from_secs(60), || {
        second.shared.ready()
    });
    first_stop.trigger();
    first.thread.join().unwrap().unwrap();
    wait_until(
        "the partition to move to the fresh replica",
        Duration::from_secs(60),
        || owns(&second) == vec![0],
    );
    produce(&bootstrap, ACTIVITIES, &[cart(4, 15), cart(5, 20)]);
    wait_committed_one(&bootstrap);
    let replayed = second.shared.status.read().unwrap().partitions[0].replayed_events;
    second_stop.trigger();
    second.thread.join().unwrap().unwrap();
    (alert_ids(&bootstrap), replayed)
}

fn wait_committed_one(bootstrap: &str) {
    wait_until("all five events committed", Duration::from_secs(60), || {
        committed(bootstrap, "fraud-detectors", ACTIVITIES, 1).get(&0) == Some(&5)
    });
}

#[test]
fn rebuild_carries_a_velocity_window_across_a_partition_move() {
    // The fifth cart is the fifth record of the only partition.
    let single_replica_alert = alert_id(Rule::HighVelocity, "bot-7", "cart-5", Some((0, 4)));
    let (alerts, replayed) = velocity_across_a_move(true);
    assert_eq!(
        alerts,
        vec![single_replica_alert],
        "raised at the same event as one replica would"
    );
    assert!(replayed >= 3, "the three earlier carts were replayed: {replayed}");
    let (alerts, replayed) = velocity_across_a_move(false);
    assert!(
        alerts.is_empty(),
        "without rebuild the new owner sees only two carts: {alerts:?}"
    );
    assert_eq!(replayed, 0);
}

/// A committed offset beyond the end of the log (truncated, or the topic
/// recreated) used to make every new event below it warm-up only: never
/// counted, never judged. The runtime resumes at the end of the log instead.
#[test]
fn a_committed_offset_beyond_the_end_of_the_log_resumes_at_its_end() {
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    produce(&bootstrap, ACTIVITIES, &[cart(1, 0), cart(2, 100), cart(3, 200)]);
    commit_offset(&bootstrap, "fraud-detectors", ACTIVITIES, 0, 100);
    let stop = Shutdown::new();
    let detector = in_process_fraud(&bootstrap, &[], &stop);
    wait_until("the detector to own the partition", Duration::from_secs(60), || {
        owns(&detector) == vec![0]
    });
    produce(&bootstrap, ACTIVITIES, &[cart(4, 300), cart(5, 400)]);
    // The status is a snapshot taken every second: wait for it as well.
    let processed = || detector.shared.status.read().unwrap().events_processed;
    wait_until(
        "the new events to be processed and committed",
        Duration::from_secs(60),
        || committed(&bootstrap, "fraud-detectors", ACTIVITIES, 1).get(&0) == Some(&5) && processed() >= 2,
    );
    let processed = processed();
    stop.trigger();
    detector.thread.join().unwrap().unwrap();
    assert_eq!(
        processed, 2,
        "the two events written after the start were processed live"
    );
}

/// Lag is exported against the committed offset as well as the processed
/// position: a consumer that processes but does not commit (here: a commit
/// interval of ten minutes) shows no processing lag but its whole backlog
/// as committed lag — what a restart would process again.
#[test]
fn lag_is_exported_against_the_committed_offset_too() {
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch("committed-lag");
    let replica = ConsumerProcess::start(
        "fraud",
        &bootstrap,
        &dir,
        1,
        &[
            ("KAFKA_COMMIT_INTERVAL_MS", "600000"),
            ("KAFKA_CONFIG_STATISTICS_INTERVAL_MS", "500"),
        ],
    );
    let events: Vec<Outgoing> = (1..=40).map(|n| cart(n, i64::from(n) * 100)).collect();
    produce(&bootstrap, ACTIVITIES, &events);
    let lag = |name: &str| metric_sum(replica.http, name, &[("partition", "0")]);
    wait_until("processing lag 0 and committed lag 40", Duration::from_secs(60), || {
        replica.processed() == 40
            && lag("activity_consumer_lag_messages") == 0.0
            && lag("activity_consumer_committed_lag_messages") == 40.0
    });
}

/// An alert that can never be published (its topic does not exist; the
/// same for a write the cluster does not authorise) used to be retried for
/// ever: the partition's commits stopped behind it while the pod looked
/// healthy. The consumer now stops, exit status 1, saying which topic.
#[test]
fn an_alerts_topic_that_does_not_exist_stops_the_detector_with_a_clear_error() {
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch("missing-alerts-topic");
    let log = dir.join("fraud.log");
    let mut detector = ConsumerProcess::start_logged(
        "fraud",
        &bootstrap,
        &dir,
        1,
        &[
            ("KAFKA_ALERTS_TOPIC", "no-such-alerts-topic"),
            // librdkafka waits this long for a topic to appear (30 s by default).
            ("KAFKA_CONFIG_TOPIC_METADATA_PROPAGATION_MAX_MS", "2000"),
            ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("DRAIN_TIMEOUT", "2s"),
            ("SHUTDOWN_TIMEOUT", "6s"),
        ],
        &log,
    );
    // Five carts within a minute: HIGH_VELOCITY.
    produce(
        &bootstrap,
        ACTIVITIES,
        &(1..=5).map(|n| cart(n, i64::from(n) * 5)).collect::<Vec<_>>(),
    );
    let code = detector.process.wait(Duration::from_secs(90));
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, 1, "the detector stops with status 1:\n{output}");
    assert!(
        output.contains("error: cannot publish to no-such-alerts-topic"),
        "the error names the topic:\n{output}"
    );
    assert_eq!(
        committed(&bootstrap, "fraud-detectors", ACTIVITIES, 1)
            .get(&0)
            .copied()
            .unwrap_or(0),
        4,
        "nothing past the unpublished alert's event was committed"
    );
}

/// Back-pressure: with more alerts awaiting acknowledgement than the
/// runtime lets in flight (the alerts topic takes no record over 64 bytes,
/// so every alert is refused and retried), the consumer
/// stops fetching but keeps polling. It used to stop polling altogether:
/// evicted after max.poll.interval.ms while /healthz and /readyz stayed
/// green.
#[test]
fn a_consumer_under_back_pressure_keeps_its_group_membership() {
    let _exclusive = exclusive();
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    broker.create_topic_with("stuck-alerts", 1, &[("max.message.bytes", "64")]);
    let dir = scratch("back-pressure");
    let detector = ConsumerProcess::start(
        "fraud",
        &bootstrap,
        &dir,
        1,
        &[
            ("KAFKA_ALERTS_TOPIC", "stuck-alerts"),
            ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("KAFKA_CONFIG_MAX_POLL_INTERVAL_MS", "7000"),
            ("SHUTDOWN_TIMEOUT", "5s"),
            ("DRAIN_TIMEOUT", "2s"),
        ],
    );
    // 12,000 users, one $900 purchase each: HIGH_VALUE_PURCHASE at once and
    // PURCHASE_WITHOUT_ACTIVITY once event time is a minute past, ~18,000
    // alerts.
    produce(&bootstrap, ACTIVITIES, &big_purchases(12_000, 10));
    let in_flight = || metric_sum(detector.http, "activity_effects_in_flight", &[]);
    wait_until(
        "the alerts in flight to reach the bound",
        Duration::from_secs(60),
        || in_flight() >= 10_000.0,
    );
    // Two max.poll.interval.ms and more: still a member, still ready.
    hold(Duration::from_secs(16), || {});
    assert_eq!(
        group_members(&bootstrap, "fraud-detectors"),
        1,
        "the detector is still in its group"
    );
    let lost = metric_sum(detector.http, "activity_consumer_rebalances_total", &[("kind", "lost")]);
    assert_eq!(lost, 0.0, "its partition was never taken away");
    assert!(
        detector.processed() < 12_000,
        "fetching paused: {} processed",
        detector.processed()
    );
}

/// Records of a partition a replica no longer owns are not retried by it
/// for ever: the partition's new owner processes their uncommitted events
/// again and publishes them itself. Here every alert is refused (the
/// alerts topic takes no record over 64 bytes), replica 1 is frozen past
/// its session so its partition moves to replica 2, and once it wakes up
/// and sees the partition lost it has nothing left in flight.
#[test]
fn a_replica_drops_the_retries_of_a_partition_it_lost() {
    let _exclusive = exclusive();
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    broker.create_topic_with("stuck-alerts", 1, &[("max.message.bytes", "64")]);
    let dir = scratch("lost-retries");
    let env = [
        ("KAFKA_ALERTS_TOPIC", "stuck-alerts"),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        ("SHUTDOWN_TIMEOUT", "5s"),
        ("DRAIN_TIMEOUT", "2s"),
    ];
    let first = ConsumerProcess::start("fraud", &bootstrap, &dir, 1, &env);
    produce(&bootstrap, ACTIVITIES, &big_purchases(10, 1_000));
    let in_flight = |r: &Replica| metric_sum(r.http, "activity_effects_in_flight", &[]);
    wait_until(
        "replica 1's alerts to be stuck in flight",
        Duration::from_secs(60),
        || in_flight(&first) >= 10.0,
    );
    let second = ConsumerProcess::start("fraud", &bootstrap, &dir, 2, &env);
    wait_until("replica 2 to join", Duration::from_secs(60), || {
        report(&second).is_some_and(|v| v["consumer"]["ready"] == json!(true))
    });
    first.process.signal("STOP");
    hold(Duration::from_secs(8), || {});
    first.process.signal("CONT");
    wait_until(
        "replica 2 to own the partition and replica 1 to have nothing in flight",
        Duration::from_secs(60),
        || {
            report(&second).is_some_and(|v| v["consumer"]["partitions"].as_array().is_some_and(|p| p.len() == 1))
                && report(&first).is_some_and(|v| v["consumer"]["partitions"].as_array().is_some_and(Vec::is_empty))
                && in_flight(&first) == 0.0
        },
    );
}

/// Volume figures count each event once per group across a graceful move,
/// even when the old owner gives the partition up with effects still in
/// flight (here every alert is refused, so the drain times out and the
/// hand-over commit is below what it processed). The new owner processes
/// those events again for their alerts, and counts none of them. It used
/// to count them a second time.
#[test]
fn a_hand_over_with_alerts_in_flight_counts_each_event_once() {
    let _exclusive = exclusive();
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    broker.create_topic_with("stuck-alerts", 1, &[("max.message.bytes", "64")]);
    let dir = scratch("count-once");
    let env = [
        ("KAFKA_ALERTS_TOPIC", "stuck-alerts"),
        ("SHUTDOWN_TIMEOUT", "6s"),
        ("DRAIN_TIMEOUT", "2s"),
    ];
    let in_flight = |r: &Replica| metric_sum(r.http, "activity_effects_in_flight", &[]);
    let analysed = |r: &Replica| report(r).and_then(|v| v["events_analyzed"].as_u64());
    let mut first = ConsumerProcess::start("fraud", &bootstrap, &dir, 1, &env);
    produce(&bootstrap, ACTIVITIES, &big_purchases(10, 1_000));
    wait_until(
        "replica 1's alerts to be stuck in flight",
        Duration::from_secs(60),
        || in_flight(&first) >= 10.0 && analysed(&first) == Some(10),
    );
    first.stop();
    let committed = committed(&bootstrap, "fraud-detectors", ACTIVITIES, 1);
    assert_eq!(
        committed.get(&0).copied().unwrap_or(0),
        0,
        "nothing acknowledged, nothing committed past it"
    );

    let second = ConsumerProcess::start("fraud", &bootstrap, &dir, 2, &env);
    // One report: the position, the figures and the runtime's counters of
    // the same moment.
    let mut seen = Value::Null;
    wait_until(
        "replica 2 to process the ten events again",
        Duration::from_secs(60),
        || {
            seen = report(&second).unwrap_or(Value::Null);
            seen["consumer"]["partitions"][0]["position"].as_i64() == Some(10)
        },
    );
    assert_eq!(
        seen["events_analyzed"],
        json!(0),
        "the ten events were counted by replica 1: {seen}"
    );
    assert_eq!(seen["consumer"]["events_processed"], json!(0), "{seen}");
    wait_until("replica 2 to publish the alerts again", Duration::from_secs(60), || {
        in_flight(&second) >= 10.0
    });
    assert_eq!(metric_sum(second.http, "activity_events_processed_total", &[]), 0.0);
    produce(&bootstrap, ACTIVITIES, &big_purchases(13, 1_000)[10..]);
    wait_until(
        "replica 2 to count the three new events",
        Duration::from_secs(60),
        || analysed(&second) == Some(3),
    );
    println!(
        "count once: 10 events processed by replica 1 with their alerts in flight at its stop; replica 2 sent the alerts again and counted only the 3 new events"
    );
}

#[test]
fn revoking_partitions_under_heavy_load_loses_and_duplicates_nothing() {
    let broker = kafka(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch("revoke-load");
    let audit_dir = dir.join("audit");
    let audit_setting = [("AUDIT_LOG", audit_dir.to_str().unwrap())];
    let mut sim = Simulator::new(&SimulatorConfig {
        seed: 9,
        users: 50_000,
        fraud_rate: 0.1,
        events_per_second: 1_000.0,
    });
    sim.warm_up(T0);
    let events: Vec<Outgoing> = (0..48_000)
        .map(|i| {
            let t = T0 + i;
            let e = sim.next_event(t);
            Outgoing::keyed(&e.user_id, e.to_json(), t)
        })
        .collect();
    let total = events.len() as u64;
    let (backlog, rest) = events.split_at(8_000);
    produce(&bootstrap, ACTIVITIES, backlog);

    let a_stop = Shutdown::new();
    let a = in_process_fraud(&bootstrap, &audit_setting, &a_stop);
    // Keep the load on: the rest arrives in batches while partitions move.
    let feeder = {
        let bootstrap = bootstrap.clone();
        let rest: Vec<Outgoing> = rest
            .iter()
            .map(|o| {
                Outgoing::keyed(
                    std::str::from_utf8(o.key.as_deref().unwrap()).unwrap(),
                    o.payload.clone().unwrap(),
                    o.timestamp_ms,
                )
            })
            .collect();
        std::thread::spawn(move || {
            for batch in rest.chunks(2_000) {
                produce(&bootstrap, ACTIVITIES, batch);
            }
        })
    };
    wait_until("the first replica to be under way", Duration::from_secs(60), || {
        a.shared
            .status
            .read()
            .map(|s| s.events_processed > 3_000)
            .unwrap_or(false)
    });
    // Scale up under load: about half the partitions are revoked from A
    // while it is busy, drained, committed and handed to B.
    let b_stop = Shutdown::new();
    let b = in_process_fraud(&bootstrap, &audit_setting, &b_stop);
    wait_until("partitions to be shared", Duration::from_secs(90), || {
        !owns(&b).is_empty() && !owns(&a).is_empty()
    });
    let a_processed_at_move = a.shared.status.read().unwrap().events_processed;
    // Then stop A gracefully while B is still busy.
    feeder.join().unwrap();
    a_stop.trigger();
    a.thread.join().unwrap().unwrap();
    wait_committed(&bootstrap, "fraud-detectors");
    b_stop.trigger();
    b.thread.join().unwrap().unwrap();

    let seen = audit(&dir.join("audit"), "");
    let duplicates = assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &seen);
    println!(
        "revoke under load: {} events, {} processed by the first replica when partitions moved, {} duplicates",
        total, a_processed_at_move, duplicates
    );
    assert!(a_processed_at_move < total, "the move happened mid-stream");
    assert_eq!(duplicates, 0, "a graceful revoke processes nothing twice");
}

/// A replica stopped gracefully leaves the group as it goes, so the rest of
/// the group takes its partitions at once, not after the session timeout
/// (60 s here; 45 s by default). On the embedded broker every rebalance
/// waits for the session timeout, so this needs real Kafka.
#[test]
fn a_stopped_replica_leaves_the_group_at_once() {
    let broker = kafka(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch("leave");
    let env = [
        ("KAFKA_GROUP_PROTOCOL", "classic"),
        ("KAFKA_SESSION_TIMEOUT_MS", "60000"),
        ("DRAIN_TIMEOUT", "3s"),
        ("KAFKA_COMMIT_INTERVAL_MS", "200"),
    ];
    let first = ConsumerProcess::start("fraud", &bootstrap, &dir, 1, &env);
    let mut second = ConsumerProcess::start("fraud", &bootstrap, &dir, 2, &env);
    wait_settled(&[&first, &second]);
    // Under load, as in production (librdkafka's unsubscribe-then-close
    // left without a LeaveGroup only when messages were flowing).
    let feeding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feeder = {
        let (bootstrap, feeding) = (bootstrap.clone(), feeding.clone());
        let events = stream();
        std::thread::spawn(move || {
            for batch in events.chunks(100).cycle() {
                if !feeding.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                produce(&bootstrap, ACTIVITIES, batch);
            }
        })
    };
    wait_until("the replicas to be under load", Duration::from_secs(30), || {
        [&first, &second]
            .iter()
            .all(|r| report(r).is_some_and(|v| v["consumer"]["events_processed"].as_u64().unwrap_or(0) > 0))
    });
    let stopped = std::time::Instant::now();
    second.stop();
    // Well inside the session timeout: only a LeaveGroup explains it.
    wait_settled_within(&[&first], Duration::from_secs(30));
    feeding.store(false, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
    println!(
        "leave: the remaining replica owned every partition {:.1} s after the other was stopped (session timeout 60 s)",
        stopped.elapsed().as_secs_f64()
    );
}

/// A frozen pod (SIGSTOP for 8 s, then SIGCONT: a long GC-like pause, a
/// throttled or suspended container) outlives its session (6 s): the group
/// fences it and moves its partitions, and on waking it must see them
/// lost, rejoin and consume again. Under KIP-848 the rejoin after fencing
/// is where librdkafka 2.12 has known defects (fixed by 2.15).
///
/// Not covered: an eviction for a slow poll alone (the application not
/// polling while librdkafka's threads run on), which no signal can cause
/// from outside the process.
fn resumes_after_an_eviction(protocol: &str, session_ms: &str, max_poll_ms: &str, freeze: Duration) -> Duration {
    let _exclusive = exclusive();
    let broker = kafka(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch(&format!("eviction-{protocol}"));
    let env = [
        ("KAFKA_GROUP_PROTOCOL", protocol),
        ("KAFKA_SESSION_TIMEOUT_MS", session_ms),
        ("DRAIN_TIMEOUT", "3s"),
        ("KAFKA_COMMIT_INTERVAL_MS", "200"),
        ("KAFKA_CONFIG_MAX_POLL_INTERVAL_MS", max_poll_ms),
    ];
    let events = stream();
    let (before, after) = events.split_at(CHUNK);
    let mut replica = ConsumerProcess::start("fraud", &bootstrap, &dir, 1, &env);
    produce(&bootstrap, ACTIVITIES, before);
    wait_until(
        "the replica to process the first chunk",
        Duration::from_secs(60),
        || {
            replica.assert_running();
            replica.processed() >= before.len() as u64
        },
    );
    replica.process.signal("STOP");
    hold(freeze, || {});
    replica.process.signal("CONT");
    let resumed = std::time::Instant::now();
    produce(&bootstrap, ACTIVITIES, after);
    wait_until(
        &format!("the replica to consume again after its eviction ({protocol})"),
        Duration::from_secs(90),
        || replica.processed() >= events.len() as u64,
    );
    wait_committed(&bootstrap, "fraud-detectors");
    let took = resumed.elapsed();
    // The group had taken the partitions away: the replica saw them lost.
    let lost = metric_sum(replica.http, "activity_consumer_rebalances_total", &[("kind", "lost")]);
    assert!(lost >= 1.0, "the freeze evicted the replica (partitions lost: {lost})");
    replica.stop();
    took
}

#[test]
fn a_frozen_replica_consumes_again_after_its_eviction_classic_protocol() {
    let took = resumes_after_an_eviction("classic", "6000", "6000", Duration::from_secs(8));
    println!(
        "eviction (classic): frozen 8 s (session 6 s); every event processed and committed {:.1} s after it resumed",
        took.as_secs_f64()
    );
}

#[test]
fn a_frozen_replica_consumes_again_after_its_eviction_kip848_protocol() {
    let took = resumes_after_an_eviction("consumer", "45000", "300000", Duration::from_secs(8));
    println!(
        "eviction (consumer): frozen 8 s (broker session 6 s); every event processed and committed {:.1} s after it resumed",
        took.as_secs_f64()
    );
}

/// Static membership (`KAFKA_GROUP_INSTANCE_ID`, the StatefulSet pod name):
/// a replica restarted within the session timeout gets its own partitions
/// back and the rest of the group never rebalances. Under both protocols.
fn static_member_restarts_without_a_rebalance(protocol: &str) {
    let broker = kafka(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch(&format!("static-{protocol}"));
    let env = |instance: &'static str| {
        [
            ("KAFKA_GROUP_PROTOCOL", protocol),
            ("KAFKA_GROUP_INSTANCE_ID", instance),
            // Long enough for the restart (under KIP-848 the broker's
            // session applies: 6 s on the test cluster).
            ("KAFKA_SESSION_TIMEOUT_MS", "30000"),
            ("DRAIN_TIMEOUT", "3s"),
        ]
    };
    let assigned = |r: &Replica| metric_sum(r.http, "activity_consumer_rebalances_total", &[("kind", "assign")]);
    let mut first = ConsumerProcess::start("fraud", &bootstrap, &dir, 1, &env("fraud-0"));
    let second = ConsumerProcess::start("fraud", &bootstrap, &dir, 2, &env("fraud-1"));
    let owned = wait_settled(&[&first, &second]);
    let second_assignments = assigned(&second);
    first.stop();
    let first = ConsumerProcess::start("fraud", &bootstrap, &dir, 3, &env("fraud-0"));
    let again = wait_settled(&[&first, &second]);
    assert_eq!(again, owned, "the restarted member got its own partitions back");
    assert_eq!(
        assigned(&second),
        second_assignments,
        "the other member saw no rebalance"
    );
    println!(
        "static membership ({protocol}): a restarted member got {:?} back; the other kept {:?} with no rebalance",
        again[0], again[1]
    );
}

#[test]
fn a_static_member_restarts_without_a_rebalance_classic_protocol() {
    static_member_restarts_without_a_rebalance("classic");
}

#[test]
fn a_static_member_restarts_without_a_rebalance_kip848_protocol() {
    static_member_restarts_without_a_rebalance("consumer");
}
