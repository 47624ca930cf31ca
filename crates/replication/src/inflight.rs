//! The blocks of one log requested and not yet answered, with who was asked, and the runs they
//! form, so the scheduler steps over a window of hundreds of requests in one lookup instead of
//! one per block.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::hash::Hash;

/// Block index → owner, plus the same set as disjoint runs `start → end` (exclusive).
#[derive(Debug)]
pub(crate) struct InflightBlocks<P> {
    owner: HashMap<u64, P>,
    runs: BTreeMap<u64, u64>,
}

impl<P: Copy + Eq + Hash> InflightBlocks<P> {
    pub(crate) fn new() -> Self {
        Self {
            owner: HashMap::new(),
            runs: BTreeMap::new(),
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
        match self.runs.range(..=index).next_back() {
            Some((_, &end)) if index < end => end,
            _ => index,
        }
    }

    pub(crate) fn insert(&mut self, index: u64, owner: P) {
        if self.owner.insert(index, owner).is_some() {
            return;
        }
        let end = index.saturating_add(1);
        let before = self
            .runs
            .range(..index)
            .next_back()
            .filter(|&(_, &e)| e == index)
            .map(|(&s, _)| s);
        let after = self.runs.remove(&end);
        let start = before.unwrap_or(index);
        self.runs.insert(start, after.unwrap_or(end));
    }

    pub(crate) fn remove(&mut self, index: &u64) -> Option<P> {
        let owner = self.owner.remove(index)?;
        let index = *index;
        if let Some((&s, &e)) = self.runs.range(..=index).next_back() {
            if index < e {
                if s < index {
                    self.runs.insert(s, index);
                } else {
                    self.runs.remove(&s);
                }
                if index + 1 < e {
                    self.runs.insert(index + 1, e);
                }
            }
        }
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
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn runs_match_the_set(ops in proptest::collection::vec((any::<bool>(), 0u64..64), 0..300)) {
            let mut b = InflightBlocks::new();
            let mut model = BTreeSet::new();
            for (add, i) in ops {
                if add {
                    b.insert(i, 7u8);
                    model.insert(i);
                } else {
                    prop_assert_eq!(b.remove(&i).is_some(), model.remove(&i));
                }
                for j in 0..66 {
                    let mut k = j;
                    while model.contains(&k) {
                        k += 1;
                    }
                    prop_assert_eq!(b.skip(j), k, "skip({})", j);
                    prop_assert_eq!(b.contains_key(&j), model.contains(&j));
                }
                // Runs are disjoint and not adjacent.
                let mut last = None;
                for (&s, &e) in &b.runs {
                    prop_assert!(s < e);
                    if let Some(l) = last {
                        prop_assert!(l < s);
                    }
                    last = Some(e);
                }
            }
            b.drain();
            prop_assert!(b.is_empty() && b.runs.is_empty());
        }
    }
}
