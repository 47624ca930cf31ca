//! Writes: hyperbee's put, delete and batch, block for block.
//!
//! To write the same bytes as JS for the same operations, this follows hyperbee 2.x's
//! `Batch` step by step (`index.js`: `_put`, `_del`, `TreeNode.insertKey` / `split` /
//! `removeKey` / `merge`, `setKeyToNearestLeaf`, `rebalance`, `indexChanges`, `toBlocks`),
//! including what only shows in the bytes:
//!
//! - A node written by a block is one of its levels, in pre-order from the root (level 0), and
//!   a block writes every node its operation *marked changed*: the whole path of a put (even a
//!   put that then writes nothing, inside a batch: the marks stay for the next operation),
//!   the path and touched siblings of a delete.
//! - A child pointer is an object shared by the parent node and the block that wrote the child
//!   (JS `Child`): a later operation of the same batch that rewrites the child moves the
//!   pointer to its own block. So here pointers live in an arena ([`Batch::childs`]) and nodes
//!   and pending blocks refer to them by index.
//! - When a batch is turned into blocks, each block but the last drops the nodes a later block
//!   rewrote, filling each hole with its last node (`toBlocks`), and renumbers the survivors.
//!
//! The tree lives in memory for the whole batch (nodes loaded from the log on first use), as in
//! JS, so a batch of `n` writes holds `O(n · depth)` nodes until it is flushed.

use std::cmp::Ordering;

use crate::blocks::{AppendBlocks, Blocks};
use crate::error::Error;
use crate::messages::{Header, Level, Pointer, encode_node};
use crate::tree::{Bee, Entry, MAX_DEPTH, too_deep};

/// > const T = 5; const MIN_KEYS = T - 1; const MAX_CHILDREN = MIN_KEYS * 2 + 1
const MIN_KEYS: usize = 4;
const MAX_CHILDREN: usize = 9;

type NodeId = usize;
type ChildId = usize;

/// A tree node in memory (JS `TreeNode`).
#[derive(Debug, Clone)]
struct WNode {
    keys: Vec<u64>,
    children: Vec<ChildId>,
    changed: bool,
}

/// A child pointer (JS `Child`): where the child is stored, and the child once loaded.
#[derive(Debug, Clone)]
struct WChild {
    seq: u64,
    offset: u64,
    node: Option<NodeId>,
}

/// A block of this batch not yet encoded (JS `BatchEntry`).
#[derive(Debug)]
struct Pending {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    /// The nodes it wrote, by offset (JS `pendingIndex`); `None` only transiently.
    index: Vec<Option<ChildId>>,
}

/// Decides a compare-and-swap: called with the entry in the tree and the one about to replace
/// (or, for a delete, remove) it; `false` writes nothing. hyperbee's `cas` option.
pub type Cas<'c> = &'c mut dyn FnMut(&Entry, &Entry) -> bool;

/// Writes appended together: one append of many blocks ([`Batch::flush`]), or the blocks
/// handed back to append elsewhere ([`Batch::finish`]). Reads during the batch see the log,
/// not the batch.
///
/// If an operation fails part way (a block not held, a damaged tree, the log failing), the
/// batch is unusable ([`Error::Poisoned`]): nothing was appended, start a new one.
#[derive(Debug)]
pub struct Batch<'a, B: Blocks> {
    bee: &'a mut Bee<B>,
    /// The log's length when the batch began.
    base: u64,
    /// The sequence number of the first block of this batch after the header.
    first: u64,
    /// A header block goes first (the log was empty and an operation ran).
    header: bool,
    nodes: Vec<WNode>,
    childs: Vec<WChild>,
    pending: Vec<Pending>,
    /// The root after the latest operation that wrote a block.
    root: Option<NodeId>,
    /// The root read from the log, once loaded (reused, unmarked, until a block is written:
    /// JS makes a new `TreeNode` over the same key and child arrays each time).
    stored_root: Option<NodeId>,
    /// The key of the operation running, for its own sequence number.
    current: Option<(u64, Vec<u8>)>,
    poisoned: bool,
}

impl<'a, B: Blocks> Batch<'a, B> {
    pub(crate) fn new(bee: &'a mut Bee<B>) -> Self {
        bee.sync();
        let base = bee.log.length();
        Self {
            bee,
            base,
            first: base.max(1),
            header: false,
            nodes: Vec::new(),
            childs: Vec::new(),
            pending: Vec::new(),
            root: None,
            stored_root: None,
            current: None,
            poisoned: false,
        }
    }

