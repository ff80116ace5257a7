//! Compact per-user fraud state.
//!
//! A fraud detector tracks every user seen in the last couple of hours, so
//! bytes per user decide how many users a pod can hold. Each user is one
//! fixed-size record of `u32` words in a chunked slab, found through a
//! `HashMap<u64, u32>` from the hash of the user id to the record's slot:
//!
//! | words | content |
//! |---|---|
//! | 0–1 | time of the user's latest event (ms since the epoch, `i64`) |
//! | 2 | hash of the last known (country, city), 0 = unknown |
//! | 3 | age of that location |
//! | 4–9 | per rule: age of the last event at which its condition held |
//! | 10–11 | ages of the two previous purchases |
//! | 12… | ages of the previous transactional events (max(VELOCITY_THRESHOLD − 1, 2)) |
//! | … | MULTIPLE_IP_THRESHOLD × (ip key: 2 words, age: 1 word) |
//!
//! Times other than the latest are stored as *ages* relative to it, in
//! milliseconds, saturating at `u32::MAX` (≈ 49 days, far beyond any window)
//! which also marks an empty slot. When a newer event arrives every age is
//! shifted by the elapsed time. With default thresholds a record is 25 words
//! (100 bytes); with the map entry the whole cost is about 125 bytes per
//! tracked user (measured in BENCHMARKS.md).
//!
//! User ids are reduced to a 64-bit hash: two users colliding would share
//! state; for a million tracked users per partition the chance that any pair
//! collides is about 3·10⁻⁸.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// An age that means "never" / "empty slot".
pub const NEVER: u32 = u32::MAX;

const LAST: usize = 0;
const LOCATION: usize = 2;
const LOCATION_AGE: usize = 3;
const CONDITIONS: usize = 4;
const PURCHASES: usize = 10;
const TRANSACTIONS: usize = 12;
/// Records per slab chunk; the slab grows a chunk at a time, so unused
/// capacity is at most one chunk (unlike a doubling `Vec`).
const CHUNK_RECORDS: usize = 1024;

/// Number of rules with a condition-age slot.
pub const RULE_SLOTS: usize = 6;
/// Previous purchases remembered (RAPID_PURCHASES needs 3 counting the current).
pub const PURCHASE_SLOTS: usize = 2;

/// Where each part of a record lives, for the configured thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub transaction_slots: usize,
    pub ip_slots: usize,
    ips: usize,
    stride: usize,
}

impl Layout {
    pub fn new(velocity_threshold: u32, ip_threshold: u32) -> Layout {
        let transaction_slots = (velocity_threshold.saturating_sub(1) as usize).max(2);
        let ip_slots = ip_threshold as usize;
        let ips = TRANSACTIONS + transaction_slots;
        Layout {
            transaction_slots,
            ip_slots,
            ips,
            stride: ips + 3 * ip_slots,
        }
    }

    /// Bytes of one record.
    pub fn record_bytes(&self) -> usize {
        self.stride * 4
    }
}

/// Identity hasher for keys that are already hashes.
#[derive(Default)]
pub struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type PrehashedMap<V> = HashMap<u64, V, BuildHasherDefault<PrehashedKey>>;

/// All tracked users of one partition.
pub struct UserTable {
    layout: Layout,
    slots: PrehashedMap<u32>,
    chunks: Vec<Box<[u32]>>,
    free: Vec<u32>,
    next_unused: u32,
}

