//! Per-partition offset bookkeeping: what may be committed, and from where a
//! future owner must replay.
//!
//! Kafka's contract is "commit offset N: every message before N is done".
//! An event is done when everything it caused is done — its alert or
//! dead-letter copy acknowledged by the broker, its analytics applied — so the
//! tracker keeps the events with effects in flight, in offset order, and the
//! committable offset is the first of them (or one past the last processed
//! event when none is in flight). Events without effects never enter the
//! queue, so the common case costs nothing.
//!
//! Each commit carries metadata for whoever owns the partition next:
//! `v1;wm=<ms>;from=<offset>;window=<ms>;done=<offset>[;handoff=1]` — the
//! processor's event time after everything before the committed offset, an
//! offset from which replaying rebuilds the processor's window exactly, and
//! one past the last event this owner processed (and counted): events
//! between the committed offset and `done` are processed again by the next
//! owner for their effects only. `from` comes from checkpoints: the first offset
//! at which the watermark reached each granule of event time. Every event
//! before such an offset is older than the checkpoint's time, so replaying
//! from the last checkpoint at or before `wm − window` misses nothing, on any
//! broker, even one (like librdkafka's mock cluster) that cannot look offsets
//! up by timestamp.

use std::collections::VecDeque;

/// Commit metadata decoded from a committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitMetadata {
    /// Event-time watermark of the events before the committed offset.
    pub watermark_ms: i64,
    /// Replaying from here rebuilds the window that was in force.
    pub replay_from: i64,
    /// The window `replay_from` was computed for.
    pub window_ms: i64,
    /// Written by an owner giving the partition up cleanly (revocation or
    /// shutdown): nothing after this offset was processed by it.
    pub handoff: bool,
    /// One past the last event the committing owner processed: it counted
    /// everything before this (its effects may still have been in flight).
    pub done: Option<i64>,
}

impl CommitMetadata {
    pub fn encode(&self) -> String {
        let handoff = if self.handoff { ";handoff=1" } else { "" };
        let done = self.done.map(|d| format!(";done={d}")).unwrap_or_default();
        format!(
            "v1;wm={};from={};window={}{done}{handoff}",
            self.watermark_ms, self.replay_from, self.window_ms
        )
    }

    /// Parses metadata written by [`CommitMetadata::encode`]; `None` for
    /// anything else (empty, other tools' metadata, older formats).
    pub fn decode(text: &str) -> Option<CommitMetadata> {
        let mut parts = text.split(';');
        if parts.next()? != "v1" {
            return None;
        }
        let mut wm = None;
        let mut from = None;
        let mut window = None;
        let mut handoff = false;
        let mut done = None;
        for part in parts {
            let (k, v) = part.split_once('=')?;
            let v: i64 = v.parse().ok()?;
            match k {
                "wm" => wm = Some(v),
                "from" => from = Some(v),
                "window" => window = Some(v),
                "handoff" => handoff = v == 1,
                "done" => done = Some(v),
                _ => {}
            }
        }
        Some(CommitMetadata {
            watermark_ms: wm?,
            replay_from: from?,
            window_ms: window.unwrap_or(0),
            handoff,
            done,
        })
    }
}

/// The part of an [`OffsetTracker`] a partition snapshot carries: the
/// watermarks and the checkpoints a later replay start is found from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedTracker {
    watermark_ms: i64,
    event_time_ms: i64,
    checkpoints: Vec<(i64, i64)>,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    offset: i64,
    remaining: u32,
    /// Watermark of the events before this one.
    watermark_before: i64,
}

