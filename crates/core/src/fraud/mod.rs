//! Fraud detection: the seed's six rules over per-user windows, on event time.
//!
//! | rule | severity | fires when |
//! |---|---|---|
//! | HIGH_VELOCITY | HIGH | ≥ VELOCITY_THRESHOLD transactional events (add_to_cart, purchase) within 60 s |
//! | MULTIPLE_IPS | MEDIUM | ≥ MULTIPLE_IP_THRESHOLD distinct IPs among the user's events within an hour |
//! | RAPID_LOCATION_CHANGE | HIGH | country or city differs from that of the user's neighbouring event in event time, less than RAPID_LOCATION_CHANGE_MINUTES apart |
//! | HIGH_VALUE_PURCHASE | MEDIUM | a purchase of at least HIGH_VALUE_THRESHOLD (cart_value unless absent or 0, else price) |
//! | PURCHASE_WITHOUT_ACTIVITY | MEDIUM | a purchase with fewer than 2 other transactional events in the hour up to it |
//! | RAPID_PURCHASES | HIGH | ≥ 3 purchases within 5 minutes |
//!
//! Differences from the seed, on purpose: MULTIPLE_IPS and
//! RAPID_LOCATION_CHANGE look at every event type (a takeover shows in page
//! views first), and RAPID_LOCATION_CHANGE compares with the *previous* event
//! (the seed compared an event with itself, so it never fired).
//!
//! **Whose clock.** Events from the HTTP collector are judged at their
//! receipt time (`received_at`, set by the collector), not at the time the
//! client claims: with a public write key anyone could otherwise spread a
//! bot's burst over hours and dodge every window. Events other producers
//! write to Kafka are judged at their own timestamp. See [`rule_time`].
//!
//! **Event time, in any arrival order.** Each partition has an event time
//! ([`EventClock`]: the time three distinct users have reached, so a forged
//! outlier cannot drag it ahead) and a watermark `ALLOWED_LATENESS` behind
//! it. An event at or after the watermark is *on time* and every windowed
//! rule considers it at its own timestamp: the rules that count events in a
//! window fire as soon as the events received so far contain a qualifying
//! set in event time, whichever arrived last. PURCHASE_WITHOUT_ACTIVITY is
//! about an absence, so it is decided once the watermark passes the
//! purchase (an add_to_cart arriving late still counts); its alerts come
//! `ALLOWED_LATENESS` of event time after the purchase. An event behind the
//! watermark is *late*: it is counted, judged by HIGH_VALUE_PURCHASE, and
//! otherwise left out of every window and every user's state, so that what
//! one arrival order would learn from it another cannot contradict.
//!
//! **No alert storms.** An alert for a (user, rule) fires when the rule's
//! condition holds at an event time further than a cooldown
//! (`FRAUD_COOLDOWN`, default the rule's own window; HIGH_VALUE_PURCHASE has
//! none: every such purchase is its own alert) from every time it held
//! before. A bot that keeps hammering is one incident, one alert. Its
//! outcome depends only on a bounded stretch of history (lateness + window +
//! cooldown), which is what lets a partition move between pods and be
//! rebuilt by replay with exactly the same alerts.
//!
//! **What is exact.** Whether a (user, rule) raises an alert depends only on
//! the on-time events, not on their arrival order. The counting rules
//! (HIGH_VELOCITY, RAPID_PURCHASES, PURCHASE_WITHOUT_ACTIVITY) see every
//! on-time transactional event: the partition keeps each one until the
//! watermark passes it (at most 200,000 per partition, counted in the
//! state's bytes; beyond that the oldest settle early), and then its user's
//! record keeps the newest few, all that a window around an on-time event
//! can still reach. MULTIPLE_IPS keeps 3 addresses and RAPID_LOCATION_CHANGE
//! 3 located events per user; they stay exact unless more of one user's
//! events than that, newer than an event still on its way, arrive before it
//! (a located event's list drops entries inside a run of one place first,
//! so a burst at one place never pushes out the change of place before it).
//! Which event of an incident carries the alert, and so its `alert_id`,
//! follows the arrival order; a rebuild replays the same order and gives
//! the same ids. `tests/it/ordering.rs` checks both properties on random
//! streams.
//!
//! Per-user state lives in [`state::UserTable`] and is evicted once older
//! than the widest window plus cooldown behind the watermark.
//!
//! [`EventClock`]: crate::eventtime::EventClock

pub mod alert;
mod detector;
mod evidence;
mod partition;
mod rules;
pub mod state;
mod totals;

use serde::Serialize;

pub use alert::Alert;
pub use detector::FraudDetector;
pub use evidence::{Evidence, Place};
pub use partition::FraudPartition;
pub use totals::FraudTotals;

use crate::event::Event;

/// The fraud settings (HIGH_VALUE_THRESHOLD, VELOCITY_THRESHOLD,
/// RAPID_LOCATION_CHANGE_MINUTES, MULTIPLE_IP_THRESHOLD, ALLOWED_LATENESS).
#[derive(Clone, Debug, PartialEq)]
pub struct FraudConfig {
    pub high_value_threshold: f64,
    pub velocity_threshold: u32,
    pub rapid_location_change: std::time::Duration,
    pub multiple_ip_threshold: u32,
    /// `None`: each rule's own window.
    pub cooldown: Option<std::time::Duration>,
    /// ALLOWED_LATENESS.
    pub allowed_lateness: std::time::Duration,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            high_value_threshold: 500.0,
            velocity_threshold: 5,
            rapid_location_change: std::time::Duration::from_secs(600),
            multiple_ip_threshold: 3,
            cooldown: None,
            allowed_lateness: crate::eventtime::DEFAULT_ALLOWED_LATENESS,
        }
    }
}

