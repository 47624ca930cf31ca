//! Building proofs: the `data` reply a JS peer sends for a `request`
//! (lib/merkle-tree.js `generateProof` and the functions it calls).
//!
//! The node lists must equal JS's byte for byte, so the shape of the JS algorithm is kept:
//! - a block (or hash) request climbs from the leaf through `nodes` ancestors to a subtree
//!   root the requester has (`nodesToRoot`), taking each sibling (`blockAndSeekProof`);
//! - a seek inside that subtree replaces the sibling that contains the seek target with the
//!   chain down to it (`seekProof`);
//! - an upgrade from `start` to `start + length` sends the siblings connecting the requester's
//!   last root, then the later roots (`upgradeProof`); when the block lies in the new part, its
//!   proof stands in for the root (or sibling) it hashes up to, so no node is sent twice;
//! - when we are longer than `start + length`, `additionalNodes` carry our remaining roots and
//!   the signature covers our full head (`additionalUpgradeProof`).

use super::{Iterator, MAX_FACTOR, Tree, unpadded, upgrade_nodes};
use crate::error::{TreeError, need};
use crate::flat;
use crate::manifest::Manifest;
use crate::proof::{Data, DataBlock, DataHash, DataSeek, DataUpgrade, Request, RequestSeek};
use crate::{Node, NodeSource};

/// A proof built by [`Tree::proof`]: a `data` message without the block's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The request id.
    pub request: u64,
    /// The request's fork (JS echoes `req.msg.fork`).
    pub fork: u64,
    /// The proven block's index and nodes; its bytes come from the block store.
    pub block: Option<(u64, Vec<Node>)>,
    /// A hash proof.
    pub hash: Option<DataHash>,
    /// A seek proof.
    pub seek: Option<DataSeek>,
    /// An upgrade.
    pub upgrade: Option<DataUpgrade>,
}

impl Proof {
    /// The `data` message: `value` is the block's bytes, `manifest` what to send when the
    /// request asked for it and the core is not compat (lib/replicator.js `_getProof`).
    /// `None` when the proof has a block but no `value` was given (JS then sends `noData`).
    pub fn into_data(self, value: Option<Vec<u8>>, manifest: Option<Manifest>) -> Option<Data> {
        let block = match (self.block, value) {
            (Some((index, nodes)), Some(value)) => Some(DataBlock {
                index,
                value,
                nodes,
            }),
            (Some(_), None) => return None,
            (None, _) => None,
        };
        Some(Data {
            request: self.request,
            fork: self.fork,
            block,
            hash: self.hash,
            seek: self.seek,
            upgrade: self.upgrade,
            manifest,
        })
    }
}

/// The block or node a request proves (`normalizeIndexed`).
#[derive(Debug, Clone, Copy)]
struct Indexed {
    /// A block (its leaf is sent as a value, not as a node) rather than a tree node.
    value: bool,
    index: u64,
    nodes: u64,
    last_index: u64,
}

#[derive(Debug, Default)]
struct Pending {
    node: Option<Vec<Node>>,
    seek: Option<Vec<Node>>,
    upgrade: Option<Vec<Node>>,
}

struct Reads<'a, S> {
    source: &'a mut S,
}

impl<S: NodeSource> Reads<'_, S> {
    fn get(&mut self, index: u64) -> Result<Node, TreeError<S::Error>> {
        need(index, self.source.node(index))
    }
}

fn climb<E>(ite: &Iterator) -> Result<(), TreeError<E>> {
    if ite.factor() >= MAX_FACTOR {
        return Err(TreeError::InvalidOperation(
            "proof root is not above the node",
        ));
    }
    Ok(())
}

