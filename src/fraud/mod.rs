//! Fraud detection: the seed's six rules over per-user windows, on event time.
//!
//! | rule | severity | fires when (counting the current event) |
//! |---|---|---|
//! | HIGH_VELOCITY | HIGH | ≥ VELOCITY_THRESHOLD transactional events (add_to_cart, purchase) within 60 s |
//! | MULTIPLE_IPS | MEDIUM | ≥ MULTIPLE_IP_THRESHOLD distinct IPs among the user's events of the last hour |
//! | RAPID_LOCATION_CHANGE | HIGH | country or city differs from the user's previous known location, seen < RAPID_LOCATION_CHANGE_MINUTES ago |
//! | HIGH_VALUE_PURCHASE | MEDIUM | a purchase of at least HIGH_VALUE_THRESHOLD (cart_value unless absent or 0, else price) |
//! | PURCHASE_WITHOUT_ACTIVITY | MEDIUM | a purchase with fewer than 2 earlier transactional events in the last hour |
//! | RAPID_PURCHASES | HIGH | ≥ 3 purchases within 5 minutes |
//!
//! Differences from the seed, on purpose: MULTIPLE_IPS and
//! RAPID_LOCATION_CHANGE look at every event type (a takeover shows in page
//! views first), and RAPID_LOCATION_CHANGE compares with the *previous* event
//! (the seed compared an event with itself, so it never fired).
//!
//! **No alert storms.** An alert for a (user, rule) fires when the rule's
//! condition starts to hold and not again until the condition has *not* held
//! for a full cooldown (`FRAUD_COOLDOWN`, default the rule's own window;
//! HIGH_VALUE_PURCHASE has none: every such purchase is its own alert). A bot
//! that keeps hammering is one incident, one alert. This form was chosen over
//! "at most once per cooldown after the last alert" because its outcome
//! depends only on a bounded stretch of history (window + cooldown), which is
//! what lets a partition move between pods and be rebuilt by replay with
//! exactly the same alerts.
//!
//! Per-user state lives in [`state::UserTable`] (about 125 bytes per user) and
//! is evicted once older than the widest window plus cooldown.

pub mod alert;
pub mod state;

use std::collections::HashMap;
use std::hash::BuildHasher;

use serde::Serialize;
use serde_json::json;

pub use alert::Alert;
use state::{Layout, NEVER, UserTable};

use crate::config::FraudConfig;
use crate::event::{Event, EventType};
use crate::privacy::{IpRenderer, ip_key};
use crate::processor::{Mode, Processor};

/// The seed's RAPID_PURCHASES threshold: purchases within the window.
pub const RAPID_PURCHASES_THRESHOLD: u32 = 3;
pub const RAPID_PURCHASES_WINDOW_MS: i64 = 5 * 60 * 1000;
pub const VELOCITY_WINDOW_MS: i64 = 60 * 1000;
pub const MULTIPLE_IPS_WINDOW_MS: i64 = 60 * 60 * 1000;
pub const PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS: i64 = 60 * 60 * 1000;
/// A purchase needs this many earlier transactional events in the window
/// (the seed: fewer than 3 counting the purchase is suspicious).
pub const PURCHASE_WITHOUT_ACTIVITY_MIN_PRIOR: u32 = 2;
/// Distinct (country, city) names kept per partition for alert evidence.
const LOCATION_NAMES_CAP: usize = 100_000;

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

/// The fraud state of one partition.
pub struct FraudPartition {
    users: UserTable,
    /// Latest event time seen in the partition.
    watermark_ms: i64,
    last_sweep_ms: i64,
    location_names: HashMap<u32, (Box<str>, Box<str>)>,
}

impl FraudPartition {
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.users.heap_bytes()
    }
}

/// What the detector has done since it started (monotonic; live events only).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FraudTotals {
    pub events: u64,
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
            crate::analytics::report::money(self.high_value_amount)
        ));
        s.push_str(&format!("  Users with multiple IPs: {}", self.multiple_ip_users));
        if !self.multiple_ip_sample.is_empty() {
            s.push_str(&format!(" (e.g. {})", self.multiple_ip_sample.join(", ")));
        }
        s.push('\n');
        s
    }
}

/// The fraud processor.
pub struct FraudDetector {
    rules: FraudRules,
    layout: Layout,
    ips: IpRenderer,
    totals: FraudTotals,
    hasher: foldhash::fast::FixedState,
}

