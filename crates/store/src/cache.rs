//! A small bounded cache with approximate LRU eviction.
//!
//! Two generations: new and recently used entries go to `hot`; when `hot` holds half the
//! capacity it becomes `cold` (dropping the old `cold` wholesale) and a fresh `hot` starts. A hit
//! in `cold` moves the entry back to `hot`. Every operation is O(1), the cache never holds more
//! than `cap` entries, and an entry used at least once per half-capacity insertions is never
//! evicted. This is the classic "2Q-lite" scheme; it needs no linked list and no `unsafe`.

use std::collections::HashMap;
use std::hash::Hash;

use crate::seeded::Seeded;

/// A bounded map from `K` to `V`.
#[derive(Debug)]
pub(crate) struct Cache<K, V> {
    hot: HashMap<K, V, Seeded>,
    cold: HashMap<K, V, Seeded>,
    half: usize,
}

impl<K: Hash + Eq + Copy, V: Clone> Cache<K, V> {
    /// A cache holding at most `cap` entries (at least 2). Nothing is allocated up front: the
    /// tables grow with use, so a thousand open logs that each read a few nodes cost a few
    /// hundred bytes each, not `cap` entries each.
    pub(crate) fn new(cap: usize) -> Self {
        let half = (cap / 2).max(1);
        let hasher = Seeded::default();
        Self {
            hot: HashMap::with_hasher(hasher),
            cold: HashMap::with_hasher(hasher),
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

    /// The value for `k`, if cached, without counting it as a use.
    pub(crate) fn peek(&self, k: &K) -> Option<&V> {
        self.hot.get(k).or_else(|| self.cold.get(k))
    }

    /// The value for `k`, if cached, to change in place, without counting it as a use.
    pub(crate) fn peek_mut(&mut self, k: &K) -> Option<&mut V> {
        match self.hot.get_mut(k) {
            Some(v) => Some(v),
            None => self.cold.get_mut(k),
        }
    }

    /// Cache `v` for `k`, replacing any older value.
    pub(crate) fn insert(&mut self, k: K, v: V) {
        self.cold.remove(&k);
        if self.hot.len() >= self.half && !self.hot.contains_key(&k) {
            // The old `cold` is dropped; its table is reused for the new `hot`.
            std::mem::swap(&mut self.hot, &mut self.cold);
            self.hot.clear();
        }
        self.hot.insert(k, v);
    }

    /// Forget `k`.
    pub(crate) fn remove(&mut self, k: &K) {
        self.hot.remove(k);
        self.cold.remove(k);
    }

    /// Forget everything.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
    }

    /// Number of cached entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }

    /// Entries the two tables have room for (what the cache's memory is sized by).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.hot.capacity() + self.cold.capacity()
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
    fn allocates_with_use_not_up_front() {
        let mut c: Cache<u64, [u8; 40]> = Cache::new(4096);
        assert_eq!(c.capacity(), 0, "a new cache holds no table");
        for i in 0..10u64 {
            c.insert(i, [0; 40]);
        }
        assert!(
            c.capacity() < 64,
            "10 entries took room for {}",
            c.capacity()
        );
        for i in 0..100_000u64 {
            c.insert(i, [0; 40]);
        }
        // Two tables of at most half the capacity each, rounded up by the hash map.
        assert!(c.capacity() <= 2 * 4096, "grew to {}", c.capacity());
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
