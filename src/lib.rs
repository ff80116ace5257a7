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
//! [`privacy`], [`dead_letter`]) and holds everything that touches the
//! world. Read the core first (its own `lib.rs`), then this crate in this
//! order (the README's "A newcomer's tour" says the same, submodules
//! included):
//!
//! 1. `main.rs` — the binary: parse, load the configuration, start logging
//!    and the async runtime, turn signals into the stop token, exit.
//! 2. [`commands`] — one module per subcommand: its options, the settings it
//!    reads, how it runs.
//! 3. [`config`] — every setting, declared once, read once from flags,
//!    environment and `.env`.
//! 4. [`runtime`] — the consumer runtime that owns Kafka: assignment,
//!    rebuild by replay, offsets, effects, dead letters, the graceful stop.
//! 5. [`consumers`] — the `analytics` and `fraud` apps on that runtime, with
//!    their business metrics.
//! 6. [`producer`] — the traffic simulator and the `produce` command.
//! 7. [`collect`] — the HTTP collector (`POST /v1/events`, the browser
//!    tracker) that turns requests into events on the activities topic.
//! 8. [`dlq`] — the dead-letter topic's tool: inspect and replay.
//! 9. [`kafka`], [`topics`], [`broker`] — every librdkafka client setting,
//!    topic administration, the embedded broker.
//! 10. [`http`], [`server`] — the pods' endpoints, their probes and the one
//!     small HTTP client; the one hardened HTTP server.
//! 11. [`telemetry`] — metrics, logs, traces, throttled warnings.
//! 12. [`shutdown`], [`probe`], [`demo`] — the stop token; the health check
//!     for images without curl; everything in one process.
//! 13. With the default `tools` feature (not in the container image): `bench`
//!     (the end-to-end benchmark), `fleet` (N local replicas of a consumer,
//!     scaled while they run) and `manifest` (the rendered manifests `fleet`
//!     runs).
//!
//! "The seed" is the Python demo the project grew from (see the README).
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every module file under `dir`, as its module name (`mod.rs` by its
    /// directory), test modules left out.
    fn modules(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if name == "tests" {
                continue;
            }
            if path.is_dir() {
                modules(&path, out);
            } else if name == "mod" {
                out.push(dir.file_name().unwrap().to_string_lossy().to_string());
            } else if name != "lib" && path.extension().is_some_and(|e| e == "rs") {
                out.push(name);
            }
        }
    }

    #[test]
    fn the_readme_tour_names_every_module() {
        let readme = include_str!("../README.md");
        let start = readme.find("### A newcomer's tour").expect("README has the tour");
        let tour = &readme[start..];
        let tour = &tour[..tour[4..].find("\n## ").map_or(tour.len(), |i| i + 4)];
        let named: std::collections::BTreeSet<&str> = tour
            .split('`')
            .skip(1)
            .step_by(2)
            .flat_map(|span| span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .collect();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut all = Vec::new();
        modules(&root.join("src"), &mut all);
        modules(&root.join("crates/core/src"), &mut all);
        let missing: Vec<&String> = all.iter().filter(|m| !named.contains(m.as_str())).collect();
        assert!(
            missing.is_empty(),
            "modules the README's tour does not name: {missing:?}"
        );
    }
}
