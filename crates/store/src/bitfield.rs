//! The `bitfield` file: which blocks this store holds, one bit per block, in 4096-byte pages.
//!
//! Block `b` is bit `b % 8` (least significant first) of byte `b / 8`; page `p` is bytes
//! `4096 * p .. 4096 * (p + 1)` and covers blocks `32768 * p ..`. A missing page, or the part of
//! the file past its end, reads as zeros (absent). Pages are written whole, one aligned `pwrite`
//! each, so a killed process cannot tear one.
//!
//! Pages are read on demand through a bounded [`Cache`]. Changes made inside a transaction stay
//! in `dirty` (pinned, never evicted) until [`BitfieldFile::flush`] writes them; their number is
//! bounded by the transaction's range, which callers bound.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::cache::Cache;
use crate::fsutil::{open_rw, read_full_at};

/// Bytes per page.
pub(crate) const PAGE: usize = 4096;
/// Blocks per page.
pub(crate) const BITS_PER_PAGE: u64 = PAGE as u64 * 8;

pub(crate) type Page = Arc<[u8; PAGE]>;

/// The open bitfield file.
#[derive(Debug)]
pub(crate) struct BitfieldFile {
    file: Arc<File>,
    path: PathBuf,
    cache: Cache<u64, Page>,
    dirty: BTreeMap<u64, Page>,
    /// The committed images of the pages a commit job is writing ([`Self::stage`]): reads see
    /// these until [`Self::unpin`], whatever the file holds meanwhile.
    pinned: BTreeMap<u64, Page>,
}

impl BitfieldFile {
    pub(crate) fn open(path: &Path, cache_cap: usize) -> Result<Self, Error> {
        Ok(Self {
            file: Arc::new(open_rw(path)?),
            path: path.to_owned(),
            cache: Cache::new(cache_cap),
            dirty: BTreeMap::new(),
            pinned: BTreeMap::new(),
        })
    }

    fn load(&mut self, page: u64) -> Result<Page, Error> {
        if let Some(p) = self.dirty.get(&page) {
            return Ok(p.clone());
        }
        if let Some(p) = self.pinned.get(&page) {
            return Ok(p.clone());
        }
        if let Some(p) = self.cache.get(&page) {
            return Ok(p);
        }
        let mut buf = [0u8; PAGE];
        if let Some(at) = page.checked_mul(PAGE as u64) {
            // A short read leaves the rest zero: blocks past the end of the file are absent.
            read_full_at(&self.file, &mut buf, at).map_err(Error::io("read", &self.path))?;
        }
        let p = Arc::new(buf);
        self.cache.insert(page, p.clone());
        Ok(p)
    }

