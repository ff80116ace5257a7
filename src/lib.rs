//! activity-tracker: real-time user-activity analytics and fraud detection on Kafka.
//!
//! Read this crate top-down, one module at a time:
//!
//! - [`config`] — every setting, read once from flags, environment and `.env`.
//! - [`event`] and [`eventtime`] — the event schema and the one decoder.
//! - [`processor`] — the contract between pure processors and the runtime.
//! - [`analytics`] and [`fraud`] — the two pure processors.
//! - [`producer`] — the traffic simulator and the `produce` command.
//! - [`privacy`] — how IP addresses may leave the process.
pub mod analytics;
pub mod config;
pub mod event;
pub mod eventtime;
pub mod fraud;
pub mod privacy;
pub mod processor;
pub mod producer;
