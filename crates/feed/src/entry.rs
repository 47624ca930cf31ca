//! [`Entry`]: one block of a community log, its codec, its rules and its limits.

use prost::Message as _;

use crate::pb;
use crate::unknown::{self, Unknown, WireError};

pub use pb::delete::Reason;
pub use pb::entry::Kind;
pub use pb::{Asset, AssetIndex, Author, Chunk, Comment, Delete, Descriptor, Edit, Post, Votes};

/// The entry format version this crate writes and reads (`Entry.version`).
pub const VERSION: u32 = 1;
/// The largest block that is an entry (1 MiB): larger blocks are rejected unread.
pub const MAX_ENTRY: usize = 1 << 20;
/// The longest id (post, comment, and the targets and parents that name them), in bytes.
pub const MAX_ID: usize = 256;
/// The longest asset path, in bytes.
pub const MAX_PATH: usize = 1024;
/// The content bytes of one [`Chunk`] that this crate writes (readers accept any size up to
/// [`MAX_ENTRY`]).
pub const CHUNK_SIZE: usize = 64 << 10;

/// Why a block is not an entry this reader can use. A reader skips such a block with a warning
/// and goes on with the next one; a writer never writes one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The block is larger than [`MAX_ENTRY`].
    #[error("entry of {len} bytes is larger than the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// [`MAX_ENTRY`].
        max: usize,
    },
    /// prost cannot decode it as an `Entry`.
    #[error("not a protobuf Entry: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// prost decoded it but its fields cannot be walked to keep the unknown ones.
    #[error("unusable protobuf: {0}")]
    Wire(#[from] WireError),
    /// No `version` field: not a feed entry (an empty block is one of these).
    #[error("no version field: not a feed entry")]
    NoVersion,
    /// A version this reader does not know.
    #[error("entry version {found} is not supported (this reader knows version {VERSION})")]
    Version {
        /// The version found.
        found: u32,
    },
    /// No kind at all (neither one this version knows nor an unknown field).
    #[error("entry has no kind")]
    NoKind,
    /// A field breaks a rule of `protocol/feeds.md`.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// The entry kind.
        kind: &'static str,
        /// What rule.
        reason: String,
    },
}

/// One block of a community log: a [`Kind`] (or one this version does not know), and the
/// fields this version does not know, kept so that they are written back by [`Entry::encode`].
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    message: pb::Entry,
    unknown: Unknown,
}

impl Entry {
    /// An entry of `kind`.
    pub fn new(kind: Kind) -> Self {
        Self {
            message: pb::Entry {
                version: VERSION,
                kind: Some(kind),
            },
            unknown: Unknown::default(),
        }
    }

    /// Decode a block: a typed error for anything that is not a valid entry, never a panic.
    pub fn decode(block: &[u8]) -> Result<Self, EntryError> {
        if block.len() > MAX_ENTRY {
            return Err(EntryError::TooLarge {
                len: block.len(),
                max: MAX_ENTRY,
            });
        }
        let message = pb::Entry::decode(block)?;
        match message.version {
            VERSION => {}
            0 => return Err(EntryError::NoVersion),
            found => return Err(EntryError::Version { found }),
        }
        let unknown = unknown::extract(&unknown::ENTRY, block)?;
        let entry = Self { message, unknown };
        entry.check()?;
        Ok(entry)
    }

