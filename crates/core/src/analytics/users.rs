//! One user's windowed activity (events per quarter-window, funnel stages,
//! the open session), and the HyperLogLog sketches that count users beyond
//! the exact-tracking cap.

use serde::{Deserialize, Serialize};

use super::hll::HyperLogLog;
use super::sessions::{Ctx, Session};
use crate::prehashed::PrehashedMap;

/// Quarter-window buckets of a user's event count: the window's four and
/// the one it is sliding into.
pub(super) const COUNT_BUCKETS: usize = 5;

/// One user's recent activity. Times are seconds since the epoch; 0 = never.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct UserActivity {
    pub(super) last_seen: u32,
    pub(super) stage_seen: [u32; 5],
    /// Events per quarter-window bucket of event time (`counts[b % 5]` for
    /// bucket `b`; the newest is `last_seen`'s): "events in the window" is a
    /// sum over whole buckets, so it depends only on events a rebuild
    /// replays (window plus one quarter), never on older history. 16 bits
    /// saturate at 65,535 events per user per quarter-window — a bot's
    /// figure, shown as that.
    pub(super) counts: [u16; COUNT_BUCKETS],
    pub(super) session_key: u32,
    pub(super) session_start: u32,
    pub(super) session_last: u32,
    /// The user's earliest on-time event (seconds) since the record was
    /// made: a session starting later is a returning user's.
    pub(super) earliest: u32,
    /// The source of the user's latest session (a label id of the
    /// partition; 0: none), and that session's start (seconds).
    pub(super) source: u32,
    pub(super) source_at: u32,
}

impl UserActivity {
    /// Whether `session` is a returning user's: the user was active before
    /// it (within the record's life: the user has been seen within
    /// ANALYTICS_WINDOW all along).
    pub(super) fn returning(&self, session: &Session) -> bool {
        self.earliest != 0 && self.earliest < session.start_s()
    }

    /// Remembers `session`'s source if it is the user's latest session
    /// (ties: the greater source name, so the arrival order cannot decide).
    pub(super) fn latest_session(&mut self, session: &Session, ctx: &Ctx<'_>) {
        let at = session.start_s();
        let greater = || Session::label(ctx.labels, session.source) > Session::label(ctx.labels, self.source);
        if self.source == 0 || at > self.source_at || (at == self.source_at && greater()) {
            self.source = session.source;
            self.source_at = at;
        }
    }

    /// Counts an event at `ts` in buckets of `quarter` seconds; call before
    /// `last_seen` takes the event into account. Late events in a bucket
    /// already slid out are not counted.
    pub(super) fn count(&mut self, ts: u32, quarter: u32) {
        let b = ts / quarter;
        let newest = self.last_seen / quarter;
        if self.last_seen == 0 || b > newest {
            let fresh = if self.last_seen == 0 {
                COUNT_BUCKETS as u32
            } else {
                (b - newest).min(COUNT_BUCKETS as u32)
            };
            for i in 0..fresh {
                self.counts[(b.wrapping_sub(i) as usize) % COUNT_BUCKETS] = 0;
            }
        } else if newest - b >= COUNT_BUCKETS as u32 {
            return;
        }
        let slot = &mut self.counts[(b as usize) % COUNT_BUCKETS];
        *slot = slot.saturating_add(1);
    }

    /// Events in buckets `first..` (the window as of some watermark).
    pub(super) fn events_since(&self, first: u32, quarter: u32) -> u32 {
        let newest = self.last_seen / quarter;
        let oldest = newest.saturating_sub(COUNT_BUCKETS as u32 - 1).max(first);
        (oldest..=newest)
            .map(|b| u32::from(self.counts[(b as usize) % COUNT_BUCKETS]))
            .sum()
    }
}

/// A snapshot's users: none with a session ending before it starts (session
/// durations subtract the one from the other).
pub(super) fn consistent_users<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PrehashedMap<UserActivity>, D::Error> {
    let users = PrehashedMap::<UserActivity>::deserialize(d)?;
    crate::snapshot::require(
        users.values().all(|u| u.session_start <= u.session_last),
        "a user whose session ends before it starts",
    )?;
    Ok(users)
}

/// Distinct users beyond the exact cap, in time buckets of a quarter window,
/// so that old buckets can be dropped as the window slides.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct OverflowSketch {
    /// (bucket number, [all users, users per stage]), oldest first.
    #[serde(deserialize_with = "overflow_buckets")]
    pub(super) buckets: Vec<(u32, Box<[HyperLogLog; 6]>)>,
}

pub(super) const OVERFLOW_BUCKETS: usize = 5;

type Buckets = Vec<(u32, Box<[HyperLogLog; 6]>)>;

/// A snapshot's sketch buckets: at most [`OVERFLOW_BUCKETS`], oldest first.
fn overflow_buckets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Buckets, D::Error> {
    let buckets = Buckets::deserialize(d)?;
    crate::snapshot::require(
        buckets.len() <= OVERFLOW_BUCKETS && buckets.is_sorted_by(|a, b| a.0 < b.0),
        "sketch buckets too many or out of order",
    )?;
    Ok(buckets)
}

impl OverflowSketch {
    pub(super) fn insert(&mut self, bucket: u32, user_hash: u64, stage: usize) {
        let position = match self.buckets.iter().position(|(b, _)| *b == bucket) {
            Some(p) => p,
            None => {
                self.buckets.push((bucket, Box::default()));
                self.buckets.sort_by_key(|(b, _)| *b);
                if self.buckets.len() > OVERFLOW_BUCKETS {
                    self.buckets.remove(0);
                }
                match self.buckets.iter().position(|(b, _)| *b == bucket) {
                    Some(p) => p,
                    None => return, // older than every kept bucket
                }
            }
        };
        let sketches = &mut self.buckets[position].1;
        sketches[0].insert_hash(user_hash);
        sketches[1 + stage].insert_hash(user_hash);
    }

    /// Estimated distinct users (index 0) and per stage (1..=5) in buckets
    /// from `first_bucket` on.
    pub(super) fn estimates(&self, first_bucket: u32) -> [u64; 6] {
        let mut union: [HyperLogLog; 6] = Default::default();
        for (b, sketches) in &self.buckets {
            if *b >= first_bucket {
                for (u, s) in union.iter_mut().zip(sketches.iter()) {
                    u.merge(s);
                }
            }
        }
        let mut out = [0; 6];
        for (o, u) in out.iter_mut().zip(union.iter()) {
            *o = u.estimate();
        }
        out
    }
}
