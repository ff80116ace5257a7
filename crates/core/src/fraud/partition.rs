//! The fraud state of one partition: its users, its event clock, the place
//! names kept for evidence, the purchases and transactional events waiting
//! for the watermark, and the caps and byte counts that bound them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::state::{PrehashedMap, UserTable};
use crate::eventtime::EventClock;

/// Distinct (country, city) names kept per partition for alert evidence
/// (each name cut to [`crate::event::MAX_LABEL_BYTES`]); places beyond it
/// are compared by hash as ever and shown as unknown in evidence.
pub(super) const LOCATION_NAMES_CAP: usize = 10_000;
/// Purchases awaiting the watermark per partition. Beyond this (a partition
/// taking more than 100,000 purchases per ALLOWED_LATENESS) the oldest is
/// decided early, with what has arrived.
pub(super) const PENDING_PURCHASES_CAP: usize = 100_000;
/// On-time transactional events awaiting the watermark per partition.
/// Beyond this the oldest is settled early (into its user's two newest).
pub(super) const UNSETTLED_CAP: usize = 200_000;

/// The fraud state of one partition.
///
/// A snapshot holds the fields that are not derived from others
/// (`SavedPartition`); the others are rebuilt when it is read back.
#[derive(Serialize, Deserialize)]
#[serde(from = "SavedPartition")]
pub struct FraudPartition {
    pub(super) users: UserTable,
    pub(super) clock: EventClock,
    pub(super) last_sweep_ms: i64,
    pub(super) location_names: HashMap<u32, (Box<str>, Box<str>)>,
    /// Purchases whose PURCHASE_WITHOUT_ACTIVITY verdict waits for the
    /// watermark, by (event time, hash of the event id).
    pub(super) pending: BTreeMap<(i64, u64), PendingPurchase>,
    /// Pending purchases per user key.
    #[serde(skip_serializing)]
    pub(super) pending_users: PrehashedMap<u32>,
    /// Approximate heap bytes of `pending` and `pending_users`.
    #[serde(skip_serializing)]
    pub(super) pending_bytes: usize,
    /// Approximate heap bytes of `location_names`.
    #[serde(skip_serializing)]
    pub(super) location_bytes: usize,
    /// On-time transactional events the watermark has not passed yet, by
    /// (user key, event time) and by (event time, user key), with their
    /// number: PURCHASE_WITHOUT_ACTIVITY counts a purchase's earlier
    /// activity here and in the user's settled times, exactly, whatever
    /// order the events arrived in.
    pub(super) unsettled: BTreeMap<(u64, i64), (u32, u32)>,
    #[serde(skip_serializing)]
    pub(super) unsettled_by_time: BTreeMap<(i64, u64), (u32, u32)>,
}

/// What a snapshot holds of a [`FraudPartition`]: its serialized fields, in
/// its order (the encoding is by position).
#[derive(Deserialize)]
struct SavedPartition {
    users: UserTable,
    clock: EventClock,
    last_sweep_ms: i64,
    location_names: HashMap<u32, (Box<str>, Box<str>)>,
    pending: BTreeMap<(i64, u64), PendingPurchase>,
    unsettled: BTreeMap<(u64, i64), (u32, u32)>,
}

impl From<SavedPartition> for FraudPartition {
    /// Rebuilds the indexes and byte counts from what they index and count.
    fn from(saved: SavedPartition) -> FraudPartition {
        let mut pending_users = PrehashedMap::default();
        for p in saved.pending.values() {
            *pending_users.entry(p.user_key).or_insert(0) += 1;
        }
        FraudPartition {
            pending_bytes: saved.pending.values().map(PendingPurchase::heap_bytes).sum(),
            location_bytes: saved
                .location_names
                .values()
                .map(|(country, city)| location_name_bytes(country, city))
                .sum(),
            unsettled_by_time: saved.unsettled.iter().map(|(&(user, t), &n)| ((t, user), n)).collect(),
            users: saved.users,
            clock: saved.clock,
            last_sweep_ms: saved.last_sweep_ms,
            location_names: saved.location_names,
            pending: saved.pending,
            pending_users,
            unsettled: saved.unsettled,
        }
    }
}

/// Approximate heap bytes of one unsettled event (both indexes).
const UNSETTLED_ENTRY_BYTES: usize = 2 * (std::mem::size_of::<((u64, i64), (u32, u32))>() + 8);

/// Heap bytes of a location name entry besides its text.
const LOCATION_NAME_OVERHEAD: usize = std::mem::size_of::<(u32, (Box<str>, Box<str>))>() + 1;

/// Approximate heap bytes of a location name entry.
pub(super) fn location_name_bytes(country: &str, city: &str) -> usize {
    LOCATION_NAME_OVERHEAD + country.len() + city.len()
}

impl PendingPurchase {
    /// Approximate heap bytes: the B-tree entry and the two strings, plus the
    /// per-user count.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<((i64, u64), PendingPurchase)>() + self.user_id.len() + self.event_id.len() + 16
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct PendingPurchase {
    pub(super) user_key: u64,
    pub(super) user_id: Box<str>,
    pub(super) event_id: Box<str>,
    pub(super) record: Option<(i32, i64)>,
    pub(super) amount: f64,
    /// Other transactional events of the user in the hour up to it, so far.
    pub(super) prior: u32,
}

impl FraudPartition {
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.users.heap_bytes()
            + self.pending_bytes
            + self.location_bytes
            + self.unsettled_by_time.len() * UNSETTLED_ENTRY_BYTES
    }

    /// The partition's event time (`i64::MIN` before any event).
    pub fn event_time_ms(&self) -> i64 {
        self.clock.time()
    }

    /// Purchases waiting for the watermark.
    pub fn pending_purchases(&self) -> usize {
        self.pending.len()
    }
}
