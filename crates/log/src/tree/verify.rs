//! Verifying proofs (lib/merkle-tree.js `verifyTree`, `verifyUpgrade`, `MerkleTree.verify`,
//! `MerkleTree.reorg`, `ReorgBatch`; lib/core.js `verify`).
//!
//! - The block (or hash) proof hashes up from the leaf, taking each sibling from the proof, to
//!   an "unverified" root; a seek proof first builds its own chain, whose top may stand in for
//!   one of those siblings.
//! - An upgrade grows our roots with its nodes to the roots at `start + length`; if the
//!   unverified root is one of the nodes it needs, it is consumed there (and so covered by the
//!   signature). `additionalNodes` then grow the head to the sender's full length. The new
//!   head's signature must verify against the manifest.
//! - An unverified root left over must equal the node we store at its index.
//!
//! Work is bounded: each proof part may hold at most [`MAX_NODES`] nodes ([`MAX_UPGRADE_NODES`]
//! for upgrade nodes), every loop consumes a node or descends a level, nothing recurses.

use std::collections::{HashMap, HashSet};

use super::{Iterator, Tree};
use crate::error::VerifyError;
use crate::flat;
use crate::manifest::Prologue;
use crate::proof::{Data, DataUpgrade};
use crate::verifier::Verifier;
use crate::{Node, NodeSource};

/// Most nodes a block, hash or seek proof (or `additionalNodes`) needs: one per level of a
/// tree of 2^64 blocks. JS accepts up to 2^20; no honest peer sends more than 54.
pub const MAX_NODES: usize = 64;

/// Most nodes an upgrade's `nodes` needs: a path to connect our last root plus the later roots.
pub const MAX_UPGRADE_NODES: usize = 2 * MAX_NODES;

/// What a verified `data` message changes. The caller persists `nodes` (and the block), then
/// adopts `head` if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Tree nodes proven by the message, each once, to store.
    pub nodes: Vec<Node>,
    /// The proven block.
    pub block: Option<VerifiedBlock>,
    /// The new, signed head, if the message upgraded us to a longer length.
    pub head: Option<Tree>,
}

/// What [`Tree::verify_proof`] returns: a [`Verified`] without a copy of the block. The
/// proven block, if any, is the message's own `data.block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// Tree nodes proven by the message, each once, to store.
    pub nodes: Vec<Node>,
    /// The new, signed head, if the message upgraded us to a longer length.
    pub head: Option<Tree>,
}

/// A block whose bytes hash into the verified tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBlock {
    /// Block index.
    pub index: u64,
    /// The block's bytes.
    pub value: Vec<u8>,
}

/// The next proof a reorg needs to find where the forks diverge (`ReorgBatch.want`): a hash
/// request for the subtree covering blocks `start..end`, with `nodes` missing nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorgWant {
    /// First block of the diverging subtree.
    pub start: u64,
    /// One past its last block (capped at our old length).
    pub end: u64,
    /// The `nodes` to ask for.
    pub nodes: u64,
}

/// Following a peer onto another fork (lib/merkle-tree.js `ReorgBatch`): the verified head of
/// the new fork, and how many of our blocks it shares (`ancestors`), narrowed down with more
/// hash proofs until [`Reorg::finished`].
///
/// To apply it the caller deletes the blocks and nodes from `ancestors` on
/// ([`super::Truncation::between`]`(ancestors, old length)`), stores [`Reorg::nodes`], and
/// adopts [`Reorg::head`] (lib/session-state.js `reorg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reorg {
    head: Tree,
    nodes: Vec<Node>,
    ancestors: u64,
    diff: Option<Node>,
    want: Option<ReorgWant>,
    tree_length: u64,
}

/// The queue of proof nodes, with one extra node that may be taken at any point
/// (lib/merkle-tree.js `NodeQueue`).
struct NodeQueue<'a> {
    nodes: &'a [Node],
    i: usize,
    extra: Option<Node>,
}

impl<'a> NodeQueue<'a> {
    fn new(nodes: &'a [Node], extra: Option<Node>) -> Self {
        Self { nodes, i: 0, extra }
    }

