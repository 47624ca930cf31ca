//! The data file (`logs/<dkey>.data`): every block's bytes at its byte offset, nothing else.
//!
//! The file has no framing: where block `i` starts and how long it is come from the block
//! index or the tree (the sizes of the subtrees to its left, and its leaf's size), and its bytes
//! are checked against its leaf hash on every read. Writes inside a transaction are coalesced
//! into one buffer of at most [`MAX_BUFFER`] bytes of contiguous blocks, flushed when full,
//! when the next block is not contiguous, and at commit. The file is opened through the
//! store's pool when needed; a log that never held a block has none.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::Error;
use crate::fsutil::punch;
use crate::meta::LogFiles;
use crate::shared::Shared;

/// Most bytes held back before a `pwrite`.
const MAX_BUFFER: usize = 1 << 20;

/// Reads up to this many bytes are not checked against the file's length first.
const UNCHECKED_READ: u64 = 1 << 20;

/// Bytes read at once when small blocks are read one after another.
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// Bytes read ahead, held by one log until it reads past them or changes.
#[derive(Debug)]
struct Ahead {
    bytes: Vec<u8>,
    at: u64,
    /// Its share of the store's read-ahead budget, returned when dropped.
    _budget: Budget,
}

/// A share of the store's read-ahead budget (`Shared::reserve_ahead`): a node holds thousands
/// of logs open, and each keeping a buffer would add up to gigabytes.
#[derive(Debug)]
struct Budget(Arc<Shared>);

impl Drop for Budget {
    fn drop(&mut self) {
        self.0.release_ahead(READ_AHEAD);
    }
}

/// A log's data-file buffers: what waits to be written, and what was read ahead.
#[derive(Debug)]
pub(crate) struct DataFile {
    /// Bytes waiting to be written at `buf_at`.
    buf: Vec<u8>,
    buf_at: u64,
    /// The file's bytes at some offset, read ahead; dropped on any change to the file.
    ahead: Option<Ahead>,
    /// Where the last read ended: a read starting there is sequential.
    last_end: u64,
}

impl Default for DataFile {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            buf_at: 0,
            ahead: None,
            last_end: u64::MAX,
        }
    }
}

impl DataFile {
    /// Read `len` bytes at `offset`; `Ok(None)` when the file ends first.
    ///
    /// Small blocks read in order (a peer downloading the log) are served from one
    /// [`READ_AHEAD`]-byte `pread` instead of one each, while the store's read-ahead budget
    /// lasts.
    pub(crate) fn read(
        &mut self,
        files: &LogFiles,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        // An empty block occupies no bytes: it may sit at or past the end of a sparse file.
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let Some(end) = offset.checked_add(len) else {
            return Ok(None);
        };
        // Only a read that continues the previous one is served from (or refills) the
        // buffer; any other goes to the file.
        let sequential = offset == self.last_end;
        self.last_end = end;
        if !sequential {
            self.ahead = None;
            return read_direct(files, offset, len, end);
        }
        if let Some(bytes) = self.cut_ahead(offset, end) {
            return Ok(Some(bytes));
        }
        self.ahead = None;
        if len <= READ_AHEAD as u64 / 4 && files.shared().reserve_ahead(READ_AHEAD) {
            let budget = Budget(files.shared().clone());
            let mut bytes = Vec::with_capacity(READ_AHEAD);
            pread_into(files, &mut bytes, READ_AHEAD, offset)?;
            self.ahead = Some(Ahead {
                bytes,
                at: offset,
                _budget: budget,
            });
            if let Some(bytes) = self.cut_ahead(offset, end) {
                return Ok(Some(bytes));
            }
            // The file ends inside the block.
            return Ok(None);
        }
        read_direct(files, offset, len, end)
    }

    /// `offset..end` from the read-ahead buffer, if it holds all of it. The buffer is freed
    /// once read to its end.
    fn cut_ahead(&mut self, offset: u64, end: u64) -> Option<Vec<u8>> {
        let ahead = self.ahead.as_ref()?;
        let start = usize::try_from(offset.checked_sub(ahead.at)?).ok()?;
        let stop = usize::try_from(end.checked_sub(ahead.at)?).ok()?;
        let out = (stop <= ahead.bytes.len()).then(|| ahead.bytes[start..stop].to_vec())?;
        if stop == ahead.bytes.len() {
            let short = ahead.bytes.len() < READ_AHEAD;
            self.ahead = None;
            if short {
                // The end of the file: nothing more to read ahead.
                self.last_end = u64::MAX;
            }
        }
        Some(out)
    }

