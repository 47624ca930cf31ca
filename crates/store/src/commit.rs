//! Commits in two steps, so that the slow part runs without the caller's locks: the writes a
//! verified change needs are computed in memory ([`crate::Core::begin_commit`]), a [`Commit`]
//! makes them durable (blocking file I/O, on any thread, holding nothing of the caller's), and
//! the log takes them in ([`crate::Core::finish_commit`]).
//!
//! Ownership and flow:
//! - [`Changes`] is what the caller verified: tree nodes, blocks at their byte offsets, and
//!   perhaps a new signed head and the manifest it learned;
//! - `CoreStorage::begin_commit` turns them into a `Job` (the exact `pwrite`s and fsyncs, in
//!   the order of `Transaction::commit`) owning its bytes and shared handles on the files, and
//!   pins what reads see to the committed state meanwhile;
//! - [`Commit::run`] runs the job once; whoever comes first runs it (the driver, or the log
//!   itself when it must change before the driver got to it), the other waits or finds it done;
//! - `CoreStorage::finish_commit` takes the outcome: on success the new head, nodes and bitfield
//!   pages become what reads see; on failure the header is read back and everything past it
//!   erased, as after an aborted transaction.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use peerhost_log::{Node, Tree, Verifier};

use crate::bitfield::Page;
use crate::layout::MANIFEST_AT;
use crate::{Durability, Error};

/// Verified changes to one log, to commit with [`crate::Core::begin_commit`]. The caller has
/// verified every node and block against the signed tree (as for a
/// [`crate::Transaction`]): the store writes them as given.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct Changes {
    /// Tree nodes to store (any order; duplicates and nodes already stored are skipped).
    pub nodes: Vec<Node>,
    /// Blocks to store (blocks already stored are skipped).
    pub blocks: Vec<BlockWrite>,
    /// A new signed head (a verified upgrade), adopted when the commit succeeds.
    pub head: Option<Tree>,
    /// The verifier learned with it, when the log did not know its manifest.
    pub verifier: Option<Verifier>,
}

impl Changes {
    /// Nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.blocks.is_empty()
            && self.head.is_none()
            && self.verifier.is_none()
    }
}

/// One block of [`Changes`]: its index, its byte offset in the log and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockWrite {
    /// Block index.
    pub index: u64,
    /// Byte offset of the block in the log (the sizes of the subtrees left of it).
    pub offset: u64,
    /// The block's bytes.
    pub value: Vec<u8>,
}

/// The durable half of a commit begun with [`crate::Core::begin_commit`]: run it (blocking
/// file I/O) where no lock the log's other users need is held, then call
/// [`crate::Core::finish_commit`]. Cheap to clone; running it again, or after the log finished
/// it itself, does nothing.
#[derive(Debug, Clone)]
pub struct Commit {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Debug)]
enum Slot {
    Ready(Box<Job>),
    Done(Result<(), Error>),
    Taken,
}

impl Commit {
    pub(crate) fn new(job: Job) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Slot::Ready(Box::new(job)))),
        }
    }

    /// Write and (per the store's [`Durability`]) fsync everything the commit changes, ending
    /// with the commit point. Blocks for the I/O; a second call returns at once.
    pub fn run(&self) {
        // The lock is held for the I/O, so that the log, finishing the commit itself, waits
        // for a run in progress instead of starting another.
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*slot, Slot::Ready(_)) {
            if let Slot::Ready(job) = std::mem::replace(&mut *slot, Slot::Taken) {
                *slot = Slot::Done(job.run());
            }
        }
    }

    /// Run it if nobody did, and take its outcome (once).
    pub(crate) fn outcome(&self) -> Result<(), Error> {
        self.run();
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Done(result) => result,
            // Taken twice, or a run that panicked: the files are in an unknown state.
            _ => Err(Error::io("commit", "(commit job)")(std::io::Error::other(
                "the commit job did not finish",
            ))),
        }
    }
}

/// An open file a commit job writes: held from its first write to its last fsync, so that the
/// fsync reports any write-back error of those writes.
#[derive(Debug)]
pub(crate) struct JobFile {
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
}

impl JobFile {
    pub(crate) fn new(file: Arc<File>, path: PathBuf) -> Self {
        Self { file, path }
    }

    fn write(&self, at: u64, bytes: &[u8]) -> Result<(), Error> {
        self.file
            .write_all_at(bytes, at)
            .map_err(Error::io("write", &self.path))
    }

    fn sync(&self) -> Result<(), Error> {
        self.file
            .sync_data()
            .map_err(Error::io("fsync", &self.path))
    }
}

