//! Group membership: a graceful leave, an eviction and the rejoin after it,
//! static membership, and membership kept under back-pressure.

use std::time::Duration;

use crate::support::*;

use super::{
    CHUNK, PARTITIONS, Replica, big_purchases, report, scratch, stream, wait_committed, wait_settled,
    wait_settled_within,
};

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
