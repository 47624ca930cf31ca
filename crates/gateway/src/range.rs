//! The range proof: blocks `start..end` of a log and the tree nodes that, with the blocks' own
//! leaves, recompute every root of the tree at `length` (`protocol/gateway.md` §4).
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic  "PHR1"                                        4 bytes
//! fork   u64 ‖ length u64 ‖ start u64 ‖ end u64       32 bytes
//! nodes  u32 count ‖ count × (u64 index ‖ u64 size ‖ hash[32])
//! blocks (end − start) × (u32 len ‖ len bytes)
//! ```
//!
//! The nodes, in ascending flat index, and the leaves of the blocks (flat `2·start ..
//! 2·(end − 1)`) tile the leaves `0 .. 2·length` left to right with complete subtrees. The
//! verifier walks that tiling, merges every pair of adjacent siblings into their parent, and
//! must end with exactly the roots of `length`, whose tree hash must be the signed one.
//!
//! [`prove`] builds the minimal tiling (whole roots beside the range, and the largest subtrees
//! beside it inside the roots it touches); [`RangeProof::verify`] accepts any tiling within the
//! bounds, because the tree hash binds the blocks whichever subtrees carry the rest.

use peerhost_log::{Node, NodeSource, flat, hash};

/// The first four bytes of every range proof: format `PHR` version `1`.
pub const MAGIC: [u8; 4] = *b"PHR1";

/// Fixed header: magic, fork, length, start, end.
const HEADER_LEN: usize = 4 + 4 * 8;
/// One encoded node: index, size, hash.
const NODE_LEN: usize = 8 + 8 + 32;

/// The largest log length the format carries (2^48 blocks): flat indices then stay below 2^49,
/// exact in a JavaScript number.
pub const MAX_LENGTH: u64 = 1 << 48;

/// The most nodes a range proof may carry. The minimal tiling of any range of a log of at most
/// [`MAX_LENGTH`] blocks needs at most 48 roots plus two boundary paths of 47 siblings (143).
pub const MAX_NODES: usize = 256;

/// The most blocks one range proof may carry (servers cap ranges far lower).
pub const MAX_BLOCKS: u64 = 1 << 16;

/// The largest `size` a node may declare, and the largest sum of sizes (JS
/// `Number.MAX_SAFE_INTEGER`).
pub const MAX_SIZE: u64 = (1 << 53) - 1;

/// Why bytes are not a valid range proof, or do not prove what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeProofError {
    /// The body ends before a field it announced.
    #[error("range proof truncated")]
    Truncated,
    /// The body does not start with [`MAGIC`].
    #[error("not a range proof (bad magic)")]
    BadMagic,
    /// Bytes after the last block.
    #[error("{0} trailing bytes after the last block")]
    TrailingBytes(usize),
    /// A length, index, size or block count outside the format's bounds.
    #[error("range proof field {0} out of bounds")]
    OutOfBounds(&'static str),
    /// More than [`MAX_NODES`] nodes.
    #[error("range proof carries {0} nodes (at most {MAX_NODES})")]
    TooManyNodes(u64),
    /// The proof is for another fork than the head it is checked against.
    #[error("range proof is for fork {got}, expected {expected}")]
    ForkMismatch {
        /// The fork in the proof.
        got: u64,
        /// The head's fork.
        expected: u64,
    },
    /// The proof is for another length than the head it is checked against.
    #[error("range proof is for length {got}, expected {expected}")]
    LengthMismatch {
        /// The length in the proof.
        got: u64,
        /// The head's length.
        expected: u64,
    },
    /// The proof's blocks are not the requested range (or an allowed prefix of it).
    #[error("range proof covers {start}..{end}, not within the requested range")]
    RangeMismatch {
        /// The proof's first block.
        start: u64,
        /// The proof's end.
        end: u64,
    },
    /// The nodes and blocks do not tile the tree left to right.
    #[error("range proof node {index} is not where the tiling continues (leaf {expected})")]
    BadTiling {
        /// The offending node's flat index.
        index: u64,
        /// The leaf index where the next subtree had to start.
        expected: u64,
    },
    /// The nodes do not reduce to the roots of `length`.
    #[error("range proof does not reduce to the roots of its length")]
    BadRoots,
    /// The recomputed roots do not hash to the signed tree hash.
    #[error("range proof does not hash to the signed tree hash")]
    TreeHashMismatch,
}

