//! The `data` file: every block's bytes at its byte offset, nothing else.
//!
//! The file has no framing: where block `i` starts and how long it is come from the tree (the
//! sizes of the subtrees to its left, and its leaf's size), and its bytes are checked against its
//! leaf hash on every read. Writes inside a transaction are coalesced into one buffer of at most
//! [`MAX_BUFFER`] bytes of contiguous blocks, flushed when full, when the next block is not
//! contiguous, and at commit.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::fsutil::{open_rw, punch};

/// Most bytes held back before a `pwrite`.
const MAX_BUFFER: usize = 1 << 20;

/// Reads up to this many bytes are not checked against the file's length first.
const UNCHECKED_READ: u64 = 1 << 20;

/// Bytes read at once when small blocks are read one after another.
const READ_AHEAD: usize = 64 * 1024;

/// Buffers larger than this are freed, not kept, once written or read through: a node holds
/// thousands of logs open, and each keeping what its last commit or read needed (up to
/// [`MAX_BUFFER`]) would add up to gigabytes.
const KEEP_BUFFER: usize = 16 * 1024;

/// The open data file, its write buffer and its read-ahead buffer.
#[derive(Debug)]
pub(crate) struct DataFile {
    file: Arc<File>,
    path: PathBuf,
    /// Bytes waiting to be written at `buf_at`.
    buf: Vec<u8>,
    buf_at: u64,
    /// The file's bytes at `ahead_at..`, read ahead; dropped on any change to the file.
    ahead: Vec<u8>,
    ahead_at: u64,
    /// Where the last read ended: a read starting there is sequential.
    last_end: u64,
}

