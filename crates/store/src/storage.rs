//! One log's files: [`CoreStorage`] reads them and [`Transaction`] changes them.
//!
//! Ownership and flow:
//! - `header` ([`HeaderFile`]) holds the committed [`Head`]: it alone decides which blocks and
//!   nodes exist. Everything a transaction writes lands first in places the committed head does
//!   not reach (past its length) or in holes (absent records, absent blocks), then one header
//!   write commits it.
//! - `tree` ([`TreeFile`]), `bitfield` ([`BitfieldFile`]), `data` ([`DataFile`]) hold nodes, block
//!   presence and bytes. A read is masked by the committed length: a record or bit past it reads
//!   as absent whatever the file says, and [`CoreStorage::clean_tail`] erases such leftovers on
//!   open, after a truncation and after an aborted transaction.
//!
//! The write order, and what each [`Durability`] fsyncs, is in `protocol/store.md` ("Commit
//! protocol").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_log::{Node, NodeSource};

use crate::bitfield::{BITS_PER_PAGE, BitfieldFile, Page};
use crate::commit::{BlockWrite, Commit, Job, Shared, coalesce};
use crate::data::DataFile;
use crate::flat;
use crate::fsutil::{read_small, write_atomic_with};
use crate::header::{Header, HeaderFile};
use crate::store::OpenGuard;
use crate::tree::{ReadError, TreeFile};
use crate::{Durability, Error, Head, LogLabel, Options};

/// Largest manifest file we read (a manifest with hundreds of signers is a few KiB).
pub(crate) const MAX_MANIFEST: u64 = 64 * 1024;
/// Pending nodes a transaction holds before writing them out.
const MAX_PENDING_NODES: usize = 4096;
/// Blocks whose bits [`CoreStorage::clear`] drops per bitfield write (64 pages).
const CLEAR_CHUNK: u64 = 64 * BITS_PER_PAGE;

/// File names inside a log's directory.
pub(crate) mod files {
    pub(crate) const HEADER: &str = "header";
    pub(crate) const TREE: &str = "tree";
    pub(crate) const DATA: &str = "data";
    pub(crate) const BITFIELD: &str = "bitfield";
    pub(crate) const MANIFEST: &str = "manifest";
    pub(crate) const SECRET_KEY: &str = "secret_key";
}

/// The leaf hash of a block (hypercore-crypto `data`): `BLAKE2b-256(0x00 ‖ u64le(len) ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    peerhost_log::hash::leaf(data)
}

/// The files of one log, opened: reads are verified and masked by the committed head; changes go
/// through a [`Transaction`], [`CoreStorage::truncate`] or [`CoreStorage::clear`].
///
/// Memory use is bounded by the [`Options`] caches whatever the log's size. A `CoreStorage` is
/// the only handle on its log in the process ([`Error::AlreadyOpen`] guards this).
#[derive(Debug)]
pub struct CoreStorage {
    dir: PathBuf,
    label: LogLabel,
    durability: Durability,
    header: HeaderFile,
    tree: TreeFile,
    bitfield: BitfieldFile,
    data: DataFile,
    manifest: Option<Vec<u8>>,
    key_pair: Option<KeyPair>,
    /// A commit begun and not finished ([`CoreStorage::begin_commit`]).
    inflight: Option<InFlight>,
    /// The outcome of a commit finished by a change that could not wait for the caller to
    /// finish it ([`CoreStorage::settle`]), for [`CoreStorage::finish_commit`] to report.
    settled: Option<Result<(), Error>>,
    _guard: OpenGuard,
}

/// What a commit in flight changes in memory once it succeeded, and what reads must not see
/// before.
#[derive(Debug)]
struct InFlight {
    commit: Commit,
    /// Nodes it writes: cached when it is done.
    nodes: Vec<Node>,
    /// Of those, the ones below the committed length that were absent: they read as absent
    /// until it is done (the file may hold them, or half of one, meanwhile).
    masked: BTreeSet<u64>,
    /// The bitfield pages it writes.
    pages: Vec<(u64, Page)>,
    /// The header it commits, with its sequence number.
    header: Option<(u64, Header)>,
    manifest: Option<Vec<u8>>,
    /// It writes nodes or blocks past its head: erase them after.
    clean: bool,
}

