//! Which blocks this store holds: one bit per block, in 4096-byte pages of the metadata file.
//!
//! Block `b` is bit `b % 8` (least significant first) of byte `b / 8` of its page; page `p`
//! covers blocks `32768 * p ..` and lives at `layout::bitfield_page_at(p)`, the start of chunk
//! `p` (format 1 kept the pages back to back in a file of their own; the bytes are the same).
//! A page never written reads as zeros (absent). Pages are written whole, one aligned `pwrite`
//! each, so a killed process cannot tear one.
//!
//! Pages are read through the store's page cache. Changes made inside a transaction stay in
//! `dirty` (pinned, never evicted) until [`Bitfield::flush`] writes them; their number is
//! bounded by the transaction's range, which callers bound.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use crate::Error;
use crate::layout::{self, PAGE};
use crate::meta::MetaFile;
pub(crate) use crate::shared::Page;

/// Blocks per page.
pub(crate) const BITS_PER_PAGE: u64 = PAGE as u64 * 8;

/// A log's bitfield pages being changed; the committed ones come from the metadata file.
#[derive(Debug, Default)]
pub(crate) struct Bitfield {
    dirty: BTreeMap<u64, Page>,
    /// The committed images of the pages a commit job is writing ([`Self::stage`]): reads see
    /// these until [`Self::unpin`], whatever the file holds meanwhile.
    pinned: BTreeMap<u64, Page>,
    /// Blocks `0..present_prefix` are all present in what reads see (a lower bound, learnt by
    /// [`Self::next_missing`], lowered by every change that can clear a bit): asking whether a
    /// complete log misses a block then loads no page (a mirror asks that of every log often).
    present_prefix: u64,
}

fn position(page_no: u64) -> Result<u64, Error> {
    layout::bitfield_page_at(page_no).ok_or_else(|| {
        Error::io("write", "(bitfield)")(std::io::Error::other("bitfield page out of range"))
    })
}

impl Bitfield {
    fn load(&self, meta: &MetaFile, page: u64) -> Result<Page, Error> {
        if let Some(p) = self.dirty.get(&page) {
            return Ok(p.clone());
        }
        if let Some(p) = self.pinned.get(&page) {
            return Ok(p.clone());
        }
        match layout::bitfield_page_at(page) {
            Some(at) => meta.page(at / PAGE as u64),
            // Blocks no file can hold are absent.
            None => Ok(Arc::new([0; PAGE])),
        }
    }