    /// Whether block `block` is marked present (including uncommitted changes).
    pub(crate) fn get(&mut self, block: u64) -> Result<bool, Error> {
        let page = self.load(block / BITS_PER_PAGE)?;
        let bit = block % BITS_PER_PAGE;
        Ok(page[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// Mark blocks `start..end` present or absent, in memory (see [`Self::flush`]).
    pub(crate) fn set(&mut self, start: u64, end: u64, value: bool) -> Result<(), Error> {
        let mut b = start;
        while b < end {
            let page_no = b / BITS_PER_PAGE;
            let page_end = (page_no + 1).saturating_mul(BITS_PER_PAGE).min(end);
            let mut page = self.load(page_no)?;
            let bytes = Arc::make_mut(&mut page);
            let mut bit = b % BITS_PER_PAGE;
            let stop = bit + (page_end - b);
            while bit < stop {
                if bit % 8 == 0 && stop - bit >= 8 {
                    // Whole bytes at a time in the middle of the range.
                    bytes[(bit / 8) as usize] = if value { 0xff } else { 0 };
                    bit += 8;
                    continue;
                }
                let mask = 1u8 << (bit % 8);
                let byte = &mut bytes[(bit / 8) as usize];
                if value {
                    *byte |= mask;
                } else {
                    *byte &= !mask;
                }
                bit += 1;
            }
            self.dirty.insert(page_no, page);
            b = page_end;
        }
        Ok(())
    }

    /// The first block in `start..end` whose bit equals `value`.
    pub(crate) fn find(&mut self, start: u64, end: u64, value: bool) -> Result<Option<u64>, Error> {
        let mut b = start;
        while b < end {
            let page_no = b / BITS_PER_PAGE;
            let base = page_no * BITS_PER_PAGE;
            let page_end = base.saturating_add(BITS_PER_PAGE).min(end);
            let page = self.load(page_no)?;
            if let Some(bit) = find_in_page(&page, b - base, page_end - base, value) {
                return Ok(Some(base + bit));
            }
            b = page_end;
        }
        Ok(None)
    }

    /// Number of pages changed since the last flush.
    #[cfg(test)]
    pub(crate) fn dirty_pages(&self) -> usize {
        self.dirty.len()
    }

    /// Write the changed pages (one `pwrite` per page). Returns whether anything was written.
    pub(crate) fn flush(&mut self) -> Result<bool, Error> {
        let dirty = std::mem::take(&mut self.dirty);
        let wrote = !dirty.is_empty();
        for (page_no, page) in dirty {
            let at = page_no.checked_mul(PAGE as u64).ok_or_else(|| {
                Error::io("write", &self.path)(std::io::Error::other("bitfield page out of range"))
            })?;
            self.file
                .write_all_at(&page[..], at)
                .map_err(Error::io("write", &self.path))?;
            self.cache.insert(page_no, page);
        }
        Ok(wrote)
    }

    /// Drop changes not yet flushed and every cached page.
    pub(crate) fn discard(&mut self) {
        self.dirty.clear();
        self.pinned.clear();
        self.cache.clear();
    }

    /// The pages that mark `blocks` present, with their byte offsets, for a commit job to
    /// write; the pages as they are now stay what reads see (pinned) until [`Self::unpin`].
    /// Nothing may change the bitfield in between.
    pub(crate) fn stage(&mut self, blocks: &[u64]) -> Result<Vec<(u64, Page)>, Error> {
        let mut staged: BTreeMap<u64, Page> = BTreeMap::new();
        for &b in blocks {
            let page_no = b / BITS_PER_PAGE;
            let page = match staged.get_mut(&page_no) {
                Some(p) => p,
                None => {
                    let now = self.load(page_no)?;
                    self.pinned.insert(page_no, now.clone());
                    staged.entry(page_no).or_insert(now)
                }
            };
            let bit = b % BITS_PER_PAGE;
            Arc::make_mut(page)[(bit / 8) as usize] |= 1 << (bit % 8);
        }
        staged
            .into_iter()
            .map(|(p, page)| {
                let at = p.checked_mul(PAGE as u64).ok_or_else(|| {
                    Error::io("write", &self.path)(std::io::Error::other(
                        "bitfield page out of range",
                    ))
                })?;
                Ok((at, page))
            })
            .collect()
    }

    /// The commit job of [`Self::stage`] is over: with `written` (it succeeded) its pages are
    /// the bitfield now; without, the pinned pages are dropped and read again when needed.
    pub(crate) fn unpin(&mut self, written: Option<&[(u64, Page)]>) {
        self.pinned.clear();
        for (at, page) in written.into_iter().flatten() {
            self.cache.insert(at / PAGE as u64, page.clone());
        }
    }

    /// The open file, for a commit job.
    pub(crate) fn handle(&self) -> (Arc<File>, PathBuf) {
        (self.file.clone(), self.path.clone())
    }

    /// Clear every bit at or past block `length`. Idempotent.
    pub(crate) fn clean_tail(&mut self, length: u64) -> Result<(), Error> {
        let pages = length.div_ceil(BITS_PER_PAGE);
        let keep = pages.saturating_mul(PAGE as u64);
        let len = self
            .file
            .metadata()
            .map_err(Error::io("stat", &self.path))?
            .len();
        if len > keep {
            self.file
                .set_len(keep)
                .map_err(Error::io("truncate", &self.path))?;
        }
        self.discard();
        if length % BITS_PER_PAGE != 0 && self.find(length, pages * BITS_PER_PAGE, true)?.is_some()
        {
            self.set(length, pages * BITS_PER_PAGE, false)?;
            self.flush()?;
        }
        Ok(())
    }

    /// fsync the file's data.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        self.file
            .sync_data()
            .map_err(Error::io("fsync", &self.path))
    }
}

/// The first bit in `lo..hi` (`lo < hi <= BITS_PER_PAGE`) of `page` that equals `value`, 64
/// bits at a time (bit `b` is bit `b % 8` of byte `b / 8`, so a little-endian word holds bits
/// `64 * w ..` in order).
fn find_in_page(page: &[u8; PAGE], lo: u64, hi: u64, value: bool) -> Option<u64> {
    let first = lo / 64;
    let last = (hi - 1) / 64;
    for w in first..=last {
        let at = (w * 8) as usize;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&page[at..at + 8]);
        let mut word = u64::from_le_bytes(bytes);
        if !value {
            word = !word;
        }
        if w == first {
            word &= u64::MAX << (lo % 64);
        }
        if w == last && hi - 64 * w < 64 {
            word &= (1u64 << (hi - 64 * w)) - 1;
        }
        if word != 0 {
            return Some(64 * w + u64::from(word.trailing_zeros()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bit_layout_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bitfield");
        let mut b = BitfieldFile::open(&p, 4).unwrap();
        b.set(0, 1, true).unwrap();
        b.set(9, 11, true).unwrap();
        b.set(BITS_PER_PAGE + 7, BITS_PER_PAGE + 8, true).unwrap();
        assert_eq!(b.dirty_pages(), 2);
        assert!(b.flush().unwrap());
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 2 * PAGE);
        assert_eq!(&bytes[..2], &[0b0000_0001, 0b0000_0110]);
        assert_eq!(bytes[PAGE], 0b1000_0000);
    }

    #[test]
    fn pages_are_the_log_crates_and_js_pages() {
        use peerhost_log::bitfield::{BITS_PER_PAGE as LOG_BITS, Page as LogPage};
        assert_eq!(LOG_BITS, BITS_PER_PAGE);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bitfield");
        let mut b = BitfieldFile::open(&p, 2).unwrap();
        let mut page = LogPage::default();
        for bit in [0u32, 1, 7, 8, 31, 32, 1000, 32_767] {
            b.set(u64::from(bit), u64::from(bit) + 1, true).unwrap();
            page.set(bit, true);
        }
        b.flush().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), page.to_bytes().to_vec());
    }

    #[test]
    fn survives_reopen_and_discard() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bitfield");
        let mut b = BitfieldFile::open(&p, 2).unwrap();
        b.set(5, 100_000, true).unwrap();
        b.flush().unwrap();
        b.set(0, 200_000, false).unwrap();
        b.discard();
        let mut b = BitfieldFile::open(&p, 2).unwrap();
        assert!(!b.get(4).unwrap());
        assert!(b.get(5).unwrap());
        assert!(b.get(99_999).unwrap());
        assert!(!b.get(100_000).unwrap());
        assert!(!b.get(u64::MAX).unwrap());
        assert_eq!(b.find(0, 200_000, true).unwrap(), Some(5));
        assert_eq!(b.find(5, 200_000, false).unwrap(), Some(100_000));
        assert_eq!(b.find(100_000, 200_000, true).unwrap(), None);
    }