impl UserTable {
    pub fn new(layout: Layout) -> UserTable {
        UserTable {
            layout,
            slots: PrehashedMap::default(),
            chunks: Vec::new(),
            free: Vec::new(),
            next_unused: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Approximate heap bytes held (records, map, free list).
    pub fn heap_bytes(&self) -> usize {
        let chunk_bytes = self.chunks.len() * CHUNK_RECORDS * self.layout.record_bytes();
        // hashbrown: one (key, value) pair plus one control byte per bucket.
        let map_bytes = self.slots.capacity() * (std::mem::size_of::<(u64, u32)>() + 1);
        chunk_bytes + map_bytes + self.free.capacity() * 4
    }

    /// The record of `key`, created empty (latest event at `time_ms`) if new
    /// — or if its latest event is older than `horizon`: such a record can
    /// no longer matter and is absent for every reader, whether or not a
    /// sweep has removed it yet, so results never depend on when sweeps ran.
    pub fn entry(&mut self, key: u64, time_ms: i64, horizon: i64) -> UserRecord<'_> {
        let (slot, fresh) = match self.slots.get(&key) {
            Some(&slot) => (slot, false),
            None => {
                let slot = self.allocate();
                self.slots.insert(key, slot);
                (slot, true)
            }
        };
        let layout = self.layout;
        let words = self.words_mut(slot);
        let mut record = UserRecord { layout, words };
        if fresh || record.last_ms() < horizon {
            record.words.fill(NEVER);
            record.words[LOCATION] = 0;
            record.set_last_ms(time_ms);
        }
        record
    }

    /// Forgets every user whose latest event is older than `cutoff_ms`.
    pub fn evict_older_than(&mut self, cutoff_ms: i64) -> usize {
        let before = self.slots.len();
        let stride = self.layout.stride;
        let chunks = &self.chunks;
        let free = &mut self.free;
        self.slots.retain(|_, slot| {
            let (chunk, offset) = (
                *slot as usize / CHUNK_RECORDS,
                (*slot as usize % CHUNK_RECORDS) * stride,
            );
            let words = &chunks[chunk][offset..offset + stride];
            let last = read_i64(words, LAST);
            let keep = last >= cutoff_ms;
            if !keep {
                free.push(*slot);
            }
            keep
        });
        before - self.slots.len()
    }

    fn allocate(&mut self) -> u32 {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        let slot = self.next_unused;
        self.next_unused += 1;
        if slot as usize / CHUNK_RECORDS >= self.chunks.len() {
            self.chunks
                .push(vec![NEVER; CHUNK_RECORDS * self.layout.stride].into_boxed_slice());
        }
        slot
    }

    fn words_mut(&mut self, slot: u32) -> &mut [u32] {
        let stride = self.layout.stride;
        let offset = (slot as usize % CHUNK_RECORDS) * stride;
        &mut self.chunks[slot as usize / CHUNK_RECORDS][offset..offset + stride]
    }
}

/// A view of one user's record.
pub struct UserRecord<'a> {
    layout: Layout,
    words: &'a mut [u32],
}

impl UserRecord<'_> {
    pub fn last_ms(&self) -> i64 {
        read_i64(self.words, LAST)
    }

    fn set_last_ms(&mut self, ms: i64) {
        let bits = ms as u64;
        self.words[LAST] = bits as u32;
        self.words[LAST + 1] = (bits >> 32) as u32;
    }

    /// Moves the record's clock to `time_ms` and returns the time the event
    /// is evaluated at. Events older than the user's latest are evaluated as
    /// simultaneous with it, so windows never run backwards.
    pub fn advance_to(&mut self, time_ms: i64) -> i64 {
        let last = self.last_ms();
        if time_ms <= last {
            return last;
        }
        let delta = u32::try_from(time_ms - last).unwrap_or(NEVER);
        let shift = |age: &mut u32| {
            if *age != NEVER {
                *age = age.saturating_add(delta);
            }
        };
        // Words LOCATION_AGE.. up to the ip slots are all ages.
        let ips = self.layout.ips;
        self.words[LOCATION_AGE..ips].iter_mut().for_each(shift);
        // In the ip slots every third word is an age.
        self.words[ips..].iter_mut().skip(2).step_by(3).for_each(shift);
        self.set_last_ms(time_ms);
        time_ms
    }

    pub fn location(&self) -> (u32, u32) {
        (self.words[LOCATION], self.words[LOCATION_AGE])
    }

    pub fn set_location(&mut self, hash: u32) {
        self.words[LOCATION] = hash;
        self.words[LOCATION_AGE] = 0;
    }

    pub fn condition_age(&self, rule_slot: usize) -> u32 {
        self.words[CONDITIONS + rule_slot]
    }

    pub fn set_condition_now(&mut self, rule_slot: usize) {
        self.words[CONDITIONS + rule_slot] = 0;
    }

    /// Number of remembered previous purchases younger than `window_ms`.
    pub fn purchases_within(&self, window_ms: u32) -> u32 {
        count_within(&self.words[PURCHASES..PURCHASES + PURCHASE_SLOTS], window_ms)
    }

    pub fn push_purchase(&mut self) {
        push_front(&mut self.words[PURCHASES..PURCHASES + PURCHASE_SLOTS], 0);
    }

    /// Number of remembered previous transactional events younger than `window_ms`.
    pub fn transactions_within(&self, window_ms: u32) -> u32 {
        let end = TRANSACTIONS + self.layout.transaction_slots;
        count_within(&self.words[TRANSACTIONS..end], window_ms)
    }

    pub fn push_transaction(&mut self) {
        let end = TRANSACTIONS + self.layout.transaction_slots;
        push_front(&mut self.words[TRANSACTIONS..end], 0);
    }

    /// Records an event from `ip` (now) and returns how many distinct
    /// addresses, this one included, were seen within `window_ms`.
    pub fn touch_ip(&mut self, ip: u64, window_ms: u32) -> u32 {
        let base = self.layout.ips;
        let n = self.layout.ip_slots;
        // Find the address, or take the last slot (the oldest, or empty).
        let mut at = n - 1;
        for i in 0..n {
            let w = base + 3 * i;
            if self.words[w + 2] != NEVER && read_u64(self.words, w) == ip {
                at = i;
                break;
            }
        }
        // Move entries 0..at one place back and put this address first:
        // slots stay ordered most recent first, so the oldest falls off.
        for i in (0..at).rev() {
            let (from, to) = (base + 3 * i, base + 3 * (i + 1));
            self.words.copy_within(from..from + 3, to);
        }
        write_u64(self.words, base, ip);
        self.words[base + 2] = 0;
        (0..n)
            .filter(|i| {
                let age = self.words[base + 3 * i + 2];
                age != NEVER && age < window_ms
            })
            .count() as u32
    }

    /// The remembered addresses seen within `window_ms`, most recent first.
    pub fn ips_within(&self, window_ms: u32) -> Vec<u64> {
        let base = self.layout.ips;
        (0..self.layout.ip_slots)
            .filter_map(|i| {
                let w = base + 3 * i;
                let age = self.words[w + 2];
                (age != NEVER && age < window_ms).then(|| read_u64(self.words, w))
            })
            .collect()
    }
}

