//! Files by their SHA-256 (`GET /v1/blob/{sha256}`, `protocol/gateway.md` §3.4): the bytes of
//! a file of an app log this node holds, found by the hash its asset index gives it.
//!
//! - [`Sha256`]: the name of a blob, parsed from exactly 64 lowercase hex digits (one spelling
//!   per blob, so one URL and one cache entry);
//! - [`BlobIndex`]: hash → where the file lies (log, first block, blocks, size), built by the
//!   node from the app logs' indexes it already holds, replaced per log when that log's head
//!   changes, bounded ([`MAX_LOCATIONS`] in all, [`MAX_FILES_PER_LOG`] per log, [`MAX_COPIES`]
//!   per hash);
//! - [`BlobError`]: why a blob is not served (each a `404` but storage failures).
//!
//! Nothing here needs trust: the client checks the hash of what it gets. The node reads the
//! content from its own verified blocks and checks the hash too before it answers
//! ([`crate::LogSource::blob`]), so a writer whose index lies about a hash gets nothing served.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use peerhost_ids::Key;

use crate::source::SourceError;

/// The media type of a blob answer: the bytes as they are (the client knows what it asked).
pub const BLOB_TYPE: &str = "application/octet-stream";

/// Locations kept in all (about 100 bytes each: at most ~6.5 MB).
pub const MAX_LOCATIONS: usize = 65_536;

/// Files of one log indexed at most (an asset index of 1 MiB holds about 5 000).
pub const MAX_FILES_PER_LOG: usize = 8_192;

/// Logs kept per hash (the community's app and its forks share most files).
pub const MAX_COPIES: usize = 4;

/// The SHA-256 a blob is asked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Exactly 64 lowercase hex digits; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(b, &mut out).ok()?;
        Some(Self(out))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Where a file's content lies: `blocks` chunk entries from `start` in the app log `log`,
/// `size` bytes in all (`protocol/feeds.md`, the assets log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The app log.
    pub log: Key,
    /// Its first block.
    pub start: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// Bytes.
    pub size: u64,
}

/// Why a blob is not served (`protocol/gateway.md` §3.4).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No app log held here lists a file with this hash (or this source serves no blobs).
    #[error("no file with this SHA-256 here")]
    Unknown,
    /// A file with this hash is listed, but its blocks are not all held here (or do not hash
    /// to it).
    #[error("the file's blocks are not all held here")]
    Unavailable,
    /// The file is larger than the gateway serves whole; fetch it as ranges of its app log.
    #[error("the file has {size} bytes: more than this gateway serves whole")]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// The storage failed.
    #[error("storage: {0}")]
    Source(SourceError),
}

impl BlobError {
    /// The short code the JSON error body carries.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN_BLOB",
            Self::Unavailable => "BLOB_UNAVAILABLE",
            Self::TooLarge { .. } => "BLOB_TOO_LARGE",
            Self::Source(_) => "STORAGE",
        }
    }
}

/// What [`BlobIndex::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Indexed {
    /// Files of the log now findable by hash.
    pub files: usize,
    /// Files left out (a cap reached).
    pub dropped: usize,
}

#[derive(Debug, Default)]
struct Inner {
    by_hash: HashMap<Sha256, Vec<Location>>,
    /// Per log: the version indexed (fork, length) and the hashes it added.
    logs: HashMap<Key, ((u64, u64), Vec<Sha256>)>,
    locations: usize,
}

impl Inner {
    fn remove(&mut self, log: &Key) {
        let Some((_, hashes)) = self.logs.remove(log) else {
            return;
        };
        for h in hashes {
            if let Some(v) = self.by_hash.get_mut(&h) {
                let before = v.len();
                v.retain(|l| l.log != *log);
                self.locations -= before - v.len();
                if v.is_empty() {
                    self.by_hash.remove(&h);
                }
            }
        }
    }
}

/// Hash → locations of the files of the app logs a node holds ([module docs](self)).
/// Shared (`Arc`) between the part of the node that follows logs (it calls
/// [`BlobIndex::update`] when an app log's head changes) and the gateway's source (it calls
/// [`BlobIndex::find`]).
#[derive(Debug)]
pub struct BlobIndex {
    inner: RwLock<Inner>,
    max_locations: usize,
}

impl Default for BlobIndex {
    fn default() -> Self {
        Self::new(MAX_LOCATIONS)
    }
}

impl BlobIndex {
    /// An empty index keeping at most `max_locations` locations.
    pub fn new(max_locations: usize) -> Self {
        Self {
            inner: RwLock::default(),
            max_locations,
        }
    }

