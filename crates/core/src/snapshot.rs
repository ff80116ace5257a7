//! Partition snapshots: a processor's partition state as bytes and back, so
//! that a new owner can restore a partition from the state topic and replay
//! only the tail after it instead of the whole window
//! (`docs/snapshots.md`).
//!
//! The encoding is postcard (serde, compact, not self-describing): a value
//! is read back only as the type it was written as, so every snapshot is
//! tagged with [`FORMAT_VERSION`] and the processor's
//! [`state_fingerprint`](crate::processor::Processor::state_fingerprint) by
//! the runtime, and a snapshot whose tags differ is not used.
//!
//! Decoding is safe on any bytes: it returns an error rather than panic,
//! preallocates no more than serde's cautious size hints (at most 1 MiB per
//! collection whatever a length prefix claims; postcard reports a sequence
//! longer than the bytes left as having no hint at all), and the state types
//! rebuild their derived indexes themselves and reject the inconsistencies
//! that would make processing panic (an index out of bounds, a clamp or a
//! subtraction the wrong way round). It does not prove that a well-formed
//! state is the one that was written: the runtime's checksum does that.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The version of the snapshot encoding. Bump it whenever the serialized
/// layout of any partition state type changes (a field added, removed,
/// reordered or retyped, in `fraud` or `analytics` or `eventtime`): a
/// snapshot of another version is not used.
pub const FORMAT_VERSION: u32 = 1;

/// Why bytes are not a state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes end early, hold an impossible value or describe an
    /// inconsistent state.
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    /// A whole state was read and bytes remain: not what was written.
    #[error("malformed snapshot: {0} bytes after the state")]
    TrailingBytes(usize),
}

/// The bytes of `state`.
///
/// Encoding into a growing vector cannot fail for the state types: postcard
/// fails only on a sequence of unknown length (the states hold vectors,
/// maps and sets, whose lengths are known) or on an error a `Serialize`
/// impl raises (theirs raise none).
pub fn encode<S: Serialize>(state: &S) -> Vec<u8> {
    postcard::to_allocvec(state).expect("partition states have sequences of known length and raise no errors")
}

/// The state `bytes` encode; every byte must belong to it.
pub fn decode<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, SnapshotError> {
    let (state, rest) = postcard::take_from_bytes(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SnapshotError::TrailingBytes(rest.len()));
    }
    Ok(state)
}

