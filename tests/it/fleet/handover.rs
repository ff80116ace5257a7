//! A partition moving between owners: the fraud state is rebuilt across the
//! move, and the effects in flight at the hand-over are neither left behind
//! with the old owner nor counted twice.

use std::time::Duration;

use crate::support::*;
use activity_tracker::fraud::Rule;
use activity_tracker::fraud::alert::alert_id;
use activity_tracker::shutdown::Shutdown;
use serde_json::{Value, json};

use super::{Replica, alert_ids, big_purchases, cart, in_process_fraud, owns, report, scratch};

/// The velocity window of one user is split by a partition move: three cart
/// additions before, two after. With rebuild — by replay, or from the
/// snapshot the first owner wrote at the hand-over — the new owner raises
/// HIGH_VELOCITY at the fifth, as a single replica would; without, it
/// cannot (the negative control shows the test can fail).
fn velocity_across_a_move(setting: [(&str, &str); 2]) -> (Vec<String>, u64) {
    let broker = kafka(1);
    let bootstrap = broker.bootstrap_servers().to_string();
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
    let (alerts, replayed) = velocity_across_a_move([("STATE_REBUILD", "true"), ("STATE_SNAPSHOT_INTERVAL", "0")]);
    assert_eq!(
        alerts,
        vec![single_replica_alert.clone()],
        "raised at the same event as one replica would"
    );
    assert!(replayed >= 3, "the three earlier carts were replayed: {replayed}");
    // The hand-over snapshot carries the three carts: nothing is replayed.
    let (alerts, replayed) = velocity_across_a_move([("STATE_REBUILD", "true"), ("STATE_SNAPSHOT_INTERVAL", "5m")]);
    assert_eq!(alerts, vec![single_replica_alert], "raised from the restored state");
    assert_eq!(replayed, 0, "restored from the hand-over snapshot, nothing replayed");
    let (alerts, replayed) = velocity_across_a_move([("STATE_REBUILD", "false"), ("STATE_SNAPSHOT_INTERVAL", "5m")]);
    assert!(
        alerts.is_empty(),
        "without rebuild the new owner sees only two carts: {alerts:?}"
    );
    assert_eq!(replayed, 0);
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