/// Bookkeeping of one owned partition.
#[derive(Debug)]
pub struct OffsetTracker {
    window_ms: i64,
    granule_ms: i64,
    /// Events with effects not yet acknowledged, in offset order.
    in_flight: VecDeque<InFlight>,
    last_processed: Option<i64>,
    /// Largest event timestamp processed (what checkpoints are taken on).
    watermark_ms: i64,
    /// The processor's event time after the last processed event (what a
    /// rebuild window is measured back from); never above `watermark_ms`.
    event_time_ms: i64,
    /// (granule start time, first offset at which the watermark reached it).
    checkpoints: VecDeque<(i64, i64)>,
    /// The offset and metadata last handed to Kafka, to avoid re-storing.
    last_stored: Option<i64>,
}

/// Checkpoints per window: replay starts at most a 1/512 window early.
const CHECKPOINTS_PER_WINDOW: i64 = 512;

impl OffsetTracker {
    pub fn new(window_ms: i64) -> OffsetTracker {
        OffsetTracker {
            window_ms,
            granule_ms: (window_ms / CHECKPOINTS_PER_WINDOW).max(1_000),
            in_flight: VecDeque::new(),
            last_processed: None,
            watermark_ms: i64::MIN,
            event_time_ms: i64::MIN,
            checkpoints: VecDeque::new(),
            last_stored: None,
        }
    }

    /// Records that the event at `offset` (timestamp `time_ms`, or `None`
    /// for a message that could not be decoded) was processed, with
    /// `effects` outstanding acknowledgements, leaving the processor's event
    /// time at `event_time_ms`.
    pub fn processed(&mut self, offset: i64, time_ms: Option<i64>, effects: u32, event_time_ms: i64) {
        if effects > 0 {
            self.in_flight.push_back(InFlight {
                offset,
                remaining: effects,
                watermark_before: self.event_time_ms,
            });
        }
        self.event_time_ms = event_time_ms;
        self.last_processed = Some(offset);
        if let Some(t) = time_ms
            && t > self.watermark_ms
        {
            let granule = t.div_euclid(self.granule_ms) * self.granule_ms;
            let previous = self.checkpoints.back().map(|&(g, _)| g);
            if previous.is_none_or(|g| granule > g) {
                self.checkpoints.push_back((granule, offset));
            }
            self.watermark_ms = t;
            self.prune_checkpoints();
        }
    }

    /// One effect of the event at `offset` was acknowledged.
    pub fn acknowledged(&mut self, offset: i64) {
        if let Ok(i) = self.in_flight.binary_search_by_key(&offset, |f| f.offset) {
            let entry = &mut self.in_flight[i];
            entry.remaining = entry.remaining.saturating_sub(1);
        }
        while self.in_flight.front().is_some_and(|f| f.remaining == 0) {
            self.in_flight.pop_front();
        }
    }

    /// Effects still in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The offset that may be committed now with its metadata, if any event
    /// has been processed.
    pub fn committable(&self) -> Option<(i64, CommitMetadata)> {
        let last = self.last_processed?;
        let (offset, watermark) = match self.in_flight.front() {
            Some(f) => (f.offset, f.watermark_before),
            None => (last + 1, self.event_time_ms),
        };
        let replay_from = if watermark == i64::MIN {
            offset
        } else {
            let target = watermark.saturating_sub(self.window_ms);
            self.checkpoints
                .iter()
                .rev()
                .find(|&&(t, _)| t <= target)
                .or_else(|| self.checkpoints.front())
                .map(|&(_, o)| o.min(offset))
                .unwrap_or(offset)
        };
        Some((
            offset,
            CommitMetadata {
                watermark_ms: watermark,
                replay_from,
                window_ms: self.window_ms,
                handoff: false,
                done: Some(last + 1),
            },
        ))
    }

    /// The committable offset if it moved since the last call (for storing).
    pub fn take_new_committable(&mut self) -> Option<(i64, CommitMetadata)> {
        let (offset, metadata) = self.committable()?;
        if self.last_stored == Some(offset) {
            return None;
        }
        self.last_stored = Some(offset);
        Some((offset, metadata))
    }

    pub fn watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    pub fn next_offset(&self) -> Option<i64> {
        self.last_processed.map(|o| o + 1)
    }

