//! The `tree` file: one fixed 64-byte record per flat-tree index.
//!
//! ```text
//! 0   8   size, u64le
//! 8   32  hash
//! 40  8   flat index of this record, u64le (catches a record written at the wrong place)
//! 48  12  zero (reserved)
//! 60  4   CRC-32 (IEEE) of bytes 0..60, u32le
//! ```
//!
//! Record `i` lives at byte `64 * i`. 64 divides both 512 (a sector) and 4096 (a page), so a
//! record never straddles either: a killed process cannot tear one (its `pwrite` reaches the page
//! cache page by page) and a power cut tears one only on a disk without atomic sector writes,
//! which the checksum then reports. All-zero bytes (a hole, or past the end of the file) read as
//! "absent"; any other record must pass its checksum, index and reserved-bytes checks, or it is
//! reported as corrupt — never returned as a node.
//!
//! Reads go through a bounded [`Cache`]; writes are coalesced into runs of contiguous records of
//! at most [`MAX_RUN`] records per `pwrite`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use peerhost_log::Node;

use crate::Error;
use crate::cache::Cache;
use crate::flat;
use crate::fsutil::{open_rw, read_full_at};

/// Bytes per tree record.
pub(crate) const RECORD: usize = 64;
/// Most records written by one `pwrite` (64 KiB).
const MAX_RUN: usize = 1024;
/// Records read by one `pread` on a cache miss (one 4 KiB page).
const PAGE_RECORDS: u64 = 64;

/// Why a record could not be read as a node.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The OS failed.
    Io(std::io::Error),
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

/// Byte offset of record `index`, if representable.
fn record_offset(index: u64) -> Option<u64> {
    index.checked_mul(RECORD as u64)
}

/// The open tree file with its read cache.
#[derive(Debug)]
pub(crate) struct TreeFile {
    file: Arc<File>,
    path: PathBuf,
    /// Raw (unmasked) records by index; `None` caches "absent".
    cache: Cache<u64, Option<Node>>,
}

impl TreeFile {
    pub(crate) fn open(path: &Path, cache_cap: usize) -> Result<Self, Error> {
        Ok(Self {
            file: Arc::new(open_rw(path)?),
            path: path.to_owned(),
            cache: Cache::new(cache_cap),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The record at `index` as stored, whatever length the log has.
    ///
    /// A miss reads the whole 4 KiB page of 64 records around it and caches every record of
    /// it that decodes: proofs and `missing_nodes` walk neighbouring indices (a replica or a
    /// peer going through the log in order), so one `pread` serves the next 31 blocks.
    pub(crate) fn read(&mut self, index: u64) -> Result<Option<Node>, ReadError> {
        if let Some(n) = self.cache.get(&index) {
            return Ok(n);
        }
        let first = index - index % PAGE_RECORDS;
        let Some(at) = record_offset(first) else {
            return Ok(None);
        };
        let mut page = [0u8; PAGE_RECORDS as usize * RECORD];
        let n = read_full_at(&self.file, &mut page, at).map_err(ReadError::Io)?;
        let mut wanted = None;
        for (k, r) in page.chunks_exact(RECORD).enumerate() {
            let i = first + k as u64;
            let end = k * RECORD + RECORD;
            let node = if n < end {
                // Past the end (or a record cut short by a truncation: a power cut during
                // set_len cannot leave a partial record, since we only ever cut at record
                // boundaries).
                if r[..n.saturating_sub(k * RECORD)].iter().any(|&b| b != 0) {
                    Err("record cut short")
                } else {
                    Ok(None)
                }
            } else {
                let mut rec = [0u8; RECORD];
                rec.copy_from_slice(r);
                decode_record(i, &rec)
            };
            if i == index {
                wanted = Some(node);
            } else if let Ok(node) = node {
                // Only for an index not cached yet: a cached record is never older than the
                // file, and re-inserting would churn the cache's generations.
                if self.cache.peek(&i).is_none() {
                    self.cache.insert(i, node);
                }
            }
        }
        let node = wanted.unwrap_or(Ok(None)).map_err(ReadError::Corrupt)?;
        self.cache.insert(index, node);
        Ok(node)
    }

    /// Whether the cache knows record `node.index` to hold exactly `node` (no I/O). The cache
    /// mirrors the file (writes update it, truncations and aborts clear it), so rewriting such
    /// a node would change no byte.
    pub(crate) fn holds(&self, node: &Node) -> bool {
        matches!(self.cache.peek(&node.index), Some(Some(n)) if n == node)
    }

    /// Write `nodes` (sorted by index, no duplicates) in coalesced runs; updates the cache.
    pub(crate) fn write(&mut self, nodes: &[Node]) -> Result<(), Error> {
        for (at, buf) in self.runs(nodes)? {
            self.file
                .write_all_at(&buf, at)
                .map_err(Error::io("write", &self.path))?;
        }
        self.cache_written(nodes);
        Ok(())
    }

    /// `nodes` (sorted by index, no duplicates) as the `pwrite`s that store them: runs of
    /// contiguous records, at most [`MAX_RUN`] each, with their byte offsets.
    pub(crate) fn runs(&self, nodes: &[Node]) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < nodes.len() {
            let start = nodes[i].index;
            let mut buf = Vec::with_capacity(RECORD * (nodes.len() - i).min(MAX_RUN));
            let mut j = i;
            while j < nodes.len() && j - i < MAX_RUN && nodes[j].index == start + (j - i) as u64 {
                buf.extend_from_slice(&encode_record(&nodes[j]));
                j += 1;
            }
            let at = record_offset(start).ok_or_else(|| {
                Error::io("write", &self.path)(std::io::Error::other("tree index out of range"))
            })?;
            out.push((at, buf));
            i = j;
        }
        Ok(out)
    }

    /// `nodes` are in the file now (written by [`Self::write`] or a commit job): cache them.
    pub(crate) fn cache_written(&mut self, nodes: &[Node]) {
        for n in nodes {
            self.cache.insert(n.index, Some(*n));
        }
    }

    /// The open file, for a commit job.
    pub(crate) fn handle(&self) -> (Arc<File>, PathBuf) {
        (self.file.clone(), self.path.clone())
    }

    /// Make record `index` absent (all zeros), if the file reaches it.
    fn zero(&mut self, index: u64) -> Result<(), Error> {
        self.cache.remove(&index);
        if let Some(at) = record_offset(index) {
            self.file
                .write_all_at(&[0; RECORD], at)
                .map_err(Error::io("write", &self.path))?;
        }
        Ok(())
    }

    /// Remove every record that is not a node of a tree of `length` blocks: cut the file after
    /// the last index such a tree can use (`2 * length - 2`) and zero the few lower records whose
    /// subtree reaches past block `length - 1` (one per depth at most). Idempotent.
    pub(crate) fn clean_tail(&mut self, length: u64) -> Result<(), Error> {
        let keep = length.saturating_mul(2).saturating_sub(1);
        let len = self
            .file
            .metadata()
            .map_err(Error::io("stat", &self.path))?
            .len();
        let keep_bytes = keep.saturating_mul(RECORD as u64);
        if len > keep_bytes {
            self.file
                .set_len(keep_bytes)
                .map_err(Error::io("truncate", &self.path))?;
            self.cache.clear();
        }
        for depth in 1..63 {
            let Some(i) = flat::index(depth, length >> depth) else {
                break;
            };
            if i >= keep {
                continue;
            }
            // Node i holds block `length`, so it is not a node of the shorter tree.
            match self.read(i) {
                Ok(None) => {}
                Ok(Some(_)) | Err(ReadError::Corrupt(_)) => self.zero(i)?,
                Err(ReadError::Io(e)) => return Err(Error::io("read", &self.path)(e)),
            }
        }
        Ok(())
    }

    /// fsync the file's data.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        self.file
            .sync_data()
            .map_err(Error::io("fsync", &self.path))
    }

    /// Drop all cached records (after an aborted transaction).
    pub(crate) fn forget(&mut self) {
        self.cache.clear();
    }
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

    #[test]
    fn holes_are_absent_and_records_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TreeFile::open(&dir.path().join("tree"), 16).unwrap();
        t.write(&[node(0), node(1), node(2), node(9)]).unwrap();
        let mut fresh = TreeFile::open(&dir.path().join("tree"), 16).unwrap();
        for i in [0, 1, 2, 9] {
            assert_eq!(fresh.read(i).unwrap(), Some(node(i)));
        }
        for i in [3, 4, 8, 10, 1000, u64::MAX] {
            assert_eq!(fresh.read(i).unwrap(), None, "index {i}");
        }
    }