impl Tree {
    /// Build the proof a JS peer at this head sends for `request` (lib/merkle-tree.js
    /// `MerkleTree.proof`). Like JS, this does not check that the block is present or that
    /// the request's fork is ours: the replicator answers those with `noData` first.
    pub fn proof<S: NodeSource>(
        &self,
        request: &Request,
        source: &mut S,
    ) -> Result<Proof, TreeError<S::Error>> {
        let safe = peerhost_encoding::MAX_SAFE_UINT;
        let numbers = [request.block, request.hash]
            .into_iter()
            .flatten()
            .flat_map(|b| [b.index, b.nodes])
            .chain(request.seek.map(|s| s.bytes))
            .chain(
                request
                    .upgrade
                    .into_iter()
                    .flat_map(|u| [u.start, u.length]),
            );
        for n in numbers {
            if n > safe {
                return Err(TreeError::BadArgument("request field out of range"));
            }
        }
        let mut out = Proof {
            request: request.id,
            fork: request.fork,
            block: None,
            hash: None,
            seek: None,
            upgrade: None,
        };
        let mut upgrade = request.upgrade;
        if let (Some(p), Some(u)) = (&self.prologue, upgrade.as_mut()) {
            // > upgrade.start = upgrade.start < session.prologue.length ? 0 : upgrade.start
            // > upgrade.length = upgrade.start < session.prologue.length ? …prologue.length : …
            if u.start < p.length {
                u.start = 0;
                u.length = p.length;
            }
        }
        let head = 2 * self.length;
        let from = upgrade.map_or(0, |u| 2 * u.start);
        let to = upgrade.map_or(head, |u| from + 2 * u.length);
        let node = match (request.block, request.hash) {
            (Some(b), _) => Some(Indexed {
                value: true,
                index: 2 * b.index,
                nodes: b.nodes,
                last_index: b.index,
            }),
            (None, Some(h)) => Some(Indexed {
                value: false,
                index: h.index,
                nodes: h.nodes,
                last_index: flat::right_span(h.index) / 2,
            }),
            (None, None) => None,
        };
        // > if (head === 0) return new TreeProof(session, null, null, null, null)
        if head == 0 {
            return Ok(out);
        }
        if from >= to || to > head {
            return Err(TreeError::InvalidOperation("invalid upgrade"));
        }
        let seek = request.seek;
        if seek.is_some() && upgrade.is_some() && node.is_some_and(|n| n.index >= from) {
            return Err(TreeError::InvalidOperation(
                "cannot both do a seek and block/hash request when upgrading",
            ));
        }

        let mut reads = Reads { source };
        let mut p = Pending::default();
        let mut sub_tree = head;
        match node {
            Some(n) if upgrade.is_none_or(|u| n.last_index < u.start) => {
                sub_tree = nodes_to_root(n.index, n.nodes, to)?;
                let seek_root = match seek {
                    Some(s) => self.seek_untrusted_tree(sub_tree, s, &mut reads)?,
                    None => head,
                };
                block_and_seek_proof(
                    Some(&n),
                    seek.is_some(),
                    seek_root,
                    sub_tree,
                    &mut p,
                    &mut reads,
                )?;
            }
            _ if (node.is_some() || seek.is_some()) && upgrade.is_some() => {
                sub_tree = match (seek, node) {
                    (Some(s), _) => seek_from_head(to, s, &mut reads)?,
                    (None, Some(n)) => n.index,
                    (None, None) => head,
                };
            }
            _ => {}
        }

        let mut additional = None;
        if upgrade.is_some() {
            upgrade_proof(
                node.as_ref(),
                seek.is_some(),
                from,
                to,
                sub_tree,
                &mut p,
                &mut reads,
            )?;
            if head > to {
                additional = Some(upgrade_nodes(to, head, &mut |i| reads.get(i))?);
            }
        }

        // > settle(): a block or hash request whose proof could not be built is invalid.
        if let Some(b) = request.block {
            let nodes = p
                .node
                .take()
                .ok_or(TreeError::InvalidOperation("invalid block request"))?;
            out.block = Some((b.index, nodes));
        } else if let Some(h) = request.hash {
            let nodes = p
                .node
                .take()
                .ok_or(TreeError::InvalidOperation("invalid block request"))?;
            out.hash = Some(DataHash {
                index: h.index,
                nodes,
            });
        }
        if let (Some(s), Some(nodes)) = (seek, p.seek) {
            out.seek = Some(DataSeek {
                bytes: s.bytes,
                nodes,
            });
        }
        if let Some(u) = upgrade {
            out.upgrade = Some(DataUpgrade {
                start: u.start,
                length: u.length,
                nodes: p.upgrade.unwrap_or_default(),
                additional_nodes: additional.unwrap_or_default(),
                signature: self.signature.clone(),
            });
        }
        Ok(out)
    }