/// FNV-1a, 64 bits, of `text`: the same value in every build, on every
/// platform and Rust version (unlike `std`'s hashers), so that two pods
/// compare fingerprints they computed apart.
pub fn fingerprint(text: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    text.bytes()
        .fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

/// A processor's state fingerprint, from its `kind`, its `settings` (their
/// `Debug` form: every field, never a secret's value), the value its table
/// hasher gives a fixed probe (user ids are kept by that hash, so a hasher
/// that changed would give users other keys), the format version and this
/// crate's version. `Debug` output is not promised stable across Rust
/// versions: where it changes, the fingerprint changes, which costs a
/// replay, never a wrong state.
pub(crate) fn state_fingerprint(
    kind: &str,
    settings: &dyn std::fmt::Debug,
    hasher: &impl std::hash::BuildHasher,
) -> u64 {
    let probe = hasher.hash_one(b"activity-tracker snapshot probe".as_slice());
    fingerprint(&format!(
        "{kind} state, snapshot format {FORMAT_VERSION}, activity-tracker-core {}, hasher probe {probe:016x}: {settings:?}",
        env!("CARGO_PKG_VERSION")
    ))
}

/// A cheap validation for a field read from a snapshot: `check` holds, or
/// the field is rejected as `what`. (postcard keeps that an error was
/// raised, not its text: [`decode`] then says "Serde Deserialization
/// Error".)
pub(crate) fn require<E: serde::de::Error>(check: bool, what: &str) -> Result<(), E> {
    if check { Ok(()) } else { Err(E::custom(what)) }
}

/// What the processors' snapshot tests share.
#[cfg(test)]
pub(crate) mod checks {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// `bytes` (a real encoding of an `S`) cut short at `cut` is an error,
    /// and with `flips` applied decodes or fails, never panics.
    pub(crate) fn damaged_copies_fail_cleanly<S: DeserializeOwned>(
        bytes: &[u8],
        cut: Index,
        flips: &[(Index, u8)],
    ) -> Result<(), TestCaseError> {
        let n = cut.index(bytes.len());
        prop_assert!(
            decode::<S>(&bytes[..n]).is_err(),
            "a prefix of {} of {} bytes decoded",
            n,
            bytes.len()
        );
        let mut corrupted = bytes.to_vec();
        for (at, bits) in flips {
            corrupted[at.index(bytes.len())] ^= bits;
        }
        let _ = decode::<S>(&corrupted);
        Ok(())
    }

    /// Pseudo-random numbers below `n`, the same on every run
    /// (xorshift64), for the measurements' traffic.
    pub(crate) fn numbers() -> impl FnMut(u64) -> u64 {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        }
    }

    /// Prints the encoded bytes per user and the encoding and decoding
    /// rates (median of five runs) of `state`, which tracks `users` users in
    /// `heap_bytes`.
    pub(crate) fn measure<S: Serialize + DeserializeOwned>(name: &str, state: &S, users: usize, heap_bytes: usize) {
        use std::time::Instant;
        let bytes = encode(state);
        let mut encoding = Vec::new();
        let mut decoding = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let encoded = encode(std::hint::black_box(state));
            encoding.push(start.elapsed().as_secs_f64());
            assert_eq!(encoded.len(), bytes.len());
            let start = Instant::now();
            let decoded = decode::<S>(std::hint::black_box(&bytes));
            decoding.push(start.elapsed().as_secs_f64());
            assert!(decoded.is_ok(), "{name} decodes");
        }
        let median = |mut times: Vec<f64>| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        };
        let rate = |seconds: f64| bytes.len() as f64 / seconds / 1e6;
        println!(
            "{name}: {users} users, {:.0} heap bytes per user; snapshot {} bytes, {:.1} per user; encode {:.0} MB/s ({:.1} ms), decode {:.0} MB/s ({:.1} ms)",
            heap_bytes as f64 / users as f64,
            bytes.len(),
            bytes.len() as f64 / users as f64,
            rate(median(encoding.clone())),
            median(encoding) * 1e3,
            rate(median(decoding.clone())),
            median(decoding) * 1e3,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_fnv_1a_64() {
        // The reference vectors of the FNV authors.
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fingerprint("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fingerprints_follow_the_settings_that_change_a_state() {
        use std::time::Duration;

        use crate::analytics::{AnalyticsConfig, AnalyticsProcessor};
        use crate::fraud::{FraudConfig, FraudDetector, FraudRules};
        use crate::privacy::{IpPrivacy, IpRenderer, Secret};
        use crate::processor::Processor;

        let fraud = |config: FraudConfig, privacy: IpPrivacy| {
            FraudDetector::new(FraudRules::from_config(&config), IpRenderer::new(privacy)).state_fingerprint()
        };
        let base = FraudConfig::default;
        let fingerprint = fraud(base(), IpPrivacy::None);
        assert_eq!(
            fingerprint,
            fraud(base(), IpPrivacy::None),
            "a function of the settings"
        );
        for other in [
            FraudConfig {
                allowed_lateness: Duration::from_secs(900),
                ..base()
            },
            FraudConfig {
                velocity_threshold: 6,
                ..base()
            },
            FraudConfig {
                multiple_ip_threshold: 4,
                ..base()
            },
            FraudConfig {
                rapid_location_change: Duration::from_secs(300),
                ..base()
            },
            FraudConfig {
                cooldown: Some(Duration::from_secs(60)),
                ..base()
            },
            FraudConfig {
                high_value_threshold: 750.0,
                ..base()
            },
        ] {
            assert_ne!(fraud(other.clone(), IpPrivacy::None), fingerprint, "{other:?}");
        }
        assert_ne!(fraud(base(), IpPrivacy::Truncate), fingerprint);
        // The mode, never the key: a fingerprint is written next to the state.
        let hashed = |key: &str| fraud(base(), IpPrivacy::Hash(Secret::new(key)));
        assert_eq!(hashed("a key of sixteen bytes"), hashed("another key, as long"));

        let analytics = |config: AnalyticsConfig| AnalyticsProcessor::new(config).state_fingerprint();
        let base = AnalyticsConfig::default;
        let fingerprint = analytics(base());
        assert_eq!(fingerprint, analytics(base()));
        for other in [
            AnalyticsConfig {
                window: Duration::from_secs(1800),
                ..base()
            },
            AnalyticsConfig {
                session_timeout: Duration::from_secs(900),
                ..base()
            },
            AnalyticsConfig {
                max_users_per_partition: 1_000,
                ..base()
            },
            AnalyticsConfig {
                allowed_lateness: Duration::from_secs(900),
                ..base()
            },
            AnalyticsConfig {
                site_domains: vec!["shop.example.com".into()],
                ..base()
            },
        ] {
            assert_ne!(analytics(other.clone()), fingerprint, "{other:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_are_errors_not_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = decode::<crate::fraud::FraudPartition>(&bytes);
            let _ = decode::<crate::analytics::AnalyticsPartition>(&bytes);
        }
    }

    #[test]
    fn decode_rejects_trailing_and_missing_bytes() {
        let bytes = encode(&(7u32, String::from("seven")));
        assert_eq!(decode::<(u32, String)>(&bytes), Ok((7, "seven".to_string())));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode::<(u32, String)>(&longer), Err(SnapshotError::TrailingBytes(1)));
        assert!(matches!(
            decode::<(u32, String)>(&bytes[..bytes.len() - 1]),
            Err(SnapshotError::Malformed(_))
        ));
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        // A collection claiming 2^63 - 1 elements, with none behind them:
        // preallocating that many would abort the process.
        let mut bytes = vec![0xff; 9];
        bytes.push(0x7f);
        assert!(decode::<Vec<u64>>(&bytes).is_err());
        assert!(decode::<std::collections::HashMap<u64, u64>>(&bytes).is_err());
    }
}
