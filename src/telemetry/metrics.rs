//! The metrics registry every process exports from, and the pipeline
//! metrics declared here. The collector's request metrics (`collect`) and
//! the consumers' business families (`consumers::metrics`) are declared
//! beside the code that counts them and registered here; the README's
//! metrics table lists every series, whoever declares it.
//!
//! Two kinds of series:
//!
//! - **Pipeline metrics** (events consumed, rejected, latency, partitions,
//!   lag, rebalances, rebuilds, commits, producer deliveries) are ordinary
//!   counters, gauges and histograms. Hot paths hold handles resolved once
//!   ([`ConsumerMetrics`], [`ProducerMetrics`]) and batch their updates, so no
//!   label lookup or atomic happens per event.
//! - **Business metrics** (events by type, revenue, funnel, pages, fraud
//!   alerts…) are rendered at scrape time from the latest snapshot a
//!   processor published ([`FamilySource`]): the processors stay pure and keep
//!   plain integers, and the exported counters are exactly their totals.
//!
//! Conventions: one prefix `activity_`, base units in names (`_seconds`,
//! `_bytes`, `_messages`), `_total` on counters, and only bounded labels
//! (never a user, session, IP or raw URL).

use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::event::RejectReason;

/// Latency buckets (seconds) from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Per-event processing-time buckets (seconds) from 250 ns to 10 ms.
pub const PROCESSING_BUCKETS: &[f64] = &[
    0.00000025, 0.0000005, 0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.001, 0.01,
];
/// State-rebuild duration buckets (seconds).
pub const REBUILD_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Something that contributes metric families at scrape time.
pub trait FamilySource: Send + Sync {
    fn families(&self) -> Vec<MetricFamily>;
}

/// The process's metrics: one registry, the pipeline families, and the
/// snapshot sources of whichever processors run here.
pub struct Telemetry {
    registry: Registry,
    pipeline: PipelineFamilies,
    producer: ProducerFamilies,
    sources: Mutex<Vec<Arc<dyn FamilySource>>>,
}

struct PipelineFamilies {
    consumed: IntCounterVec,
    processed: IntCounterVec,
    rejected: IntCounterVec,
    dlq: IntCounterVec,
    processing: HistogramVec,
    end_to_end: HistogramVec,
    assigned: IntGaugeVec,
    lag: IntGaugeVec,
    committed_lag: IntGaugeVec,
    rebalances: IntCounterVec,
    rebuild_events: IntCounterVec,
    rebuilds: IntCounterVec,
    rebuild_seconds: HistogramVec,
    snapshots: IntCounterVec,
    snapshot_bytes: IntCounterVec,
    restores: IntCounterVec,
    restored_bytes: IntCounterVec,
    commits: IntCounterVec,
    effects_retried: IntCounterVec,
    in_flight: IntGaugeVec,
    ready: IntGaugeVec,
}

struct ProducerFamilies {
    sent: IntCounterVec,
    delivered: IntCounterVec,
    failed: IntCounterVec,
    queue: IntGaugeVec,
    rate: prometheus::GaugeVec,
}

pub(crate) fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition is valid");
    r.register(Box::new(v.clone())).expect("metric registered once");
    v
}

pub(crate) fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition is valid");
    r.register(Box::new(v.clone())).expect("metric registered once");
    v
}

pub(crate) fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let v = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("static metric definition is valid");
    r.register(Box::new(v.clone())).expect("metric registered once");
    v
}

