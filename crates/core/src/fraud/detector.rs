//! The detector's plumbing: the processor that owns the rules and the
//! totals, feeds each event to the rules at the right moment (on time or
//! late), settles what the watermark has passed, evicts old users and emits
//! the alerts.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use super::evidence::Evidence;
use super::partition::{FraudPartition, LOCATION_NAMES_CAP, PENDING_PURCHASES_CAP, UNSETTLED_CAP};
use super::state::{Layout, PURCHASE_SLOTS, PrehashedMap, Times, UserTable};
use super::{Alert, FraudRules, FraudTotals, Rule, rule_time};
use crate::event::{Event, EventType};
use crate::eventtime::EventClock;
use crate::privacy::IpRenderer;
use crate::processor::{Mode, Processor};

/// The fraud processor.
pub struct FraudDetector {
    pub(super) rules: FraudRules,
    pub(super) layout: Layout,
    pub(super) ips: IpRenderer,
    pub(super) totals: FraudTotals,
    pub(super) hasher: foldhash::fast::FixedState,
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

    /// The rules (windows, thresholds, cooldowns, lateness: what a record
    /// holds and until when), the partition's caps, and IP privacy. The
    /// state keeps addresses whole whatever IP_PRIVACY says, so a change of
    /// it discards snapshots that would have been right: one replay, for
    /// not having to prove it never matters.
    fn state_fingerprint(&self) -> u64 {
        let caps = [LOCATION_NAMES_CAP, PENDING_PURCHASES_CAP, UNSETTLED_CAP];
        crate::snapshot::state_fingerprint("fraud", &(&self.rules, caps, &self.ips), &self.hasher)
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
        let mut fired: Vec<(Rule, String, Evidence)> = Vec::new();
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
    fn emit(&mut self, event: &Event<'_>, fired: Vec<(Rule, String, Evidence)>, mode: Mode, out: &mut Vec<Alert>) {
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
