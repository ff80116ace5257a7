//! Real Kafka failing under a running pipeline: the only broker stopped
//! and started again mid-stream, and, on a three-node cluster (replication
//! factor 3, `min.insync.replicas=2`), the leader of busy partitions killed
//! with SIGKILL. The producer is idempotent with `acks=all`; the consumers
//! find the new leaders and the restarted coordinator by themselves.
//! Nothing is lost: sent = delivered = processed, every offset processed,
//! and the alerts equal those of a reader that saw no failure.

use std::time::{Duration, Instant};

use crate::support::*;

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 6_000;

fn pipeline(bootstrap: &str, name: &str) -> PipelineUnderLoad {
    PipelineUnderLoad::start(bootstrap, &format!("failover-{name}"), EVENTS, 47, 20_000)
}

/// Waits for the producer and the consumers, then checks that nothing was
/// lost or duplicated and the alerts equal a failure-free reader's.
/// Returns (alerts, lost) for the summary line.
fn finish(p: PipelineUnderLoad, broker: &TestBroker) -> (usize, u64) {
    let bootstrap = broker.bootstrap_servers().to_string();
    assert_produced_exactly_once(p.producer, &bootstrap, EVENTS);
    p.running.wait_seen(EVENTS, Duration::from_secs(120));
    let _ = p.running.stop();
    for consumer in ["analytics", "fraud"] {
        assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &audit(&p.audit, consumer));
    }
    let lost = EVENTS - audit(&p.audit, "fraud").len().min(audit(&p.audit, "analytics").len()) as u64;
    assert_eq!(lost, 0);
    let (_, alerts) = unique_alerts(&bootstrap, ALERTS);
    crate::support::reference_run(broker, PARTITIONS, EVENTS, Duration::from_secs(120));
    let (_, expected) = unique_alerts(&bootstrap, "reference-alerts");
    assert!(!expected.is_empty(), "the stream raises alerts");
    assert_eq!(alerts, expected, "the failure changed the alerts");
    assert_eq!(read_all(&bootstrap, DLQ).len(), 0, "a failure dead-lettered events");
    (alerts.len(), lost)
}

#[test]
fn the_only_broker_stopped_and_restarted_mid_stream_loses_nothing() {
    let _exclusive = exclusive();
    let mut broker = kafka(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let p = pipeline(&bootstrap, "restart");
    p.running.wait_seen(1_000, Duration::from_secs(60));
    let down = Instant::now();
    broker.real().stop_node(1);
    let stopped = p.running.seen();
    hold(Duration::from_secs(3), || p.running.assert_running());
    broker.real().start_node(1);
    let outage = down.elapsed();
    let up = Instant::now();
    wait_until(
        "both consumers to process again after the restart",
        Duration::from_secs(90),
        || {
            let now = p.running.seen();
            now.0 > stopped.0 && now.1 > stopped.1
        },
    );
    let resumed = up.elapsed();
    let (alerts, lost) = finish(p, &broker);
    println!(
        "broker restart: {EVENTS} sent = delivered = processed by both consumers, {alerts} alerts = failure-free reference, {lost} lost; broker down {:.1} s, first event {:.1} s after it was back",
        outage.as_secs_f64(),
        resumed.as_secs_f64()
    );
}

#[test]
fn killing_the_leader_of_busy_partitions_on_three_nodes_loses_nothing() {
    let _exclusive = exclusive();
    let mut broker = kafka_with(
        &KafkaOptions {
            nodes: 3,
            ..KafkaOptions::default()
        },
        PARTITIONS,
    );
    let bootstrap = broker.bootstrap_servers().to_string();
    let p = pipeline(&bootstrap, "leader");
    p.running.wait_seen(1_000, Duration::from_secs(60));
    let leader = leader_of(&bootstrap, ACTIVITIES, 0);
    assert!((1..=3).contains(&leader), "partition 0 has a leader: {leader}");
    let killed_at = p.running.seen();
    let killed = Instant::now();
    broker.real().kill_node(leader as u8);
    let mut new_leader = -1;
    wait_until("a new leader for partition 0", Duration::from_secs(60), || {
        new_leader = leader_of(&bootstrap, ACTIVITIES, 0);
        new_leader > 0 && new_leader != leader
    });
    let elected = killed.elapsed();
    wait_until(
        "both consumers to process again after the leader died",
        Duration::from_secs(90),
        || {
            let now = p.running.seen();
            now.0 > killed_at.0 + 200 && now.1 > killed_at.1 + 200
        },
    );
    let resumed = killed.elapsed();
    let (alerts, lost) = finish(p, &broker);
    println!(
        "leader kill: node {leader} (leader of partition 0) killed with SIGKILL mid-stream, node {new_leader} elected after {:.1} s, processing again after {:.1} s; {EVENTS} sent = delivered = processed, {alerts} alerts = failure-free reference, {lost} lost",
        elected.as_secs_f64(),
        resumed.as_secs_f64()
    );
}
