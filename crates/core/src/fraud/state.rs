//! Compact per-user fraud state, in event time, for events in any order.
//!
//! A fraud detector tracks every user seen in the last couple of hours, so
//! bytes per user decide how many users a pod can hold. Each user is one
//! fixed-size record of `u32` words in a chunked slab, found through a
//! `HashMap<u64, u32>` from the hash of the user id to the record's slot:
//!
//! | words | content |
//! |---|---|
//! | 0–1 | time of the user's latest event (ms since the epoch, `i64`) |
//! | 2–7 | per rule: the latest event time at which its condition held |
//! | then | times of the newest transactional events behind the watermark (*settled*; max(2, VELOCITY_THRESHOLD − 1)) |
//! | then | times of the newest settled purchases (2) |
//! | then | 3 × (location hash, time) of the most recent events with a location |
//! | then | MULTIPLE_IP_THRESHOLD × (ip key: 2 words, first time, last time) |
//!
//! Times other than the latest are stored as *ages* before it, in
//! milliseconds, saturating at `u32::MAX` (≈ 49 days, far beyond any window)
//! which also marks an empty slot; when a newer event arrives every age
//! grows by the elapsed time. Each list is kept in event-time order, newest
//! first, whatever order the events arrived in: an event older than the
//! user's latest is inserted where it belongs. Transactional events and
//! purchases are counted exactly: until the watermark passes them they are
//! kept by the partition (see the fraud module), and only then *settle*
//! here, where the newest few are all a window around an on-time event can
//! still reach. With default thresholds a record is 32 words (128 bytes).
//!
//! User ids are reduced to a 64-bit hash: two users colliding would share
//! state; for a million tracked users per partition the chance that any pair
//! collides is about 3·10⁻⁸.

use serde::{Deserialize, Serialize};

/// An age that means "never" / "empty slot".
pub const NEVER: u32 = u32::MAX;

const LAST: usize = 0;
const HOLDS: usize = 2;
const SETTLED: usize = HOLDS + RULE_SLOTS;
/// Records per slab chunk; the slab grows a chunk at a time, so unused
/// capacity is at most one chunk (unlike a doubling `Vec`).
const CHUNK_RECORDS: usize = 1024;

/// Number of rules with a hold slot.
pub const RULE_SLOTS: usize = 6;
/// Settled purchases remembered: RAPID_PURCHASES needs 2 besides the
/// current one.
pub const PURCHASE_SLOTS: usize = 2;
/// Recent (location, time) pairs: the neighbours of a late event.
pub const LOCATION_SLOTS: usize = 3;

/// Which list of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// Transactional events the watermark has passed, newest first.
    Settled,
    /// Purchases the watermark has passed, newest first.
    SettledPurchases,
}

/// Where each part of a record lives, for the configured thresholds.
///
/// A snapshot holds the two numbers it is made of (`settled_slots`,
/// `ip_slots`), each at most [`MAX_SLOTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "LayoutSlots", try_from = "LayoutSlots")]
pub struct Layout {
    /// Settled transactional events kept: HIGH_VELOCITY needs
    /// VELOCITY_THRESHOLD − 1 besides the current event,
    /// PURCHASE_WITHOUT_ACTIVITY 2.
    pub settled_slots: usize,
    pub ip_slots: usize,
    purchases: usize,
    locations: usize,
    ips: usize,
    stride: usize,
}

impl Layout {
    pub fn new(velocity_threshold: u32, ip_threshold: u32) -> Layout {
        let settled_slots = (velocity_threshold.saturating_sub(1) as usize).max(2);
        Layout::with_slots(settled_slots, ip_threshold as usize)
    }

    fn with_slots(settled_slots: usize, ip_slots: usize) -> Layout {
        let purchases = SETTLED + settled_slots;
        let locations = purchases + PURCHASE_SLOTS;
        let ips = locations + 2 * LOCATION_SLOTS;
        Layout {
            settled_slots,
            ip_slots,
            purchases,
            locations,
            ips,
            stride: ips + 4 * ip_slots,
        }
    }

    /// Bytes of one record.
    pub fn record_bytes(&self) -> usize {
        self.stride * 4
    }

    fn range(&self, list: Times) -> std::ops::Range<usize> {
        match list {
            Times::Settled => SETTLED..self.purchases,
            Times::SettledPurchases => self.purchases..self.locations,
        }
    }
}

/// The most settled or IP slots a layout read from a snapshot may have:
/// beyond any threshold the service accepts (VELOCITY_THRESHOLD ≤ 1000,
/// MULTIPLE_IP_THRESHOLD ≤ 100), and small enough that a record stays a few
/// KiB whatever the bytes say.
pub const MAX_SLOTS: usize = 1024;

