//! Rebuilds from partition snapshots, after a crash: one user's velocity
//! window is split by a `kill -9` of its partition's owner. The new owner
//! restores the snapshot its predecessor wrote mid-stream and replays only
//! the events since it; with no snapshot, or one written under other
//! settings, it replays the window instead. Either way it raises the alert a
//! single owner raises, at the same event.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use activity_tracker::fraud::Rule;
use activity_tracker::fraud::alert::alert_id;
use activity_tracker::runtime::snapshots::{Manifest, SnapshotOptions};
use serde_json::json;

use super::{Replica, alert_ids, cart, report, scratch, start_env};

const GROUP: &str = "fraud-detectors";

/// A page view of a user other than the one whose carts are counted: traffic
/// that moves the partition on without touching the velocity window.
fn page_view(n: u32, at_s: i64) -> Outgoing {
    let t = T0 + at_s * 1000;
    let user = format!("reader-{n}");
    let json = json!({
        "event_id": format!("view-{n}"), "timestamp": activity_tracker::eventtime::format_rfc3339_ms(t),
        "user_id": user, "session_id": "s", "event_type": "page_view",
        "properties": {"page": "/"},
    });
    Outgoing::keyed(&user, json.to_string(), t)
}

/// The manifests in the group's state topic, latest per slot.
fn manifests(bootstrap: &str) -> Vec<Manifest> {
    let topic = SnapshotOptions::topic_for(ACTIVITIES, GROUP);
    let mut latest = BTreeMap::new();
    for r in read_all(bootstrap, &topic) {
        let key = String::from_utf8(r.key.unwrap_or_default()).unwrap();
        if key.ends_with("/manifest") {
            latest.insert(key, serde_json::from_slice::<Manifest>(&r.payload).unwrap());
        }
    }
    latest.into_values().collect()
}

fn committed_at(bootstrap: &str) -> Option<i64> {
    committed(bootstrap, GROUP, ACTIVITIES, 1).get(&0).copied()
}

struct Outcome {
    alerts: Vec<String>,
    /// Events the new owner replayed in warm-up mode.
    replayed: u64,
    /// The committed offset the new owner started from.
    committed: i64,
    /// The newest snapshot at or before it when the new owner started.
    snapshot: Option<i64>,
    restores: [f64; 3],
}

/// Three carts, then page views until the first owner (run with `first`)
/// has written a snapshot (if it writes any, within a few seconds), then a
/// fourth cart; `kill -9`; a fresh owner with the default settings; the
/// fifth cart.
fn velocity_across_a_crash(name: &str, first: &[(&str, &str)], expect_snapshot: bool) -> Outcome {
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
    let dir = scratch(&format!("snapshots-{name}"));
    produce(&bootstrap, ACTIVITIES, &[cart(1, 0), cart(2, 5), cart(3, 10)]);
    let mut owner = start_env("fraud", &bootstrap, &dir, 1, "classic", first);
    wait_until(
        "the first owner to commit three events",
        Duration::from_secs(60),
        || committed_at(&bootstrap) == Some(3),
    );
    // Traffic until a periodic snapshot is written mid-stream (the loop
    // snapshots after a batch, once the interval has passed).
    let mut views = 0;
    if expect_snapshot {
        wait_until("a periodic snapshot", Duration::from_secs(60), || {
            views += 1;
            produce(&bootstrap, ACTIVITIES, &[page_view(views, 11)]);
            let end = 3 + i64::from(views);
            wait_until("the page view committed", Duration::from_secs(30), || {
                committed_at(&bootstrap) == Some(end)
            });
            !manifests(&bootstrap).is_empty()
        });
    }
    produce(&bootstrap, ACTIVITIES, &[cart(4, 15)]);
    let committed = 4 + i64::from(views);
    wait_until("the fourth cart committed", Duration::from_secs(30), || {
        committed_at(&bootstrap) == Some(committed)
    });
    owner.process.signal("KILL");
    owner.process.wait(Duration::from_secs(10));
    let snapshot = manifests(&bootstrap)
        .iter()
        .map(|m| m.offset)
        .filter(|&o| o <= committed)
        .max();

    let mut next: Replica = start_env("fraud", &bootstrap, &dir, 2, "classic", &[]);
    wait_until("the new owner to go live", Duration::from_secs(60), || {
        report(&next).is_some_and(|r| {
            r["consumer"]["partitions"]
                .as_array()
                .is_some_and(|p| p.len() == 1 && p[0]["rebuilding"] == json!(false))
        })
    });
    produce(&bootstrap, ACTIVITIES, &[cart(5, 20)]);
    wait_until("the fifth cart committed", Duration::from_secs(30), || {
        committed_at(&bootstrap) == Some(committed + 1)
    });
    let replayed = report(&next).unwrap()["consumer"]["partitions"][0]["replayed_events"]
        .as_u64()
        .unwrap();
    let restores = ["restored", "missing", "unusable"]
        .map(|outcome| metric_sum(next.http, "activity_state_restores_total", &[("outcome", outcome)]));
    next.stop();
    Outcome {
        alerts: alert_ids(&bootstrap),
        replayed,
        committed,
        snapshot,
        restores,
    }
}

/// The alert a single owner raises: at the fifth cart, the partition's last
/// record.
fn single_owners_alert(outcome: &Outcome) -> Vec<String> {
    vec![alert_id(
        Rule::HighVelocity,
        "bot-7",
        "cart-5",
        Some((0, outcome.committed)),
    )]
}

#[test]
fn a_snapshot_written_mid_stream_leaves_only_its_tail_to_replay() {
    let outcome = velocity_across_a_crash("mid-stream", &[("STATE_SNAPSHOT_INTERVAL", "2s")], true);
    let snapshot = outcome.snapshot.expect("a snapshot at or before the committed offset");
    assert!(
        snapshot >= 3,
        "the snapshot holds the first three carts: offset {snapshot}"
    );
    assert_eq!(outcome.restores, [1.0, 0.0, 0.0], "restored, missing, unusable");
    assert_eq!(
        outcome.replayed as i64,
        outcome.committed - snapshot,
        "the new owner replayed exactly the tail after the snapshot"
    );
    assert_eq!(outcome.alerts, single_owners_alert(&outcome));
    println!(
        "restored the snapshot at offset {snapshot}, replayed {} of {} events",
        outcome.replayed, outcome.committed
    );
}

#[test]
fn a_missing_snapshot_falls_back_to_replaying_the_window() {
    let outcome = velocity_across_a_crash("missing", &[("STATE_SNAPSHOT_INTERVAL", "0")], false);
    assert_eq!(outcome.snapshot, None);
    assert_eq!(outcome.restores, [0.0, 1.0, 0.0], "restored, missing, unusable");
    assert_eq!(outcome.replayed as i64, outcome.committed, "the whole window replayed");
    assert_eq!(outcome.alerts, single_owners_alert(&outcome));
}

#[test]
fn a_snapshot_made_under_other_settings_is_not_restored() {
    // Another allowed lateness changes what a state means (and the window).
    let first = [("STATE_SNAPSHOT_INTERVAL", "2s"), ("ALLOWED_LATENESS", "61s")];
    let outcome = velocity_across_a_crash("foreign", &first, true);
    assert!(outcome.snapshot.is_some(), "the first owner wrote a snapshot");
    assert_eq!(outcome.restores, [0.0, 0.0, 1.0], "restored, missing, unusable");
    assert_eq!(outcome.replayed as i64, outcome.committed, "the whole window replayed");
    assert_eq!(outcome.alerts, single_owners_alert(&outcome));
}
