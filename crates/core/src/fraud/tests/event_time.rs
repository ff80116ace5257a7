//! Event time: windows on event time rather than arrival, late and
//! out-of-order events, forged timestamps, and the collector's receipt time.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

#[test]
fn windows_run_on_event_time_not_arrival() {
    // The same user activity shifted by five years fires at the same events.
    let base: Vec<E> = (0..6).map(|i| e("u", f64::from(i) * 3.0, Cart)).collect();
    let shifted: Vec<E> = (0..6)
        .map(|i| e("u", 157_680_000.0 + f64::from(i) * 3.0, Cart))
        .collect();
    assert_eq!(run(&base), run(&shifted));
    // Two bursts an hour apart in event time are two incidents, however fast
    // they are processed.
    let mut two: Vec<E> = (0..5).map(|i| e("u", f64::from(i), Cart)).collect();
    two.extend((0..5).map(|i| e("u", 3600.0 + f64::from(i), Cart)));
    assert_eq!(only(&run(&two), Rule::HighVelocity), vec![4, 9]);
}

fn lateness(minutes: u64) -> FraudConfig {
    FraudConfig {
        allowed_lateness: Duration::from_secs(minutes * 60),
        ..FraudConfig::default()
    }
}

/// Finding 1: a late purchase was judged at the user's latest time. Here no
/// five-minute window holds three purchases (0 → 350 s is more than five
/// minutes), whatever order they arrive in.
#[test]
fn a_late_purchase_is_judged_at_its_own_time() {
    let late = [
        e("u", 100.0, Buy).amount(5.0),
        e("u", 350.0, Buy).amount(5.0),
        e("u", 0.0, Buy).amount(5.0),
    ];
    assert!(only(&run_with(lateness(15), &late), Rule::RapidPurchases).is_empty());
    // Three within five minutes fire, in any order.
    let close = [
        e("u", 100.0, Buy).amount(5.0),
        e("u", 290.0, Buy).amount(5.0),
        e("u", 0.0, Buy).amount(5.0),
    ];
    assert_eq!(only(&run_with(lateness(15), &close), Rule::RapidPurchases), vec![2]);
}

/// Finding 1: a fifth add_to_cart arriving late counts into the minute it
/// belongs to.
#[test]
fn a_late_add_to_cart_counts_in_its_own_minute() {
    let mut events: Vec<E> = (0..4).map(|i| e("u", f64::from(i) * 10.0, Cart)).collect();
    events.push(e("u", 100.0, View));
    events.push(e("u", 40.0, Cart));
    assert_eq!(only(&run_with(lateness(15), &events), Rule::HighVelocity), vec![5]);
}

/// Finding 1: a late event from an old place used to become the user's
/// "previous location", raising alerts for changes that never happened
/// within the window.
#[test]
fn a_late_event_does_not_become_the_previous_location() {
    let events = [
        e("u", 0.0, View),
        e("u", 2000.0, View).place("GB", "London"),
        e("u", 100.0, View),
        e("u", 2100.0, View).place("GB", "London"),
    ];
    assert!(only(&run_with(lateness(60), &events), Rule::RapidLocationChange).is_empty());
    // A change within the window is found whichever side arrives last.
    let events = [e("u", 500.0, View).place("GB", "London"), e("u", 200.0, View)];
    assert_eq!(
        only(&run_with(lateness(60), &events), Rule::RapidLocationChange),
        vec![1]
    );
}

/// An event behind the watermark is counted and judged by
/// HIGH_VALUE_PURCHASE, and kept out of every window.
#[test]
fn late_events_are_counted_and_judged_on_value_only() {
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    for (i, user) in ["a", "b", "c"].into_iter().enumerate() {
        d.process(&mut state, &e(user, 600.0, View).event(i), Mode::Live, &mut out);
    }
    // Five minutes behind event time, the default lateness is one.
    for i in 0..5 {
        let ev = e("u", 300.0 + f64::from(i), Buy).amount(900.0);
        d.process(&mut state, &ev.event(10 + i as usize), Mode::Live, &mut out);
    }
    let rules: Vec<Rule> = out.iter().map(|a| a.rule).collect();
    assert_eq!(
        rules,
        vec![Rule::HighValuePurchase; 5],
        "no velocity, no rapid purchases"
    );
    assert_eq!(d.totals().late_events, 5);
    assert_eq!(d.totals().events, 8);
    assert_eq!(state.tracked_users(), 3, "late events leave no state");
    assert_eq!(state.pending_purchases(), 0, "nor pending verdicts");
}

