//! The header: a log's committed head in two alternating, checksummed slots, the first 8 KiB of
//! its metadata file (in format 1, a file of its own with the same bytes).
//!
//! Layout (see `protocol/store.md`): two 4096-byte slots at offsets 0 and 4096. A slot is
//!
//! ```text
//! 0   4  magic "PHhd"
//! 4   1  slot format (1)
//! 5   3  zero
//! 8   8  sequence number, u64le (the commit count; slot = seq % 2)
//! 16  4  payload length n, u32le (n <= 4072)
//! 20  n  payload (below)
//! 20+n 4 CRC-32 (IEEE) of bytes 0 .. 20+n, u32le
//! ```
//!
//! and the payload is `key (32) ‖ flags u32le ‖ fork u64le ‖ length u64le ‖
//! byte_length u64le ‖ tree_hash (32) ‖ signature (varint length + bytes)`. Flags (format 2;
//! format 1 wrote 0): bit 0, the manifest region of the metadata file holds the manifest;
//! bit 1, the log has a secret key file. Other bits are refused.
//!
//! A commit writes the slot *not* holding the newest valid header, so a torn write can only
//! damage the slot being replaced; the newest valid slot wins on open. Each slot is one aligned
//! 4096-byte `pwrite`, which a killed process cannot tear (the page cache takes it whole), and
//! the checksum catches what a power cut tears.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use peerhost_encoding::{DecodeError, Reader, Writer};
use peerhost_ids::Key;

use crate::{Durability, Error, LogLabel};

/// Header flag: the manifest region holds the manifest (written before the header that sets
/// this, so a set flag always finds it whole).
pub(crate) const FLAG_MANIFEST: u32 = 1;
/// Header flag: the log has a secret key file (`<dkey>.key`), so opening it reads one.
pub(crate) const FLAG_KEY: u32 = 2;
const KNOWN_FLAGS: u32 = FLAG_MANIFEST | FLAG_KEY;
/// The largest manifest stored.
pub(crate) const MAX_MANIFEST: usize = 64 * 1024;

/// Size of one header slot, and the alignment of both.
pub(crate) const SLOT_SIZE: usize = 4096;
const MAGIC: [u8; 4] = *b"PHhd";
const SLOT_FORMAT: u8 = 1;
const SLOT_PREFIX: usize = 20;
/// The largest payload a slot holds.
pub(crate) const MAX_PAYLOAD: usize = SLOT_SIZE - SLOT_PREFIX - 4;

/// A log's committed head: what its signature covers, plus the byte length.
///
/// `signature` is stored as given (for a default v11 log, the compact-encoded multisignature; for
/// a compat log, the raw 64 bytes). An empty signature means "not signed": a replica's
/// intermediate state after a fork, or a log that has never been appended to.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// Fork id: incremented by every truncation.
    pub fork: u64,
    /// Number of blocks.
    pub length: u64,
    /// Total bytes of blocks `0..length`.
    pub byte_length: u64,
    /// The Merkle tree hash of the roots of a tree of `length` blocks.
    pub tree_hash: [u8; 32],
    /// The signature over the head, as the log crate encodes it (empty when unsigned).
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("fork", &self.fork)
            .field("length", &self.length)
            .field("byte_length", &self.byte_length)
            .field("tree_hash", &hex::encode(self.tree_hash))
            .field("signature", &hex::encode(&self.signature))
            .finish()
    }
}

/// Everything a header slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) key: Key,
    pub(crate) head: Head,
    /// [`FLAG_MANIFEST`], [`FLAG_KEY`].
    pub(crate) flags: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let h = &self.head;
        let sig_len_prefix = peerhost_encoding::uint_len(h.signature.len() as u64);
        let mut out = vec![0; 32 + 4 + 8 * 3 + 32 + sig_len_prefix + h.signature.len()];
        let mut w = Writer::new(&mut out);
        w.raw(&self.key.0);
        w.uint32(self.flags);
        w.raw(&h.fork.to_le_bytes());
        w.raw(&h.length.to_le_bytes());
        w.raw(&h.byte_length.to_le_bytes());
        w.raw(&h.tree_hash);
        w.buffer(&h.signature);
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let key = Key(r.fixed()?);
        let flags = r.uint32()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::Invalid("unknown header flags"));
        }
        let fork = u64::from_le_bytes(r.fixed()?);
        let length = u64::from_le_bytes(r.fixed()?);
        let byte_length = u64::from_le_bytes(r.fixed()?);
        let tree_hash = r.fixed()?;
        let signature = r.buffer()?.to_vec();
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(r.remaining()));
        }
        Ok(Self {
            key,
            head: Head {
                fork,
                length,
                byte_length,
                tree_hash,
                signature,
            },
            flags,
        })
    }
}