impl Telemetry {
    pub fn new() -> Arc<Telemetry> {
        let r = Registry::new();
        let c = &["consumer", "group"];
        let pipeline = PipelineFamilies {
            consumed: counter_vec(
                &r,
                "activity_events_consumed_total",
                "Messages read from the activities topic (live, not replayed).",
                c,
            ),
            processed: counter_vec(&r, "activity_events_processed_total", "Valid events processed live.", c),
            rejected: counter_vec(
                &r,
                "activity_events_rejected_total",
                "Messages that failed decoding or validation, by reason.",
                &["consumer", "group", "reason"],
            ),
            dlq: counter_vec(
                &r,
                "activity_dlq_messages_total",
                "Rejected messages acknowledged by the dead-letter topic, by reason.",
                &["consumer", "group", "reason"],
            ),
            processing: histogram_vec(
                &r,
                "activity_event_processing_seconds",
                "Time to decode and process one event (live events at offsets divisible by 8 are timed).",
                c,
                PROCESSING_BUCKETS,
            ),
            end_to_end: histogram_vec(
                &r,
                "activity_end_to_end_latency_seconds",
                "Event timestamp to processed (stage=processed) or to its alert acknowledged by Kafka (stage=alert_published).",
                &["consumer", "group", "stage"],
                LATENCY_BUCKETS,
            ),
            assigned: gauge_vec(
                &r,
                "activity_consumer_assigned_partitions",
                "1 for each partition this pod owns (the series disappears when the partition moves).",
                &["consumer", "group", "topic", "partition"],
            ),
            lag: gauge_vec(
                &r,
                "activity_consumer_lag_messages",
                "High watermark minus the consumer's position, per owned partition.",
                &["consumer", "group", "topic", "partition"],
            ),
            committed_lag: gauge_vec(
                &r,
                "activity_consumer_committed_lag_messages",
                "High watermark minus the group's committed offset (the log's start if none), per owned partition: what a restart now would process.",
                &["consumer", "group", "topic", "partition"],
            ),
            rebalances: counter_vec(
                &r,
                "activity_consumer_rebalances_total",
                "Rebalance callbacks by kind: assign, revoke, lost.",
                &["consumer", "group", "kind"],
            ),
            rebuild_events: counter_vec(
                &r,
                "activity_state_rebuild_events_total",
                "Events replayed in warm-up mode to rebuild partition state.",
                c,
            ),
            rebuilds: counter_vec(
                &r,
                "activity_state_rebuilds_total",
                "Partition state rebuilds by where they started: snapshot (a partition snapshot, then the tail since it), timestamp (ListOffsets by time) or commit_metadata (the previous owner's commit).",
                &["consumer", "group", "method"],
            ),
            rebuild_seconds: histogram_vec(
                &r,
                "activity_state_rebuild_seconds",
                "Time from assignment to the partition going live.",
                c,
                REBUILD_BUCKETS,
            ),
            snapshots: counter_vec(
                &r,
                "activity_state_snapshots_total",
                "Partition snapshots by result: written (queued to the state topic, chunks then manifest) or failed (the manifest was not delivered).",
                &["consumer", "group", "result"],
            ),
            snapshot_bytes: counter_vec(
                &r,
                "activity_state_snapshot_bytes_total",
                "Bytes of partition state written to the state topic.",
                c,
            ),
            restores: counter_vec(
                &r,
                "activity_state_restores_total",
                "Snapshot lookups of newly assigned partitions by outcome: restored, missing (none in the state topic) or unusable (another format or settings, older than the replay window, ahead of the committed offset, incomplete or corrupt); all but restored fall back to replaying the window.",
                &["consumer", "group", "outcome"],
            ),
            restored_bytes: counter_vec(
                &r,
                "activity_state_restored_bytes_total",
                "Bytes of partition state restored from snapshots.",
                c,
            ),
            commits: counter_vec(
                &r,
                "activity_consumer_commits_total",
                "Offset commits by result: ok, error.",
                &["consumer", "group", "result"],
            ),
            effects_retried: counter_vec(
                &r,
                "activity_effect_retries_total",
                "Alert or dead-letter records re-sent after a delivery failure.",
                c,
            ),
            in_flight: gauge_vec(
                &r,
                "activity_effects_in_flight",
                "Alert and dead-letter records awaiting broker acknowledgement.",
                c,
            ),
            ready: gauge_vec(
                &r,
                "activity_consumer_ready",
                "1 when the consumer is ready (see /readyz).",
                c,
            ),
        };
        let p = &["topic"];
        let producer = ProducerFamilies {
            sent: counter_vec(
                &r,
                "activity_producer_events_sent_total",
                "Events handed to the Kafka client.",
                p,
            ),
            delivered: counter_vec(
                &r,
                "activity_producer_events_delivered_total",
                "Events acknowledged by the brokers.",
                p,
            ),
            failed: counter_vec(
                &r,
                "activity_producer_events_failed_total",
                "Events the Kafka client gave up on.",
                p,
            ),
            queue: gauge_vec(
                &r,
                "activity_producer_queue_messages",
                "Messages waiting in the producer's local queue.",
                p,
            ),
            rate: {
                let v = prometheus::GaugeVec::new(
                    Opts::new(
                        "activity_producer_target_events_per_second",
                        "Configured EVENTS_PER_SECOND (0 = unlimited).",
                    ),
                    p,
                )
                .expect("static metric definition is valid");
                r.register(Box::new(v.clone())).expect("metric registered once");
                v
            },
        };
        let build = IntGaugeVec::new(
            Opts::new("activity_build_info", "Always 1; labels carry the version."),
            &["version"],
        )
        .expect("static metric definition is valid");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        r.register(Box::new(build)).expect("metric registered once");
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if !process.desc().is_empty() {
            let _ = r.register(Box::new(process));
        }
        Arc::new(Telemetry {
            registry: r,
            pipeline,
            producer,
            sources: Mutex::new(Vec::new()),
        })
    }

