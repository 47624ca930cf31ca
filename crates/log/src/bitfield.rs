//! Which blocks of a log are present, in fixed pages (hypercore lib/bitfield.js).
//!
//! A page holds [`BITS_PER_PAGE`] (32768) bits, [`BYTES_PER_PAGE`] (4 KiB) when stored: the
//! same layout as JS's `toBuffer` (little-endian 32-bit words, bit `i` of a page is bit `i % 8`
//! of byte `i / 8`), so a page can be written to disk or compared with JS as is.
//!
//! The [`Bitfield`] holds only the pages it was given or had to create: pages it does not hold
//! read as all zero. That keeps memory in the store's hands: it loads pages from disk with
//! [`Bitfield::insert_page`], writes back what [`Bitfield::take_dirty`] returns, and may
//! [`Bitfield::evict`] clean pages to bound memory, as long as it loads a page back before a
//! query touches it (page `i` covers blocks `i * BITS_PER_PAGE ..`, see [`page_of`]).
//! Clearing bits on a page that is not held does nothing and allocates nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Bits (blocks) per page.
pub const BITS_PER_PAGE: u64 = 32768;
/// Bytes per stored page.
pub const BYTES_PER_PAGE: usize = 4096;
const WORDS: usize = BYTES_PER_PAGE / 4;

/// The page holding bit `bit`.
pub const fn page_of(bit: u64) -> u64 {
    bit / BITS_PER_PAGE
}

/// One page of 32768 bits.
#[derive(Clone, PartialEq, Eq)]
pub struct Page {
    words: Box<[u32; WORDS]>,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            words: Box::new([0; WORDS]),
        }
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Page({} bits set)", self.count_ones())
    }
}

fn word_range(start: u32, end: u32) -> impl Iterator<Item = (usize, u32)> {
    // (word index, mask of the bits of [start, end) in that word); empty when start >= end.
    let end = end.max(start);
    let first = (start / 32) as usize;
    let last = end.div_ceil(32) as usize;
    (first..last).map(move |w| {
        let lo = (w as u32 * 32).max(start) - w as u32 * 32;
        let hi = ((w as u32 + 1) * 32).min(end) - w as u32 * 32;
        let mask = if hi - lo == 32 {
            u32::MAX
        } else {
            ((1u32 << (hi - lo)) - 1) << lo
        };
        (w, mask)
    })
}

impl Page {
    /// An all-zero page.
    pub fn new() -> Self {
        Self::default()
    }

    /// A page from its stored bytes.
    pub fn from_bytes(bytes: &[u8; BYTES_PER_PAGE]) -> Self {
        let mut page = Self::new();
        for (w, chunk) in page.words.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        page
    }