/// Build the 4096-byte slot image for `payload` at sequence `seq`.
pub(crate) fn encode_slot(seq: u64, payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let mut slot = vec![0u8; SLOT_SIZE];
    slot[0..4].copy_from_slice(&MAGIC);
    slot[4] = SLOT_FORMAT;
    slot[8..16].copy_from_slice(&seq.to_le_bytes());
    slot[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let end = SLOT_PREFIX + payload.len();
    slot[SLOT_PREFIX..end].copy_from_slice(payload);
    let crc = crc32fast::hash(&slot[..end]);
    slot[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    Some(slot)
}

/// Check one slot image; `Ok((seq, payload))` when valid, else why not.
pub(crate) fn decode_slot(slot: &[u8]) -> Result<(u64, &[u8]), &'static str> {
    if slot.len() < SLOT_PREFIX + 4 {
        return Err("short slot");
    }
    if slot.iter().all(|&b| b == 0) {
        return Err("empty slot");
    }
    if slot[0..4] != MAGIC {
        return Err("bad magic");
    }
    if slot[4] != SLOT_FORMAT {
        return Err("unknown slot format");
    }
    let mut n = [0; 4];
    n.copy_from_slice(&slot[16..20]);
    let n = u32::from_le_bytes(n) as usize;
    if n > MAX_PAYLOAD || SLOT_PREFIX + n + 4 > slot.len() {
        return Err("payload length out of range");
    }
    let end = SLOT_PREFIX + n;
    let mut crc = [0; 4];
    crc.copy_from_slice(&slot[end..end + 4]);
    if crc32fast::hash(&slot[..end]) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch");
    }
    let mut seq = [0; 8];
    seq.copy_from_slice(&slot[8..16]);
    Ok((u64::from_le_bytes(seq), &slot[SLOT_PREFIX..end]))
}

/// One header slot to write: the commit's sequence number, the slot's offset and its bytes.
#[derive(Debug)]
pub(crate) struct SlotWrite {
    pub(crate) seq: u64,
    pub(crate) at: u64,
    pub(crate) slot: Vec<u8>,
}

/// The two slots of a brand-new log holding `header`: slot 0 zero (invalid), `seq` 1 in
/// slot 1.
pub(crate) fn initial_image(header: &Header, label: &LogLabel) -> Result<Vec<u8>, Error> {
    let payload = header.encode();
    let slot = encode_slot(1, &payload).ok_or_else(|| Error::HeaderTooLarge {
        log: label.clone(),
        size: payload.len(),
        limit: MAX_PAYLOAD,
    })?;
    let mut image = vec![0u8; SLOT_SIZE];
    image.extend_from_slice(&slot);
    Ok(image)
}

/// The manifest region's bytes for `manifest`: its length, its CRC-32, the bytes.
pub(crate) fn manifest_region(manifest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(crate::layout::MANIFEST_PREFIX + manifest.len());
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(manifest).to_le_bytes());
    out.extend_from_slice(manifest);
    out
}

/// The manifest in a region (`region` starts at its prefix and may run past its end); why
/// not when the length or checksum is wrong.
pub(crate) fn decode_manifest(region: &[u8]) -> Result<&[u8], &'static str> {
    let p = crate::layout::MANIFEST_PREFIX;
    if region.len() < p {
        return Err("cut short");
    }
    let mut n = [0; 4];
    n.copy_from_slice(&region[0..4]);
    let n = u32::from_le_bytes(n) as usize;
    if n > MAX_MANIFEST {
        return Err("length out of range");
    }
    let Some(bytes) = region.get(p..p + n) else {
        return Err("cut short");
    };
    let mut crc = [0; 4];
    crc.copy_from_slice(&region[4..8]);
    if crc32fast::hash(bytes) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch");
    }
    Ok(bytes)
}

/// A log's committed header and which slot holds it.
#[derive(Debug)]
pub(crate) struct HeaderState {
    seq: u64,
    current: Header,
}