impl RangeProofError {
    /// The JS `hypercore-errors` style code: `INVALID_PROOF` for a proof that is malformed or
    /// does not verify, `INVALID_OPERATION` for one about another head than asked.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ForkMismatch { .. }
            | Self::LengthMismatch { .. }
            | Self::RangeMismatch { .. } => "INVALID_OPERATION",
            _ => "INVALID_PROOF",
        }
    }
}

/// The head a range proof is checked against: a signed head the verifier already trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedHead {
    /// Fork of the head.
    pub fork: u64,
    /// Length of the head.
    pub length: u64,
    /// Its tree hash, which its signature covers.
    pub tree_hash: [u8; 32],
}

/// A decoded range proof. See the module docs for the byte layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeProof {
    /// The fork of the head proven against.
    pub fork: u64,
    /// The length of the head proven against.
    pub length: u64,
    /// The first block.
    pub start: u64,
    /// The proof nodes, ascending by flat index.
    pub nodes: Vec<Node>,
    /// Blocks `start .. start + blocks.len()`.
    pub blocks: Vec<Vec<u8>>,
}

/// Reads a proof body front to back; every read is bounds-checked (`Truncated`). Shared by
/// `PHR1` and `PHS1` (`set.rs`).
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RangeProofError> {
        if self.buf.len() < n {
            return Err(RangeProofError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, RangeProofError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, RangeProofError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    /// A minimal LEB128 varint below 2^53 (exact in a JavaScript number).
    pub(crate) fn varint(&mut self) -> Result<u64, RangeProofError> {
        let mut v = 0u64;
        for i in 0..8 {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(RangeProofError::OutOfBounds("varint not minimal"));
                }
                if v > MAX_SIZE {
                    return Err(RangeProofError::OutOfBounds("varint"));
                }
                return Ok(v);
            }
        }
        Err(RangeProofError::OutOfBounds("varint"))
    }
}

