//! Tree records: one fixed 64-byte record per flat-tree index, in the metadata file.
//!
//! ```text
//! 0   8   size, u64le
//! 8   32  hash
//! 40  8   flat index of this record, u64le (catches a record written at the wrong place)
//! 48  12  zero (reserved)
//! 60  4   CRC-32 (IEEE) of bytes 0..60, u32le
//! ```
//!
//! Record `i` lives at `layout::record_at(i)` (in format 1 it was byte `64 * i` of its own
//! file; the bytes are the same). 64 divides both 512 (a sector) and 4096 (a page), so a
//! record never straddles either: a killed process cannot tear one (its `pwrite` reaches the page
//! cache page by page) and a power cut tears one only on a disk without atomic sector writes,
//! which the checksum then reports. All-zero bytes (a hole, or past the end of the file) read as
//! "absent"; any other record must pass its checksum, index and reserved-bytes checks, or it is
//! reported as corrupt — never returned as a node.
//!
//! Reads go through the store's page cache (a page holds 64 neighbouring records, which proofs
//! and `missing_nodes` read next); writes are coalesced into runs of contiguous records of at
//! most [`MAX_RUN`] records per `pwrite`.

use std::fs::File;

use peerhost_log::Node;

use crate::Error;
use crate::flat;
use crate::layout::{self, PAGE, RECORD};
use crate::meta::MetaFile;

/// Most records written by one `pwrite` (64 KiB).
const MAX_RUN: usize = 1024;

/// Why a record could not be read as a node.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file could not be read.
    Io(Error),
    /// The bytes are not a valid record.
    Corrupt(&'static str),
}

/// Encode `node` as its record.
pub(crate) fn encode_record(node: &Node) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0..8].copy_from_slice(&node.size.to_le_bytes());
    r[8..40].copy_from_slice(&node.hash);
    r[40..48].copy_from_slice(&node.index.to_le_bytes());
    let crc = crc32fast::hash(&r[..60]);
    r[60..64].copy_from_slice(&crc.to_le_bytes());
    r
}

/// Decode the record stored for flat index `index`: `Ok(None)` for an all-zero record.
pub(crate) fn decode_record(index: u64, r: &[u8; RECORD]) -> Result<Option<Node>, &'static str> {
    if r.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let mut crc = [0; 4];
    crc.copy_from_slice(&r[60..64]);
    if crc32fast::hash(&r[..60]) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch");
    }
    if r[48..60].iter().any(|&b| b != 0) {
        return Err("unknown record format");
    }
    let mut at = [0; 8];
    at.copy_from_slice(&r[40..48]);
    if u64::from_le_bytes(at) != index {
        return Err("record belongs to another index");
    }
    let mut size = [0; 8];
    size.copy_from_slice(&r[0..8]);
    let mut hash = [0; 32];
    hash.copy_from_slice(&r[8..40]);
    Ok(Some(Node {
        index,
        size: u64::from_le_bytes(size),
        hash,
    }))
}

/// The record at `index` as stored, whatever length the log has.
pub(crate) fn read(meta: &MetaFile, index: u64) -> Result<Option<Node>, ReadError> {
    let Some(at) = layout::record_at(index) else {
        return Ok(None);
    };
    let page = meta.page(at / PAGE as u64).map_err(ReadError::Io)?;
    decode_in(&page, index, at).map_err(ReadError::Corrupt)
}

fn decode_in(page: &[u8; PAGE], index: u64, at: u64) -> Result<Option<Node>, &'static str> {
    let within = (at % PAGE as u64) as usize;
    let mut rec = [0u8; RECORD];
    rec.copy_from_slice(&page[within..within + RECORD]);
    decode_record(index, &rec)
}

/// Whether the cache knows record `node.index` to hold exactly `node` (no I/O). The cache
/// mirrors the file (writes update it, truncations and aborts forget it), so rewriting such a
/// node would change no byte.
pub(crate) fn holds(meta: &MetaFile, node: &Node) -> bool {
    let Some(at) = layout::record_at(node.index) else {
        return false;
    };
    meta.cached_page(at / PAGE as u64)
        .is_some_and(|p| matches!(decode_in(&p, node.index, at), Ok(Some(n)) if n == *node))
}

/// `nodes` (sorted by index, no duplicates) as the `pwrite`s that store them: runs of records
/// contiguous in the file, at most [`MAX_RUN`] each, with their positions.
pub(crate) fn runs(nodes: &[Node]) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for n in nodes {
        let at = layout::record_at(n.index).ok_or_else(|| {
            Error::io("write", "(tree)")(std::io::Error::other("tree index out of range"))
        })?;
        if let Some((start, buf)) = out.last_mut() {
            if *start + buf.len() as u64 == at && buf.len() < MAX_RUN * RECORD {
                buf.extend_from_slice(&encode_record(n));
                continue;
            }
        }
        let mut buf = Vec::with_capacity(RECORD * 8);
        buf.extend_from_slice(&encode_record(n));
        out.push((at, buf));
    }
    Ok(out)
}

/// Write `nodes` (sorted by index, no duplicates) through `file`; updates the cache.
pub(crate) fn write(meta: &MetaFile, file: &File, nodes: &[Node]) -> Result<(), Error> {
    for (at, buf) in runs(nodes)? {
        meta.write(file, at, &buf)?;
    }
    Ok(())
}

