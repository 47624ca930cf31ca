//! One log's files: [`CoreStorage`] reads them and [`Transaction`] changes them.
//!
//! Ownership and flow:
//! - the header (the first 8 KiB of the metadata file, [`HeaderState`]) holds the committed
//!   [`Head`]: it alone decides which blocks and nodes exist. Everything a transaction writes
//!   lands first in places the committed head does not reach (past its length) or in holes
//!   (absent records, absent blocks), then one header write commits it.
//! - the rest of the metadata file holds the tree records (`tree.rs`), the block index
//!   (`index.rs`) and the bitfield pages ([`Bitfield`]); the data file holds the block bytes
//!   ([`DataFile`]). A read is masked by the committed length: a record or bit past it reads as
//!   absent whatever the file says, and [`CoreStorage::clean_tail`] erases such leftovers
//!   before this handle first changes the log, after a truncation and after an aborted
//!   transaction.
//! - no file descriptor and no cache is the log's own: both are the store's (`shared.rs`),
//!   so an open log costs a few hundred bytes.
//!
//! The write order, and what each [`Durability`] fsyncs, is in `protocol/store.md` ("Commit
//! protocol").

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_log::{Node, NodeSource};

use crate::bitfield::{BITS_PER_PAGE, Bitfield, Page};
use crate::commit::{BlockWrite, Commit, Job, JobFile, coalesce};
use crate::data::DataFile;
use crate::fsutil::{read_full_at, read_small};
use crate::header::{
    FLAG_KEY, FLAG_MANIFEST, Header, HeaderState, MAX_MANIFEST, decode_manifest, manifest_region,
};
use crate::layout::{MANIFEST_AT, MANIFEST_PREFIX};
use crate::meta::{LogFiles, MetaFile};
use crate::shared::Shared;
use crate::tree::ReadError;
use crate::{Durability, Error, Head, LogLabel, Options, flat, index, tree};

/// Pending nodes a transaction holds before writing them out.
const MAX_PENDING_NODES: usize = 4096;
/// Blocks whose bits [`CoreStorage::clear`] drops per bitfield write (64 pages).
const CLEAR_CHUNK: u64 = 64 * BITS_PER_PAGE;
/// Bytes read from the start of the metadata file on open: both header slots and, in one go,
/// a manifest of up to 4 KiB after them.
const OPEN_READ: usize = 3 * 4096;

/// The leaf hash of a block (hypercore-crypto `data`): `BLAKE2b-256(0x00 ‖ u64le(len) ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    peerhost_log::hash::leaf(data)
}

/// The files of one log, opened: reads are verified and masked by the committed head; changes go
/// through a [`Transaction`], [`CoreStorage::truncate`] or [`CoreStorage::clear`].
///
/// Memory use is bounded whatever the log's size: the caches and file descriptors are the
/// store's, bounded by its [`Options`]. A `CoreStorage` is the only handle on its log in the
/// process ([`Error::AlreadyOpen`] guards this).
#[derive(Debug)]
pub struct CoreStorage {
    meta: MetaFile,
    label: LogLabel,
    durability: Durability,
    header: HeaderState,
    bitfield: Bitfield,
    data: DataFile,
    manifest: Option<Vec<u8>>,
    /// Boxed, as are the rarely present fields below: a node holds tens of thousands of logs
    /// open, and every byte of this struct is paid that many times.
    key_pair: Option<Box<KeyPair>>,
    /// Whether [`Self::clean_tail`] ran since the log was opened: it runs before the first
    /// change (reads are masked by the committed length, so they need no cleaning).
    clean: bool,
    /// A commit begun and not finished ([`CoreStorage::begin_commit`]).
    inflight: Option<Box<InFlight>>,
    /// The outcome of a commit finished by a change that could not wait for the caller to
    /// finish it ([`CoreStorage::settle`]), for [`CoreStorage::finish_commit`] to report.
    settled: Option<Box<Result<(), Error>>>,
}