    /// Encode as a block, with the unknown fields kept from [`decode`](Self::decode). Fails if
    /// the entry breaks a rule that [`decode`](Self::decode) checks, so every block written is
    /// one that readers accept.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        self.check()?;
        let known = self.message.encode_to_vec();
        let mut out = Vec::with_capacity(known.len() + self.unknown.len());
        unknown::splice(&unknown::ENTRY, &known, &self.unknown, &mut out);
        if out.len() > MAX_ENTRY {
            return Err(EntryError::TooLarge {
                len: out.len(),
                max: MAX_ENTRY,
            });
        }
        Ok(out)
    }

    /// The kind, or `None` for a kind this version does not know (skip it).
    pub fn kind(&self) -> Option<&Kind> {
        self.message.kind.as_ref()
    }

    /// The kind, to change it (unknown fields inside it are kept).
    pub fn kind_mut(&mut self) -> Option<&mut Kind> {
        self.message.kind.as_mut()
    }

    /// The kind, dropping the unknown fields.
    pub fn into_kind(self) -> Option<Kind> {
        self.message.kind
    }

    /// The fields this version does not know, at every depth.
    pub fn unknown(&self) -> &Unknown {
        &self.unknown
    }

    /// The kind's name as in `feed.proto` (`"post"`, `"asset_index"`, …; `"unknown"`).
    pub fn kind_name(&self) -> &'static str {
        self.kind().map_or("unknown", kind_name)
    }

    /// Check the rules of `protocol/feeds.md` that a single entry can break.
    pub fn check(&self) -> Result<(), EntryError> {
        let Some(kind) = self.kind() else {
            return if self.unknown.is_empty() {
                Err(EntryError::NoKind)
            } else {
                Ok(())
            };
        };
        let name = kind_name(kind);
        let invalid = |reason: String| EntryError::Invalid { kind: name, reason };
        match kind {
            Kind::Descriptor(d) => {
                for (field, key) in [
                    ("posts", &d.posts),
                    ("comments", &d.comments),
                    ("assets", &d.assets),
                    ("index", &d.index),
                ] {
                    if !key.is_empty() && key.len() != 32 {
                        return Err(invalid(format!(
                            "{field} key has {} bytes, not 32",
                            key.len()
                        )));
                    }
                }
            }
            Kind::Post(p) => check_id("id", &p.id, true).map_err(invalid)?,
            Kind::Comment(c) => {
                check_id("id", &c.id, true).map_err(invalid)?;
                check_id("post", &c.post, true).map_err(invalid)?;
                check_id("parent", &c.parent, false).map_err(invalid)?;
            }
            Kind::Edit(e) => check_id("target", &e.target, true).map_err(invalid)?,
            Kind::Delete(d) => check_id("target", &d.target, true).map_err(invalid)?,
            Kind::AssetIndex(index) => {
                let mut previous: Option<&str> = None;
                for a in &index.files {
                    check_path(&a.path).map_err(|r| invalid(format!("{:?}: {r}", a.path)))?;
                    if previous.is_some_and(|p| p >= a.path.as_str()) {
                        return Err(invalid(format!(
                            "{:?} is out of order or repeated (paths are sorted, unique)",
                            a.path
                        )));
                    }
                    previous = Some(&a.path);
                    if a.sha256.len() != 32 {
                        return Err(invalid(format!(
                            "{:?}: sha256 has {} bytes, not 32",
                            a.path,
                            a.sha256.len()
                        )));
                    }
                    if a.start.checked_add(a.blocks).is_none() {
                        return Err(invalid(format!("{:?}: block range overflows", a.path)));
                    }
                    if (a.size == 0) != (a.blocks == 0) {
                        return Err(invalid(format!(
                            "{:?}: {} bytes in {} blocks",
                            a.path, a.size, a.blocks
                        )));
                    }
                }
            }
            Kind::Chunk(_) => {}
        }
        Ok(())
    }
}

impl From<Kind> for Entry {
    fn from(kind: Kind) -> Self {
        Self::new(kind)
    }
}

macro_rules! from_kind {
    ($($t:ident),*) => {$(
        impl From<$t> for Entry {
            fn from(v: $t) -> Self {
                Self::new(Kind::$t(v))
            }
        }
    )*};
}
from_kind!(Descriptor, Post, Comment, Edit, Delete, AssetIndex, Chunk);

/// The name of `kind` as in `feed.proto`.
pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Descriptor(_) => "descriptor",
        Kind::Post(_) => "post",
        Kind::Comment(_) => "comment",
        Kind::Edit(_) => "edit",
        Kind::Delete(_) => "delete",
        Kind::AssetIndex(_) => "asset_index",
        Kind::Chunk(_) => "chunk",
    }
}

fn check_id(field: &str, id: &str, required: bool) -> Result<(), String> {
    if required && id.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if id.len() > MAX_ID {
        return Err(format!("{field} has {} bytes (at most {MAX_ID})", id.len()));
    }
    Ok(())
}