/// Erase the records below the cut (`layout::cut_at`) that are not nodes of a tree of
/// `length` blocks: the lower records whose subtree reaches past block `length - 1` (one per
/// depth at most). Idempotent.
pub(crate) fn clean_tail(meta: &mut MetaFile, file: &File, length: u64) -> Result<(), Error> {
    let keep = length.saturating_mul(2).saturating_sub(1);
    for depth in 1..63 {
        let Some(i) = flat::index(depth, length >> depth) else {
            break;
        };
        if i >= keep {
            continue;
        }
        // Node i holds block `length`, so it is not a node of the shorter tree.
        match read(meta, i) {
            Ok(None) => {}
            Ok(Some(_)) | Err(ReadError::Corrupt(_)) => {
                if let Some(at) = layout::record_at(i) {
                    meta.write(file, at, &[0; RECORD])?;
                }
            }
            Err(ReadError::Io(e)) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(index: u64) -> Node {
        Node {
            index,
            size: index * 3 + 1,
            hash: [index as u8 ^ 0x5a; 32],
        }
    }

    #[test]
    fn record_layout() {
        let r = encode_record(&Node {
            index: 0x0102,
            size: 0x0304,
            hash: [0xee; 32],
        });
        assert_eq!(&r[0..8], &[0x04, 0x03, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[8..40], &[0xee; 32]);
        assert_eq!(&r[40..48], &[0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[48..60], &[0; 12]);
        assert_eq!(r[60..64], crc32fast::hash(&r[..60]).to_le_bytes());
    }

    fn bytes_of(meta: &MetaFile) -> Vec<u8> {
        std::fs::read(meta.path()).unwrap()
    }

    #[test]
    fn holes_are_absent_and_records_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::meta::test_meta(dir.path(), 16);
        let f = t.file().unwrap();
        write(&t, &f, &[node(0), node(1), node(2), node(9), node(70_000)]).unwrap();
        let mut fresh = crate::meta::test_meta(dir.path(), 16);
        fresh.forget();
        for i in [0, 1, 2, 9, 70_000] {
            assert_eq!(read(&fresh, i).unwrap(), Some(node(i)));
        }
        for i in [3, 4, 8, 10, 1000, 65_536, u64::MAX] {
            assert_eq!(read(&fresh, i).unwrap(), None, "index {i}");
        }
        // Record i is at its layout position, bytes as in format 1.
        let bytes = bytes_of(&t);
        let at = layout::record_at(9).unwrap() as usize;
        assert_eq!(bytes[at..at + RECORD], encode_record(&node(9)));
    }

    #[test]
    fn torn_and_misplaced_records_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = crate::meta::test_meta(dir.path(), 16);
        let f = t.file().unwrap();
        write(&t, &f, &[node(0), node(1), node(2)]).unwrap();
        let at = |i| layout::record_at(i).unwrap();
        // Torn: the second half of record 1 never landed.
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[0; 32], at(1) + 32).unwrap();
        // Misplaced: record 0's bytes written at index 2.
        f.write_all_at(&encode_record(&node(0)), at(2)).unwrap();
        t.forget();
        assert_eq!(read(&t, 0).unwrap(), Some(node(0)));
        assert!(matches!(
            read(&t, 1),
            Err(ReadError::Corrupt("checksum mismatch"))
        ));
        assert!(matches!(
            read(&t, 2),
            Err(ReadError::Corrupt("record belongs to another index"))
        ));
    }

    /// What the store does to the tree on a truncation to `length`: cut the file, then erase
    /// the lower records.
    fn clean(t: &mut MetaFile, length: u64) {
        let f = t.file().unwrap();
        t.cut_for(&f, length).unwrap();
        clean_tail(t, &f, length).unwrap();
    }

    #[test]
    fn clean_tail_keeps_exactly_the_nodes_of_the_shorter_tree() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = crate::meta::test_meta(dir.path(), 2);
        let f = t.file().unwrap();
        // A full tree of 16 blocks: indices 0..=30.
        let all: Vec<Node> = (0..31).map(node).collect();
        write(&t, &f, &all).unwrap();
        for length in (0..=16).rev() {
            clean(&mut t, length);
            for i in 0..40 {
                let want = flat::within(i, length).then(|| node(i));
                assert_eq!(read(&t, i).unwrap(), want, "length {length} index {i}");
            }
        }
    }

    #[test]
    fn clean_tail_erases_what_the_log_crate_calls_dead() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = crate::meta::test_meta(dir.path(), 2);
        let f = t.file().unwrap();
        for old in (1..34u64).chain([32_767, 32_769]) {
            let lens: Vec<u64> = if old > 100 {
                vec![0, 1, 32_766, 32_767, 32_768, old]
            } else {
                (0..=old).collect()
            };
            for len in lens.into_iter().filter(|&l| l <= old) {
                let full: Vec<Node> = (0..2 * old - 1)
                    .filter(|&i| flat::within(i, old))
                    .map(node)
                    .collect();
                clean(&mut t, 0);
                write(&t, &f, &full).unwrap();
                clean(&mut t, len);
                let dead = peerhost_log::Truncation::between(len, old);
                for n in &full {
                    let erased = dead.nodes.contains(&n.index) || dead.parents.contains(&n.index);
                    assert_eq!(
                        read(&t, n.index).unwrap().is_none(),
                        erased,
                        "old {old} len {len} node {}",
                        n.index
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_damage_is_detected_or_reads_absent(index in 0u64..1 << 40, at in 0usize..RECORD, flip in 1u8..=255) {
            let mut r = encode_record(&node(index));
            r[at] ^= flip;
            match decode_record(index, &r) {
                Err(_) => {}
                Ok(got) => prop_assert!(false, "damaged record decoded as {got:?}"),
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::array::uniform32(any::<u8>()), index: u64) {
            let mut r = [0u8; RECORD];
            r[..32].copy_from_slice(&bytes);
            r[32..].copy_from_slice(&bytes);
            let _ = decode_record(index, &r);
        }
    }
}