    fn len(&self) -> usize {
        self.nodes.len() - self.i + usize::from(self.extra.is_some())
    }

    fn shift<E>(&mut self, index: u64) -> Result<Node, VerifyError<E>> {
        if let Some(e) = self.extra.filter(|e| e.index == index) {
            self.extra = None;
            return Ok(e);
        }
        let Some(node) = self.nodes.get(self.i) else {
            return Err(VerifyError::UnexpectedNode {
                expected: index,
                got: None,
            });
        };
        if node.index != index {
            return Err(VerifyError::UnexpectedNode {
                expected: index,
                got: Some(node.index),
            });
        }
        self.i += 1;
        Ok(*node)
    }
}

/// Hash `first` up through the queue's nodes (each the sibling of the running root).
/// Terminates: every turn takes a node.
fn hash_up<E>(
    mut ite: Iterator,
    first: Node,
    q: &mut NodeQueue<'_>,
    nodes: &mut Vec<Node>,
) -> Result<Node, VerifyError<E>> {
    let mut root = first;
    nodes.push(root);
    while q.len() > 0 {
        let node = q.shift(ite.sibling())?;
        root = Node::parent(ite.parent(), &root, &node);
        nodes.push(node);
        nodes.push(root);
    }
    Ok(root)
}

/// Rebuild the root a block/hash/seek proof hashes to (`verifyTree`).
fn verify_tree<E>(data: &Data, nodes: &mut Vec<Node>) -> Result<Option<Node>, VerifyError<E>> {
    let untrusted = match (&data.block, &data.hash) {
        (Some(b), _) => Some((2 * b.index, Some(&b.value[..]), &b.nodes[..])),
        (None, Some(h)) => Some((h.index, None, &h.nodes[..])),
        (None, None) => None,
    };
    let seek = data.seek.as_ref().filter(|s| !s.nodes.is_empty());
    let mut root = None;
    if let Some(s) = seek {
        let ite = Iterator::new(s.nodes[0].index);
        let mut q = NodeQueue::new(&s.nodes, None);
        let first = q.shift(ite.index())?;
        root = Some(hash_up(ite, first, &mut q, nodes)?);
    }
    let Some((index, value, proof)) = untrusted else {
        return Ok(root);
    };
    let ite = Iterator::new(index);
    let mut q = NodeQueue::new(proof, root);
    // > const blockHash = untrustedNode.value && blockNode(ite.index, untrustedNode.value)
    // An empty block is a value too (JS: an empty Buffer is truthy), so `Some(&[])` hashes.
    let first = match value {
        Some(v) => Node::leaf(index / 2, v),
        None => q.shift(ite.index())?,
    };
    hash_up(ite, first, &mut q, nodes).map(Some)
}

