//! The fraud alert: what is published to `KAFKA_ALERTS_TOPIC` and printed.
//!
//! `alert_id` is deterministic — a UUID-shaped digest of (rule, user_id,
//! the event_id the alert is about, and where that event's record sits in
//! Kafka: partition and offset) — so the same alert from the same record
//! always has the same id, and two records that reuse an event_id (a client
//! cannot be trusted to keep them unique) raise distinct ones. After a crash the runtime may process a few events twice
//! (at-least-once delivery); their alerts come out again with the same ids,
//! and a downstream drops the copies by id.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Evidence, Rule, Severity};
use crate::eventtime::Rfc3339;

/// One fraud alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule: Rule,
    pub severity: Severity,
    pub user_id: String,
    pub message: String,
    pub event_id: String,
    #[serde(serialize_with = "as_rfc3339")]
    pub event_timestamp: i64,
    /// Stamped by the runtime when the alert is published (wall clock).
    #[serde(serialize_with = "as_optional_rfc3339")]
    pub detected_at: Option<i64>,
    /// The observations behind the alert (counts, addresses, places, amount).
    pub evidence: Evidence,
}

impl Alert {
    pub fn new(
        rule: Rule,
        user_id: &str,
        event_id: &str,
        record: Option<(i32, i64)>,
        event_timestamp: i64,
        message: String,
        evidence: Evidence,
    ) -> Alert {
        Alert {
            alert_id: alert_id(rule, user_id, event_id, record),
            rule,
            severity: rule.severity(),
            user_id: user_id.to_string(),
            message,
            event_id: event_id.to_string(),
            event_timestamp,
            detected_at: None,
            evidence,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and the evidence cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The seed's console form, with client-supplied text made printable.
    pub fn console(&self) -> String {
        use crate::event::printable;
        let icon = match self.severity {
            Severity::High => "🔴",
            Severity::Medium => "🟡",
        };
        format!(
            "{icon} FRAUD ALERT [{}] - {} SEVERITY\n   User ID: {}\n   {}\n   Event: {} at {}\n",
            self.rule.as_str(),
            self.severity.as_str(),
            printable(&self.user_id),
            printable(&self.message),
            printable(&self.event_id),
            Rfc3339(self.event_timestamp),
        )
    }
}

/// The deterministic id of the alert `rule` raised about `event_id` of
/// `user_id`, read from `record` (partition, offset) when known.
pub fn alert_id(rule: Rule, user_id: &str, event_id: &str, record: Option<(i32, i64)>) -> String {
    let mut h = Sha256::new();
    h.update(b"activity-tracker/alert/v1\0");
    h.update(rule.as_str().as_bytes());
    h.update(b"\0");
    h.update(user_id.as_bytes());
    h.update(b"\0");
    h.update(event_id.as_bytes());
    if let Some((partition, offset)) = record {
        h.update(b"\0");
        h.update(partition.to_be_bytes());
        h.update(offset.to_be_bytes());
    }
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // Shape it as an RFC 9562 version 8 (custom) UUID.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]),
        u16::from_be_bytes([b[8], b[9]]),
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

fn as_rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Rfc3339(*ms))
}

fn as_optional_rfc3339<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.collect_str(&Rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::Place;

    /// A hostile event cannot write to the operator's terminal: the console
    /// form has exactly its own four lines and no control character.
    #[test]
    fn console_form_escapes_client_text() {
        let fake = "x\n🔴 FRAUD ALERT [FAKE] - HIGH SEVERITY\u{1b}[2J\u{1b}]0;owned\u{7}";
        let alert = Alert::new(
            Rule::RapidLocationChange,
            fake,
            fake,
            None,
            0,
            format!("Location changed between US/{fake} and GB/London"),
            Evidence::RapidLocationChange {
                from: Place {
                    city: Some(fake.into()),
                    country: Some("US".into()),
                },
                minutes_between: 1.0,
                threshold_minutes: 10.0,
                to: Place {
                    city: Some("London".into()),
                    country: Some("GB".into()),
                },
            },
        );
        let text = alert.console();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!text.replace('\n', "").chars().any(char::is_control), "{text:?}");
        assert_eq!(
            text.matches("FRAUD ALERT").count(),
            4,
            "the fake headers stay inside their own lines"
        );
    }

    #[test]
    fn ids_are_deterministic_and_distinguish_inputs() {
        let a = alert_id(Rule::HighVelocity, "user-1", "e-1", None);
        assert_eq!(a, alert_id(Rule::HighVelocity, "user-1", "e-1", None));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert_ne!(a, alert_id(Rule::MultipleIps, "user-1", "e-1", None));
        assert_ne!(a, alert_id(Rule::HighVelocity, "user-2", "e-1", None));
        assert_ne!(a, alert_id(Rule::HighVelocity, "user-1", "e-2", None));
        // No ambiguity from concatenation.
        assert_ne!(
            alert_id(Rule::HighVelocity, "ab", "c", None),
            alert_id(Rule::HighVelocity, "a", "bc", None)
        );
        // Two records reusing an event id are two alerts; a record read
        // again (redelivery) is the same alert.
        let at = |p, o| alert_id(Rule::HighValuePurchase, "u", "e", Some((p, o)));
        assert_eq!(at(2, 17), at(2, 17));
        assert_ne!(at(2, 17), at(2, 18));
        assert_ne!(at(2, 17), at(3, 17));
        assert_ne!(at(2, 17), alert_id(Rule::HighValuePurchase, "u", "e", None));
    }

    #[test]
    fn json_carries_every_documented_field() {
        let mut alert = Alert::new(
            Rule::HighValuePurchase,
            "user-7",
            "evt-9",
            Some((3, 41)),
            1_705_314_645_123,
            "High-value purchase".into(),
            Evidence::HighValuePurchase {
                amount: 999.99,
                threshold: 500.0,
            },
        );
        alert.detected_at = Some(1_705_314_646_000);
        let v: serde_json::Value = serde_json::from_slice(&alert.to_json()).unwrap();
        for key in [
            "alert_id",
            "rule",
            "severity",
            "user_id",
            "message",
            "event_id",
            "event_timestamp",
            "detected_at",
            "evidence",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["rule"], "HIGH_VALUE_PURCHASE");
        assert_eq!(v["severity"], "MEDIUM");
        assert_eq!(v["event_timestamp"], "2024-01-15T10:30:45.123Z");
        assert!(
            alert
                .console()
                .starts_with("🟡 FRAUD ALERT [HIGH_VALUE_PURCHASE] - MEDIUM SEVERITY\n   User ID: user-7")
        );
    }
}
