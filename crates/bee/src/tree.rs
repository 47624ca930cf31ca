//! The tree over a log: [`Bee`], its blocks, and `get`.
//!
//! The tree at version `v` (a log length) is rooted at level 0 of block `v - 1`; versions 0 and
//! 1 (an empty log, or the header alone) hold an empty tree. A node is a [`Pointer`]: level
//! `offset` of block `seq`. Its keys are the sequence numbers of the blocks that put them.
//!
//! Every step that needs a block asks [`Blocks::block`]; a block that is not held ends the
//! call with [`Error::Missing`] and changes nothing, so the caller fetches it and calls again.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::blocks::{AppendBlocks, Blocks};
use crate::cache::{Cache, Decoded};
use crate::error::Error;
use crate::messages::{Header, Level, Metadata, Pointer};
use crate::write::Batch;

/// No tree hyperbee writes is this deep: with at least 4 keys a node, 64 levels hold more than
/// 2^128 keys. Deeper means a cycle or a forged tree, refused as [`Error::Corrupt`].
pub(crate) const MAX_DEPTH: usize = 64;

/// One key of the tree: the block that put it (or, from [`Bee::entry_at`], any node block).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The block's sequence number.
    pub seq: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The value; `None` for a put of no value (JS `put(key)`) or, from
    /// [`Bee::entry_at`], a delete.
    pub value: Option<Vec<u8>>,
}

impl Entry {
    pub(crate) fn of(seq: u64, block: &Decoded) -> Self {
        Self {
            seq,
            key: block.key().to_vec(),
            value: block.value().map(<[u8]>::to_vec),
        }
    }
}

/// How a [`Bee`] writes and caches.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The metadata of the header block written to an empty log.
    pub metadata: Option<Metadata>,
    /// Write a put even when the key already holds the same value (hyperbee's
    /// `alwaysDuplicate`, true by default in 2.x). With `false` such a put writes nothing.
    pub always_duplicate: bool,
    /// Decoded blocks kept in memory.
    pub cache_blocks: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            metadata: None,
            always_duplicate: true,
            cache_blocks: 65_536,
        }
    }
}

impl Config {
    /// With this header metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// With `alwaysDuplicate` set to `yes`.
    pub fn with_always_duplicate(mut self, yes: bool) -> Self {
        self.always_duplicate = yes;
        self
    }

    /// Keeping at most `blocks` decoded blocks.
    pub fn with_cache_blocks(mut self, blocks: usize) -> Self {
        self.cache_blocks = blocks;
        self
    }
}

/// A Hyperbee over the log `B`: lookups, iteration and (if `B` is [`AppendBlocks`]) writes.
#[derive(Debug)]
pub struct Bee<B> {
    pub(crate) log: B,
    pub(crate) cache: Cache,
    pub(crate) config: Config,
}

/// A tree node, checked: its level exists and points nowhere it may not.
#[derive(Clone, Debug)]
pub(crate) struct NodeView {
    pub(crate) seq: u64,
    pub(crate) block: Arc<Decoded>,
    levels: Arc<[Level]>,
    offset: usize,
}

impl NodeView {
    pub(crate) fn level(&self) -> &Level {
        // `offset < levels.len()` was checked in `Bee::node`.
        &self.levels[self.offset]
    }

    pub(crate) fn keys(&self) -> &[u64] {
        &self.level().keys
    }

    pub(crate) fn children(&self) -> &[Pointer] {
        &self.level().children
    }
}

/// Where a key falls in one node.
pub(crate) enum Search {
    /// At key `index`, held by block `seq`.
    Found { index: usize, seq: u64 },
    /// Between keys: in child `i` (keys `i - 1` and `i` around it).
    At(usize),
}

impl<B: Blocks> Bee<B> {
    /// A bee over `log`, with the default [`Config`].
    pub fn new(log: B) -> Self {
        Self::with_config(log, Config::default())
    }

    /// A bee over `log`.
    pub fn with_config(log: B, config: Config) -> Self {
        Self {
            log,
            cache: Cache::new(config.cache_blocks),
            config,
        }
    }

    /// The log.
    pub fn log(&self) -> &B {
        &self.log
    }

    /// The log, mutably (to append blocks fetched from peers, say).
    pub fn log_mut(&mut self) -> &mut B {
        &mut self.log
    }

    /// The log back.
    pub fn into_log(self) -> B {
        self.log
    }

    /// The version read by default: the log's length (at least 1, as in JS).
    pub fn version(&self) -> u64 {
        self.log.length().max(1)
    }

    /// Forget every decoded block (after changing the log behind the bee's back other than by
    /// appending or through [`Blocks::fork`]).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// The header (block 0), or `None` for an empty log.
    pub fn header(&mut self) -> Result<Option<Header>, Error> {
        if self.log.length() == 0 {
            return Ok(None);
        }
        let bytes = self
            .log
            .block(0)
            .map_err(Error::log)?
            .ok_or(Error::Missing { seq: 0 })?;
        Header::decode(&bytes)
            .map(Some)
            .map_err(|source| Error::Decode { seq: 0, source })
    }