impl CoreStorage {
    /// Open the log in `dir`, which must hold the log `key`.
    pub(crate) fn open(
        dir: PathBuf,
        key: Key,
        name: Option<&str>,
        options: &Options,
        guard: OpenGuard,
    ) -> Result<Self, Error> {
        let label = LogLabel::new(key, name);
        let header_path = dir.join(files::HEADER);
        let header = HeaderFile::open(&header_path)?;
        if header.current().key != key {
            return Err(Error::CorruptFile {
                what: "log header",
                path: header_path,
                reason: format!("holds key {}, expected {}", header.current().key, key),
            });
        }
        let manifest = read_small(&dir.join(files::MANIFEST), MAX_MANIFEST)?;
        let key_pair = match read_small(&dir.join(files::SECRET_KEY), 64)? {
            None => None,
            Some(bytes) => {
                let bad = |reason: &str| Error::CorruptFile {
                    what: "secret key",
                    path: dir.join(files::SECRET_KEY),
                    reason: reason.to_owned(),
                };
                let secret: [u8; 64] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad("not 64 bytes"))?;
                Some(
                    KeyPair::from_secret_key(&secret)
                        .ok_or_else(|| bad("public half does not match the seed"))?,
                )
            }
        };
        let mut storage = Self {
            tree: TreeFile::open(&dir.join(files::TREE), options.node_cache)?,
            bitfield: BitfieldFile::open(&dir.join(files::BITFIELD), options.page_cache)?,
            data: DataFile::open(&dir.join(files::DATA))?,
            dir,
            label,
            durability: options.durability,
            header,
            manifest,
            key_pair,
            inflight: None,
            settled: None,
            _guard: guard,
        };
        // Erase whatever an interrupted append, truncation or transaction left past the head.
        storage.clean_tail()?;
        Ok(storage)
    }

    /// The log's key.
    pub fn key(&self) -> Key {
        self.label.key()
    }

    /// The log's discovery key.
    pub fn discovery_key(&self) -> DiscoveryKey {
        self.key().discovery_key()
    }

    /// How errors name this log.
    pub fn label(&self) -> &LogLabel {
        &self.label
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How hard commits push data to the disk.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The committed head.
    pub fn head(&self) -> &Head {
        &self.header.current().head
    }

    /// The manifest's encoding, when known.
    pub fn manifest(&self) -> Option<&[u8]> {
        self.manifest.as_deref()
    }

    /// The writer's key pair, for a log this store can append to.
    pub fn key_pair(&self) -> Option<&KeyPair> {
        self.key_pair.as_ref()
    }

    /// Store the manifest's encoding (a replica learns it from a peer). Atomic; fsynced under
    /// [`Durability::Sync`]. Written at most once per log.
    pub fn set_manifest(&mut self, manifest: &[u8]) -> Result<(), Error> {
        self.settle();
        if self.manifest.as_deref() == Some(manifest) {
            return Ok(());
        }
        let sync = self.durability == Durability::Sync;
        write_atomic_with(&self.dir.join(files::MANIFEST), manifest, 0o644, sync)?;
        self.manifest = Some(manifest.to_vec());
        Ok(())
    }

    fn node_error(&self, index: u64, e: ReadError) -> Error {
        match e {
            ReadError::Io(e) => Error::io("read", self.tree.path())(e),
            ReadError::Corrupt(reason) => Error::CorruptNode {
                log: self.label.clone(),
                index,
                reason,
            },
        }
    }

    /// The tree node at flat index `index`, if the committed tree has it stored.
    pub fn node(&mut self, index: u64) -> Result<Option<Node>, Error> {
        if !flat::within(index, self.head().length) {
            return Ok(None);
        }
        if self
            .inflight
            .as_ref()
            .is_some_and(|f| f.masked.contains(&index))
        {
            return Ok(None);
        }
        self.tree.read(index).map_err(|e| self.node_error(index, e))
    }

    /// The roots of the committed tree, left to right.
    pub fn roots(&mut self) -> Result<Vec<Node>, Error> {
        flat::full_roots(self.head().length)
            .into_iter()
            .map(|i| {
                self.node(i)?.ok_or_else(|| Error::CorruptNode {
                    log: self.label.clone(),
                    index: i,
                    reason: "root of the committed tree is missing",
                })
            })
            .collect()
    }

    /// Whether block `index` is stored (and below the committed length).
    pub fn has(&mut self, index: u64) -> Result<bool, Error> {
        if index >= self.head().length {
            return Ok(false);
        }
        self.bitfield.get(index)
    }

    /// The first stored block in `start..end` (clamped to the length).
    pub fn next_present(&mut self, start: u64, end: u64) -> Result<Option<u64>, Error> {
        let end = end.min(self.head().length);
        self.bitfield.find(start, end, true)
    }

    /// The first block in `start..end` (clamped to the length) that is not stored.
    pub fn next_missing(&mut self, start: u64, end: u64) -> Result<Option<u64>, Error> {
        let end = end.min(self.head().length);
        self.bitfield.find(start, end, false)
    }

    /// The byte offset of block `index` (`index <= length`), or `None` when a node it depends
    /// on is not stored (a sparse replica).
    pub fn byte_offset(&mut self, index: u64) -> Result<Option<u64>, Error> {
        let head = self.head();
        if index > head.length {
            return Ok(None);
        }
        if index == head.length {
            return Ok(Some(head.byte_length));
        }
        let mut offset = 0u64;
        for i in flat::full_roots(index) {
            match self.node(i)? {
                Some(n) => offset = offset.saturating_add(n.size),
                None => return Ok(None),
            }
        }
        Ok(Some(offset))
    }

    /// Block `index`, checked against its leaf node; `Ok(None)` when it is not stored.
    pub fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        self.block_checked(index, true)
    }

    /// Block `index` with its length checked against its leaf node but not its hash: for a
    /// reader that verifies the bytes itself (a peer checks every block it downloads against
    /// the signed tree). `Ok(None)` when it is not stored.
    pub fn block_unhashed(&mut self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        self.block_checked(index, false)
    }

    fn block_checked(&mut self, index: u64, hash: bool) -> Result<Option<Vec<u8>>, Error> {
        if !self.has(index)? {
            return Ok(None);
        }
        let corrupt = |s: &Self, reason| Error::CorruptBlock {
            log: s.label.clone(),
            index,
            reason,
        };
        // index < length <= u64::MAX / 2 for any length a header can commit through a tree.
        let leaf_index = index
            .checked_mul(2)
            .ok_or_else(|| corrupt(self, "index out of range"))?;
        let Some(leaf) = self.node(leaf_index)? else {
            return Err(corrupt(self, "stored but its tree node is missing"));
        };
        let Some(offset) = self.byte_offset(index)? else {
            return Err(corrupt(
                self,
                "stored but a tree node left of it is missing",
            ));
        };
        let Some(bytes) = self.data.read(offset, leaf.size)? else {
            return Err(corrupt(self, "data file too short"));
        };
        if hash && leaf_hash(&bytes) != leaf.hash {
            return Err(corrupt(self, "hash mismatch"));
        }
        Ok(Some(bytes))
    }

    /// Start a transaction. Nothing it writes is visible (to this handle or after a reopen)
    /// until [`Transaction::commit`] returns; dropping it uncommitted undoes it.
    pub fn transaction(&mut self) -> Transaction<'_> {
        self.settle();
        Transaction {
            storage: self,
            nodes: BTreeMap::new(),
            head: None,
            wrote_data: false,
            wrote_tree: false,
            max_leaf: None,
            outside: false,
            committed: false,
        }
    }

    /// Commit `head` (a shorter log, typically with `fork + 1`) and then erase everything past
    /// it. The header is the commit point: a crash after it finishes the erasure on reopen.
    pub fn truncate(&mut self, head: Head) -> Result<(), Error> {
        self.settle();
        if head.length > self.head().length {
            return Err(Error::OutOfRange {
                log: self.label.clone(),
                what: "truncate to length",
                index: head.length,
                length: self.head().length,
            });
        }
        let header = Header {
            key: self.key(),
            head,
        };
        self.header.commit(header, self.durability, &self.label)?;
        self.clean_tail()
    }

    /// Drop blocks `start..end` (clamped to the length) from local storage, keeping the tree.
    /// The bits are cleared and committed (fsynced under [`Durability::Sync`]) before the bytes
    /// are freed, so a crash never leaves a block marked present with its bytes gone.
    pub fn clear(&mut self, start: u64, end: u64) -> Result<(), Error> {
        self.settle();
        let end = end.min(self.head().length);
        if start >= end {
            return Ok(());
        }
        // Offsets first: they come from the tree, which clearing keeps.
        let from = self.byte_offset(start)?;
        let to = self.byte_offset(end)?;
        let mut at = start;
        while at < end {
            let stop = end.min(at.saturating_add(CLEAR_CHUNK));
            self.bitfield.set(at, stop, false)?;
            if self.bitfield.flush()? && self.durability == Durability::Sync {
                self.bitfield.sync()?;
            }
            at = stop;
        }
        if let (Some(from), Some(to)) = (from, to) {
            self.data.punch(from, to.saturating_sub(from))?;
        }
        Ok(())
    }

    /// Erase every node record, bit and byte the committed head does not cover. Idempotent;
    /// runs on open, after a truncation and after an aborted transaction.
    pub(crate) fn clean_tail(&mut self) -> Result<(), Error> {
        let Head {
            length,
            byte_length,
            ..
        } = *self.head();
        self.tree.clean_tail(length)?;
        self.bitfield.clean_tail(length)?;
        self.data.clean_tail(byte_length)
    }

    /// Begin committing verified nodes, blocks and perhaps a new head and manifest: compute
    /// every write, pin what reads see to the committed state, and return the [`Commit`] that
    /// writes them (the `commit` module). Until [`CoreStorage::finish_commit`], reads answer
    /// as before and the next change finishes this commit first.
    pub(crate) fn begin_commit(
        &mut self,
        nodes: Vec<Node>,
        blocks: Vec<BlockWrite>,
        head: Option<Head>,
        manifest: Option<Vec<u8>>,
    ) -> Result<Commit, Error> {
        self.settle();
        let length = self.head().length;
        let header = head.map(|head| Header {
            key: self.key(),
            head,
        });
        let slot = match &header {
            Some(h) => Some(self.header.prepare(h, &self.label)?),
            None => None,
        };
        let new_length = header.as_ref().map_or(length, |h| h.head.length);
        let (nodes, masked, mut clean) = self.nodes_to_write(nodes, length, new_length)?;
        let mut blocks = blocks;
        blocks.sort_unstable_by_key(|b| b.index);
        blocks.dedup_by_key(|b| b.index);
        let mut writes = Vec::with_capacity(blocks.len());
        for b in blocks {
            if self.has(b.index)? {
                continue;
            }
            clean |= b.index >= new_length;
            writes.push(b);
        }
        // Index order is offset order: the data runs coalesce.
        let indices: Vec<u64> = writes.iter().map(|b| b.index).collect();
        let pages = self.bitfield.stage(&indices)?;
        let job = Job {
            durability: self.durability,
            manifest: manifest
                .clone()
                .filter(|m| self.manifest.as_ref() != Some(m))
                .map(|m| (self.dir.join(files::MANIFEST), m)),
            data: Shared::new(self.data.handle()),
            data_writes: coalesce(writes, MAX_DATA_WRITE),
            tree: Shared::new(self.tree.handle()),
            tree_writes: self.tree.runs(&nodes)?,
            bitfield: Shared::new(self.bitfield.handle()),
            pages: pages.clone(),
            header: Shared::new(self.header.handle()),
            slot: slot.as_ref().map(|s| (s.at, s.slot.clone())),
        };
        let commit = Commit::new(job);
        self.inflight = Some(InFlight {
            commit: commit.clone(),
            nodes,
            masked,
            pages,
            header: slot.map(|s| s.seq).zip(header),
            manifest,
            clean,
        });
        Ok(commit)
    }

    /// The nodes of a commit that need writing, sorted (not those the tree file holds
    /// already); which of them are holes below the committed `length`; whether one lies past
    /// `new_length`.
    fn nodes_to_write(
        &mut self,
        mut nodes: Vec<Node>,
        length: u64,
        new_length: u64,
    ) -> Result<(Vec<Node>, BTreeSet<u64>, bool), Error> {
        // Proofs of consecutive blocks come nearly sorted.
        nodes.sort_unstable_by_key(|n| n.index);
        nodes.dedup_by_key(|n| n.index);
        let mut masked = BTreeSet::new();
        let mut clean = false;
        let mut keep = Vec::with_capacity(nodes.len());
        for n in nodes {
            if !flat::within(n.index, length) {
                if self.tree.holds(&n) {
                    continue;
                }
            } else {
                // Through the cache: one lookup tells a node held (skip it) from a hole.
                match self.tree.read(n.index) {
                    Ok(Some(old)) if old == n => continue,
                    // A hole (or a damaged record, which the verified node replaces).
                    Ok(_) | Err(ReadError::Corrupt(_)) => {
                        masked.insert(n.index);
                    }
                    Err(e @ ReadError::Io(_)) => return Err(self.node_error(n.index, e)),
                }
            }
            clean |= flat::right_leaf(n.index).is_none_or(|r| r >= new_length);
            keep.push(n);
        }
        Ok((keep, masked, clean))
    }

    /// Take in the commit begun last, once its [`Commit`] ran (it is run here if it did not):
    /// on success its head, nodes and blocks are what reads see; on failure the header is read
    /// back and everything past it erased. `Ok` when no commit is in flight (or the outcome of
    /// one a later change had to finish first).
    pub(crate) fn finish_commit(&mut self) -> Result<(), Error> {
        match self.inflight.take() {
            Some(f) => self.complete(f),
            None => self.settled.take().unwrap_or(Ok(())),
        }
    }

    /// Finish a commit in flight before another change, keeping its outcome for
    /// [`CoreStorage::finish_commit`].
    fn settle(&mut self) {
        if let Some(f) = self.inflight.take() {
            let result = self.complete(f);
            if self.settled.as_ref().is_none_or(Result::is_ok) {
                self.settled = Some(result);
            }
        }
    }

    fn complete(&mut self, f: InFlight) -> Result<(), Error> {
        if let Err(e) = f.commit.outcome() {
            self.bitfield.unpin(None);
            // The commit's error is what the caller hears about; should restoring fail too, the
            // next open reloads the state from the files.
            let reread = self.header.reopen();
            let _ = reread.and(self.abort());
            return Err(e);
        }
        self.tree.cache_written(&f.nodes);
        self.bitfield.unpin(Some(&f.pages));
        self.data.drop_ahead();
        if let Some((seq, header)) = f.header {
            self.header.committed(seq, header);
        }
        if let Some(m) = f.manifest {
            self.manifest = Some(m);
        }
        if f.clean {
            self.clean_tail()?;
        }
        Ok(())
    }

    /// Undo an uncommitted transaction's effects.
    fn abort(&mut self) -> Result<(), Error> {
        self.data.discard();
        self.bitfield.discard();
        self.tree.forget();
        self.clean_tail()
    }
}

