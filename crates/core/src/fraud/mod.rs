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

pub mod alert;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use serde::Serialize;
use serde_json::json;

pub use alert::Alert;
use state::{Layout, PURCHASE_SLOTS, PrehashedMap, Times, UserTable, densest_around};

use crate::event::{Event, EventType};
use crate::eventtime::EventClock;
use crate::privacy::{IpRenderer, ip_key};
use crate::processor::{Mode, Processor};

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
/// Distinct (country, city) names kept per partition for alert evidence
/// (each name cut to [`crate::event::MAX_LABEL_BYTES`]); places beyond it
/// are compared by hash as ever and shown as unknown in evidence.
const LOCATION_NAMES_CAP: usize = 10_000;
/// Purchases awaiting the watermark per partition. Beyond this (a partition
/// taking more than 100,000 purchases per ALLOWED_LATENESS) the oldest is
/// decided early, with what has arrived.
const PENDING_PURCHASES_CAP: usize = 100_000;
/// On-time transactional events awaiting the watermark per partition.
/// Beyond this the oldest is settled early (into its user's two newest).
const UNSETTLED_CAP: usize = 200_000;

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

/// The fraud state of one partition.
pub struct FraudPartition {
    users: UserTable,
    clock: EventClock,
    last_sweep_ms: i64,
    location_names: HashMap<u32, (Box<str>, Box<str>)>,
    /// Purchases whose PURCHASE_WITHOUT_ACTIVITY verdict waits for the
    /// watermark, by (event time, hash of the event id).
    pending: BTreeMap<(i64, u64), PendingPurchase>,
    /// Pending purchases per user key.
    pending_users: PrehashedMap<u32>,
    /// Approximate heap bytes of `pending` and `pending_users`.
    pending_bytes: usize,
    /// Approximate heap bytes of `location_names`.
    location_bytes: usize,
    /// On-time transactional events the watermark has not passed yet, by
    /// (user key, event time) and by (event time, user key), with their
    /// number: PURCHASE_WITHOUT_ACTIVITY counts a purchase's earlier
    /// activity here and in the user's settled times, exactly, whatever
    /// order the events arrived in.
    unsettled: BTreeMap<(u64, i64), (u32, u32)>,
    unsettled_by_time: BTreeMap<(i64, u64), (u32, u32)>,
}

/// Approximate heap bytes of one unsettled event (both indexes).
const UNSETTLED_ENTRY_BYTES: usize = 2 * (std::mem::size_of::<((u64, i64), (u32, u32))>() + 8);

/// Heap bytes of a location name entry besides its text.
const LOCATION_NAME_OVERHEAD: usize = std::mem::size_of::<(u32, (Box<str>, Box<str>))>() + 1;

impl PendingPurchase {
    /// Approximate heap bytes: the B-tree entry and the two strings, plus the
    /// per-user count.
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<((i64, u64), PendingPurchase)>() + self.user_id.len() + self.event_id.len() + 16
    }
}

struct PendingPurchase {
    user_key: u64,
    user_id: Box<str>,
    event_id: Box<str>,
    record: Option<(i32, i64)>,
    amount: f64,
    /// Other transactional events of the user in the hour up to it, so far.
    prior: u32,
}

impl FraudPartition {
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.users.heap_bytes()
            + self.pending_bytes
            + self.location_bytes
            + self.unsettled_by_time.len() * UNSETTLED_ENTRY_BYTES
    }

    /// The partition's event time (`i64::MIN` before any event).
    pub fn event_time_ms(&self) -> i64 {
        self.clock.time()
    }

    /// Purchases waiting for the watermark.
    pub fn pending_purchases(&self) -> usize {
        self.pending.len()
    }
}

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
        let watermark = state.clock.watermark(self.rules.lateness_ms);
        if watermark == i64::MIN {
            return;
        }
        let boundary = watermark.div_euclid(step) * step;
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

impl Processor for FraudDetector {
    type State = FraudPartition;
    type Output = Alert;

    fn new_state(&self) -> FraudPartition {
        FraudPartition {
            users: UserTable::new(self.layout),
            clock: EventClock::default(),
            last_sweep_ms: i64::MIN,
            location_names: HashMap::new(),
            pending: BTreeMap::new(),
            pending_users: PrehashedMap::default(),
            pending_bytes: 0,
            location_bytes: 0,
            unsettled: BTreeMap::new(),
            unsettled_by_time: BTreeMap::new(),
        }
    }

