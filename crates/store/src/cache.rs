//! A small bounded cache with approximate LRU eviction.
//!
//! Two generations: new and recently used entries go to `hot`; when `hot` holds half the
//! capacity it becomes `cold` (dropping the old `cold` wholesale) and a fresh `hot` starts. A hit
//! in `cold` moves the entry back to `hot`. Every operation is O(1), the cache never holds more
//! than `cap` entries, and an entry used at least once per half-capacity insertions is never
//! evicted. This is the classic "2Q-lite" scheme; it needs no linked list and no `unsafe`.

use std::collections::HashMap;
use std::hash::Hash;

/// A bounded map from `K` to `V`.
#[derive(Debug)]
pub(crate) struct Cache<K, V> {
    hot: HashMap<K, V>,
    cold: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq + Copy, V: Clone> Cache<K, V> {
    /// A cache holding at most `cap` entries (at least 2).
    pub(crate) fn new(cap: usize) -> Self {
        let half = (cap / 2).max(1);
        Self {
            hot: HashMap::with_capacity(half),
            cold: HashMap::new(),
            half,
        }
    }

    /// The value for `k`, if cached.
    pub(crate) fn get(&mut self, k: &K) -> Option<V> {
        if let Some(v) = self.hot.get(k) {
            return Some(v.clone());
        }
        let v = self.cold.remove(k)?;
        self.insert(*k, v.clone());
        Some(v)
    }

    /// Cache `v` for `k`, replacing any older value.
    pub(crate) fn insert(&mut self, k: K, v: V) {
        self.cold.remove(&k);
        if self.hot.len() >= self.half && !self.hot.contains_key(&k) {
            self.cold = std::mem::replace(&mut self.hot, HashMap::with_capacity(self.half));
        }
        self.hot.insert(k, v);
    }

    /// Forget `k`.
    pub(crate) fn remove(&mut self, k: &K) {
        self.hot.remove(k);
        self.cold.remove(k);
    }

    /// Forget everything.
    pub(crate) fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
    }

    /// Number of cached entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_its_capacity() {
        let mut c = Cache::new(8);
        for i in 0..1000u64 {
            c.insert(i, i * 2);
            assert!(c.len() <= 8);
            assert_eq!(c.get(&i), Some(i * 2));
        }
    }

    #[test]
    fn keeps_entries_in_use() {
        let mut c = Cache::new(8);
        c.insert(0u64, 0u64);
        for i in 1..1000u64 {
            c.insert(i, i);
            assert_eq!(c.get(&0), Some(0), "entry 0 evicted at {i}");
        }
        c.remove(&0);
        assert_eq!(c.get(&0), None);
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
