//! What every open log of a store shares: the open-file pool, the page cache, and the set of
//! open logs with the store's lock.
//!
//! Ownership and flow:
//! - a log holds no file descriptor of its own: it asks the [`Files`] pool for its metadata or
//!   data file when it does I/O, and the pool opens it on a miss and closes the least recently
//!   used files beyond its bound ([`crate::Options::open_files`]). An operation that writes and
//!   then fsyncs keeps the one handle it got for both (a file closed in between could lose a
//!   write-back error: Linux reports it only to descriptors open when it happened);
//! - pages of the metadata files (tree records, block index entries, bitfield pages) are read
//!   through the [`Pages`] cache, bounded for the whole store, keyed by a log's cache id; a log
//!   that must forget its cached pages takes a new id and the old pages age out;
//! - so an open log costs a few hundred bytes of its own whatever it did, and a store of 40 000
//!   open logs holds at most `open_files` descriptors and the cache's pages.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::Error;
use crate::cache::Cache;
use crate::fsutil::{open_err, open_rw};
use crate::layout::PAGE;

/// Bytes of read-ahead buffers all open logs together hold at most (64 buffers of 64 KiB).
pub(crate) const AHEAD_LIMIT: usize = 4 << 20;

/// One 4 KiB page of a metadata file.
pub(crate) type Page = Arc<[u8; PAGE]>;

/// Which file of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `logs/<dkey>.meta`: header, manifest, bitfield, block index, tree.
    Meta,
    /// `logs/<dkey>.data`: block bytes.
    Data,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Data => "data",
        }
    }
}

/// Take a lock whatever a panicking holder left: every structure behind these locks is
/// consistent between operations (a cache or a set), so carrying on is safe.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The store-wide state every open log holds an `Arc` of.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `<root>/logs`.
    logs: PathBuf,
    files: Mutex<Cache<(u32, Kind), Arc<File>>>,
    pages: Mutex<Cache<(u32, u64), Page>>,
    ids: AtomicU32,
    /// Bytes of read-ahead buffers held by open logs, and the most they may hold.
    ahead: AtomicUsize,
    ahead_limit: usize,
    /// Held (flock'd) for as long as the store or any log of it is open.
    _lock: File,
    open: Mutex<HashSet<[u8; 32]>>,
}

impl Shared {
    pub(crate) fn new(logs: PathBuf, lock: File, open_files: usize, cache_pages: usize) -> Self {
        Self {
            logs,
            files: Mutex::new(Cache::new(open_files)),
            pages: Mutex::new(Cache::new(cache_pages)),
            ids: AtomicU32::new(1),
            ahead: AtomicUsize::new(0),
            ahead_limit: AHEAD_LIMIT,
            _lock: lock,
            open: Mutex::new(HashSet::new()),
        }
    }

    /// `<root>/logs`.
    pub(crate) fn logs(&self) -> &Path {
        &self.logs
    }

    /// The path of a log's file.
    pub(crate) fn path(&self, dkey: &[u8; 32], kind: Kind) -> PathBuf {
        self.logs
            .join(format!("{}.{}", hex::encode(dkey), kind.suffix()))
    }

    /// A fresh id for the pool and the page cache (ids are never reused within a process
    /// until 2^32 opens, after which a wrapped id can only meet pages long evicted).
    pub(crate) fn next_id(&self) -> u32 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Take `n` bytes of the read-ahead budget, if that many are left.
    pub(crate) fn reserve_ahead(&self, n: usize) -> bool {
        self.ahead
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + n <= self.ahead_limit).then_some(held + n)
            })
            .is_ok()
    }

    /// Give back `n` bytes of the read-ahead budget.
    pub(crate) fn release_ahead(&self, n: usize) {
        self.ahead.fetch_sub(n, Ordering::AcqRel);
    }

    /// Mark a log open; `false` if it already is.
    pub(crate) fn mark_open(&self, dkey: [u8; 32]) -> bool {
        lock(&self.open).insert(dkey)
    }

    pub(crate) fn mark_closed(&self, dkey: &[u8; 32]) {
        lock(&self.open).remove(dkey);
    }

    /// The open file `kind` of the log `dkey` under pool id `id`: from the pool, or opened
    /// (created if missing) and added to it.
    pub(crate) fn file(&self, id: u32, dkey: &[u8; 32], kind: Kind) -> Result<Arc<File>, Error> {
        if let Some(f) = lock(&self.files).get(&(id, kind)) {
            return Ok(f);
        }
        let path = self.path(dkey, kind);
        let file = match kind {
            Kind::Data => open_rw(&path)?,
            // The metadata file is the log: it must exist (a missing one is a log deleted
            // behind our back, never silently recreated empty).
            Kind::Meta => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags_nofollow()
                .open(&path)
                .map_err(open_err("open", &path))?,
        };
        let file = Arc::new(file);
        lock(&self.files).insert((id, kind), file.clone());
        Ok(file)
    }

    /// Close the files of pool id `id` (the log is closed).
    pub(crate) fn close_files(&self, id: u32) {
        let mut files = lock(&self.files);
        files.remove(&(id, Kind::Meta));
        files.remove(&(id, Kind::Data));
    }

    /// Page `page` (the page at byte `page · 4096`) of the metadata file of cache id `id`,
    /// if cached.
    pub(crate) fn page(&self, id: u32, page: u64) -> Option<Page> {
        lock(&self.pages).get(&(id, page))
    }

    /// Whether page `page` of cache id `id` is cached, without counting it as a use.
    pub(crate) fn peek_page(&self, id: u32, page: u64) -> Option<Page> {
        lock(&self.pages).peek(&(id, page)).cloned()
    }

    pub(crate) fn cache_page(&self, id: u32, page: u64, bytes: Page) {
        lock(&self.pages).insert((id, page), bytes);
    }

    /// `bytes` were written at byte `at` of the metadata file of cache id `id`: update the
    /// cached pages they fall in (pages not cached are read from the file when needed).
    pub(crate) fn patch_pages(&self, id: u32, at: u64, bytes: &[u8]) {
        let mut pages = lock(&self.pages);
        let mut done = 0usize;
        while done < bytes.len() {
            let pos = at + done as u64;
            let page = pos / PAGE as u64;
            let within = (pos % PAGE as u64) as usize;
            let n = (PAGE - within).min(bytes.len() - done);
            if let Some(p) = pages.peek_mut(&(id, page)) {
                Arc::make_mut(p)[within..within + n].copy_from_slice(&bytes[done..done + n]);
            }
            done += n;
        }
    }
}

/// `O_NOFOLLOW` on an [`std::fs::OpenOptions`].
trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(crate::fsutil::no_follow())
    }
}
