//! The rules themselves: each windowed rule judged at an on-time event's
//! own time (recording the event for those that come after it),
//! HIGH_VALUE_PURCHASE on any purchase, PURCHASE_WITHOUT_ACTIVITY once the
//! watermark passes the purchase, and each alert's message and evidence.

use std::collections::HashMap;
use std::hash::BuildHasher;

use super::evidence::{Evidence, Place};
use super::partition::{
    FraudPartition, LOCATION_NAMES_CAP, PENDING_PURCHASES_CAP, PendingPurchase, location_name_bytes,
};
use super::state::{Times, densest_around};
use super::{
    Alert, FraudDetector, MULTIPLE_IPS_WINDOW_MS, PURCHASE_WITHOUT_ACTIVITY_MIN_PRIOR,
    PURCHASE_WITHOUT_ACTIVITY_WINDOW_MS, RAPID_PURCHASES_THRESHOLD, RAPID_PURCHASES_WINDOW_MS, Rule,
    VELOCITY_WINDOW_MS, rule_time,
};
use crate::event::{Event, EventType};
use crate::privacy::ip_key;
use crate::processor::Mode;

impl FraudDetector {
    pub(super) fn high_value(&self, event: &Event<'_>) -> Option<(Rule, String, Evidence)> {
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
                Evidence::HighValuePurchase {
                    amount,
                    threshold: rules.high_value_threshold,
                },
            )
        })
    }

    /// Every windowed rule, at the event's own time.
    pub(super) fn on_time(
        &self,
        state: &mut FraudPartition,
        user_key: u64,
        event: &Event<'_>,
        fired: &mut Vec<(Rule, String, Evidence)>,
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
                    state.location_bytes += location_name_bytes(country, city);
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
            let here = Place {
                city: event.location.city.as_deref().map(str::to_string),
                country: event.location.country.as_deref().map(str::to_string),
            };
            fired.push((
                Rule::RapidLocationChange,
                format!(
                    "Location changed between {} and {} within {gap_text} (threshold {} minutes)",
                    place_text(&other),
                    place_text(&here),
                    rules.location_window_ms as f64 / 60_000.0
                ),
                Evidence::RapidLocationChange {
                    from: other,
                    minutes_between: round2(gap as f64 / 60_000.0),
                    threshold_minutes: rules.location_window_ms as f64 / 60_000.0,
                    to: here,
                },
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
                    Evidence::MultipleIps {
                        distinct_ips: distinct,
                        ips,
                        threshold: rules.ip_threshold,
                        window_minutes: 60,
                    },
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
                Evidence::HighVelocity {
                    threshold: rules.velocity_threshold,
                    transactional_events: recent,
                    window_seconds: 60,
                },
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
                    Evidence::RapidPurchases {
                        purchases: rapid,
                        threshold: RAPID_PURCHASES_THRESHOLD,
                        window_minutes: 5,
                    },
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
    /// Decides PURCHASE_WITHOUT_ACTIVITY for every purchase the watermark
    /// has passed (and the oldest beyond the cap), on the user's state as of
    /// the purchase.
    pub(super) fn decide_pending(&mut self, state: &mut FraudPartition, mode: Mode, out: &mut Vec<Alert>) {
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
                Evidence::PurchaseWithoutActivity {
                    amount: p.amount,
                    prior_transactional_events: p.prior,
                    window_minutes: 60,
                },
            ));
        }
    }

    fn location_name(names: &HashMap<u32, (Box<str>, Box<str>)>, hash: u32) -> Place {
        match names.get(&hash) {
            Some((country, city)) => Place {
                city: Some(city.to_string()),
                country: Some(country.to_string()),
            },
            None => Place {
                city: None,
                country: None,
            },
        }
    }
}

fn place_text(place: &Place) -> String {
    match (place.country.as_deref(), place.city.as_deref()) {
        (Some(c), Some(city)) if !city.is_empty() => format!("{c}/{city}"),
        (Some(c), _) => c.to_string(),
        (None, Some(city)) => city.to_string(),
        (None, None) => "unknown".to_string(),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
