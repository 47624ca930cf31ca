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

use crate::Error;
use crate::fsutil::{open_rw, punch, read_full_at};

/// Most bytes held back before a `pwrite`.
const MAX_BUFFER: usize = 1 << 20;

/// The open data file and its write buffer.
#[derive(Debug)]
pub(crate) struct DataFile {
    file: File,
    path: PathBuf,
    /// Bytes waiting to be written at `buf_at`.
    buf: Vec<u8>,
    buf_at: u64,
}

impl DataFile {
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        Ok(Self {
            file: open_rw(path)?,
            path: path.to_owned(),
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    /// Read `len` bytes at `offset`; `Ok(None)` when the file ends first.
    pub(crate) fn read(&self, offset: u64, len: u64) -> Result<Option<Vec<u8>>, Error> {
        // An empty block occupies no bytes: it may sit at or past the end of a sparse file.
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        // Never allocate more than the file holds: `len` comes from an on-disk record.
        let file_len = self.len()?;
        match offset.checked_add(len) {
            Some(end) if end <= file_len => {}
            _ => return Ok(None),
        }
        let mut out = vec![0; len as usize];
        let n =
            read_full_at(&self.file, &mut out, offset).map_err(Error::io("read", &self.path))?;
        Ok((n == out.len()).then_some(out))
    }

    /// Queue `bytes` for writing at `offset`.
    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
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
            self.file
                .write_all_at(&self.buf, self.buf_at)
                .map_err(Error::io("write", &self.path))?;
            self.buf.clear();
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
        if self.len()? > len {
            self.file
                .set_len(len)
                .map_err(Error::io("truncate", &self.path))?;
        }
        Ok(())
    }

    /// Free `len` bytes at `offset` (they read as zeros afterwards).
    pub(crate) fn punch(&mut self, offset: u64, len: u64) -> Result<(), Error> {
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
}