    /// What a snapshot keeps of this bookkeeping: enough for the owner that
    /// restores it to write the same commit metadata as this one would.
    pub fn saved(&self) -> SavedTracker {
        SavedTracker {
            watermark_ms: self.watermark_ms,
            event_time_ms: self.event_time_ms,
            checkpoints: self.checkpoints.iter().copied().collect(),
        }
    }

    /// The bookkeeping of a partition restored from a snapshot taken when
    /// every event before `next_offset` had been processed.
    pub fn restored(window_ms: i64, next_offset: i64, saved: SavedTracker) -> OffsetTracker {
        let mut tracker = OffsetTracker::new(window_ms);
        tracker.watermark_ms = saved.watermark_ms;
        tracker.event_time_ms = saved.event_time_ms;
        tracker.checkpoints = saved.checkpoints.into();
        tracker.last_processed = Some(next_offset - 1);
        tracker
    }

    /// Keeps the checkpoints a replay could still need: everything newer than
    /// `watermark − window − granule`, plus the last one before that — where
    /// the watermark is the one the next commit carries: that of the oldest
    /// event still in flight, which can be far behind the newest event (an
    /// alert waiting out a broker outage while event time moves on).
    fn prune_checkpoints(&mut self) {
        let committed_watermark = self
            .in_flight
            .front()
            .map_or(self.event_time_ms, |f| f.watermark_before.min(self.event_time_ms));
        let horizon = committed_watermark.saturating_sub(self.window_ms + self.granule_ms);
        while self.checkpoints.len() > 1 && self.checkpoints[1].0 <= horizon {
            self.checkpoints.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes with the processor's event time at the largest timestamp.
    fn step(t: &mut OffsetTracker, offset: i64, time: Option<i64>, effects: u32) {
        let event_time = time.map_or(t.event_time_ms, |x| x.max(t.event_time_ms));
        t.processed(offset, time, effects, event_time);
    }

    #[test]
    fn committable_waits_for_the_oldest_effect() {
        let mut t = OffsetTracker::new(60_000);
        assert_eq!(t.committable(), None);
        step(&mut t, 10, Some(1_000), 0);
        assert_eq!(t.committable().unwrap().0, 11);
        step(&mut t, 11, Some(2_000), 1); // an alert in flight
        step(&mut t, 12, Some(3_000), 0);
        step(&mut t, 13, Some(4_000), 2); // two effects
        step(&mut t, 14, Some(5_000), 0);
        assert_eq!(t.committable().unwrap().0, 11, "11 is not done");
        assert_eq!(t.committable().unwrap().1.watermark_ms, 1_000, "watermark before 11");
        assert_eq!(t.committable().unwrap().1.done, Some(15), "processed up to 14");
        t.acknowledged(13);
        assert_eq!(t.committable().unwrap().0, 11, "acks out of order do not skip 11");
        t.acknowledged(11);
        assert_eq!(t.committable().unwrap().0, 13, "13 still has one effect");
        t.acknowledged(13);
        assert_eq!(t.committable().unwrap().0, 15);
        assert_eq!(t.committable().unwrap().1.watermark_ms, 5_000);
        assert_eq!(t.in_flight(), 0);
        t.acknowledged(99); // unknown offsets are ignored
    }

    #[test]
    fn new_committable_is_reported_once() {
        let mut t = OffsetTracker::new(60_000);
        step(&mut t, 0, Some(1), 0);
        assert_eq!(t.take_new_committable().unwrap().0, 1);
        assert_eq!(t.take_new_committable(), None);
        step(&mut t, 1, None, 0);
        assert_eq!(t.take_new_committable().unwrap().0, 2);
    }

    #[test]
    fn replay_from_covers_the_window() {
        let window = 60_000;
        let mut t = OffsetTracker::new(window);
        // One event per second for ten minutes, offsets 100.. .
        for i in 0..600 {
            step(&mut t, 100 + i, Some(i * 1_000), 0);
        }
        let (offset, m) = t.committable().unwrap();
        assert_eq!(offset, 700);
        assert_eq!(m.watermark_ms, 599_000);
        // Every event within the window before the watermark is replayed.
        let first_needed = 100 + (599_000 - window) / 1_000;
        assert!(m.replay_from <= first_needed, "{} > {first_needed}", m.replay_from);
        assert!(m.replay_from >= first_needed - 2, "replays at most a granule more");
    }

    #[test]
    fn replay_from_is_safe_with_out_of_order_event_times() {
        let mut t = OffsetTracker::new(10_000);
        let times = [50_000, 20_000, 70_000, 65_000, 90_000, 61_000, 100_000];
        for (i, &time) in times.iter().enumerate() {
            step(&mut t, i as i64, Some(time), 0);
        }
        let m = t.committable().unwrap().1;
        // Window starts at 90 s: events needed are those with time >= 90 s,
        // i.e. offsets 4 and 6; everything before replay_from must be older.
        for (i, &time) in times.iter().enumerate() {
            if (i as i64) < m.replay_from {
                assert!(time < 90_000, "offset {i} ({time}) skipped but inside the window");
            }
        }
    }

    /// Finding: pruning followed the newest event time, so while an old
    /// event's effect stayed in flight the checkpoints its commit needs were
    /// dropped, and the replay start came out too late.
    #[test]
    fn checkpoints_a_pending_commit_needs_outlive_newer_event_time() {
        let window = 60_000;
        let mut t = OffsetTracker::new(window);
        // Offsets 0..=100, one per second; offset 70 waits for its alert.
        for offset in 0..=100 {
            step(&mut t, offset, Some(offset * 1_000), u32::from(offset == 70));
        }
        // Event time runs on for ten minutes while the alert is in flight.
        for offset in 101..=700 {
            step(&mut t, offset, Some(offset * 1_000), 0);
        }
        let (committed, meta) = t.committable().unwrap();
        assert_eq!(committed, 70);
        assert_eq!(meta.watermark_ms, 69_000);
        // Everything from 69 s − 60 s = 9 s on must be replayed.
        assert!(
            meta.replay_from <= 9,
            "replay from {} misses the window",
            meta.replay_from
        );
    }

    #[test]
    fn checkpoints_stay_bounded() {
        let mut t = OffsetTracker::new(3_600_000);
        for i in 0..1_000_000 {
            step(&mut t, i, Some(i * 100), 0);
        }
        assert!(
            t.checkpoints.len() <= CHECKPOINTS_PER_WINDOW as usize + 3,
            "{}",
            t.checkpoints.len()
        );
    }

    #[test]
    fn metadata_round_trips_and_rejects_foreign_text() {
        let mut m = CommitMetadata {
            watermark_ms: 1_705_312_800_000,
            replay_from: 42,
            window_ms: 7_200_000,
            handoff: false,
            done: None,
        };
        assert_eq!(CommitMetadata::decode(&m.encode()), Some(m));
        m.done = Some(57);
        assert_eq!(CommitMetadata::decode(&m.encode()), Some(m));
        m.handoff = true;
        assert_eq!(CommitMetadata::decode(&m.encode()), Some(m));
        assert!(m.encode().ends_with(";handoff=1"));
        assert_eq!(CommitMetadata::decode(""), None);
        assert_eq!(CommitMetadata::decode("v2;wm=1;from=2"), None);
        assert_eq!(CommitMetadata::decode("v1;wm=x;from=2"), None);
        assert_eq!(CommitMetadata::decode("v1;from=2"), None);
    }

    #[test]
    fn first_event_commits_with_itself_as_replay_start() {
        let mut t = OffsetTracker::new(60_000);
        step(&mut t, 5, None, 0);
        let (offset, m) = t.committable().unwrap();
        assert_eq!((offset, m.replay_from, m.watermark_ms), (6, 6, i64::MIN));
    }
}
