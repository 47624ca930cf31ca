//! Decoded blocks by sequence number, bounded.
//!
//! Blocks of an append-only log never change, so a decoded block stays valid until the log is
//! truncated: [`Cache::sync`] drops what a truncation (a shorter length or a new fork) made
//! stale, as hyperbee's `_ontruncate` gc does.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use crate::messages::{DecodeError, Level, NodeRef, YoloIndex};

/// A node block, decoded (its index on first use).
#[derive(Debug)]
pub(crate) struct Decoded {
    bytes: Vec<u8>,
    key: Range<usize>,
    value: Option<Range<usize>>,
    index: Range<usize>,
    levels: OnceLock<Result<Arc<[Level]>, DecodeError>>,
}

fn span(base: &[u8], part: &[u8]) -> Range<usize> {
    // `part` is a sub-slice of `base` (NodeRef::decode borrows from it).
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

impl Decoded {
    pub(crate) fn decode(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        let n = NodeRef::decode(&bytes)?;
        let key = span(&bytes, n.key);
        let value = n.value.map(|v| span(&bytes, v));
        let index = span(&bytes, n.index);
        Ok(Self {
            bytes,
            key,
            value,
            index,
            levels: OnceLock::new(),
        })
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.bytes[self.key.clone()]
    }

    pub(crate) fn value(&self) -> Option<&[u8]> {
        self.value.clone().map(|r| &self.bytes[r])
    }

    /// The tree nodes this block wrote.
    pub(crate) fn levels(&self) -> Result<Arc<[Level]>, DecodeError> {
        self.levels
            .get_or_init(|| {
                YoloIndex::decode(&self.bytes[self.index.clone()]).map(|i| i.levels.into())
            })
            .clone()
    }

    /// Whether this block deletes its key: no value, and its own key is not in the tree it
    /// wrote (a put of no value does hold it). hyperbee `BlockEntry.isDeletion`.
    pub(crate) fn is_deletion(&self, seq: u64) -> Result<bool, DecodeError> {
        if self.value.is_some() {
            return Ok(false);
        }
        Ok(!self.levels()?.iter().any(|l| l.keys.contains(&seq)))
    }
}

/// Decoded blocks, at most `cap`, evicted by CLOCK (second chance): a block read since the
/// hand last passed it stays, so the upper levels of the tree, read by every lookup, stay
/// while the leaves and keys of one-off lookups come and go.
#[derive(Debug)]
pub(crate) struct Cache {
    map: HashMap<u64, usize, SeqHash>,
    slots: Vec<Slot>,
    hand: usize,
    cap: usize,
    fork: u64,
    length: u64,
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    block: Arc<Decoded>,
    used: bool,
}

impl Cache {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::with_hasher(SeqHash::new()),
            slots: Vec::new(),
            hand: 0,
            cap: cap.max(1),
            fork: 0,
            length: 0,
        }
    }

    /// Forget blocks a truncation replaced: all of them on a new fork, those at or past
    /// `length` when the log got shorter.
    pub(crate) fn sync(&mut self, length: u64, fork: u64) {
        if fork != self.fork {
            self.clear();
            self.fork = fork;
        } else if length < self.length {
            self.slots.retain(|s| s.seq < length);
            self.map.clear();
            for (i, s) in self.slots.iter().enumerate() {
                self.map.insert(s.seq, i);
            }
            self.hand = 0;
        }
        self.length = length;
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.hand = 0;
    }

    pub(crate) fn get(&mut self, seq: u64) -> Option<Arc<Decoded>> {
        let &i = self.map.get(&seq)?;
        let s = &mut self.slots[i];
        s.used = true;
        Some(s.block.clone())
    }

    pub(crate) fn insert(&mut self, seq: u64, block: Arc<Decoded>) {
        if let Some(&i) = self.map.get(&seq) {
            self.slots[i].block = block;
            return;
        }
        if self.slots.len() < self.cap {
            self.map.insert(seq, self.slots.len());
            self.slots.push(Slot {
                seq,
                block,
                used: false,
            });
            return;
        }
        // Full: the first slot not used since the hand last passed takes the new block.
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let s = &mut self.slots[i];
            if s.used {
                s.used = false;
                continue;
            }
            self.map.remove(&s.seq);
            self.map.insert(seq, i);
            *s = Slot {
                seq,
                block,
                used: false,
            };
            return;
        }
    }
}

/// Hashing sequence numbers: SipHash cost more than the lookups it guards. A multiply with
/// a random key per cache; a log that picks its pointers can at worst crowd a map of bounded
/// size.
#[derive(Debug, Clone, Copy)]
struct SeqHash(u64);

impl SeqHash {
    fn new() -> Self {
        Self(std::collections::hash_map::RandomState::new().hash_one(0xb_eeu64) | 1)
    }
}

impl BuildHasher for SeqHash {
    type Hasher = SeqHasher;
    fn build_hasher(&self) -> SeqHasher {
        SeqHasher(self.0, 0)
    }
}

#[derive(Debug)]
struct SeqHasher(u64, u64);

impl Hasher for SeqHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.1 = (self.1.rotate_left(29) ^ n ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits (which the multiply mixed best) into the low ones (which pick the
        // bucket).
        let h = self.1 ^ (self.1 >> 32);
        h.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Node;

    fn block(k: u8) -> Arc<Decoded> {
        let n = Node {
            index: vec![],
            key: vec![k],
            value: None,
        };
        Arc::new(Decoded::decode(n.encode()).unwrap())
    }

    #[test]
    fn clock_keeps_what_is_read() {
        let mut c = Cache::new(3);
        c.sync(10, 0);
        for s in 0..3 {
            c.insert(s, block(s as u8));
        }
        assert!(c.get(0).is_some());
        c.insert(3, block(3));
        // 0 was read: 1 goes first.
        assert!(c.get(0).is_some());
        assert!(c.get(1).is_none());
        assert!(c.get(2).is_some());
        assert!(c.get(3).is_some());
        c.sync(3, 0);
        assert!(c.get(3).is_none());
        assert!(c.get(2).is_some());
        c.sync(3, 1);
        assert!(c.get(0).is_none());
    }
}