    /// The registry, for a command's own families (the collector's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds a snapshot source rendered at every scrape.
    pub fn add_source(&self, source: Arc<dyn FamilySource>) {
        if let Ok(mut sources) = self.sources.lock() {
            sources.push(source);
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        if let Ok(sources) = self.sources.lock() {
            for s in sources.iter() {
                families.extend(s.families());
            }
        }
        // A family without series (a label set still empty, such as product
        // revenue before the first purchase) makes the encoder stop, which
        // would silently truncate the exposition: leave such families out.
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        // Two sources may export the same family (both consumers of a demo
        // count late events): one family, the series of both.
        let mut merged: Vec<MetricFamily> = Vec::with_capacity(families.len());
        for mut family in families {
            match merged.last_mut() {
                Some(last) if last.name() == family.name() => {
                    let series = family.take_metric();
                    last.mut_metric().extend(series);
                }
                _ => merged.push(family),
            }
        }
        let families = merged;
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Handles for one consumer (`analytics` or `fraud`) in one group.
    pub fn consumer(&self, consumer: &'static str, group: &str) -> ConsumerMetrics {
        let f = &self.pipeline;
        let l = [consumer, group];
        ConsumerMetrics {
            consumer,
            group: group.to_string(),
            consumed: f.consumed.with_label_values(&l),
            processed: f.processed.with_label_values(&l),
            rejected: RejectReason::ALL
                .iter()
                .map(|r| f.rejected.with_label_values(&[consumer, group, r.code()]))
                .collect(),
            dlq: RejectReason::ALL
                .iter()
                .map(|r| f.dlq.with_label_values(&[consumer, group, r.code()]))
                .collect(),
            processing: f.processing.with_label_values(&l),
            e2e_processed: f.end_to_end.with_label_values(&[consumer, group, "processed"]),
            e2e_alert: f.end_to_end.with_label_values(&[consumer, group, "alert_published"]),
            assigned: f.assigned.clone(),
            lag: f.lag.clone(),
            committed_lag: f.committed_lag.clone(),
            rebalance_assign: f.rebalances.with_label_values(&[consumer, group, "assign"]),
            rebalance_revoke: f.rebalances.with_label_values(&[consumer, group, "revoke"]),
            rebalance_lost: f.rebalances.with_label_values(&[consumer, group, "lost"]),
            rebuild_events: f.rebuild_events.with_label_values(&l),
            rebuilds_by_timestamp: f.rebuilds.with_label_values(&[consumer, group, "timestamp"]),
            rebuilds_by_commit_metadata: f.rebuilds.with_label_values(&[consumer, group, "commit_metadata"]),
            rebuild_seconds: f.rebuild_seconds.with_label_values(&l),
            rebuilds_by_snapshot: f.rebuilds.with_label_values(&[consumer, group, "snapshot"]),
            snapshots_written: f.snapshots.with_label_values(&[consumer, group, "written"]),
            snapshots_failed: f.snapshots.with_label_values(&[consumer, group, "failed"]),
            snapshot_bytes: f.snapshot_bytes.with_label_values(&l),
            restores_restored: f.restores.with_label_values(&[consumer, group, "restored"]),
            restores_missing: f.restores.with_label_values(&[consumer, group, "missing"]),
            restores_unusable: f.restores.with_label_values(&[consumer, group, "unusable"]),
            restored_bytes: f.restored_bytes.with_label_values(&l),
            commits_ok: f.commits.with_label_values(&[consumer, group, "ok"]),
            commits_failed: f.commits.with_label_values(&[consumer, group, "error"]),
            effects_retried: f.effects_retried.with_label_values(&l),
            in_flight: f.in_flight.with_label_values(&l),
            ready: f.ready.with_label_values(&l),
        }
    }

    /// Handles for a producer writing to `topic`.
    pub fn producer(&self, topic: &str) -> ProducerMetrics {
        let f = &self.producer;
        ProducerMetrics {
            sent: f.sent.with_label_values(&[topic]),
            delivered: f.delivered.with_label_values(&[topic]),
            failed: f.failed.with_label_values(&[topic]),
            queue: f.queue.with_label_values(&[topic]),
            rate: f.rate.with_label_values(&[topic]),
        }
    }
}

/// Pre-resolved handles of one consumer.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub consumer: &'static str,
    pub group: String,
    pub consumed: IntCounter,
    pub processed: IntCounter,
    /// Indexed by [`RejectReason::index`].
    pub rejected: Vec<IntCounter>,
    pub dlq: Vec<IntCounter>,
    pub processing: Histogram,
    pub e2e_processed: Histogram,
    pub e2e_alert: Histogram,
    assigned: IntGaugeVec,
    lag: IntGaugeVec,
    committed_lag: IntGaugeVec,
    pub rebalance_assign: IntCounter,
    pub rebalance_revoke: IntCounter,
    pub rebalance_lost: IntCounter,
    pub rebuild_events: IntCounter,
    pub rebuilds_by_timestamp: IntCounter,
    pub rebuilds_by_commit_metadata: IntCounter,
    pub rebuild_seconds: Histogram,
    pub rebuilds_by_snapshot: IntCounter,
    pub snapshots_written: IntCounter,
    pub snapshots_failed: IntCounter,
    pub snapshot_bytes: IntCounter,
    pub restores_restored: IntCounter,
    pub restores_missing: IntCounter,
    pub restores_unusable: IntCounter,
    pub restored_bytes: IntCounter,
    pub commits_ok: IntCounter,
    pub commits_failed: IntCounter,
    pub effects_retried: IntCounter,
    pub in_flight: IntGauge,
    pub ready: IntGauge,
}

impl ConsumerMetrics {
    pub fn partition_assigned(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        self.assigned
            .with_label_values(&[self.consumer, &self.group, topic, &p])
            .set(1);
    }