/// What a snapshot holds of a [`Layout`]: the rest follows from these two.
#[derive(Serialize, Deserialize)]
struct LayoutSlots {
    settled_slots: usize,
    ip_slots: usize,
}

impl From<Layout> for LayoutSlots {
    fn from(layout: Layout) -> LayoutSlots {
        LayoutSlots {
            settled_slots: layout.settled_slots,
            ip_slots: layout.ip_slots,
        }
    }
}

impl TryFrom<LayoutSlots> for Layout {
    type Error = &'static str;

    fn try_from(slots: LayoutSlots) -> Result<Layout, &'static str> {
        if (2..=MAX_SLOTS).contains(&slots.settled_slots) && slots.ip_slots <= MAX_SLOTS {
            Ok(Layout::with_slots(slots.settled_slots, slots.ip_slots))
        } else {
            Err("a record layout with too few or too many slots")
        }
    }
}

pub use crate::prehashed::{PrehashedKey, PrehashedMap};

/// All tracked users of one partition.
///
/// A snapshot holds the layout and each tracked user's key and record
/// (`UserRecords`); free and never-used slots are left out, and the table
/// read back allocates its slots afresh (which slot holds a user changes
/// nothing any reader sees).
#[derive(Deserialize)]
#[serde(try_from = "UserRecords")]
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

    fn words(&self, slot: u32) -> &[u32] {
        let stride = self.layout.stride;
        let offset = (slot as usize % CHUNK_RECORDS) * stride;
        &self.chunks[slot as usize / CHUNK_RECORDS][offset..offset + stride]
    }

    fn words_mut(&mut self, slot: u32) -> &mut [u32] {
        let stride = self.layout.stride;
        let offset = (slot as usize % CHUNK_RECORDS) * stride;
        &mut self.chunks[slot as usize / CHUNK_RECORDS][offset..offset + stride]
    }
}

/// A [`UserTable`] as a snapshot holds it.
#[derive(Serialize, Deserialize)]
struct UserRecords {
    layout: Layout,
    keys: Vec<u64>,
    /// The records of `keys`, in that order, `stride` words each, every word
    /// plus one (wrapping): an empty slot (`NEVER`) then takes one byte
    /// instead of five.
    words: Vec<u32>,
}

impl Serialize for UserTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stride = self.layout.stride;
        let mut records = UserRecords {
            layout: self.layout,
            keys: Vec::with_capacity(self.slots.len()),
            words: Vec::with_capacity(self.slots.len() * stride),
        };
        for (&key, &slot) in &self.slots {
            records.keys.push(key);
            records.words.extend(self.words(slot).iter().map(|w| w.wrapping_add(1)));
        }
        records.serialize(serializer)
    }
}

impl TryFrom<UserRecords> for UserTable {
    type Error = &'static str;

    fn try_from(records: UserRecords) -> Result<UserTable, &'static str> {
        let stride = records.layout.stride;
        if records.keys.len().checked_mul(stride) != Some(records.words.len()) || records.keys.len() > NEVER as usize {
            return Err("a user table whose records do not match its keys");
        }
        let mut table = UserTable::new(records.layout);
        table.slots.reserve(records.keys.len());
        for (&key, record) in records.keys.iter().zip(records.words.chunks_exact(stride)) {
            let slot = table.allocate();
            if table.slots.insert(key, slot).is_some() {
                return Err("a user table with a user twice");
            }
            let words = table.words_mut(slot);
            for (word, &saved) in words.iter_mut().zip(record) {
                *word = saved.wrapping_sub(1);
            }
            // `touch_ip` clamps times between an address's first and last.
            let ips_in_order = words[records.layout.ips..]
                .chunks_exact(4)
                .all(|ip| ip[2] == NEVER || ip[3] == NEVER || ip[2] >= ip[3]);
            if !ips_in_order {
                return Err("a user table with an address last seen before it was first seen");
            }
        }
        Ok(table)
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

    /// The age of `time_ms` before the user's latest event (`NEVER` if too old).
    fn age(&self, time_ms: i64) -> u32 {
        u32::try_from(self.last_ms().saturating_sub(time_ms).max(0)).unwrap_or(NEVER)
    }

    /// The time of a stored age.
    fn time(&self, age: u32) -> Option<i64> {
        (age != NEVER).then(|| self.last_ms() - i64::from(age))
    }

