//! Business metrics: what the processors count, exported at scrape time.
//!
//! The processors keep plain integers (they are pure); the consumer app
//! hands a snapshot of them to these sources once a second, and every scrape
//! renders that snapshot as Prometheus families. Counters are therefore
//! exactly the processors' totals, and nothing on the per-event path touches
//! an atomic or a label map. Every series carries `group`, the consumer
//! group, like the pipeline metrics, so dashboards filter both the same way.

use std::sync::Mutex;

use prometheus::proto::MetricFamily;

use crate::analytics::acquisition::Channel;
use crate::analytics::{AnalyticsReport, AnalyticsTotals};
use crate::fraud::{FraudTotals, Rule};
use crate::telemetry::FamilySource;
use crate::telemetry::metrics::family;

/// The analytics consumer's figures, rendered at scrape time.
pub struct AnalyticsMetrics {
    group: String,
    latest: Mutex<Option<(AnalyticsTotals, AnalyticsReport, usize, usize)>>,
}

impl AnalyticsMetrics {
    pub fn new(group: &str) -> AnalyticsMetrics {
        AnalyticsMetrics {
            group: group.to_string(),
            latest: Mutex::new(None),
        }
    }

    /// Replaces the snapshot rendered by the next scrape.
    pub fn update(&self, totals: AnalyticsTotals, report: AnalyticsReport, tracked_users: usize, state_bytes: usize) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((totals, report, tracked_users, state_bytes));
        }
    }
}

impl FamilySource for AnalyticsMetrics {
    fn families(&self) -> Vec<MetricFamily> {
        let Ok(latest) = self.latest.lock() else {
            return Vec::new();
        };
        let Some((totals, report, tracked, bytes)) = latest.as_ref() else {
            return Vec::new();
        };
        let g = || ("group", self.group.clone());
        let keyed = |label: &'static str, counts: &crate::analytics::bounded::BoundedCounts| {
            counts
                .iter()
                .map(|(k, v)| (vec![g(), (label, k.to_string())], v as f64))
                .collect::<Vec<_>>()
        };
        let cents = |label: &'static str, counts: &crate::analytics::bounded::BoundedCounts| {
            counts
                .iter()
                .map(|(k, v)| (vec![g(), (label, k.to_string())], v as f64 / 100.0))
                .collect::<Vec<_>>()
        };
        let st = &totals.sessions;
        vec![
            family::counter(
                "activity_late_events_total",
                "Events behind their partition's watermark (event time − ALLOWED_LATENESS) on arrival: counted in volume figures and judged by HIGH_VALUE_PURCHASE, kept out of every window.",
                vec![(vec![g()], totals.late_events as f64)],
            ),
            family::counter(
                "activity_events_total",
                "Events processed live by type.",
                crate::event::EventType::ALL
                    .iter()
                    .map(|t| {
                        (
                            vec![g(), ("event_type", t.as_str().to_string())],
                            totals.event_types[t.index()] as f64,
                        )
                    })
                    .collect(),
            ),
            family::counter(
                "activity_revenue_total",
                "Revenue of purchases (cart_value unless absent or 0, else price), in the shop's currency.",
                vec![(vec![g()], totals.revenue_cents as f64 / 100.0)],
            ),
            family::counter(
                "activity_purchases_total",
                "Purchases.",
                vec![(vec![g()], totals.purchases as f64)],
            ),
            family::histogram(
                "activity_order_value",
                "Order value of purchases, in the shop's currency.",
                vec![g()],
                &totals.order_values,
            ),
            family::gauge(
                "activity_funnel_users",
                "Distinct users who reached each funnel stage within ANALYTICS_WINDOW (owned partitions).",
                report
                    .funnel_users
                    .iter()
                    .map(|(k, v)| (vec![g(), ("stage", k.clone())], *v as f64))
                    .collect(),
            ),
            family::gauge(
                "activity_active_users",
                "Distinct users active within ANALYTICS_WINDOW (owned partitions).",
                vec![(vec![g()], report.active_users as f64)],
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
                    .map(|(k, v)| (vec![g(), ("product", k.to_string())], v as f64 / 100.0))
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
                vec![g()],
                &totals.session_durations,
            ),
            family::counter(
                "activity_sessions_total",
                "Sessions counted (once the watermark passed their landing event), by acquisition channel.",
                Channel::ALL
                    .iter()
                    .map(|c| {
                        (
                            vec![g(), ("channel", c.as_str().to_string())],
                            st.channels[c.index()] as f64,
                        )
                    })
                    .collect(),
            ),
            family::counter(
                "activity_source_sessions_total",
                "Sessions by traffic source (utm_source, else the referrer's domain, else direct; bounded set).",
                keyed("source", &st.sources),
            ),
            family::counter(
                "activity_source_conversions_total",
                "Sessions with a purchase, by traffic source.",
                keyed("source", &st.source_conversions),
            ),
            family::counter(
                "activity_source_revenue_total",
                "Revenue of purchases, by the traffic source of their session.",
                cents("source", &st.source_revenue_cents),
            ),
            family::counter(
                "activity_campaign_sessions_total",
                "Sessions by utm_campaign of their landing page (bounded set).",
                keyed("campaign", &st.campaigns),
            ),
            family::counter(
                "activity_campaign_conversions_total",
                "Sessions with a purchase, by campaign.",
                keyed("campaign", &st.campaign_conversions),
            ),
            family::counter(
                "activity_campaign_revenue_total",
                "Revenue of purchases, by the campaign of their session.",
                cents("campaign", &st.campaign_revenue_cents),
            ),
            family::counter(
                "activity_entry_page_sessions_total",
                "Sessions by landing page path (bounded set).",
                keyed("page", &st.entry_pages),
            ),
            family::gauge(
                "activity_exit_page_sessions",
                "Sessions by the page of their latest page view (exit pages; open sessions by their current page). Per pod it can be negative when a session another pod counted moved on here: sum over pods.",
                report
                    .exit_pages
                    .iter()
                    .map(|(k, v)| (vec![g(), ("page", k.clone())], *v as f64))
                    .collect(),
            ),
            family::counter(
                "activity_engaged_sessions_total",
                "Counted sessions that engaged (over 10 s, 2+ page views, or a purchase); bounce rate = 1 - engaged / sessions.",
                vec![(vec![g()], st.engaged as f64)],
            ),
            family::counter(
                "activity_session_page_views_total",
                "Page views within counted sessions (pages per session = this / sessions).",
                vec![(vec![g()], st.page_views as f64)],
            ),
            family::counter(
                "activity_session_users_total",
                "Counted sessions by visitor: new, or returning (seen before within ANALYTICS_WINDOW).",
                vec![
                    (vec![g(), ("visitor", "new".to_string())], st.new_users as f64),
                    (
                        vec![g(), ("visitor", "returning".to_string())],
                        st.returning_users as f64,
                    ),
                ],
            ),
            family::gauge(
                "activity_live_visitors",
                "Users active in the last 5 minutes of event time (owned partitions).",
                vec![(vec![g()], report.live_visitors as f64)],
            ),
            family::gauge(
                "activity_analytics_tracked_users",
                "Users tracked exactly in the owned partitions' windows.",
                vec![(vec![g()], *tracked as f64)],
            ),
            family::gauge(
                "activity_analytics_state_bytes",
                "Approximate heap bytes of the owned partitions' analytics state.",
                vec![(vec![g()], *bytes as f64)],
            ),
        ]
    }
}