impl RangeProof {
    /// One past the last block.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.blocks.len() as u64)
    }

    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + 4
            + NODE_LEN * self.nodes.len()
            + self.blocks.iter().map(|b| 4 + b.len()).sum::<usize>()
    }

    /// Encode as the `PHR1` bytes a gateway sends.
    ///
    /// Blocks longer than `u32::MAX` bytes cannot be encoded; [`prove`] never produces them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        for n in [self.fork, self.length, self.start, self.end()] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&(self.nodes.len() as u32).to_le_bytes());
        for n in &self.nodes {
            out.extend_from_slice(&n.index.to_le_bytes());
            out.extend_from_slice(&n.size.to_le_bytes());
            out.extend_from_slice(&n.hash);
        }
        for b in &self.blocks {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    /// Decode and bound-check `bytes` (no hashing: see [`RangeProof::verify`]).
    ///
    /// Checks: magic; `start < end ≤ length ≤ MAX_LENGTH`; `end − start ≤ MAX_BLOCKS`; at most
    /// [`MAX_NODES`] nodes with strictly ascending indices below `2·length` and sizes at most
    /// [`MAX_SIZE`]; every block present; no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, RangeProofError> {
        let mut c = Cursor { buf: bytes };
        if c.take(4)? != MAGIC {
            return Err(RangeProofError::BadMagic);
        }
        let (fork, length, start, end) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
        if fork > MAX_SIZE {
            return Err(RangeProofError::OutOfBounds("fork"));
        }
        if length > MAX_LENGTH {
            return Err(RangeProofError::OutOfBounds("length"));
        }
        if start >= end || end > length || end - start > MAX_BLOCKS {
            return Err(RangeProofError::OutOfBounds("start/end"));
        }
        let count = c.u32()?;
        if count as usize > MAX_NODES {
            return Err(RangeProofError::TooManyNodes(count.into()));
        }
        let mut nodes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let index = c.u64()?;
            let size = c.u64()?;
            let mut hash = [0; 32];
            hash.copy_from_slice(c.take(32)?);
            if index >= 2 * length || nodes.last().is_some_and(|p: &Node| p.index >= index) {
                return Err(RangeProofError::OutOfBounds("node index"));
            }
            if size > MAX_SIZE {
                return Err(RangeProofError::OutOfBounds("node size"));
            }
            nodes.push(Node { index, size, hash });
        }
        // end − start ≤ MAX_BLOCKS, so this allocation is bounded; each block is checked
        // against the bytes that remain before it is copied.
        let mut blocks = Vec::with_capacity((end - start) as usize);
        for _ in start..end {
            let len = c.u32()? as usize;
            blocks.push(c.take(len)?.to_vec());
        }
        if !c.buf.is_empty() {
            return Err(RangeProofError::TrailingBytes(c.buf.len()));
        }
        Ok(Self {
            fork,
            length,
            start,
            nodes,
            blocks,
        })
    }

    /// Recompute the roots of the tree at `length` from the blocks and the nodes.
    ///
    /// The walk (`protocol/gateway.md` §4.3): a cursor starts at leaf 0. While the cursor is
    /// below `2·length`: if it stands at `2·start` and the blocks are not placed yet, push each
    /// block's leaf; else the next node must start at the cursor (`left_span == cursor`). The
    /// cursor moves past each pushed subtree (`right_span + 2`). After every push, while the
    /// two topmost subtrees on the stack are siblings, they are replaced by their parent. At
    /// the end every node and block must have been used and the stack must be exactly the full
    /// roots of `2·length`.
    pub fn roots(&self) -> Result<Vec<Node>, RangeProofError> {
        // The bounds `decode` guarantees, for proofs built by hand.
        if self.length > MAX_LENGTH
            || self.blocks.is_empty()
            || self.blocks.len() as u64 > MAX_BLOCKS
            || self.end() > self.length
        {
            return Err(RangeProofError::OutOfBounds("start/end"));
        }
        if self.nodes.len() > MAX_NODES {
            return Err(RangeProofError::TooManyNodes(self.nodes.len() as u64));
        }
        let head = 2 * self.length;
        let mut stack: Vec<Node> = Vec::with_capacity(64);
        let mut cursor = 0u64;
        let mut nodes = self.nodes.iter();
        let mut placed = false;
        while cursor < head {
            if !placed && cursor == 2 * self.start {
                for (i, b) in self.blocks.iter().enumerate() {
                    push_merge(&mut stack, Node::leaf(self.start + i as u64, b))?;
                }
                placed = true;
                cursor = 2 * self.end();
                continue;
            }
            let Some(n) = nodes.next() else {
                return Err(RangeProofError::BadTiling {
                    index: head,
                    expected: cursor,
                });
            };
            let (left, right) = flat::spans(n.index);
            if left != cursor || right >= head {
                return Err(RangeProofError::BadTiling {
                    index: n.index,
                    expected: cursor,
                });
            }
            cursor = right + 2;
            push_merge(&mut stack, *n)?;
        }
        if let Some(n) = nodes.next() {
            return Err(RangeProofError::BadTiling {
                index: n.index,
                expected: cursor,
            });
        }
        if !placed {
            return Err(RangeProofError::BadTiling {
                index: 2 * self.start,
                expected: cursor,
            });
        }
        let roots = flat::full_roots(head);
        if roots.len() != stack.len() || roots.iter().zip(&stack).any(|(i, n)| *i != n.index) {
            return Err(RangeProofError::BadRoots);
        }
        Ok(stack)
    }

    /// Check this proof against a trusted signed head and the request it answers: same fork
    /// and length; `start == requested.start`, `end ≤ requested.end` (a gateway may serve a
    /// prefix); the roots recomputed by [`RangeProof::roots`] hash to `head.tree_hash`.
    pub fn verify(
        &self,
        head: &TrustedHead,
        requested: std::ops::Range<u64>,
    ) -> Result<(), RangeProofError> {
        if self.fork != head.fork {
            return Err(RangeProofError::ForkMismatch {
                got: self.fork,
                expected: head.fork,
            });
        }
        if self.length != head.length {
            return Err(RangeProofError::LengthMismatch {
                got: self.length,
                expected: head.length,
            });
        }
        if self.start != requested.start || self.end() > requested.end {
            return Err(RangeProofError::RangeMismatch {
                start: self.start,
                end: self.end(),
            });
        }
        let roots = self.roots()?;
        if hash::tree(&roots) != head.tree_hash {
            return Err(RangeProofError::TreeHashMismatch);
        }
        Ok(())
    }
}

