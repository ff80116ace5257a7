//! HyperLogLog distinct counting, for users beyond the exact-tracking cap.
//!
//! Precision 12: 4,096 one-byte registers (4 KiB), standard error about
//! 1.6 %. Used only once a partition tracks `ANALYTICS_MAX_USERS_PER_PARTITION`
//! users exactly; below that every distinct count is exact.

const PRECISION: u32 = 12;
const REGISTERS: usize = 1 << PRECISION;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HyperLogLog {
    #[serde(deserialize_with = "registers")]
    registers: Box<[u8]>,
}

/// A snapshot's registers: exactly [`REGISTERS`] of them.
fn registers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<[u8]>, D::Error> {
    let registers = <Box<[u8]> as serde::Deserialize>::deserialize(d)?;
    crate::snapshot::require(registers.len() == REGISTERS, "a sketch without 4,096 registers")?;
    Ok(registers)
}

impl Default for HyperLogLog {
    fn default() -> Self {
        HyperLogLog {
            registers: vec![0u8; REGISTERS].into_boxed_slice(),
        }
    }
}

impl HyperLogLog {
    /// Adds an element by a 64-bit hash. The hash is re-mixed first: table
    /// hashers such as foldhash's fast variant are not uniform enough in
    /// their top bits for register ranks.
    pub fn insert_hash(&mut self, hash: u64) {
        let hash = fmix64(hash);
        let index = (hash >> (64 - PRECISION)) as usize;
        let rest = hash << PRECISION | 1 << (PRECISION - 1);
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.registers[index] {
            self.registers[index] = rank;
        }
    }

    /// Merges another sketch into this one (set union).
    pub fn merge(&mut self, other: &HyperLogLog) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.registers.iter().all(|&r| r == 0)
    }

    /// Estimated number of distinct elements.
    pub fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut sum = 0.0;
        let mut zeros = 0;
        for &r in self.registers.iter() {
            sum += 1.0 / f64::from(1u32 << r.min(31));
            if r == 0 {
                zeros += 1;
            }
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            // Small range: linear counting is far more accurate.
            m * (m / f64::from(zeros)).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

/// MurmurHash3's 64-bit finaliser: full avalanche of every input bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash(i: u64) -> u64 {
        foldhash::fast::FixedState::with_seed(1).hash_one(i)
    }

    #[test]
    fn estimates_within_a_few_percent() {
        for n in [10u64, 1_000, 100_000, 1_000_000] {
            let mut h = HyperLogLog::default();
            for i in 0..n {
                h.insert_hash(hash(i));
                h.insert_hash(hash(i)); // duplicates do not count
            }
            let e = h.estimate() as f64;
            let error = (e - n as f64).abs() / n as f64;
            assert!(error < 0.05, "n={n} estimate={e}");
        }
    }

    #[test]
    fn merge_is_union() {
        let mut a = HyperLogLog::default();
        let mut b = HyperLogLog::default();
        for i in 0..50_000 {
            a.insert_hash(hash(i));
            b.insert_hash(hash(i + 25_000));
        }
        a.merge(&b);
        let e = a.estimate() as f64;
        assert!((e - 75_000.0).abs() / 75_000.0 < 0.05, "{e}");
        assert!(!a.is_empty());
        assert!(HyperLogLog::default().is_empty());
        assert_eq!(HyperLogLog::default().estimate(), 0);
    }
}
