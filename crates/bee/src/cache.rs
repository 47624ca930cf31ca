//! Decoded blocks by sequence number, bounded.
//!
//! Blocks of an append-only log never change, so a decoded block stays valid until the log is
//! truncated: [`Cache::sync`] drops what a truncation (a shorter length or a new fork) made
//! stale, as hyperbee's `_ontruncate` gc does.

use std::collections::{HashMap, VecDeque};
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

/// Decoded blocks, at most `cap`, the oldest inserted evicted first.
#[derive(Debug)]
pub(crate) struct Cache {
    map: HashMap<u64, Arc<Decoded>>,
    order: VecDeque<u64>,
    cap: usize,
    fork: u64,
    length: u64,
}

impl Cache {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
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
            self.map.retain(|&seq, _| seq < length);
            self.order.retain(|&seq| seq < length);
        }
        self.length = length;
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub(crate) fn get(&self, seq: u64) -> Option<Arc<Decoded>> {
        self.map.get(&seq).cloned()
    }

    pub(crate) fn insert(&mut self, seq: u64, block: Arc<Decoded>) {
        if self.map.insert(seq, block).is_none() {
            self.order.push_back(seq);
        }
        while self.map.len() > self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&old);
        }
    }
}