    /// Moves the record's clock forward to `time_ms` if the event is the
    /// user's newest; an older event leaves it where it is (its entries are
    /// stored with their own age).
    pub fn advance_to(&mut self, time_ms: i64) {
        let last = self.last_ms();
        if time_ms <= last {
            return;
        }
        let delta = u32::try_from(time_ms - last).unwrap_or(NEVER);
        let shift = |age: &mut u32| {
            if *age != NEVER {
                *age = age.saturating_add(delta);
            }
        };
        let l = self.layout;
        self.words[HOLDS..l.locations].iter_mut().for_each(shift);
        self.words[l.locations..l.ips]
            .iter_mut()
            .skip(1)
            .step_by(2)
            .for_each(shift);
        for w in self.words[l.ips..].chunks_exact_mut(4) {
            shift(&mut w[2]);
            shift(&mut w[3]);
        }
        self.set_last_ms(time_ms);
    }

    /// Records that `rule`'s condition holds at `time_ms` and says whether
    /// that starts an incident: no earlier or later time at which it held
    /// lies within `cooldown_ms`. The result is the same whatever order the
    /// events arrive in, up to which event of an incident raises the alert.
    pub fn hold(&mut self, rule_slot: usize, time_ms: i64, cooldown_ms: i64) -> bool {
        let at = HOLDS + rule_slot;
        let previous = self.time(self.words[at]);
        let starts = cooldown_ms == 0 || previous.is_none_or(|p| (time_ms - p).abs() >= cooldown_ms);
        if previous.is_none_or(|p| time_ms > p) {
            self.words[at] = self.age(time_ms);
        }
        starts
    }

    /// Inserts `time_ms` into `list` and returns the most events of the list
    /// (this one included) that fit in a span shorter than `window_ms`
    /// together with this one. (The detector counts with the partition's
    /// unsettled events too; the tests read a list alone.)
    #[cfg(test)]
    fn insert_and_count(&mut self, list: Times, time_ms: i64, window_ms: i64) -> u32 {
        let count = densest_around(&self.times_of(list), time_ms, window_ms);
        self.insert(list, time_ms);
        count
    }

    /// Inserts `time_ms` into `list`, newest first; when full, the oldest
    /// falls off.
    pub fn insert(&mut self, list: Times, time_ms: i64) {
        let range = self.layout.range(list);
        let age = self.age(time_ms);
        insert_sorted(&mut self.words[range], age);
    }

    /// How many stored times of `list` lie within `[from, to]`.
    #[cfg(test)]
    fn count_between(&self, list: Times, from: i64, to: i64) -> u32 {
        let range = self.layout.range(list);
        self.times(range).iter().filter(|&&t| t >= from && t <= to).count() as u32
    }

    /// The stored times of `list`, newest first.
    pub fn times_of(&self, list: Times) -> Vec<i64> {
        self.times(self.layout.range(list))
    }

    fn times(&self, range: std::ops::Range<usize>) -> Vec<i64> {
        self.words[range].iter().filter_map(|&a| self.time(a)).collect()
    }

    /// Inserts an event at `time_ms` at location `hash` and returns the
    /// (hash, gap in ms) of its nearest neighbours in event time — the one
    /// before, then the one after — whose location differs and lies within
    /// `window_ms`.
    pub fn insert_location(&mut self, hash: u32, time_ms: i64, window_ms: i64) -> Option<(u32, i64)> {
        let base = self.layout.locations;
        let entries: Vec<(u32, i64)> = (0..LOCATION_SLOTS)
            .filter_map(|i| {
                let w = base + 2 * i;
                self.time(self.words[w + 1]).map(|t| (self.words[w], t))
            })
            .collect();
        // Entries are newest first: the neighbour before is the first at or
        // before `time_ms`, the one after the last strictly after it.
        let before = entries.iter().find(|&&(_, t)| t <= time_ms);
        let after = entries.iter().rev().find(|&&(_, t)| t > time_ms);
        let differs = |n: Option<&(u32, i64)>| {
            n.and_then(|&(h, t)| {
                let gap = (time_ms - t).abs();
                (h != hash && gap < window_ms).then_some((h, gap))
            })
        };
        let found = differs(before).or_else(|| differs(after));
        let age = self.age(time_ms);
        if age == NEVER {
            return found;
        }
        // Insert, keeping newest first. When the list is full, the entry to
        // drop is one inside a run of one place (both neighbours there too):
        // it can only be a late event's neighbour if that event falls
        // inside the run, whose ends stay. Only without such an entry does
        // the oldest fall off. Events arriving out of order at one place
        // (a burst, a delayed batch) so never push out the last change of
        // place before them, whatever their arrival order.
        let slots = &mut self.words[base..base + 2 * LOCATION_SLOTS];
        // The stored entries and the new one, newest first, on the stack.
        let mut list = [(0u32, NEVER); LOCATION_SLOTS + 1];
        let mut len = 0;
        let mut placed = false;
        for i in 0..LOCATION_SLOTS {
            let entry = (slots[2 * i], slots[2 * i + 1]);
            if entry.1 == NEVER {
                break;
            }
            if !placed && age < entry.1 {
                list[len] = (hash, age);
                len += 1;
                placed = true;
            }
            list[len] = entry;
            len += 1;
        }
        if !placed {
            list[len] = (hash, age);
            len += 1;
        }
        if len > LOCATION_SLOTS {
            let inside = (1..len - 1)
                .rev()
                .find(|&i| list[i - 1].0 == list[i].0 && list[i].0 == list[i + 1].0);
            if let Some(i) = inside {
                list.copy_within(i + 1..len, i);
            }
            len -= 1;
        }
        for (i, &(h, a)) in list.iter().take(LOCATION_SLOTS).enumerate() {
            let (h, a) = if i < len { (h, a) } else { (0, NEVER) };
            slots[2 * i] = h;
            slots[2 * i + 1] = a;
        }
        found
    }

