//! Broker faults during a run, with the embedded broker's fault injection:
//! a full outage (the only broker down, then up), a burst of request errors
//! on produce, fetch and offset commits, and a slow network. The producer
//! retries idempotently, the consumers reconnect by themselves, and nothing
//! is lost: every offset processed, every alert the same as a fault-free
//! reader raises.

use std::time::{Duration, Instant};

use crate::support::*;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 6_000;

#[test]
fn an_outage_request_errors_and_latency_lose_no_event_and_no_alert() {
    let _exclusive = exclusive();
    let broker = broker(PARTITIONS);
    let bootstrap = broker.bootstrap_servers().to_string();
    let cluster = broker.cluster();
    // Longer than the outage, as in production (45 s by default): the
    // group survives it and no partition moves.
    let PipelineUnderLoad {
        running,
        producer: producer_thread,
        sent,
        audit: audit_dir,
        scratch: _scratch,
    } = PipelineUnderLoad::start(&bootstrap, "faults-outage", EVENTS, 31, 15_000);

    // 1. The only broker goes down for 5 s: nothing can be processed.
    running.wait_seen(600, Duration::from_secs(60));
    let at_down = running.seen();
    cluster.broker_down(1).unwrap();
    hold(Duration::from_secs(5), || {
        running.assert_running();
        // In-flight fetched messages may still drain; then nothing moves.
        assert!(running.seen().0 <= at_down.0 + 2_000);
    });
    let stalled = running.seen();
    let sent_at_up = sent.get();
    cluster.broker_up(1).unwrap();
    let up = Instant::now();
    wait_until(
        "consumers to process again after the outage",
        Duration::from_secs(60),
        || {
            let now = running.seen();
            now.0 > stalled.0 && now.1 > stalled.1
        },
    );
    let resumed = up.elapsed();
    // The events produced during the outage waited in the producer's queue:
    // recovery is complete when the consumers have processed all of them.
    running.wait_seen(sent_at_up, Duration::from_secs(60));
    let caught_up = up.elapsed();

    // 2. Request errors: produce refused by a "lost" leader, too few
    //    replicas, a timeout; then dropped connections on produce and fetch,
    //    and commits refused by a "moved" coordinator. (Each burst on its
    //    own: when a produce timeout and a disconnect hit the same in-flight
    //    window, the embedded broker's emulation of idempotent sequences
    //    acknowledges a batch it never stored — it dedupes by a sequence
    //    window and keeps it across the client's epoch bump, which Kafka
    //    does not — so that combination tests the emulator, not us.)
    let errors_from = running.seen().0.max(running.seen().1);
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    running.wait_seen((errors_from + 300).min(EVENTS), Duration::from_secs(60));
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT]);
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        ],
    );
    running.wait_seen((errors_from + 600).min(EVENTS), Duration::from_secs(60));

    // 3. A slow network: 300 ms per request for 4 s.
    cluster.broker_round_trip_time(1, Duration::from_millis(300)).unwrap();
    hold(Duration::from_secs(4), || running.assert_running());
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();

    // The producer delivers everything, exactly once.
    let (stats, events) = assert_produced_exactly_once(producer_thread, &bootstrap, EVENTS);

    running.wait_seen(EVENTS, Duration::from_secs(90));
    let (analytics, fraud, _) = running.stop();
    let analytics_dups =
        assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &audit(&audit_dir, "analytics"));
    let fraud_dups = assert_every_offset_processed(&bootstrap, ACTIVITIES, PARTITIONS, &audit(&audit_dir, "fraud"));

    // The alerts equal those of a reader that saw no fault.
    let (published, alerts) = unique_alerts(&bootstrap, ALERTS);
    crate::support::reference_run(&broker, PARTITIONS, EVENTS, Duration::from_secs(60));
    let (_, expected) = unique_alerts(&bootstrap, "reference-alerts");
    assert!(!expected.is_empty());
    assert_eq!(alerts, expected, "the faults changed the alerts");

    // Faults are not bad input: nothing is dead-lettered.
    let dead = read_all(&bootstrap, DLQ).len();
    assert_eq!(dead, 0, "a fault dead-lettered events");
    let lost = EVENTS
        - audit(&audit_dir, "fraud")
            .len()
            .min(audit(&audit_dir, "analytics").len()) as u64;
    println!(
        "broker faults: {EVENTS} sent, {} delivered, {} in the topic, analytics {} processed ({} again), fraud {} processed ({} again), {dead} in the DLQ, {} alerts = fault-free reference ({} published), {lost} lost; after the 5 s outage: first event {:.1} s, backlog caught up {:.1} s",
        stats.delivered,
        events.len(),
        analytics.status.events_processed,
        analytics_dups,
        fraud.status.events_processed,
        fraud_dups,
        alerts.len(),
        published,
        resumed.as_secs_f64(),
        caught_up.as_secs_f64()
    );
}
