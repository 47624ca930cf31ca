//! Where everything of a log lives in its metadata file (`logs/<dkey>.meta`, format 2).
//!
//! ```text
//! 0                 8192       header: two 4096-byte slots (`header.rs`)
//! 8192              8 + n      manifest: u32le n, u32le CRC-32 of the bytes, the n bytes (n <= 64 KiB)
//! 131072 + c·CHUNK  CHUNK      chunk c, for blocks 32768·c .. 32768·(c+1):
//!   +0              4096         bitfield page c (one bit per block)
//!   +4096           32768·16     block index: entry j = the byte offset of block 32768·c + j
//!   +528384         65536·64     tree records 65536·c .. 65536·(c+1) (flat-tree indices)
//! ```
//!
//! The chunks interleave the three things that grow with the log so that one file holds them
//! all, each at a position computed from its index alone; the file is sparse, so a log of 20
//! blocks uses a few 4 KiB file-system blocks of its first chunk. Every record and entry size
//! divides 4096, so none straddles a page. All arithmetic is checked: an index too large for a
//! position is `None` ("no such thing"), never a wrong position.

/// The unit the metadata file is read, cached and written in (bitfield pages, header slots).
pub(crate) const PAGE: usize = 4096;
/// Where the manifest's prefix is.
pub(crate) const MANIFEST_AT: u64 = 8192;
/// Bytes before the manifest itself: its length and its CRC-32.
pub(crate) const MANIFEST_PREFIX: usize = 8;
/// Where chunk 0 starts.
pub(crate) const CHUNKS_AT: u64 = 128 * 1024;
/// Blocks per chunk: one bitfield page's worth.
pub(crate) const CHUNK_BLOCKS: u64 = PAGE as u64 * 8;
/// Bytes per block index entry.
pub(crate) const ENTRY: usize = 16;
/// Bytes per tree record.
pub(crate) const RECORD: usize = 64;
/// Offset of the block index inside a chunk.
const INDEX_IN_CHUNK: u64 = PAGE as u64;
/// Offset of the tree records inside a chunk.
const TREE_IN_CHUNK: u64 = INDEX_IN_CHUNK + CHUNK_BLOCKS * ENTRY as u64;
/// Tree records per chunk: every flat index in `2·32768·c .. 2·32768·(c+1)`.
const CHUNK_RECORDS: u64 = 2 * CHUNK_BLOCKS;
/// Bytes per chunk (4.5 MiB of address space; only what is written takes disk space).
pub(crate) const CHUNK_SIZE: u64 = TREE_IN_CHUNK + CHUNK_RECORDS * RECORD as u64;

fn chunk_at(chunk: u64) -> Option<u64> {
    chunk.checked_mul(CHUNK_SIZE)?.checked_add(CHUNKS_AT)
}

/// Position of bitfield page `page` (blocks `32768·page ..`).
pub(crate) fn bitfield_page_at(page: u64) -> Option<u64> {
    chunk_at(page)
}

/// Position of block `block`'s index entry.
pub(crate) fn entry_at(block: u64) -> Option<u64> {
    let within = (block % CHUNK_BLOCKS) * ENTRY as u64;
    Some(chunk_at(block / CHUNK_BLOCKS)? + INDEX_IN_CHUNK + within)
}

/// Position of tree record `index` (flat-tree index).
pub(crate) fn record_at(index: u64) -> Option<u64> {
    let within = (index % CHUNK_RECORDS) * RECORD as u64;
    Some(chunk_at(index / CHUNK_RECORDS)? + TREE_IN_CHUNK + within)
}

/// Where the index region of the chunk holding block `block` ends.
pub(crate) fn index_end(block: u64) -> Option<u64> {
    Some(chunk_at(block / CHUNK_BLOCKS)? + TREE_IN_CHUNK)
}

/// The length the metadata file is cut to for a log of `length` blocks: everything of a
/// longer log past it is gone (tree records `>= 2·length − 1`, every later chunk), and what
/// lies before it in the last chunk (bitfield bits and index entries of blocks `>= length`)
/// is cleared in place (`meta.rs`, `clean_tail`). `None` when not representable.
pub(crate) fn cut_at(length: u64) -> Option<u64> {
    match length {
        0 => Some(CHUNKS_AT),
        _ => record_at(length.checked_mul(2)? - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(CHUNK_SIZE, 4096 + 524_288 + 4_194_304);
        assert_eq!(CHUNK_SIZE % PAGE as u64, 0);
        assert_eq!(bitfield_page_at(0), Some(CHUNKS_AT));
        assert_eq!(entry_at(0), Some(CHUNKS_AT + 4096));
        assert_eq!(entry_at(1), Some(CHUNKS_AT + 4096 + 16));
        assert_eq!(record_at(0), Some(CHUNKS_AT + 528_384));
        assert_eq!(record_at(65_535), Some(CHUNKS_AT + CHUNK_SIZE - 64));
        assert_eq!(record_at(65_536), Some(CHUNKS_AT + CHUNK_SIZE + 528_384));
        assert_eq!(entry_at(32_768), Some(CHUNKS_AT + CHUNK_SIZE + 4096));
        assert_eq!(bitfield_page_at(1), Some(CHUNKS_AT + CHUNK_SIZE));
        assert_eq!(index_end(5), record_at(0));
        assert_eq!(record_at(u64::MAX), None);
        assert_eq!(entry_at(u64::MAX), None);
        // A 53-bit log (the JS maximum) is representable.
        assert!(record_at((1 << 54) - 2).is_some());
    }

    #[test]
    fn nothing_overlaps_and_records_never_straddle_a_page() {
        for c in 0..3u64 {
            let bits = bitfield_page_at(c).unwrap();
            let first_entry = entry_at(c * CHUNK_BLOCKS).unwrap();
            let last_entry = entry_at((c + 1) * CHUNK_BLOCKS - 1).unwrap();
            let first_record = record_at(c * CHUNK_RECORDS).unwrap();
            let last_record = record_at((c + 1) * CHUNK_RECORDS - 1).unwrap();
            assert_eq!(bits + PAGE as u64, first_entry);
            assert_eq!(last_entry + ENTRY as u64, first_record);
            assert_eq!(
                last_record + RECORD as u64,
                bitfield_page_at(c + 1).unwrap()
            );
        }
        for i in [0u64, 63, 64, 65_535, 65_536, 1 << 40] {
            let at = record_at(i).unwrap();
            assert_eq!(
                at % PAGE as u64 / RECORD as u64 * RECORD as u64,
                at % PAGE as u64
            );
            assert!(at % PAGE as u64 + RECORD as u64 <= PAGE as u64);
        }
    }

    #[test]
    fn the_cut_keeps_exactly_the_records_of_the_shorter_tree() {
        assert_eq!(cut_at(0), Some(CHUNKS_AT));
        for length in [1u64, 2, 3, 32_767, 32_768, 32_769, 65_536] {
            let cut = cut_at(length).unwrap();
            assert_eq!(record_at(2 * length - 2).unwrap() + RECORD as u64, cut);
            // The block index and bitfield page of block `length - 1` lie before the cut.
            assert!(entry_at(length - 1).unwrap() < cut);
            assert!(bitfield_page_at((length - 1) / CHUNK_BLOCKS).unwrap() < cut);
        }
    }
}
