//! The blocks of one log requested and not yet answered, with who was asked, and the runs they
//! form, so the scheduler steps over a window of hundreds of requests in one lookup instead of
//! one per block.

use std::hash::Hash;

use crate::runs::Runs;
use peerhost_store::seeded::U64Map;

/// Block index → owner, plus the same set as [`Runs`].
#[derive(Debug)]
pub(crate) struct InflightBlocks<P> {
    owner: U64Map<P>,
    runs: Runs,
}

impl<P: Copy + Eq + Hash> InflightBlocks<P> {
    pub(crate) fn new() -> Self {
        Self {
            owner: U64Map::default(),
            runs: Runs::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    pub(crate) fn contains_key(&self, index: &u64) -> bool {
        self.owner.contains_key(index)
    }

    pub(crate) fn get(&self, index: &u64) -> Option<&P> {
        self.owner.get(index)
    }

    /// The first index at or after `index` that is not in flight.
    pub(crate) fn skip(&self, index: u64) -> u64 {
        self.runs.skip(index)
    }

    pub(crate) fn insert(&mut self, index: u64, owner: P) {
        if self.owner.insert(index, owner).is_none() {
            self.runs.insert(index);
        }
    }

    pub(crate) fn remove(&mut self, index: &u64) -> Option<P> {
        let owner = self.owner.remove(index)?;
        self.runs.remove(*index);
        Some(owner)
    }

    pub(crate) fn clear(&mut self) {
        self.owner.clear();
        self.runs.clear();
    }

    /// Take every entry out.
    pub(crate) fn drain(&mut self) -> std::collections::hash_map::Drain<'_, u64, P> {
        self.runs.clear();
        self.owner.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_runs_agree() {
        let mut b = InflightBlocks::new();
        for i in [3u64, 4, 5, 9] {
            b.insert(i, i as u8);
        }
        assert_eq!(b.skip(3), 6);
        assert_eq!(b.skip(9), 10);
        assert_eq!(b.remove(&4), Some(4));
        assert_eq!(b.skip(3), 4);
        assert_eq!(b.get(&5), Some(&5));
        assert!(!b.contains_key(&4));
        b.drain();
        assert!(b.is_empty() && b.skip(5) == 5);
    }
}
