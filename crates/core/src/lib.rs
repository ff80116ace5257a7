//! The pure core of activity-tracker: what an event is, what time it is, and
//! what the two processors conclude from events. No Kafka, no async runtime,
//! no I/O — the compiler enforces it, since this crate depends on neither
//! rdkafka nor tokio — so everything here is a function of the events it is
//! given and is tested in milliseconds.
//!
//! "The seed", in these docs, is the Python demo the project grew from (see
//! the README): its event format, rules and report titles are kept.
//!
//! Read it in this order:
//!
//! - [`event`] — the event schema and the one decoder every entry point uses.
//! - [`eventtime`] — event time: timestamps, a partition's clock robust to
//!   forged times, the watermark and the allowed lateness.
//! - [`processor`] — the contract between a processor and the runtime that
//!   feeds it (per-partition state, modes, effects).
//! - [`analytics`] — the analytics processor: counts, funnel, revenue,
//!   distinct users in event-time windows, with bounded memory.
//! - [`fraud`] — the fraud processor: six rules judged at each event's own
//!   time, in any arrival order within the lateness.
//! - [`privacy`] — how IP addresses leave the process (as is, truncated or
//!   hashed).
//! - [`dead_letter`] — the `dlq.*` headers of a dead-letter copy, named once
//!   and typed, with their encoding.
//! - [`snapshot`] — a partition's state as bytes and back, so that a new
//!   owner restores it and replays only the tail.
//! - [`money`] and [`prehashed`] — amounts as people read them; maps keyed
//!   by a hash already computed. Both processors use them, neither owns them.
pub mod analytics;
pub mod dead_letter;
pub mod event;
pub mod eventtime;
pub mod fraud;
pub mod money;
pub mod prehashed;
pub mod privacy;
pub mod processor;
pub mod snapshot;