    /// Blocks this batch will append (the header included).
    pub fn len(&self) -> usize {
        self.pending.len() + usize::from(self.header)
    }

    /// Whether the batch would append nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Put `key` = `value`. Returns the sequence number its block will have.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<Option<u64>, Error> {
        self.put_with(key, Some(value), None)
    }

    /// Put `key` = `value` (`None`: a key with no value, JS `put(key)`), if `cas` agrees.
    /// Returns the sequence number its block will have, `None` if nothing is written.
    pub fn put_with(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        cas: Option<Cas<'_>>,
    ) -> Result<Option<u64>, Error> {
        self.run(key, |b| b.put_inner(key, value, cas))
    }

    /// Delete `key`. Returns the sequence number its block will have, `None` if the key was
    /// not there.
    pub fn del(&mut self, key: &[u8]) -> Result<Option<u64>, Error> {
        self.del_with(key, None)
    }

    /// Delete `key` if `cas` agrees (called with the entry and one with no value).
    pub fn del_with(&mut self, key: &[u8], cas: Option<Cas<'_>>) -> Result<Option<u64>, Error> {
        self.run(key, |b| b.del_inner(key, cas))
    }

    /// The blocks to append, in order (the header first on an empty log).
    pub fn finish(mut self) -> Result<Vec<Vec<u8>>, Error> {
        self.encode()
    }

    // ------------------------------------------------------------------------- internals

    /// Encode the batch (once: it renumbers the nodes of all but the last block).
    fn encode(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let mut out = Vec::with_capacity(self.len());
        if self.header {
            out.push(Header::new(self.bee.config.metadata.clone()).encode());
        }
        let n = self.pending.len();
        for i in 0..n {
            let seq = self.first + i as u64;
            if i + 1 < n {
                self.compact(i, seq);
            }
            let mut index = Vec::new();
            for &c in &self.pending[i].index {
                let level = self.level_of(c, seq)?;
                level.encode_field(&mut index);
            }
            let p = &self.pending[i];
            out.push(encode_node(&index, &p.key, p.value.as_deref()));
        }
        Ok(out)
    }

    fn run(
        &mut self,
        key: &[u8],
        op: impl FnOnce(&mut Self) -> Result<Option<u64>, Error>,
    ) -> Result<Option<u64>, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        // > getRoot(ensureHeader): if (this.core.length === 0 ...) await this.core.append(Header)
        // Every put or delete on an empty log writes the header, whether or not it writes a node.
        if self.base == 0 {
            self.header = true;
        }
        self.current = Some((self.next_seq(), key.to_vec()));
        let r = op(self);
        self.current = None;
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn next_seq(&self) -> u64 {
        self.first + self.pending.len() as u64
    }

    fn new_node(&mut self, keys: Vec<u64>, children: Vec<ChildId>) -> NodeId {
        self.nodes.push(WNode {
            keys,
            children,
            changed: true,
        });
        self.nodes.len() - 1
    }

    fn new_child(&mut self, seq: u64, offset: u64, node: Option<NodeId>) -> ChildId {
        self.childs.push(WChild { seq, offset, node });
        self.childs.len() - 1
    }

    /// The root for the next operation (hyperbee `Batch.getRoot`).
    fn root(&mut self) -> Result<Option<NodeId>, Error> {
        if let Some(r) = self.root {
            return Ok(Some(r));
        }
        if self.base < 2 {
            return Ok(None);
        }
        if let Some(r) = self.stored_root {
            self.nodes[r].changed = false;
            return Ok(Some(r));
        }
        let r = self.load(Pointer {
            seq: self.base - 1,
            offset: 0,
        })?;
        self.stored_root = Some(r);
        Ok(Some(r))
    }

    /// A node of the log, into memory with fresh child pointers.
    fn load(&mut self, p: Pointer) -> Result<NodeId, Error> {
        let view = self.bee.node(p)?;
        let level = view.level();
        let children = level
            .children
            .iter()
            .map(|c| {
                self.childs.push(WChild {
                    seq: c.seq,
                    offset: c.offset,
                    node: None,
                });
                self.childs.len() - 1
            })
            .collect();
        self.nodes.push(WNode {
            keys: level.keys.clone(),
            children,
            changed: false,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Child `i` of `node`, loaded if need be (JS `getChildNode`).
    fn child(&mut self, node: NodeId, i: usize) -> Result<NodeId, Error> {
        let cid = *self.nodes[node].children.get(i).ok_or(Error::Corrupt {
            seq: self.base.saturating_sub(1),
            what: "a child index past the node's children",
        })?;
        let c = &self.childs[cid];
        if let Some(n) = c.node {
            return Ok(n);
        }
        let p = Pointer {
            seq: c.seq,
            offset: c.offset,
        };
        let n = if p.seq >= self.first {
            // A node of this batch is always linked in memory; follow the pending index anyway.
            self.pending_node(p)?
        } else {
            self.load(p)?
        };
        self.childs[cid].node = Some(n);
        Ok(n)
    }

    fn pending_node(&self, p: Pointer) -> Result<NodeId, Error> {
        usize::try_from(p.seq - self.first)
            .ok()
            .and_then(|i| self.pending.get(i))
            .and_then(|b| {
                b.index
                    .get(usize::try_from(p.offset).ok()?)
                    .copied()
                    .flatten()
            })
            .and_then(|c| self.childs[c].node)
            .ok_or(Error::Corrupt {
                seq: p.seq,
                what: "a pointer to a node this batch did not write",
            })
    }

    /// Compare `key` with the key held by block `seq` (of the log, or of this batch).
    fn cmp_key(&mut self, key: &[u8], seq: u64) -> Result<Ordering, Error> {
        if seq >= self.first {
            if let Some(p) = usize::try_from(seq - self.first)
                .ok()
                .and_then(|i| self.pending.get(i))
            {
                return Ok(key.cmp(&p.key));
            }
            if let Some((s, k)) = &self.current
                && *s == seq
            {
                return Ok(key.cmp(k));
            }
            return Err(Error::Corrupt {
                seq,
                what: "a key this batch did not write",
            });
        }
        let b = self.bee.block(seq)?;
        Ok(key.cmp(b.key()))
    }

    fn key_bytes(&mut self, seq: u64) -> Result<Vec<u8>, Error> {
        Ok(self.entry(seq)?.key)
    }

    /// The entry of block `seq` (of the log or of this batch).
    fn entry(&mut self, seq: u64) -> Result<Entry, Error> {
        if seq >= self.first {
            if let Some(p) = usize::try_from(seq - self.first)
                .ok()
                .and_then(|i| self.pending.get(i))
            {
                return Ok(Entry {
                    seq,
                    key: p.key.clone(),
                    value: p.value.clone(),
                });
            }
            if let Some((s, k)) = &self.current
                && *s == seq
            {
                return Ok(Entry {
                    seq,
                    key: k.clone(),
                    value: None,
                });
            }
            return Err(Error::Corrupt {
                seq,
                what: "a key this batch did not write",
            });
        }
        self.bee.entry_at(seq)
    }

    /// Binary search of `key` among `node`'s keys: `Ok(index)` if there, else `Err(child)`.
    fn search(&mut self, node: NodeId, key: &[u8]) -> Result<Result<usize, usize>, Error> {
        let (mut s, mut e) = (0, self.nodes[node].keys.len());
        while s < e {
            let mid = (s + e) >> 1;
            let seq = self.nodes[node].keys[mid];
            match self.cmp_key(key, seq)? {
                Ordering::Equal => return Ok(Ok(mid)),
                Ordering::Less => e = mid,
                Ordering::Greater => s = mid + 1,
            }
        }
        Ok(Err(s))
    }

    /// hyperbee `Batch._put`.
    fn put_inner(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        mut cas: Option<Cas<'_>>,
    ) -> Result<Option<u64>, Error> {
        let mut root = match self.root()? {
            Some(r) => r,
            None => self.new_node(Vec::new(), Vec::new()),
        };
        let seq = self.next_seq();
        let new = Entry {
            seq,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        };
        let mut stack = Vec::new();
        let mut node = root;
        let mut depth = 0;
        while !self.nodes[node].children.is_empty() {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(too_deep(self.base.saturating_sub(1)));
            }
            stack.push(node);
            // > node.changed = true // changed, but compressible
            self.nodes[node].changed = true;
            match self.search(node, key)? {
                Ok(mid) => {
                    let old = self.nodes[node].keys[mid];
                    if !self.keep_going(old, &new, &mut cas)? {
                        return Ok(None);
                    }
                    self.nodes[node].keys[mid] = seq;
                    return Ok(Some(self.append(root, new)));
                }
                Err(i) => node = self.child(node, i)?,
            }
        }
        let mut needs_split = !self.insert_key(node, seq, key, None, Some((&new, &mut cas)))?;
        if !self.nodes[node].changed {
            return Ok(None);
        }
        while needs_split {
            let parent = stack.pop();
            let (median, right) = self.split(node);
            match parent {
                Some(p) => {
                    let median_key = self.key_bytes(median)?;
                    needs_split = !self.insert_key(p, median, &median_key, Some(right), None)?;
                    node = p;
                }
                None => {
                    let l = self.new_child(0, 0, Some(node));
                    let r = self.new_child(0, 0, Some(right));
                    root = self.new_node(vec![median], vec![l, r]);
                    needs_split = false;
                }
            }
        }
        Ok(Some(self.append(root, new)))
    }

    /// The checks of a put over an existing key: `cas`, then `alwaysDuplicate`.
    fn keep_going(
        &mut self,
        old: u64,
        new: &Entry,
        cas: &mut Option<Cas<'_>>,
    ) -> Result<bool, Error> {
        if let Some(cas) = cas {
            let prev = self.entry(old)?;
            if !cas(&prev, new) {
                return Ok(false);
            }
        }
        if !self.bee.config.always_duplicate {
            let prev = self.entry(old)?;
            if prev.value == new.value {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// hyperbee `TreeNode.insertKey`: whether the node still has room.
    fn insert_key(
        &mut self,
        node: NodeId,
        seq: u64,
        key: &[u8],
        child: Option<NodeId>,
        put: Option<(&Entry, &mut Option<Cas<'_>>)>,
    ) -> Result<bool, Error> {
        match self.search(node, key)? {
            Ok(mid) => {
                if let Some((new, cas)) = put {
                    let old = self.nodes[node].keys[mid];
                    if !self.keep_going(old, new, cas)? {
                        return Ok(true);
                    }
                }
                let n = &mut self.nodes[node];
                n.changed = true;
                n.keys[mid] = seq;
                Ok(true)
            }
            Err(i) => {
                self.nodes[node].keys.insert(i, seq);
                if let Some(c) = child {
                    let cid = self.new_child(0, 0, Some(c));
                    self.nodes[node].children.insert(i + 1, cid);
                }
                let n = &mut self.nodes[node];
                n.changed = true;
                Ok(n.keys.len() < MAX_CHILDREN)
            }
        }
    }

    /// hyperbee `TreeNode.split`: the median key and the new right node.
    fn split(&mut self, node: NodeId) -> (u64, NodeId) {
        let n = &mut self.nodes[node];
        let len = n.keys.len() >> 1;
        let right_keys = n.keys.split_off(n.keys.len() - len);
        // A node splits at 9 keys: there is a median.
        let median = n.keys.pop().unwrap_or_default();
        let right_children = if n.children.is_empty() {
            Vec::new()
        } else {
            n.children
                .split_off(n.children.len().saturating_sub(len + 1))
        };
        n.changed = true;
        let right = self.new_node(right_keys, right_children);
        (median, right)
    }

    /// hyperbee `Batch._del`.
    fn del_inner(&mut self, key: &[u8], mut cas: Option<Cas<'_>>) -> Result<Option<u64>, Error> {
        let Some(root) = self.root()? else {
            return Ok(None);
        };
        let seq = self.next_seq();
        let mut stack = Vec::new();
        let mut node = root;
        for _ in 0..MAX_DEPTH {
            stack.push(node);
            match self.search(node, key)? {
                Ok(mid) => {
                    if let Some(cas) = &mut cas {
                        let prev = self.entry(self.nodes[node].keys[mid])?;
                        let del = Entry {
                            seq,
                            key: key.to_vec(),
                            value: None,
                        };
                        if !cas(&prev, &del) {
                            return Ok(None);
                        }
                    }
                    if self.nodes[node].children.is_empty() {
                        self.remove_key(node, mid);
                    } else {
                        self.set_key_to_nearest_leaf(node, mid, &mut stack)?;
                    }
                    // > we mark these as changed late, so we don't rewrite them if it is a 404
                    for &n in &stack {
                        self.nodes[n].changed = true;
                    }
                    let root = self.rebalance(&mut stack)?;
                    let new = Entry {
                        seq,
                        key: key.to_vec(),
                        value: None,
                    };
                    return Ok(Some(self.append(root, new)));
                }
                Err(i) => {
                    if self.nodes[node].children.is_empty() {
                        return Ok(None);
                    }
                    node = self.child(node, i)?;
                }
            }
        }
        Err(too_deep(self.base.saturating_sub(1)))
    }

    /// Keys in the leaf reached by always taking the first (`left`) or last child.
    fn leaf_size(&mut self, mut node: NodeId, left: bool) -> Result<usize, Error> {
        for _ in 0..MAX_DEPTH {
            let n = self.nodes[node].children.len();
            if n == 0 {
                return Ok(self.nodes[node].keys.len());
            }
            node = self.child(node, if left { 0 } else { n - 1 })?;
        }
        Err(too_deep(self.base.saturating_sub(1)))
    }

    /// hyperbee `setKeyToNearestLeaf`: replace key `index` of an inner node by its neighbour
    /// from the fuller side's leaf, that leaf's path onto `stack`.
    fn set_key_to_nearest_leaf(
        &mut self,
        node: NodeId,
        index: usize,
        stack: &mut Vec<NodeId>,
    ) -> Result<(), Error> {
        let left = self.child(node, index)?;
        let right = self.child(node, index + 1)?;
        let ls = self.leaf_size(left, false)?;
        let rs = self.leaf_size(right, true)?;
        let empty = Error::Corrupt {
            seq: self.base.saturating_sub(1),
            what: "an empty leaf",
        };
        let (mut n, first) = if ls < rs {
            (right, true)
        } else {
            (left, false)
        };
        stack.push(n);
        for _ in 0..MAX_DEPTH {
            let len = self.nodes[n].children.len();
            if len == 0 {
                let keys = &mut self.nodes[n].keys;
                let k = if first {
                    (!keys.is_empty()).then(|| keys.remove(0))
                } else {
                    keys.pop()
                };
                self.nodes[node].keys[index] = k.ok_or(empty)?;
                return Ok(());
            }
            n = self.child(n, if first { 0 } else { len - 1 })?;
            stack.push(n);
        }
        Err(too_deep(self.base.saturating_sub(1)))
    }

    /// hyperbee `TreeNode.removeKey`.
    fn remove_key(&mut self, node: NodeId, index: usize) {
        let n = &mut self.nodes[node];
        n.keys.remove(index);
        if !n.children.is_empty() {
            let cid = n.children.remove(index + 1);
            // > this.children[index + 1].seq = 0 // mark as freed
            self.childs[cid].seq = 0;
        }
        self.nodes[node].changed = true;
    }

    /// hyperbee `rebalance`: fix underfull nodes bottom up; the root after (it shrinks when
    /// emptied).
    fn rebalance(&mut self, stack: &mut Vec<NodeId>) -> Result<NodeId, Error> {
        let root = stack[0];
        let at = self.base.saturating_sub(1);
        let bad = |what| Error::Corrupt { seq: at, what };
        while stack.len() > 1 {
            let Some(node) = stack.pop() else { break };
            let parent = stack[stack.len() - 1];
            if self.nodes[node].keys.len() >= MIN_KEYS {
                return Ok(root);
            }
            let mut index = self.nodes[parent]
                .children
                .iter()
                .position(|&c| self.childs[c].node == Some(node))
                .ok_or(bad("a node missing from its parent"))?;
            let nchildren = self.nodes[parent].children.len();
            let left = if index > 0 {
                Some(self.child(parent, index - 1)?)
            } else {
                None
            };
            let right = if index + 1 < nchildren {
                Some(self.child(parent, index + 1)?)
            } else {
                None
            };
            // Borrow from the left sibling?
            if let Some(l) = left
                && self.nodes[l].keys.len() > MIN_KEYS
            {
                self.nodes[l].changed = true;
                let pk = self.nodes[parent].keys[index - 1];
                self.nodes[node].keys.insert(0, pk);
                if let Some(c) = self.nodes[l].children.pop() {
                    self.nodes[node].children.insert(0, c);
                }
                let lk = self.nodes[l].keys.pop().ok_or(bad("an empty sibling"))?;
                self.nodes[parent].keys[index - 1] = lk;
                return Ok(root);
            }
            // Borrow from the right sibling?
            if let Some(r) = right
                && self.nodes[r].keys.len() > MIN_KEYS
            {
                self.nodes[r].changed = true;
                let pk = self.nodes[parent].keys[index];
                self.nodes[node].keys.push(pk);
                if !self.nodes[r].children.is_empty() {
                    let c = self.nodes[r].children.remove(0);
                    self.nodes[node].children.push(c);
                }
                let rk = self.nodes[r].keys.remove(0);
                self.nodes[parent].keys[index] = rk;
                return Ok(root);
            }
            // Merge with a sibling.
            let (l, r) = match (left, right) {
                (Some(l), _) => {
                    index -= 1;
                    (l, node)
                }
                (None, Some(r)) => (node, r),
                (None, None) => return Err(bad("an inner node with one child")),
            };
            let median = self.nodes[parent].keys[index];
            let mut keys = std::mem::take(&mut self.nodes[r].keys);
            let mut children = std::mem::take(&mut self.nodes[r].children);
            let ln = &mut self.nodes[l];
            ln.changed = true;
            ln.keys.push(median);
            ln.keys.append(&mut keys);
            ln.children.append(&mut children);
            self.remove_key(parent, index);
        }
        // > if (!root.keys.length && root.children.length) return root.getChildNode(0)
        if self.nodes[root].keys.is_empty() && !self.nodes[root].children.is_empty() {
            return self.child(root, 0);
        }
        Ok(root)
    }

    /// hyperbee `Batch._append` (batch form): number the changed nodes into a new pending
    /// block. Returns its sequence number.
    fn append(&mut self, root: NodeId, new: Entry) -> u64 {
        let seq = new.seq;
        let mut index = Vec::new();
        self.index_changes(root, &mut index, seq);
        index[0] = Some(self.new_child(seq, 0, Some(root)));
        self.pending.push(Pending {
            key: new.key,
            value: new.value,
            index,
        });
        self.root = Some(root);
        seq
    }

    /// hyperbee `TreeNode.indexChanges`: pre-order, each changed node gets the next offset.
    fn index_changes(&mut self, node: NodeId, index: &mut Vec<Option<ChildId>>, seq: u64) -> u64 {
        let offset = index.len() as u64;
        index.push(None);
        self.nodes[node].changed = false;
        for k in 0..self.nodes[node].children.len() {
            let cid = self.nodes[node].children[k];
            let Some(child) = self.childs[cid].node else {
                continue;
            };
            if !self.nodes[child].changed {
                continue;
            }
            let off = self.index_changes(child, index, seq);
            let c = &mut self.childs[cid];
            c.seq = seq;
            c.offset = off;
            index[off as usize] = Some(cid);
        }
        offset
    }

    /// hyperbee `toBlocks` for a block that is not the batch's last: drop the nodes later
    /// blocks rewrote (and the superseded root), moving the last node into each hole.
    fn compact(&mut self, i: usize, seq: u64) {
        let index = &mut self.pending[i].index;
        if let Some(first) = index.first_mut() {
            *first = None;
        }
        let mut j = 0;
        while j < index.len() {
            if let Some(c) = index[j]
                && self.childs[c].seq == seq
            {
                self.childs[c].offset = j as u64;
                j += 1;
                continue;
            }
            index.swap_remove(j);
        }
    }

    /// The level a pending block writes for pointer `c`.
    fn level_of(&self, c: Option<ChildId>, seq: u64) -> Result<Level, Error> {
        let node = c.and_then(|c| self.childs[c].node).ok_or(Error::Corrupt {
            seq,
            what: "a batch block with a hole in its index",
        })?;
        let n = &self.nodes[node];
        Ok(Level {
            keys: n.keys.clone(),
            children: n
                .children
                .iter()
                .map(|&c| Pointer {
                    seq: self.childs[c].seq,
                    offset: self.childs[c].offset,
                })
                .collect(),
        })
    }
}

impl<B: AppendBlocks> Batch<'_, B> {
    /// Append the batch to the log as one append. Returns the log's new length.
    pub fn flush(mut self) -> Result<u64, Error> {
        let blocks = self.encode()?;
        if blocks.is_empty() {
            return Ok(self.bee.log.length());
        }
        self.bee.log.append_blocks(&blocks).map_err(Error::log)
    }
}