impl HeaderState {
    /// Pick the newest valid slot of a header image (the first 8 KiB of the file, or less if
    /// the file is shorter). `path` names the file in errors.
    pub(crate) fn decode(image: &[u8], path: &Path) -> Result<Self, Error> {
        let corrupt = |reason: String| Error::CorruptFile {
            what: "log header",
            path: path.to_owned(),
            reason,
        };
        let mut best: Option<(u64, &[u8])> = None;
        let mut why = Vec::new();
        for (i, slot) in image.chunks(SLOT_SIZE).take(2).enumerate() {
            match decode_slot(slot) {
                Ok((seq, payload)) if seq % 2 == i as u64 => {
                    if best.is_none_or(|(s, _)| seq > s) {
                        best = Some((seq, payload));
                    }
                }
                Ok(_) => why.push(format!("slot {i}: sequence in the wrong slot")),
                Err(e) => why.push(format!("slot {i}: {e}")),
            }
        }
        let Some((seq, payload)) = best else {
            let why = if why.is_empty() {
                "file is empty".to_owned()
            } else {
                why.join(", ")
            };
            return Err(corrupt(format!("no valid slot: {why}")));
        };
        let current =
            Header::decode(payload).map_err(|e| corrupt(format!("slot {}: {e}", seq % 2)))?;
        Ok(Self { seq, current })
    }

    /// The newest committed header.
    pub(crate) fn current(&self) -> &Header {
        &self.current
    }

    /// Check that `header` fits a slot, without writing anything.
    pub(crate) fn check_fits(header: &Header, label: &LogLabel) -> Result<(), Error> {
        let size = header.encode().len();
        if size > MAX_PAYLOAD {
            return Err(Error::HeaderTooLarge {
                log: label.clone(),
                size,
                limit: MAX_PAYLOAD,
            });
        }
        Ok(())
    }

    /// The slot write that commits `header` next (the older slot), without writing it: for a
    /// [`crate::Commit`] that writes it elsewhere and hands it back with
    /// [`HeaderState::committed`].
    pub(crate) fn prepare(&self, header: &Header, label: &LogLabel) -> Result<SlotWrite, Error> {
        let seq = self.seq + 1;
        let payload = header.encode();
        let slot = encode_slot(seq, &payload).ok_or_else(|| Error::HeaderTooLarge {
            log: label.clone(),
            size: payload.len(),
            limit: MAX_PAYLOAD,
        })?;
        Ok(SlotWrite {
            seq,
            at: (seq % 2) * SLOT_SIZE as u64,
            slot,
        })
    }

    /// A slot from [`HeaderState::prepare`] was written: `header` is the newest commit.
    pub(crate) fn committed(&mut self, seq: u64, header: Header) {
        self.seq = seq;
        self.current = header;
    }

