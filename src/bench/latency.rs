//! Phase 4: end-to-end latency at fixed offered rates, read from the
//! runtime's own histograms as `/metrics` exports them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::broker::EmbeddedBroker;
use crate::config::Config;
use crate::consumers;
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

use super::targets::{Figures, LATENCY_RATE};
use super::{BenchOptions, Row, phase_config, produce, stop, thousands, wait_handled, wait_ready};

pub(super) fn latency(
    broker: Option<&EmbeddedBroker>,
    config: &Config,
    options: &BenchOptions,
    run_id: &str,
    figures: &mut Figures,
) -> anyhow::Result<Vec<Row>> {
    let c = phase_config(broker, config, "latency", run_id, 12)?;
    let shutdown = Shutdown::new();
    let telemetry = Telemetry::new();
    let fraud = consumers::spawn(
        consumers::fraud_app(&c).quiet(),
        &c,
        format!("bench-latency-fraud-{run_id}"),
        &telemetry,
        shutdown.clone(),
    )?;
    let analytics = consumers::spawn(
        consumers::analytics_app(&c),
        &c,
        format!("bench-latency-analytics-{run_id}"),
        &telemetry,
        shutdown.clone(),
    )?;
    wait_ready(&[&fraud, &analytics])?;
    let mut rows = Vec::new();
    let mut sent = 0;
    for &rate in &options.rates {
        let before = latency_buckets(&telemetry);
        let (n, _) = produce(&c, rate * options.rate_seconds, rate as f64)?;
        sent += n;
        wait_handled(&[&fraud], sent)?;
        wait_handled(&[&analytics], sent)?;
        // Alerts of the last events: acknowledged within a few ms.
        let in_flight = || {
            fraud
                .shared
                .status
                .read()
                .map(|s| s.partitions.iter().map(|p| p.effects_in_flight).sum::<usize>())
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while in_flight() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The runtime flushes its histograms every 250 ms: wait until every
        // event of this rate is in them.
        let mut after = latency_buckets(&telemetry);
        let deadline = Instant::now() + Duration::from_secs(5);
        while diff(&after, &before, "fraud", "processed")
            .last()
            .map_or(0, |(_, c)| *c)
            < n
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            after = latency_buckets(&telemetry);
        }
        for (stage, label) in [("processed", "processed"), ("alert_published", "alert acknowledged")] {
            let counts = diff(&after, &before, "fraud", stage);
            let total = counts.last().map_or(0, |(_, c)| *c);
            if rate == LATENCY_RATE {
                match stage {
                    "processed" => figures.processed_p99 = quantile(&counts, 0.99),
                    _ => {
                        figures.alert_p99 = quantile(&counts, 0.99);
                        figures.alert_p999 = quantile(&counts, 0.999);
                    }
                }
            }
            rows.push(Row {
                what: format!("latency at {} events/s, event → {label}", thousands(rate as f64)),
                value: format!(
                    "p50 {} · p99 {} · p99.9 {}",
                    ms(quantile(&counts, 0.5)),
                    ms(quantile(&counts, 0.99)),
                    ms(quantile(&counts, 0.999))
                ),
                note: format!(
                    "{total} {}; fraud consumer, the runtime's histogram, interpolated within buckets",
                    if stage == "processed" { "events" } else { "alerts" }
                ),
            });
        }
    }
    stop(&shutdown, vec![fraud, analytics])?;
    Ok(rows)
}

/// Cumulative bucket counts of the end-to-end latency histograms, by
/// (consumer, stage), from the text `/metrics` serves.
type Buckets = BTreeMap<(String, String), Vec<(f64, u64)>>;

fn latency_buckets(telemetry: &Telemetry) -> Buckets {
    let mut out: Buckets = BTreeMap::new();
    for line in telemetry.render().lines() {
        let Some(rest) = line.strip_prefix("activity_end_to_end_latency_seconds_bucket{") else {
            continue;
        };
        let label = |name: &str| {
            rest.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
                .map(str::to_string)
        };
        let (Some(consumer), Some(stage), Some(le)) = (label("consumer"), label("stage"), label("le")) else {
            continue;
        };
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let count: u64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        out.entry((consumer, stage)).or_default().push((le, count));
    }
    out
}

fn diff(after: &Buckets, before: &Buckets, consumer: &str, stage: &str) -> Vec<(f64, u64)> {
    let key = (consumer.to_string(), stage.to_string());
    let empty = Vec::new();
    let b = before.get(&key).unwrap_or(&empty);
    after
        .get(&key)
        .map(|a| {
            a.iter()
                .map(|(le, c)| {
                    let prior = b.iter().find(|(l, _)| l == le).map_or(0, |(_, c)| *c);
                    (*le, c.saturating_sub(prior))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The q-quantile of cumulative buckets, interpolated linearly within the
/// bucket it falls in (as PromQL's histogram_quantile does).
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = (count - below).max(1) as f64;
            return Some(lower + (le - lower) * (rank - below as f64) / within);
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

fn ms(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 0.01 => format!("{:.2} ms", s * 1000.0),
        Some(s) => format!("{:.0} ms", s * 1000.0),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        // 100 observations: 50 ≤ 1 ms, 40 in (1, 2.5], 10 in (2.5, 5].
        let b = [(0.001, 50), (0.0025, 90), (0.005, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&b, 0.5), Some(0.001));
        let p90 = quantile(&b, 0.9).unwrap();
        assert!((p90 - 0.0025).abs() < 1e-12, "{p90}");
        let p95 = quantile(&b, 0.95).unwrap();
        assert!((p95 - 0.00375).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.5), None);
    }
}
