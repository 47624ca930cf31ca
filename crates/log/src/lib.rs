//! The log: hypercore 11's signed append-only Merkle log, without I/O.
//!
//! (Module docs to be completed by the log's author.)
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

/// A Merkle tree node at a flat-tree `index`: for a leaf, `size` is the block's byte length and
/// `hash` its leaf hash; for a parent, `size` is the sum of its children's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node {
    /// Flat-tree index (leaf `i` is at `2 * i`).
    pub index: u64,
    /// Bytes covered by this node.
    pub size: u64,
    /// BLAKE2b-256 node hash.
    pub hash: [u8; 32],
}

/// Where the tree reads nodes it does not hold in memory (a store on disk, or a map in tests).
pub trait NodeSource {
    /// Storage failure (an I/O error, a corrupt record).
    type Error: std::error::Error + Send + Sync + 'static;
    /// The node at flat-tree `index`, or `None` if it is not stored.
    fn node(&mut self, index: u64) -> Result<Option<Node>, Self::Error>;
}
