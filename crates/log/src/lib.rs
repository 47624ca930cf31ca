//! The log: hypercore 11's signed append-only Merkle log, without I/O.
//!
//! This crate owns everything a hypercore log is made of, as pure computation:
//! - [`flat`]: flat-tree index math;
//! - [`hash`]: leaf, parent and tree hashes;
//! - [`manifest`]: manifests of every version JS decodes, and the manifest hash (a v11 key);
//! - [`signature`]: signables and the multi-signature wire format; [`Verifier`]: checking
//!   and making signatures for a key;
//! - [`proof`]: the `request` and `data` messages that carry proofs;
//! - [`Tree`]: the head of the tree, appending, proofs, verification, truncation, reorgs;
//! - [`bitfield`]: which blocks are present, in fixed pages a store can persist and evict.
//!
//! It does no file or network I/O and reads no clock. Nodes the tree does not hold in memory
//! come from a [`NodeSource`] (the store implements it on disk); operations return what must
//! be written instead of writing it. `protocol/log.md` is the prose specification, including
//! every place we deliberately differ from JS.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//!
//! use peerhost_ids::KeyPair;
//! use peerhost_log::proof::{RequestBlock, RequestUpgrade};
//! use peerhost_log::{Manifest, Node, Request, Tree, Verifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A writer appends, persists the returned nodes, and signs the new head.
//! let key_pair = KeyPair::from_seed(&[1; 32]);
//! let verifier = Verifier::from_manifest(Manifest::default_signer(key_pair.public_key()));
//! let mut nodes: BTreeMap<u64, Node> = BTreeMap::new();
//! let mut tree = Tree::new();
//! for n in tree.append(&[b"hello", b"world"]) {
//!     nodes.insert(n.index, n);
//! }
//! tree.sign(&verifier, &key_pair)?;
//!
//! // A replica that knows only the key asks for the head, block 1 and the manifest.
//! let request = Request {
//!     id: 1,
//!     block: Some(RequestBlock { index: 1, nodes: 0 }),
//!     upgrade: Some(RequestUpgrade { start: 0, length: 2 }),
//!     manifest: true,
//!     ..Request::default()
//! };
//! let data = tree
//!     .proof(&request, &mut nodes)?
//!     .into_data(Some(b"world".to_vec()), Some(verifier.manifest().clone()))
//!     .expect("the block's bytes were given");
//!
//! let mut replica = Tree::new();
//! let mut replica_nodes: BTreeMap<u64, Node> = BTreeMap::new();
//! let checker = Verifier::resolve(verifier.key(), None, data.manifest.as_ref())?;
//! let verified = replica.verify(&data, &checker, &mut replica_nodes)?;
//! replica_nodes.extend(verified.nodes.iter().map(|n| (n.index, *n)));
//! replica = verified.head.expect("the head grew");
//! assert_eq!(replica.hash(), tree.hash());
//! assert_eq!(verified.block.map(|b| b.value), Some(b"world".to_vec()));
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

pub mod bitfield;
mod codec;
pub mod error;
pub mod flat;
pub mod hash;
pub mod manifest;
pub mod proof;
pub mod signature;
mod tree;
mod verifier;

pub use bitfield::Bitfield;
pub use error::{ManifestError, TreeError, VerifyError};
pub use manifest::Manifest;
pub use proof::{Data, Request};
pub use tree::{
    MAX_NODES, MAX_UPGRADE_NODES, Proof, Reorg, ReorgWant, Seek, Tree, Truncation, Verified,
    VerifiedBlock, VerifiedProof, max_missing_nodes, upgrade_length,
};
pub use verifier::Verifier;

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

/// Nodes held in a map (tests, small in-memory logs).
impl NodeSource for std::collections::BTreeMap<u64, Node> {
    type Error = std::convert::Infallible;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Self::Error> {
        Ok(self.get(&index).copied())
    }
}

/// Nodes held in a map (tests, small in-memory logs).
impl<S: std::hash::BuildHasher> NodeSource for std::collections::HashMap<u64, Node, S> {
    type Error = std::convert::Infallible;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Self::Error> {
        Ok(self.get(&index).copied())
    }
}
