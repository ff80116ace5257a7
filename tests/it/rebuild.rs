//! The promise behind scaling, checked on the pure processors: a partition
//! handed to a fresh owner part-way through — rebuilt by replaying, in
//! warm-up mode, exactly what the runtime replays (from the commit
//! metadata's `replay_from`, computed by the runtime's own
//! [`OffsetTracker`]) — yields the same alerts and the same windowed
//! figures as a single owner that processed the whole stream.
//!
//! The stream is three hours of simulated traffic from a small user
//! population, so many users stay active for longer than any window: the
//! case where state that silently depends on older history would show.

use activity_tracker::analytics::{AnalyticsProcessor, WindowFigures};
use activity_tracker::config::{AnalyticsConfig, FraudConfig, IpPrivacy};
use activity_tracker::event::{DecodeLimits, Event, decode};
use activity_tracker::fraud::{FraudDetector, FraudRules};
use activity_tracker::privacy::IpRenderer;
use activity_tracker::processor::{Mode, Processor};
use activity_tracker::producer::simulator::{Simulator, SimulatorConfig};
use activity_tracker::runtime::tracker::OffsetTracker;

/// 2024-01-15T10:00:00Z.
const T0: i64 = 1_705_312_800_000;
const RATE: f64 = 8.0;
const HOURS: i64 = 3;

/// The payloads of one partition, in offset order.
fn stream() -> Vec<Vec<u8>> {
    let mut sim = Simulator::new(&SimulatorConfig {
        seed: 2024,
        users: 150,
        fraud_rate: 0.15,
        events_per_second: RATE,
    });
    sim.warm_up(T0);
    let n = (HOURS * 3600) as f64 * RATE;
    (0..n as i64)
        .map(|i| sim.next_event(T0 + (i as f64 * 1000.0 / RATE) as i64).to_json())
        .collect()
}

fn decoded(payloads: &[Vec<u8>]) -> Vec<Event<'_>> {
    let limits = DecodeLimits {
        max_age_ms: i64::MAX / 4,
        max_future_skew_ms: i64::MAX / 4,
        ..DecodeLimits::default()
    };
    payloads
        .iter()
        .map(|p| decode(p, T0, &limits).expect("simulated events are valid"))
        .collect()
}

/// Where a new owner starts replaying when the previous owner (running
/// `processor`) committed after processing `events[..at]`: the runtime's own
/// bookkeeping.
fn replay_from<P: Processor>(events: &[Event<'_>], at: usize, mut processor: P) -> usize {
    let mut tracker = OffsetTracker::new(processor.rebuild_window_ms());
    let mut state = processor.new_state();
    let mut out = Vec::new();
    for (offset, e) in events[..at].iter().enumerate() {
        processor.process(&mut state, e, Mode::Warmup, &mut out);
        tracker.processed(offset as i64, Some(e.timestamp_ms), 0, processor.event_time_ms(&state));
    }
    let (committed, metadata) = tracker.committable().expect("something was processed");
    assert_eq!(committed, at as i64);
    metadata.replay_from as usize
}

/// Split points: early, in the middle, late, and past every window.
fn split_points(n: usize) -> Vec<usize> {
    vec![n / 5, n / 3 + 17, n / 2, 2 * n / 3 + 5, 9 * n / 10]
}

fn fraud() -> FraudDetector {
    FraudDetector::new(
        FraudRules::from_config(&FraudConfig::default()),
        IpRenderer::new(IpPrivacy::None),
    )
}

/// Alert ids raised live by events at offsets `from..`, with their offset.
fn fraud_alerts(events: &[Event<'_>], warm_from: usize, live_from: usize) -> Vec<(usize, String)> {
    let mut detector = fraud();
    let mut state = detector.new_state();
    let mut out = Vec::new();
    let mut alerts = Vec::new();
    for (offset, e) in events.iter().enumerate().skip(warm_from) {
        let mode = if offset < live_from { Mode::Warmup } else { Mode::Live };
        detector.process(&mut state, e, mode, &mut out);
        if mode == Mode::Warmup {
            assert!(out.is_empty(), "warm-up emits nothing");
        }
        alerts.extend(out.drain(..).map(|a| (offset, a.alert_id)));
    }
    alerts
}

#[test]
fn a_rebuilt_fraud_partition_raises_exactly_the_single_owners_alerts() {
    let payloads = stream();
    let events = decoded(&payloads);
    let reference = fraud_alerts(&events, 0, 0);
    assert!(reference.len() > 200, "the stream raises alerts: {}", reference.len());
    for at in split_points(events.len()) {
        let from = replay_from(&events, at, fraud());
        assert!(from < at, "a rebuild replays something");
        let rebuilt = fraud_alerts(&events, from, at);
        let expected: Vec<(usize, String)> = reference.iter().filter(|(o, _)| *o >= at).cloned().collect();
        assert_eq!(
            rebuilt, expected,
            "handed over at offset {at} (replayed from {from}): the alerts differ"
        );
    }
}

fn analytics() -> AnalyticsProcessor {
    AnalyticsProcessor::new(AnalyticsConfig::default())
}

/// The windowed figures of the partition after the whole stream, its
/// events before `warm_from` unseen and those before `live_from` replayed.
fn figures_after(events: &[Event<'_>], warm_from: usize, live_from: usize) -> WindowFigures {
    let mut processor = analytics();
    let mut state = processor.new_state();
    let mut out = Vec::new();
    let mut checked = 0;
    for (offset, e) in events.iter().enumerate().skip(warm_from) {
        let mode = if offset < live_from { Mode::Warmup } else { Mode::Live };
        processor.process(&mut state, e, mode, &mut out);
        checked += 1;
    }
    assert!(checked > 0);
    processor.window_figures(&state)
}

#[test]
fn a_rebuilt_analytics_partition_has_the_single_owners_windowed_figures() {
    let payloads = stream();
    let events = decoded(&payloads);
    for at in split_points(events.len()) {
        // The figures as of the hand-over, and at the end of the stream.
        for end in [at, events.len()] {
            let reference = figures_after(&events[..end], 0, 0);
            assert!(reference.active_users > 20 && reference.events_in_window > 1_000);
            let from = replay_from(&events, at, analytics());
            let rebuilt = figures_after(&events[..end], from, at);
            assert_eq!(
                rebuilt, reference,
                "handed over at offset {at} (replayed from {from}), figures at offset {end} differ"
            );
        }
    }
}
