//! A log's files as the pool hands them out ([`LogFiles`]), and its metadata file read
//! through the store's page cache ([`MetaFile`]).
//!
//! The metadata file (`layout.rs`) holds the header slots, the manifest, and per chunk of
//! 32768 blocks a bitfield page, the block index and the tree records. Pages of it are read
//! whole (4 KiB, aligned) through the store-wide cache; a page past the end of the file, or
//! the part of one past it, reads as zeros, which every record format here reads as "absent".
//! Writes go straight to the file (positional, through the handle the caller holds) and update
//! the cached pages they touch.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Error;
use crate::fsutil::{punch, read_full_at};
use crate::layout::{self, PAGE};
use crate::shared::{Kind, Page, Shared};

/// Who a log is to the store's pool: its files are found by its discovery key and pooled
/// under an id that lives as long as the open log.
#[derive(Debug)]
pub(crate) struct LogFiles {
    shared: Arc<Shared>,
    dkey: [u8; 32],
    pool_id: u32,
}

impl LogFiles {
    pub(crate) fn new(shared: Arc<Shared>, dkey: [u8; 32]) -> Self {
        let pool_id = shared.next_id();
        Self {
            shared,
            dkey,
            pool_id,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The log's discovery key (computed once, when the log was opened).
    pub(crate) fn dkey(&self) -> [u8; 32] {
        self.dkey
    }

    /// The metadata file, open.
    pub(crate) fn meta(&self) -> Result<Arc<File>, Error> {
        self.shared.file(self.pool_id, &self.dkey, Kind::Meta)
    }

    /// The data file, open (created if missing).
    pub(crate) fn data(&self) -> Result<Arc<File>, Error> {
        self.shared.file(self.pool_id, &self.dkey, Kind::Data)
    }

    pub(crate) fn meta_path(&self) -> PathBuf {
        self.shared.path(&self.dkey, Kind::Meta)
    }

    pub(crate) fn data_path(&self) -> PathBuf {
        self.shared.path(&self.dkey, Kind::Data)
    }
}

impl Drop for LogFiles {
    fn drop(&mut self) {
        self.shared.close_files(self.pool_id);
        self.shared.mark_closed(&self.dkey);
    }
}

/// The metadata file of one log, read through the page cache.
#[derive(Debug)]
pub(crate) struct MetaFile {
    files: LogFiles,
    /// The page cache's key for this log's pages; a new one forgets them all.
    cache_id: u32,
}

impl MetaFile {
    pub(crate) fn new(files: LogFiles) -> Self {
        let cache_id = files.shared.next_id();
        Self { files, cache_id }
    }

    pub(crate) fn files(&self) -> &LogFiles {
        &self.files
    }

    /// The file, open (the caller keeps this handle for writes it later fsyncs).
    pub(crate) fn file(&self) -> Result<Arc<File>, Error> {
        self.files.meta()
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.files.meta_path()
    }

    /// Page `page` of the file (zeros past its end), through the cache.
    pub(crate) fn page(&self, page: u64) -> Result<Page, Error> {
        let shared = &self.files.shared;
        if let Some(p) = shared.page(self.cache_id, page) {
            return Ok(p);
        }
        let file = self.file()?;
        let mut buf = [0u8; PAGE];
        if let Some(at) = page.checked_mul(PAGE as u64) {
            // A short read leaves the rest zero: past the end of the file is absent.
            read_full_at(&file, &mut buf, at).map_err(Error::io_with("read", || self.path()))?;
        }
        let p: Page = Arc::new(buf);
        shared.cache_page(self.cache_id, page, p.clone());
        Ok(p)
    }

    /// Page `page` if cached (no I/O, not counted as a use).
    pub(crate) fn cached_page(&self, page: u64) -> Option<Page> {
        self.files.shared.peek_page(self.cache_id, page)
    }

    /// Cache a page whose bytes the file now holds.
    pub(crate) fn cache_page(&self, page: u64, bytes: Page) {
        self.files.shared.cache_page(self.cache_id, page, bytes);
    }

    /// `bytes` are now at `at` in the file: update the cached pages they fall in.
    pub(crate) fn written(&self, at: u64, bytes: &[u8]) {
        self.files.shared.patch_pages(self.cache_id, at, bytes);
    }

    /// Write `bytes` at `at` through `file` and update the cache.
    pub(crate) fn write(&self, file: &File, at: u64, bytes: &[u8]) -> Result<(), Error> {
        file.write_all_at(bytes, at)
            .map_err(Error::io_with("write", || self.path()))?;
        self.written(at, bytes);
        Ok(())
    }

    /// Forget every cached page (after writes that bypassed [`Self::written`], or an abort).
    pub(crate) fn forget(&mut self) {
        self.cache_id = self.files.shared.next_id();
    }

    /// The file's length.
    pub(crate) fn len(&self, file: &File) -> Result<u64, Error> {
        Ok(file
            .metadata()
            .map_err(Error::io_with("stat", || self.path()))?
            .len())
    }

    /// Cut the file to `len` bytes if it is longer; forgets the cache when it cut.
    pub(crate) fn cut(&mut self, file: &File, len: u64) -> Result<(), Error> {
        if self.len(file)? > len {
            file.set_len(len)
                .map_err(Error::io_with("truncate", || self.path()))?;
            self.forget();
        }
        Ok(())
    }

    /// Make `from..to` read as zeros, with as little I/O as the file system allows: the
    /// partial pages at either end are read and rewritten only if they hold something, the
    /// whole pages between are punched only if `SEEK_DATA` finds data there.
    pub(crate) fn zero_range(&mut self, file: &File, from: u64, to: u64) -> Result<(), Error> {
        if from >= to {
            return Ok(());
        }
        let first_whole = from.div_ceil(PAGE as u64) * PAGE as u64;
        let last_whole = to / PAGE as u64 * PAGE as u64;
        if first_whole >= last_whole {
            return self.zero_within_pages(file, from, to);
        }
        self.zero_within_pages(file, from, first_whole)?;
        self.zero_within_pages(file, last_whole, to)?;
        if has_data(file, first_whole, last_whole) {
            punch(file, first_whole, last_whole - first_whole)
                .map_err(Error::io_with("punch a hole in", || self.path()))?;
            self.forget();
        }
        Ok(())
    }

    /// Zero `from..to`, which lies within one or two pages, writing only bytes that are not
    /// zero already.
    fn zero_within_pages(&mut self, file: &File, from: u64, to: u64) -> Result<(), Error> {
        let mut at = from;
        while at < to {
            let page_no = at / PAGE as u64;
            let page_end = (page_no + 1) * PAGE as u64;
            let stop = to.min(page_end);
            let page = self.page(page_no)?;
            let lo = (at % PAGE as u64) as usize;
            let hi = lo + (stop - at) as usize;
            if page[lo..hi].iter().any(|&b| b != 0) {
                self.write(file, at, &vec![0; hi - lo])?;
            }
            at = stop;
        }
        Ok(())
    }

    /// Cut the file for a log of `length` blocks (`layout::cut_at`).
    pub(crate) fn cut_for(&mut self, file: &File, length: u64) -> Result<(), Error> {
        let Some(cut) = layout::cut_at(length) else {
            return Ok(());
        };
        self.cut(file, cut)
    }
}

/// Whether `from..to` of `file` holds any data (not only holes), by `SEEK_DATA`; `true` when
/// the file system cannot say.
fn has_data(file: &File, from: u64, to: u64) -> bool {
    use rustix::fs::{SeekFrom, seek};
    match seek(file, SeekFrom::Data(from)) {
        Ok(at) => at < to,
        // ENXIO: no data at or past `from`.
        Err(rustix::io::Errno::NXIO) => false,
        Err(_) => true,
    }
}

/// A metadata file for unit tests: `dir/logs/<hex of [7; 32]>.meta`, created empty, in a
/// store-wide context of `cache_pages` pages.
#[cfg(test)]
pub(crate) fn test_meta(dir: &std::path::Path, cache_pages: usize) -> MetaFile {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let lock = crate::fsutil::open_rw(&dir.join("LOCK")).unwrap();
    let shared = Arc::new(Shared::new(logs, lock, 16, cache_pages));
    let dkey = [7; 32];
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(shared.path(&dkey, Kind::Meta))
        .unwrap();
    MetaFile::new(LogFiles::new(shared, dkey))
}
