//! Error types, one per failure domain, each with the `hypercore-errors` code JS would raise.
//!
//! Decoding failures are [`peerhost_encoding::DecodeError`] (JS: a plain `Error` out of
//! compact-encoding, which hypercore reports as `DECODING_ERROR`).

/// A failure of a tree operation that reads stored nodes: opening a tree, building a proof,
/// truncating, computing byte offsets, seeking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError<E> {
    /// The node source failed (I/O error, corrupt record).
    #[error("storage: {0}")]
    Storage(#[source] E),
    /// A node the operation needs is not stored.
    #[error("expected tree node {index} from storage, got (nil)")]
    MissingNode {
        /// Flat-tree index of the missing node.
        index: u64,
    },
    /// An argument is out of range (a length past the tree, a root missing for a length).
    #[error("bad argument: {0}")]
    BadArgument(&'static str),
    /// The request cannot be answered from this tree (an upgrade past its length, a `nodes`
    /// count that climbs past the tree, a seek outside the requested subtree).
    #[error("invalid operation: {0}")]
    InvalidOperation(&'static str),
}

impl<E> TreeError<E> {
    /// The JS `hypercore-errors` code for this error (`ERR_STORAGE` is ours: JS rethrows the
    /// storage layer's own error).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Storage(_) => "ERR_STORAGE",
            Self::MissingNode { .. } | Self::InvalidOperation(_) => "INVALID_OPERATION",
            Self::BadArgument(_) => "BAD_ARGUMENT",
        }
    }
}

/// Why a `data` message did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError<E> {
    /// The node source failed.
    #[error("storage: {0}")]
    Storage(#[source] E),
    /// The proof is anchored on a node we do not have.
    #[error("expected tree node {index} from storage, got (nil)")]
    MissingNode {
        /// Flat-tree index of the missing node.
        index: u64,
    },
    /// The proof's nodes do not come in the order the tree shape requires.
    #[error("expected node {expected}, got {}", got.map_or("(nil)".to_owned(), |g| format!("node {g}")))]
    UnexpectedNode {
        /// The index the verifier needed next.
        expected: u64,
        /// The index it found, `None` if the proof ran out of nodes.
        got: Option<u64>,
    },
    /// The proof hashes to a node that differs from the one we store.
    #[error("invalid checksum at node {index}")]
    InvalidChecksum {
        /// Flat-tree index of the node that differs.
        index: u64,
    },
    /// The upgrade's signature does not verify against the manifest.
    #[error("proof contains an invalid signature")]
    InvalidSignature,
    /// The manifest offered with the proof neither hashes to the key nor is its compat form
    /// (`KeyMismatch`), or JS's `createManifest` would refuse it.
    #[error("proof contains an invalid manifest: {0}")]
    InvalidManifest(#[source] ManifestError),
    /// The proof is well-formed but not acceptable (an upgrade that breaks the prologue).
    #[error("invalid proof: {0}")]
    InvalidProof(&'static str),
    /// A proof part holds more nodes than any tree of 2^64 blocks could need (ours: JS bounds
    /// arrays at 2^20 items only).
    #[error("proof part {part} has {count} nodes, more than any tree needs")]
    TooManyNodes {
        /// `block`, `hash`, `seek`, `upgrade` or `additionalNodes`.
        part: &'static str,
        /// The number of nodes in that part.
        count: usize,
    },
    /// An index or length above 2^53 - 1 (what JS can represent); only reachable with a
    /// hand-built message, the decoder already rejects them.
    #[error("index or length out of range")]
    OutOfRange,
    /// The proof is for another fork. When `theirs > ours` and the proof carries an upgrade,
    /// it may be a reorg: see [`crate::Tree::verify_reorg`].
    #[error("proof is for fork {theirs}, we are at fork {ours}")]
    ForkMismatch {
        /// Our fork.
        ours: u64,
        /// The proof's fork.
        theirs: u64,
    },
    /// The proof is structurally impossible (an upgrade that adds no root to an empty tree,
    /// additional nodes that do not extend the tree).
    #[error("invalid operation: {0}")]
    InvalidOperation(&'static str),
}

impl<E> VerifyError<E> {
    /// The JS `hypercore-errors` code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Storage(_) => "ERR_STORAGE",
            Self::MissingNode { .. }
            | Self::UnexpectedNode { .. }
            | Self::ForkMismatch { .. }
            | Self::InvalidOperation(_) => "INVALID_OPERATION",
            Self::InvalidChecksum { .. } => "INVALID_CHECKSUM",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::InvalidManifest(e) => e.code(),
            Self::InvalidProof(_) | Self::TooManyNodes { .. } | Self::OutOfRange => "INVALID_PROOF",
        }
    }
}

impl<E> From<TreeError<E>> for VerifyError<E> {
    fn from(e: TreeError<E>) -> Self {
        match e {
            TreeError::Storage(e) => Self::Storage(e),
            TreeError::MissingNode { index } => Self::MissingNode { index },
            TreeError::BadArgument(m) | TreeError::InvalidOperation(m) => Self::InvalidOperation(m),
        }
    }
}

impl<E> From<ManifestError> for VerifyError<E> {
    fn from(e: ManifestError) -> Self {
        Self::InvalidManifest(e)
    }
}

/// A manifest or key that cannot be used (building a [`crate::Verifier`], signing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The key is neither the manifest's hash nor its single signer's key (compat).
    #[error("manifest does not hash to the key")]
    KeyMismatch,
    /// The key pair is not one of the manifest's signers.
    #[error("public key is not a declared signer")]
    NotASigner,
    /// The quorum exceeds the number of signers.
    #[error("quorum should not be higher than the number of signers")]
    QuorumTooHigh,
    /// A field the manifest's version does not allow (`linked`, `userData` before v2).
    #[error("invalid field for manifest version: {0}")]
    InvalidField(&'static str),
}

impl ManifestError {
    /// The JS `hypercore-errors` code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            // > throw INVALID_SIGNATURE('Proof contains an invalid manifest')
            // (hypercore lib/core.js `_verifyBatchUpgrade`)
            Self::KeyMismatch => "INVALID_SIGNATURE",
            Self::NotASigner | Self::QuorumTooHigh | Self::InvalidField(_) => "BAD_ARGUMENT",
        }
    }
}

/// Map a node source's error and a missing node into `TreeError`.
pub(crate) fn need<E>(
    index: u64,
    r: Result<Option<crate::Node>, E>,
) -> Result<crate::Node, TreeError<E>> {
    match r {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(TreeError::MissingNode { index }),
        Err(e) => Err(TreeError::Storage(e)),
    }
}
