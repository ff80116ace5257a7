//! Telemetry in one place: metric names and handles ([`metrics`]) and log
//! setup ([`logging`]).
pub mod logging;
pub mod metrics;

pub use metrics::{ConsumerMetrics, FamilySource, ProducerMetrics, Telemetry};