/// Decode `bytes` and [`RangeProof::verify`] them against `head` for `requested`.
pub fn verify(
    bytes: &[u8],
    head: &TrustedHead,
    requested: std::ops::Range<u64>,
) -> Result<RangeProof, RangeProofError> {
    let proof = RangeProof::decode(bytes)?;
    proof.verify(head, requested)?;
    Ok(proof)
}

/// Push `node` and merge sibling pairs on top of the stack into their parents.
fn push_merge(stack: &mut Vec<Node>, node: Node) -> Result<(), RangeProofError> {
    stack.push(node);
    while stack.len() >= 2 {
        let right = stack[stack.len() - 1];
        let left = stack[stack.len() - 2];
        if flat::sibling(right.index) != left.index || left.index > right.index {
            break;
        }
        let size = left
            .size
            .checked_add(right.size)
            .filter(|s| *s <= MAX_SIZE)
            .ok_or(RangeProofError::OutOfBounds("node size"))?;
        stack.truncate(stack.len() - 2);
        stack.push(Node {
            index: flat::parent(right.index),
            size,
            hash: hash::parent(&left, &right),
        });
    }
    Ok(())
}

/// The flat indices of the minimal proof for blocks `start..end` of a log of `length` blocks,
/// ascending: each root of `length` that holds no block of the range, and inside the roots that
/// do, the largest subtrees that hold none. Empty if the range is empty or out of bounds.
pub fn proof_indices(start: u64, end: u64, length: u64) -> Vec<u64> {
    let mut out = Vec::new();
    if start >= end || end > length || length > MAX_LENGTH {
        return out;
    }
    let mut stack: Vec<u64> = Vec::with_capacity(2 * 64);
    for root in flat::full_roots(2 * length) {
        stack.push(root);
        while let Some(n) = stack.pop() {
            let (left, right) = flat::spans(n);
            let (first, last) = (left / 2, right / 2);
            if last < start || first >= end {
                out.push(n);
            } else if first < start || last >= end {
                // Partly in the range, so not a leaf: look at both halves, left first.
                if let Some((l, r)) = flat::children(n) {
                    stack.push(r);
                    stack.push(l);
                }
            }
        }
    }
    out
}

/// Why [`prove`] could not build a proof.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError<E: std::error::Error + 'static> {
    /// `start..start + blocks.len()` is empty or not inside `0..length`, or `length` is above
    /// [`MAX_LENGTH`], or a block is longer than `u32::MAX` bytes.
    #[error("range {start}..{end} cannot be proven against length {length}")]
    BadRange {
        /// First block.
        start: u64,
        /// One past the last block.
        end: u64,
        /// Length of the head.
        length: u64,
    },
    /// A node the proof needs is not stored.
    #[error("tree node {0} is not stored here")]
    MissingNode(u64),
    /// The node source failed.
    #[error(transparent)]
    Source(E),
}

