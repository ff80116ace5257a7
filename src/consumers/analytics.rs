//! The `analytics` consumer: the analytics processor on the shared runtime,
//! its console report, `/report` and business metrics.

use std::sync::{Arc, Mutex};

use prometheus::proto::MetricFamily;

use crate::analytics::{AnalyticsPartition, AnalyticsProcessor, AnalyticsReport, AnalyticsTotals};
use crate::runtime::{ConsumerApp, Record};
use crate::telemetry::FamilySource;
use crate::telemetry::metrics::family;

/// The latest figures, rendered as Prometheus families at scrape time.
#[derive(Default)]
pub struct AnalyticsMetrics {
    latest: Mutex<Option<(AnalyticsTotals, AnalyticsReport, usize, usize)>>,
}

impl FamilySource for AnalyticsMetrics {
    fn families(&self) -> Vec<MetricFamily> {
        let Ok(latest) = self.latest.lock() else {
            return Vec::new();
        };
        let Some((totals, report, tracked, bytes)) = latest.as_ref() else {
            return Vec::new();
        };
        let keyed = |label: &'static str, counts: &crate::analytics::bounded::BoundedCounts| {
            counts
                .iter()
                .map(|(k, v)| (vec![(label, k.to_string())], v as f64))
                .collect::<Vec<_>>()
        };
        vec![
            family::counter(
                "activity_events_total",
                "Events processed live by type.",
                crate::event::EventType::ALL
                    .iter()
                    .map(|t| {
                        (
                            vec![("event_type", t.as_str().to_string())],
                            totals.event_types[t.index()] as f64,
                        )
                    })
                    .collect(),
            ),
            family::counter(
                "activity_revenue_total",
                "Revenue of purchases (cart_value, else price), in the shop's currency.",
                vec![(vec![], totals.revenue_cents as f64 / 100.0)],
            ),
            family::counter(
                "activity_purchases_total",
                "Purchases.",
                vec![(vec![], totals.purchases as f64)],
            ),
            family::histogram(
                "activity_order_value",
                "Order value of purchases, in the shop's currency.",
                &totals.order_values,
            ),
            family::gauge(
                "activity_funnel_users",
                "Distinct users who reached each funnel stage within ANALYTICS_WINDOW (owned partitions).",
                report
                    .funnel_users
                    .iter()
                    .map(|(k, v)| (vec![("stage", k.clone())], *v as f64))
                    .collect(),
            ),
            family::gauge(
                "activity_active_users",
                "Distinct users active within ANALYTICS_WINDOW (owned partitions).",
                vec![(vec![], report.active_users as f64)],
            ),
            family::counter(
                "activity_page_views_total",
                "Page views by page path (bounded set; the rest under page=\"other\").",
                keyed("page", &totals.page_views),
            ),
            family::counter(
                "activity_product_interactions_total",
                "Events naming a product, by product id (bounded set).",
                keyed("product", &totals.product_interactions),
            ),
            family::counter(
                "activity_product_revenue_total",
                "Order revenue attributed to the product each purchase names, by product id.",
                totals
                    .product_revenue_cents
                    .iter()
                    .map(|(k, v)| (vec![("product", k.to_string())], v as f64 / 100.0))
                    .collect(),
            ),
            family::counter(
                "activity_events_by_country_total",
                "Events by country (bounded set).",
                keyed("country", &totals.countries),
            ),
            family::counter(
                "activity_events_by_device_type_total",
                "Events by device type.",
                keyed("device_type", &totals.device_types),
            ),
            family::counter(
                "activity_events_by_browser_total",
                "Events by browser.",
                keyed("browser", &totals.browsers),
            ),
            family::counter(
                "activity_events_by_os_total",
                "Events by operating system.",
                keyed("os", &totals.operating_systems),
            ),
            family::histogram(
                "activity_session_duration_seconds",
                "Duration of closed sessions.",
                &totals.session_durations,
            ),
            family::gauge(
                "activity_analytics_tracked_users",
                "Users tracked exactly in the owned partitions' windows.",
                vec![(vec![], *tracked as f64)],
            ),
            family::gauge(
                "activity_analytics_state_bytes",
                "Approximate heap bytes of the owned partitions' analytics state.",
                vec![(vec![], *bytes as f64)],
            ),
        ]
    }
}

pub struct AnalyticsApp {
    processor: AnalyticsProcessor,
    metrics: Arc<AnalyticsMetrics>,
}

impl AnalyticsApp {
    pub fn new(processor: AnalyticsProcessor) -> AnalyticsApp {
        AnalyticsApp {
            processor,
            metrics: Arc::new(AnalyticsMetrics::default()),
        }
    }

    pub fn metrics_source(&self) -> Arc<AnalyticsMetrics> {
        self.metrics.clone()
    }

    fn report(&self, partitions: &[(i32, &AnalyticsPartition)]) -> AnalyticsReport {
        self.processor.report(partitions.iter().map(|(_, s)| *s))
    }
}

impl ConsumerApp for AnalyticsApp {
    type Processor = AnalyticsProcessor;

    fn name(&self) -> &'static str {
        "analytics"
    }

    fn processor(&mut self) -> &mut AnalyticsProcessor {
        &mut self.processor
    }

    fn publish(&mut self, output: std::convert::Infallible, _now_ms: i64) -> Option<Record> {
        match output {}
    }

    fn snapshot(&mut self, partitions: &[(i32, &AnalyticsPartition)]) -> serde_json::Value {
        let report = self.report(partitions);
        let tracked = partitions.iter().map(|(_, s)| s.tracked_users()).sum();
        let bytes = partitions.iter().map(|(_, s)| s.heap_bytes()).sum();
        if let Ok(mut latest) = self.metrics.latest.lock() {
            *latest = Some((self.processor.totals().clone(), report.clone(), tracked, bytes));
        }
        serde_json::to_value(&report).unwrap_or_default()
    }

    fn console_report(&mut self, partitions: &[(i32, &AnalyticsPartition)], header: &str) -> String {
        self.report(partitions).render(header)
    }

    fn final_summary(&mut self, partitions: &[(i32, &AnalyticsPartition)], header: &str) -> String {
        let text = self.report(partitions).render(header);
        text.replacen("📊 ANALYTICS AGGREGATION REPORT", "📊 FINAL ANALYTICS SUMMARY", 1)
    }
}