    /// Locate `seek` inside the subtree `root` without trusting that it is there
    /// (`seekUntrustedTree`).
    fn seek_untrusted_tree<S: NodeSource>(
        &self,
        root: u64,
        seek: RequestSeek,
        reads: &mut Reads<'_, S>,
    ) -> Result<u64, TreeError<S::Error>> {
        let padding = seek.padding;
        // hypercore 11.39.5 quirk: `getByteOffsetBatch` pushes the *sizes* of the roots left of
        // `root` and the caller sums `.size` of them, so any subtree not under the first root
        // gets offset NaN; every comparison fails and `seekTrustedTree(root, NaN)` returns the
        // subtree root: no seek proof. We answer the same (JS accepts both).
        if root != 2 * self.length && flat::left_span(root) >= 2 * self.length {
            return Err(TreeError::InvalidOperation("failed to find offset"));
        }
        if !self.js_offset_is_number(root) {
            reads.get(root)?;
            return Ok(root);
        }
        let offset = self
            .flat_byte_offset(root, reads.source)?
            .saturating_sub(padding.saturating_mul(flat::left_span(root) / 2));
        if offset > seek.bytes {
            return Err(TreeError::InvalidOperation("invalid seek"));
        }
        if offset == seek.bytes {
            return Ok(root);
        }
        let bytes = seek.bytes - offset;
        let node = reads.get(root)?;
        if unpadded(&node, padding, flat::count_leaves(root)) <= bytes {
            return Err(TreeError::InvalidOperation("invalid seek"));
        }
        seek_trusted_tree(root, bytes, padding, reads)
    }
}

impl Tree {
    /// Whether JS's `getByteOffsetSession(index)` is a number: `index` is the head, or lies
    /// under the first root.
    fn js_offset_is_number(&self, index: u64) -> bool {
        index == 2 * self.length
            || self
                .roots
                .first()
                .is_some_and(|r| flat::left_span(index) <= flat::right_span(r.index))
    }
}

/// Climb `nodes` parents from `index`; the result must stay left of `head`
/// (`nodesToRoot`).
fn nodes_to_root<E>(index: u64, nodes: u64, head: u64) -> Result<u64, TreeError<E>> {
    let mut ite = Iterator::new(index);
    for _ in 0..nodes {
        ite.parent();
        if ite.contains(head) {
            return Err(TreeError::InvalidOperation("nodes is out of bounds"));
        }
        // Unreachable for indices below 2^55: the subtree covers `head` long before.
        climb(&ite)?;
    }
    Ok(ite.index())
}

/// The node under `root` holding byte `bytes` of it (`seekTrustedTree`).
fn seek_trusted_tree<S: NodeSource>(
    root: u64,
    mut bytes: u64,
    padding: u64,
    reads: &mut Reads<'_, S>,
) -> Result<u64, TreeError<S::Error>> {
    if bytes == 0 {
        return Ok(root);
    }
    let mut ite = Iterator::new(root);
    // Each turn moves one level down, so this ends at a leaf at the latest.
    while ite.index() & 1 == 1 {
        let left = ite.left_child();
        match reads.source.node(left).map_err(TreeError::Storage)? {
            Some(l) => {
                let size = unpadded(&l, padding, ite.count_leaves());
                if size == bytes {
                    return Ok(ite.index());
                }
                if size > bytes {
                    continue;
                }
                bytes -= size;
                ite.sibling();
            }
            None => {
                ite.parent();
                return Ok(ite.index());
            }
        }
    }
    Ok(ite.index())
}

