//! The compact user records: lists in event-time order, holds and
//! cooldowns, places and addresses, eviction.

use super::*;

const HOUR: i64 = 3_600_000;

#[test]
fn default_layout_is_thirty_two_words() {
    let layout = Layout::new(5, 3);
    assert_eq!(layout.settled_slots, 4);
    assert_eq!(layout.record_bytes(), 128);
    assert_eq!(Layout::new(2, 2).settled_slots, 2);
}

#[test]
fn a_late_event_counts_in_the_window_it_belongs_to() {
    let mut table = UserTable::new(Layout::new(5, 3));
    let mut r = table.entry(42, 100_000, i64::MIN);
    r.advance_to(100_000);
    assert_eq!(r.insert_and_count(Times::Settled, 100_000, 60_000), 1);
    r.advance_to(170_000);
    assert_eq!(r.insert_and_count(Times::Settled, 170_000, 60_000), 1, "70 s apart");
    // Arriving last, an event at 130 s is within a minute of each, but
    // 100 → 170 is 70 s: the densest span under 60 s holds two.
    assert_eq!(r.insert_and_count(Times::Settled, 130_000, 60_000), 2);
    assert_eq!(r.insert_and_count(Times::Settled, 140_000, 60_000), 3);
    assert_eq!(r.last_ms(), 170_000, "an older event leaves the clock alone");
    assert_eq!(r.count_between(Times::Settled, 100_000, 140_000), 3);
    // Far future: ages saturate instead of wrapping.
    r.advance_to(170_000 + 60 * 86_400_000);
    assert_eq!(r.count_between(Times::Settled, i64::MIN, i64::MAX), 0);
}

#[test]
fn lists_keep_the_newest_in_event_time_order() {
    let mut table = UserTable::new(Layout::new(2, 2));
    let mut r = table.entry(1, 10_000, i64::MIN);
    for t in [10_000, 5_000, 8_000, 1_000] {
        r.advance_to(t);
        r.insert_and_count(Times::Settled, t, 60_000);
    }
    // Two slots: the two newest survive, whatever the arrival order.
    assert_eq!(r.count_between(Times::Settled, 8_000, 10_000), 2);
    assert_eq!(r.count_between(Times::Settled, 0, 7_999), 0);
}

#[test]
fn holds_start_an_incident_in_either_direction_of_time() {
    let mut table = UserTable::new(Layout::new(5, 3));
    let mut r = table.entry(1, 1_000_000, i64::MIN);
    assert!(r.hold(0, 1_000_000, 60_000), "first hold starts an incident");
    assert!(!r.hold(0, 1_030_000, 60_000), "within the cooldown after");
    assert!(
        !r.hold(0, 975_000, 60_000),
        "within the cooldown before the latest hold"
    );
    assert!(r.hold(0, 2_000_000, 60_000), "a quiet cooldown later");
    assert!(r.hold(1, 5, 0), "no cooldown: every hold alerts");
}

#[test]
fn location_neighbours_on_both_sides() {
    let mut table = UserTable::new(Layout::new(5, 3));
    let mut r = table.entry(7, 0, i64::MIN);
    assert_eq!(r.insert_location(11, 0, 600_000), None);
    r.advance_to(900_000);
    assert_eq!(r.insert_location(11, 900_000, 600_000), None);
    // A late event in between from elsewhere: 5 min after the one before.
    assert_eq!(r.insert_location(22, 300_000, 600_000), Some((11, 300_000)));
    // Its neighbour after is 10 min away: only the one before counts.
    assert_eq!(r.insert_location(22, 850_000, 600_000), Some((11, 50_000)));
}

/// Found by the ordering property test: a place change, then six
/// events at the old place arriving out of order. Dropping the oldest
/// entry lost the change before the earliest of them; dropping entries
/// inside a run of one place keeps it.
#[test]
fn disorder_at_one_place_keeps_the_change_of_place_before_it() {
    let mut table = UserTable::new(Layout::new(5, 3));
    let mut r = table.entry(1, 0, i64::MIN);
    let window = 600_000;
    let (home, away) = (11, 22);
    for t in [0, 5_000, 43_000] {
        r.advance_to(t);
        assert_eq!(r.insert_location(home, t, window), None);
    }
    r.advance_to(1_661_000);
    assert_eq!(
        r.insert_location(away, 1_661_000, window),
        None,
        "27 min later: no rapid change"
    );
    // Then home again from 9.7 min after, arriving: 11.2 min, 12.4 min,
    // 10.2 min after the change, then 9.7 min — the one that is rapid.
    for (t, expected) in [(2_331_000, None), (2_405_000, None), (2_274_000, None)] {
        r.advance_to(t);
        assert_eq!(r.insert_location(home, t, window), expected, "at {t}");
    }
    r.advance_to(2_241_000);
    assert_eq!(
        r.insert_location(home, 2_241_000, window),
        Some((away, 580_000)),
        "the change of place 9.7 min before is still known"
    );
}