impl FraudDetector {
    pub fn new(rules: FraudRules, ips: IpRenderer) -> FraudDetector {
        FraudDetector {
            layout: Layout::new(rules.velocity_threshold, rules.ip_threshold),
            rules,
            ips,
            totals: FraudTotals::default(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_f4a0d),
        }
    }

    pub fn rules(&self) -> &FraudRules {
        &self.rules
    }

    pub fn totals(&self) -> &FraudTotals {
        &self.totals
    }

    fn sweep(&self, state: &mut FraudPartition) {
        let retention = self.rules.retention_ms();
        // Sweep each time event time crosses a multiple of an eighth of the
        // retention (aligned to the epoch, so every owner of the partition
        // sweeps at the same event times): amortised O(1) per event, and at
        // most 1/8 extra memory. Which records a sweep has removed never
        // changes a result: `entry` treats a record older than the horizon
        // as absent anyway.
        let step = (retention / 8).max(1);
        let boundary = state.watermark_ms.div_euclid(step) * step;
        if boundary > state.last_sweep_ms {
            state.users.evict_older_than(boundary.saturating_sub(retention));
            state.last_sweep_ms = boundary;
        }
    }

    fn location_name(names: &HashMap<u32, (Box<str>, Box<str>)>, hash: u32) -> serde_json::Value {
        match names.get(&hash) {
            Some((country, city)) => json!({"country": &**country, "city": &**city}),
            None => json!({"country": null, "city": null}),
        }
    }
}

/// Milliseconds as a `u32` age bound for window comparisons.
fn window_age(ms: i64) -> u32 {
    u32::try_from(ms).unwrap_or(NEVER - 1)
}

impl Processor for FraudDetector {
    type State = FraudPartition;
    type Output = Alert;

    fn new_state(&self) -> FraudPartition {
        FraudPartition {
            users: UserTable::new(self.layout),
            watermark_ms: i64::MIN,
            last_sweep_ms: i64::MIN,
            location_names: HashMap::new(),
        }
    }

    fn rebuild_window_ms(&self) -> i64 {
        self.rules.retention_ms()
    }

    fn process(&mut self, state: &mut FraudPartition, event: &Event<'_>, mode: Mode, out: &mut Vec<Alert>) {
        let live = mode == Mode::Live;
        if live {
            self.totals.events += 1;
        }
        if event.timestamp_ms > state.watermark_ms {
            state.watermark_ms = event.timestamp_ms;
            self.sweep(state);
        }
        let user_key = self.hasher.hash_one(event.user_id.as_bytes());
        let location = match (&event.location.country, &event.location.city) {
            (None, None) => None,
            (country, city) => {
                let country = country.as_deref().unwrap_or("");
                let city = city.as_deref().unwrap_or("");
                let h = (self.hasher.hash_one((country, city)) as u32).max(1);
                if state.location_names.len() < LOCATION_NAMES_CAP {
                    state
                        .location_names
                        .entry(h)
                        .or_insert_with(|| (country.into(), city.into()));
                }
                Some(h)
            }
        };
        let rules = &self.rules;
        let horizon = state.watermark_ms.saturating_sub(rules.retention_ms());
        let mut record = state.users.entry(user_key, event.timestamp_ms, horizon);
        record.advance_to(event.timestamp_ms);

        // Each rule: (condition holds now, message and evidence if it does).
        let mut fired: Vec<(Rule, String, serde_json::Value)> = Vec::new();
        let hold = |rule: Rule, record: &mut state::UserRecord<'_>| -> bool {
            let quiet = record.condition_age(rule.index());
            let cooldown = rules.cooldown_ms[rule.index()];
            record.set_condition_now(rule.index());
            cooldown == 0 || quiet == NEVER || i64::from(quiet) >= cooldown
        };

        if let Some(h) = location {
            let (previous, age) = record.location();
            if previous != 0
                && previous != h
                && age != NEVER
                && i64::from(age) < rules.location_window_ms
                && hold(Rule::RapidLocationChange, &mut record)
            {
                let minutes = f64::from(age) / 60_000.0;
                let gap = if age < 60_000 {
                    format!("{:.0} seconds", f64::from(age) / 1000.0)
                } else {
                    format!("{minutes:.1} minutes")
                };
                let from = Self::location_name(&state.location_names, previous);
                let to = json!({
                    "country": event.location.country.as_deref(),
                    "city": event.location.city.as_deref(),
                });
                fired.push((
                    Rule::RapidLocationChange,
                    format!(
                        "Location changed from {} to {} within {gap} (threshold {} minutes)",
                        place_text(&from),
                        place_text(&to),
                        rules.location_window_ms as f64 / 60_000.0
                    ),
                    json!({"from": from, "to": to, "minutes_since_previous": round2(minutes), "threshold_minutes": rules.location_window_ms as f64 / 60_000.0}),
                ));
            }
            record.set_location(h);
        }

