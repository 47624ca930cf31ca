//! The Merkle tree head of a log and the operations on it (hypercore lib/merkle-tree.js).
//!
//! A [`Tree`] is what a core keeps in memory: `length`, `fork`, `byte_length`, the roots of
//! the complete subtrees covering the blocks, and the signature of that head. Every other node
//! lives in a [`NodeSource`] (the store on disk, or a map in tests); operations that need one
//! take `&mut impl NodeSource` and never write: they return what the caller must persist.
//!
//! - [`Tree::append`] returns the new leaves and parents; the head moves in place.
//! - [`Tree::proof`] builds the reply a JS peer would send for a `request`.
//! - [`Tree::verify`] checks a `data` message and returns a [`Verified`] changeset.
//! - [`Tree::truncate`] moves the head back and says which nodes ([`Truncation`]) are dead.
//! - [`Tree::verify_reorg`] starts following a peer onto another fork ([`Reorg`]).
//!
//! On `clear` (dropping blocks but keeping the log), JS deletes a few tree nodes, the ones in
//! subtrees with no block left (lib/session-state.js `clear`); [`Tree::clear_nodes`] computes
//! the same list. Keeping every node instead is always correct (proofs for the remaining blocks
//! only need nodes outside those subtrees) and costs 40 bytes per node; the store may do either.

mod prove;
mod verify;

use std::convert::Infallible;
use std::ops::Range;

use peerhost_ids::KeyPair;

use crate::error::{ManifestError, TreeError, need};
use crate::flat::{self, Iterator};
use crate::manifest::Prologue;
use crate::proof::DataUpgrade;
use crate::signature::{signable, signable_compat};
use crate::verifier::Verifier;
use crate::{Node, NodeSource, hash};

pub use prove::Proof;
pub use verify::{
    MAX_NODES, MAX_UPGRADE_NODES, Reorg, ReorgWant, Verified, VerifiedBlock, VerifiedProof,
};

/// An iterator past this factor would be climbing above any tree a length below 2^55 can
/// have; loops over stored or untrusted nodes stop there instead of overflowing.
pub(crate) const MAX_FACTOR: u64 = 1 << 60;

/// The head of a hypercore's Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    length: u64,
    fork: u64,
    byte_length: u64,
    roots: Vec<Node>,
    signature: Option<Vec<u8>>,
    prologue: Option<Prologue>,
}

/// The nodes a truncation (or a reorg) leaves dead, for the store to delete
/// (lib/merkle-tree.js `_commitUpgrade`, with every dead parent listed: see `protocol/log.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Truncation {
    /// The new length.
    pub length: u64,
    /// The length before.
    pub old_length: u64,
    /// Every stored node with a flat index in this range is dead.
    pub nodes: Range<u64>,
    /// Parents left of `nodes.start` whose subtree reached past the new length.
    pub parents: Vec<u64>,
}

impl Truncation {
    /// The dead nodes when a tree of `old_length` blocks keeps only its first `length`.
    pub fn between(length: u64, old_length: u64) -> Self {
        let mut out = Self {
            length,
            old_length,
            nodes: 2 * length..2 * length.max(old_length),
            parents: vec![],
        };
        if length >= old_length || length == 0 {
            return out;
        }
        let head = 2 * length;
        let old_head = 2 * old_length;
        let mut ite = Iterator::new(head - 2);
        // > if (ite.contains(head) && ite.index < head) tx.deleteTreeNode(ite.index)
        // > if (ite.offset === 0) break
        // JS stops at the first leftmost node, which misses e.g. node 1 when truncating to 1
        // and node 3 when truncating to 2 (stale until an append overwrites them). We climb
        // through every ancestor the old tree had, so the list is complete.
        while ite.peek_right_span() < old_head && ite.factor() < MAX_FACTOR {
            if ite.contains(head) && ite.index() < head {
                out.parents.push(ite.index());
            }
            ite.parent();
        }
        out
    }
}

/// Where a byte offset falls ([`Tree::seek`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// In block `index`, `offset` bytes in. At the end of the log this is
    /// `{ index: length, offset: 0 }`.
    Found {
        /// Block index.
        index: u64,
        /// Offset within the block.
        offset: u64,
    },
    /// In a subtree whose nodes are not stored: download a block in `start..end` (with a seek
    /// request) to narrow it down.
    Missing {
        /// First block of the subtree.
        start: u64,
        /// One past its last block.
        end: u64,
    },
}

impl Tree {
    /// The empty tree (length 0, fork 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree from its parts, as a store keeps them. `roots` must be the full roots of
    /// `length` in order.
    pub fn from_roots(
        length: u64,
        fork: u64,
        roots: Vec<Node>,
        signature: Option<Vec<u8>>,
    ) -> Result<Self, TreeError<Infallible>> {
        if length > peerhost_encoding::MAX_SAFE_UINT
            || !roots
                .iter()
                .map(|r| r.index)
                .eq(flat::full_roots(2 * length))
        {
            return Err(TreeError::BadArgument("roots do not match the length"));
        }
        Ok(Self {
            length,
            fork,
            byte_length: total_size(&roots),
            roots,
            signature,
            prologue: None,
        })
    }