    /// The page's stored bytes.
    pub fn to_bytes(&self) -> [u8; BYTES_PER_PAGE] {
        let mut out = [0; BYTES_PER_PAGE];
        for (chunk, w) in out.chunks_exact_mut(4).zip(self.words.iter()) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The page as 1024 words (the `uint32array` of a `bitfield` message).
    pub fn words(&self) -> &[u32; WORDS] {
        &self.words
    }

    /// Bit `bit`; bits past [`BITS_PER_PAGE`] read as unset.
    pub fn get(&self, bit: u32) -> bool {
        // > return (field[i] & (1 << offset)) !== 0  (quickbit-universal fallback.js `get`,
        // > on a Uint32Array): least significant bit first within little-endian words.
        self.words
            .get((bit / 32) as usize)
            .is_some_and(|w| w & (1 << (bit % 32)) != 0)
    }

    /// Set bit `bit` to `value`; whether it changed (never, past [`BITS_PER_PAGE`]).
    pub fn set(&mut self, bit: u32, value: bool) -> bool {
        let Some(w) = self.words.get_mut((bit / 32) as usize) else {
            return false;
        };
        let mask = 1 << (bit % 32);
        let old = *w & mask != 0;
        if value {
            *w |= mask;
        } else {
            *w &= !mask;
        }
        old != value
    }

    /// Set bits `start..end` (at most [`BITS_PER_PAGE`]) to `value`.
    pub fn fill(&mut self, start: u32, end: u32, value: bool) {
        for (w, mask) in word_range(start, end.min(BITS_PER_PAGE as u32)) {
            if value {
                self.words[w] |= mask;
            } else {
                self.words[w] &= !mask;
            }
        }
    }

    /// Number of set bits in `start..end`.
    pub fn count_range(&self, start: u32, end: u32) -> u32 {
        word_range(start, end.min(BITS_PER_PAGE as u32))
            .map(|(w, mask)| (self.words[w] & mask).count_ones())
            .sum()
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// Whether no bit is set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The first bit at or after `from` equal to `value`.
    pub fn first(&self, value: bool, from: u32) -> Option<u32> {
        if from >= BITS_PER_PAGE as u32 {
            return None;
        }
        let start = (from / 32) as usize;
        for (i, &w) in self.words.iter().enumerate().skip(start) {
            let mut w = if value { w } else { !w };
            if i == start {
                w &= u32::MAX << (from % 32);
            }
            if w != 0 {
                return Some(i as u32 * 32 + w.trailing_zeros());
            }
        }
        None
    }

    /// The last bit at or before `at` equal to `value`.
    pub fn last(&self, value: bool, at: u32) -> Option<u32> {
        let at = at.min(BITS_PER_PAGE as u32 - 1);
        let end = (at / 32) as usize;
        for i in (0..=end).rev() {
            let mut w = if value { self.words[i] } else { !self.words[i] };
            if i == end {
                let keep = at % 32;
                w &= if keep == 31 {
                    u32::MAX
                } else {
                    (1 << (keep + 1)) - 1
                };
            }
            if w != 0 {
                return Some(i as u32 * 32 + 31 - w.leading_zeros());
            }
        }
        None
    }
}

/// The present-blocks bitfield: a sparse map of the pages in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitfield {
    pages: BTreeMap<u64, Page>,
    dirty: BTreeSet<u64>,
}

/// Split `start..end` into (page, first bit, end bit) pieces.
fn pieces(start: u64, end: u64) -> impl Iterator<Item = (u64, u32, u32)> {
    let first = page_of(start);
    let last = if end > start { page_of(end - 1) } else { 0 };
    let n = if end > start { last - first + 1 } else { 0 };
    (0..n).map(move |k| {
        let p = first + k;
        let base = p * BITS_PER_PAGE;
        let s = start.max(base) - base;
        let e = end.min(base + BITS_PER_PAGE) - base;
        (p, s as u32, e as u32)
    })
}

impl Bitfield {
    /// An empty bitfield (no pages).
    pub fn new() -> Self {
        Self::default()
    }

    /// Put a page loaded from storage in memory (it is clean). Returns the page it replaces.
    pub fn insert_page(&mut self, index: u64, page: Page) -> Option<Page> {
        self.dirty.remove(&index);
        self.pages.insert(index, page)
    }

    /// The page `index`, if in memory.
    pub fn page(&self, index: u64) -> Option<&Page> {
        self.pages.get(&index)
    }

    /// Drop page `index` from memory. Returns it with whether it had unsaved changes (write it
    /// first if so).
    pub fn evict(&mut self, index: u64) -> Option<(Page, bool)> {
        let dirty = self.dirty.remove(&index);
        self.pages.remove(&index).map(|p| (p, dirty))
    }

    /// Indices of the pages in memory, ascending.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages.keys().copied()
    }