        if let Some(ip) = event.ip_address.as_deref().and_then(ip_key) {
            let distinct = record.touch_ip(ip, window_age(MULTIPLE_IPS_WINDOW_MS));
            if distinct >= rules.ip_threshold && hold(Rule::MultipleIps, &mut record) {
                let ips: Vec<String> = record
                    .ips_within(window_age(MULTIPLE_IPS_WINDOW_MS))
                    .into_iter()
                    .map(|k| self.ips.render_key(k))
                    .collect();
                fired.push((
                    Rule::MultipleIps,
                    format!(
                        "User seen from {distinct} different IPs in the last hour (threshold {}): {}",
                        rules.ip_threshold,
                        ips.join(", ")
                    ),
                    json!({"distinct_ips": distinct, "ips": ips, "threshold": rules.ip_threshold, "window_minutes": 60}),
                ));
            }
        }

        if event.event_type.is_transactional() {
            let recent = record.transactions_within(window_age(VELOCITY_WINDOW_MS)) + 1;
            if recent >= rules.velocity_threshold && hold(Rule::HighVelocity, &mut record) {
                fired.push((
                    Rule::HighVelocity,
                    format!(
                        "User has {recent} transactional events in the last minute (threshold {})",
                        rules.velocity_threshold
                    ),
                    json!({"transactional_events": recent, "window_seconds": 60, "threshold": rules.velocity_threshold}),
                ));
            }
            if event.event_type == EventType::Purchase {
                let amount = event.amount();
                if amount >= rules.high_value_threshold && hold(Rule::HighValuePurchase, &mut record) {
                    fired.push((
                        Rule::HighValuePurchase,
                        format!(
                            "High-value purchase of ${} (threshold ${})",
                            crate::analytics::report::money(amount),
                            crate::analytics::report::money(rules.high_value_threshold)
                        ),
                        json!({"amount": amount, "threshold": rules.high_value_threshold}),
                    ));
                }
                let prior = record.transactions_within(window_age(PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS));
                if prior < PURCHASE_WITHOUT_ACTIVITY_MIN_PRIOR && hold(Rule::PurchaseWithoutActivity, &mut record) {
                    fired.push((
                        Rule::PurchaseWithoutActivity,
                        format!(
                            "Purchase after only {prior} transactional events in the last hour (expected at least {PURCHASE_WITHOUT_ACTIVITY_MIN_PRIOR})"
                        ),
                        json!({"prior_transactional_events": prior, "window_minutes": 60, "amount": amount}),
                    ));
                }
                let purchases = record.purchases_within(window_age(RAPID_PURCHASES_WINDOW_MS)) + 1;
                if purchases >= RAPID_PURCHASES_THRESHOLD && hold(Rule::RapidPurchases, &mut record) {
                    fired.push((
                        Rule::RapidPurchases,
                        format!("{purchases} purchases within 5 minutes (threshold {RAPID_PURCHASES_THRESHOLD})"),
                        json!({"purchases": purchases, "window_minutes": 5, "threshold": RAPID_PURCHASES_THRESHOLD}),
                    ));
                }
                record.push_purchase();
            }
            record.push_transaction();
        }

        if !live {
            return;
        }
        for (rule, message, evidence) in fired {
            self.totals.alerts_by_rule[rule.index()] += 1;
            match rule {
                Rule::HighValuePurchase => {
                    self.totals.high_value_purchases += 1;
                    self.totals.high_value_amount += event.amount();
                }
                Rule::MultipleIps => {
                    self.totals.multiple_ip_users += 1;
                    if self.totals.multiple_ip_sample.len() < 5 {
                        self.totals.multiple_ip_sample.push(event.user_id.to_string());
                    }
                }
                _ => {}
            }
            out.push(Alert::new(
                rule,
                &event.user_id,
                &event.event_id,
                event.timestamp_ms,
                message,
                evidence,
            ));
        }
    }
}

fn place_text(v: &serde_json::Value) -> String {
    match (v["country"].as_str(), v["city"].as_str()) {
        (Some(c), Some(city)) if !city.is_empty() => format!("{c}/{city}"),
        (Some(c), _) => c.to_string(),
        (None, Some(city)) => city.to_string(),
        (None, None) => "unknown".to_string(),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests;