    fn event_time_ms(&self, state: &FraudPartition) -> i64 {
        state.clock.time()
    }

    fn rebuild_window_ms(&self) -> i64 {
        // An on-time event can be `lateness` behind the committed event time
        // and reads `retention` of history before it.
        self.rules.retention_ms() + self.rules.lateness_ms
    }

    fn process(&mut self, state: &mut FraudPartition, event: &Event<'_>, mode: Mode, out: &mut Vec<Alert>) {
        if mode.counts() {
            self.totals.events += 1;
        }
        let t = rule_time(event);
        let user_key = self.hasher.hash_one(event.user_id.as_bytes());
        let watermark = state.clock.watermark(self.rules.lateness_ms);
        let mut fired: Vec<(Rule, String, serde_json::Value)> = Vec::new();
        if t < watermark {
            if mode.counts() {
                self.totals.late_events += 1;
            }
            // Late: judged on its own by HIGH_VALUE_PURCHASE, kept out of
            // every window.
            if event.event_type == EventType::Purchase {
                fired.extend(self.high_value(event));
            }
        } else {
            state.clock.observe(user_key, t);
            // Purchases the watermark has now passed are decided on the
            // state as it was: this event is after them in event time.
            self.decide_pending(state, mode, out);
            self.settle(state);
            self.sweep(state);
            self.on_time(state, user_key, event, &mut fired);
        }
        self.emit(event, fired, mode, out);
    }
}

impl FraudDetector {
    fn high_value(&self, event: &Event<'_>) -> Option<(Rule, String, serde_json::Value)> {
        let rules = &self.rules;
        let amount = event.amount();
        (amount >= rules.high_value_threshold).then(|| {
            (
                Rule::HighValuePurchase,
                format!(
                    "High-value purchase of ${} (threshold ${})",
                    crate::money::money(amount),
                    crate::money::money(rules.high_value_threshold)
                ),
                json!({"amount": amount, "threshold": rules.high_value_threshold}),
            )
        })
    }

