//! The black-box integration tests, linked as one test binary (each suite
//! is a module; linking librdkafka once instead of per suite saves minutes).
//! One suite links on its own: `tests/trace_propagation.rs` installs the
//! process-wide tracing subscriber.
//!
//! Every suite starts its own broker through [`support::broker`]: the
//! embedded broker by default, real Apache Kafka (`scripts/kafka`) with
//! `TEST_BROKER=kafka`. Suites whose meaning is Kafka's own behaviour
//! (rebuild by timestamp, leader failover, authentication, TLS) always run
//! on real Kafka through [`support::kafka`].

mod support;

mod acquisition;
mod auth;
mod browser;
mod cli;
mod collector;
mod failover;
mod faults;
mod fleet;
mod fuzz;
mod hostile;
mod ordering;
mod pipeline;
mod rebuild;
mod recovery;
mod reliability;