impl DataFile {
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        Ok(Self {
            file: Arc::new(open_rw(path)?),
            path: path.to_owned(),
            buf: Vec::new(),
            buf_at: 0,
            ahead: Vec::new(),
            ahead_at: 0,
            last_end: u64::MAX,
        })
    }

    /// Read `len` bytes at `offset`; `Ok(None)` when the file ends first.
    ///
    /// Small blocks read in order (a peer downloading the log) are served from one
    /// [`READ_AHEAD`]-byte `pread` instead of one each.
    pub(crate) fn read(&mut self, offset: u64, len: u64) -> Result<Option<Vec<u8>>, Error> {
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
            return self.read_direct(offset, len, end);
        }
        if let Some(bytes) = self.cut_ahead(offset, end) {
            return Ok(Some(bytes));
        }
        if len <= READ_AHEAD as u64 / 4 {
            self.ahead.clear();
            self.ahead_at = offset;
            let got = self.pread_into(READ_AHEAD, offset);
            if let Err(e) = got {
                self.ahead = Vec::new();
                return Err(e);
            }
            if let Some(bytes) = self.cut_ahead(offset, end) {
                return Ok(Some(bytes));
            }
            // The file ends inside the block.
            return Ok(None);
        }
        self.read_direct(offset, len, end)
    }

    /// `offset..end` from the read-ahead buffer, if it holds all of it. The buffer is freed
    /// once read to the end of the file.
    fn cut_ahead(&mut self, offset: u64, end: u64) -> Option<Vec<u8>> {
        let start = offset.checked_sub(self.ahead_at)?;
        let stop = end.checked_sub(self.ahead_at)?;
        let stop = usize::try_from(stop).ok()?;
        let out = (stop <= self.ahead.len()).then(|| self.ahead[start as usize..stop].to_vec())?;
        if stop == self.ahead.len() && self.ahead.len() < READ_AHEAD {
            self.ahead = Vec::new();
            self.last_end = u64::MAX;
        }
        Some(out)
    }

    /// Fill the read-ahead buffer with up to `want` bytes at `offset` (fewer at the end of the
    /// file).
    fn pread_into(&mut self, want: usize, offset: u64) -> Result<(), Error> {
        self.ahead.reserve_exact(want);
        while self.ahead.len() < want {
            let at = offset + self.ahead.len() as u64;
            match rustix::io::pread(
                &self.file,
                rustix::buffer::spare_capacity(&mut self.ahead),
                at,
            ) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("read", &self.path)(e.into())),
            }
        }
        self.ahead.truncate(want);
        Ok(())
    }

    /// Read `len` bytes at `offset` with no read-ahead.
    fn read_direct(&self, offset: u64, len: u64, end: u64) -> Result<Option<Vec<u8>>, Error> {
        // Never allocate more than the file holds: `len` comes from an on-disk record. Up to
        // `UNCHECKED_READ` bytes the short read says so without a `stat` per block.
        if len > UNCHECKED_READ && end > self.len()? {
            return Ok(None);
        }
        let Ok(want) = usize::try_from(len) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(want);
        // Read into the spare capacity: no zeroing of a buffer the read overwrites anyway.
        while out.len() < want {
            let at = offset + out.len() as u64;
            match rustix::io::pread(&self.file, rustix::buffer::spare_capacity(&mut out), at) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("read", &self.path)(e.into())),
            }
        }
        out.truncate(want);
        Ok((out.len() == want).then_some(out))
    }

    /// The open file, for a commit job.
    pub(crate) fn handle(&self) -> (Arc<File>, PathBuf) {
        (self.file.clone(), self.path.clone())
    }

    /// Forget what was read ahead: the file is about to change (or changed behind it).
    pub(crate) fn drop_ahead(&mut self) {
        self.ahead = Vec::new();
        self.last_end = u64::MAX;
    }

    /// Queue `bytes` for writing at `offset`.
    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        self.drop_ahead();
        let contiguous = self.buf_at + self.buf.len() as u64 == offset;
        if !contiguous || self.buf.len() + bytes.len() > MAX_BUFFER {
            self.flush()?;
        }
        if self.buf.is_empty() {
            self.buf_at = offset;
        }
        if bytes.len() >= MAX_BUFFER {
            // Large blocks go straight to the file.
            return self
                .file
                .write_all_at(bytes, offset)
                .map_err(Error::io("write", &self.path));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Write out the buffer.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.drop_ahead();
            self.file
                .write_all_at(&self.buf, self.buf_at)
                .map_err(Error::io("write", &self.path))?;
            self.buf.clear();
            if self.buf.capacity() > KEEP_BUFFER {
                self.buf = Vec::new();
            }
        }
        Ok(())
    }

    /// Drop the buffer unwritten (after an aborted transaction).
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
    }

    /// The file's length in bytes.
    pub(crate) fn len(&self) -> Result<u64, Error> {
        Ok(self
            .file
            .metadata()
            .map_err(Error::io("stat", &self.path))?
            .len())
    }

    /// Cut the file to at most `len` bytes. Idempotent.
    pub(crate) fn clean_tail(&mut self, len: u64) -> Result<(), Error> {
        self.discard();
        self.drop_ahead();
        if self.len()? > len {
            self.file
                .set_len(len)
                .map_err(Error::io("truncate", &self.path))?;
        }
        Ok(())
    }

    /// Free `len` bytes at `offset` (they read as zeros afterwards).
    pub(crate) fn punch(&mut self, offset: u64, len: u64) -> Result<(), Error> {
        self.drop_ahead();
        punch(&self.file, offset, len).map_err(Error::io("punch a hole in", &self.path))
    }

    /// fsync the file's data.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        self.file
            .sync_data()
            .map_err(Error::io("fsync", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_writes_land_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DataFile::open(&dir.path().join("data")).unwrap();
        d.write(0, b"hello").unwrap();
        d.write(5, b" world").unwrap();
        d.write(20, b"!").unwrap(); // not contiguous: flushes the first run
        assert_eq!(d.read(0, 11).unwrap().as_deref(), Some(&b"hello world"[..]));
        d.flush().unwrap();
        assert_eq!(d.read(20, 1).unwrap().as_deref(), Some(&b"!"[..]));
        assert_eq!(d.read(20, 2).unwrap(), None);
        assert_eq!(d.read(u64::MAX, 2).unwrap(), None);
        let big = vec![7u8; MAX_BUFFER + 1];
        d.write(21, &big).unwrap();
        assert_eq!(d.read(21, big.len() as u64).unwrap(), Some(big));
        d.clean_tail(11).unwrap();
        assert_eq!(d.len().unwrap(), 11);
    }

    #[test]
    fn read_ahead_never_serves_stale_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DataFile::open(&dir.path().join("data")).unwrap();
        let block = |i: u8| vec![i; 100];
        for i in 0..50u8 {
            d.write(u64::from(i) * 100, &block(i)).unwrap();
        }
        d.flush().unwrap();
        // In order: the second read fills the read-ahead buffer, the rest come from it.
        assert_eq!(d.read(0, 100).unwrap(), Some(block(0)));
        for i in 1..10u8 {
            assert_eq!(d.read(u64::from(i) * 100, 100).unwrap(), Some(block(i)));
        }
        assert!(!d.ahead.is_empty());
        // A write drops it, whether buffered or not yet flushed.
        d.write(1000, &block(99)).unwrap();
        assert_eq!(
            d.read(1000, 100).unwrap(),
            Some(block(10)),
            "not flushed yet"
        );
        assert_eq!(d.read(1100, 100).unwrap(), Some(block(11)));
        d.flush().unwrap();
        assert_eq!(d.read(1000, 100).unwrap(), Some(block(99)));
        assert_eq!(d.read(1100, 100).unwrap(), Some(block(11)));
        assert_eq!(d.read(1200, 100).unwrap(), Some(block(12)));
        d.punch(1200, 100).unwrap();
        assert_eq!(d.read(1200, 100).unwrap(), Some(vec![0; 100]));
        // The end of the file inside a read-ahead block.
        assert_eq!(d.read(4900, 100).unwrap(), Some(block(49)));
        assert_eq!(d.read(4800, 100).unwrap(), Some(block(48)));
        assert_eq!(d.read(4900, 100).unwrap(), Some(block(49)));
        assert_eq!(d.read(5000, 100).unwrap(), None);
        d.clean_tail(4950).unwrap();
        assert_eq!(d.read(4900, 100).unwrap(), None);
        assert_eq!(
            d.read(4850, 100).unwrap(),
            Some([block(48)[..50].to_vec(), block(49)[..50].to_vec()].concat())
        );
    }
}
