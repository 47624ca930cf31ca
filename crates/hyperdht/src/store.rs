//! What a persistent node keeps for others, with TTLs and hard caps: JS's `xache` (two
//! generations plus retained entries) and `record-cache` (records per topic), driven by
//! explicit `now` instead of `setInterval`.
//!
//! Both caches age the same way: entries go into the *latest* generation; every
//! `ceil(2/3 · max_age)` (and whenever the latest generation reaches its size or byte cap) the
//! oldest generation is dropped and the latest becomes the oldest. An entry therefore lives
//! between 2/3 and 4/3 of `max_age` after its last write (or read, for [`Cache::get`]), and a
//! cache holds at most twice its cap. Retained entries (our own servers' routes) never age.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;

/// Caps and lifetimes of a node's storage (`defaultCacheOpts` in hyperdht `index.js`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreLimits {
    /// Entries per generation of the record, route, refresh and bump caches (JS `maxSize`,
    /// 65536); mutable and immutable caches get half.
    pub max_size: usize,
    /// Lifetime of records, routes, refreshes and bumps (JS `maxAge`, 20 min).
    pub max_age: Duration,
    /// Lifetime of mutable and immutable values (JS: 48 h).
    pub max_value_age: Duration,
    /// Bytes per generation of the mutable and of the immutable cache (ours; JS counts
    /// entries only). Values are at most a datagram (2 KiB), so the entry cap alone allows
    /// ~64 MiB per generation; this caps it lower.
    pub max_value_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_size: 65_536,
            max_age: Duration::from_secs(20 * 60),
            max_value_age: Duration::from_secs(48 * 60 * 60),
            max_value_bytes: 16 * 1024 * 1024,
        }
    }
}

fn gc_interval(max_age: Duration) -> Duration {
    // > const tick = Math.ceil((2 / 3) * this.maxAge)
    (max_age * 2 / 3).max(Duration::from_millis(1))
}

/// A two-generation cache with retained entries (JS `xache`), keyed by 32-byte targets.
#[derive(Debug)]
pub(crate) struct Cache<V> {
    max_size: usize,
    max_bytes: usize,
    interval: Duration,
    latest: HashMap<[u8; 32], (V, usize)>,
    latest_bytes: usize,
    oldest: HashMap<[u8; 32], (V, usize)>,
    retained: HashMap<[u8; 32], V>,
    gced: bool,
    next_gc: Instant,
}

impl<V> Cache<V> {
    pub(crate) fn new(max_size: usize, max_bytes: usize, max_age: Duration, now: Instant) -> Self {
        let interval = gc_interval(max_age);
        Self {
            max_size: max_size.max(1),
            max_bytes: max_bytes.max(1),
            interval,
            latest: HashMap::new(),
            latest_bytes: 0,
            oldest: HashMap::new(),
            retained: HashMap::new(),
            gced: false,
            next_gc: now + interval,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.latest.len() + self.oldest.len() + self.retained.len()
    }

    /// Insert `v` (weighing `bytes`) unless `k` is retained (JS `set`).
    pub(crate) fn set(&mut self, k: [u8; 32], v: V, bytes: usize) {
        if self.retained.contains_key(&k) {
            return;
        }
        if let Some((_, old)) = self.latest.insert(k, (v, bytes)) {
            self.latest_bytes -= old;
        }
        self.latest_bytes += bytes;
        self.oldest.remove(&k);
        if self.latest.len() >= self.max_size || self.latest_bytes >= self.max_bytes {
            self.gc();
        }
    }

    /// Keep `v` until deleted, exempt from ageing (JS `retain`).
    pub(crate) fn retain(&mut self, k: [u8; 32], v: V) {
        self.retained.insert(k, v);
        self.remove_aged(&k);
    }

    fn remove_aged(&mut self, k: &[u8; 32]) -> Option<V> {
        if let Some((v, b)) = self.latest.remove(k) {
            self.latest_bytes -= b;
            return Some(v);
        }
        self.oldest.remove(k).map(|(v, _)| v)
    }

    pub(crate) fn delete(&mut self, k: &[u8; 32]) -> Option<V> {
        self.remove_aged(k).or_else(|| self.retained.remove(k))
    }

    /// Look up `k`; an entry of the oldest generation moves back to the latest (JS `get`).
    pub(crate) fn get(&mut self, k: &[u8; 32]) -> Option<&V> {
        if let Some((v, b)) = self.oldest.remove(k) {
            self.latest_bytes += b;
            self.latest.insert(*k, (v, b));
        }
        if let Some((v, _)) = self.latest.get(k) {
            return Some(v);
        }
        self.retained.get(k)
    }

    /// Look up without refreshing the entry's age.
    pub(crate) fn peek(&self, k: &[u8; 32]) -> Option<&V> {
        self.latest
            .get(k)
            .or_else(|| self.oldest.get(k))
            .map(|(v, _)| v)
            .or_else(|| self.retained.get(k))
    }

    fn gc(&mut self) {
        self.gced = true;
        self.oldest = std::mem::take(&mut self.latest);
        self.latest_bytes = 0;
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_gc {
            return;
        }
        // > _gcAuto() { if (!this._gced) this._gc(); this._gced = false }
        if !self.gced {
            self.gc();
        }
        self.gced = false;
        self.next_gc = now + self.interval;
    }

    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next_gc
    }
}

