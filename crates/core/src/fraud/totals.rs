//! The detector's running totals (events, late events, alerts by rule,
//! high-value purchases, users with multiple IPs) and the seed's summary of
//! them.

use serde::Serialize;

use super::{Rule, Severity};

/// What the detector has done since it started (monotonic; live events only).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FraudTotals {
    pub events: u64,
    /// Events behind the watermark when they arrived.
    pub late_events: u64,
    pub alerts_by_rule: [u64; 6],
    pub high_value_purchases: u64,
    pub high_value_amount: f64,
    pub multiple_ip_users: u64,
    /// The first few users flagged with MULTIPLE_IPS, for the summary.
    pub multiple_ip_sample: Vec<String>,
}

impl FraudTotals {
    pub fn alerts(&self) -> u64 {
        self.alerts_by_rule.iter().sum()
    }

    pub fn alerts_by_severity(&self, severity: Severity) -> u64 {
        Rule::ALL
            .into_iter()
            .filter(|r| r.severity() == severity)
            .map(|r| self.alerts_by_rule[r.index()])
            .sum()
    }

    /// The seed's final summary.
    pub fn render_summary(&self) -> String {
        let mut s = String::new();
        s.push_str("\n🛡️  FRAUD DETECTION SUMMARY\n==========================================\n");
        s.push_str(&format!("  Events analysed      : {}\n", self.events));
        s.push_str(&format!(
            "  Alerts               : {} (HIGH {}, MEDIUM {})\n",
            self.alerts(),
            self.alerts_by_severity(Severity::High),
            self.alerts_by_severity(Severity::Medium)
        ));
        for rule in Rule::ALL {
            s.push_str(&format!(
                "    {:<26}: {}\n",
                rule.as_str(),
                self.alerts_by_rule[rule.index()]
            ));
        }
        s.push_str(&format!(
            "  High-value purchases : {} (${})\n",
            self.high_value_purchases,
            crate::money::money(self.high_value_amount)
        ));
        s.push_str(&format!("  Users with multiple IPs: {}", self.multiple_ip_users));
        if !self.multiple_ip_sample.is_empty() {
            s.push_str(&format!(" (e.g. {})", self.multiple_ip_sample.join(", ")));
        }
        s.push('\n');
        s
    }
}
