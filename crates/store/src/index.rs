//! The block index: each held block's byte offset in the data file, so that reading block `i`
//! costs one entry instead of a walk over the tree nodes left of it.
//!
//! ```text
//! 0   8  byte offset of the block in the data file, u64le
//! 8   4  CRC-32 (IEEE) of (u64le block index ‖ u64le offset), u32le
//! 12  4  zero
//! ```
//!
//! Entry `b` lives at `layout::entry_at(b)`. An entry is a *hint*: the offset is a function of
//! the tree (the sizes of the full roots left of the block), which stays the authority. A
//! reader uses an entry only when its checksum matches the block it is read for, its reserved
//! bytes are zero and the block fits inside the committed byte length; anything else (a
//! hole, a torn or stale write) is "no entry" and the offset is computed from the tree as
//! format 1 always did. An entry is written with its block's bytes, before the bitfield bit
//! that makes the block visible, and erased with it past a truncation.

use crate::layout::{self, ENTRY, PAGE};
use crate::meta::MetaFile;
use crate::{BlockWrite, Error};

/// Most bytes of entries written by one `pwrite`.
const MAX_RUN: usize = 64 * 1024;

/// Encode block `block`'s entry for byte offset `offset`.
pub(crate) fn encode(block: u64, offset: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[0..8].copy_from_slice(&offset.to_le_bytes());
    e[8..12].copy_from_slice(&checksum(block, offset).to_le_bytes());
    e
}

fn checksum(block: u64, offset: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&block.to_le_bytes());
    h.update(&offset.to_le_bytes());
    h.finalize()
}

/// The offset an entry holds for block `block`, if it is a valid entry for that block.
pub(crate) fn decode(block: u64, e: &[u8]) -> Option<u64> {
    let e: &[u8; ENTRY] = e.try_into().ok()?;
    let mut off = [0; 8];
    off.copy_from_slice(&e[0..8]);
    let offset = u64::from_le_bytes(off);
    let mut crc = [0; 4];
    crc.copy_from_slice(&e[8..12]);
    (e[12..16] == [0; 4] && u32::from_le_bytes(crc) == checksum(block, offset)).then_some(offset)
}

/// Block `block`'s offset from its entry, if the entry is valid.
pub(crate) fn read(meta: &MetaFile, block: u64) -> Result<Option<u64>, Error> {
    let Some(at) = layout::entry_at(block) else {
        return Ok(None);
    };
    let page = meta.page(at / PAGE as u64)?;
    let within = (at % PAGE as u64) as usize;
    Ok(decode(block, &page[within..within + ENTRY]))
}

/// The entries of `blocks` (sorted by index) as the `pwrite`s that store them: runs of
/// entries contiguous in the file.
pub(crate) fn runs(blocks: &[BlockWrite]) -> Vec<(u64, Vec<u8>)> {
    runs_of(blocks.iter().map(|b| (b.index, b.offset)))
}

/// [`runs`] for `(block, offset)` pairs sorted by block.
pub(crate) fn runs_of(entries: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for (block, offset) in entries {
        let Some(at) = layout::entry_at(block) else {
            continue;
        };
        let e = encode(block, offset);
        if let Some((start, buf)) = out.last_mut() {
            if *start + buf.len() as u64 == at && buf.len() < MAX_RUN {
                buf.extend_from_slice(&e);
                continue;
            }
        }
        out.push((at, e.to_vec()));
    }
    out
}

/// Erase the entries of blocks `length ..` that lie before the metadata file's cut for a log
/// of `length` blocks (those of the chunk holding block `length`; later chunks are cut).
pub(crate) fn clean_tail(
    meta: &mut MetaFile,
    file: &std::fs::File,
    length: u64,
) -> Result<(), Error> {
    let (Some(from), Some(end), Some(cut)) = (
        layout::entry_at(length),
        layout::index_end(length),
        layout::cut_at(length),
    ) else {
        return Ok(());
    };
    // Nothing of this chunk's index survives when the cut is at or before its start.
    if cut <= from {
        return Ok(());
    }
    meta.zero_range(file, from, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_and_roundtrip() {
        let e = encode(7, 0x0102);
        assert_eq!(&e[0..8], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&e[12..16], &[0; 4]);
        assert_eq!(decode(7, &e), Some(0x0102));
        assert_eq!(decode(8, &e), None, "another block's entry");
        assert_eq!(decode(7, &[0; ENTRY]), None, "a hole");
        // An entry for block 0 at offset 0 is not all zero (its checksum is not).
        assert_ne!(encode(0, 0), [0; ENTRY]);
    }

    #[test]
    fn runs_follow_the_file() {
        let bw = |index, offset| BlockWrite {
            index,
            offset,
            value: Vec::new(),
        };
        let r = runs(&[bw(0, 0), bw(1, 5), bw(3, 9), bw(32_767, 1), bw(32_768, 2)]);
        let shape: Vec<(u64, usize)> = r.iter().map(|(a, b)| (*a, b.len())).collect();
        assert_eq!(
            shape,
            vec![
                (layout::entry_at(0).unwrap(), 32),
                (layout::entry_at(3).unwrap(), 16),
                (layout::entry_at(32_767).unwrap(), 16),
                (layout::entry_at(32_768).unwrap(), 16),
            ]
        );
    }

    proptest! {
        #[test]
        fn any_damage_is_refused(block: u64, offset: u64, at in 0usize..ENTRY, flip in 1u8..=255) {
            let mut e = encode(block, offset);
            e[at] ^= flip;
            prop_assert_eq!(decode(block, &e), None);
        }
    }
}
