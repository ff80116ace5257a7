//! The `fraud` consumer: the fraud detector on the shared runtime; alerts
//! printed and published to `KAFKA_ALERTS_TOPIC`, `/report` and metrics.

use std::sync::Arc;

use serde::Serialize;

use super::metrics::FraudMetrics;
use crate::fraud::{Alert, FraudDetector, FraudPartition, Rule, Severity};
use crate::runtime::{ConsumerApp, Record};

pub struct FraudApp {
    detector: FraudDetector,
    alerts_topic: String,
    metrics: Arc<FraudMetrics>,
    /// Print each alert to stdout (the seed's behaviour).
    print_alerts: bool,
}

impl FraudApp {
    pub fn new(detector: FraudDetector, alerts_topic: String, group: &str) -> FraudApp {
        FraudApp {
            detector,
            alerts_topic,
            metrics: Arc::new(FraudMetrics::new(group)),
            print_alerts: true,
        }
    }

    pub fn quiet(mut self) -> FraudApp {
        self.print_alerts = false;
        self
    }

    fn figures(&self, partitions: &[(i32, &FraudPartition)]) -> FraudFigures {
        let t = self.detector.totals();
        let tracked: usize = partitions.iter().map(|(_, s)| s.tracked_users()).sum();
        let bytes: usize = partitions.iter().map(|(_, s)| s.heap_bytes()).sum();
        FraudFigures {
            events_analyzed: t.events,
            late_events: t.late_events,
            pending_purchase_verdicts: partitions.iter().map(|(_, s)| s.pending_purchases()).sum(),
            alerts_total: t.alerts(),
            alerts_by_rule: Rule::ALL
                .iter()
                .map(|r| (r.as_str(), t.alerts_by_rule[r.index()]))
                .collect(),
            alerts_by_severity: BySeverity {
                high: t.alerts_by_severity(Severity::High),
                medium: t.alerts_by_severity(Severity::Medium),
            },
            high_value_purchases: t.high_value_purchases,
            high_value_amount: t.high_value_amount,
            users_with_multiple_ips: t.multiple_ip_users,
            tracked_users: tracked,
            state_bytes: bytes,
            bytes_per_tracked_user: bytes.checked_div(tracked).unwrap_or(0),
        }
    }
}

/// The fraud consumer's figures in `/report`.
#[derive(Clone, Debug, Serialize)]
pub struct FraudFigures {
    pub events_analyzed: u64,
    pub late_events: u64,
    pub pending_purchase_verdicts: usize,
    pub alerts_total: u64,
    pub alerts_by_rule: std::collections::BTreeMap<&'static str, u64>,
    pub alerts_by_severity: BySeverity,
    pub high_value_purchases: u64,
    pub high_value_amount: f64,
    pub users_with_multiple_ips: u64,
    pub tracked_users: usize,
    pub state_bytes: usize,
    pub bytes_per_tracked_user: usize,
}

/// Alerts by severity.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub struct BySeverity {
    pub high: u64,
    pub medium: u64,
}

impl ConsumerApp for FraudApp {
    type Processor = FraudDetector;

    fn name(&self) -> &'static str {
        "fraud"
    }

    fn processor(&mut self) -> &mut FraudDetector {
        &mut self.detector
    }

    fn publish(&mut self, mut alert: Alert, now_ms: i64) -> Option<Record> {
        alert.detected_at = Some(now_ms);
        if self.print_alerts {
            print!("{}", alert.console());
        }
        Some(Record {
            topic: self.alerts_topic.clone(),
            key: Some(alert.user_id.as_bytes().to_vec()),
            payload: alert.to_json(),
            headers: Vec::new(),
        })
    }

    type Figures = FraudFigures;

    fn metrics(&self) -> Arc<dyn crate::telemetry::metrics::FamilySource> {
        self.metrics.clone()
    }

    fn snapshot(&mut self, partitions: &[(i32, &FraudPartition)]) -> FraudFigures {
        let tracked = partitions.iter().map(|(_, s)| s.tracked_users()).sum();
        let bytes = partitions.iter().map(|(_, s)| s.heap_bytes()).sum();
        self.metrics.update(self.detector.totals().clone(), tracked, bytes);
        self.figures(partitions)
    }

    fn console_report(&mut self, partitions: &[(i32, &FraudPartition)], header: &str) -> String {
        let t = self.detector.totals();
        let tracked: usize = partitions.iter().map(|(_, s)| s.tracked_users()).sum();
        format!(
            "🛡️  {header} | alerts {} (HIGH {}, MEDIUM {}) | tracked users {tracked}\n",
            t.alerts(),
            t.alerts_by_severity(Severity::High),
            t.alerts_by_severity(Severity::Medium)
        )
    }

    fn final_summary(&mut self, _partitions: &[(i32, &FraudPartition)], header: &str) -> String {
        format!("{}{header}\n", self.detector.totals().render_summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::{FraudConfig, FraudRules};
    use crate::privacy::{IpPrivacy, IpRenderer};
    use crate::runtime::{ConsumerStatus, PartitionStatus, Report};

    #[test]
    fn the_report_served_is_the_report_the_fleet_reads() {
        let detector = FraudDetector::new(
            FraudRules::from_config(&FraudConfig::default()),
            IpRenderer::new(IpPrivacy::None),
        );
        let mut app = FraudApp::new(detector, "alerts".into(), "g");
        let consumer = ConsumerStatus {
            consumer: "fraud".into(),
            group: "g".into(),
            partitions: vec![PartitionStatus {
                partition: 4,
                lag: Some(17),
                rebuilding: true,
                ..PartitionStatus::default()
            }],
            ready: true,
            ..ConsumerStatus::default()
        };
        let served = serde_json::to_string(&Report {
            figures: app.snapshot(&[]),
            consumer: consumer.clone(),
        })
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&served).unwrap();
        assert_eq!(json["alerts_by_severity"]["HIGH"], 0, "{json}");
        assert_eq!(json["alerts_total"], 0, "figures at the top level: {json}");
        let read: Report<serde::de::IgnoredAny> = serde_json::from_str(&served).unwrap();
        assert_eq!(read.consumer, consumer);
    }
}