/// Refuse oversized or out-of-range proofs before doing any work. Ours: JS only has
/// compact-encoding's 2^20 items per array; with at most 64 nodes per part and indices below 2^53
/// every loop of the verifier is bounded by about a hundred steps and no index arithmetic can
/// overflow.
fn check_bounds<E>(data: &Data) -> Result<(), VerifyError<E>> {
    let safe = peerhost_encoding::MAX_SAFE_UINT;
    let mut parts: Vec<(&'static str, &[Node], usize)> = vec![];
    if let Some(b) = &data.block {
        parts.push(("block", &b.nodes, MAX_NODES));
        if b.index > safe {
            return Err(VerifyError::OutOfRange);
        }
    }
    if let Some(h) = &data.hash {
        parts.push(("hash", &h.nodes, MAX_NODES));
        if h.index > safe {
            return Err(VerifyError::OutOfRange);
        }
    }
    if let Some(s) = &data.seek {
        parts.push(("seek", &s.nodes, MAX_NODES));
    }
    if let Some(u) = &data.upgrade {
        parts.push(("upgrade", &u.nodes, MAX_UPGRADE_NODES));
        parts.push(("additionalNodes", &u.additional_nodes, MAX_NODES));
        if u.start > safe || u.length > safe {
            return Err(VerifyError::OutOfRange);
        }
    }
    for (part, nodes, max) in parts {
        if nodes.len() > max {
            return Err(VerifyError::TooManyNodes {
                part,
                count: nodes.len(),
            });
        }
        if nodes.iter().any(|n| n.index > safe) {
            return Err(VerifyError::OutOfRange);
        }
    }
    Ok(())
}

fn dedup(nodes: Vec<Node>) -> Vec<Node> {
    let mut seen = HashSet::with_capacity(nodes.len());
    nodes.into_iter().filter(|n| seen.insert(n.index)).collect()
}

impl Tree {
    /// Grow this head with an upgrade proof (`verifyUpgrade`). `block_root` is the root of
    /// the block/hash/seek proof, which the upgrade may consume; returns whether it did. New
    /// nodes go to `nodes`. Bounds must have been checked ([`check_bounds`]).
    pub(crate) fn apply_upgrade<E>(
        &mut self,
        fork: u64,
        upgrade: &DataUpgrade,
        block_root: Option<Node>,
        prologue: Option<&Prologue>,
        nodes: &mut Vec<Node>,
    ) -> Result<bool, VerifyError<E>> {
        let (start, length) = (upgrade.start, upgrade.length);
        if let Some(p) = prologue {
            if start < p.length && (start != 0 || length < p.length) {
                return Err(VerifyError::InvalidProof(
                    "upgrade does not satisfy prologue",
                ));
            }
        }
        let mut q = NodeQueue::new(&upgrade.nodes, block_root);
        let mut grow = !self.roots.is_empty();
        let mut i = 0;
        let to = 2 * (start + length);
        let mut ite = Iterator::new(0);
        while ite.full_root(to) {
            if self.roots.get(i).is_some_and(|r| r.index == ite.index()) {
                i += 1;
                ite.next_tree();
                continue;
            }
            // > if (grow) { grow = false … ite.seek(batch.roots[batch.roots.length - 1].index)
            // Only the first root that differs can be an old root grown by siblings; the later
            // ones must come whole.
            if grow {
                grow = false;
                let root = ite.index();
                if let (true, Some(last)) = (i < self.roots.len(), self.roots.last()) {
                    // Grow our last root until it is the root at `to`: each turn takes a node.
                    ite.seek(last.index);
                    while ite.index() != root {
                        let node = q.shift(ite.sibling())?;
                        self.append_root(node, &mut ite, nodes);
                    }
                    ite.next_tree();
                    continue;
                }
            }
            let node = q.shift(ite.index())?;
            self.append_root(node, &mut ite, nodes);
            ite.next_tree();
        }

        if let Some(p) = prologue {
            if self.length == p.length && self.hash() != p.hash {
                return Err(VerifyError::InvalidProof("invalid hash"));
            }
        }

        let extra = &upgrade.additional_nodes;
        let Some(last) = self.roots.last() else {
            // JS throws a TypeError reading the last root of an empty tree.
            return Err(VerifyError::InvalidOperation("upgrade to an empty tree"));
        };
        ite.seek(last.index);
        let mut i = 0;
        // > while (i < extra.length && extra[i].index === ite.sibling())
        while i < extra.len() && extra[i].index == ite.sibling() {
            self.append_root(extra[i], &mut ite, nodes);
            i += 1;
        }
        while i < extra.len() {
            let node = extra[i];
            i += 1;
            while node.index != ite.index() {
                if ite.factor() == 2 {
                    return Err(VerifyError::UnexpectedNode {
                        expected: ite.index(),
                        got: Some(node.index),
                    });
                }
                ite.left_child();
            }
            self.append_root(node, &mut ite, nodes);
            ite.sibling();
        }

        self.signature = upgrade.signature.clone();
        self.fork = fork;
        // > return q.extra === null: the block root was one of the upgrade's nodes, so the
        // signature covers it and nothing needs to match our storage.
        Ok(q.extra.is_none())
    }

    /// Verify a `data` message against this head (JS `core.verify` without the storage
    /// writes). `verifier` checks the signature of an upgrade; `source` provides the stored
    /// node a non-upgrade proof is anchored on.
    ///
    /// The signature is only checked when the head grows: an upgrade to our own length changes
    /// nothing (JS `downgrade`s such a batch and skips the check).
    pub fn verify<S: NodeSource>(
        &self,
        data: &Data,
        verifier: &Verifier,
        source: &mut S,
    ) -> Result<Verified, VerifyError<S::Error>> {
        let VerifiedProof { nodes, head } = self.verify_proof(data, verifier, source)?;
        Ok(Verified {
            nodes,
            block: data.block.as_ref().map(|b| VerifiedBlock {
                index: b.index,
                value: b.value.clone(),
            }),
            head,
        })
    }

    /// [`Tree::verify`] without copying the block's bytes: on success the block of `data` (if
    /// any) is proven, and the caller stores it from there.
    pub fn verify_proof<S: NodeSource>(
        &self,
        data: &Data,
        verifier: &Verifier,
        source: &mut S,
    ) -> Result<VerifiedProof, VerifyError<S::Error>> {
        // > if (proof.fork !== this.state.fork) return false
        if data.fork != self.fork {
            return Err(VerifyError::ForkMismatch {
                ours: self.fork,
                theirs: data.fork,
            });
        }
        check_bounds(data)?;
        let mut nodes = Vec::new();
        let mut unverified = verify_tree(data, &mut nodes)?;
        let mut batch = self.clone();
        if let Some(upgrade) = &data.upgrade {
            let prologue = verifier.prologue();
            if batch.apply_upgrade(
                data.fork,
                upgrade,
                unverified,
                prologue.as_ref(),
                &mut nodes,
            )? {
                unverified = None;
            }
        }
        // > const verified = await getTreeNodeFromStorageOrError(session.storage, unverified.index)
        // > if (!b4a.equals(verified.hash, unverified.hash)) throw INVALID_CHECKSUM(…)
        // (merkle-tree.js `MerkleTree.verify`): only the hash is compared, as in JS.
        if let Some(u) = unverified {
            let stored = source
                .node(u.index)
                .map_err(VerifyError::Storage)?
                .ok_or(VerifyError::MissingNode { index: u.index })?;
            if stored.hash != u.hash {
                return Err(VerifyError::InvalidChecksum { index: u.index });
            }
        }
        let head = if batch.length > self.length {
            if !verifier.verify(&batch, batch.signature()) {
                return Err(VerifyError::InvalidSignature);
            }
            Some(batch)
        } else {
            None
        };
        Ok(VerifiedProof {
            nodes: dedup(nodes),
            head,
        })
    }

    /// Verify a proof of another fork (`MerkleTree.reorg`): `data` must carry an upgrade from
    /// length 0 (what a JS peer sends a replica on an older fork) with a valid signature.
    /// The returned [`Reorg`] knows the new head and how far the forks agree so far.
    pub fn verify_reorg<S: NodeSource>(
        &self,
        data: &Data,
        verifier: &Verifier,
        source: &mut S,
    ) -> Result<Reorg, VerifyError<S::Error>> {
        let Some(upgrade) = &data.upgrade else {
            return Err(VerifyError::InvalidOperation("a reorg needs an upgrade"));
        };
        check_bounds(data)?;
        let mut nodes = Vec::new();
        let unverified = verify_tree(data, &mut nodes)?;
        let mut head = Self {
            fork: self.fork,
            prologue: self.prologue,
            ..Self::new()
        };
        let prologue = verifier.prologue();
        if !head.apply_upgrade(
            data.fork,
            upgrade,
            unverified,
            prologue.as_ref(),
            &mut nodes,
        )? {
            return Err(VerifyError::InvalidProof("fork proof not verifiable"));
        }
        if !verifier.verify(&head, head.signature()) {
            return Err(VerifyError::InvalidSignature);
        }
        let mut reorg = Reorg {
            head,
            nodes: dedup(nodes),
            ancestors: 0,
            diff: None,
            want: Some(ReorgWant {
                start: 0,
                end: 0,
                nodes: 0,
            }),
            tree_length: self.length,
        };
        for root in reorg.head.roots.clone() {
            match source.node(root.index).map_err(VerifyError::Storage)? {
                Some(n) if n.hash == root.hash => continue,
                _ => {
                    reorg.update_diff_root(root);
                    break;
                }
            }
        }
        if reorg.diff.is_some() {
            let nodes = reorg.nodes.clone();
            reorg.descend(&nodes, source)?;
        } else {
            reorg.want = None;
            reorg.ancestors = reorg.head.length;
        }
        Ok(reorg)
    }
}

impl Reorg {
    /// The verified head of the new fork.
    pub fn head(&self) -> &Tree {
        &self.head
    }

    /// Verified nodes of the new fork, to store.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// How many blocks the forks share, as far as known.
    pub fn ancestors(&self) -> u64 {
        self.ancestors
    }

    /// Whether `ancestors` is final.
    pub fn finished(&self) -> bool {
        self.want.is_none()
    }

    /// The hash proof to request next, until finished.
    pub fn want(&self) -> Option<ReorgWant> {
        self.want
    }

    /// Take the head, the nodes to store and the shared length.
    pub fn into_parts(self) -> (Tree, Vec<Node>, u64) {
        (self.head, self.nodes, self.ancestors)
    }

    /// Narrow the divergence with a hash (or block) proof of the new fork
    /// (`ReorgBatch.update`). `Ok(true)` once finished, `Ok(false)` if the proof was not for
    /// the diverging subtree or did not help.
    pub fn update<S: NodeSource>(
        &mut self,
        data: &Data,
        source: &mut S,
    ) -> Result<bool, VerifyError<S::Error>> {
        if self.want.is_none() {
            return Ok(true);
        }
        check_bounds(data)?;
        let mut nodes = Vec::new();
        let root = verify_tree(data, &mut nodes)?;
        let (Some(root), Some(diff)) = (root, self.diff) else {
            return Ok(false);
        };
        if root.hash != diff.hash {
            return Ok(false);
        }
        self.nodes.extend_from_slice(&nodes);
        self.nodes = dedup(std::mem::take(&mut self.nodes));
        self.descend(&nodes, source)
    }

    /// Walk down from the diverging node with `nodes`, keeping to the side that differs from
    /// what we store (`ReorgBatch._update`).
    fn descend<S: NodeSource>(
        &mut self,
        nodes: &[Node],
        source: &mut S,
    ) -> Result<bool, VerifyError<S::Error>> {
        let Some(start) = self.diff else {
            return Ok(false);
        };
        let known: HashMap<u64, Node> = nodes.iter().map(|n| (n.index, *n)).collect();
        let mut diff = None;
        let mut ite = Iterator::new(start.index);
        // Each turn descends a level.
        while ite.index() & 1 == 1 {
            let Some(left) = known.get(&ite.left_child()).copied() else {
                break;
            };
            let existing = source.node(left.index).map_err(VerifyError::Storage)?;
            if existing.is_none_or(|e| e.hash != left.hash) {
                diff = Some(left);
            } else {
                // The left halves agree, so the right ones differ. JS goes on with an undefined
                // node when the proof lacks it; we stop at what we know.
                match known.get(&ite.sibling()) {
                    Some(right) => diff = Some(*right),
                    None => break,
                }
            }
        }
        if start.index & 1 == 0 {
            return Ok(true);
        }
        match diff {
            Some(d) => Ok(self.update_diff_root(d)),
            None => Ok(false),
        }
    }

    /// Record `diff` as the highest node known to differ (`_updateDiffRoot`).
    fn update_diff_root(&mut self, diff: Node) -> bool {
        let Some(want) = self.want else {
            return true;
        };
        let (l, r) = flat::spans(diff.index);
        let start = l / 2;
        let end = self.tree_length.min(r / 2 + 1);
        self.ancestors = start;
        self.diff = Some(diff);
        if diff.index & 1 == 0 || want.start >= self.tree_length || end <= start {
            self.want = None;
            return true;
        }
        self.want = Some(ReorgWant {
            start,
            end,
            // > log2(spans[1] - spans[0] + 2) - 1: the depth of the subtree
            nodes: u64::from(flat::depth(diff.index)),
        });
        false
    }
}
