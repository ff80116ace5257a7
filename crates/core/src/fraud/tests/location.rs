//! RAPID_LOCATION_CHANGE: the comparison with the neighbouring event, its
//! cooldown, and the places named in its evidence.

use super::*;

#[test]
fn rapid_location_change_cooldown_is_a_quiet_period_too() {
    let events = [
        e("u", 0.0, View),
        e("u", 60.0, View).place("RU", "Moscow"),
        // Another change a minute later: the same incident.
        e("u", 120.0, View).place("DE", "Berlin"),
        // Half an hour later: a change, but not a rapid one.
        e("u", 2000.0, View).place("FR", "Paris"),
        // Rapid again, 32 minutes after the condition last held (≥ 10).
        e("u", 2060.0, View).place("GB", "London"),
    ];
    assert_eq!(only(&run(&events), Rule::RapidLocationChange), vec![1, 4]);
}

#[test]
fn rapid_location_change_compares_with_the_previous_event() {
    let near = [e("u", 0.0, View), e("u", 540.0, View).place("RU", "Moscow")];
    assert_eq!(only(&run(&near), Rule::RapidLocationChange), vec![1]);
    let city = [e("u", 0.0, View), e("u", 60.0, View).place("US", "Chicago")];
    assert_eq!(
        only(&run(&city), Rule::RapidLocationChange),
        vec![1],
        "a city change counts"
    );
    let late = [e("u", 0.0, View), e("u", 600.0, View).place("RU", "Moscow")];
    assert!(
        only(&run(&late), Rule::RapidLocationChange).is_empty(),
        "10 minutes is not less than 10"
    );
    let same: Vec<E> = (0..10).map(|i| e("u", f64::from(i), View)).collect();
    assert!(only(&run(&same), Rule::RapidLocationChange).is_empty());
    let gap = [
        e("u", 0.0, View),
        e("u", 10.0, View).place("", ""),
        e("u", 20.0, View).place("DE", "Berlin"),
    ];
    assert_eq!(
        only(&run(&gap), Rule::RapidLocationChange),
        vec![2],
        "events without a location are skipped"
    );
}

#[test]
fn rapid_location_change_evidence_names_both_places() {
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    for (i, ev) in [e("u", 0.0, View), e("u", 240.0, View).place("RU", "Moscow")]
        .iter()
        .enumerate()
    {
        d.process(&mut state, &ev.event(i), Mode::Live, &mut out);
    }
    assert_eq!(out.len(), 1);
    let Evidence::RapidLocationChange {
        from,
        minutes_between,
        to,
        ..
    } = &out[0].evidence
    else {
        panic!("{:?}", out[0].evidence);
    };
    assert_eq!(from.city.as_deref(), Some("New York"));
    assert_eq!(to.country.as_deref(), Some("RU"));
    assert_eq!(*minutes_between, 4.0);
    assert!(
        out[0].message.contains("between US/New York and RU/Moscow"),
        "{}",
        out[0].message
    );
}