/// The writes of one commit, in the order `Transaction::commit` makes them.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) durability: Durability,
    /// The metadata file: manifest, tree records, block index, bitfield pages, header.
    pub(crate) meta: JobFile,
    /// The manifest region to write, when the log learned its manifest (the header slot
    /// below says it is there).
    pub(crate) manifest: Option<Vec<u8>>,
    /// The data file, when blocks are written.
    pub(crate) data: Option<JobFile>,
    pub(crate) data_writes: Vec<(u64, Vec<u8>)>,
    /// Tree records and block index entries, at their positions.
    pub(crate) meta_writes: Vec<(u64, Vec<u8>)>,
    /// Bitfield pages at their positions.
    pub(crate) pages: Vec<(u64, Page)>,
    /// The header slot (offset, bytes): the commit point, when the head changes.
    pub(crate) slot: Option<(u64, Vec<u8>)>,
}

impl Job {
    /// Manifest, block bytes, tree nodes and block index entries (fsynced under
    /// [`Durability::Sync`]); bitfield pages (fsynced); the header slot (fsynced). For blocks
    /// below the committed length with no new head, the bitfield page is the commit point, as
    /// in a transaction.
    fn run(&self) -> Result<(), Error> {
        let sync = self.durability == Durability::Sync;
        if let Some(region) = &self.manifest {
            self.meta.write(MANIFEST_AT, region)?;
        }
        if let Some(data) = &self.data {
            for (at, bytes) in &self.data_writes {
                data.write(*at, bytes)?;
            }
            if sync && !self.data_writes.is_empty() {
                data.sync()?;
            }
        }
        for (at, bytes) in &self.meta_writes {
            self.meta.write(*at, bytes)?;
        }
        if sync && (self.manifest.is_some() || !self.meta_writes.is_empty()) {
            self.meta.sync()?;
        }
        for (at, page) in &self.pages {
            self.meta.write(*at, &page[..])?;
        }
        if sync && !self.pages.is_empty() {
            self.meta.sync()?;
        }
        if let Some((at, slot)) = &self.slot {
            self.meta.write(*at, slot)?;
            if sync {
                self.meta.sync()?;
            }
        }
        Ok(())
    }
}

/// Concatenate blocks sorted by offset into runs of contiguous bytes of at most `max` bytes:
/// the data file's `pwrite`s. A run of one block is that block's own buffer (no copy), so
/// large blocks, which fill a run alone, are never copied.
pub(crate) fn coalesce(blocks: Vec<BlockWrite>, max: usize) -> Vec<(u64, Vec<u8>)> {
    // First the runs (index ranges into `blocks`), then their buffers, sized exactly.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        if let Some((first, end, bytes)) = runs.last_mut() {
            let next = blocks[*first].offset + *bytes as u64;
            if *end == i && next == b.offset && *bytes + b.value.len() <= max {
                *end = i + 1;
                *bytes += b.value.len();
                continue;
            }
        }
        runs.push((i, i + 1, b.value.len()));
    }
    let mut blocks = blocks.into_iter();
    runs.into_iter()
        .filter_map(|(first, end, bytes)| {
            let mut run = blocks.by_ref().take(end - first);
            let head = run.next()?;
            if end - first == 1 {
                return Some((head.offset, head.value));
            }
            let mut buf = Vec::with_capacity(bytes);
            buf.extend_from_slice(&head.value);
            for b in run {
                buf.extend_from_slice(&b.value);
            }
            Some((head.offset, buf))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bw(offset: u64, len: usize) -> BlockWrite {
        BlockWrite {
            index: offset,
            offset,
            value: vec![offset as u8; len],
        }
    }

    #[test]
    fn coalesce_joins_contiguous_blocks_up_to_the_bound() {
        let runs = coalesce(
            vec![bw(0, 4), bw(4, 4), bw(10, 2), bw(12, 8), bw(20, 1)],
            10,
        );
        let shape: Vec<(u64, usize)> = runs.iter().map(|(a, b)| (*a, b.len())).collect();
        assert_eq!(shape, vec![(0, 8), (10, 10), (20, 1)]);
        assert_eq!(runs[0].1, [0, 0, 0, 0, 4, 4, 4, 4]);
        let big = coalesce(vec![bw(0, 2), bw(2, 30), bw(32, 2)], 10);
        let shape: Vec<(u64, usize)> = big.iter().map(|(a, b)| (*a, b.len())).collect();
        assert_eq!(shape, vec![(0, 2), (2, 30), (32, 2)]);
    }
}