impl Drop for CoreStorage {
    fn drop(&mut self) {
        // No write of this log may outlive its handle (and its open guard).
        self.settle();
    }
}

/// Most bytes of blocks written by one `pwrite` of a commit.
const MAX_DATA_WRITE: usize = 1 << 20;

impl NodeSource for CoreStorage {
    type Error = Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Error> {
        Self::node(self, index)
    }
}

/// A batch of changes to one log, committed by one header write.
///
/// Writes go to the files as they come (bounded buffers), but only to places the committed head
/// does not cover: nodes and blocks past its length, or holes below it (a replica filling in
/// blocks it did not have). So the log on disk stays the committed one until
/// [`commit`](Self::commit) writes the new head. Dropping the transaction without committing
/// erases what it wrote past the committed length.
///
/// A transaction must not overwrite a node or block the committed head already covers with
/// different bytes: to replace history, [`CoreStorage::truncate`] first (its own commit).
#[derive(Debug)]
pub struct Transaction<'a> {
    storage: &'a mut CoreStorage,
    nodes: BTreeMap<u64, Node>,
    head: Option<Head>,
    wrote_data: bool,
    wrote_tree: bool,
    /// The right-most block put, or under any node put, so far (commit cleans up past the new
    /// head).
    max_leaf: Option<u64>,
    /// Whether a node put so far has an index no tree reaches.
    outside: bool,
    committed: bool,
}

