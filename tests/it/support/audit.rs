//! Checking what a run did: the consumers' audit trails, every offset
//! processed, and every produced event in the activities topic once.

use std::collections::BTreeMap;

use super::ACTIVITIES;
use super::topics::{Received, high_watermarks, read_all};

/// (partition, offset) → how many times it was processed live, from the
/// `AUDIT_LOG` files in `dir` whose names start with `consumer` ("" = all);
/// empty while no consumer has created `dir` yet.
pub fn audit(dir: &std::path::Path, consumer: &str) -> BTreeMap<(i32, i64), u32> {
    let mut seen = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return seen,
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with(consumer) {
            continue;
        }
        for (p, o, _) in audit_lines(&path) {
            *seen.entry((p, o)).or_default() += 1;
        }
    }
    seen
}

/// The complete `partition offset unix_ms` lines of one audit file. A line
/// still being written (no newline yet) is not a record: the process writing
/// it may be running, or may have been killed mid-write.
pub fn audit_lines(path: &std::path::Path) -> Vec<(i32, i64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            let mut parts = line.split(' ').map(|part| {
                part.parse::<u64>()
                    .unwrap_or_else(|e| panic!("audit line {line:?} of {}: {e}", path.display()))
            });
            let mut next = || {
                parts
                    .next()
                    .unwrap_or_else(|| panic!("short audit line {line:?} of {}", path.display()))
            };
            (next() as i32, next() as i64, next())
        })
        .collect()
}

/// Asserts every offset of `topic` was processed at least once; returns how
/// many were processed more than once (extra copies).
pub fn assert_every_offset_processed(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    seen: &BTreeMap<(i32, i64), u32>,
) -> u32 {
    let mut duplicates = 0;
    for (p, high) in high_watermarks(bootstrap, topic, partitions) {
        for o in 0..high {
            let n = seen.get(&(p, o)).copied().unwrap_or(0);
            assert!(n >= 1, "partition {p} offset {o} was never processed");
            duplicates += n - 1;
        }
    }
    duplicates
}

/// Waits for the producer of a run under failure and checks that it
/// delivered every one of `events`, each exactly once in the activities
/// topic (the idempotent producer wrote no duplicate). Returns its stats
/// and the topic's messages.
pub fn assert_produced_exactly_once(
    producer: std::thread::JoinHandle<anyhow::Result<activity_tracker::producer::ProduceStats>>,
    bootstrap: &str,
    events: u64,
) -> (activity_tracker::producer::ProduceStats, Vec<Received>) {
    let stats = producer.join().unwrap().expect("the producer finishes");
    assert_eq!(
        (stats.sent, stats.delivered, stats.failed),
        (events, events, 0),
        "every event acknowledged, none failed"
    );
    let messages = read_all(bootstrap, ACTIVITIES);
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| m.json()["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (messages.len() as u64, ids.len() as u64),
        (events, events),
        "every event in the topic once (the idempotent producer wrote no duplicate)"
    );
    (stats, messages)
}