    /// Every windowed rule, at the event's own time.
    fn on_time(
        &self,
        state: &mut FraudPartition,
        user_key: u64,
        event: &Event<'_>,
        fired: &mut Vec<(Rule, String, serde_json::Value)>,
    ) {
        let t = rule_time(event);
        let location = match (&event.location.country, &event.location.city) {
            (None, None) => None,
            (country, city) => {
                use crate::event::{MAX_LABEL_BYTES, truncate};
                let country = country.as_deref().unwrap_or("");
                let city = city.as_deref().unwrap_or("");
                let h = (self.hasher.hash_one((country, city)) as u32).max(1);
                if state.location_names.len() < LOCATION_NAMES_CAP && !state.location_names.contains_key(&h) {
                    let (country, city) = (truncate(country, MAX_LABEL_BYTES), truncate(city, MAX_LABEL_BYTES));
                    state.location_bytes += LOCATION_NAME_OVERHEAD + country.len() + city.len();
                    state.location_names.insert(h, (country.into(), city.into()));
                }
                Some(h)
            }
        };
        let rules = &self.rules;
        let horizon = state
            .clock
            .watermark(rules.lateness_ms)
            .saturating_sub(rules.retention_ms());
        let mut record = state.users.entry(user_key, t, horizon);
        record.advance_to(t);
        let cooldown = |rule: Rule| rules.cooldown_ms[rule.index()];

        if let Some(h) = location
            && let Some((other, gap)) = record.insert_location(h, t, rules.location_window_ms)
            && record.hold(
                Rule::RapidLocationChange.index(),
                t,
                cooldown(Rule::RapidLocationChange),
            )
        {
            let gap_text = if gap < 60_000 {
                format!("{:.0} seconds", gap as f64 / 1000.0)
            } else {
                format!("{:.1} minutes", gap as f64 / 60_000.0)
            };
            let other = Self::location_name(&state.location_names, other);
            let here = json!({
                "country": event.location.country.as_deref(),
                "city": event.location.city.as_deref(),
            });
            fired.push((
                Rule::RapidLocationChange,
                format!(
                    "Location changed between {} and {} within {gap_text} (threshold {} minutes)",
                    place_text(&other),
                    place_text(&here),
                    rules.location_window_ms as f64 / 60_000.0
                ),
                json!({"from": other, "to": here, "minutes_between": round2(gap as f64 / 60_000.0), "threshold_minutes": rules.location_window_ms as f64 / 60_000.0}),
            ));
        }

        if let Some(ip) = event.ip_address.as_deref().and_then(ip_key) {
            let together = record.touch_ip(ip, t, MULTIPLE_IPS_WINDOW_MS);
            let distinct = together.len() as u32;
            if distinct >= rules.ip_threshold && record.hold(Rule::MultipleIps.index(), t, cooldown(Rule::MultipleIps))
            {
                let ips: Vec<String> = together.into_iter().map(|k| self.ips.render_key(k)).collect();
                fired.push((
                    Rule::MultipleIps,
                    format!(
                        "User seen from {distinct} different IPs within an hour (threshold {}): {}",
                        rules.ip_threshold,
                        ips.join(", ")
                    ),
                    json!({"distinct_ips": distinct, "ips": ips, "threshold": rules.ip_threshold, "window_minutes": 60}),
                ));
            }
        }

        if !event.event_type.is_transactional() {
            return;
        }
        let purchase = event.event_type == EventType::Purchase;
        // The user's transactional events around this one, exactly: every
        // unsettled one, and the newest settled ones (all a window around
        // an on-time event can reach of what the watermark has passed).
        // Counted before this event joins them.
        let around = |span: i64, purchases: bool| -> Vec<i64> {
            let list = if purchases {
                Times::SettledPurchases
            } else {
                Times::Settled
            };
            let mut times = record.times_of(list);
            for (&(_, at), &(all, bought)) in state.unsettled.range((user_key, t - span)..=(user_key, t + span)) {
                let n = if purchases { bought } else { all };
                times.extend(std::iter::repeat_n(at, n as usize));
            }
            times
        };
        let prior = if purchase {
            let from = t - PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS;
            around(PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS, false)
                .into_iter()
                .filter(|&x| x >= from && x <= t)
                .count() as u32
        } else {
            0
        };
        let recent = densest_around(&around(VELOCITY_WINDOW_MS, false), t, VELOCITY_WINDOW_MS);
        let rapid = if purchase {
            densest_around(&around(RAPID_PURCHASES_WINDOW_MS, true), t, RAPID_PURCHASES_WINDOW_MS)
        } else {
            0
        };
        if recent >= rules.velocity_threshold
            && record.hold(Rule::HighVelocity.index(), t, cooldown(Rule::HighVelocity))
        {
            fired.push((
                Rule::HighVelocity,
                format!(
                    "User has {recent} transactional events within a minute (threshold {})",
                    rules.velocity_threshold
                ),
                json!({"transactional_events": recent, "window_seconds": 60, "threshold": rules.velocity_threshold}),
            ));
        }
        if purchase {
            if let Some(alert) = self.high_value(event)
                && record.hold(Rule::HighValuePurchase.index(), t, cooldown(Rule::HighValuePurchase))
            {
                fired.push(alert);
            }
            if rapid >= RAPID_PURCHASES_THRESHOLD
                && record.hold(Rule::RapidPurchases.index(), t, cooldown(Rule::RapidPurchases))
            {
                fired.push((
                    Rule::RapidPurchases,
                    format!("{rapid} purchases within 5 minutes (threshold {RAPID_PURCHASES_THRESHOLD})"),
                    json!({"purchases": rapid, "window_minutes": 5, "threshold": RAPID_PURCHASES_THRESHOLD}),
                ));
            }
        }
        // This transactional event is "earlier activity" for the user's
        // pending purchases in the hour after it.
        if state.pending_users.contains_key(&user_key) {
            for (_, p) in state
                .pending
                .range_mut((t, 0)..=(t + PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS, u64::MAX))
            {
                if p.user_key == user_key {
                    p.prior += 1;
                }
            }
        }
        let bought = u32::from(purchase);
        let n = state.unsettled.entry((user_key, t)).or_insert((0, 0));
        *n = (n.0 + 1, n.1 + bought);
        let n = state.unsettled_by_time.entry((t, user_key)).or_insert((0, 0));
        *n = (n.0 + 1, n.1 + bought);
        if purchase {
            let key = (t, self.hasher.hash_one((event.event_id.as_bytes(), event.record)));
            let entry = PendingPurchase {
                user_key,
                user_id: event.user_id.as_ref().into(),
                event_id: event.event_id.as_ref().into(),
                record: event.record,
                amount: event.amount(),
                prior,
            };
            let bytes = entry.heap_bytes();
            match state.pending.insert(key, entry) {
                Some(replaced) => {
                    state.pending_bytes = state.pending_bytes.saturating_sub(replaced.heap_bytes()) + bytes;
                }
                None => {
                    *state.pending_users.entry(user_key).or_insert(0) += 1;
                    state.pending_bytes += bytes;
                }
            }
        }
    }

