//! Where the gateway reads logs: the [`LogSource`] trait, and [`Cores`], a set of shared
//! `Arc<Mutex<Core>>` that implements it.
//!
//! The gateway never opens a store itself: the node owns its open cores (the store allows one
//! handle per log in a process) and lends them through a `LogSource`. Every call is blocking
//! (file reads under a lock); the router runs them on tokio's blocking pool, at most
//! [`crate::Config::max_inflight`] at a time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use peerhost_ids::Key;
use peerhost_log::Node;
use peerhost_store::{Core, CoreError, Store};

use crate::blob::{BlobError, Sha256};
use crate::range::{self, MAX_LENGTH, ProveError, RangeProof};
use crate::set::{self, Runs, SetProof};

/// A boxed failure of a [`LogSource`] (a storage error, a poisoned lock).
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A log's current signed head, as `GET /v1/logs/{key}/head` serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// The log's key.
    pub key: Key,
    /// Blocks in the log.
    pub length: u64,
    /// Fork id.
    pub fork: u64,
    /// Bytes in the log.
    pub byte_length: u64,
    /// Tree hash of the roots (what the signature covers).
    pub tree_hash: [u8; 32],
    /// The signature as hypercore stores and sends it: a 68-byte multisignature for a
    /// single-signer v11 log, raw 64 bytes for a compat log; `None` for an empty log.
    pub signature: Option<Vec<u8>>,
    /// The compact-encoded manifest, `None` for a compat log (whose key is the signer's
    /// public key) or a replica that has not learned it.
    pub manifest: Option<Vec<u8>>,
    /// The roots of the tree at `length`, left to right.
    pub roots: Vec<Node>,
}

impl SignedHead {
    /// The version of this head.
    pub fn version(&self) -> HeadVersion {
        HeadVersion {
            fork: self.fork,
            length: self.length,
            manifest: self.manifest.is_some(),
        }
    }

    /// The head of `core` as it is committed now.
    pub fn of(core: &Core) -> Self {
        let tree = core.tree();
        let manifest = core
            .verifier()
            .filter(|v| !v.is_compat())
            .map(|v| peerhost_encoding::to_vec(v.manifest()));
        Self {
            key: core.key(),
            length: tree.length(),
            fork: tree.fork(),
            byte_length: tree.byte_length(),
            tree_hash: tree.hash(),
            signature: tree.signature().map(<[u8]>::to_vec),
            manifest,
            roots: tree.roots().to_vec(),
        }
    }
}

/// What identifies a log's head without reading it: two heads of one log with the same
/// version are the same head to a reader (same fork and length: same tree hash; the
/// signature is the writer's over it), except that a replica may learn its manifest later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeadVersion {
    /// Fork id.
    pub fork: u64,
    /// Blocks in the log.
    pub length: u64,
    /// Whether the head answer carries a manifest (known, and not a compat log's).
    pub manifest: bool,
}

impl HeadVersion {
    /// The version of `core`'s head now.
    pub fn of(core: &Core) -> Self {
        Self {
            fork: core.fork(),
            length: core.length(),
            manifest: core.verifier().is_some_and(|v| !v.is_compat()),
        }
    }
}

/// What a client asks of `GET /v1/logs/{key}/blocks`, with the server's caps applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeQuery {
    /// First block.
    pub start: u64,
    /// One past the last block asked for.
    pub end: u64,
    /// Prove against the head of this length (default: the current length).
    pub length: Option<u64>,
    /// The fork that head must be on (default: the current fork).
    pub fork: Option<u64>,
    /// Serve at most this many blocks (a prefix of the range).
    pub max_blocks: u64,
    /// Stop adding blocks once this many bytes are in (at least one block is served).
    pub max_bytes: u64,
}

/// What a client asks of `GET /v1/logs/{key}/set`, with the server's caps applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetQuery {
    /// The runs of blocks asked for.
    pub runs: Runs,
    /// Prove against the head of this length (default: the current length).
    pub length: Option<u64>,
    /// The fork that head must be on (default: the current fork).
    pub fork: Option<u64>,
    /// Serve at most this many blocks (a prefix of the runs).
    pub max_blocks: u64,
    /// Stop adding blocks once this many bytes are in (at least one block is served).
    pub max_bytes: u64,
}