    pub fn partition_revoked(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        let _ = self
            .assigned
            .remove_label_values(&[self.consumer, &self.group, topic, &p]);
        let _ = self.lag.remove_label_values(&[self.consumer, &self.group, topic, &p]);
        let _ = self
            .committed_lag
            .remove_label_values(&[self.consumer, &self.group, topic, &p]);
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let p = partition.to_string();
        self.lag
            .with_label_values(&[self.consumer, &self.group, topic, &p])
            .set(lag);
    }

    pub fn set_committed_lag(&self, topic: &str, partition: i32, lag: i64) {
        let p = partition.to_string();
        self.committed_lag
            .with_label_values(&[self.consumer, &self.group, topic, &p])
            .set(lag);
    }
}

/// Pre-resolved handles of one producer.
#[derive(Clone)]
pub struct ProducerMetrics {
    pub sent: IntCounter,
    pub delivered: IntCounter,
    pub failed: IntCounter,
    pub queue: IntGauge,
    pub rate: prometheus::Gauge,
}

/// Builders for snapshot families.
pub mod family {
    use super::*;

    pub type Labels<'a> = Vec<(&'a str, String)>;

    fn labels(pairs: &Labels<'_>) -> Vec<proto::LabelPair> {
        let mut sorted: Vec<&(&str, String)> = pairs.iter().collect();
        sorted.sort_by_key(|(k, _)| *k);
        sorted
            .into_iter()
            .map(|(k, v)| {
                let mut l = proto::LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.clone());
                l
            })
            .collect()
    }

    fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        f
    }

    pub fn counter(name: &str, help: &str, samples: Vec<(Labels<'_>, f64)>) -> MetricFamily {
        let metrics = samples
            .into_iter()
            .map(|(l, v)| {
                let mut m = proto::Metric::from_label(labels(&l));
                let mut c = proto::Counter::default();
                c.set_value(v);
                m.set_counter(c);
                m
            })
            .collect();
        family(name, help, MetricType::COUNTER, metrics)
    }

    pub fn gauge(name: &str, help: &str, samples: Vec<(Labels<'_>, f64)>) -> MetricFamily {
        let metrics = samples
            .into_iter()
            .map(|(l, v)| {
                let mut m = proto::Metric::from_label(labels(&l));
                let mut g = proto::Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
                m
            })
            .collect();
        family(name, help, MetricType::GAUGE, metrics)
    }

    /// A histogram from per-bucket counts (`counts[i]` for `bounds[i]`, the
    /// last for +Inf), as kept by [`crate::analytics::Histogram`].
    pub fn histogram(name: &str, help: &str, labels_: Labels<'_>, h: &crate::analytics::Histogram) -> MetricFamily {
        let mut cumulative = 0;
        let buckets = h
            .bounds
            .iter()
            .zip(h.counts.iter())
            .map(|(&bound, &count)| {
                cumulative += count;
                let mut b = proto::Bucket::default();
                b.set_upper_bound(bound);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut hist = proto::Histogram::default();
        hist.set_sample_count(h.count);
        hist.set_sample_sum(h.sum);
        hist.set_bucket(buckets);
        let mut m = proto::Metric::from_label(labels(&labels_));
        m.set_histogram(hist);
        family(name, help, MetricType::HISTOGRAM, vec![m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_family_exported_by_two_sources_is_rendered_once() {
        struct Group(&'static str, f64);
        impl FamilySource for Group {
            fn families(&self) -> Vec<MetricFamily> {
                vec![family::counter(
                    "activity_late_events_total",
                    "Late events.",
                    vec![(vec![("group", self.0.to_string())], self.1)],
                )]
            }
        }
        let t = Telemetry::new();
        t.add_source(Arc::new(Group("analytics-processors", 2.0)));
        t.add_source(Arc::new(Group("fraud-detectors", 5.0)));
        let text = t.render();
        assert_eq!(
            text.matches("# TYPE activity_late_events_total counter").count(),
            1,
            "{text}"
        );
        assert!(text.contains(r#"activity_late_events_total{group="analytics-processors"} 2"#));
        assert!(text.contains(r#"activity_late_events_total{group="fraud-detectors"} 5"#));
    }

    #[test]
    fn exposition_has_our_families_and_snapshot_sources() {
        struct Fixed;
        impl FamilySource for Fixed {
            fn families(&self) -> Vec<MetricFamily> {
                vec![family::counter(
                    "activity_test_total",
                    "A test counter.",
                    vec![(vec![("kind", "a".to_string())], 3.0)],
                )]
            }
        }
        let t = Telemetry::new();
        let m = t.consumer("fraud", "fraud-detectors");
        m.consumed.inc();
        m.partition_assigned("user-activities", 3);
        t.add_source(Arc::new(Fixed));
        struct Empty;
        impl FamilySource for Empty {
            fn families(&self) -> Vec<MetricFamily> {
                vec![family::counter("activity_aaa_empty_total", "No series yet.", vec![])]
            }
        }
        t.add_source(Arc::new(Empty));
        let text = t.render();
        assert!(
            text.contains("process_resident_memory_bytes"),
            "an empty family must not truncate the exposition"
        );
        assert!(!text.contains("activity_aaa_empty_total"));
        assert!(
            text.contains(r#"activity_events_consumed_total{consumer="fraud",group="fraud-detectors"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"activity_consumer_assigned_partitions{consumer="fraud",group="fraud-detectors",partition="3",topic="user-activities"} 1"#));
        assert!(text.contains(r#"activity_test_total{kind="a"} 3"#));
        m.partition_revoked("user-activities", 3);
        assert!(!t.render().contains("partition=\"3\""));
    }
}
