//! Scaling and crashing a fleet of replica processes changes no result:
//! not the fraud alerts, not the analytics totals, and a revocation under
//! heavy load loses and duplicates nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::*;
use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};
use activity_tracker::shutdown::Shutdown;
use serde_json::{Value, json};

use super::{
    CHUNK, PARTITIONS, Replica, alert_ids, in_process_fraud, owns, report, scratch, start, start_env, stop, stream,
    wait_committed, wait_settled,
};

/// Rebuilds by replay alone: snapshots off.
#[test]
fn scaling_and_crashing_the_fraud_fleet_changes_no_alert_classic_protocol() {
    fraud_fleet("classic", Rebuilds::Replay);
}

/// Rebuilds from partition snapshots: written at every graceful hand-over
/// and every second mid-stream, restored with the tail since them.
#[test]
fn scaling_and_crashing_the_fraud_fleet_changes_no_alert_kip848_protocol() {
    fraud_fleet("consumer", Rebuilds::Snapshots);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rebuilds {
    Replay,
    Snapshots,
}

/// One replica against a fleet that scales 1 → 3 → 2 → 4 with a graceful
/// stop and a kill -9, on real Kafka under group `protocol`, rebuilding
/// moved partitions as `rebuilds` says.
fn fraud_fleet(protocol: &str, rebuilds_by: Rebuilds) {
    let interval = match rebuilds_by {
        Rebuilds::Replay => "0",
        Rebuilds::Snapshots => "1s",
    };
    let start_with = |kind: &str, bootstrap: &str, dir: &std::path::Path, n: usize, protocol: &str| {
        start_env(
            kind,
            bootstrap,
            dir,
            n,
            protocol,
            &[("STATE_SNAPSHOT_INTERVAL", interval)],
        )
    };
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
    let by_snapshot: f64 = [&r1, &r4, &r5, &r6].iter().map(|r| rebuilds(r, "snapshot")).sum();
    let unusable: f64 = [&r1, &r4, &r5, &r6]
        .iter()
        .map(|r| metric_sum(r.http, "activity_state_restores_total", &[("outcome", "unusable")]))
        .sum();
    match rebuilds_by {
        Rebuilds::Replay => {
            assert!(by_time > 0.0, "moved partitions were rebuilt by timestamp");
            assert_eq!(
                by_snapshot, 0.0,
                "no snapshot is written or restored with snapshots off"
            );
        }
        Rebuilds::Snapshots => {
            assert!(by_snapshot > 0.0, "moved partitions were restored from snapshots");
            println!(
                "{by_snapshot} rebuilds from snapshots, {by_time} by timestamp, {unusable} lookups found only unusable snapshots"
            );
        }
    }
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
    // The moved partitions were restored from the hand-over snapshots the
    // graceful owners wrote (snapshots are on by default).
    let restored: f64 = [&r1, &r2, &r4, &r5].iter().map(|r| rebuilds(r, "snapshot")).sum();
    assert!(
        restored > 0.0,
        "moved analytics partitions were restored from snapshots"
    );
    // Users by the source of their latest session, over the same window.
    let users_by_source = |reports: &[&Value]| -> BTreeMap<String, u64> {
        let mut merged = BTreeMap::new();
        for r in reports {
            for (source, f) in r["sources"].as_object().unwrap() {
                *merged.entry(source.clone()).or_default() += f["users"].as_u64().unwrap();
            }
        }
        merged.retain(|_, n| *n != 0);
        merged
    };
    assert_eq!(
        users_by_source(&windowed.iter().collect::<Vec<_>>()),
        users_by_source(&[&windowed_a]),
        "users by source"
    );

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
    // Acquisition and engagement: each session counted once, by whichever
    // replica owned its partition when the watermark passed its landing
    // event; the replay of a moved partition counts nothing.
    assert!(
        totals_a["sessions"].as_u64().unwrap() > 100,
        "the stream has sessions: {}",
        totals_a["sessions"]
    );
    for key in ["sessions", "engaged_sessions", "new_users", "returning_users"] {
        assert_eq!(json!(total(key)), totals_a[key], "{key}");
    }
    for key in ["channels", "entry_pages", "exit_pages"] {
        let mut merged: BTreeMap<String, i64> = BTreeMap::new();
        for f in &finals {
            for (k, v) in f[key].as_object().unwrap() {
                *merged.entry(k.clone()).or_default() += v.as_i64().unwrap();
            }
        }
        merged.retain(|_, v| *v != 0);
        let mut single: BTreeMap<String, i64> = serde_json::from_value(totals_a[key].clone()).unwrap();
        single.retain(|_, v| *v != 0);
        assert_eq!(merged, single, "{key}");
    }
    for key in ["sources", "campaigns"] {
        let mut merged: BTreeMap<String, (u64, u64, i64)> = BTreeMap::new();
        let figures = |f: &Value| {
            f[key]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let n = |field: &str| v[field].as_u64().unwrap();
                    (k.clone(), (n("sessions"), n("conversions"), sum_cents(&v["revenue"])))
                })
                .collect::<Vec<_>>()
        };
        for f in &finals {
            for (k, (s, c, r)) in figures(f) {
                let m = merged.entry(k).or_default();
                *m = (m.0 + s, m.1 + c, m.2 + r);
            }
        }
        merged.retain(|_, v| *v != (0, 0, 0));
        let single: BTreeMap<String, (u64, u64, i64)> = figures(&totals_a)
            .into_iter()
            .filter(|(_, v)| *v != (0, 0, 0))
            .collect();
        assert_eq!(merged, single, "{key}");
    }
    let duplicates = assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &audit(&dir.join("audit"), ""));
    assert_eq!(duplicates, 0, "graceful moves process nothing twice");
    println!(
        "analytics fleet: {} events over 5 replicas summed to the single replica's totals; funnel, active users, sources, campaigns and engagement match",
        total("total_events")
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

/// Rebuilds a replica made so far, by how it found the replay's start.
fn rebuilds(r: &Replica, method: &str) -> f64 {
    metric_sum(r.http, "activity_state_rebuilds_total", &[("method", method)])
}

/// Waits until the replicas' reports were taken after they reached the end
/// of every partition they own, and returns them.
fn fresh_reports(bootstrap: &str, replicas: &[&Replica]) -> Vec<Value> {
    let ends = high_watermarks(bootstrap, ACTIVITIES, PARTITIONS);
    let mut reports = Vec::new();
    wait_until("reports that include every event", Duration::from_secs(30), || {
        let views: Option<Vec<Value>> = replicas.iter().map(|r| report(r)).collect();
        let Some(views) = views else { return false };
        // Every partition in some report, at its end: a report published
        // before its replica's assignment lists no partition, and must not
        // count as complete.
        let mut at_end = BTreeSet::new();
        for v in &views {
            for p in v["consumer"]["partitions"].as_array().into_iter().flatten() {
                let partition = p["partition"].as_i64().unwrap_or(-1) as i32;
                let end = ends.get(&partition).copied();
                if p["position"].as_i64() == end || end == Some(0) {
                    at_end.insert(partition);
                }
            }
        }
        let complete = at_end.len() == PARTITIONS as usize;
        reports = views;
        complete
    });
    reports
}