    /// The version (fork, length) `log` was last indexed at.
    pub fn version(&self, log: &Key) -> Option<(u64, u64)> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.logs.get(log).map(|(v, _)| *v)
    }

    /// Replace what `log` contributes with `files` (its current asset index: hash, first
    /// block, blocks, size), read at `version` (fork, length). Files past the caps are left
    /// out and counted.
    pub fn update(
        &self,
        log: Key,
        version: (u64, u64),
        files: impl IntoIterator<Item = (Sha256, u64, u64, u64)>,
    ) -> Indexed {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.remove(&log);
        let mut out = Indexed::default();
        let mut hashes = Vec::new();
        for (sha, start, blocks, size) in files {
            let at = Location {
                log,
                start,
                blocks,
                size,
            };
            if hashes.len() >= MAX_FILES_PER_LOG || inner.locations >= self.max_locations {
                out.dropped += 1;
                continue;
            }
            let copies = inner.by_hash.entry(sha).or_default();
            if copies.iter().any(|l| l.log == log) {
                // The same content under two paths: one location serves both.
                continue;
            }
            if copies.len() >= MAX_COPIES {
                out.dropped += 1;
                continue;
            }
            copies.push(at);
            inner.locations += 1;
            hashes.push(sha);
            out.files += 1;
        }
        inner.logs.insert(log, (version, hashes));
        out
    }

    /// Forget `log`'s files.
    pub fn remove(&self, log: &Key) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(log);
    }

    /// Where files with this hash lie (at most [`MAX_COPIES`]).
    pub fn find(&self, sha: &Sha256) -> Vec<Location> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.by_hash.get(sha).cloned().unwrap_or_default()
    }

    /// Locations kept.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .locations
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Sha256 {
        Sha256([n; 32])
    }

    fn log(n: u8) -> Key {
        Key([n; 32])
    }

    #[test]
    fn hashes_have_one_spelling() {
        let s = "ab".repeat(32);
        assert_eq!(Sha256::parse(&s), Some(Sha256([0xab; 32])));
        assert_eq!(Sha256::parse(&s).unwrap().to_hex(), s);
        for bad in [
            "",
            &"AB".repeat(32),
            &"ab".repeat(31),
            &"ab".repeat(33),
            &format!("{}g", "a".repeat(63)),
            &format!("{}+", "a".repeat(63)),
            &format!("{}é", "a".repeat(62)),
        ] {
            assert_eq!(Sha256::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_update_replaces_the_logs_files_and_keeps_others() {
        let index = BlobIndex::default();
        let got = index.update(log(1), (0, 5), [(h(1), 0, 2, 100), (h(2), 2, 1, 10)]);
        assert_eq!(
            got,
            Indexed {
                files: 2,
                dropped: 0
            }
        );
        // A fork holds one of the same files.
        index.update(log(2), (0, 3), [(h(2), 0, 1, 10)]);
        assert_eq!(index.find(&h(2)).len(), 2);
        assert_eq!(index.len(), 3);
        assert_eq!(index.version(&log(1)), Some((0, 5)));
        // The app log grew: a new index without file 1.
        index.update(log(1), (0, 9), [(h(2), 5, 1, 10), (h(3), 6, 2, 70)]);
        assert!(index.find(&h(1)).is_empty());
        assert_eq!(
            index.find(&h(3)),
            [Location {
                log: log(1),
                start: 6,
                blocks: 2,
                size: 70
            }]
        );
        let two = index.find(&h(2));
        assert_eq!(two.len(), 2);
        assert!(two.iter().any(|l| l.log == log(1) && l.start == 5));
        assert_eq!(index.len(), 3);
        index.remove(&log(1));
        assert_eq!(index.find(&h(2)).len(), 1);
        assert!(index.find(&h(3)).is_empty());
        assert_eq!(index.len(), 1);
        assert_eq!(index.version(&log(1)), None);
        index.remove(&log(2));
        assert!(index.is_empty());
    }

    #[test]
    fn the_caps_hold() {
        let index = BlobIndex::new(10);
        // One log cannot take more than the whole budget.
        let got = index.update(log(1), (0, 1), (0..20).map(|i| (h(i), i.into(), 1, 1)));
        assert_eq!(
            got,
            Indexed {
                files: 10,
                dropped: 10
            }
        );
        assert_eq!(index.len(), 10);
        // Full: another log gets nothing until room is made.
        assert_eq!(index.update(log(2), (0, 1), [(h(50), 0, 1, 1)]).files, 0);
        index.remove(&log(1));
        assert_eq!(index.update(log(2), (0, 1), [(h(50), 0, 1, 1)]).files, 1);

        // At most MAX_COPIES logs per hash; the same file twice in one log counts once.
        let index = BlobIndex::default();
        for n in 0..=MAX_COPIES as u8 {
            index.update(log(n), (0, 1), [(h(7), 0, 1, 1), (h(7), 3, 1, 1)]);
        }
        assert_eq!(index.find(&h(7)).len(), MAX_COPIES);
        assert_eq!(index.len(), MAX_COPIES);

        // Per log: at most MAX_FILES_PER_LOG.
        let index = BlobIndex::default();
        let many = (0..MAX_FILES_PER_LOG as u32 + 5).map(|i| {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            (Sha256(s), u64::from(i), 1, 1)
        });
        let got = index.update(log(1), (0, 1), many);
        assert_eq!((got.files, got.dropped), (MAX_FILES_PER_LOG, 5));
    }
}
