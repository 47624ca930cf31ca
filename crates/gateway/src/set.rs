//! The set proof (`PHS1`, `protocol/gateway.md` §3.5): any set of blocks of a log — sorted runs
//! of consecutive blocks — and the one deduplicated set of tree nodes that proves them all
//! against a signed length. A thread's 300 comments scattered over a million-block log are one
//! request and one proof, instead of 300 range proofs that each repeat the same roots and
//! upper nodes.
//!
//! The runs travel in a compact form ([`Runs::encode`]), in the query (base64url, `runs=`) and
//! in the body. Body layout:
//!
//! ```text
//! magic  "PHS1"                                   4 bytes
//! fork   u64 LE ‖ length u64 LE                  16 bytes
//! runs   varint n ‖ n bytes of compact runs        (the runs served: a prefix of the asked)
//! nodes  varint count ‖ count × (varint size ‖ hash[32])
//! blocks for each block of the runs in order: varint len ‖ len bytes
//! ```
//!
//! The nodes carry no index: they are exactly the **minimal tiling** of the leaves that hold no
//! block of the runs — walking the leaves `0 .. length` left to right, each gap before, between
//! and after the runs is covered by the largest aligned subtrees that fit in it — in that
//! order. Both sides compute those indices from the runs and the length, so no node is sent
//! twice and none that the blocks determine is sent at all. The verifier walks the same
//! tiling, places the blocks' leaves at their runs, merges siblings into parents, and must end
//! with exactly the roots of `length`, whose tree hash must be the signed one.

use peerhost_log::{Node, NodeSource, flat, hash};

use crate::range::{Cursor, MAX_LENGTH, MAX_SIZE, RangeProofError, TrustedHead};

/// The first four bytes of every set proof: format `PHS` version `1`.
pub const MAGIC: [u8; 4] = *b"PHS1";

/// The most runs one set request or answer may carry.
pub const MAX_RUNS: usize = 512;

/// The most blocks one set answer may carry (servers cap it lower: [`crate::Config`]).
pub const MAX_BLOCKS: u64 = 1 << 16;

/// The most nodes a set proof may carry: the minimal tiling of the gaps around at most
/// [`MAX_RUNS`] runs in a log of at most [`MAX_LENGTH`] blocks needs at most 2 · 48 nodes per
/// gap.
pub const MAX_NODES: usize = 96 * (MAX_RUNS + 1);

/// The longest compact encoding of [`MAX_RUNS`] runs (two varints of at most 8 bytes each).
pub const MAX_RUNS_BYTES: usize = 16 * MAX_RUNS;

/// Sorted, disjoint, non-adjacent runs `start..end` of blocks, each non-empty, below
/// [`MAX_LENGTH`], at most [`MAX_RUNS`] of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Runs(Vec<(u64, u64)>);

