//! activity-tracker: real-time user-activity analytics and fraud detection
//! on Kafka, run as a fleet of stateless consumer pods.
//!
//! ```text
//! simulator ──► Kafka `user-activities` (key = user_id)
//!      ──► consumer runtime (one state per owned partition)
//!            ├─► analytics processor (pure) ──► /report, /metrics, console report
//!            └─► fraud processor (pure)     ──► `fraud-alerts`, /metrics, console alert
//!      bad input ──► `user-activities-dlq`
//! ```
//!
//! Two crates. `activity-tracker-core` (`crates/core`) is the pure part: the
//! event model, event time, the processor contract and both processors, with
//! no Kafka, no async runtime and no I/O; this crate re-exports its modules
//! ([`event`], [`eventtime`], [`processor`], [`analytics`], [`fraud`],
//! [`privacy`]) and holds everything that touches the world. Read the core
//! first (its own `lib.rs`), then this crate top-down:
//!
//! - [`config`] — every setting, read once from flags, environment and `.env`.
//! - [`runtime`] — the consumer runtime that owns Kafka: assignment, rebuild
//!   by replay, offsets, dead letters, graceful shutdown.
//! - [`consumers`] — the `analytics` and `fraud` commands on that runtime.
//! - [`producer`] — the traffic simulator and the `produce` command.
//! - [`collect`] — the HTTP collector (`POST /v1/events`, the browser
//!   tracker) that turns requests into events on the activities topic.
//! - [`dlq`] — the dead-letter topic's tool: inspect and replay.
//! - [`broker`], [`topics`], [`kafka`] — the embedded broker, topic
//!   administration, and every librdkafka client setting.
//! - [`telemetry`], [`server`], [`http`] — metrics, logs and traces; the one
//!   hardened HTTP server; the pods' endpoints.
//! - [`demo`] — everything in one process; [`fleet`] — N local replicas of a
//!   consumer, scaled while they run, optionally as a rendered manifest
//!   ([`manifest`]) configures them; [`bench`] — the end-to-end benchmark.
//! - [`commands`] — the command line: one module per subcommand, each with
//!   its options, the settings it reads and how it runs.
//! - [`shutdown`], [`probe`] — the stop token; the health check for images
//!   without curl.
#[cfg(feature = "tools")]
pub mod bench;
pub mod broker;
pub mod collect;
pub mod commands;
pub mod config;
pub mod consumers;
pub mod demo;
pub mod dlq;
#[cfg(feature = "tools")]
pub mod fleet;
pub mod http;
pub mod kafka;
#[cfg(feature = "tools")]
pub mod manifest;
pub mod probe;
pub mod producer;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod topics;

// The pure core, re-exported under its old paths so `crate::event` and
// `activity_tracker::fraud` keep naming the same things.
pub use activity_tracker_core::{analytics, dead_letter, event, eventtime, fraud, privacy, processor};