    /// Forget what was read ahead: the file is about to change (or changed behind it).
    pub(crate) fn drop_ahead(&mut self) {
        self.ahead = None;
        self.last_end = u64::MAX;
    }

    /// Queue `bytes` for writing at `offset` through `file`.
    pub(crate) fn write(
        &mut self,
        file: &File,
        files: &LogFiles,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), Error> {
        self.drop_ahead();
        let contiguous = self.buf_at + self.buf.len() as u64 == offset;
        if !contiguous || self.buf.len() + bytes.len() > MAX_BUFFER {
            self.flush(file, files)?;
        }
        if self.buf.is_empty() {
            self.buf_at = offset;
        }
        if bytes.len() >= MAX_BUFFER {
            // Large blocks go straight to the file.
            return file
                .write_all_at(bytes, offset)
                .map_err(Error::io_with("write", || files.data_path()));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Write out the buffer through `file`, and free it (a node holds thousands of logs open:
    /// none keeps what its last transaction needed).
    pub(crate) fn flush(&mut self, file: &File, files: &LogFiles) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.drop_ahead();
            file.write_all_at(&self.buf, self.buf_at)
                .map_err(Error::io_with("write", || files.data_path()))?;
        }
        self.buf = Vec::new();
        Ok(())
    }

    /// Drop the buffer unwritten (after an aborted transaction).
    pub(crate) fn discard(&mut self) {
        self.buf = Vec::new();
    }

    /// Cut the file to at most `len` bytes (a missing file stays missing). Idempotent.
    pub(crate) fn clean_tail(&mut self, files: &LogFiles, len: u64) -> Result<(), Error> {
        self.discard();
        self.drop_ahead();
        let path = files.data_path();
        let now = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("stat", &path)(e)),
        };
        if now > len {
            let file = files.data()?;
            file.set_len(len)
                .map_err(Error::io_with("truncate", || files.data_path()))?;
        }
        Ok(())
    }

    /// Free `len` bytes at `offset` (they read as zeros afterwards).
    pub(crate) fn punch(&mut self, files: &LogFiles, offset: u64, len: u64) -> Result<(), Error> {
        self.drop_ahead();
        let file = files.data()?;
        punch(&file, offset, len).map_err(Error::io_with("punch a hole in", || files.data_path()))
    }
}

/// Fill `out` with up to `want` bytes at `offset` (fewer at the end of the file).
fn pread_into(files: &LogFiles, out: &mut Vec<u8>, want: usize, offset: u64) -> Result<(), Error> {
    let file = files.data()?;
    out.reserve_exact(want);
    while out.len() < want {
        let at = offset + out.len() as u64;
        // Read into the spare capacity: no zeroing of a buffer the read overwrites anyway.
        match rustix::io::pread(&*file, rustix::buffer::spare_capacity(&mut *out), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io_with("read", || files.data_path())(e.into())),
        }
    }
    out.truncate(want);
    Ok(())
}