impl Runs {
    /// The runs covering `indices` (any order, repeats allowed). `None` when there are more
    /// than [`MAX_RUNS`] runs or an index is at or above [`MAX_LENGTH`].
    pub fn from_indices(indices: impl IntoIterator<Item = u64>) -> Option<Self> {
        let mut all: Vec<u64> = indices.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for i in all {
            if i >= MAX_LENGTH {
                return None;
            }
            match runs.last_mut() {
                Some(last) if last.1 == i => last.1 = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        Self::new(runs)
    }

    /// These runs, if they are sorted, disjoint, non-adjacent, non-empty, below
    /// [`MAX_LENGTH`] and at most [`MAX_RUNS`].
    pub fn new(runs: Vec<(u64, u64)>) -> Option<Self> {
        if runs.len() > MAX_RUNS {
            return None;
        }
        let mut prev_end = None;
        for &(s, e) in &runs {
            if s >= e || e > MAX_LENGTH || prev_end.is_some_and(|p| s <= p) {
                return None;
            }
            prev_end = Some(e);
        }
        Some(Self(runs))
    }

    /// The runs, ascending.
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Whether there is no run.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Blocks in all runs.
    pub fn blocks(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    /// One past the last block (0 without runs).
    pub fn end(&self) -> u64 {
        self.0.last().map_or(0, |r| r.1)
    }

    /// The compact form: for each run, `varint(2·d + (len > 1))` and, when `len > 1`,
    /// `varint(len − 2)`; `d` is the first run's start, then the blocks skipped since the
    /// previous run's end minus one (runs are never adjacent). Varints are LEB128, minimal.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * self.0.len());
        let mut prev: Option<u64> = None;
        for &(s, e) in &self.0 {
            let d = match prev {
                None => s,
                Some(p) => s - p - 1,
            };
            let n = e - s;
            put_varint(&mut out, 2 * d + u64::from(n > 1));
            if n > 1 {
                put_varint(&mut out, n - 2);
            }
            prev = Some(e);
        }
        out
    }

    /// Read the compact form, only as [`Runs::encode`] writes it (so one set has one
    /// spelling, and one cache entry).
    pub fn decode(bytes: &[u8]) -> Result<Self, RangeProofError> {
        if bytes.len() > MAX_RUNS_BYTES {
            return Err(RangeProofError::OutOfBounds("runs"));
        }
        let mut c = Cursor { buf: bytes };
        let mut runs = Vec::new();
        let mut prev: Option<u64> = None;
        while !c.buf.is_empty() {
            if runs.len() == MAX_RUNS {
                return Err(RangeProofError::OutOfBounds("runs"));
            }
            let v = c.varint()?;
            let d = v >> 1;
            let n = if v & 1 == 1 {
                c.varint()?
                    .checked_add(2)
                    .ok_or(RangeProofError::OutOfBounds("runs"))?
            } else {
                1
            };
            let start = match prev {
                None => Some(d),
                Some(p) => p.checked_add(d).and_then(|x| x.checked_add(1)),
            }
            .filter(|s| *s < MAX_LENGTH)
            .ok_or(RangeProofError::OutOfBounds("runs"))?;
            let end = start
                .checked_add(n)
                .filter(|e| *e <= MAX_LENGTH)
                .ok_or(RangeProofError::OutOfBounds("runs"))?;
            runs.push((start, end));
            prev = Some(end);
        }
        Ok(Self(runs))
    }

    /// The compact form in base64url without padding (the `runs=` query parameter).
    pub fn to_query(&self) -> String {
        b64::encode(&self.encode())
    }

    /// Read a `runs=` query value.
    pub fn from_query(s: &str) -> Result<Self, RangeProofError> {
        let bytes = b64::decode(s).ok_or(RangeProofError::OutOfBounds("runs"))?;
        Self::decode(&bytes)
    }

    /// Whether `self` is what a server may serve for `asked`: a non-empty prefix of its runs,
    /// the last of which may stop early.
    pub fn is_prefix_of(&self, asked: &Self) -> bool {
        let (a, b) = (&self.0, &asked.0);
        let Some((last, init)) = a.split_last() else {
            return false;
        };
        a.len() <= b.len()
            && init == &b[..init.len()]
            && last.0 == b[init.len()].0
            && last.1 <= b[init.len()].1
    }
}

/// The flat indices of the minimal tiling of the leaves outside `runs` in a log of `length`
/// blocks, interleaved with the runs: each item is a node to send, or a run whose blocks go
/// there. `None` when a run ends past `length` or `length` is above [`MAX_LENGTH`].
fn tiling(runs: &Runs, length: u64) -> Option<Vec<Slot>> {
    if length > MAX_LENGTH || runs.end() > length {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 0u64;
    let bounds = runs
        .as_slice()
        .iter()
        .map(|&(s, e)| (s, Some(e)))
        .chain([(length, None)]);
    for (stop, run_end) in bounds {
        // The largest aligned subtrees from `at` up to `stop` (greedy is minimal, and never
        // crosses a root of `length`: roots are the greedy tiling of 0..length).
        while at < stop {
            let align = if at == 0 { 63 } else { at.trailing_zeros() };
            let fit = 63 - (stop - at).leading_zeros();
            let depth = align.min(fit);
            out.push(Slot::Node(flat::index(depth, at >> depth)));
            at += 1 << depth;
        }
        if let Some(e) = run_end {
            out.push(Slot::Run(stop, e));
            at = e;
        }
    }
    Some(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Node(u64),
    Run(u64, u64),
}

/// The flat indices of the nodes a set proof of `runs` against `length` carries, in order.
/// Empty when the runs do not fit in `length`.
pub fn proof_indices(runs: &Runs, length: u64) -> Vec<u64> {
    tiling(runs, length)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| match s {
            Slot::Node(i) => Some(i),
            Slot::Run(..) => None,
        })
        .collect()
}

/// A decoded set proof. See the module docs for the byte layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetProof {
    /// The fork of the head proven against.
    pub fork: u64,
    /// The length of the head proven against.
    pub length: u64,
    /// The runs served.
    pub runs: Runs,
    /// The nodes of the minimal tiling outside the runs, in order (their indices follow from
    /// `runs` and `length`: [`proof_indices`]).
    pub nodes: Vec<Node>,
    /// The blocks of the runs, in order.
    pub blocks: Vec<Vec<u8>>,
}

impl SetProof {
    /// Encode as the `PHS1` bytes a gateway sends.
    pub fn encode(&self) -> Vec<u8> {
        let runs = self.runs.encode();
        let mut out = Vec::with_capacity(
            32 + runs.len()
                + 40 * self.nodes.len()
                + self.blocks.iter().map(|b| b.len() + 4).sum::<usize>(),
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.fork.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        put_varint(&mut out, runs.len() as u64);
        out.extend_from_slice(&runs);
        put_varint(&mut out, self.nodes.len() as u64);
        for n in &self.nodes {
            put_varint(&mut out, n.size);
            out.extend_from_slice(&n.hash);
        }
        for b in &self.blocks {
            put_varint(&mut out, b.len() as u64);
            out.extend_from_slice(b);
        }
        out
    }

    /// Decode and bound-check `bytes` (no hashing: see [`SetProof::verify`]). The nodes get
    /// the indices of the minimal tiling; a count that differs from it is rejected.
    pub fn decode(bytes: &[u8]) -> Result<Self, RangeProofError> {
        let mut c = Cursor { buf: bytes };
        if c.take(4)? != MAGIC {
            return Err(RangeProofError::BadMagic);
        }
        let (fork, length) = (c.u64()?, c.u64()?);
        if fork > MAX_SIZE {
            return Err(RangeProofError::OutOfBounds("fork"));
        }
        if length > MAX_LENGTH {
            return Err(RangeProofError::OutOfBounds("length"));
        }
        let n = c.varint()?;
        if n > MAX_RUNS_BYTES as u64 {
            return Err(RangeProofError::OutOfBounds("runs"));
        }
        let runs = Runs::decode(c.take(n as usize)?)?;
        if runs.is_empty() || runs.blocks() > MAX_BLOCKS {
            return Err(RangeProofError::OutOfBounds("runs"));
        }
        let indices = tiling(&runs, length).ok_or(RangeProofError::OutOfBounds("runs"))?;
        let count = c.varint()?;
        if count > MAX_NODES as u64 {
            return Err(RangeProofError::TooManyNodes(count));
        }
        let mut want = indices.iter().filter_map(|s| match s {
            Slot::Node(i) => Some(*i),
            Slot::Run(..) => None,
        });
        // Each node takes at least 33 bytes of input: the allocation follows the input.
        let mut nodes = Vec::new();
        for _ in 0..count {
            let size = c.varint()?;
            let mut h = [0; 32];
            h.copy_from_slice(c.take(32)?);
            if size > MAX_SIZE {
                return Err(RangeProofError::OutOfBounds("node size"));
            }
            let Some(index) = want.next() else {
                return Err(RangeProofError::BadTiling {
                    index: 2 * length,
                    expected: 2 * length,
                });
            };
            nodes.push(Node {
                index,
                size,
                hash: h,
            });
        }
        if let Some(index) = want.next() {
            return Err(RangeProofError::BadTiling {
                index,
                expected: index,
            });
        }
        let mut blocks = Vec::new();
        for _ in 0..runs.blocks() {
            let len = c.varint()?;
            if len > u64::from(u32::MAX) {
                return Err(RangeProofError::OutOfBounds("block length"));
            }
            blocks.push(c.take(len as usize)?.to_vec());
        }
        if !c.buf.is_empty() {
            return Err(RangeProofError::TrailingBytes(c.buf.len()));
        }
        Ok(Self {
            fork,
            length,
            runs,
            nodes,
            blocks,
        })
    }

    /// Recompute the roots of the tree at `length` from the blocks and the nodes, walking the
    /// minimal tiling (the nodes' own indices are not trusted: the tiling gives them).
    pub fn roots(&self) -> Result<Vec<Node>, RangeProofError> {
        let tiles = tiling(&self.runs, self.length).ok_or(RangeProofError::OutOfBounds("runs"))?;
        if self.runs.blocks() != self.blocks.len() as u64 {
            return Err(RangeProofError::OutOfBounds("blocks"));
        }
        let mut stack: Vec<Node> = Vec::with_capacity(64);
        let mut nodes = self.nodes.iter();
        let mut blocks = self.blocks.iter();
        for t in tiles {
            match t {
                Slot::Node(index) => {
                    let n = nodes.next().ok_or(RangeProofError::BadTiling {
                        index,
                        expected: flat::left_span(index),
                    })?;
                    push_merge(
                        &mut stack,
                        Node {
                            index,
                            size: n.size,
                            hash: n.hash,
                        },
                    )?;
                }
                Slot::Run(s, e) => {
                    for i in s..e {
                        let b = blocks.next().ok_or(RangeProofError::Truncated)?;
                        push_merge(&mut stack, Node::leaf(i, b))?;
                    }
                }
            }
        }
        if let Some(n) = nodes.next() {
            return Err(RangeProofError::BadTiling {
                index: n.index,
                expected: 2 * self.length,
            });
        }
        let roots = flat::full_roots(2 * self.length);
        if roots.len() != stack.len() || roots.iter().zip(&stack).any(|(i, n)| *i != n.index) {
            return Err(RangeProofError::BadRoots);
        }
        Ok(stack)
    }

    /// Check this proof against a trusted signed head and the runs asked for: same fork and
    /// length; its runs a non-empty prefix of `asked` (the last may stop early); the roots
    /// recomputed by [`SetProof::roots`] hash to `head.tree_hash`.
    pub fn verify(&self, head: &TrustedHead, asked: &Runs) -> Result<(), RangeProofError> {
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
        if !self.runs.is_prefix_of(asked) {
            let (start, end) = self.runs.as_slice().first().copied().unwrap_or_default();
            return Err(RangeProofError::RangeMismatch { start, end });
        }
        let roots = self.roots()?;
        if hash::tree(&roots) != head.tree_hash {
            return Err(RangeProofError::TreeHashMismatch);
        }
        Ok(())
    }

    /// The served blocks with their indices, in order.
    pub fn indexed(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.runs
            .as_slice()
            .iter()
            .flat_map(|&(s, e)| s..e)
            .zip(self.blocks.iter().map(Vec::as_slice))
    }
}

/// Decode `bytes` and [`SetProof::verify`] them against `head` for `asked`.
pub fn verify(bytes: &[u8], head: &TrustedHead, asked: &Runs) -> Result<SetProof, RangeProofError> {
    let proof = SetProof::decode(bytes)?;
    proof.verify(head, asked)?;
    Ok(proof)
}

/// Why [`prove`] could not build a set proof.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError<E: std::error::Error + 'static> {
    /// No runs, runs past `length`, blocks that do not match the runs, or a block longer than
    /// `u32::MAX` bytes.
    #[error("set of {blocks} blocks cannot be proven against length {length}")]
    BadSet {
        /// Blocks in the runs.
        blocks: u64,
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

/// Build the set proof for `blocks` (the blocks of `runs`, in order) against the head of
/// `length` blocks on `fork`, reading the nodes it needs from `nodes`.
pub fn prove<S: NodeSource>(
    fork: u64,
    length: u64,
    runs: Runs,
    blocks: Vec<Vec<u8>>,
    nodes: &mut S,
) -> Result<SetProof, ProveError<S::Error>> {
    let bad = || ProveError::BadSet {
        blocks: runs.blocks(),
        length,
    };
    if runs.is_empty()
        || runs.blocks() != blocks.len() as u64
        || runs.blocks() > MAX_BLOCKS
        || blocks.iter().any(|b| u32::try_from(b.len()).is_err())
    {
        return Err(bad());
    }
    let Some(tiles) = tiling(&runs, length) else {
        return Err(bad());
    };
    let mut out = Vec::new();
    for t in tiles {
        if let Slot::Node(index) = t {
            match nodes.node(index).map_err(ProveError::Source)? {
                Some(n) => out.push(n),
                None => return Err(ProveError::MissingNode(index)),
            }
        }
    }
    Ok(SetProof {
        fork,
        length,
        runs,
        nodes: out,
        blocks,
    })
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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// base64url without padding (RFC 4648 §5), strict: canonical trailing bits only.
mod b64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let v = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for k in 0..=n {
                out.push(ALPHABET[((v >> (18 - 6 * k)) & 63) as usize] as char);
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }

    pub(super) fn decode(s: &str) -> Option<Vec<u8>> {
        let s = s.as_bytes();
        if s.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
        for chunk in s.chunks(4) {
            let mut v = 0u32;
            for (k, c) in chunk.iter().enumerate() {
                v |= value(*c)? << (18 - 6 * k);
            }
            let n = chunk.len() - 1;
            // Bits below the last whole byte must be zero (one spelling per value).
            if v & ((1 << (24 - 8 * n)) - 1) != 0 {
                return None;
            }
            for k in 0..n {
                out.push((v >> (16 - 8 * k)) as u8);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use peerhost_log::Tree;
    use proptest::prelude::*;

    use super::*;

    fn log(n: usize) -> (Tree, BTreeMap<u64, Node>, Vec<Vec<u8>>) {
        let blocks: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i % 7 + 1]).collect();
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

    fn pick(runs: &Runs, blocks: &[Vec<u8>]) -> Vec<Vec<u8>> {
        runs.as_slice()
            .iter()
            .flat_map(|&(s, e)| blocks[s as usize..e as usize].to_vec())
            .collect()
    }

    #[test]
    fn runs_compact_form() {
        // Blocks 3, 5..8, 20: d = 3 (single), 5 − 4 − 1 = 0 (a run of 3), 20 − 8 − 1 = 11.
        let r = Runs::from_indices([20, 3, 5, 6, 7, 7]).unwrap();
        assert_eq!(r.as_slice(), [(3, 4), (5, 8), (20, 21)]);
        assert_eq!(r.encode(), [6, 1, 1, 22]);
        assert_eq!(Runs::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.to_query(), "BgEBFg");
        assert_eq!(Runs::from_query("BgEBFg").unwrap(), r);
        // Non-minimal varints and non-canonical base64 are refused.
        assert!(Runs::decode(&[0x86, 0x00]).is_err());
        assert!(Runs::from_query("BgMBFh").is_err());
        assert!(Runs::from_query("BgM=").is_err());
        assert!(Runs::from_indices([MAX_LENGTH]).is_none());
        assert!(Runs::from_indices((0..=MAX_RUNS as u64).map(|i| 2 * i)).is_none());
        assert!(Runs::new(vec![(1, 2), (2, 3)]).is_none(), "adjacent");
    }

    #[test]
    fn minimal_nodes() {
        // Length 11 (roots 7, 17, 20), block 9: the same nodes as the range proof.
        let one = Runs::from_indices([9]).unwrap();
        assert_eq!(proof_indices(&one, 11), [7, 16, 20]);
        // Blocks 1 and 6 of 8: node 0 (block 0), 5 (blocks 2..4), 9 (blocks 4..6), 14
        // (block 7).
        let two = Runs::from_indices([1, 6]).unwrap();
        assert_eq!(proof_indices(&two, 8), [0, 5, 9, 14]);
        // The whole log: no node.
        assert!(proof_indices(&Runs::from_indices([0, 1, 2]).unwrap(), 3).is_empty());
        // Past the length: nothing provable.
        assert!(proof_indices(&one, 9).is_empty());
    }

    #[test]
    fn rust_vector() {
        // Blocks 1, 4..6, 9 of a log of 11 (web/test/set.test.mjs builds the same bytes with
        // its own encoder): nodes 0 (block 0), 5 (blocks 2..4), 13 (blocks 6..8), 16 (block
        // 8), 20 (block 10).
        let (tree, mut nodes, blocks) = log(11);
        let runs = Runs::from_indices([1, 4, 5, 9]).unwrap();
        let p = prove(0, 11, runs.clone(), pick(&runs, &blocks), &mut nodes).unwrap();
        assert_eq!(
            hex::encode(p.encode()),
            "5048533100000000000000000b0000000000000004020300040501db10035e7a49836258fdb2613413948afa33c8f7db510f0860d7eb493d89da990725e53a2e4071ffda8765bfdf5dcb7c588a7b39db5615acfa94375b875a88440008905c5c66a70ab0c0375c29eca614bca4fcb95d07baf1f0a2817b526ee645424502ddc9fa69e3677335a425263f2d5ed3ce66139d0e581cc39a0874bbd1f0e608a904c0ff3b8a8a7da5b425a3ab437f8326a1d3ff69fba15e8a7644f7af50b51c1a0a0201010504040404040605050505050503090909"
        );
        verify(&p.encode(), &head(&tree), &runs).unwrap();
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let (tree, mut nodes, blocks) = log(29);
        let runs = Runs::from_indices([2, 3, 9, 17, 18, 19, 27]).unwrap();
        let p = prove(0, 29, runs.clone(), pick(&runs, &blocks), &mut nodes).unwrap();
        let bytes = p.encode();
        verify(&bytes, &head(&tree), &runs).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    verify(&bad, &head(&tree), &runs).is_err(),
                    "byte {i} bit {bit} accepted"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert!(verify(&bytes[..cut], &head(&tree), &runs).is_err());
        }
        let mut long = bytes;
        long.push(0);
        assert_eq!(
            verify(&long, &head(&tree), &runs),
            Err(RangeProofError::TrailingBytes(1))
        );
    }

    #[test]
    fn prefixes_are_served_and_other_sets_refused() {
        let (tree, mut nodes, blocks) = log(40);
        let asked = Runs::from_indices([1, 5, 6, 7, 30]).unwrap();
        let served = Runs::new(vec![(1, 2), (5, 7)]).unwrap();
        let p = prove(0, 40, served.clone(), pick(&served, &blocks), &mut nodes).unwrap();
        verify(&p.encode(), &head(&tree), &asked).unwrap();
        // Not a prefix: a run skipped, or a run starting elsewhere.
        for other in [
            Runs::new(vec![(5, 7)]).unwrap(),
            Runs::new(vec![(1, 2), (6, 7)]).unwrap(),
            Runs::new(vec![(1, 2), (5, 8), (30, 31), (33, 34)]).unwrap(),
        ] {
            let p = prove(0, 40, other.clone(), pick(&other, &blocks), &mut nodes).unwrap();
            assert!(matches!(
                verify(&p.encode(), &head(&tree), &asked),
                Err(RangeProofError::RangeMismatch { .. })
            ));
        }
        let h = head(&tree);
        let bytes = p.encode();
        assert!(matches!(
            verify(&bytes, &TrustedHead { fork: 1, ..h }, &asked),
            Err(RangeProofError::ForkMismatch { .. })
        ));
        assert!(matches!(
            verify(&bytes, &TrustedHead { length: 41, ..h }, &asked),
            Err(RangeProofError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn older_lengths_and_missing_nodes() {
        let (_, mut nodes, blocks) = log(23);
        for len in 1..=23u64 {
            let mut old = Tree::new();
            old.append(&blocks[..len as usize]);
            let runs = Runs::from_indices((0..len).filter(|i| i % 3 == 1)).unwrap_or_default();
            if runs.is_empty() {
                continue;
            }
            let p = prove(0, len, runs.clone(), pick(&runs, &blocks), &mut nodes).unwrap();
            verify(&p.encode(), &head(&old), &runs).unwrap();
        }
        let runs = Runs::from_indices([2]).unwrap();
        nodes.remove(&proof_indices(&runs, 23)[0]);
        assert!(matches!(
            prove(0, 23, runs.clone(), pick(&runs, &blocks), &mut nodes),
            Err(ProveError::MissingNode(_))
        ));
        assert!(matches!(
            prove(0, 2, runs, vec![blocks[2].clone()], &mut nodes),
            Err(ProveError::BadSet { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_set_round_trips_and_verifies(
            n in 1usize..90,
            picks in proptest::collection::vec(any::<u16>(), 1..40),
        ) {
            let (tree, mut nodes, blocks) = log(n);
            let runs = Runs::from_indices(picks.iter().map(|p| u64::from(*p) % n as u64)).unwrap();
            prop_assert_eq!(Runs::from_query(&runs.to_query()).unwrap(), runs.clone());
            let p = prove(0, n as u64, runs.clone(), pick(&runs, &blocks), &mut nodes).unwrap();
            let bytes = p.encode();
            let back = verify(&bytes, &head(&tree), &runs).unwrap();
            prop_assert_eq!(back.roots().unwrap(), tree.roots().to_vec());
            prop_assert_eq!(&back, &p);
            // No node is sent that the blocks determine, none twice.
            let idx: Vec<u64> = p.nodes.iter().map(|n| n.index).collect();
            let mut sorted = idx.clone();
            sorted.dedup();
            prop_assert_eq!(idx.len(), sorted.len());
            for i in idx {
                let (l, r) = flat::spans(i);
                prop_assert!(runs.as_slice().iter().all(|&(s, e)| r / 2 < s || l / 2 >= e));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SetProof::decode(&bytes);
            let _ = Runs::decode(&bytes);
        }
    }
}