/// Build the minimal range proof for `blocks` (blocks `start..`) against the head of `length`
/// blocks on `fork`, reading the nodes it needs from `nodes`.
///
/// The blocks are not checked against the tree here: a store checks each block against its
/// leaf when reading it, and a verifier rejects a wrong one anyway.
pub fn prove<S: NodeSource>(
    fork: u64,
    length: u64,
    start: u64,
    blocks: Vec<Vec<u8>>,
    nodes: &mut S,
) -> Result<RangeProof, ProveError<S::Error>> {
    let end = start.saturating_add(blocks.len() as u64);
    if blocks.is_empty()
        || end > length
        || length > MAX_LENGTH
        || blocks.len() as u64 > MAX_BLOCKS
        || blocks.iter().any(|b| u32::try_from(b.len()).is_err())
    {
        return Err(ProveError::BadRange { start, end, length });
    }
    let mut out = Vec::new();
    for index in proof_indices(start, end, length) {
        match nodes.node(index).map_err(ProveError::Source)? {
            Some(n) => out.push(n),
            None => return Err(ProveError::MissingNode(index)),
        }
    }
    Ok(RangeProof {
        fork,
        length,
        start,
        nodes: out,
        blocks,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use peerhost_log::Tree;

    use super::*;

    fn log(n: usize) -> (Tree, BTreeMap<u64, Node>, Vec<Vec<u8>>) {
        let blocks: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i % 7]).collect();
        let mut tree = Tree::new();
        let nodes = tree
            .append(&blocks)
            .into_iter()
            .map(|n| (n.index, n))
            .collect();
        (tree, nodes, blocks)
    }

    fn head(tree: &Tree) -> TrustedHead {
        TrustedHead {
            fork: tree.fork(),
            length: tree.length(),
            tree_hash: tree.hash(),
        }
    }

    #[test]
    fn every_range_of_small_logs_round_trips_and_verifies() {
        for n in 1..=20usize {
            let (tree, mut nodes, blocks) = log(n);
            for s in 0..n {
                for e in s + 1..=n {
                    let p =
                        prove(0, n as u64, s as u64, blocks[s..e].to_vec(), &mut nodes).unwrap();
                    let bytes = p.encode();
                    assert_eq!(bytes.len(), p.encoded_len());
                    let back = verify(&bytes, &head(&tree), s as u64..e as u64).unwrap();
                    assert_eq!(back, p);
                    assert_eq!(back.roots().unwrap(), tree.roots());
                }
            }
        }
    }

    #[test]
    fn proofs_against_an_older_length_use_the_same_nodes() {
        let (_, mut nodes, blocks) = log(23);
        for len in 1..=23usize {
            let mut old = Tree::new();
            old.append(&blocks[..len]);
            for (s, block) in blocks[..len].iter().enumerate() {
                let p = prove(0, len as u64, s as u64, vec![block.clone()], &mut nodes).unwrap();
                verify(&p.encode(), &head(&old), s as u64..s as u64 + 1).unwrap();
            }
        }
    }

    #[test]
    fn minimal_proof_sizes() {
        // Length 11 (roots 7, 17, 20), block 9 (leaf 18): roots 7 and 20, sibling 16.
        assert_eq!(proof_indices(9, 10, 11), vec![7, 16, 20]);
        // The whole log: no nodes at all.
        assert_eq!(proof_indices(0, 11, 11), Vec::<u64>::new());
        // Blocks 2..6 of 8 (root 7): leaves 0..2 are node 1, block 6..8 node 13.
        assert_eq!(proof_indices(2, 6, 8), vec![1, 13]);
        assert!(proof_indices(3, 3, 8).is_empty());
        assert!(proof_indices(3, 9, 8).is_empty());
        // Never more than MAX_NODES, even at the largest length.
        let worst = proof_indices(MAX_LENGTH / 2 - 1, MAX_LENGTH / 2 + 1, MAX_LENGTH - 1);
        assert!(worst.len() <= MAX_NODES, "{}", worst.len());
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let (tree, mut nodes, blocks) = log(13);
        let p = prove(0, 13, 4, blocks[4..9].to_vec(), &mut nodes).unwrap();
        let bytes = p.encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    verify(&bad, &head(&tree), 4..9).is_err(),
                    "byte {i} bit {bit} accepted"
                );
            }
        }
        // Cut anywhere, or with a byte more: rejected.
        for cut in 0..bytes.len() {
            assert!(verify(&bytes[..cut], &head(&tree), 4..9).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            verify(&long, &head(&tree), 4..9),
            Err(RangeProofError::TrailingBytes(1))
        );
    }

    #[test]
    fn wrong_head_or_request_is_rejected() {
        let (tree, mut nodes, blocks) = log(9);
        let bytes = prove(0, 9, 2, blocks[2..4].to_vec(), &mut nodes)
            .unwrap()
            .encode();
        let h = head(&tree);
        assert!(verify(&bytes, &h, 2..4).is_ok());
        assert!(
            verify(&bytes, &h, 2..9).is_ok(),
            "a prefix of the request is fine"
        );
        assert!(matches!(
            verify(&bytes, &h, 2..3),
            Err(RangeProofError::RangeMismatch { .. })
        ));
        assert!(matches!(
            verify(&bytes, &h, 1..4),
            Err(RangeProofError::RangeMismatch { .. })
        ));
        let other = TrustedHead { fork: 1, ..h };
        assert!(matches!(
            verify(&bytes, &other, 2..4),
            Err(RangeProofError::ForkMismatch { .. })
        ));
        let other = TrustedHead { length: 10, ..h };
        assert!(matches!(
            verify(&bytes, &other, 2..4),
            Err(RangeProofError::LengthMismatch { .. })
        ));
        let other = TrustedHead {
            tree_hash: [0; 32],
            ..h
        };
        assert_eq!(
            verify(&bytes, &other, 2..4),
            Err(RangeProofError::TreeHashMismatch)
        );
    }

    #[test]
    fn non_minimal_tilings_verify_and_broken_ones_do_not() {
        let (tree, mut nodes, blocks) = log(8);
        let mut p = prove(0, 8, 2, blocks[2..3].to_vec(), &mut nodes).unwrap();
        assert_eq!(
            p.nodes.iter().map(|n| n.index).collect::<Vec<_>>(),
            [1, 6, 11]
        );
        // Node 11 replaced by its children 9 and 13: still the same roots.
        let mut split = p.clone();
        split.nodes.pop();
        split.nodes.extend([nodes[&9], nodes[&13]]);
        verify(&split.encode(), &head(&tree), 2..3).unwrap();
        // A node missing, or one too many, or covering the range: bad tiling.
        let mut missing = p.clone();
        missing.nodes.remove(1);
        assert!(matches!(
            missing.roots(),
            Err(RangeProofError::BadTiling { .. })
        ));
        let mut extra = p.clone();
        extra.nodes.push(nodes[&14]);
        assert!(extra.roots().is_err());
        p.nodes[1] = nodes[&5];
        assert!(matches!(p.roots(), Err(RangeProofError::BadTiling { .. })));
    }

    #[test]
    fn missing_nodes_are_reported() {
        let (_, mut nodes, blocks) = log(8);
        nodes.remove(&11);
        assert!(matches!(
            prove(0, 8, 2, blocks[2..3].to_vec(), &mut nodes),
            Err(ProveError::MissingNode(11))
        ));
        assert!(matches!(
            prove(0, 8, 7, blocks[6..8].to_vec(), &mut nodes),
            Err(ProveError::BadRange { .. })
        ));
        assert!(matches!(
            prove(0, 8, 0, vec![], &mut nodes),
            Err(ProveError::BadRange { .. })
        ));
    }
}
