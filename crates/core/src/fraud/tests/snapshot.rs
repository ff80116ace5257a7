//! Snapshots: a partition encoded and decoded at any point of a random
//! stream raises exactly the alerts (ids included, in order) it raises
//! uninterrupted, and damaged bytes are an error, never a panic.

use std::borrow::Cow;

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::fraud::partition::FraudPartition;
use crate::snapshot::{self, checks};

const USERS: [&str; 5] = ["ann", "bob", "cat", "dan", "eve"];
const KINDS: [EventType; 4] = [View, Click, Cart, Buy];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "192.168.1.9", "2001:db8::7"];
const PLACES: [(&str, &str); 4] = [("US", "New York"), ("US", "Boston"), ("GB", "London"), ("", "")];

/// A random stream in arrival order: a few users (one busier than the
/// rest) browsing, in bursts, and away for longer than the retention now
/// and then; several addresses and places; purchases small and large. Most
/// events arrive within 30 s of their time, some up to ten minutes after
/// it: behind the default one-minute lateness.
fn stream() -> impl Strategy<Value = Vec<E>> {
    let step = (
        prop_oneof![3 => Just(0usize), 4 => 1..USERS.len()],
        prop_oneof![12 => 200i64..10_000, 6 => 10_000i64..200_000, 1 => 1_000_000i64..9_000_000],
        prop_oneof![2 => Just(0usize), 1 => Just(1usize), 3 => Just(2usize), 2 => Just(3usize)],
        0..IPS.len(),
        0..PLACES.len(),
        1u16..1_000,
        prop_oneof![8 => 0i64..30_000, 1 => 60_000i64..600_000],
    );
    prop::collection::vec(step, 1..150).prop_map(|steps| {
        let mut t = 0;
        let mut arriving: Vec<(i64, E)> = steps
            .into_iter()
            .map(|(user, gap, kind, ip, place, amount, delay)| {
                t += gap;
                let (country, city) = PLACES[place];
                let event = e(USERS[user], t as f64 / 1000.0, KINDS[kind])
                    .ip(IPS[ip])
                    .place(country, city)
                    .amount(f64::from(amount));
                (t + delay, event)
            })
            .collect();
        arriving.sort_by_key(|&(at, _)| at);
        arriving.into_iter().map(|(_, event)| event).collect()
    })
}

/// The partition as a new owner reads it back from a snapshot, with the
/// fields a snapshot leaves out rebuilt as they were.
fn restored(state: &FraudPartition) -> FraudPartition {
    let back: FraudPartition = snapshot::decode(&snapshot::encode(state)).expect("a snapshot decodes");
    assert_eq!(back.clock, state.clock);
    assert_eq!(back.tracked_users(), state.tracked_users());
    assert_eq!(back.pending_users, state.pending_users);
    assert_eq!(back.pending_bytes, state.pending_bytes);
    assert_eq!(back.location_bytes, state.location_bytes);
    assert_eq!(back.unsettled_by_time, state.unsettled_by_time);
    back
}

/// The alerts and totals of `events` (then the flush), the partition
/// replaced by its snapshot before each event of `cuts`.
fn alerts(events: &[E], cuts: &[usize]) -> (Vec<Alert>, FraudTotals) {
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    for (i, ev) in flushed(events).iter().enumerate() {
        if cuts.contains(&i) {
            state = restored(&state);
        }
        d.process(&mut state, &ev.event(i), Mode::Live, &mut out);
    }
    (out, d.totals().clone())
}

/// The state after the first `n` of `events`.
fn state_after(events: &[E], n: usize) -> FraudPartition {
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    for (i, ev) in events[..n].iter().enumerate() {
        d.process(&mut state, &ev.event(i), Mode::Live, &mut Vec::new());
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_snapshot_anywhere_changes_no_alert(events in stream(), cuts in prop::collection::vec(any::<Index>(), 1..4)) {
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(events.len() + 4)).collect();
        let (uninterrupted, totals) = alerts(&events, &[]);
        let (snapshotted, snapshotted_totals) = alerts(&events, &cuts);
        prop_assert_eq!(uninterrupted, snapshotted, "restored before events {:?}", cuts);
        prop_assert_eq!(totals, snapshotted_totals);
    }

    #[test]
    fn damaged_snapshots_are_errors_not_panics(
        events in stream(),
        at in any::<Index>(),
        cut in any::<Index>(),
        flips in prop::collection::vec((any::<Index>(), 1..=255u8), 1..6),
    ) {
        let bytes = snapshot::encode(&state_after(&events, at.index(events.len() + 1)));
        checks::damaged_copies_fail_cleanly::<FraudPartition>(&bytes, cut, &flips)?;
    }
}

/// The encoded size and speed of a partition of 100,000 users (run with
/// `cargo test --release -p activity-tracker-core -- --ignored --nocapture
/// snapshot_cost`).
#[test]
#[ignore = "a measurement: run in release"]
fn snapshot_cost_of_a_hundred_thousand_users() {
    const N: usize = 100_000;
    let mut d = detector(FraudConfig::default());
    let mut state = d.new_state();
    let mut out = Vec::new();
    let mut next = checks::numbers();
    // Each user: 2 to 7 events over the last two hours (the retention),
    // mostly browsing, some carts and purchases, one or two addresses, a
    // city among a hundred.
    let mut events: Vec<(i64, usize, E, u64)> = Vec::new();
    for user in 0..N {
        let start = next(7_000_000) as i64;
        for k in 0..2 + next(6) {
            let kind = [View, View, View, Click, Cart, Cart, Buy][next(7) as usize];
            let at = start + k as i64 * (1 + next(120_000)) as i64;
            let ip = ((user as u64) << 1) | (next(10) / 9);
            events.push((
                at,
                user,
                e("", at as f64 / 1000.0, kind).amount(5.0 + next(700) as f64),
                ip,
            ));
        }
    }
    events.sort_by_key(|&(at, user, ..)| (at, user));
    let names: Vec<String> = (0..N).map(|u| format!("user-{u:06}")).collect();
    let cities: Vec<String> = (0..100).map(|c| format!("City {c}")).collect();
    for (n, (_, user, ev, ip)) in events.iter().enumerate() {
        let mut event = ev.event(n);
        event.user_id = Cow::Borrowed(&names[*user]);
        event.ip_address = Some(Cow::Owned(format!(
            "10.{}.{}.{}",
            ip >> 16 & 255,
            ip >> 8 & 255,
            ip & 255
        )));
        event.location.city = Some(Cow::Borrowed(&cities[*user % 100]));
        d.process(&mut state, &event, Mode::Live, &mut out);
    }
    assert!(state.tracked_users() >= N * 99 / 100, "{} users", state.tracked_users());
    checks::measure("fraud partition", &state, state.tracked_users(), state.heap_bytes());
}