    /// Whether block `block` is marked present (including uncommitted changes).
    pub(crate) fn get(&self, meta: &MetaFile, block: u64) -> Result<bool, Error> {
        let page = self.load(meta, block / BITS_PER_PAGE)?;
        let bit = block % BITS_PER_PAGE;
        Ok(page[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// Mark blocks `start..end` present or absent, in memory (see [`Self::flush`]).
    pub(crate) fn set(
        &mut self,
        meta: &MetaFile,
        start: u64,
        end: u64,
        value: bool,
    ) -> Result<(), Error> {
        if !value && start < end {
            self.present_prefix = self.present_prefix.min(start);
        }
        let mut b = start;
        while b < end {
            let page_no = b / BITS_PER_PAGE;
            let page_end = (page_no + 1).saturating_mul(BITS_PER_PAGE).min(end);
            let mut page = self.load(meta, page_no)?;
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
    pub(crate) fn find(
        &self,
        meta: &MetaFile,
        start: u64,
        end: u64,
        value: bool,
    ) -> Result<Option<u64>, Error> {
        let mut b = start;
        while b < end {
            let page_no = b / BITS_PER_PAGE;
            let base = page_no * BITS_PER_PAGE;
            let page_end = base.saturating_add(BITS_PER_PAGE).min(end);
            let page = self.load(meta, page_no)?;
            if let Some(bit) = find_in_page(&page, b - base, page_end - base, value) {
                return Ok(Some(base + bit));
            }
            b = page_end;
        }
        Ok(None)
    }

    /// The first absent block in `start..end`: [`Self::find`] for absent bits, skipping the
    /// prefix known to be present and learning it when the scan starts inside it.
    pub(crate) fn next_missing(
        &mut self,
        meta: &MetaFile,
        start: u64,
        end: u64,
    ) -> Result<Option<u64>, Error> {
        let known = self.present_prefix;
        if start > known {
            return self.find(meta, start, end, false);
        }
        if known >= end {
            return Ok(None);
        }
        let found = self.find(meta, known, end, false)?;
        self.present_prefix = found.unwrap_or(end);
        Ok(found)
    }

    /// Number of pages changed since the last flush.
    #[cfg(test)]
    pub(crate) fn dirty_pages(&self) -> usize {
        self.dirty.len()
    }

    /// Write the changed pages through `file` (one `pwrite` per page). Returns whether
    /// anything was written.
    pub(crate) fn flush(&mut self, meta: &MetaFile, file: &File) -> Result<bool, Error> {
        let dirty = std::mem::take(&mut self.dirty);
        let wrote = !dirty.is_empty();
        for (page_no, page) in dirty {
            let at = position(page_no)?;
            use std::os::unix::fs::FileExt;
            file.write_all_at(&page[..], at)
                .map_err(Error::io_with("write", || meta.path()))?;
            meta.cache_page(at / PAGE as u64, page);
        }
        Ok(wrote)
    }

    /// Drop changes not yet flushed and pinned pages (the caller forgets the cache).
    pub(crate) fn discard(&mut self) {
        self.dirty.clear();
        self.pinned.clear();
        self.present_prefix = 0;
    }

    /// The pages that mark `blocks` present, with their positions, for a commit job to
    /// write; the pages as they are now stay what reads see (pinned) until [`Self::unpin`].
    /// Nothing may change the bitfield in between.
    pub(crate) fn stage(
        &mut self,
        meta: &MetaFile,
        blocks: &[u64],
    ) -> Result<Vec<(u64, Page)>, Error> {
        let mut staged: BTreeMap<u64, Page> = BTreeMap::new();
        for &b in blocks {
            let page_no = b / BITS_PER_PAGE;
            let page = match staged.get_mut(&page_no) {
                Some(p) => p,
                None => {
                    let now = self.load(meta, page_no)?;
                    self.pinned.insert(page_no, now.clone());
                    staged.entry(page_no).or_insert(now)
                }
            };
            let bit = b % BITS_PER_PAGE;
            Arc::make_mut(page)[(bit / 8) as usize] |= 1 << (bit % 8);
        }
        staged
            .into_iter()
            .map(|(p, page)| Ok((position(p)?, page)))
            .collect()
    }

    /// The commit job of [`Self::stage`] is over: with `written` (it succeeded) its pages are
    /// the bitfield now; without, the pinned pages are dropped and read again when needed.
    pub(crate) fn unpin(&mut self, meta: &MetaFile, written: Option<&[(u64, Page)]>) {
        self.pinned.clear();
        if written.is_none() {
            // The staged bits are gone again: what was learnt from them no longer holds.
            self.present_prefix = 0;
        }
        for (at, page) in written.into_iter().flatten() {
            meta.cache_page(at / PAGE as u64, page.clone());
        }
    }

    /// Clear every bit at or past block `length` that lies before the metadata file's cut
    /// (those of the page holding block `length`; later pages are cut). Idempotent.
    pub(crate) fn clean_tail(
        &mut self,
        meta: &MetaFile,
        file: &File,
        length: u64,
    ) -> Result<(), Error> {
        self.discard();
        let page_end = length.div_ceil(BITS_PER_PAGE).saturating_mul(BITS_PER_PAGE);
        if length % BITS_PER_PAGE != 0 && self.find(meta, length, page_end, true)?.is_some() {
            self.set(meta, length, page_end, false)?;
            self.flush(meta, file)?;
        }
        Ok(())
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
    use crate::meta::{MetaFile, test_meta};
    use proptest::prelude::*;

    /// A fresh view of the file: the cache forgotten, nothing pending.
    fn reopen(m: &mut MetaFile) -> Bitfield {
        m.forget();
        Bitfield::default()
    }

    fn page_on_disk(m: &MetaFile, page: u64) -> Vec<u8> {
        let bytes = std::fs::read(m.path()).unwrap();
        let at = layout::bitfield_page_at(page).unwrap() as usize;
        bytes[at..at + PAGE].to_vec()
    }

    #[test]
    fn bit_layout_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let m = test_meta(dir.path(), 4);
        let f = m.file().unwrap();
        let mut b = Bitfield::default();
        b.set(&m, 0, 1, true).unwrap();
        b.set(&m, 9, 11, true).unwrap();
        b.set(&m, BITS_PER_PAGE + 7, BITS_PER_PAGE + 8, true)
            .unwrap();
        assert_eq!(b.dirty_pages(), 2);
        assert!(b.flush(&m, &f).unwrap());
        assert_eq!(&page_on_disk(&m, 0)[..2], &[0b0000_0001, 0b0000_0110]);
        assert_eq!(page_on_disk(&m, 1)[0], 0b1000_0000);
    }

    #[test]
    fn pages_are_the_log_crates_and_js_pages() {
        use peerhost_log::bitfield::{BITS_PER_PAGE as LOG_BITS, Page as LogPage};
        assert_eq!(LOG_BITS, BITS_PER_PAGE);
        let dir = tempfile::tempdir().unwrap();
        let m = test_meta(dir.path(), 2);
        let mut b = Bitfield::default();
        let mut page = LogPage::default();
        for bit in [0u32, 1, 7, 8, 31, 32, 1000, 32_767] {
            b.set(&m, u64::from(bit), u64::from(bit) + 1, true).unwrap();
            page.set(bit, true);
        }
        b.flush(&m, &m.file().unwrap()).unwrap();
        assert_eq!(page_on_disk(&m, 0), page.to_bytes().to_vec());
    }

    #[test]
    fn survives_reopen_and_discard() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = test_meta(dir.path(), 2);
        let f = m.file().unwrap();
        let mut b = Bitfield::default();
        b.set(&m, 5, 100_000, true).unwrap();
        b.flush(&m, &f).unwrap();
        b.set(&m, 0, 200_000, false).unwrap();
        b.discard();
        let b = reopen(&mut m);
        assert!(!b.get(&m, 4).unwrap());
        assert!(b.get(&m, 5).unwrap());
        assert!(b.get(&m, 99_999).unwrap());
        assert!(!b.get(&m, 100_000).unwrap());
        assert!(!b.get(&m, u64::MAX).unwrap());
        assert_eq!(b.find(&m, 0, 200_000, true).unwrap(), Some(5));
        assert_eq!(b.find(&m, 5, 200_000, false).unwrap(), Some(100_000));
        assert_eq!(b.find(&m, 100_000, 200_000, true).unwrap(), None);
    }

    #[test]
    fn clean_tail_clears_past_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = test_meta(dir.path(), 2);
        let f = m.file().unwrap();
        let mut b = Bitfield::default();
        b.set(&m, 0, 3 * BITS_PER_PAGE, true).unwrap();
        b.flush(&m, &f).unwrap();
        let length = BITS_PER_PAGE + 10;
        m.cut_for(&f, length).unwrap();
        b.clean_tail(&m, &f, length).unwrap();
        let mut b = reopen(&mut m);
        assert_eq!(
            b.find(&m, 0, 4 * BITS_PER_PAGE, false).unwrap(),
            Some(BITS_PER_PAGE + 10)
        );
        assert_eq!(
            b.find(&m, BITS_PER_PAGE + 10, 4 * BITS_PER_PAGE, true)
                .unwrap(),
            None
        );
        m.cut_for(&f, 0).unwrap();
        b.clean_tail(&m, &f, 0).unwrap();
        let b = reopen(&mut m);
        assert_eq!(b.find(&m, 0, 4 * BITS_PER_PAGE, true).unwrap(), None);
        assert_eq!(
            std::fs::metadata(m.path()).unwrap().len(),
            layout::CHUNKS_AT
        );
    }

    #[test]
    fn the_present_prefix_is_forgotten_when_staged_bits_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let m = test_meta(dir.path(), 2);
        let f = m.file().unwrap();
        let mut b = Bitfield::default();
        b.set(&m, 0, 100, true).unwrap();
        b.flush(&m, &f).unwrap();
        assert_eq!(b.next_missing(&m, 0, 100).unwrap(), None);
        assert_eq!(b.present_prefix, 100);
        b.stage(&m, &[100, 101]).unwrap();
        b.unpin(&m, None);
        assert_eq!(b.present_prefix, 0);
        assert_eq!(b.next_missing(&m, 0, 200).unwrap(), Some(100));
    }

    proptest! {
        /// `next_missing` (which skips the prefix it learnt) answers as a scan of the model
        /// does, through changes that set and clear bits, flushes, discards and reopens.
        #[test]
        fn next_missing_matches_a_model(ops in proptest::collection::vec((0u64..6000, 0u64..4000, any::<bool>(), 0u8..4), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let mut m = test_meta(dir.path(), 2);
            let f = m.file().unwrap();
            let mut b = Bitfield::default();
            let mut model = vec![false; 10_000];
            let mut flushed = model.clone();
            for (start, len, value, then) in ops {
                let end = start + len;
                b.set(&m, start, end, value).unwrap();
                model[start as usize..end as usize].fill(value);
                match then {
                    0 => {
                        b.flush(&m, &f).unwrap();
                        flushed.clone_from(&model);
                    }
                    1 => {
                        b.discard();
                        m.forget();
                        model.clone_from(&flushed);
                    }
                    2 => {
                        b.flush(&m, &f).unwrap();
                        flushed.clone_from(&model);
                        b = reopen(&mut m);
                    }
                    _ => {}
                }
                for from in [0, start, start + 1, end, end.saturating_sub(1)] {
                    for to in [end, end + 1, 10_000, from] {
                        let to = to.min(10_000);
                        let from = from.min(to);
                        let want = model[from as usize..to as usize]
                            .iter()
                            .position(|&x| !x)
                            .map(|i| i as u64 + from);
                        prop_assert_eq!(b.next_missing(&m, from, to).unwrap(), want);
                    }
                }
            }
        }

        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u64..70_000, 0u64..3000, any::<bool>(), any::<bool>()), 1..20)) {
            let dir = tempfile::tempdir().unwrap();
            let mut m = test_meta(dir.path(), 2);
            let f = m.file().unwrap();
            let mut b = Bitfield::default();
            let mut model = vec![false; 80_000];
            for (start, len, value, flush) in ops {
                let end = start + len;
                b.set(&m, start, end, value).unwrap();
                model[start as usize..end as usize].fill(value);
                if flush {
                    b.flush(&m, &f).unwrap();
                    b = reopen(&mut m);
                }
                let probe = (start + len / 2).min(79_999);
                prop_assert_eq!(b.get(&m, probe).unwrap(), model[probe as usize]);
                let want = model[start as usize..].iter().position(|&x| x).map(|i| i as u64 + start);
                prop_assert_eq!(b.find(&m, start, 80_000, true).unwrap(), want);
                for from in [start, start + 1, probe, start.saturating_sub(63)] {
                    for to in [end, end + 1, probe + 1, 80_000] {
                        let to = to.min(80_000);
                        let from = from.min(to);
                        for v in [true, false] {
                            let want = model[from as usize..to as usize]
                                .iter()
                                .position(|&x| x == v)
                                .map(|i| i as u64 + from);
                            prop_assert_eq!(b.find(&m, from, to, v).unwrap(), want);
                        }
                    }
                }
            }
        }
    }
}