/// Records per topic (JS `record-cache`): `target → publicKey → encoded peer record`, in two
/// generations.
#[derive(Debug)]
pub(crate) struct RecordCache {
    max_size: usize,
    interval: Duration,
    fresh: RecordStore,
    stale: RecordStore,
    gced: bool,
    next_gc: Instant,
}

/// `(public key, encoded record)` pairs of one topic, in insertion order.
type Records = Vec<([u8; 32], Vec<u8>)>;

#[derive(Debug, Default)]
struct RecordStore {
    topics: HashMap<[u8; 32], Records>,
    size: usize,
}

impl RecordStore {
    fn add(&mut self, target: [u8; 32], pk: [u8; 32], record: Vec<u8>) -> bool {
        let list = self.topics.entry(target).or_default();
        // > var r = this.map.get(k); if (r) return false
        if list.iter().any(|(k, _)| *k == pk) {
            return false;
        }
        list.push((pk, record));
        self.size += 1;
        true
    }

    fn remove(&mut self, target: &[u8; 32], pk: &[u8; 32]) -> bool {
        let Some(list) = self.topics.get_mut(target) else {
            return false;
        };
        let Some(i) = list.iter().position(|(k, _)| k == pk) else {
            return false;
        };
        list.swap_remove(i);
        self.size -= 1;
        if list.is_empty() {
            self.topics.remove(target);
        }
        true
    }

    fn get(&self, target: &[u8; 32]) -> &[([u8; 32], Vec<u8>)] {
        self.topics.get(target).map_or(&[], Vec::as_slice)
    }
}