    /// The value of `key` now, or `None`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.get_at(self.version(), key)
    }

    /// The value of `key` at `version` (a past log length: hyperbee's `checkout`).
    ///
    /// `version` must end an operation or a batch: the blocks inside a batch are not a tree
    /// of their own (their roots were dropped when the batch was written, in JS as here).
    pub fn get_at(&mut self, version: u64, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.sync();
        let Some(mut node) = self.root(version)? else {
            return Ok(None);
        };
        for _ in 0..MAX_DEPTH {
            // > if (node.block.isTarget(key)) return node.block.isDeletion() ? null : ...
            // (hyperbee Batch._get): the block that wrote this node put or deleted this very
            // key, and it is the latest word on it on this path.
            if node.block.key() == key {
                let deleted = node
                    .block
                    .is_deletion(node.seq)
                    .map_err(|source| Error::Decode {
                        seq: node.seq,
                        source,
                    })?;
                return Ok((!deleted).then(|| Entry::of(node.seq, &node.block)));
            }
            match self.search(&node, key)? {
                Search::Found { seq, .. } => {
                    let b = self.block(seq)?;
                    return Ok(Some(Entry::of(seq, &b)));
                }
                Search::At(i) => {
                    if node.children().is_empty() {
                        return Ok(None);
                    }
                    node = self.child(&node, i)?;
                }
            }
        }
        Err(too_deep(node.seq))
    }

    /// Block `seq` as an entry (hyperbee's `getBySeq`): the key it put or deleted, and its
    /// value (`None` for a delete).
    pub fn entry_at(&mut self, seq: u64) -> Result<Entry, Error> {
        self.sync();
        let b = self.block(seq)?;
        Ok(Entry::of(seq, &b))
    }

    /// A batch of writes, appended together (see [`Batch`]).
    pub fn batch(&mut self) -> Batch<'_, B> {
        Batch::new(self)
    }

    // ------------------------------------------------------------------------- internals

    pub(crate) fn sync(&mut self) {
        self.cache.sync(self.log.length(), self.log.fork());
    }

    /// Block `seq`, decoded (from the cache if there).
    pub(crate) fn block(&mut self, seq: u64) -> Result<Arc<Decoded>, Error> {
        if let Some(b) = self.cache.get(seq) {
            return Ok(b);
        }
        let bytes = self
            .log
            .block(seq)
            .map_err(Error::log)?
            .ok_or(Error::Missing { seq })?;
        let b = Arc::new(Decoded::decode(bytes).map_err(|source| Error::Decode { seq, source })?);
        self.cache.insert(seq, b.clone());
        Ok(b)
    }

    /// The root of the tree at `version`, if it is not empty.
    pub(crate) fn root(&mut self, version: u64) -> Result<Option<NodeView>, Error> {
        if version < 2 {
            return Ok(None);
        }
        self.node(Pointer {
            seq: version - 1,
            offset: 0,
        })
        .map(Some)
    }

    /// The node at `p`, checked: the level exists, its keys and children are in blocks at or
    /// before `p.seq` (a block only points back), and it has no children or one more than keys.
    pub(crate) fn node(&mut self, p: Pointer) -> Result<NodeView, Error> {
        let block = self.block(p.seq)?;
        let levels = block
            .levels()
            .map_err(|source| Error::Decode { seq: p.seq, source })?;
        let corrupt = |what| Error::Corrupt { seq: p.seq, what };
        let offset = usize::try_from(p.offset)
            .ok()
            .filter(|&o| o < levels.len())
            .ok_or(corrupt("a pointer to a level the block does not have"))?;
        let level = &levels[offset];
        if level.keys.iter().any(|&k| k > p.seq) || level.children.iter().any(|c| c.seq > p.seq) {
            return Err(corrupt("a pointer to a later block"));
        }
        if !level.children.is_empty() && level.children.len() != level.keys.len() + 1 {
            return Err(corrupt("a node whose children do not match its keys"));
        }
        Ok(NodeView {
            seq: p.seq,
            block,
            levels,
            offset,
        })
    }

    /// Child `i` of `node` (which has children).
    pub(crate) fn child(&mut self, node: &NodeView, i: usize) -> Result<NodeView, Error> {
        let p = *node.children().get(i).ok_or(Error::Corrupt {
            seq: node.seq,
            what: "a child index past the node's children",
        })?;
        self.node(p)
    }

    /// Binary search for `key` in `node`, as hyperbee does it (the same probes, so the same
    /// blocks fetched).
    pub(crate) fn search(&mut self, node: &NodeView, key: &[u8]) -> Result<Search, Error> {
        let keys = node.keys();
        let (mut s, mut e) = (0, keys.len());
        while s < e {
            let mid = (s + e) >> 1;
            let seq = keys[mid];
            let b = self.block(seq)?;
            match key.cmp(b.key()) {
                Ordering::Equal => return Ok(Search::Found { index: mid, seq }),
                Ordering::Less => e = mid,
                Ordering::Greater => s = mid + 1,
            }
        }
        Ok(Search::At(s))
    }
}

impl<B: AppendBlocks> Bee<B> {
    /// Put `key` = `value` and append the block(s) (the header first, on an empty log).
    /// Returns the new block's sequence number.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<Option<u64>, Error> {
        let mut b = self.batch();
        let seq = b.put(key, value)?;
        b.flush()?;
        Ok(seq)
    }

    /// Delete `key` and append the block; `None` if it was not there (nothing written, but
    /// the header on an empty log, as JS does).
    pub fn del(&mut self, key: &[u8]) -> Result<Option<u64>, Error> {
        let mut b = self.batch();
        let seq = b.del(key)?;
        b.flush()?;
        Ok(seq)
    }
}

pub(crate) fn too_deep(seq: u64) -> Error {
    Error::Corrupt {
        seq,
        what: "a tree deeper than 64 levels (a cycle?)",
    }
}
