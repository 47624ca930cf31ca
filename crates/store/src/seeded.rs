//! [`Seeded`] hashing for maps keyed by integers (block and tree indices, page numbers, request
//! ids): a seeded multiply-and-fold instead of SipHash, which costs more than the lookups these
//! maps are for (the store's page cache, the replicator's scheduler and verification look up
//! several per block). A random seed per map keeps a peer that picks the indices it sends from
//! aiming at one bucket; every such map is bounded by what we verified, cached or requested.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A `HashMap` with `u64` keys and [`Seeded`] hashing.
pub type U64Map<V> = HashMap<u64, V, Seeded>;

/// A random odd seed per map.
#[derive(Debug, Clone, Copy)]
pub struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Self {
        Self(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1)
    }
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

/// See [`Seeded`]: mix each word in by multiplying, fold the high bits into the low ones that
/// pick the bucket.
#[derive(Debug)]
pub struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let h = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }

    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_keys_spread_over_buckets() {
        let s = Seeded::default();
        let buckets: std::collections::HashSet<u64> =
            (0..1024u64).map(|k| s.hash_one(k) & 1023).collect();
        assert!(
            buckets.len() > 600,
            "{} buckets of 1024 used",
            buckets.len()
        );
        let mut m: U64Map<u64> = U64Map::default();
        for k in 0..1000 {
            m.insert(k * 2, k);
        }
        assert_eq!(m.get(&1998), Some(&999));
        assert_eq!(m.get(&1999), None);
    }
}