/// The node holding byte `seek.bytes` of the tree of `head / 2` blocks (`seekFromHead`).
fn seek_from_head<S: NodeSource>(
    head: u64,
    seek: RequestSeek,
    reads: &mut Reads<'_, S>,
) -> Result<u64, TreeError<S::Error>> {
    let mut bytes = seek.bytes;
    for root in flat::full_roots(head) {
        let node = reads.get(root)?;
        let size = unpadded(&node, seek.padding, flat::count_leaves(root));
        if bytes == size {
            return Ok(root);
        }
        if bytes > size {
            bytes -= size;
            continue;
        }
        return seek_trusted_tree(root, bytes, seek.padding, reads);
    }
    Ok(head)
}

/// The chain from `seek_root` up to `root`: the node, then each sibling (`seekProof`).
fn seek_proof<S: NodeSource>(
    seek_root: u64,
    root: u64,
    p: &mut Pending,
    reads: &mut Reads<'_, S>,
) -> Result<(), TreeError<S::Error>> {
    let mut ite = Iterator::new(seek_root);
    let mut out = vec![reads.get(ite.index())?];
    while ite.index() != root {
        climb(&ite)?;
        ite.sibling();
        out.push(reads.get(ite.index())?);
        ite.parent();
    }
    p.seek = Some(out);
    Ok(())
}

/// The siblings from `node` up to `root`, with the seek chain in place of the sibling that
/// contains `seek_root` (`blockAndSeekProof`).
fn block_and_seek_proof<S: NodeSource>(
    node: Option<&Indexed>,
    seek: bool,
    seek_root: u64,
    root: u64,
    p: &mut Pending,
    reads: &mut Reads<'_, S>,
) -> Result<(), TreeError<S::Error>> {
    let Some(node) = node else {
        return seek_proof(seek_root, root, p, reads);
    };
    let mut ite = Iterator::new(node.index);
    let mut out = vec![];
    // > if (!node.value) p.node.push(getTreeNodeOrError(rx, ite.index))
    if !node.value {
        out.push(reads.get(ite.index())?);
    }
    while ite.index() != root {
        climb(&ite)?;
        ite.sibling();
        if seek && ite.contains(seek_root) && ite.index() != seek_root {
            seek_proof(seek_root, ite.index(), p, reads)?;
        } else {
            out.push(reads.get(ite.index())?);
        }
        ite.parent();
    }
    p.node = Some(out);
    Ok(())
}

/// The nodes growing a tree of `from / 2` blocks into one of `to / 2`, with the block/seek
/// proof standing in for the node above it (`upgradeProof`).
fn upgrade_proof<S: NodeSource>(
    node: Option<&Indexed>,
    seek: bool,
    from: u64,
    to: u64,
    sub_tree: u64,
    p: &mut Pending,
    reads: &mut Reads<'_, S>,
) -> Result<(), TreeError<S::Error>> {
    if from == 0 {
        p.upgrade = Some(vec![]);
    }
    let mut ite = Iterator::new(0);
    while ite.full_root(to) {
        // > check if they already have the node
        if ite.index() + ite.factor() / 2 < from {
            ite.next_tree();
            continue;
        }
        // > connect existing tree
        if p.upgrade.is_none() && ite.contains(from - 2) {
            p.upgrade = Some(vec![]);
            let root = ite.index();
            let target = from - 2;
            ite.seek(target);
            while ite.index() != root {
                climb(&ite)?;
                ite.sibling();
                if ite.index() > target {
                    if p.node.is_none() && p.seek.is_none() && ite.contains(sub_tree) {
                        block_and_seek_proof(node, seek, sub_tree, ite.index(), p, reads)?;
                    } else {
                        let n = reads.get(ite.index())?;
                        p.upgrade.get_or_insert_with(Vec::new).push(n);
                    }
                }
                ite.parent();
            }
            ite.next_tree();
            continue;
        }
        p.upgrade.get_or_insert_with(Vec::new);
        // > if the subtree included is a child of this tree, include that one
        // > instead of a dup node
        if p.node.is_none() && p.seek.is_none() && ite.contains(sub_tree) {
            block_and_seek_proof(node, seek, sub_tree, ite.index(), p, reads)?;
            ite.next_tree();
            continue;
        }
        let n = reads.get(ite.index())?;
        p.upgrade.get_or_insert_with(Vec::new).push(n);
        ite.next_tree();
    }
    Ok(())
}
