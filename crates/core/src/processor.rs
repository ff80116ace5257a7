//! The contract between a pure processor and the consumer runtime.
//!
//! A processor (analytics, fraud) sees decoded events of one partition at a
//! time together with that partition's state, and returns what happened. It
//! never touches Kafka, files or the wall clock: time is the event's
//! timestamp. That is what lets the runtime move a partition between pods by
//! dropping its state on one and rebuilding it on another by replay — the
//! replay produces the same state because the processor is a function of the
//! events alone.
//!
//! The whole contract is six things: a fresh state for a newly owned
//! partition, `process`, the partition's event time, the event-time window a
//! rebuild must replay back from it, the [`Mode`] flag that says whether
//! effects are wanted (live) or only state (warm-up during a rebuild), and
//! the state as bytes: it encodes and decodes with serde
//! ([`crate::snapshot`]), so a rebuild can start from a snapshot and replay
//! only what came after it — if the snapshot was made under the same
//! [`Processor::state_fingerprint`].

use crate::event::Event;

/// Whether the runtime wants effects from this event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normal processing: update state, count, emit.
    Live,
    /// Rebuild by replay: update windowed state only. Nothing is emitted and
    /// nothing is counted, because the event was already counted and acted
    /// on when it was first processed (possibly by another pod).
    Warmup,
    /// Processed again after a hand-over whose effects were not all
    /// acknowledged: the previous owner counted the event but its alert may
    /// not have reached Kafka. Update state and emit (the same alert ids
    /// again), count nothing.
    Redo,
}

impl Mode {
    /// Whether the event is counted in volume figures.
    pub fn counts(self) -> bool {
        self == Mode::Live
    }

    /// Whether the event's effects (alerts) are wanted.
    pub fn emits(self) -> bool {
        self != Mode::Warmup
    }
}

/// A pure, per-partition stream processor.
pub trait Processor: Send + 'static {
    /// Everything the processor remembers about one partition. It encodes
    /// to a snapshot and decodes back ([`crate::snapshot`]): processing
    /// goes on from the decoded state exactly as from the original.
    type State: Send + 'static + serde::Serialize + serde::de::DeserializeOwned;
    /// What the processor emits (alerts for fraud; nothing for analytics).
    type Output: Send + 'static;

    /// A state for a partition this process just started owning.
    fn new_state(&self) -> Self::State;

    /// How much event time before the committed position a rebuild must
    /// replay so that the state afterwards equals the state of a process that
    /// had owned the partition all along. Zero means nothing to rebuild.
    fn rebuild_window_ms(&self) -> i64;

    /// The partition's event time after the events processed so far
    /// (`i64::MIN` before any): what a hand-over's rebuild window is measured
    /// back from. It must be such that every event at or after
    /// `event_time − rebuild_window` rebuilds it.
    fn event_time_ms(&self, state: &Self::State) -> i64;

    /// A fingerprint of every setting that changes what a state means
    /// (windows, thresholds, lateness, caps, IP privacy…), with the snapshot
    /// [`FORMAT_VERSION`](crate::snapshot::FORMAT_VERSION) and this crate's
    /// version (`CARGO_PKG_VERSION`). A snapshot made under another
    /// fingerprint is not used: the partition is rebuilt by replay.
    fn state_fingerprint(&self) -> u64;

    /// Processes one valid event of the partition whose state is `state`.
    fn process(&mut self, state: &mut Self::State, event: &Event<'_>, mode: Mode, out: &mut Vec<Self::Output>);
}