    #[test]
    fn torn_and_misplaced_records_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tree");
        let mut t = TreeFile::open(&p, 16).unwrap();
        t.write(&[node(0), node(1), node(2)]).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        // Torn: the second half of record 1 never landed.
        bytes[RECORD + 32..2 * RECORD].fill(0);
        // Misplaced: record 0's bytes written at index 2.
        let r0 = bytes[..RECORD].to_vec();
        bytes[2 * RECORD..3 * RECORD].copy_from_slice(&r0);
        std::fs::write(&p, &bytes).unwrap();
        let mut t = TreeFile::open(&p, 16).unwrap();
        assert_eq!(t.read(0).unwrap(), Some(node(0)));
        assert!(matches!(
            t.read(1),
            Err(ReadError::Corrupt("checksum mismatch"))
        ));
        assert!(matches!(
            t.read(2),
            Err(ReadError::Corrupt("record belongs to another index"))
        ));
    }

    #[test]
    fn clean_tail_keeps_exactly_the_nodes_of_the_shorter_tree() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TreeFile::open(&dir.path().join("tree"), 8).unwrap();
        // A full tree of 16 blocks: indices 0..=30.
        let all: Vec<Node> = (0..31).map(node).collect();
        t.write(&all).unwrap();
        for length in (0..=16).rev() {
            t.clean_tail(length).unwrap();
            for i in 0..40 {
                let want = flat::within(i, length).then(|| node(i));
                assert_eq!(t.read(i).unwrap(), want, "length {length} index {i}");
            }
        }
    }

    #[test]
    fn clean_tail_erases_what_the_log_crate_calls_dead() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TreeFile::open(&dir.path().join("tree"), 8).unwrap();
        for old in 1..34u64 {
            for len in 0..=old {
                let full: Vec<Node> = (0..2 * old - 1)
                    .filter(|&i| flat::within(i, old))
                    .map(node)
                    .collect();
                t.clean_tail(0).unwrap();
                t.write(&full).unwrap();
                t.clean_tail(len).unwrap();
                let dead = peerhost_log::Truncation::between(len, old);
                for n in &full {
                    let erased = dead.nodes.contains(&n.index) || dead.parents.contains(&n.index);
                    assert_eq!(
                        t.read(n.index).unwrap().is_none(),
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
