//! MULTIPLE_IPS: distinct addresses within the hour, the configurable
//! threshold, one alert per incident, and the addresses in its evidence.

use std::time::Duration;

use super::*;

#[test]
fn multiple_ips_counts_distinct_addresses_in_the_last_hour() {
    let two = [
        e("u", 0.0, View).ip("1.1.1.1"),
        e("u", 10.0, View).ip("2.2.2.2"),
        e("u", 20.0, View).ip("1.1.1.1"),
    ];
    assert!(only(&run(&two), Rule::MultipleIps).is_empty());
    let three = [
        e("u", 0.0, View).ip("1.1.1.1"),
        e("u", 10.0, View).ip("2.2.2.2"),
        e("u", 20.0, Click).ip("3.3.3.3"),
    ];
    assert_eq!(only(&run(&three), Rule::MultipleIps), vec![2]);
    let spread = [
        e("u", 0.0, View).ip("1.1.1.1"),
        e("u", 1800.0, View).ip("2.2.2.2"),
        e("u", 3600.0, View).ip("3.3.3.3"),
    ];
    assert!(
        only(&run(&spread), Rule::MultipleIps).is_empty(),
        "the first left the hour"
    );
    let unparseable = [
        e("u", 0.0, View).ip("1.1.1.1"),
        e("u", 1.0, View).ip("unknown"),
        e("u", 2.0, View).ip(""),
    ];
    assert!(only(&run(&unparseable), Rule::MultipleIps).is_empty());
}

#[test]
fn multiple_ips_above_the_threshold_is_one_incident_until_a_quiet_hour() {
    let events = [
        e("u", 0.0, View).ip("1.1.1.1"),
        e("u", 10.0, View).ip("2.2.2.2"),
        e("u", 20.0, View).ip("3.3.3.3"),
        // A fourth address: above the threshold, the same incident.
        e("u", 30.0, Cart).ip("4.4.4.4"),
        // An hour later the first four have left the window: 2 < 3.
        e("u", 3700.0, View).ip("5.5.5.5"),
        e("u", 3710.0, View).ip("6.6.6.6"),
        // 3 again, and the condition last held 3,690 s ago ≥ the 1 h cooldown.
        e("u", 3720.0, View).ip("7.7.7.7"),
    ];
    assert_eq!(only(&run(&events), Rule::MultipleIps), vec![2, 6]);
    let config = FraudConfig {
        cooldown: Some(Duration::from_secs(7200)),
        ..FraudConfig::default()
    };
    assert_eq!(
        only(&run_with(config, &events), Rule::MultipleIps),
        vec![2],
        "a 2 h cooldown has not passed"
    );
}

#[test]
fn multiple_ips_threshold_is_configurable_and_evidence_lists_addresses() {
    let config = FraudConfig {
        multiple_ip_threshold: 2,
        ..FraudConfig::default()
    };
    let events = [e("u", 0.0, View).ip("1.1.1.1"), e("u", 10.0, View).ip("2.2.2.2")];
    assert_eq!(only(&run_with(config.clone(), &events), Rule::MultipleIps), vec![1]);
    let mut d = detector(config);
    let mut state = d.new_state();
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        d.process(&mut state, &ev.event(i), Mode::Live, &mut out);
    }
    let Evidence::MultipleIps { ips, .. } = &out[0].evidence else {
        panic!("{:?}", out[0].evidence);
    };
    assert_eq!(ips, &["2.2.2.2", "1.1.1.1"]);
}