/// Read `len` bytes at `offset` with no read-ahead.
fn read_direct(
    files: &LogFiles,
    offset: u64,
    len: u64,
    end: u64,
) -> Result<Option<Vec<u8>>, Error> {
    // Never allocate more than the file holds: `len` comes from an on-disk record. Up to
    // `UNCHECKED_READ` bytes the short read says so without a `stat` per block.
    if len > UNCHECKED_READ {
        let file = files.data()?;
        let size = file
            .metadata()
            .map_err(Error::io_with("stat", || files.data_path()))?
            .len();
        if end > size {
            return Ok(None);
        }
    }
    let Ok(want) = usize::try_from(len) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    pread_into(files, &mut out, want, offset)?;
    Ok((out.len() == want).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::test_meta;

    #[test]
    fn buffered_writes_land_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let m = test_meta(dir.path(), 4);
        let fs = m.files();
        let f = fs.data().unwrap();
        let mut d = DataFile::default();
        d.write(&f, fs, 0, b"hello").unwrap();
        d.write(&f, fs, 5, b" world").unwrap();
        d.write(&f, fs, 20, b"!").unwrap(); // not contiguous: flushes the first run
        assert_eq!(
            d.read(fs, 0, 11).unwrap().as_deref(),
            Some(&b"hello world"[..])
        );
        d.flush(&f, fs).unwrap();
        assert_eq!(d.read(fs, 20, 1).unwrap().as_deref(), Some(&b"!"[..]));
        assert_eq!(d.read(fs, 20, 2).unwrap(), None);
        assert_eq!(d.read(fs, u64::MAX, 2).unwrap(), None);
        let big = vec![7u8; MAX_BUFFER + 1];
        d.write(&f, fs, 21, &big).unwrap();
        assert_eq!(d.read(fs, 21, big.len() as u64).unwrap(), Some(big));
        d.clean_tail(fs, 11).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 11);
    }

    #[test]
    fn read_ahead_never_serves_stale_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let m = test_meta(dir.path(), 4);
        let fs = m.files();
        let f = fs.data().unwrap();
        let mut d = DataFile::default();
        let block = |i: u8| vec![i; 100];
        for i in 0..50u8 {
            d.write(&f, fs, u64::from(i) * 100, &block(i)).unwrap();
        }
        d.flush(&f, fs).unwrap();
        // In order: the second read fills the read-ahead buffer, the rest come from it.
        assert_eq!(d.read(fs, 0, 100).unwrap(), Some(block(0)));
        for i in 1..10u8 {
            assert_eq!(d.read(fs, u64::from(i) * 100, 100).unwrap(), Some(block(i)));
        }
        assert!(d.ahead.is_some());
        // A write drops it, whether buffered or not yet flushed.
        d.write(&f, fs, 1000, &block(99)).unwrap();
        assert_eq!(
            d.read(fs, 1000, 100).unwrap(),
            Some(block(10)),
            "not flushed yet"
        );
        assert_eq!(d.read(fs, 1100, 100).unwrap(), Some(block(11)));
        d.flush(&f, fs).unwrap();
        assert_eq!(d.read(fs, 1000, 100).unwrap(), Some(block(99)));
        assert_eq!(d.read(fs, 1100, 100).unwrap(), Some(block(11)));
        assert_eq!(d.read(fs, 1200, 100).unwrap(), Some(block(12)));
        d.punch(fs, 1200, 100).unwrap();
        assert_eq!(d.read(fs, 1200, 100).unwrap(), Some(vec![0; 100]));
        // The end of the file inside a read-ahead block.
        assert_eq!(d.read(fs, 4900, 100).unwrap(), Some(block(49)));
        assert_eq!(d.read(fs, 4800, 100).unwrap(), Some(block(48)));
        assert_eq!(d.read(fs, 4900, 100).unwrap(), Some(block(49)));
        assert_eq!(d.read(fs, 5000, 100).unwrap(), None);
        d.clean_tail(fs, 4950).unwrap();
        assert_eq!(d.read(fs, 4900, 100).unwrap(), None);
        assert_eq!(
            d.read(fs, 4850, 100).unwrap(),
            Some([block(48)[..50].to_vec(), block(49)[..50].to_vec()].concat())
        );
    }

    #[test]
    fn read_ahead_is_bounded_for_the_whole_store() {
        let dir = tempfile::tempdir().unwrap();
        let m = test_meta(dir.path(), 4);
        let fs = m.files();
        let f = fs.data().unwrap();
        f.write_all_at(&[1; 200_000], 0).unwrap();
        // Logs that each read two blocks in order hold a buffer each, until the budget is
        // spent; the rest read without one.
        let mut logs: Vec<DataFile> = (0..100).map(|_| DataFile::default()).collect();
        for d in &mut logs {
            assert_eq!(d.read(fs, 0, 10).unwrap(), Some(vec![1; 10]));
            assert_eq!(d.read(fs, 10, 10).unwrap(), Some(vec![1; 10]));
            assert_eq!(d.read(fs, 20, 10).unwrap(), Some(vec![1; 10]));
        }
        let holding = logs.iter().filter(|d| d.ahead.is_some()).count();
        assert_eq!(holding, crate::shared::AHEAD_LIMIT / READ_AHEAD);
        // A buffer read to the end of the file is freed, and so is one dropped.
        let d = &mut logs[0];
        let mut at = 30;
        while at < 200_000 {
            assert_eq!(d.read(fs, at, 10).unwrap(), Some(vec![1; 10]));
            at += 10;
        }
        assert!(d.ahead.is_none());
        assert!(fs.shared().reserve_ahead(READ_AHEAD));
        fs.shared().release_ahead(READ_AHEAD);
        drop(logs);
        assert!(fs.shared().reserve_ahead(crate::shared::AHEAD_LIMIT));
    }
}
