//! One consumer's edges: a committed offset beyond the end of the log, lag
//! against the committed offset, and an alerts topic that does not exist.

use std::time::Duration;

use crate::support::*;
use activity_tracker::shutdown::Shutdown;

use super::{cart, in_process_fraud, owns, scratch};

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
