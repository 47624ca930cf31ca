//! [`LogStore`]: what the replicator needs from a log, so that it runs on the disk store
//! ([`peerhost_store::Core`], `disk.rs`) and on a log held in memory ([`MemoryLog`],
//! `memory.rs`: pair tests and fuzzing need no disk).
//!
//! A log store answers from its **committed** state only: its head, nodes and blocks are what
//! survives a crash (per its durability). What the replicator verified and has not committed
//! yet lives in its own view of the log (`crate::view`), which hands the store a batch with
//! [`LogStore::begin_commit`], lets the driver run the returned [`CommitJob`] outside its lock,
//! and takes it in with [`LogStore::finish_commit`] (`protocol/replication.md`, "Commits").
//!
//! It does not own verification: the replicator verifies every proof against its view first
//! (through [`LogStore::node`]); the store writes what it is given.

mod disk;
mod memory;

use peerhost_ids::{DiscoveryKey, Key};
use peerhost_log::{Data, Node, Reorg, Request, Tree, Verifier};
use peerhost_store::{Changes, CoreError, LogLabel};

pub use memory::{MemoryCommit, MemoryLog};

/// The durable half of a commit (see [`LogStore::begin_commit`]): blocking I/O that the driver
/// runs with no lock held that the replicator's other users need. Running it twice, or after
/// the log finished it itself, does nothing.
pub trait CommitJob: std::fmt::Debug + Send + 'static {
    /// Make the commit's changes durable.
    fn run(&self);
}

/// A log as the replicator reads, serves and extends it.
///
/// Reads ([`tree`](Self::tree), [`node`](Self::node), [`has`](Self::has), …) answer from the
/// committed state; a commit begun with [`begin_commit`](Self::begin_commit) becomes visible
/// at [`finish_commit`](Self::finish_commit), not before. Every other change
/// ([`append`](Self::append), [`truncate`](Self::truncate),
/// [`apply_reorg`](Self::apply_reorg)) finishes a commit in flight first.
pub trait LogStore {
    /// What [`begin_commit`](Self::begin_commit) hands the driver.
    type Commit: CommitJob;

    /// The log's key.
    fn key(&self) -> Key;

    /// The log's discovery key.
    fn discovery_key(&self) -> DiscoveryKey {
        self.key().discovery_key()
    }

    /// How errors name the log.
    fn label(&self) -> LogLabel {
        LogLabel::new(self.key(), None)
    }

    /// The committed head: length, fork, byte length, roots, signature.
    fn tree(&self) -> &Tree;

    /// The verifier, once the manifest is known.
    fn verifier(&self) -> Option<&Verifier>;

    /// Whether we hold the secret key (can append).
    fn writable(&self) -> bool;

    /// The committed tree node at flat index `index`, if stored.
    fn node(&mut self, index: u64) -> Result<Option<Node>, peerhost_store::Error>;

    /// Whether block `index` is stored.
    fn has(&mut self, index: u64) -> Result<bool, peerhost_store::Error>;

    /// The first stored block in `start..end` (clamped to the length).
    fn next_present(&mut self, start: u64, end: u64) -> Result<Option<u64>, peerhost_store::Error>;

    /// The first block in `start..end` (clamped to the length) not stored.
    fn next_missing(&mut self, start: u64, end: u64) -> Result<Option<u64>, peerhost_store::Error>;

    /// The `data` answer to a peer's `request` (lib/replicator.js `_getProof`): `Ok(None)` for
    /// a block not stored here or another fork. With `check_block`, a block read back is
    /// hashed against its leaf first (`Config::verify_uploads`).
    fn proof(&mut self, request: &Request, check_block: bool) -> Result<Option<Data>, CoreError>;

    /// Append blocks to a log we write, durably; returns the new length.
    fn append(&mut self, blocks: &[&[u8]]) -> Result<u64, CoreError>;

    /// Truncate a log we write to `length` on a new fork, durably.
    fn truncate(&mut self, length: u64) -> Result<(), CoreError>;

    /// Adopt a finished reorg (a peer's other fork, verified): truncate to the shared blocks,
    /// store its nodes, take its signed head.
    fn apply_reorg(&mut self, reorg: Reorg) -> Result<(), CoreError>;

    /// Begin committing verified `changes` (see [`CommitJob`]): nothing of them is visible
    /// until [`finish_commit`](Self::finish_commit).
    fn begin_commit(&mut self, changes: Changes) -> Result<Self::Commit, CoreError>;

    /// Take in the commit begun last (running its job here if the driver did not): `Ok` when
    /// it is durable and visible, or when nothing was in flight.
    fn finish_commit(&mut self) -> Result<(), CoreError>;

    /// The committed length.
    fn length(&self) -> u64 {
        self.tree().length()
    }

    /// The committed fork.
    fn fork(&self) -> u64 {
        self.tree().fork()
    }
}

/// A log store's committed nodes as a [`peerhost_log::NodeSource`].
pub(crate) struct Nodes<'a, S>(pub(crate) &'a mut S);

impl<S: LogStore> peerhost_log::NodeSource for Nodes<'_, S> {
    type Error = peerhost_store::Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, peerhost_store::Error> {
        self.0.node(index)
    }
}
