//! The detector as a whole: the rules' names and severities, warm-up, the
//! same alert ids on replay, and eviction.

use super::*;

#[test]
fn rules_have_the_seeds_names_and_severities() {
    let names: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "HIGH_VELOCITY",
            "MULTIPLE_IPS",
            "RAPID_LOCATION_CHANGE",
            "HIGH_VALUE_PURCHASE",
            "PURCHASE_WITHOUT_ACTIVITY",
            "RAPID_PURCHASES"
        ]
    );
    for r in Rule::ALL {
        assert_eq!(Rule::parse(r.as_str()), Some(r));
    }
    assert_eq!(Rule::HighVelocity.severity(), Severity::High);
    assert_eq!(Rule::MultipleIps.severity(), Severity::Medium);
    assert_eq!(Rule::RapidLocationChange.severity(), Severity::High);
    assert_eq!(Rule::HighValuePurchase.severity(), Severity::Medium);
    assert_eq!(Rule::PurchaseWithoutActivity.severity(), Severity::Medium);
    assert_eq!(Rule::RapidPurchases.severity(), Severity::High);
}

#[test]
fn warm_up_builds_state_but_emits_and_counts_nothing() {
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    for i in 0..4 {
        d.process(&mut state, &e("u", i as f64, Cart).event(i), Mode::Warmup, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(d.totals().events, 0);
    d.process(&mut state, &e("u", 4.0, Cart).event(4), Mode::Live, &mut out);
    assert_eq!(out.len(), 1, "the live 5th event sees the replayed four");
    assert_eq!(out[0].rule, Rule::HighVelocity);
    assert_eq!(d.totals().alerts(), 1);

    // An incident that started during warm-up is not re-raised live.
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    for i in 0..6 {
        d.process(&mut state, &e("u", i as f64, Cart).event(i), Mode::Warmup, &mut out);
    }
    out.clear();
    d.process(&mut state, &e("u", 6.0, Cart).event(6), Mode::Live, &mut out);
    assert!(out.is_empty());
}

#[test]
fn replay_gives_the_same_alert_ids() {
    let events: Vec<E> = (0..40)
        .map(|i| {
            let user = ["a", "b", "c"][i % 3];
            let kind = [Cart, Buy, View, Cart][i % 4];
            e(user, i as f64 * 4.0, kind)
                .amount(300.0 * (i % 3) as f64)
                .ip(["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"][i % 4])
        })
        .collect();
    let ids = |events: &[E]| {
        let mut d = detector(FraudConfig::default());
        let mut state = d.new_state();
        let mut out = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            d.process(&mut state, &ev.event(i), Mode::Live, &mut out);
        }
        out.into_iter().map(|a| a.alert_id).collect::<Vec<_>>()
    };
    let first = ids(&events);
    assert!(first.len() >= 5, "the stream raises alerts: {}", first.len());
    assert_eq!(first, ids(&events));
}

#[test]
fn eviction_forgets_only_what_can_no_longer_matter() {
    let rules = FraudRules::from_config(&FraudConfig::default());
    assert_eq!(
        rules.retention_ms(),
        2 * 3_600_000,
        "an hour of window plus an hour of cooldown"
    );
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    for i in 0..1000 {
        let user: &'static str = Box::leak(format!("user-{i}").into_boxed_str());
        d.process(
            &mut state,
            &e(user, f64::from(i), View).event(i as usize),
            Mode::Live,
            &mut out,
        );
    }
    assert_eq!(state.tracked_users(), 1000);
    // Event time moves once three users have reached it.
    for (i, user) in ["later-1", "later-2", "later-3"].into_iter().enumerate() {
        d.process(
            &mut state,
            &e(user, 3.0 * 3600.0, View).event(1000 + i),
            Mode::Live,
            &mut out,
        );
    }
    assert_eq!(state.tracked_users(), 3, "everyone older than two hours is gone");
}

/// Finding: eviction depended on when a detector started. Two detectors
/// see the same events from T0 on; one also saw an unrelated user 400 s
/// earlier, which used to shift its sweep schedule. After the watermark has
/// moved past u's retention, a late purchase of u must be judged the same
/// by both: a record older than the retention relative to the watermark is
/// absent for every reader, swept or not.
#[test]
fn eviction_does_not_depend_on_when_a_detector_started() {
    let retention_s = (FraudRules::from_config(&FraudConfig::default()).retention_ms() / 1000) as f64;
    let mut common = vec![e("u", 0.0, Cart), e("u", 1.0, Cart)];
    let mut t = 100.0;
    while t <= retention_s + 600.0 {
        common.push(e("filler", t, View).ip("10.9.9.9"));
        t += 100.0;
    }
    common.push(e("u", 2.0, Buy).amount(10.0));
    let late = common.len() - 1;
    let mut shifted = vec![e("early", -400.0, View)];
    shifted.extend(common.iter().copied());
    let a: Vec<Rule> = run(&common)
        .into_iter()
        .filter(|(i, _)| *i == late)
        .map(|(_, r)| r)
        .collect();
    let b: Vec<Rule> = run(&shifted)
        .into_iter()
        .filter(|(i, _)| *i == late + 1)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(a, b, "the late purchase is judged alike");
}