impl RecordCache {
    pub(crate) fn new(max_size: usize, max_age: Duration, now: Instant) -> Self {
        let interval = gc_interval(max_age);
        Self {
            max_size: max_size.max(1),
            interval,
            fresh: RecordStore::default(),
            stale: RecordStore::default(),
            gced: false,
            next_gc: now + interval,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.fresh.size + self.stale.size
    }

    /// Add or refresh a record. Like JS, a record already in the fresh generation keeps its
    /// first value.
    pub(crate) fn add(&mut self, target: [u8; 32], pk: [u8; 32], record: Vec<u8>) {
        self.stale.remove(&target, &pk);
        if self.fresh.add(target, pk, record) && self.fresh.size > self.max_size {
            self.gc();
        }
    }

    pub(crate) fn remove(&mut self, target: &[u8; 32], pk: &[u8; 32]) {
        self.fresh.remove(target, pk);
        self.stale.remove(target, pk);
    }

    /// Up to `n` records of `target`, a random sample across both generations (JS `get`).
    pub(crate) fn get(&self, target: &[u8; 32], n: usize, rng: &mut impl Rng) -> Vec<Vec<u8>> {
        let mut all: Vec<&Vec<u8>> = self
            .fresh
            .get(target)
            .iter()
            .chain(self.stale.get(target))
            .map(|(_, r)| r)
            .collect();
        all.shuffle(rng);
        all.into_iter().take(n).cloned().collect()
    }

    fn gc(&mut self) {
        self.stale = std::mem::take(&mut self.fresh);
        self.gced = true;
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_gc {
            return;
        }
        if !self.gced {
            self.gc();
        }
        self.gced = false;
        self.next_gc = now + self.interval;
    }

    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next_gc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn cache_entries_age_out_between_two_thirds_and_four_thirds() {
        let t0 = Instant::now();
        let mut c = Cache::new(100, usize::MAX, 3 * MIN, t0);
        c.set([1; 32], 1u8, 1);
        // First gc at 2 min moves it to the oldest generation, the second at 4 min drops it.
        c.handle_timeout(t0 + 2 * MIN);
        assert_eq!(c.peek(&[1; 32]), Some(&1));
        c.handle_timeout(t0 + 4 * MIN);
        assert_eq!(c.peek(&[1; 32]), None);
        // A read refreshes an entry.
        c.set([2; 32], 2, 1);
        c.handle_timeout(t0 + 6 * MIN);
        assert_eq!(c.get(&[2; 32]), Some(&2));
        c.handle_timeout(t0 + 8 * MIN);
        assert_eq!(c.peek(&[2; 32]), Some(&2));
    }

    #[test]
    fn cache_is_capped_at_twice_its_size_and_bytes() {
        let t0 = Instant::now();
        let mut c = Cache::new(10, usize::MAX, MIN, t0);
        for i in 0..1000u32 {
            let mut k = [0; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            c.set(k, i, 1);
            assert!(c.len() <= 20);
        }
        let mut c = Cache::new(usize::MAX, 1000, MIN, t0);
        for i in 0..1000u32 {
            let mut k = [0; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            c.set(k, vec![0u8; 300], 300);
            assert!(c.len() <= 8);
        }
    }

    #[test]
    fn retained_entries_never_age_and_shadow_sets() {
        let t0 = Instant::now();
        let mut c = Cache::new(10, usize::MAX, MIN, t0);
        c.retain([1; 32], "server");
        c.set([1; 32], "remote", 1);
        for i in 1..10 {
            c.handle_timeout(t0 + i * MIN);
        }
        assert_eq!(c.get(&[1; 32]), Some(&"server"));
        assert_eq!(c.delete(&[1; 32]), Some("server"));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn records_sample_and_age() {
        let t0 = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut r = RecordCache::new(1000, 3 * MIN, t0);
        for i in 0..30u8 {
            r.add([7; 32], [i; 32], vec![i]);
        }
        r.add([7; 32], [0; 32], vec![99]);
        assert_eq!(r.len(), 30);
        let got = r.get(&[7; 32], 20, &mut rng);
        assert_eq!(got.len(), 20);
        assert!(!got.contains(&vec![99]));
        r.remove(&[7; 32], &[3; 32]);
        assert_eq!(r.len(), 29);
        r.handle_timeout(t0 + 2 * MIN);
        assert_eq!(r.get(&[7; 32], 100, &mut rng).len(), 29);
        r.handle_timeout(t0 + 4 * MIN);
        assert!(r.get(&[7; 32], 100, &mut rng).is_empty());
        // Capped at twice the size.
        let mut r = RecordCache::new(10, MIN, t0);
        for i in 0..100u8 {
            r.add([i; 32], [i; 32], vec![i]);
            assert!(r.len() <= 21);
        }
    }
}