/// Why a range cannot be served. Each maps to one HTTP status (`protocol/gateway.md` §5).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// The log is not held here.
    #[error("log not held here")]
    UnknownLog,
    /// `start..end` is empty, or `length` is out of bounds.
    #[error("bad range: {0}")]
    BadRange(&'static str),
    /// The log is on another fork than the one asked for.
    #[error("log is on fork {fork}, not the one asked for")]
    ForkMismatch {
        /// The fork the log is on.
        fork: u64,
    },
    /// The range or the asked length reaches past this log's length.
    #[error("log has {length} blocks here")]
    LengthUnavailable {
        /// The log's length here.
        length: u64,
    },
    /// A block of the range is not stored here (a sparse replica).
    #[error("block {index} is not stored here")]
    BlockUnavailable {
        /// The block.
        index: u64,
    },
    /// A tree node the proof needs is not stored here.
    #[error("tree node {index} is not stored here")]
    NodeUnavailable {
        /// Flat index of the node.
        index: u64,
    },
    /// The storage failed.
    #[error("storage: {0}")]
    Source(SourceError),
    /// This source does not serve sets of blocks ([`LogSource::set`]'s default).
    #[error("this gateway does not serve sets of blocks")]
    Unsupported,
}

impl RangeError {
    /// The short code the JSON error body carries.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownLog => "UNKNOWN_LOG",
            Self::BadRange(_) => "BAD_RANGE",
            Self::ForkMismatch { .. } => "FORK_MISMATCH",
            Self::LengthUnavailable { .. } => "LENGTH_UNAVAILABLE",
            Self::BlockUnavailable { .. } => "BLOCK_UNAVAILABLE",
            Self::NodeUnavailable { .. } => "NODE_UNAVAILABLE",
            Self::Source(_) => "STORAGE",
            Self::Unsupported => "NOT_FOUND",
        }
    }
}

/// The logs a gateway serves. Implemented by the node over its open cores; [`Cores`] is a
/// ready implementation over shared `Arc<Mutex<Core>>`.
///
/// Calls block (they read files); the router runs them on the blocking pool.
pub trait LogSource: Send + Sync + 'static {
    /// The keys of the logs served, in a stable order, at most `limit` of them.
    fn keys(&self, limit: usize) -> Result<Vec<Key>, SourceError>;

    /// The current signed head of `key`; `Ok(None)` if the log is not held.
    fn head(&self, key: &Key) -> Result<Option<SignedHead>, SourceError>;

    /// Blocks `query.start..` (a prefix of `query.start..query.end` within the caps) with the
    /// proof against the head of `query.length` on `query.fork`. [`prove_range`] does this
    /// for a [`Core`].
    fn range(&self, key: &Key, query: &RangeQuery) -> Result<RangeProof, RangeError>;

    /// The blocks of `query.runs` (a prefix within the caps) with one set proof against the
    /// head of `query.length` on `query.fork`. [`prove_set`] does this for a [`Core`]; the
    /// default answers [`RangeError::Unsupported`] (`404`, and clients fall back to ranges).
    fn set(&self, key: &Key, query: &SetQuery) -> Result<SetProof, RangeError> {
        let _ = (key, query);
        Err(RangeError::Unsupported)
    }

    /// The bytes of a file of an app log held here whose SHA-256 is `sha256`
    /// (`GET /v1/blob/{sha256}`), at most `max_bytes` of them ([`BlobError::TooLarge`]
    /// otherwise). The source checks the hash of what it read before answering. The default
    /// serves no blob ([`BlobError::Unknown`]: `404`, and clients ask another peer).
    fn blob(&self, sha256: &Sha256, max_bytes: u64) -> Result<Vec<u8>, BlobError> {
        let _ = (sha256, max_bytes);
        Err(BlobError::Unknown)
    }

    /// The version of `key`'s head now, **without blocking** (called on the async runtime for
    /// every head and cached range request): `None` when the log is not held, or when telling
    /// would block (a lock held by a writer) or is not implemented. With an answer, the
    /// gateway serves a head it read at that version from its cache, and drops cached ranges
    /// of other forks; with `None` it reads the head from [`LogSource::head`], and serves
    /// cached ranges as they are (their bytes stay valid proofs of the head they name).
    fn version(&self, key: &Key) -> Option<HeadVersion> {
        let _ = key;
        None
    }
}

