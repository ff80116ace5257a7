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
//! Read it top-down, one module at a time:
//!
//! - [`config`] — every setting, read once from flags, environment and `.env`.
//! - [`event`] and [`eventtime`] — the event schema and the one decoder.
//! - [`processor`] — the contract between pure processors and the runtime.
//! - [`analytics`] and [`fraud`] — the two pure processors.
//! - [`runtime`] — the consumer runtime that owns Kafka: assignment, rebuild
//!   by replay, offsets, dead letters, graceful shutdown.
//! - [`consumers`] — the `analytics` and `fraud` commands on that runtime.
//! - [`producer`] — the traffic simulator and the `produce` command.
//! - [`broker`], [`topics`], [`kafka`] — the embedded broker, topic
//!   administration, and every librdkafka client setting.
//! - [`telemetry`], [`http`] — metrics, logs, and the HTTP endpoints.
//! - [`demo`] — everything in one process; [`fleet`] — N local replicas of a
//!   consumer, scaled while they run.
//! - [`privacy`], [`shutdown`], [`cli`] — small supporting pieces.
pub mod analytics;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod collect;
pub mod config;
pub mod consumers;
pub mod demo;
pub mod dlq;
pub mod event;
pub mod eventtime;
pub mod fleet;
pub mod fraud;
pub mod http;
pub mod kafka;
pub mod manifest;
pub mod privacy;
pub mod probe;
pub mod processor;
pub mod producer;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod topics;
