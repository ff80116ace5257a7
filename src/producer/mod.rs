//! The event simulator and the `produce` command.
pub mod catalog;
pub mod simulator;