    #[test]
    fn clean_tail_clears_past_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bitfield");
        let mut b = BitfieldFile::open(&p, 2).unwrap();
        b.set(0, 3 * BITS_PER_PAGE, true).unwrap();
        b.flush().unwrap();
        b.clean_tail(BITS_PER_PAGE + 10).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 2 * PAGE as u64);
        let mut b = BitfieldFile::open(&p, 2).unwrap();
        assert_eq!(
            b.find(0, 4 * BITS_PER_PAGE, false).unwrap(),
            Some(BITS_PER_PAGE + 10)
        );
        assert_eq!(
            b.find(BITS_PER_PAGE + 10, 4 * BITS_PER_PAGE, true).unwrap(),
            None
        );
        b.clean_tail(0).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    }

    proptest! {
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u64..70_000, 0u64..3000, any::<bool>(), any::<bool>()), 1..20)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("bitfield");
            let mut b = BitfieldFile::open(&p, 2).unwrap();
            let mut model = vec![false; 80_000];
            for (start, len, value, flush) in ops {
                let end = start + len;
                b.set(start, end, value).unwrap();
                model[start as usize..end as usize].fill(value);
                if flush {
                    b.flush().unwrap();
                    b = BitfieldFile::open(&p, 2).unwrap();
                }
                let probe = (start + len / 2).min(79_999);
                prop_assert_eq!(b.get(probe).unwrap(), model[probe as usize]);
                let want = model[start as usize..].iter().position(|&x| x).map(|i| i as u64 + start);
                prop_assert_eq!(b.find(start, 80_000, true).unwrap(), want);
                for from in [start, start + 1, probe, start.saturating_sub(63)] {
                    for to in [end, end + 1, probe + 1, 80_000] {
                        let to = to.min(80_000);
                        let from = from.min(to);
                        for v in [true, false] {
                            let want = model[from as usize..to as usize]
                                .iter()
                                .position(|&x| x == v)
                                .map(|i| i as u64 + from);
                            prop_assert_eq!(b.find(from, to, v).unwrap(), want);
                        }
                    }
                }
            }
        }
    }
}