/// What a commit in flight changes in memory once it succeeded, and what reads must not see
/// before.
#[derive(Debug)]
struct InFlight {
    commit: Commit,
    /// Nodes it writes: cached when it is done.
    nodes: Vec<Node>,
    /// Block index entries it writes `(block, offset)`: cached when it is done.
    entries: Vec<(u64, u64)>,
    /// Of those nodes, the ones below the committed length that were absent: they read as
    /// absent until it is done (the file may hold them, or half of one, meanwhile).
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
    /// Open the log `key` (its metadata file must exist).
    pub(crate) fn open(
        shared: &Arc<Shared>,
        key: Key,
        name: Option<&str>,
        options: &Options,
    ) -> Result<Self, Error> {
        let label = LogLabel::new(key, name);
        let dkey = key.discovery_key().0;
        if !shared.mark_open(dkey) {
            return Err(Error::AlreadyOpen { log: label });
        }
        // From here on, dropping `meta` closes the files and marks the log closed.
        let meta = MetaFile::new(LogFiles::new(shared.clone(), dkey));
        let path = meta.path();
        let file = meta.file().map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::UnknownLog {
                    query: name.map_or_else(|| key.to_z32(), str::to_owned),
                }
            }
            e => e,
        })?;
        let mut image = vec![0u8; OPEN_READ];
        let n = read_full_at(&file, &mut image, 0).map_err(Error::io("read", &path))?;
        image.truncate(n);
        let header = HeaderState::decode(&image[..n.min(2 * 4096)], &path)?;
        let current = header.current();
        if current.key != key {
            return Err(Error::CorruptFile {
                what: "log header",
                path,
                reason: format!("holds key {}, expected {}", current.key, key),
            });
        }
        let manifest = if current.flags & FLAG_MANIFEST != 0 {
            Some(read_manifest(&file, &image, &path)?)
        } else {
            None
        };
        let key_pair = if current.flags & FLAG_KEY != 0 {
            read_key_pair(&crate::store::key_path(&path))?
        } else {
            None
        };
        Ok(Self {
            meta,
            label,
            durability: options.durability,
            header,
            bitfield: Bitfield::default(),
            data: DataFile::default(),
            manifest,
            key_pair,
            clean: false,
            inflight: None,
            settled: None,
        })
    }

    /// The log's key.
    pub fn key(&self) -> Key {
        self.label.key()
    }

    /// The log's discovery key (kept since the log was opened: a BLAKE2b per call showed in
    /// profiles, once per block served).
    pub fn discovery_key(&self) -> DiscoveryKey {
        DiscoveryKey(self.meta.files().dkey())
    }

    /// How errors name this log.
    pub fn label(&self) -> &LogLabel {
        &self.label
    }

    /// The log's metadata file (`<root>/logs/<discovery key>.meta`); its blocks are in the file
    /// of the same name ending in `.data`.
    pub fn path(&self) -> PathBuf {
        self.meta.path()
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
        self.key_pair.as_deref()
    }

    /// Store the manifest's encoding (a replica learns it from a peer): written into the
    /// metadata file, then committed by a header that says it is there (fsynced under
    /// [`Durability::Sync`]). Written at most once per log: another manifest than the stored
    /// one is refused.
    pub fn set_manifest(&mut self, manifest: &[u8]) -> Result<(), Error> {
        self.settle();
        match self.manifest.as_deref() {
            Some(m) if m == manifest => return Ok(()),
            Some(_) => {
                return Err(Error::CorruptFile {
                    what: "manifest",
                    path: self.path(),
                    reason: "another manifest is stored for this log".to_owned(),
                });
            }
            None => {}
        }
        if manifest.len() > MAX_MANIFEST {
            return Err(Error::HeaderTooLarge {
                log: self.label.clone(),
                size: manifest.len(),
                limit: MAX_MANIFEST,
            });
        }
        self.ensure_clean()?;
        let file = self.meta.file()?;
        let path = self.path();
        self.meta
            .write(&file, MANIFEST_AT, &manifest_region(manifest))?;
        let sync = self.durability == Durability::Sync;
        if sync {
            file.sync_data().map_err(Error::io("fsync", &path))?;
        }
        let mut header = self.header.current().clone();
        header.flags |= FLAG_MANIFEST;
        self.header
            .commit(&file, &path, header, self.durability, &self.label)?;
        self.manifest = Some(manifest.to_vec());
        Ok(())
    }

    fn node_error(&self, index: u64, e: ReadError) -> Error {
        match e {
            ReadError::Io(e) => e,
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
        tree::read(&self.meta, index).map_err(|e| self.node_error(index, e))
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
        self.bitfield.get(&self.meta, index)
    }

    /// The first stored block in `start..end` (clamped to the length).
    pub fn next_present(&mut self, start: u64, end: u64) -> Result<Option<u64>, Error> {
        let end = end.min(self.head().length);
        self.bitfield.find(&self.meta, start, end, true)
    }

    /// The first block in `start..end` (clamped to the length) that is not stored.
    pub fn next_missing(&mut self, start: u64, end: u64) -> Result<Option<u64>, Error> {
        let end = end.min(self.head().length);
        self.bitfield.next_missing(&self.meta, start, end)
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

    /// Where block `index` (held, of `size` bytes) starts: from its block index entry when
    /// that is valid and the block fits in the log, else from the tree.
    fn block_offset(&mut self, index: u64, size: u64) -> Result<Option<u64>, Error> {
        let byte_length = self.head().byte_length;
        if let Some(offset) = index::read(&self.meta, index)? {
            if offset
                .checked_add(size)
                .is_some_and(|end| end <= byte_length)
            {
                return Ok(Some(offset));
            }
        }
        self.byte_offset(index)
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
        let Some(offset) = self.block_offset(index, leaf.size)? else {
            return Err(corrupt(
                self,
                "stored but a tree node left of it is missing",
            ));
        };
        let Some(bytes) = self.data.read(self.meta.files(), offset, leaf.size)? else {
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
            entries: Vec::new(),
            head: None,
            meta_file: None,
            data_file: None,
            wrote_data: false,
            wrote_meta: false,
            max_leaf: None,
            outside: false,
            committed: false,
        }
    }

    /// Commit `head` (a shorter log, typically with `fork + 1`) and then erase everything past
    /// it. The header is the commit point: a crash after it finishes the erasure before the
    /// log next changes.
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
        self.ensure_clean()?;
        let header = Header {
            key: self.key(),
            head,
            flags: self.header.current().flags,
        };
        let file = self.meta.file()?;
        self.header
            .commit(&file, &self.path(), header, self.durability, &self.label)?;
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
        self.ensure_clean()?;
        // Offsets first: they come from the tree, which clearing keeps.
        let from = self.byte_offset(start)?;
        let to = self.byte_offset(end)?;
        let file = self.meta.file()?;
        let mut at = start;
        while at < end {
            let stop = end.min(at.saturating_add(CLEAR_CHUNK));
            self.bitfield.set(&self.meta, at, stop, false)?;
            if self.bitfield.flush(&self.meta, &file)? && self.durability == Durability::Sync {
                file.sync_data()
                    .map_err(Error::io_with("fsync", || self.meta.path()))?;
            }
            at = stop;
        }
        if let (Some(from), Some(to)) = (from, to) {
            self.data
                .punch(self.meta.files(), from, to.saturating_sub(from))?;
        }
        Ok(())
    }

    /// Run [`Self::clean_tail`] if it has not run since the log was opened.
    fn ensure_clean(&mut self) -> Result<(), Error> {
        if self.clean {
            return Ok(());
        }
        self.clean_tail()
    }

    /// Erase every node record, index entry, bit and byte the committed head does not cover.
    /// Idempotent, and `O(1)` I/O when there is nothing to erase; runs before the first change
    /// of an opened log, after a truncation and after an aborted transaction.
    pub(crate) fn clean_tail(&mut self) -> Result<(), Error> {
        let Head {
            length,
            byte_length,
            ..
        } = *self.head();
        let file = self.meta.file()?;
        self.meta.cut_for(&file, length)?;
        self.bitfield.clean_tail(&self.meta, &file, length)?;
        index::clean_tail(&mut self.meta, &file, length)?;
        tree::clean_tail(&mut self.meta, &file, length)?;
        self.data.clean_tail(self.meta.files(), byte_length)?;
        self.clean = true;
        Ok(())
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
        self.ensure_clean()?;
        let length = self.head().length;
        let manifest = manifest.filter(|m| self.manifest.as_ref() != Some(m));
        if let Some(m) = &manifest {
            if self.manifest.is_some() || m.len() > MAX_MANIFEST {
                return Err(Error::CorruptFile {
                    what: "manifest",
                    path: self.path(),
                    reason: "another manifest is stored for this log, or it is too large"
                        .to_owned(),
                });
            }
        }
        let mut flags = self.header.current().flags;
        if manifest.is_some() {
            flags |= FLAG_MANIFEST;
        }
        // A manifest is committed by a header that says it is there, with the head as it is
        // when the commit brings no new one.
        let head = match head {
            None if manifest.is_some() => Some(self.head().clone()),
            h => h,
        };
        let header = head.map(|head| Header {
            key: self.key(),
            head,
            flags,
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
        let entries: Vec<(u64, u64)> = writes.iter().map(|b| (b.index, b.offset)).collect();
        let mut meta_writes = tree::runs(&nodes)?;
        meta_writes.extend(index::runs(&writes));
        let meta = JobFile::new(self.meta.file()?, self.meta.path());
        let data = if writes.is_empty() {
            None
        } else {
            Some(JobFile::new(
                self.meta.files().data()?,
                self.meta.files().data_path(),
            ))
        };
        // Last, as nothing after it can fail: it pins what reads see until the finish.
        let pages = match self.bitfield.stage(&self.meta, &indices) {
            Ok(p) => p,
            Err(e) => {
                self.bitfield.unpin(&self.meta, None);
                return Err(e);
            }
        };
        let job = Job {
            durability: self.durability,
            manifest: manifest.as_deref().map(manifest_region),
            data,
            data_writes: coalesce(writes, MAX_DATA_WRITE),
            meta,
            meta_writes,
            pages: pages.clone(),
            slot: slot.as_ref().map(|s| (s.at, s.slot.clone())),
        };
        let commit = Commit::new(job);
        self.inflight = Some(Box::new(InFlight {
            commit: commit.clone(),
            nodes,
            entries,
            masked,
            pages,
            header: slot.map(|s| s.seq).zip(header),
            manifest,
            clean,
        }));
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
                if tree::holds(&self.meta, &n) {
                    continue;
                }
            } else {
                // Through the cache: one lookup tells a node held (skip it) from a hole.
                match tree::read(&self.meta, n.index) {
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
            Some(f) => self.complete(*f),
            None => self.settled.take().map_or(Ok(()), |r| *r),
        }
    }

    /// Finish a commit in flight before another change, keeping its outcome for
    /// [`CoreStorage::finish_commit`].
    fn settle(&mut self) {
        if let Some(f) = self.inflight.take() {
            let result = self.complete(*f);
            if self.settled.as_ref().is_none_or(|r| r.is_ok()) {
                self.settled = Some(Box::new(result));
            }
        }
    }

    fn complete(&mut self, f: InFlight) -> Result<(), Error> {
        if let Err(e) = f.commit.outcome() {
            self.bitfield.unpin(&self.meta, None);
            // The commit's error is what the caller hears about; should restoring fail too, the
            // next open reloads the state from the files.
            let reread = self.reread_header();
            let _ = reread.and_then(|()| self.abort());
            return Err(e);
        }
        // The job wrote past the cache: bring the cached pages up to date.
        if let Ok(runs) = tree::runs(&f.nodes) {
            for (at, bytes) in runs {
                self.meta.written(at, &bytes);
            }
        }
        for (at, bytes) in index::runs_of(f.entries) {
            self.meta.written(at, &bytes);
        }
        self.bitfield.unpin(&self.meta, Some(&f.pages));
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

    /// Read the header again (after a commit written elsewhere failed part way: its slot may
    /// or may not have landed).
    fn reread_header(&mut self) -> Result<(), Error> {
        let file = self.meta.file()?;
        let path = self.path();
        let mut image = vec![0u8; 2 * 4096];
        let n = read_full_at(&file, &mut image, 0).map_err(Error::io("read", &path))?;
        self.header = HeaderState::decode(&image[..n], &path)?;
        Ok(())
    }

    /// Undo an uncommitted transaction's effects.
    fn abort(&mut self) -> Result<(), Error> {
        self.data.discard();
        self.bitfield.discard();
        self.meta.forget();
        self.clean_tail()
    }
}

/// The manifest the header says the metadata file holds: from the bytes read on open, or
/// read now when it is longer.
fn read_manifest(file: &File, image: &[u8], path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let corrupt = |reason: &str| Error::CorruptFile {
        what: "manifest",
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let at = MANIFEST_AT as usize;
    let region = image.get(at..).unwrap_or_default();
    match decode_manifest(region) {
        Ok(m) => Ok(m.to_vec()),
        Err("cut short") if region.len() >= MANIFEST_PREFIX => {
            let mut n = [0; 4];
            n.copy_from_slice(&region[0..4]);
            let n = (u32::from_le_bytes(n) as usize).min(MAX_MANIFEST);
            let mut buf = vec![0u8; MANIFEST_PREFIX + n];
            let got = read_full_at(file, &mut buf, MANIFEST_AT).map_err(Error::io("read", path))?;
            buf.truncate(got);
            decode_manifest(&buf).map(<[u8]>::to_vec).map_err(corrupt)
        }
        Err(e) => Err(corrupt(e)),
    }
}

/// The secret key file of a log we write (`None` when it is gone: the log is read-only here).
fn read_key_pair(path: &std::path::Path) -> Result<Option<Box<KeyPair>>, Error> {
    let Some(bytes) = read_small(path, 64)? else {
        return Ok(None);
    };
    let bad = |reason: &str| Error::CorruptFile {
        what: "secret key",
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let secret: [u8; 64] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| bad("not 64 bytes"))?;
    KeyPair::from_secret_key(&secret)
        .map(|kp| Some(Box::new(kp)))
        .ok_or_else(|| bad("public half does not match the seed"))
}

impl Drop for CoreStorage {
    fn drop(&mut self) {
        // No write of this log may outlive its handle (and its open mark).
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
    /// Block index entries `(block, offset)` of the blocks put, written with the nodes.
    entries: Vec<(u64, u64)>,
    head: Option<Head>,
    /// The files this transaction writes, held from the first write to the fsync after the
    /// last, so that the fsync reports any write-back error of those writes.
    meta_file: Option<Arc<File>>,
    data_file: Option<Arc<File>>,
    wrote_data: bool,
    wrote_meta: bool,
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
    /// Past the committed length only this transaction's nodes can be on disk (cleaning before
    /// the first change, truncation and abort erase the rest), so reading the file there
    /// unmasked is safe once it wrote.
    pub fn node(&mut self, index: u64) -> Result<Option<Node>, Error> {
        if let Some(n) = self.nodes.get(&index) {
            return Ok(Some(*n));
        }
        let s = &mut *self.storage;
        if flat::within(index, s.head().length) || self.wrote_meta {
            tree::read(&s.meta, index).map_err(|e| s.node_error(index, e))
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
        self.storage.bitfield.get(&self.storage.meta, index)
    }

    fn meta_file(&mut self) -> Result<Arc<File>, Error> {
        if let Some(f) = &self.meta_file {
            return Ok(f.clone());
        }
        self.storage.ensure_clean()?;
        let f = self.storage.meta.file()?;
        self.meta_file = Some(f.clone());
        Ok(f)
    }

    fn data_file(&mut self) -> Result<Arc<File>, Error> {
        if let Some(f) = &self.data_file {
            return Ok(f.clone());
        }
        self.storage.ensure_clean()?;
        let f = self.storage.meta.files().data()?;
        self.data_file = Some(f.clone());
        Ok(f)
    }

    /// Add a tree node. A node the tree file already holds, byte for byte, is not written
    /// again (a replica receives the same uncles with many consecutive blocks).
    pub fn put_node(&mut self, node: Node) -> Result<(), Error> {
        self.storage.ensure_clean()?;
        if !self.nodes.contains_key(&node.index) && tree::holds(&self.storage.meta, &node) {
            return Ok(());
        }
        match flat::right_leaf(node.index) {
            Some(r) => self.max_leaf = Some(self.max_leaf.map_or(r, |m| m.max(r))),
            None => self.outside = true,
        }
        self.nodes.insert(node.index, node);
        if self.nodes.len() >= MAX_PENDING_NODES {
            self.flush_meta()?;
        }
        Ok(())
    }

    /// Add block `index`'s bytes at byte `offset` and mark it present. The caller has checked
    /// the bytes against the block's leaf node (or made that node from them).
    pub fn put_block(&mut self, index: u64, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        let file = self.data_file()?;
        self.max_leaf = Some(self.max_leaf.map_or(index, |m| m.max(index)));
        let s = &mut *self.storage;
        s.data.write(&file, s.meta.files(), offset, bytes)?;
        s.bitfield
            .set(&s.meta, index, index.saturating_add(1), true)?;
        self.entries.push((index, offset));
        self.wrote_data = true;
        if self.entries.len() >= MAX_PENDING_NODES {
            self.flush_meta()?;
        }
        Ok(())
    }

    /// The head to commit: its length, byte length, fork, tree hash and signature.
    pub fn set_head(&mut self, head: Head) {
        self.head = Some(head);
    }

    /// Write the pending nodes and block index entries.
    fn flush_meta(&mut self) -> Result<(), Error> {
        if self.nodes.is_empty() && self.entries.is_empty() {
            return Ok(());
        }
        let file = self.meta_file()?;
        let nodes: Vec<Node> = std::mem::take(&mut self.nodes).into_values().collect();
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        self.wrote_meta = true;
        let s = &*self.storage;
        tree::write(&s.meta, &file, &nodes)?;
        for (at, bytes) in index::runs_of(entries) {
            s.meta.write(&file, at, &bytes)?;
        }
        Ok(())
    }

    /// Write everything and commit the new head (if one was set).
    ///
    /// Order: block bytes, tree nodes and block index entries; under [`Durability::Sync`]
    /// fsync them; bitfield pages (fsync); then the header, the single commit point (fsync). A
    /// crash before the header write leaves the previous head, and the next change erases the
    /// rest.
    pub fn commit(mut self) -> Result<(), Error> {
        let s = &mut *self.storage;
        let header = self.head.take().map(|head| Header {
            key: s.key(),
            head,
            flags: s.header.current().flags,
        });
        if let Some(h) = &header {
            HeaderState::check_fits(h, &s.label)?;
        }
        let sync = s.durability == Durability::Sync;
        if let Some(file) = self.data_file.clone() {
            let s = &mut *self.storage;
            s.data.flush(&file, s.meta.files())?;
            if sync && self.wrote_data {
                file.sync_data()
                    .map_err(Error::io_with("fsync", || s.meta.files().data_path()))?;
            }
        }
        self.flush_meta()?;
        let file = self.meta_file()?;
        let s = &mut *self.storage;
        let path = s.path();
        if sync && self.wrote_meta {
            file.sync_data().map_err(Error::io("fsync", &path))?;
        }
        if s.bitfield.flush(&s.meta, &file)? && sync {
            file.sync_data().map_err(Error::io("fsync", &path))?;
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
        let result = s
            .header
            .commit(&file, &path, header, s.durability, &s.label);
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
            // erased again before the next change.
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
