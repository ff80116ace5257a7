//! Counters keyed by strings from the wire, with a bounded number of keys.
//!
//! Page paths, product ids, countries and browsers come from producers we do
//! not control; a bug or an attacker can send millions of distinct values.
//! Each [`BoundedCounts`] keeps the first `cap` distinct keys it sees and
//! counts everything after that under [`OTHER`]. The same bound keeps the
//! Prometheus series low-cardinality: a metric label takes only the keys of
//! this set. Keys are cut to [`MAX_LABEL_BYTES`], so a set holds at most
//! `cap × MAX_LABEL_BYTES` bytes of text whatever the events carry.

use crate::event::{MAX_LABEL_BYTES, truncate};

use std::collections::HashMap;

/// The key that absorbs every value beyond the cap.
pub const OTHER: &str = "other";

#[derive(Clone, Debug)]
pub struct BoundedCounts {
    cap: usize,
    index: HashMap<Box<str>, usize, foldhash::fast::FixedState>,
    entries: Vec<(Box<str>, u64)>,
    other: u64,
}

impl BoundedCounts {
    pub fn new(cap: usize) -> BoundedCounts {
        BoundedCounts {
            cap,
            index: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            entries: Vec::new(),
            other: 0,
        }
    }

    /// Adds `n` to `key` (its first [`MAX_LABEL_BYTES`]; or to [`OTHER`]
    /// once the cap is reached).
    pub fn add(&mut self, key: &str, n: u64) {
        let key = truncate(key, MAX_LABEL_BYTES);
        if let Some(&i) = self.index.get(key) {
            self.entries[i].1 += n;
        } else if self.entries.len() < self.cap && key != OTHER {
            self.index.insert(key.into(), self.entries.len());
            self.entries.push((key.into(), n));
        } else {
            self.other += n;
        }
    }

    pub fn get(&self, key: &str) -> u64 {
        if key == OTHER {
            return self.other;
        }
        self.index.get(key).map(|&i| self.entries[i].1).unwrap_or(0)
    }

    /// Every key with its count, [`OTHER`] last if non-zero.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries
            .iter()
            .map(|(k, v)| (&**k, *v))
            .chain((self.other > 0).then_some((OTHER, self.other)))
    }

    /// The `n` largest, ties broken by key for stable output.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.iter().map(|(k, v)| (k.to_string(), v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    pub fn total(&self) -> u64 {
        self.entries.iter().map(|(_, v)| v).sum::<u64>() + self.other
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.other == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_beyond_the_cap_go_to_other() {
        let mut c = BoundedCounts::new(2);
        c.add("a", 1);
        c.add("b", 2);
        c.add("c", 3);
        c.add("a", 4);
        c.add("d", 1);
        assert_eq!(c.get("a"), 5);
        assert_eq!(c.get("c"), 0);
        assert_eq!(c.get(OTHER), 4);
        assert_eq!(c.total(), 11);
        assert_eq!(c.len(), 2);
        assert_eq!(c.top(2), vec![("a".to_string(), 5), (OTHER.to_string(), 4)]);
    }

    #[test]
    fn a_literal_other_key_is_not_a_new_entry() {
        let mut c = BoundedCounts::new(10);
        c.add(OTHER, 3);
        assert_eq!(c.len(), 0);
        assert_eq!(c.get(OTHER), 3);
    }
}