fn count_within(ages: &[u32], window_ms: u32) -> u32 {
    ages.iter().filter(|&&a| a != NEVER && a < window_ms).count() as u32
}

fn push_front(ages: &mut [u32], age: u32) {
    ages.copy_within(0..ages.len() - 1, 1);
    ages[0] = age;
}

fn read_i64(words: &[u32], at: usize) -> i64 {
    read_u64(words, at) as i64
}

fn read_u64(words: &[u32], at: usize) -> u64 {
    u64::from(words[at]) | (u64::from(words[at + 1]) << 32)
}

fn write_u64(words: &mut [u32], at: usize, v: u64) {
    words[at] = v as u32;
    words[at + 1] = (v >> 32) as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_one_hundred_bytes() {
        let layout = Layout::new(5, 3);
        assert_eq!(layout.transaction_slots, 4);
        assert_eq!(layout.record_bytes(), 100);
        assert_eq!(Layout::new(2, 2).transaction_slots, 2);
    }

    #[test]
    fn ages_shift_and_saturate() {
        let mut table = UserTable::new(Layout::new(5, 3));
        let mut r = table.entry(42, 1_000, i64::MIN);
        r.push_transaction();
        r.push_purchase();
        assert_eq!(r.advance_to(31_000), 31_000);
        assert_eq!(r.transactions_within(30_001), 1);
        assert_eq!(r.transactions_within(30_000), 0, "strictly within");
        r.push_transaction();
        assert_eq!(r.transactions_within(60_000), 2);
        // Out-of-order events are evaluated at the user's latest time.
        assert_eq!(r.advance_to(5_000), 31_000);
        // Far future: ages saturate instead of wrapping.
        r.advance_to(31_000 + 60 * 86_400_000);
        assert_eq!(r.transactions_within(u32::MAX - 1), 0);
        assert_eq!(r.purchases_within(u32::MAX - 1), 0);
    }

    #[test]
    fn ip_slots_keep_the_most_recent_distinct_addresses() {
        let mut table = UserTable::new(Layout::new(5, 3));
        let mut r = table.entry(7, 0, i64::MIN);
        assert_eq!(r.touch_ip(1, 3_600_000), 1);
        r.advance_to(1_000);
        assert_eq!(r.touch_ip(1, 3_600_000), 1, "same address counts once");
        r.advance_to(2_000);
        assert_eq!(r.touch_ip(2, 3_600_000), 2);
        r.advance_to(3_000);
        assert_eq!(r.touch_ip(3, 3_600_000), 3);
        assert_eq!(r.ips_within(3_600_000), vec![3, 2, 1]);
        r.advance_to(4_000);
        assert_eq!(r.touch_ip(4, 3_600_000), 3, "oldest falls off");
        assert_eq!(r.ips_within(3_600_000), vec![4, 3, 2]);
        r.advance_to(5_000);
        assert_eq!(r.touch_ip(2, 3_600_000), 3, "revisited moves to the front");
        assert_eq!(r.ips_within(3_600_000), vec![2, 4, 3]);
        r.advance_to(5_000 + 3_600_000);
        assert_eq!(r.touch_ip(9, 3_600_000), 1, "older than the window");
    }

    #[test]
    fn a_record_older_than_the_horizon_is_absent_before_any_sweep() {
        let mut table = UserTable::new(Layout::new(5, 3));
        let mut r = table.entry(1, 1_000, i64::MIN);
        r.push_transaction();
        r.set_location(77);
        let r = table.entry(1, 9_000, 5_000);
        assert_eq!(r.last_ms(), 9_000);
        assert_eq!(r.transactions_within(u32::MAX - 1), 0, "history forgotten");
        assert_eq!(r.location(), (0, NEVER));
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
        assert_eq!(r.transactions_within(u32::MAX - 1), 0);
        assert_eq!(r.location(), (0, NEVER));
    }
}