impl Transaction<'_> {
    /// How errors name the log.
    pub fn label(&self) -> LogLabel {
        self.storage.label.clone()
    }

    /// The head this transaction will commit (the committed one until [`Self::set_head`]).
    pub fn head(&self) -> &Head {
        self.head.as_ref().unwrap_or(self.storage.head())
    }

    /// A node, including those put in this transaction.
    ///
    /// Past the committed length only this transaction's nodes can be on disk (open, truncate
    /// and abort erase the rest), so reading the file there unmasked is safe.
    pub fn node(&mut self, index: u64) -> Result<Option<Node>, Error> {
        if let Some(n) = self.nodes.get(&index) {
            return Ok(Some(*n));
        }
        let s = &mut *self.storage;
        if flat::within(index, s.head().length) || self.wrote_tree {
            s.tree.read(index).map_err(|e| s.node_error(index, e))
        } else {
            Ok(None)
        }
    }

    /// Whether block `index` is stored, including blocks put in this transaction (below the
    /// committed length).
    pub fn has(&mut self, index: u64) -> Result<bool, Error> {
        if index >= self.storage.head().length {
            return Ok(false);
        }
        self.storage.bitfield.get(index)
    }

    /// Add a tree node. A node the tree file already holds, byte for byte, is not written
    /// again (a replica receives the same uncles with many consecutive blocks).
    pub fn put_node(&mut self, node: Node) -> Result<(), Error> {
        if !self.nodes.contains_key(&node.index) && self.storage.tree.holds(&node) {
            return Ok(());
        }
        match flat::right_leaf(node.index) {
            Some(r) => self.max_leaf = Some(self.max_leaf.map_or(r, |m| m.max(r))),
            None => self.outside = true,
        }
        self.nodes.insert(node.index, node);
        if self.nodes.len() >= MAX_PENDING_NODES {
            self.flush_nodes()?;
        }
        Ok(())
    }

    /// Add block `index`'s bytes at byte `offset` and mark it present. The caller has checked
    /// the bytes against the block's leaf node (or made that node from them).
    pub fn put_block(&mut self, index: u64, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        self.max_leaf = Some(self.max_leaf.map_or(index, |m| m.max(index)));
        self.storage.data.write(offset, bytes)?;
        self.storage
            .bitfield
            .set(index, index.saturating_add(1), true)?;
        self.wrote_data = true;
        Ok(())
    }

    /// The head to commit: its length, byte length, fork, tree hash and signature.
    pub fn set_head(&mut self, head: Head) {
        self.head = Some(head);
    }

    fn flush_nodes(&mut self) -> Result<(), Error> {
        if self.nodes.is_empty() {
            return Ok(());
        }
        let nodes: Vec<Node> = std::mem::take(&mut self.nodes).into_values().collect();
        self.wrote_tree = true;
        self.storage.tree.write(&nodes)
    }

    /// Write everything and commit the new head (if one was set).
    ///
    /// Order: block bytes and tree nodes; under [`Durability::Sync`] fsync them; bitfield
    /// pages (fsync); then the header, the single commit point (fsync). A crash before the
    /// header write leaves the previous head, and reopening erases the rest.
    pub fn commit(mut self) -> Result<(), Error> {
        let s = &mut *self.storage;
        let header = self.head.take().map(|head| Header { key: s.key(), head });
        if let Some(h) = &header {
            HeaderFile::check_fits(h, &s.label)?;
        }
        let sync = s.durability == Durability::Sync;
        s.data.flush()?;
        self.flush_nodes()?;
        let s = &mut *self.storage;
        if sync && self.wrote_data {
            s.data.sync()?;
        }
        if sync && self.wrote_tree {
            s.tree.sync()?;
        }
        if s.bitfield.flush()? && sync {
            s.bitfield.sync()?;
        }
        // From here on the changes below the committed length (a replica's new blocks) are
        // committed: `Drop` must not treat them as aborted.
        self.committed = true;
        let Some(header) = header else {
            let length = s.head().length;
            let outside = self.outside || self.max_leaf.is_some_and(|m| m >= length);
            return if outside { s.clean_tail() } else { Ok(()) };
        };
        let shrinks = header.head.length < s.head().length;
        let outside = self.outside || self.max_leaf.is_some_and(|m| m >= header.head.length);
        let result = s.header.commit(header, s.durability, &s.label);
        if result.is_err() || shrinks || outside {
            // Keep the invariant "nothing past the committed head on disk" whatever happened.
            let cleaned = s.clean_tail();
            result?;
            cleaned?;
        }
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: what is left is past the committed head, which reads as absent and is
            // erased again on the next open.
            let _ = self.storage.abort();
        }
    }
}

impl NodeSource for Transaction<'_> {
    type Error = Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Error> {
        Transaction::node(self, index)
    }
}