/// PURCHASE_WITHOUT_ACTIVITY waits for the watermark: an add_to_cart that
/// arrives after the purchase, within the lateness, still counts.
#[test]
fn purchase_without_activity_waits_for_late_activity() {
    let events = [e("u", 0.0, Cart), e("u", 20.0, Buy).amount(20.0), e("u", 10.0, Cart)];
    assert!(only(&run(&events), Rule::PurchaseWithoutActivity).is_empty());
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    for (i, ev) in [e("u", 0.0, Buy).amount(20.0), e("v", 30.0, View), e("w", 30.0, View)]
        .iter()
        .enumerate()
    {
        d.process(&mut state, &ev.event(i), Mode::Live, &mut out);
    }
    assert!(out.is_empty(), "undecided while the watermark is behind the purchase");
    assert_eq!(state.pending_purchases(), 1);
    for (i, user) in ["u", "v", "w"].into_iter().enumerate() {
        d.process(&mut state, &e(user, 61.0, View).event(3 + i), Mode::Live, &mut out);
    }
    assert_eq!(out.len(), 1, "decided once event time passed purchase + 60 s");
    assert_eq!(out[0].rule, Rule::PurchaseWithoutActivity);
    assert_eq!(out[0].event_id, "evt-0", "the alert is about the purchase");
}

/// Finding 10: five forged far-future events from one user id moved the
/// partition's event time ahead and evicted everybody's state.
#[test]
fn a_forged_future_event_does_not_evict_everybody() {
    let mut events: Vec<E> = Vec::new();
    for user in ["a", "b", "c", "d"] {
        events.extend((0..4).map(|i| e(user, f64::from(i) * 5.0, Cart)));
    }
    for _ in 0..5 {
        events.push(e("forger", 30.0 * 86_400.0, View));
    }
    events.push(e("a", 30.0, Cart));
    let fired = run(&events);
    assert_eq!(
        only(&fired, Rule::HighVelocity),
        vec![21],
        "a's fifth cart still sees the four"
    );
}

/// Hostile clients: events through the collector are judged at their
/// receipt, so a bot cannot dodge the windows by stamping its burst hours
/// apart (6 add_to_cart and 3 purchases in one request, stamped 2.6 minutes
/// apart from six hours back).
#[test]
fn a_burst_stamped_hours_apart_is_judged_when_it_arrived() {
    let received = T0 + 6 * 3_600_000;
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    for i in 0..9 {
        let kind = if i < 6 { Cart } else { Buy };
        let mut event = e("bot", i as f64 * 156.0, kind).amount(20.0).event(i);
        event.received_ms = Some(received);
        d.process(&mut state, &event, Mode::Live, &mut out);
    }
    let rules: BTreeSet<Rule> = out.iter().map(|a| a.rule).collect();
    assert!(rules.contains(&Rule::HighVelocity), "{rules:?}");
    assert!(rules.contains(&Rule::RapidPurchases), "{rules:?}");
    // The same events from a trusted producer (no receipt time) are what
    // they say: hours apart, no burst.
    let spread: Vec<E> = (0..9)
        .map(|i| e("bot", i as f64 * 156.0, if i < 6 { Cart } else { Buy }).amount(20.0))
        .collect();
    let fired = run(&spread);
    assert!(only(&fired, Rule::HighVelocity).is_empty());
    assert!(only(&fired, Rule::RapidPurchases).is_empty());
}

/// Found by the ordering property test: nine of a user's add-to-carts
/// arrive before an older one that completes a burst of five within a
/// minute. A list of the user's eight newest lost the burst's second event;
/// the partition's unsettled events keep all of them, so the burst fires in
/// either order.
#[test]
fn a_burst_completed_by_the_last_arrival_fires_as_in_timestamp_order() {
    let config = FraudConfig {
        allowed_lateness: Duration::from_secs(900),
        ..FraudConfig::default()
    };
    let times = [0.0, 3.4, 7.8, 14.6, 17.2, 92.0, 96.6, 106.6, 168.0, 203.2];
    let in_order: Vec<E> = times.iter().map(|&t| e("u", t, Cart)).collect();
    let mut arrived = in_order[1..].to_vec();
    arrived.push(in_order[0]);
    for events in [&in_order, &arrived] {
        assert_eq!(
            only(&run_with(config.clone(), events), Rule::HighVelocity).len(),
            1,
            "one HIGH_VELOCITY incident"
        );
    }
    // A purchase arriving after eight later transactional events still
    // finds the two add-to-carts before it: no PURCHASE_WITHOUT_ACTIVITY.
    let mut bought: Vec<E> = (1..=8).map(|i| e("v", 600.0 + f64::from(i) * 20.0, Cart)).collect();
    bought.insert(0, e("v", 0.0, Cart));
    bought.insert(1, e("v", 10.0, Cart));
    bought.push(e("v", 300.0, Buy).amount(20.0));
    assert_eq!(
        only(&run_with(config, &bought), Rule::PurchaseWithoutActivity),
        Vec::<usize>::new()
    );
}