    /// Moves the transactional events the watermark has passed (and the
    /// oldest beyond the cap) from the partition's unsettled events into
    /// their users' settled times.
    fn settle(&self, state: &mut FraudPartition) {
        let watermark = state.clock.watermark(self.rules.lateness_ms);
        let horizon = watermark.saturating_sub(self.rules.retention_ms());
        loop {
            let over_cap = state.unsettled_by_time.len() > UNSETTLED_CAP;
            let Some(entry) = state.unsettled_by_time.first_entry() else {
                break;
            };
            let (t, user_key) = *entry.key();
            if t >= watermark && !over_cap {
                break;
            }
            let (all, bought) = entry.remove();
            state.unsettled.remove(&(user_key, t));
            let mut record = state.users.entry(user_key, t, horizon);
            for _ in 0..all.min(self.layout.settled_slots as u32) {
                record.insert(Times::Settled, t);
            }
            for _ in 0..bought.min(PURCHASE_SLOTS as u32) {
                record.insert(Times::SettledPurchases, t);
            }
        }
    }

    /// Decides PURCHASE_WITHOUT_ACTIVITY for every purchase the watermark
    /// has passed (and the oldest beyond the cap), on the user's state as of
    /// the purchase.
    fn decide_pending(&mut self, state: &mut FraudPartition, mode: Mode, out: &mut Vec<Alert>) {
        let watermark = state.clock.watermark(self.rules.lateness_ms);
        loop {
            let over_cap = state.pending.len() > PENDING_PURCHASES_CAP;
            let Some(entry) = state.pending.first_entry() else {
                break;
            };
            let (t, _) = *entry.key();
            if t >= watermark && !over_cap {
                break;
            }
            let p = entry.remove();
            state.pending_bytes = state.pending_bytes.saturating_sub(p.heap_bytes());
            if let Some(n) = state.pending_users.get_mut(&p.user_key) {
                *n -= 1;
                if *n == 0 {
                    state.pending_users.remove(&p.user_key);
                }
            }
            if p.prior >= PURCHASE_WITHOUT_ACTIVITY_MIN_PRIOR {
                continue;
            }
            let rule = Rule::PurchaseWithoutActivity;
            let horizon = t.saturating_sub(self.rules.retention_ms());
            let mut record = state.users.entry(p.user_key, t, horizon);
            if !record.hold(rule.index(), t, self.rules.cooldown_ms[rule.index()]) || !mode.emits() {
                continue;
            }
            if mode.counts() {
                self.totals.alerts_by_rule[rule.index()] += 1;
            }
            out.push(Alert::new(
                rule,
                &p.user_id,
                &p.event_id,
                p.record,
                t,
                format!(
                    "Purchase after only {} other transactional events in the hour up to it (expected at least {PURCHASE_WITHOUT_ACTIVITY_MIN_PRIOR})",
                    p.prior
                ),
                json!({"prior_transactional_events": p.prior, "window_minutes": 60, "amount": p.amount}),
            ));
        }
    }

    fn emit(
        &mut self,
        event: &Event<'_>,
        fired: Vec<(Rule, String, serde_json::Value)>,
        mode: Mode,
        out: &mut Vec<Alert>,
    ) {
        if !mode.emits() {
            return;
        }
        for (rule, message, evidence) in fired {
            if mode.counts() {
                self.count_alert(rule, event);
            }
            out.push(Alert::new(
                rule,
                &event.user_id,
                &event.event_id,
                event.record,
                event.timestamp_ms,
                message,
                evidence,
            ));
        }
    }

    fn count_alert(&mut self, rule: Rule, event: &Event<'_>) {
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
    }
}

/// The time the rules judge an event at: when the collector received it if
/// it came through the collector (a client with a public write key must not
/// be able to spread a burst over hours by stamping it so), else its own
/// timestamp (producers writing to Kafka are trusted).
pub fn rule_time(event: &Event<'_>) -> i64 {
    event.received_ms.unwrap_or(event.timestamp_ms)
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
