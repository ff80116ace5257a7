//! The `analytics` consumer: the analytics processor on the shared runtime,
//! its console report, `/report` and business metrics.

use std::sync::Arc;

use serde::Serialize;

use super::metrics::AnalyticsMetrics;
use crate::analytics::report::UserCount;
use crate::analytics::{AnalyticsPartition, AnalyticsProcessor, AnalyticsReport};
use crate::runtime::{ConsumerApp, Record};

/// The analytics consumer's figures in `/report`: the report, with the
/// most active users' ids only when REPORT_USER_IDS allows (`/report` has no
/// authentication).
#[derive(Clone, Debug, Serialize)]
pub struct AnalyticsFigures {
    #[serde(flatten)]
    pub report: AnalyticsReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_users: Option<Vec<UserCount>>,
}

pub struct AnalyticsApp {
    processor: AnalyticsProcessor,
    metrics: Arc<AnalyticsMetrics>,
}

impl AnalyticsApp {
    pub fn new(processor: AnalyticsProcessor, group: &str) -> AnalyticsApp {
        AnalyticsApp {
            processor,
            metrics: Arc::new(AnalyticsMetrics::new(group)),
        }
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

    type Figures = AnalyticsFigures;

    fn metrics(&self) -> Arc<dyn crate::telemetry::metrics::FamilySource> {
        self.metrics.clone()
    }

    fn snapshot(&mut self, partitions: &[(i32, &AnalyticsPartition)]) -> AnalyticsFigures {
        let report = self.report(partitions);
        let tracked = partitions.iter().map(|(_, s)| s.tracked_users()).sum();
        let bytes = partitions.iter().map(|(_, s)| s.heap_bytes()).sum();
        self.metrics
            .update(self.processor.totals().clone(), report.clone(), tracked, bytes);
        AnalyticsFigures {
            top_users: self
                .processor
                .config()
                .report_user_ids
                .then(|| report.top_users.clone()),
            report,
        }
    }

    fn console_report(&mut self, partitions: &[(i32, &AnalyticsPartition)], header: &str) -> String {
        self.report(partitions).render(header)
    }

    fn final_summary(&mut self, partitions: &[(i32, &AnalyticsPartition)], header: &str) -> String {
        let text = self.report(partitions).render(header);
        text.replacen("📊 ANALYTICS AGGREGATION REPORT", "📊 FINAL ANALYTICS SUMMARY", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnalyticsConfig;

    fn report(report_user_ids: bool) -> serde_json::Value {
        let config = AnalyticsConfig {
            report_user_ids,
            ..AnalyticsConfig::default()
        };
        serde_json::to_value(AnalyticsApp::new(AnalyticsProcessor::new(config), "g").snapshot(&[])).unwrap()
    }

    #[test]
    fn report_lists_user_ids_only_when_asked_to() {
        let hidden = report(false);
        assert!(hidden.get("top_users").is_none(), "{hidden}");
        assert!(hidden.get("total_events").is_some(), "the rest stays: {hidden}");
        let shown = report(true);
        assert!(shown["top_users"].is_array(), "{shown}");
    }
}