    /// Records an event from `ip` at `time_ms` and returns the addresses
    /// (this one first) of the largest set of distinct addresses that were
    /// all seen within a span shorter than `window_ms` together with this
    /// event. Each address keeps the first and last time it was seen.
    pub fn touch_ip(&mut self, ip: u64, time_ms: i64, window_ms: i64) -> Vec<u64> {
        let base = self.layout.ips;
        let n = self.layout.ip_slots;
        let age = self.age(time_ms);
        let slot = |i: usize| base + 4 * i;
        // Each other address's time nearest to this event.
        let mut near: Vec<(i64, u64)> = (0..n)
            .filter_map(|i| {
                let w = slot(i);
                let key = read_u64(self.words, w);
                let first = self.time(self.words[w + 2])?;
                let last = self.time(self.words[w + 3])?;
                (key != ip).then(|| (time_ms.clamp(first, last), key))
            })
            .collect();
        let found = (0..n).find(|&i| self.words[slot(i) + 3] != NEVER && read_u64(self.words, slot(i)) == ip);
        match found {
            Some(i) => {
                let w = slot(i);
                self.words[w + 2] = self.words[w + 2].max(age);
                self.words[w + 3] = self.words[w + 3].min(age);
            }
            None => {
                // Replace the address seen least recently (or an empty slot),
                // unless this event is older than all of them.
                let (i, oldest) = (0..n)
                    .map(|i| (i, self.words[slot(i) + 3]))
                    .max_by_key(|&(i, a)| (a, i))
                    .unwrap_or((0, 0));
                if oldest == NEVER || age < oldest {
                    let w = slot(i);
                    write_u64(self.words, w, ip);
                    self.words[w + 2] = age;
                    self.words[w + 3] = age;
                }
            }
        }
        near.sort_unstable();
        // The window shorter than `window_ms` that contains this event and
        // the most other addresses: it starts at this event or at another
        // address's time before it.
        let mut best: &[(i64, u64)] = &[];
        for start in std::iter::once(time_ms).chain(near.iter().map(|&(t, _)| t)) {
            if start > time_ms || time_ms - start >= window_ms {
                continue;
            }
            let from = near.partition_point(|&(t, _)| t < start);
            let to = near.partition_point(|&(t, _)| t < start + window_ms);
            if to - from > best.len() {
                best = &near[from..to];
            }
        }
        let mut ips = vec![ip];
        ips.extend(best.iter().map(|&(_, k)| k));
        ips
    }
}

/// The most points of `times ∪ {t}` that fit, with `t`, in a span shorter
/// than `window_ms`.
/// The most of `times` (with `t` itself) that fit in a span shorter than
/// `window_ms` containing `t`.
pub fn densest_around(times: &[i64], t: i64, window_ms: i64) -> u32 {
    let mut all: Vec<i64> = times.iter().copied().filter(|&x| (x - t).abs() < window_ms).collect();
    all.push(t);
    all.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..all.len() {
        while all[end] - all[start] >= window_ms {
            start += 1;
        }
        if all[start] <= t && t <= all[end] {
            best = best.max(end - start + 1);
        }
    }
    best as u32
}

fn insert_sorted(ages: &mut [u32], age: u32) {
    if let Some(at) = ages.iter().position(|&a| age < a || a == NEVER) {
        ages.copy_within(at..ages.len() - 1, at + 1);
        ages[at] = age;
    }
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
#[path = "tests/state.rs"]
mod tests;
