//! Rule-by-rule specifications: below, at and above each threshold, on event
//! time, with the quiet-period cooldown. This file holds the helpers that
//! build events and run the detector; the specifications are grouped by rule
//! family in the files beside it.

mod detector;
mod event_time;
mod ips;
mod location;
mod purchases;
mod snapshot;
mod velocity;

use std::borrow::Cow;

use super::*;
use crate::event::{Device, Event, EventType, Location, Properties};
use crate::fraud::FraudConfig;
use crate::privacy::{IpPrivacy, IpRenderer};
use crate::processor::{Mode, Processor};
use EventType::{AddToCart as Cart, Click, PageView as View, Purchase as Buy};

const T0: i64 = 1_705_312_800_000; // 2024-01-15T10:00:00Z

#[derive(Clone, Copy, Debug)]
struct E {
    user: &'static str,
    at_s: f64,
    kind: EventType,
    ip: &'static str,
    place: (&'static str, &'static str),
    amount: Option<f64>,
}

fn e(user: &'static str, at_s: f64, kind: EventType) -> E {
    E {
        user,
        at_s,
        kind,
        ip: "10.0.0.1",
        place: ("US", "New York"),
        amount: None,
    }
}

impl E {
    fn ip(mut self, ip: &'static str) -> E {
        self.ip = ip;
        self
    }
    fn place(mut self, country: &'static str, city: &'static str) -> E {
        self.place = (country, city);
        self
    }
    fn amount(mut self, v: f64) -> E {
        self.amount = Some(v);
        self
    }
    fn event(&self, n: usize) -> Event<'static> {
        Event {
            event_id: Cow::Owned(format!("evt-{n}")),
            timestamp_ms: T0 + (self.at_s * 1000.0) as i64,
            user_id: Cow::Borrowed(self.user),
            session_id: Some(Cow::Borrowed("s-1")),
            event_type: self.kind,
            page_url: None,
            referrer: None,
            user_agent: None,
            ip_address: (!self.ip.is_empty()).then_some(Cow::Borrowed(self.ip)),
            properties: Properties {
                cart_value: self.amount,
                price: self.amount.map(|a| a / 2.0),
                ..Properties::default()
            },
            device: Device::default(),
            location: if self.place.0.is_empty() {
                Location::default()
            } else {
                Location {
                    country: Some(Cow::Borrowed(self.place.0)),
                    city: Some(Cow::Borrowed(self.place.1)),
                    timezone: None,
                }
            },
            record: None,
            received_ms: None,
        }
    }
}

fn detector(config: FraudConfig) -> FraudDetector {
    FraudDetector::new(FraudRules::from_config(&config), IpRenderer::new(IpPrivacy::None))
}

/// Runs the events (live), then moves the watermark a day past them so that
/// every pending decision is made, and returns (index of the event the alert
/// is about, rule) of every alert, in the order raised.
fn run_with(config: FraudConfig, events: &[E]) -> Vec<(usize, Rule)> {
    let mut d = detector(config);
    let mut state = d.new_state();
    let mut out = Vec::new();
    for (i, ev) in flushed(events).iter().enumerate() {
        d.process(&mut state, &ev.event(i), Mode::Live, &mut out);
    }
    out.into_iter()
        .map(|a| (a.event_id["evt-".len()..].parse().unwrap_or(usize::MAX), a.rule))
        .collect()
}

/// `events`, then three users a day after them: the watermark passes
/// every event and every pending decision is made.
fn flushed(events: &[E]) -> Vec<E> {
    let mut all: Vec<E> = events.to_vec();
    let end = events.iter().map(|e| e.at_s).fold(0.0, f64::max) + 86_400.0;
    all.extend(["flush-1", "flush-2", "flush-3"].map(|u| e(u, end, View).place("", "").ip("")));
    all
}

fn run(events: &[E]) -> Vec<(usize, Rule)> {
    run_with(FraudConfig::default(), events)
}

fn only(fired: &[(usize, Rule)], rule: Rule) -> Vec<usize> {
    fired.iter().filter(|(_, r)| *r == rule).map(|(i, _)| *i).collect()
}
