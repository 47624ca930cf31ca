//! A bounded set of block indices, kept as disjoint runs: what a remote peer says it has.
//!
//! JS keeps a remote bitfield in 2^21-bit segments (`lib/remote-bitfield.js`) without a bound
//! on how many a peer may make it allocate. We keep runs `start..end` in a `BTreeMap` and cap
//! their number ([`RangeSet::new`]): past the cap, new runs are dropped (the set then under-
//! reports what the peer has, which only makes us ask it less; wants and syncs repair it).

use std::collections::BTreeMap;

/// Disjoint, non-adjacent runs of block indices, at most `max_runs` of them.
#[derive(Debug, Clone)]
pub(crate) struct RangeSet {
    /// start → end (exclusive).
    runs: BTreeMap<u64, u64>,
    max_runs: usize,
}

impl RangeSet {
    pub(crate) fn new(max_runs: usize) -> Self {
        Self {
            runs: BTreeMap::new(),
            max_runs: max_runs.max(1),
        }
    }

    pub(crate) fn contains(&self, index: u64) -> bool {
        self.runs
            .range(..=index)
            .next_back()
            .is_some_and(|(_, &end)| index < end)
    }

    /// The first index `>= from` in the set.
    pub(crate) fn next_set(&self, from: u64) -> Option<u64> {
        if self.contains(from) {
            return Some(from);
        }
        self.runs.range(from..).next().map(|(&s, _)| s)
    }

    /// The first index `>= from` not in the set.
    #[cfg(test)]
    pub(crate) fn next_unset(&self, from: u64) -> u64 {
        match self.runs.range(..=from).next_back() {
            Some((_, &end)) if from < end => end,
            _ => from,
        }
    }

    /// Add `start..end`.
    pub(crate) fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Merge with a run that starts before and reaches `start`.
        if let Some((&ps, &pe)) = self.runs.range(..=start).next_back() {
            if pe >= start {
                s = ps;
                e = e.max(pe);
            }
        }
        // Swallow runs starting inside (or adjacent to) the new run.
        let inside: Vec<u64> = self.runs.range(s..=e).map(|(&k, _)| k).collect();
        for k in inside {
            if let Some(ke) = self.runs.remove(&k) {
                e = e.max(ke);
            }
        }
        if self.runs.len() >= self.max_runs {
            return;
        }
        self.runs.insert(s, e);
    }

    /// Remove `start..end`.
    pub(crate) fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if let Some((&ps, &pe)) = self.runs.range(..start).next_back() {
            if pe > start {
                self.runs.insert(ps, start);
                if pe > end {
                    self.insert_split(end, pe);
                }
            }
        }
        let inside: Vec<u64> = self.runs.range(start..end).map(|(&k, _)| k).collect();
        for k in inside {
            if let Some(ke) = self.runs.remove(&k) {
                if ke > end {
                    self.insert_split(end, ke);
                }
            }
        }
    }

    fn insert_split(&mut self, start: u64, end: u64) {
        if self.runs.len() < self.max_runs {
            self.runs.insert(start, end);
        }
    }

    /// Make `start..start + 32 * words.len()` exactly the bits of `words` (a `bitfield`
    /// message is the truth for the span it covers).
    pub(crate) fn set_words(&mut self, start: u64, words: &[u32]) {
        let end = start.saturating_add(32 * words.len() as u64);
        self.remove(start, end);
        let mut run: Option<u64> = None;
        for (w, &word) in words.iter().enumerate() {
            let base = start + 32 * w as u64;
            if word == u32::MAX && run.is_some() {
                continue;
            }
            if word == 0 && run.is_none() {
                continue;
            }
            for bit in 0..32 {
                let set = word >> bit & 1 == 1;
                match (set, run) {
                    (true, None) => run = Some(base + bit),
                    (false, Some(s)) => {
                        self.insert(s, base + bit);
                        run = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = run {
            self.insert(s, end);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.runs.clear();
    }

    #[cfg(test)]
    fn runs(&self) -> Vec<(u64, u64)> {
        self.runs.iter().map(|(&s, &e)| (s, e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn insert_merge_remove() {
        let mut s = RangeSet::new(100);
        s.insert(0, 3);
        s.insert(5, 7);
        s.insert(3, 5);
        assert_eq!(s.runs(), vec![(0, 7)]);
        s.remove(2, 4);
        assert_eq!(s.runs(), vec![(0, 2), (4, 7)]);
        assert!(s.contains(1) && !s.contains(2) && s.contains(6) && !s.contains(7));
        assert_eq!(s.next_set(2), Some(4));
        assert_eq!(s.next_unset(4), 7);
        s.set_words(32, &[0b1011]);
        assert_eq!(s.runs(), vec![(0, 2), (4, 7), (32, 34), (35, 36)]);
        s.set_words(0, &[u32::MAX, 0]);
        assert_eq!(s.runs(), vec![(0, 32)]);
    }

    #[test]
    fn bounded() {
        let mut s = RangeSet::new(4);
        for i in 0..100 {
            s.insert(2 * i, 2 * i + 1);
        }
        assert!(s.runs().len() <= 4);
        s.set_words(0, &[0x5555_5555; 1000]);
        assert!(s.runs().len() <= 4);
    }

    proptest! {
        #[test]
        fn model(ops in proptest::collection::vec((any::<bool>(), 0u64..200, 0u64..40), 0..60)) {
            let mut s = RangeSet::new(10_000);
            let mut model = vec![false; 256];
            for (add, start, len) in ops {
                let end = start + len;
                if add { s.insert(start, end) } else { s.remove(start, end) }
                for b in &mut model[start as usize..end as usize] { *b = add; }
                let runs = s.runs();
                for w in runs.windows(2) { prop_assert!(w[0].1 < w[1].0); }
            }
            for (i, &b) in model.iter().enumerate() {
                prop_assert_eq!(s.contains(i as u64), b, "index {}", i);
            }
        }
    }
}