#[test]
fn ip_windows_use_each_address_nearest_time() {
    let mut table = UserTable::new(Layout::new(5, 3));
    let mut r = table.entry(7, 0, i64::MIN);
    assert_eq!(r.touch_ip(1, 0, HOUR), vec![1]);
    r.advance_to(1_000);
    assert_eq!(r.touch_ip(1, 1_000, HOUR), vec![1], "same address counts once");
    r.advance_to(2_000);
    assert_eq!(r.touch_ip(2, 2_000, HOUR), vec![2, 1]);
    r.advance_to(2 * HOUR);
    assert_eq!(r.touch_ip(3, 2 * HOUR, HOUR), vec![3], "the others are two hours back");
    // A late event from address 4 at 50 min is within the hour of 1 and 2
    // (at 0–2 s) but then not with 3 (70 min later): three together.
    let ips = r.touch_ip(4, 50 * 60_000, HOUR);
    assert_eq!(ips.len(), 3, "{ips:?}");
    assert!(ips.contains(&1) || ips.contains(&2));
}

#[test]
fn a_record_older_than_the_horizon_is_absent_before_any_sweep() {
    let mut table = UserTable::new(Layout::new(5, 3));
    let mut r = table.entry(1, 1_000, i64::MIN);
    r.insert_and_count(Times::Settled, 1_000, 60_000);
    r.insert_location(77, 1_000, 60_000);
    let mut r = table.entry(1, 9_000, 5_000);
    assert_eq!(r.last_ms(), 9_000);
    assert_eq!(
        r.count_between(Times::Settled, i64::MIN, i64::MAX),
        0,
        "history forgotten"
    );
    assert_eq!(r.insert_location(78, 9_000, 60_000), None, "no previous place");
    let r = table.entry(1, 9_500, 5_000);
    assert_eq!(r.last_ms(), 9_000, "a record inside the horizon is kept");
}

#[test]
fn eviction_frees_slots_for_reuse() {
    let mut table = UserTable::new(Layout::new(5, 3));
    for key in 0..3_000u64 {
        let t = key as i64;
        table.entry(key, t, i64::MIN);
    }
    assert_eq!(table.len(), 3_000);
    let chunks = table.chunks.len();
    assert_eq!(table.evict_older_than(2_000), 2_000);
    assert_eq!(table.len(), 1_000);
    for key in 10_000..12_000u64 {
        table.entry(key, 5_000, i64::MIN);
    }
    assert_eq!(table.chunks.len(), chunks, "freed slots are reused");
    // A re-created user starts empty.
    let r = table.entry(0, 9_000, i64::MIN);
    assert_eq!(r.count_between(Times::Settled, i64::MIN, i64::MAX), 0);
}

/// The table of one user seen from two addresses, as a snapshot holds it.
fn saved_table() -> UserRecords {
    let mut table = UserTable::new(Layout::new(5, 3));
    let mut r = table.entry(7, 0, i64::MIN);
    r.touch_ip(1, 0, HOUR);
    r.advance_to(5_000);
    r.touch_ip(2, 5_000, HOUR);
    r.touch_ip(1, 5_000, HOUR);
    crate::snapshot::decode(&crate::snapshot::encode(&table)).expect("a table decodes")
}

#[test]
fn a_table_read_back_holds_the_same_records() {
    let mut back = UserTable::try_from(saved_table()).expect("a consistent table");
    assert_eq!(back.len(), 1);
    let mut r = back.entry(7, 5_000, i64::MIN);
    assert_eq!(r.last_ms(), 5_000);
    assert_eq!(
        r.touch_ip(3, 5_000, HOUR),
        vec![3, 1, 2],
        "both addresses, at their times"
    );
}

/// What `touch_ip` and the slab's indexing rely on is checked when a
/// snapshot's table is read: records of the layout's stride, one per key,
/// each key once, each address first seen no later than last seen; and a
/// layout a record can be made of.
#[test]
fn an_inconsistent_table_is_an_error() {
    let mut short = saved_table();
    short.words.pop();
    assert!(UserTable::try_from(short).is_err(), "a word short");
    let mut twice = saved_table();
    twice.keys.push(7);
    twice.words.extend_from_within(..);
    assert!(UserTable::try_from(twice).is_err(), "a user twice");
    let mut swapped = saved_table();
    let (ips, slots) = (swapped.layout.ips, swapped.layout.ip_slots);
    for ip in swapped.words[ips..].chunks_exact_mut(4).take(slots) {
        ip.swap(2, 3);
    }
    assert!(
        UserTable::try_from(swapped).is_err(),
        "an address last seen before first seen"
    );

    let layout =
        |settled: usize, ips: usize| crate::snapshot::decode::<Layout>(&crate::snapshot::encode(&(settled, ips)));
    assert_eq!(layout(4, 3), Ok(Layout::new(5, 3)));
    assert!(layout(1, 3).is_err(), "fewer than two settled slots");
    assert!(layout(4, MAX_SLOTS + 1).is_err(), "a record of megabytes");
}
