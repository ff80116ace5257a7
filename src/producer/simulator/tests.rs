//! The simulator's unit tests: determinism, the event mix against the
//! seed's, sessions, fraud actors and concurrency.

use super::*;
use crate::event::{DecodeLimits, decode};
use std::collections::HashMap;

fn simulator(seed: u64, fraud_rate: f64) -> Simulator {
    Simulator::new(&SimulatorConfig {
        seed,
        users: 9_000,
        fraud_rate,
        events_per_second: 100.0,
    })
}

const START: i64 = 1_705_312_800_000; // 2024-01-15T10:00:00Z

#[test]
fn same_seed_same_bytes() {
    let mut a = simulator(7, 0.1);
    let mut b = simulator(7, 0.1);
    for i in 0..5_000 {
        let t = START + i * 10;
        assert_eq!(a.next_event(t).to_json(), b.next_event(t).to_json());
    }
    let mut c = simulator(8, 0.1);
    assert_ne!(a.next_event(START).to_json(), c.next_event(START).to_json());
}

#[test]
fn events_are_valid_seed_format() {
    let mut sim = simulator(1, 0.2);
    for i in 0..20_000 {
        let t = START + i * 10;
        let json = sim.next_event(t).to_json();
        let e = decode(&json, t, &DecodeLimits::default()).expect("simulated events are valid");
        assert!(e.ip_address.is_some() && e.location.country.is_some());
        if e.event_type == EventType::Purchase {
            assert!(
                e.properties.cart_value.unwrap() > 0.0,
                "{}",
                String::from_utf8_lossy(&json)
            );
        }
    }
}

#[test]
fn mix_is_close_to_the_seed() {
    let mut sim = simulator(3, 0.0);
    let mut counts = [0u64; 5];
    let n = 200_000;
    for i in 0..n {
        counts[sim.next_event(START + i * 10).event_type.index()] += 1;
    }
    let share: Vec<f64> = counts.iter().map(|c| *c as f64 * 100.0 / n as f64).collect();
    let target = [58.5, 25.0, 10.0, 4.5, 2.0];
    for (i, (got, want)) in share.iter().zip(target).enumerate() {
        assert!(
            (got - want).abs() < 1.0,
            "{} is {got:.2}% (want ~{want}%): {share:?}",
            EventType::ALL[i]
        );
    }
}

#[test]
fn carts_accumulate_and_buyers_add_at_least_two_items_first() {
    let mut sim = simulator(5, 0.0);
    let mut carts: HashMap<String, (u32, f64)> = HashMap::new();
    for i in 0..50_000 {
        let e = sim.next_event(START + i * 10);
        let session = e.session_id.clone().unwrap().into_owned();
        match e.event_type {
            EventType::AddToCart => {
                let entry = carts.entry(session).or_default();
                entry.0 += 1;
                let expected = ((entry.1 + e.properties.price.unwrap()) * 100.0).round() / 100.0;
                assert_eq!(e.properties.cart_value, Some(expected));
                entry.1 = expected;
            }
            EventType::Purchase => {
                let (items, value) = carts.remove(&session).expect("a purchase follows cart additions");
                assert!(items >= 2);
                assert_eq!(e.properties.cart_value, Some(value));
            }
            _ => {}
        }
    }
}

#[test]
fn a_session_keeps_its_device_ip_and_location() {
    let mut sim = simulator(9, 0.0);
    let mut seen: HashMap<String, (String, String, String)> = HashMap::new();
    for i in 0..30_000 {
        let e = sim.next_event(START + i * 10);
        let key = e.session_id.as_deref().unwrap().to_string();
        let value = (
            e.ip_address.as_deref().unwrap().to_string(),
            e.location.city.as_deref().unwrap().to_string(),
            e.device.browser.as_deref().unwrap().to_string(),
        );
        let prev = seen.entry(key).or_insert_with(|| value.clone());
        assert_eq!(*prev, value);
    }
}

#[test]
fn fraud_actors_rotate_through_every_scenario_and_are_reported_once() {
    let mut sim = simulator(11, 0.1);
    let mut actors = Vec::new();
    for i in 0..20_000 {
        sim.next_event(START + i * 10);
        actors.extend(sim.take_new_actors());
    }
    let mut by_scenario: HashMap<&str, usize> = HashMap::new();
    for a in &actors {
        *by_scenario.entry(a.scenario).or_default() += 1;
    }
    for s in Scenario::ROTATION {
        assert!(
            by_scenario.get(s.as_str()).copied().unwrap_or(0) >= 5,
            "{by_scenario:?}"
        );
    }
    let ids: HashSet<_> = actors.iter().map(|a| &a.session_id).collect();
    assert_eq!(ids.len(), actors.len());
}

#[test]
fn concurrency_follows_the_rate() {
    let slow = Simulator::new(&SimulatorConfig {
        seed: 1,
        users: 100,
        fraud_rate: 0.0,
        events_per_second: 10.0,
    });
    assert_eq!(slow.target_open, 45);
    let fast = Simulator::new(&SimulatorConfig {
        seed: 1,
        users: 100,
        fraud_rate: 0.0,
        events_per_second: 1e7,
    });
    assert_eq!(fast.target_open, MAX_OPEN_SESSIONS);
}
