//! [`Timers`]: one deadline per key, earliest first (the swarm's topic timers: a refresh or an
//! empty-lookup retry each). A binary heap with lazy deletion: moving or clearing a key's
//! deadline leaves its old entry in the heap, dropped when it comes up (it no longer matches
//! the key's deadline) or all at once when the stale entries outnumber the live ones. So
//! setting, taking the due keys and asking for the next deadline cost `O(log n)`, not a scan
//! of every key (the actor scanned its 40 000 topics every 100 ms while events came in), and
//! the heap holds at most about twice as many entries as keys with a timer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// Stale entries tolerated beyond the live ones before the heap is rebuilt.
const SLACK: usize = 64;

/// One deadline per key, earliest first.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// Each key's deadline; a heap entry counts only while it equals this.
    due: HashMap<K, Instant>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            due: HashMap::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> Timers<K> {
    /// Set `key`'s deadline (`None`: clear it). Setting the one it has does nothing.
    pub(crate) fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(t) => {
                if self.due.insert(key, t) == Some(t) {
                    return;
                }
                self.heap.push(Reverse((t, key)));
                if self.heap.len() > 2 * self.due.len() + SLACK {
                    self.compact();
                }
            }
            None => {
                self.due.remove(&key);
            }
        }
    }

    /// The earliest deadline (possibly a stale entry's, which [`Timers::take_due`] drops).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The keys whose deadline is at or before `now`, earliest first; their deadlines are
    /// cleared (set them again to re-arm).
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        while let Some(&Reverse((t, key))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.due.get(&key) == Some(&t) {
                self.due.remove(&key);
                out.push(key);
            }
        }
        out
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.heap.len()
    }

    fn compact(&mut self) {
        self.heap = self.due.iter().map(|(k, t)| Reverse((*t, *k))).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn due_keys_come_in_order_once() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(3u64, Some(t0 + 3 * S));
        t.set(1, Some(t0 + S));
        t.set(2, Some(t0 + 2 * S));
        assert_eq!(t.next(), Some(t0 + S));
        assert!(t.take_due(t0).is_empty());
        assert_eq!(t.take_due(t0 + 2 * S), vec![1, 2]);
        assert!(t.take_due(t0 + 2 * S).is_empty(), "taken keys are cleared");
        assert_eq!(t.next(), Some(t0 + 3 * S));
        assert_eq!(t.take_due(t0 + 10 * S), vec![3]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn moved_and_cleared_deadlines_count_as_they_are_now() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(1u64, Some(t0 + S));
        t.set(2, Some(t0 + S));
        // Moved later: not due at its old time, due at its new one.
        t.set(1, Some(t0 + 5 * S));
        // Cleared: never due.
        t.set(2, None);
        assert!(t.take_due(t0 + 2 * S).is_empty());
        // Moved earlier than a stale entry of itself.
        t.set(3, Some(t0 + 9 * S));
        t.set(3, Some(t0 + 3 * S));
        assert_eq!(t.take_due(t0 + 4 * S), vec![3]);
        assert_eq!(t.take_due(t0 + 9 * S), vec![1]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn stale_entries_stay_bounded() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let keys = 1000u64;
        // Every key's timer moved 50 times, later each time (the stale entries never come up).
        for round in 1..=50u32 {
            for k in 0..keys {
                t.set(k, Some(t0 + round * S));
            }
            assert!(
                t.entries() <= 2 * keys as usize + SLACK + 1,
                "{} entries for {keys} keys",
                t.entries()
            );
        }
        let due = t.take_due(t0 + 50 * S);
        assert_eq!(due.len(), keys as usize);
        assert_eq!(t.entries(), 0);
    }
}