/// Whether `path` is a valid asset path: relative, `/`-separated, no empty, `.` or `..`
/// segment, no `\` or NUL, at most [`MAX_PATH`] bytes. Returns what is wrong.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.len() > MAX_PATH {
        return Err("path longer than 1024 bytes");
    }
    if path.contains(['\\', '\0']) {
        return Err("backslash or NUL in path");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("empty, `.` or `..` path segment (paths are relative, `/`-separated)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(id: &str) -> Post {
        Post {
            id: id.to_owned(),
            title: "Hello".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn post_round_trip_and_bytes() {
        let e = Entry::from(post("p1"));
        let bytes = e.encode().unwrap();
        assert_eq!(
            hex::encode(&bytes),
            // 08 01: version 1; 1a 0b: post (field 3), 11 bytes;
            //   0a 02 "p1": id; 1a 05 "Hello": title
            "08011a0b0a0270311a0548656c6c6f"
        );
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn rejects_what_is_not_an_entry() {
        assert!(matches!(Entry::decode(b""), Err(EntryError::NoVersion)));
        assert!(matches!(
            Entry::decode(b"hello world"),
            Err(EntryError::Protobuf(_))
        ));
        assert!(matches!(
            Entry::decode(&[0x08, 0x02, 0x1a, 0x00]),
            Err(EntryError::Version { found: 2 })
        ));
        assert!(matches!(
            Entry::decode(&[0x08, 0x01]),
            Err(EntryError::NoKind)
        ));
        // A post without an id.
        assert!(matches!(
            Entry::decode(&[0x08, 0x01, 0x1a, 0x00]),
            Err(EntryError::Invalid { kind: "post", .. })
        ));
        assert!(matches!(
            Entry::decode(&vec![0; MAX_ENTRY + 1]),
            Err(EntryError::TooLarge { .. })
        ));
        // A group (wire type 3) at an unknown number: prost skips it, we do not keep groups.
        assert!(matches!(
            Entry::decode(&[
                0x08, 0x01, 0x1a, 0x04, 0x0a, 0x02, b'p', b'1', 0xcb, 0x01, 0xcc, 0x01
            ]),
            Err(EntryError::Wire(_))
        ));
    }

    #[test]
    fn unknown_kind_is_an_entry_without_kind() {
        // version 1, field 40 (a later kind), bytes "x"
        let bytes = [0x08, 0x01, 0xc2, 0x02, 0x01, b'x'];
        let e = Entry::decode(&bytes).unwrap();
        assert!(e.kind().is_none());
        assert_eq!(e.kind_name(), "unknown");
        assert_eq!(e.unknown().numbers(), [40]);
        assert_eq!(e.encode().unwrap(), bytes);
    }

    #[test]
    fn only_the_last_oneof_member_keeps_its_unknowns() {
        // Found by fuzz/feed_entry: a `delete` (6) holding an unknown field 7, then an
        // `asset_index` (7). prost keeps the last member of the oneof; the delete's unknown
        // field must go with the delete.
        let bytes = [0x08, 0x01, 0x32, 0x02, 0x3a, 0x00, 0x3a, 0x00, 0x52, 0x00];
        let e = Entry::decode(&bytes).unwrap();
        assert!(matches!(e.kind(), Some(Kind::AssetIndex(_))));
        assert_eq!(e.unknown().numbers(), [10]);
        let again = e.encode().unwrap();
        assert_eq!(Entry::decode(&again).unwrap(), e);
        assert_eq!(again, [0x08, 0x01, 0x3a, 0x00, 0x52, 0x00]);
        // The same member twice merges, unknowns included.
        // post { id "p", 20: 5 } then post { 21: 2 }
        let bytes = [
            0x08, 0x01, 0x1a, 0x06, 0x0a, 0x01, b'p', 0xa0, 0x01, 0x05, 0x1a, 0x03, 0xa8, 0x01,
            0x02,
        ];
        let e = Entry::decode(&bytes).unwrap();
        let again = e.encode().unwrap();
        assert_eq!(
            again,
            [
                0x08, 0x01, 0x1a, 0x09, 0x0a, 0x01, b'p', 0xa0, 0x01, 0x05, 0xa8, 0x01, 0x02
            ]
        );
    }

    #[test]
    fn writer_rules() {
        assert!(Entry::from(post("")).encode().is_err());
        assert!(Entry::from(post(&"x".repeat(MAX_ID + 1))).encode().is_err());
        let asset = |path: &str| Asset {
            path: path.to_owned(),
            sha256: vec![0; 32],
            ..Default::default()
        };
        let index = |files: Vec<Asset>| Entry::from(AssetIndex { files, time_us: 0 });
        assert!(index(vec![asset("a"), asset("b/c")]).encode().is_ok());
        assert!(index(vec![asset("b"), asset("a")]).encode().is_err());
        assert!(index(vec![asset("a"), asset("a")]).encode().is_err());
        for bad in ["", "/a", "a/", "a//b", "./a", "a/../b", "a\\b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
            assert!(index(vec![asset(bad)]).encode().is_err(), "{bad:?}");
        }
        let mut big = Entry::from(Chunk {
            data: vec![0; MAX_ENTRY],
        });
        assert!(matches!(big.encode(), Err(EntryError::TooLarge { .. })));
        if let Some(Kind::Chunk(c)) = big.kind_mut() {
            c.data.truncate(CHUNK_SIZE);
        }
        assert!(big.encode().is_ok());
        let d = Descriptor {
            posts: vec![1; 31],
            ..Default::default()
        };
        assert!(Entry::from(d).encode().is_err());
    }
}
