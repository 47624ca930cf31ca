//! [`Runs`]: a set of block indices kept as disjoint, non-adjacent runs `start → end`, so that
//! stepping over hundreds of consecutive members is one lookup (requests in flight, blocks
//! verified and not committed yet).

use std::collections::BTreeMap;

/// A set of `u64` as runs `start..end`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Runs {
    runs: BTreeMap<u64, u64>,
}

impl Runs {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub(crate) fn contains(&self, index: u64) -> bool {
        self.skip(index) != index
    }

    /// The first index at or after `index` that is not in the set.
    pub(crate) fn skip(&self, index: u64) -> u64 {
        match self.runs.range(..=index).next_back() {
            Some((_, &end)) if index < end => end,
            _ => index,
        }
    }

    /// Add `index` (no-op when present).
    pub(crate) fn insert(&mut self, index: u64) {
        if self.contains(index) {
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

    /// Remove `index`; whether it was present.
    pub(crate) fn remove(&mut self, index: u64) -> bool {
        let Some((&s, &e)) = self.runs.range(..=index).next_back() else {
            return false;
        };
        if index >= e {
            return false;
        }
        if s < index {
            self.runs.insert(s, index);
        } else {
            self.runs.remove(&s);
        }
        if index + 1 < e {
            self.runs.insert(index + 1, e);
        }
        true
    }

    pub(crate) fn clear(&mut self) {
        self.runs.clear();
    }

    /// The runs, in order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(&s, &e)| (s, e))
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
            let mut runs = Runs::new();
            let mut model = BTreeSet::new();
            for (add, i) in ops {
                if add {
                    runs.insert(i);
                    model.insert(i);
                } else {
                    prop_assert_eq!(runs.remove(i), model.remove(&i));
                }
                for j in 0..66 {
                    let mut k = j;
                    while model.contains(&k) {
                        k += 1;
                    }
                    prop_assert_eq!(runs.skip(j), k, "skip({})", j);
                    prop_assert_eq!(runs.contains(j), model.contains(&j));
                }
                // Runs are disjoint and not adjacent.
                let mut last = None;
                for (s, e) in runs.iter() {
                    prop_assert!(s < e);
                    if let Some(l) = last {
                        prop_assert!(l < s);
                    }
                    last = Some(e);
                }
            }
            prop_assert_eq!(runs.is_empty(), model.is_empty());
        }
    }
}