    /// Commit `header` through `file`: write it into the older slot and, under
    /// [`Durability::Sync`], fsync. This is the store's single commit point.
    pub(crate) fn commit(
        &mut self,
        file: &File,
        path: &Path,
        header: Header,
        durability: Durability,
        label: &LogLabel,
    ) -> Result<(), Error> {
        let SlotWrite { seq, at, slot } = self.prepare(&header, label)?;
        file.write_all_at(&slot, at)
            .map_err(Error::io("write", path))?;
        // Written: this process (and a reopen after a kill) now sees the new header, so our view
        // follows it even if the fsync below fails.
        self.seq = seq;
        self.current = header;
        if durability == Durability::Sync {
            file.sync_data().map_err(Error::io("fsync", path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(length: u64) -> Header {
        Header {
            key: Key([9; 32]),
            head: Head {
                fork: 2,
                length,
                byte_length: length * 10,
                tree_hash: [length as u8; 32],
                signature: vec![1; 68],
            },
            flags: FLAG_MANIFEST,
        }
    }

    #[test]
    fn payload_layout() {
        let h = Header {
            key: Key([0xaa; 32]),
            head: Head {
                fork: 1,
                length: 2,
                byte_length: 3,
                tree_hash: [0xbb; 32],
                signature: vec![0xcc, 0xdd],
            },
            flags: FLAG_MANIFEST | FLAG_KEY,
        };
        let mut want = vec![0xaa; 32]; // key
        want.extend([3, 0, 0, 0]); // flags
        want.extend(1u64.to_le_bytes()); // fork
        want.extend(2u64.to_le_bytes()); // length
        want.extend(3u64.to_le_bytes()); // byte_length
        want.extend([0xbb; 32]); // tree hash
        want.extend([2, 0xcc, 0xdd]); // signature: varint length + bytes
        assert_eq!(h.encode(), want);
        assert_eq!(Header::decode(&want).unwrap(), h);
        want[32] = 4;
        assert!(Header::decode(&want).is_err(), "an unknown flag");
    }

    fn open(p: &Path) -> HeaderState {
        HeaderState::decode(&std::fs::read(p).unwrap(), p).unwrap()
    }

    #[test]
    fn commits_alternate_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta");
        let label = LogLabel::new(Key([9; 32]), None);
        std::fs::write(&p, initial_image(&sample(0), &label).unwrap()).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let mut f = open(&p);
        assert_eq!(f.current(), &sample(0));
        for len in 1..5 {
            f.commit(&file, &p, sample(len), Durability::Sync, &label)
                .unwrap();
            let g = open(&p);
            assert_eq!(g.current(), &sample(len));
            assert_eq!(g.seq, len + 1);
        }
    }

    #[test]
    fn torn_newest_slot_falls_back_to_the_previous_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta");
        let label = LogLabel::new(Key([9; 32]), None);
        std::fs::write(&p, initial_image(&sample(0), &label).unwrap()).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let mut f = open(&p);
        f.commit(&file, &p, sample(1), Durability::Process, &label)
            .unwrap(); // seq 2, slot 0
        f.commit(&file, &p, sample(2), Durability::Process, &label)
            .unwrap(); // seq 3, slot 1
        // Tear slot 1 as a power cut might: its second half never reached the disk.
        let mut image = std::fs::read(&p).unwrap();
        for b in &mut image[SLOT_SIZE + 40..SLOT_SIZE + 200] {
            *b = 0;
        }
        assert_eq!(
            HeaderState::decode(&image, &p).unwrap().current(),
            &sample(1)
        );
        // Both slots garbage: a clear error, no panic.
        for b in &mut image[10..30] {
            *b ^= 0x5a;
        }
        let e = HeaderState::decode(&image, &p).unwrap_err();
        assert!(e.is_corruption(), "{e}");
        assert!(e.to_string().contains("no valid slot"), "{e}");
        // An empty file too.
        assert!(HeaderState::decode(&[], &p).unwrap_err().is_corruption());
    }

    #[test]
    fn manifest_region_roundtrip_and_damage() {
        let r = manifest_region(b"manifest bytes");
        assert_eq!(&r[0..4], &14u32.to_le_bytes());
        assert_eq!(decode_manifest(&r), Ok(&b"manifest bytes"[..]));
        let mut longer = r.clone();
        longer.extend([0; 100]);
        assert_eq!(decode_manifest(&longer), Ok(&b"manifest bytes"[..]));
        assert_eq!(decode_manifest(&r[..10]), Err("cut short"));
        let mut bad = r.clone();
        bad[12] ^= 1;
        assert_eq!(decode_manifest(&bad), Err("checksum mismatch"));
        let mut huge = r;
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_manifest(&huge), Err("length out of range"));
    }

    #[test]
    fn too_large_is_an_error() {
        let label = LogLabel::new(Key([9; 32]), None);
        let mut h = sample(0);
        h.head.signature = vec![0; MAX_PAYLOAD];
        assert!(matches!(
            initial_image(&h, &label),
            Err(Error::HeaderTooLarge { .. })
        ));
        assert!(HeaderState::check_fits(&h, &label).is_err());
        assert!(HeaderState::check_fits(&sample(0), &label).is_ok());
    }

    proptest! {
        #[test]
        fn slot_roundtrip(seq: u64, payload in proptest::collection::vec(any::<u8>(), 0..MAX_PAYLOAD)) {
            let slot = encode_slot(seq, &payload).unwrap();
            prop_assert_eq!(slot.len(), SLOT_SIZE);
            let (s, p) = decode_slot(&slot).unwrap();
            prop_assert_eq!(s, seq);
            prop_assert_eq!(p, &payload[..]);
        }

        #[test]
        fn any_single_corruption_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            at in 0usize..224,
            flip in 1u8..=255,
        ) {
            let mut slot = encode_slot(7, &payload).unwrap();
            let at = at % (SLOT_PREFIX + payload.len() + 4);
            slot[at] ^= flip;
            prop_assert!(decode_slot(&slot).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..SLOT_SIZE)) {
            let _ = decode_slot(&bytes);
            let _ = Header::decode(&bytes);
        }

        #[test]
        fn header_roundtrip(fork: u64, length: u64, byte_length: u64, tree_hash: [u8; 32],
                            signature in proptest::collection::vec(any::<u8>(), 0..300), flags in 0u32..4) {
            let h = Header { key: Key([3; 32]), head: Head { fork, length, byte_length, tree_hash, signature }, flags };
            prop_assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        }
    }
}
