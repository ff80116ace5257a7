//! Telemetry in one place: metric names and handles ([`metrics`]), the
//! processors' business metrics ([`business`]), log
//! setup ([`logging`]), and traces across Kafka ([`trace`]).
pub mod business;
pub mod logging;
pub mod metrics;
pub mod throttle;
pub mod trace;

pub use metrics::{ConsumerMetrics, FamilySource, ProducerMetrics, Telemetry};