impl<T: LogSource + ?Sized> LogSource for Arc<T> {
    fn keys(&self, limit: usize) -> Result<Vec<Key>, SourceError> {
        (**self).keys(limit)
    }
    fn head(&self, key: &Key) -> Result<Option<SignedHead>, SourceError> {
        (**self).head(key)
    }
    fn range(&self, key: &Key, query: &RangeQuery) -> Result<RangeProof, RangeError> {
        (**self).range(key, query)
    }
    fn set(&self, key: &Key, query: &SetQuery) -> Result<SetProof, RangeError> {
        (**self).set(key, query)
    }
    fn blob(&self, sha256: &Sha256, max_bytes: u64) -> Result<Vec<u8>, BlobError> {
        (**self).blob(sha256, max_bytes)
    }
    fn version(&self, key: &Key) -> Option<HeadVersion> {
        (**self).version(key)
    }
}

fn storage(e: CoreError) -> RangeError {
    RangeError::Source(Box::new(e))
}

/// The head a query is proven against: `(current length, fork, asked length)`, after checking
/// the asked fork and that the asked length is below 2^48 (not yet that we have it).
fn asked_head(
    core: &Core,
    fork: Option<u64>,
    length: Option<u64>,
) -> Result<(u64, u64, u64), RangeError> {
    let (current, ours) = (core.length(), core.fork());
    if fork.is_some_and(|f| f != ours) {
        return Err(RangeError::ForkMismatch { fork: ours });
    }
    let length = length.unwrap_or(current);
    if length > MAX_LENGTH {
        return Err(RangeError::BadRange("length above 2^48"));
    }
    Ok((current, ours, length))
}

/// Serve `query` from `core`: check fork and length, read blocks until a cap is reached, and
/// build the minimal range proof against the head of the asked length.
///
/// Any length up to the current one can be proven on the current fork: every node of the tree
/// at a shorter length is also a node of the current tree.
pub fn prove_range(core: &mut Core, query: &RangeQuery) -> Result<RangeProof, RangeError> {
    let (current, fork, length) = asked_head(core, query.fork, query.length)?;
    if query.start >= query.end {
        return Err(RangeError::BadRange("start must be below end"));
    }
    if length > current {
        return Err(RangeError::LengthUnavailable { length: current });
    }
    if query.end > length {
        // Past the head the client named (with no length named: past ours, so we are behind).
        return Err(match query.length {
            Some(_) => RangeError::BadRange("end past the length asked for"),
            None => RangeError::LengthUnavailable { length: current },
        });
    }
    let end = query
        .end
        .min(query.start.saturating_add(query.max_blocks.max(1)));
    let mut blocks = Vec::new();
    let mut bytes = 0u64;
    for index in query.start..end {
        if !blocks.is_empty() && bytes >= query.max_bytes {
            break;
        }
        let block = core
            .get(index)
            .map_err(storage)?
            .ok_or(RangeError::BlockUnavailable { index })?;
        if u32::try_from(block.len()).is_err() {
            return Err(RangeError::BadRange("block larger than 4 GiB"));
        }
        bytes = bytes.saturating_add(block.len() as u64);
        blocks.push(block);
        if bytes > query.max_bytes {
            break;
        }
    }
    range::prove(fork, length, query.start, blocks, core.nodes()).map_err(|e| match e {
        ProveError::MissingNode(index) => RangeError::NodeUnavailable { index },
        ProveError::Source(e) => RangeError::Source(Box::new(e)),
        ProveError::BadRange { .. } => RangeError::BadRange("range not provable"),
    })
}

