//! Phase 7: decode + process on one core, no broker — what a consumer's
//! thread does per message, timed here so that the targets table holds it
//! (criterion measures the same in `benches/processing.rs`, in more detail).

use std::time::Instant;

use crate::analytics::AnalyticsProcessor;
use crate::config::Config;
use crate::event::{DecodeLimits, decode};
use crate::fraud::{FraudDetector, FraudRules};
use crate::privacy::IpRenderer;
use crate::processor::{Mode, Processor};
use crate::producer::simulator::{Simulator, SimulatorConfig};

use super::targets::Figures;
use super::{Row, thousands};

/// 2024-01-15T10:00:00Z, the simulated stream's start.
const T0: i64 = 1_705_312_800_000;
/// The simulated rate, which sets how fast event time moves.
const RATE: f64 = 10_000.0;
/// Passes over the stream; the median is reported.
const PASSES: usize = 5;

pub(super) fn per_core(config: &Config, events: usize, figures: &mut Figures) -> Vec<Row> {
    let mut sim = Simulator::new(&SimulatorConfig {
        seed: 42,
        users: 100_000,
        fraud_rate: 0.1,
        events_per_second: RATE,
    });
    let stream: Vec<(i64, Vec<u8>)> = (0..events)
        .map(|i| {
            let t = T0 + (i as f64 * 1000.0 / RATE) as i64;
            (t, sim.next_event(t).to_json())
        })
        .collect();
    // The stream is judged by its own time, not today's.
    let limits = DecodeLimits {
        max_age_ms: i64::MAX,
        max_future_skew_ms: i64::MAX,
        ..config.limits.clone()
    };
    let analytics = median_rate(&stream, &limits, || AnalyticsProcessor::new(config.analytics.clone()));
    let fraud = median_rate(&stream, &limits, || {
        FraudDetector::new(
            FraudRules::from_config(&config.fraud),
            IpRenderer::new(config.ip_privacy.clone()),
        )
    });
    figures.per_core = Some((analytics, fraud));
    [("analytics", analytics), ("fraud", fraud)]
        .into_iter()
        .map(|(name, rate)| Row {
            what: format!("decode + {name} process, one core"),
            value: format!("{} events/s", thousands(rate)),
            note: format!(
                "{} simulated events from a fresh state, median of {PASSES} passes ({:.2} µs per event)",
                thousands(events as f64),
                1e6 / rate.max(1e-9)
            ),
        })
        .collect()
}

/// Events per second decoding and processing `stream` from a fresh state,
/// the median of [`PASSES`].
fn median_rate<P: Processor>(stream: &[(i64, Vec<u8>)], limits: &DecodeLimits, processor: impl Fn() -> P) -> f64 {
    let mut rates: Vec<f64> = (0..PASSES)
        .map(|_| {
            let mut p = processor();
            let mut state = p.new_state();
            let mut out = Vec::new();
            let started = Instant::now();
            let mut processed = 0u64;
            for (t, payload) in stream {
                if let Ok(event) = decode(payload, *t, limits) {
                    p.process(&mut state, &event, Mode::Live, &mut out);
                    out.clear();
                    processed += 1;
                }
            }
            processed as f64 / started.elapsed().as_secs_f64().max(1e-9)
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
