//! HIGH_VELOCITY: the threshold, the sixty-second window, which events count,
//! and the cooldown as a quiet period.

use std::time::Duration;

use super::*;

#[test]
fn high_velocity_below_at_and_above_the_threshold() {
    let four: Vec<E> = (0..4).map(|i| e("u", f64::from(i) * 10.0, Cart)).collect();
    assert!(only(&run(&four), Rule::HighVelocity).is_empty(), "4 < 5");

    let five: Vec<E> = (0..5).map(|i| e("u", f64::from(i) * 10.0, Cart)).collect();
    assert_eq!(only(&run(&five), Rule::HighVelocity), vec![4], "fires at the 5th");

    let eight: Vec<E> = (0..8).map(|i| e("u", f64::from(i) * 5.0, Cart)).collect();
    assert_eq!(
        only(&run(&eight), Rule::HighVelocity),
        vec![4],
        "one incident, one alert"
    );
}

#[test]
fn high_velocity_window_is_sixty_seconds_of_event_time() {
    // The 1st and 5th are exactly 60 s apart: the 1st has left the window.
    let edge: Vec<E> = [0.0, 15.0, 30.0, 45.0, 60.0].iter().map(|&t| e("u", t, Cart)).collect();
    assert!(only(&run(&edge), Rule::HighVelocity).is_empty());
    let inside: Vec<E> = [0.0, 15.0, 30.0, 45.0, 59.999]
        .iter()
        .map(|&t| e("u", t, Cart))
        .collect();
    assert_eq!(only(&run(&inside), Rule::HighVelocity), vec![4]);
}

#[test]
fn only_transactional_events_count_for_velocity() {
    let mut events: Vec<E> = (0..20).map(|i| e("u", f64::from(i), View)).collect();
    events.extend((0..4).map(|i| e("u", 20.0 + f64::from(i), Cart)));
    events.push(e("u", 30.0, Click));
    assert!(only(&run(&events), Rule::HighVelocity).is_empty());
    events.push(e("u", 31.0, Buy).amount(10.0));
    assert_eq!(only(&run(&events), Rule::HighVelocity), vec![25]);
}

#[test]
fn users_are_independent() {
    let events: Vec<E> = (0..8)
        .map(|i| e(if i % 2 == 0 { "a" } else { "b" }, f64::from(i), Cart))
        .collect();
    assert!(
        only(&run(&events), Rule::HighVelocity).is_empty(),
        "8 together, but 4 each"
    );
}

#[test]
fn cooldown_is_a_quiet_period() {
    // A burst, then continuous activity that keeps the condition true: no
    // second alert. Then quiet for more than the cooldown: a new incident.
    let mut events: Vec<E> = (0..5).map(|i| e("u", f64::from(i), Cart)).collect();
    events.extend((0..30).map(|i| e("u", 5.0 + f64::from(i) * 5.0, Cart)));
    let quiet_end = 5.0 + 29.0 * 5.0 + 61.0;
    events.extend((0..5).map(|i| e("u", quiet_end + f64::from(i), Cart)));
    assert_eq!(only(&run(&events), Rule::HighVelocity), vec![4, 39]);

    // A configured cooldown longer than the quiet gap suppresses the second.
    let config = FraudConfig {
        cooldown: Some(Duration::from_secs(600)),
        ..FraudConfig::default()
    };
    assert_eq!(only(&run_with(config, &events), Rule::HighVelocity), vec![4]);
}
