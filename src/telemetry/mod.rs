//! Telemetry in one place, independent of the domain: metric names and
//! handles ([`metrics`]; the consumers add their business families through
//! [`FamilySource`]), log setup ([`logging`]), repeated-log throttling
//! ([`throttle`]) and traces across Kafka ([`trace`]).
pub mod logging;
pub mod metrics;
pub mod throttle;
pub mod trace;

pub use metrics::{ConsumerMetrics, FamilySource, ProducerMetrics, Telemetry};