/// The seed's RAPID_PURCHASES threshold: purchases within the window.
pub const RAPID_PURCHASES_THRESHOLD: u32 = 3;
pub const RAPID_PURCHASES_WINDOW_MS: i64 = 5 * 60 * 1000;
pub const VELOCITY_WINDOW_MS: i64 = 60 * 1000;
pub const MULTIPLE_IPS_WINDOW_MS: i64 = 60 * 60 * 1000;
pub const PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS: i64 = 60 * 60 * 1000;
/// A purchase needs this many earlier transactional events in the window
/// (the seed: fewer than 3 counting the purchase is suspicious).
pub const PURCHASE_WITHOUT_ACTIVITY_MIN_PRIOR: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rule {
    HighVelocity,
    MultipleIps,
    RapidLocationChange,
    HighValuePurchase,
    PurchaseWithoutActivity,
    RapidPurchases,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::HighVelocity,
        Rule::MultipleIps,
        Rule::RapidLocationChange,
        Rule::HighValuePurchase,
        Rule::PurchaseWithoutActivity,
        Rule::RapidPurchases,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::HighVelocity => "HIGH_VELOCITY",
            Rule::MultipleIps => "MULTIPLE_IPS",
            Rule::RapidLocationChange => "RAPID_LOCATION_CHANGE",
            Rule::HighValuePurchase => "HIGH_VALUE_PURCHASE",
            Rule::PurchaseWithoutActivity => "PURCHASE_WITHOUT_ACTIVITY",
            Rule::RapidPurchases => "RAPID_PURCHASES",
        }
    }

    pub fn parse(text: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::HighVelocity | Rule::RapidLocationChange | Rule::RapidPurchases => Severity::High,
            _ => Severity::Medium,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    High,
    Medium,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
        }
    }
}

/// The thresholds and windows in force, in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct FraudRules {
    pub velocity_threshold: u32,
    pub ip_threshold: u32,
    pub location_window_ms: i64,
    pub high_value_threshold: f64,
    /// Quiet period per rule (indexed by [`Rule::index`]).
    pub cooldown_ms: [i64; 6],
    /// How far behind the partition's event time an event is still on time.
    pub lateness_ms: i64,
}

impl FraudRules {
    pub fn from_config(c: &FraudConfig) -> FraudRules {
        let location_window_ms = c.rapid_location_change.as_millis() as i64;
        let mut cooldown_ms = [0i64; 6];
        for rule in Rule::ALL {
            cooldown_ms[rule.index()] = match (c.cooldown, rule) {
                (Some(d), Rule::HighValuePurchase) if !d.is_zero() => d.as_millis() as i64,
                (_, Rule::HighValuePurchase) => 0,
                (Some(d), _) => d.as_millis() as i64,
                (None, Rule::HighVelocity) => VELOCITY_WINDOW_MS,
                (None, Rule::MultipleIps) => MULTIPLE_IPS_WINDOW_MS,
                (None, Rule::RapidLocationChange) => location_window_ms,
                (None, Rule::PurchaseWithoutActivity) => PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS,
                (None, Rule::RapidPurchases) => RAPID_PURCHASES_WINDOW_MS,
            };
        }
        FraudRules {
            velocity_threshold: c.velocity_threshold,
            ip_threshold: c.multiple_ip_threshold,
            location_window_ms,
            high_value_threshold: c.high_value_threshold,
            cooldown_ms,
            lateness_ms: c.allowed_lateness.as_millis() as i64,
        }
    }

    /// The look-back of each rule's condition.
    pub fn window_ms(&self, rule: Rule) -> i64 {
        match rule {
            Rule::HighVelocity => VELOCITY_WINDOW_MS,
            Rule::MultipleIps => MULTIPLE_IPS_WINDOW_MS,
            Rule::RapidLocationChange => self.location_window_ms,
            Rule::HighValuePurchase => 0,
            Rule::PurchaseWithoutActivity => PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS,
            Rule::RapidPurchases => RAPID_PURCHASES_WINDOW_MS,
        }
    }

    /// How long a user's state can still influence an alert: the widest
    /// window plus its cooldown. It is both the eviction age and the replay
    /// window of a rebuild.
    pub fn retention_ms(&self) -> i64 {
        Rule::ALL
            .into_iter()
            .map(|r| self.window_ms(r) + self.cooldown_ms[r.index()])
            .max()
            .unwrap_or(0)
    }
}

/// The time the rules judge an event at: when the collector received it if
/// it came through the collector (a client with a public write key must not
/// be able to spread a burst over hours by stamping it so), else its own
/// timestamp (producers writing to Kafka are trusted).
pub fn rule_time(event: &Event<'_>) -> i64 {
    event.received_ms.unwrap_or(event.timestamp_ms)
}

#[cfg(test)]
mod tests;