    /// Load the head at `length` from `source` (lib/merkle-tree.js `getRootsFromStorage`).
    pub fn open<S: NodeSource>(
        length: u64,
        fork: u64,
        signature: Option<Vec<u8>>,
        source: &mut S,
    ) -> Result<Self, TreeError<S::Error>> {
        if length > peerhost_encoding::MAX_SAFE_UINT {
            return Err(TreeError::BadArgument("length out of range"));
        }
        let roots = flat::full_roots(2 * length)
            .into_iter()
            .map(|i| need(i, source.node(i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            length,
            fork,
            byte_length: total_size(&roots),
            roots,
            signature,
            prologue: None,
        })
    }

    /// Set the prologue of the core's manifest; proofs then always upgrade a peer past it
    /// in one step, as JS does (`generateProof`).
    pub fn set_prologue(&mut self, prologue: Option<Prologue>) {
        self.prologue = prologue;
    }

    /// Number of blocks.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Fork id: bumped by each truncation.
    pub fn fork(&self) -> u64 {
        self.fork
    }

    /// Total bytes of all blocks.
    pub fn byte_length(&self) -> u64 {
        self.byte_length
    }

    /// The roots, largest (leftmost) first.
    pub fn roots(&self) -> &[Node] {
        &self.roots
    }

    /// The signature of this head, if signed.
    pub fn signature(&self) -> Option<&[u8]> {
        self.signature.as_deref()
    }

    /// The prologue set with [`Tree::set_prologue`].
    pub fn prologue(&self) -> Option<Prologue> {
        self.prologue
    }

    /// The tree hash over the roots.
    pub fn hash(&self) -> [u8; 32] {
        hash::tree(&self.roots)
    }

    /// The 112-byte signable of this head for a v11 core with `manifest_hash`.
    pub fn signable(&self, manifest_hash: &[u8; 32]) -> [u8; 112] {
        signable(manifest_hash, &self.hash(), self.length, self.fork)
    }

    /// The 80-byte signable of this head for a compat core.
    pub fn signable_compat(&self) -> [u8; 80] {
        signable_compat(&self.hash(), self.length, self.fork)
    }

    /// Replace the signature (e.g. one assembled from several signers).
    pub fn set_signature(&mut self, signature: Option<Vec<u8>>) {
        self.signature = signature;
    }

    /// Sign this head with `key_pair` under `verifier`'s manifest and keep the signature.
    pub fn sign(&mut self, verifier: &Verifier, key_pair: &KeyPair) -> Result<(), ManifestError> {
        self.signature = Some(verifier.sign(self, key_pair)?);
        Ok(())
    }

    /// Append `blocks`; returns the nodes to persist (each leaf, then the parents it
    /// completes). The head moves and loses its signature: sign it again.
    pub fn append<B: AsRef<[u8]>>(&mut self, blocks: &[B]) -> Vec<Node> {
        let mut nodes = Vec::with_capacity(2 * blocks.len());
        for b in blocks {
            let mut ite = Iterator::new(2 * self.length);
            let leaf = Node::leaf(self.length, b.as_ref());
            self.append_root(leaf, &mut ite, &mut nodes);
        }
        self.signature = None;
        nodes
    }

    /// Add `node` (at `ite`) as the new last root, merging completed subtrees
    /// (lib/merkle-tree.js `appendRoot`). Leaves `ite` on the last root.
    pub(crate) fn append_root(&mut self, node: Node, ite: &mut Iterator, nodes: &mut Vec<Node>) {
        self.length += ite.factor() / 2;
        self.byte_length = self.byte_length.saturating_add(node.size);
        self.roots.push(node);
        nodes.push(node);
        while let [.., b, a] = self.roots[..] {
            // > if (ite.sibling() !== b.index) { ite.sibling() // unset so it always points to
            // > last root
            if ite.sibling() != b.index {
                ite.sibling();
                break;
            }
            let parent = Node::parent(ite.parent(), &a, &b);
            nodes.push(parent);
            self.roots.truncate(self.roots.len() - 2);
            self.roots.push(parent);
        }
    }

    /// Move the head back to `length` blocks on fork `fork` (the caller decides, usually
    /// `fork + 1`), loading the new roots from `source`. Returns the nodes that are now dead.
    /// The head loses its signature: sign it again.
    pub fn truncate<S: NodeSource>(
        &mut self,
        length: u64,
        fork: u64,
        source: &mut S,
    ) -> Result<Truncation, TreeError<S::Error>> {
        if length > self.length {
            return Err(TreeError::BadArgument("cannot truncate past the length"));
        }
        let full = flat::full_roots(2 * length);
        let mut roots = self.roots.clone();
        for (i, &index) in full.iter().enumerate() {
            // > if (i < batch.roots.length && batch.roots[i].index === root) continue
            // A root that stays a root is kept from memory; the rest come from the source.
            if roots.get(i).is_some_and(|r| r.index == index) {
                continue;
            }
            roots.truncate(i);
            roots.push(need(index, source.node(index))?);
        }
        roots.truncate(full.len());
        let out = Truncation::between(length, self.length);
        self.byte_length = total_size(&roots);
        self.roots = roots;
        self.length = length;
        self.fork = fork;
        self.signature = None;
        Ok(out)
    }

    /// The byte offset of block `index` (`byteOffset`). `index == length` gives the length.
    pub fn byte_offset<S: NodeSource>(
        &self,
        index: u64,
        source: &mut S,
    ) -> Result<u64, TreeError<S::Error>> {
        if index > self.length {
            return Err(TreeError::BadArgument("index is out of bounds"));
        }
        self.flat_byte_offset(2 * index, source)
    }

    /// `(offset, size)` of block `index` (`byteRange`).
    pub fn byte_range<S: NodeSource>(
        &self,
        index: u64,
        source: &mut S,
    ) -> Result<(u64, u64), TreeError<S::Error>> {
        if index >= self.length {
            return Err(TreeError::BadArgument("index is out of bounds"));
        }
        let offset = self.flat_byte_offset(2 * index, source)?;
        let size = need(2 * index, source.node(2 * index))?.size;
        Ok((offset, size))
    }

    /// The byte offset of the leftmost leaf under flat index `index`
    /// (lib/merkle-tree.js `getByteOffsetSession`).
    pub(crate) fn flat_byte_offset<S: NodeSource>(
        &self,
        index: u64,
        source: &mut S,
    ) -> Result<u64, TreeError<S::Error>> {
        if index == 2 * self.length {
            return Ok(self.byte_length);
        }
        let index = flat::left_span(index);
        let mut head = 0u64;
        let mut offset = 0u64;
        for root in &self.roots {
            head += 2 * (root.index - head + 1);
            if index >= head {
                offset += root.size;
                continue;
            }
            let mut ite = Iterator::new(root.index);
            while ite.index() != index {
                if ite.factor() == 2 {
                    return Err(TreeError::InvalidOperation("bad byte offset index"));
                }
                if index < ite.index() {
                    ite.left_child();
                } else {
                    let left = ite.left_child();
                    offset += need(left, source.node(left))?.size;
                    ite.sibling();
                }
            }
            return Ok(offset);
        }
        Err(TreeError::InvalidOperation("failed to find offset"))
    }

    /// Find the block holding byte `bytes` (lib/merkle-tree.js `ByteSeeker`), counting each
    /// block as `padding` bytes shorter. `None` if `bytes` is past the end.
    pub fn seek<S: NodeSource>(
        &self,
        bytes: u64,
        padding: u64,
        source: &mut S,
    ) -> Result<Option<Seek>, TreeError<S::Error>> {
        if bytes == 0 {
            return Ok(Some(Seek::Found {
                index: 0,
                offset: 0,
            }));
        }
        let mut bytes = bytes;
        for root in &self.roots {
            let size = unpadded(root, padding, flat::count_leaves(root.index));
            if bytes == size {
                return Ok(Some(found(flat::right_span(root.index) + 2, 0)));
            }
            if bytes > size {
                bytes -= size;
                continue;
            }
            let mut ite = Iterator::new(root.index);
            while ite.index() & 1 == 1 {
                let left = ite.left_child();
                match source.node(left).map_err(TreeError::Storage)? {
                    Some(l) => {
                        let size = unpadded(&l, padding, ite.count_leaves());
                        if size == bytes {
                            return Ok(Some(found(ite.right_span() + 2, 0)));
                        }
                        if size > bytes {
                            continue;
                        }
                        bytes -= size;
                        ite.sibling();
                    }
                    None => {
                        ite.parent();
                        let (l, r) = flat::spans(ite.index());
                        return Ok(Some(Seek::Missing {
                            start: l / 2,
                            end: r / 2 + 1,
                        }));
                    }
                }
            }
            return Ok(Some(found(ite.index(), bytes)));
        }
        Ok(None)
    }

    /// How many nodes from flat index `index` upwards a replica at this length lacks
    /// (lib/merkle-tree.js `missingNodes`): the `nodes` field of a request.
    pub fn missing_nodes<S: NodeSource>(
        &self,
        index: u64,
        source: &mut S,
    ) -> Result<u64, TreeError<S::Error>> {
        let head = 2 * self.length;
        if index > peerhost_encoding::MAX_SAFE_UINT {
            return Ok(0);
        }
        let mut ite = Iterator::new(index);
        // > If the index is not in the current tree, we do not know how many missing nodes
        if ite.peek_right_span() >= head {
            return Ok(0);
        }
        let mut count = 0;
        while !ite.contains(head)
            && source
                .node(ite.index())
                .map_err(TreeError::Storage)?
                .is_none()
        {
            count += 1;
            if ite.factor() >= MAX_FACTOR {
                return Err(TreeError::InvalidOperation(
                    "bad arguments to missing nodes",
                ));
            }
            ite.parent();
        }
        Ok(count)
    }

    /// The nodes JS deletes when blocks `start..end` are cleared (lib/session-state.js
    /// `clear`): climbing from block `start`, each pair of siblings whose other half holds no
    /// block (`has(first, count)` says whether any block in that range is present, after the
    /// clear). See the module docs for why keeping them is fine too.
    pub fn clear_nodes(
        &self,
        start: u64,
        end: u64,
        mut has: impl FnMut(u64, u64) -> bool,
    ) -> Vec<u64> {
        let mut out = vec![];
        if start >= self.length {
            return out;
        }
        let mut ite = Iterator::new(2 * start);
        while !self.roots.iter().any(|r| r.index == ite.index()) && ite.factor() < MAX_FACTOR {
            let a = ite.index();
            let b = ite.sibling();
            ite.parent();
            let (l, r) = flat::spans(b);
            let (s, e) = (l / 2, r / 2 + 1);
            let present = if s >= start && e <= end {
                false
            } else {
                has(s, e - s)
            };
            if present {
                break;
            }
            out.push(a);
            out.push(b);
        }
        out
    }
}

/// Sum of the nodes' sizes (`totalSize`), saturating on nonsense input.
pub(crate) fn total_size(nodes: &[Node]) -> u64 {
    nodes.iter().fold(0, |acc, n| acc.saturating_add(n.size))
}

fn found(flat_index: u64, offset: u64) -> Seek {
    Seek::Found {
        index: flat_index / 2,
        offset,
    }
}

/// A node's size without its blocks' padding (`getUnpaddedSize`).
pub(crate) fn unpadded(node: &Node, padding: u64, leaves: u64) -> u64 {
    node.size.saturating_sub(padding.saturating_mul(leaves))
}

/// The most nodes a replica at `length` can lack above flat index `index`
/// (lib/merkle-tree.js `maxMissingNodes`), what JS puts in a pushed block's `nodes`.
pub fn max_missing_nodes(index: u64, length: u64) -> u64 {
    let safe = peerhost_encoding::MAX_SAFE_UINT;
    if index > safe || length > safe {
        return 0;
    }
    let head = 2 * length;
    let mut ite = Iterator::new(index);
    if ite.peek_right_span() >= head || flat::full_roots(head).contains(&index) {
        return 0;
    }
    ite.parent();
    let mut count = 0;
    while !ite.contains(head) && ite.factor() < MAX_FACTOR {
        count += 1;
        ite.parent();
    }
    count
}

/// The length a peer reaches with `upgrade` (lib/merkle-tree.js `upgradeLength`): past the
/// requested length when additional nodes were sent.
pub fn upgrade_length(upgrade: &DataUpgrade) -> u64 {
    match upgrade.additional_nodes.last() {
        Some(last) => flat::right_span(last.index) / 2 + 1,
        None => upgrade.start.saturating_add(upgrade.length),
    }
}

/// The nodes that grow a tree of `from / 2` blocks into one of `to / 2` blocks: the siblings
/// that connect its last root, then the later roots (lib/merkle-tree.js
/// `additionalUpgradeProof`, verifier.js `generateUpgrade`).
pub(crate) fn upgrade_nodes<E>(
    from: u64,
    to: u64,
    get: &mut impl FnMut(u64) -> Result<Node, TreeError<E>>,
) -> Result<Vec<Node>, TreeError<E>> {
    let mut out = vec![];
    let mut connected = from == 0;
    let mut ite = Iterator::new(0);
    while ite.full_root(to) {
        // > if (ite.index + ite.factor / 2 < from) continue  // they already have the node
        if ite.index() + ite.factor() / 2 < from {
            ite.next_tree();
            continue;
        }
        if !connected && ite.contains(from - 2) {
            connected = true;
            let root = ite.index();
            let target = from - 2;
            ite.seek(target);
            while ite.index() != root {
                if ite.factor() >= MAX_FACTOR {
                    return Err(TreeError::InvalidOperation("bad upgrade range"));
                }
                ite.sibling();
                if ite.index() > target {
                    out.push(get(ite.index())?);
                }
                ite.parent();
            }
            ite.next_tree();
            continue;
        }
        connected = true;
        out.push(get(ite.index())?);
        ite.next_tree();
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