/// Serve `query` from `core`: check fork and length, read the runs' blocks in order until a
/// cap is reached (the answer's runs are then a prefix of the asked ones, the last one maybe
/// cut short), and build the set proof against the head of the asked length.
pub fn prove_set(core: &mut Core, query: &SetQuery) -> Result<SetProof, RangeError> {
    let (current, fork, length) = asked_head(core, query.fork, query.length)?;
    if query.runs.is_empty() {
        return Err(RangeError::BadRange("no blocks asked for"));
    }
    if length > current {
        return Err(RangeError::LengthUnavailable { length: current });
    }
    if query.runs.end() > length {
        return Err(match query.length {
            Some(_) => RangeError::BadRange("runs past the length asked for"),
            None => RangeError::LengthUnavailable { length: current },
        });
    }
    let max_blocks = query.max_blocks.clamp(1, set::MAX_BLOCKS);
    let mut blocks = Vec::new();
    let mut served = Vec::new();
    let mut bytes = 0u64;
    'runs: for &(start, end) in query.runs.as_slice() {
        for index in start..end {
            if !blocks.is_empty() && (bytes >= query.max_bytes || blocks.len() as u64 >= max_blocks)
            {
                break 'runs;
            }
            let block = core
                .get(index)
                .map_err(storage)?
                .ok_or(RangeError::BlockUnavailable { index })?;
            if u32::try_from(block.len()).is_err() {
                return Err(RangeError::BadRange("block larger than 4 GiB"));
            }
            bytes = bytes.saturating_add(block.len() as u64);
            blocks.push(block);
            match served.last_mut() {
                Some((_, e)) if *e == index => *e = index + 1,
                _ => served.push((index, index + 1)),
            }
        }
    }
    let runs = Runs::new(served).ok_or(RangeError::BadRange("runs not servable"))?;
    set::prove(fork, length, runs, blocks, core.nodes()).map_err(|e| match e {
        set::ProveError::MissingNode(index) => RangeError::NodeUnavailable { index },
        set::ProveError::Source(e) => RangeError::Source(Box::new(e)),
        _ => RangeError::BadRange("set not provable"),
    })
}

/// A shared set of open cores, keyed by log key: the node inserts the `Arc<Mutex<Core>>` it
/// replicates, and the gateway locks one core per request for as long as a head or a range
/// takes to read. Cloning shares the set.
#[derive(Debug, Clone, Default)]
pub struct Cores {
    inner: Arc<RwLock<BTreeMap<Key, Arc<Mutex<Core>>>>>,
}

fn poisoned() -> SourceError {
    "a lock was poisoned by a panic".into()
}

impl Cores {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open every log of `store` and serve them all (a standalone gateway over a store
    /// directory, and tests).
    pub fn open_all(store: &Store) -> Result<Self, CoreError> {
        let cores = Self::new();
        for key in store.keys()? {
            cores.insert_core(store.open_core(&key.to_hex())?);
        }
        Ok(cores)
    }

    /// Serve `core`, shared with its other users; replaces a core of the same key.
    pub fn insert(&self, key: Key, core: Arc<Mutex<Core>>) {
        if let Ok(mut map) = self.inner.write() {
            map.insert(key, core);
        }
    }

    /// Serve `core`, which the set now owns; returns the shared handle.
    pub fn insert_core(&self, core: Core) -> Arc<Mutex<Core>> {
        let key = core.key();
        let shared = Arc::new(Mutex::new(core));
        self.insert(key, shared.clone());
        shared
    }

    /// Stop serving `key`; returns its handle.
    pub fn remove(&self, key: &Key) -> Option<Arc<Mutex<Core>>> {
        self.inner.write().ok()?.remove(key)
    }

    /// The handle of `key`.
    pub fn get(&self, key: &Key) -> Option<Arc<Mutex<Core>>> {
        self.inner.read().ok()?.get(key).cloned()
    }

    /// Number of logs served.
    pub fn len(&self) -> usize {
        self.inner.read().map_or(0, |m| m.len())
    }

    /// Whether no log is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LogSource for Cores {
    fn keys(&self, limit: usize) -> Result<Vec<Key>, SourceError> {
        let map = self.inner.read().map_err(|_| poisoned())?;
        Ok(map.keys().take(limit).copied().collect())
    }

    fn head(&self, key: &Key) -> Result<Option<SignedHead>, SourceError> {
        let Some(core) = self.get(key) else {
            return Ok(None);
        };
        let core = core.lock().map_err(|_| poisoned())?;
        Ok(Some(SignedHead::of(&core)))
    }

    fn range(&self, key: &Key, query: &RangeQuery) -> Result<RangeProof, RangeError> {
        let core = self.get(key).ok_or(RangeError::UnknownLog)?;
        let mut core = core.lock().map_err(|_| RangeError::Source(poisoned()))?;
        prove_range(&mut core, query)
    }

    fn set(&self, key: &Key, query: &SetQuery) -> Result<SetProof, RangeError> {
        let core = self.get(key).ok_or(RangeError::UnknownLog)?;
        let mut core = core.lock().map_err(|_| RangeError::Source(poisoned()))?;
        prove_set(&mut core, query)
    }

    /// Without waiting: `None` while another thread holds the core.
    fn version(&self, key: &Key) -> Option<HeadVersion> {
        let core = self.get(key)?;
        let core = core.try_lock().ok()?;
        Some(HeadVersion::of(&core))
    }
}
