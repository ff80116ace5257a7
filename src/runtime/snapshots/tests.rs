use proptest::prelude::*;

use super::*;

const FP: &str = "0123456789abcdef";

/// A state topic partition after `written`, compacted or not (reading keeps
/// the latest value of each key either way).
fn apply(topic: &mut HashMap<String, Vec<u8>>, written: &[(String, Option<Vec<u8>>)]) {
    for (key, value) in written {
        match value {
            Some(v) => topic.insert(key.clone(), v.clone()),
            None => topic.remove(key),
        };
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn usable_offsets(topic: &HashMap<String, Vec<u8>>, from: i64, committed: i64) -> Vec<i64> {
    choose(topic, FP, 3, from, committed)
        .0
        .iter()
        .map(|f| f.manifest.offset)
        .collect()
}

#[test]
fn a_snapshot_reads_back_whole_at_any_size() {
    for len in [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 5] {
        let mut topic = HashMap::new();
        let mut cursor = Cursor::default();
        let state = payload(len, 7);
        apply(&mut topic, &records(FP, 3, 100, &state, 42, 0, &mut cursor));
        let (usable, refused, next) = choose(&topic, FP, 3, 0, 100);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(usable.len(), 1);
        assert_eq!(usable[0].payload, state, "{len} bytes");
        assert_eq!(usable[0].manifest.chunks as usize, len.div_ceil(CHUNK_BYTES).max(1));
        assert_eq!(next.next_slot, 1, "the next snapshot keeps this one");
    }
}

#[test]
fn slots_alternate_and_a_shorter_snapshot_clears_the_older_chunks() {
    let mut topic = HashMap::new();
    let mut cursor = Cursor::default();
    apply(
        &mut topic,
        &records(FP, 3, 10, &payload(3 * CHUNK_BYTES, 1), 1, 0, &mut cursor),
    );
    apply(&mut topic, &records(FP, 3, 20, &payload(10, 2), 2, 0, &mut cursor));
    assert_eq!(usable_offsets(&topic, 0, 100), vec![20, 10]);
    // The third goes over the first (slot a), with one chunk where it had three.
    apply(&mut topic, &records(FP, 3, 30, &payload(5, 3), 3, 0, &mut cursor));
    assert_eq!(usable_offsets(&topic, 0, 100), vec![30, 20]);
    assert!(topic.contains_key("a/0") && !topic.contains_key("a/1") && !topic.contains_key("a/2"));
    // A new owner continues from what it read: the oldest slot next.
    let (_, _, read) = choose(&topic, FP, 3, 0, 100);
    assert_eq!(read.next_slot, 1);
    assert_eq!(read.chunks, [1, 1]);
}

#[test]
fn a_snapshot_is_refused_with_its_reason() {
    let mut topic = HashMap::new();
    let mut cursor = Cursor::default();
    apply(&mut topic, &records(FP, 3, 50, &payload(1000, 9), 5, 0, &mut cursor));
    let refused = |topic: &HashMap<String, Vec<u8>>, fp: &str, partition: i32, from: i64, committed: i64| {
        let (usable, refused, _) = choose(topic, fp, partition, from, committed);
        assert!(usable.is_empty());
        refused.join("; ")
    };
    assert!(refused(&topic, "fedcba9876543210", 3, 0, 100).contains("other settings"));
    assert!(refused(&topic, FP, 4, 0, 100).contains("partition 3"));
    assert!(refused(&topic, FP, 3, 0, 49).contains("ahead of the committed offset 49"));
    assert!(refused(&topic, FP, 3, 51, 100).contains("older than the replay window"));
    assert_eq!(usable_offsets(&topic, 50, 50), vec![50], "at both bounds it is usable");
    let mut corrupt = topic.clone();
    corrupt.get_mut("a/0").unwrap()[500] ^= 1;
    assert!(refused(&corrupt, FP, 3, 0, 100).contains("checksum"));
    let mut torn = topic.clone();
    torn.get_mut("a/manifest").unwrap().truncate(10);
    assert!(refused(&torn, FP, 3, 0, 100).contains("unreadable manifest"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A writer that stops (crashes) anywhere while writing its snapshots
    /// never leaves a snapshot that reads back wrong: what is usable is
    /// always exactly one that was written whole, and the newest whole one
    /// in the slot not being written over is always there.
    #[test]
    fn a_crash_mid_write_never_yields_a_wrong_snapshot(
        sizes in prop::collection::vec(0usize..3 * CHUNK_BYTES, 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut cursor = Cursor::default();
        let mut log: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        let mut whole: Vec<(usize, i64, Vec<u8>)> = Vec::new(); // (end in log, offset, payload)
        for (i, &len) in sizes.iter().enumerate() {
            let state = payload(len, i as u8);
            let offset = 100 * (i as i64 + 1);
            log.extend(records(FP, 3, offset, &state, i as u64 + 1, 0, &mut cursor));
            whole.push((log.len(), offset, state));
        }
        let cut = cut.index(log.len() + 1);
        let mut topic = HashMap::new();
        apply(&mut topic, &log[..cut]);
        let (usable, _, _) = choose(&topic, FP, 3, 0, i64::MAX);
        for found in &usable {
            let written = whole.iter().find(|(end, offset, _)| *end <= cut && *offset == found.manifest.offset);
            prop_assert!(written.is_some(), "offset {} was never written whole", found.manifest.offset);
            prop_assert_eq!(&found.payload, &written.unwrap().2);
        }
        // The newest whole snapshot survives unless the one being written
        // after it is already whole too (then that one is there instead).
        if let Some((_, newest, _)) = whole.iter().rev().find(|(end, _, _)| *end <= cut) {
            prop_assert_eq!(usable.first().map(|f| f.manifest.offset), Some(*newest));
        }
    }
}