/// The fraud detector's figures, rendered at scrape time.
pub struct FraudMetrics {
    group: String,
    latest: Mutex<Option<(FraudTotals, usize, usize)>>,
}

impl FraudMetrics {
    pub fn new(group: &str) -> FraudMetrics {
        FraudMetrics {
            group: group.to_string(),
            latest: Mutex::new(None),
        }
    }

    /// Replaces the snapshot rendered by the next scrape.
    pub fn update(&self, totals: FraudTotals, tracked_users: usize, state_bytes: usize) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((totals, tracked_users, state_bytes));
        }
    }
}

impl FamilySource for FraudMetrics {
    fn families(&self) -> Vec<MetricFamily> {
        let Ok(latest) = self.latest.lock() else {
            return Vec::new();
        };
        let Some((totals, tracked, bytes)) = latest.as_ref() else {
            return Vec::new();
        };
        let g = || ("group", self.group.clone());
        vec![
            family::counter(
                "activity_fraud_alerts_total",
                "Fraud alerts raised live, by rule and severity.",
                Rule::ALL
                    .iter()
                    .map(|r| {
                        (
                            vec![
                                g(),
                                ("rule", r.as_str().to_string()),
                                ("severity", r.severity().as_str().to_string()),
                            ],
                            totals.alerts_by_rule[r.index()] as f64,
                        )
                    })
                    .collect(),
            ),
            family::counter(
                "activity_late_events_total",
                "Events behind their partition's watermark (event time − ALLOWED_LATENESS) on arrival: counted in volume figures and judged by HIGH_VALUE_PURCHASE, kept out of every window.",
                vec![(vec![g()], totals.late_events as f64)],
            ),
            family::counter(
                "activity_fraud_high_value_purchases_total",
                "Purchases at or above HIGH_VALUE_THRESHOLD.",
                vec![(vec![g()], totals.high_value_purchases as f64)],
            ),
            family::counter(
                "activity_fraud_high_value_amount_total",
                "Sum of high-value purchase amounts, in the shop's currency.",
                vec![(vec![g()], totals.high_value_amount)],
            ),
            family::gauge(
                "activity_fraud_tracked_users",
                "Users with fraud state in the owned partitions.",
                vec![(vec![g()], *tracked as f64)],
            ),
            family::gauge(
                "activity_fraud_state_bytes",
                "Approximate heap bytes of the owned partitions' fraud state.",
                vec![(vec![g()], *bytes as f64)],
            ),
        ]
    }
}