    /// Number of pages in memory.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The pages changed since the last call, as stored bytes, ascending; they become clean.
    pub fn take_dirty(&mut self) -> Vec<(u64, [u8; BYTES_PER_PAGE])> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|i| self.pages.get(&i).map(|p| (i, p.to_bytes())))
            .collect()
    }

    /// Whether block `index` is present.
    pub fn get(&self, index: u64) -> bool {
        self.pages
            .get(&page_of(index))
            .is_some_and(|p| p.get((index % BITS_PER_PAGE) as u32))
    }

    /// Mark block `index` present or absent; whether it changed.
    pub fn set(&mut self, index: u64, value: bool) -> bool {
        let p = page_of(index);
        let bit = (index % BITS_PER_PAGE) as u32;
        let changed = match self.pages.get_mut(&p) {
            Some(page) => page.set(bit, value),
            None if !value => false,
            None => self.pages.entry(p).or_default().set(bit, true),
        };
        if changed {
            self.dirty.insert(p);
        }
        changed
    }

    /// Mark blocks `start..end` present or absent. Setting allocates every page in the range
    /// (the store bounds ranges it sets); clearing only touches pages in memory.
    pub fn set_range(&mut self, start: u64, end: u64, value: bool) {
        if value {
            for (p, s, e) in pieces(start, end) {
                self.pages.entry(p).or_default().fill(s, e, true);
                self.dirty.insert(p);
            }
            return;
        }
        for (p, s, e) in self.held_pieces(start, end) {
            if let Some(page) = self.pages.get_mut(&p) {
                page.fill(s, e, false);
                self.dirty.insert(p);
            }
        }
    }

    /// The (page, first bit, end bit) pieces of `start..end` on pages in memory.
    fn held_pieces(&self, start: u64, end: u64) -> Vec<(u64, u32, u32)> {
        if end <= start {
            return vec![];
        }
        self.pages
            .range(page_of(start)..=page_of(end - 1))
            .map(|(&p, _)| {
                let base = p * BITS_PER_PAGE;
                let s = start.max(base) - base;
                let e = end.min(base + BITS_PER_PAGE) - base;
                (p, s as u32, e as u32)
            })
            .collect()
    }

    /// Number of blocks in `start..end` whose bit equals `value`.
    pub fn count(&self, start: u64, end: u64, value: bool) -> u64 {
        let ones: u64 = self
            .held_pieces(start, end)
            .into_iter()
            .map(|(p, s, e)| {
                self.pages
                    .get(&p)
                    .map_or(0, |pg| u64::from(pg.count_range(s, e)))
            })
            .sum();
        if value {
            ones
        } else {
            end.saturating_sub(start) - ones
        }
    }

    /// Whether any block in `start..start + length` is present (JS `hasSet`).
    pub fn has_set(&self, start: u64, length: u64) -> bool {
        self.first_set(start)
            .is_some_and(|i| i < start.saturating_add(length))
    }

    /// The first present block at or after `from`.
    pub fn first_set(&self, from: u64) -> Option<u64> {
        let first = page_of(from);
        for (&p, page) in self.pages.range(first..) {
            let offset = if p == first {
                (from % BITS_PER_PAGE) as u32
            } else {
                0
            };
            if let Some(bit) = page.first(true, offset) {
                return Some(p * BITS_PER_PAGE + u64::from(bit));
            }
        }
        None
    }

    /// The first absent block at or after `from`.
    pub fn first_unset(&self, from: u64) -> u64 {
        let mut p = page_of(from);
        let mut offset = (from % BITS_PER_PAGE) as u32;
        loop {
            match self.pages.get(&p).map(|page| page.first(false, offset)) {
                None => return p * BITS_PER_PAGE + u64::from(offset),
                Some(Some(bit)) => return p * BITS_PER_PAGE + u64::from(bit),
                // A full page; the map is finite, so an absent page comes.
                Some(None) => {
                    p += 1;
                    offset = 0;
                }
            }
        }
    }

    /// The last present block at or before `at`.
    pub fn last_set(&self, at: u64) -> Option<u64> {
        let last = page_of(at);
        for (&p, page) in self.pages.range(..=last).rev() {
            let offset = if p == last {
                (at % BITS_PER_PAGE) as u32
            } else {
                BITS_PER_PAGE as u32 - 1
            };
            if let Some(bit) = page.last(true, offset) {
                return Some(p * BITS_PER_PAGE + u64::from(bit));
            }
        }
        None
    }

    /// The last absent block at or before `at`.
    pub fn last_unset(&self, at: u64) -> Option<u64> {
        let mut p = page_of(at);
        let mut offset = (at % BITS_PER_PAGE) as u32;
        loop {
            match self.pages.get(&p).map(|page| page.last(false, offset)) {
                None => return Some(p * BITS_PER_PAGE + u64::from(offset)),
                Some(Some(bit)) => return Some(p * BITS_PER_PAGE + u64::from(bit)),
                Some(None) if p == 0 => return None,
                Some(None) => {
                    p -= 1;
                    offset = BITS_PER_PAGE as u32 - 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn page_layout_matches_js() {
        // JS: bits 0, 9 and 32 set -> toBuffer bytes 01 02 00 00 01 ...
        let mut p = Page::new();
        p.set(0, true);
        p.set(9, true);
        p.set(32, true);
        let b = p.to_bytes();
        assert_eq!(&b[..6], &[0x01, 0x02, 0, 0, 0x01, 0]);
        assert_eq!(Page::from_bytes(&b), p);
        assert_eq!(p.words()[1], 1);
    }

    #[test]
    fn ranges_across_pages() {
        let mut bf = Bitfield::new();
        bf.set_range(10, BITS_PER_PAGE + 5, true);
        assert!(!bf.get(9));
        assert!(bf.get(10) && bf.get(BITS_PER_PAGE + 4));
        assert!(!bf.get(BITS_PER_PAGE + 5));
        assert_eq!(bf.count(0, 3 * BITS_PER_PAGE, true), BITS_PER_PAGE - 5);
        assert_eq!(bf.first_set(0), Some(10));
        assert_eq!(bf.first_unset(10), BITS_PER_PAGE + 5);
        assert_eq!(bf.last_set(u64::from(u32::MAX)), Some(BITS_PER_PAGE + 4));
        assert_eq!(bf.last_unset(BITS_PER_PAGE + 4), Some(9));
        assert_eq!(bf.page_count(), 2);
        let dirty = bf.take_dirty();
        assert_eq!(dirty.iter().map(|d| d.0).collect::<Vec<_>>(), vec![0, 1]);
        assert!(bf.take_dirty().is_empty());
        // Clearing pages that are not in memory allocates nothing.
        bf.set_range(10 * BITS_PER_PAGE, 20 * BITS_PER_PAGE, false);
        assert_eq!(bf.page_count(), 2);
        assert!(!bf.set(50 * BITS_PER_PAGE, false));
        bf.set_range(0, 2 * BITS_PER_PAGE, false);
        assert_eq!(bf.first_set(0), None);
        assert!(!bf.has_set(0, 100));
        // Evict and reload.
        bf.take_dirty();
        bf.set(7, true);
        let (page, dirty) = bf.evict(0).unwrap();
        assert!(dirty);
        assert!(!bf.get(7));
        bf.insert_page(0, page);
        assert!(bf.get(7));
        assert!(bf.take_dirty().is_empty());
    }

    #[test]
    fn page_edges_do_not_panic() {
        let mut p = Page::new();
        assert!(!p.set(BITS_PER_PAGE as u32, true));
        assert!(!p.get(u32::MAX));
        p.fill(10, 5, true);
        p.fill(40000, 50000, true);
        assert!(p.is_empty());
        assert_eq!(p.count_range(7, 3), 0);
        p.fill(0, u32::MAX, true);
        assert_eq!(p.count_ones(), BITS_PER_PAGE as u32);
        assert_eq!(p.first(false, 0), None);
        assert_eq!(p.last(true, u32::MAX), Some(BITS_PER_PAGE as u32 - 1));
        let mut bf = Bitfield::new();
        bf.set_range(5, 2, true);
        assert_eq!(bf.page_count(), 0);
        assert_eq!(bf.count(9, 3, true), 0);
        // Huge ranges cost only what is in memory.
        bf.set(7, true);
        assert_eq!(bf.count(0, u64::MAX, true), 1);
        bf.set_range(0, u64::MAX, false);
        assert_eq!(bf.count(0, u64::MAX, false), u64::MAX);
    }

    fn model_check(ops: &[(bool, u64, u64)], probes: &[u64]) -> Result<(), TestCaseError> {
        let size = 3 * BITS_PER_PAGE;
        let mut model = vec![false; size as usize];
        let mut bf = Bitfield::new();
        for &(value, a, len) in ops {
            let (s, e) = (a % size, (a % size + len).min(size));
            bf.set_range(s, e, value);
            model[s as usize..e as usize].fill(value);
        }
        for &p in probes {
            let p = p % size;
            prop_assert_eq!(bf.get(p), model[p as usize]);
            let fs = model[p as usize..]
                .iter()
                .position(|&b| b)
                .map(|i| p + i as u64);
            prop_assert_eq!(bf.first_set(p), fs);
            let fu = model[p as usize..]
                .iter()
                .position(|&b| !b)
                .map_or(size, |i| p + i as u64);
            prop_assert_eq!(bf.first_unset(p), fu);
            let ls = model[..=p as usize]
                .iter()
                .rposition(|&b| b)
                .map(|i| i as u64);
            prop_assert_eq!(bf.last_set(p), ls);
            let lu = model[..=p as usize]
                .iter()
                .rposition(|&b| !b)
                .map(|i| i as u64);
            prop_assert_eq!(bf.last_unset(p), lu);
            let end = (p + 70000).min(size);
            let c = model[p as usize..end as usize]
                .iter()
                .filter(|&&b| b)
                .count() as u64;
            prop_assert_eq!(bf.count(p, end, true), c);
            prop_assert_eq!(bf.count(p, end, false), end - p - c);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn behaves_like_a_vec_of_bools(
            ops in proptest::collection::vec((any::<bool>(), any::<u64>(), 0u64..70000), 0..12),
            probes in proptest::collection::vec(any::<u64>(), 1..12),
        ) {
            model_check(&ops, &probes)?;
        }
    }
}
