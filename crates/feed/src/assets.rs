//! A community's web app in its assets log: file content as [`Chunk`] entries, then an
//! [`AssetIndex`] listing every file (path, content type, size, SHA-256, block range).
//!
//! Publishing appends the content of new or changed files (content already in the log under
//! the same hash and size is referred to again, not copied), then one index with every file:
//! the last index is the app. This module reads content from any [`Read`] and appends to any
//! [`AppendBlocks`]; walking a directory is the caller's job.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use crate::entry::{Asset, AssetIndex, CHUNK_SIZE, Chunk, Entry, Kind};
use crate::read::{AppendBlocks, Blocks, ReadError, append, read};

/// Chunks handed to one append (8 MiB): one signature per batch, bounded memory.
const BATCH_CHUNKS: usize = 128;

/// A failure to publish or read an asset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// Reading the content failed.
    #[error("cannot read the content")]
    Io(#[from] std::io::Error),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] ReadError),
    /// A content block is not held locally.
    #[error("block {0} is not held locally")]
    Missing(u64),
    /// A block in the asset's range is not a valid chunk entry.
    #[error("block {index} is not a chunk: {why}")]
    NotAChunk {
        /// The block.
        index: u64,
        /// What it is instead.
        why: String,
    },
    /// The chunks hold more or fewer bytes than the index says.
    #[error("content is {found} bytes, the index says {expected}")]
    Size {
        /// Per the index.
        expected: u64,
        /// In the chunks.
        found: u64,
    },
    /// The content does not hash to the index's SHA-256.
    #[error("content does not match its SHA-256 (index {expected}, content {found})")]
    Hash {
        /// Per the index (hex).
        expected: String,
        /// Of the content (hex).
        found: String,
    },
}

/// Where a file's content is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// Bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: [u8; 32],
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub blocks: u64,
}

impl Content {
    /// The index record for this content at `path`.
    pub fn asset(&self, path: &str, content_type: &str) -> Asset {
        Asset {
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            size: self.size,
            sha256: self.sha256.to_vec(),
            start: self.start,
            blocks: self.blocks,
        }
    }

    /// Where `asset`'s content is, if its hash is well-formed.
    pub fn of(asset: &Asset) -> Option<Self> {
        Some(Self {
            size: asset.size,
            sha256: asset.sha256.as_slice().try_into().ok()?,
            start: asset.start,
            blocks: asset.blocks,
        })
    }
}

/// SHA-256 and size of everything `reader` yields.
pub fn hash<R: Read>(mut reader: R) -> std::io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0; CHUNK_SIZE];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finalize().into(), size));
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
}

/// Fill `buf` as far as `reader` allows; the number of bytes read (short only at the end).
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Append everything `reader` yields as [`CHUNK_SIZE`] chunks; `progress` gets the bytes
/// appended so far. An empty content takes no block.
pub fn append_content<L: AppendBlocks, R: Read>(
    log: &mut L,
    mut reader: R,
    mut progress: impl FnMut(u64),
) -> Result<Content, AssetError> {
    let start = log.length();
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut blocks = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH_CHUNKS);
    let mut buf = vec![0; CHUNK_SIZE];
    loop {
        let n = read_full(&mut reader, &mut buf)?;
        if n > 0 {
            h.update(&buf[..n]);
            size += n as u64;
            blocks += 1;
            let entry = Entry::from(Chunk {
                data: buf[..n].to_vec(),
            });
            // A CHUNK_SIZE chunk is far below MAX_ENTRY: encoding cannot fail.
            batch.push(entry.encode().map_err(|e| AssetError::NotAChunk {
                index: start + blocks - 1,
                why: e.to_string(),
            })?);
        }
        if batch.len() == BATCH_CHUNKS || (n < buf.len() && !batch.is_empty()) {
            append(log, &batch)?;
            batch.clear();
            progress(size);
        }
        if n < buf.len() {
            break;
        }
    }
    Ok(Content {
        size,
        sha256: h.finalize().into(),
        start,
        blocks,
    })
}

/// Write the content of `asset` to `out`, checking every block is a chunk, the size, and the
/// SHA-256. On an error, `out` may have received part of the content.
pub fn read_content<B: Blocks, W: Write>(
    log: &mut B,
    asset: &Asset,
    mut out: W,
) -> Result<u64, AssetError> {
    let mut h = Sha256::new();
    let mut size = 0u64;
    for index in asset.start..asset.start.saturating_add(asset.blocks) {
        let block = read(log, index)?.ok_or(AssetError::Missing(index))?;
        let data = match Entry::decode(&block) {
            Ok(entry) => match entry.into_kind() {
                Some(Kind::Chunk(c)) => c.data,
                other => {
                    return Err(AssetError::NotAChunk {
                        index,
                        why: format!(
                            "a {} entry",
                            other.as_ref().map_or("unknown", crate::entry::kind_name)
                        ),
                    });
                }
            },
            Err(e) => {
                return Err(AssetError::NotAChunk {
                    index,
                    why: e.to_string(),
                });
            }
        };
        size += data.len() as u64;
        if size > asset.size {
            return Err(AssetError::Size {
                expected: asset.size,
                found: size,
            });
        }
        h.update(&data);
        out.write_all(&data)?;
    }
    if size != asset.size {
        return Err(AssetError::Size {
            expected: asset.size,
            found: size,
        });
    }
    let found: [u8; 32] = h.finalize().into();
    if found.as_slice() != asset.sha256.as_slice() {
        return Err(AssetError::Hash {
            expected: hex::encode(&asset.sha256),
            found: hex::encode(found),
        });
    }
    Ok(size)
}

/// Content already in the log, by hash and size, from a previous index: what a new publish can
/// refer to instead of appending again.
#[derive(Debug, Default)]
pub struct Known {
    by_hash: std::collections::HashMap<([u8; 32], u64), Content>,
}

impl Known {
    /// The content that `index` refers to.
    pub fn from_index(index: Option<&AssetIndex>) -> Self {
        let mut known = Self::default();
        for a in index.into_iter().flat_map(|i| &i.files) {
            if let Some(c) = Content::of(a) {
                known.add(c);
            }
        }
        known
    }

    /// Remember `content`.
    pub fn add(&mut self, content: Content) {
        self.by_hash.insert((content.sha256, content.size), content);
    }

    /// Content with this hash and size, if the log has it.
    pub fn find(&self, sha256: &[u8; 32], size: u64) -> Option<Content> {
        self.by_hash.get(&(*sha256, size)).copied()
    }
}

/// The index entry for `files` (sorted here by path), written at `time_us`.
pub fn index_entry(mut files: Vec<Asset>, time_us: u64) -> Entry {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Entry::from(AssetIndex { files, time_us })
}

/// The content type for `path`, by extension (a small table of what web apps serve;
/// `application/octet-stream` otherwise). Text types say `charset=utf-8`.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::asset_index;

    #[test]
    fn publish_read_back_and_dedupe() {
        let mut log: Vec<Vec<u8>> = Vec::new();
        let big: Vec<u8> = (0..CHUNK_SIZE * 2 + 10).map(|i| (i % 251) as u8).collect();
        let mut seen = Vec::new();
        let a = append_content(&mut log, &big[..], |n| seen.push(n)).unwrap();
        assert_eq!((a.start, a.blocks, a.size), (0, 3, big.len() as u64));
        assert_eq!(seen.last(), Some(&(big.len() as u64)));
        let empty = append_content(&mut log, &b""[..], |_| {}).unwrap();
        assert_eq!((empty.start, empty.blocks, empty.size), (3, 0, 0));
        let exact = append_content(&mut log, &big[..CHUNK_SIZE], |_| {}).unwrap();
        assert_eq!((exact.start, exact.blocks), (3, 1));
        let files = vec![
            a.asset("js/app.js", content_type("js/app.js")),
            empty.asset("empty.txt", "text/plain"),
            exact.asset("a.bin", "application/octet-stream"),
        ];
        log.push(index_entry(files, 7).encode().unwrap());

        let (found, notes) = asset_index(&mut log).unwrap();
        let (at, index) = found.unwrap();
        assert_eq!((at, notes.skipped_total), (4, 0));
        let paths: Vec<&str> = index.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.bin", "empty.txt", "js/app.js"]);
        let mut out = Vec::new();
        read_content(&mut log, &index.files[2], &mut out).unwrap();
        assert_eq!(out, big);
        assert_eq!(hash(&big[..]).unwrap(), (a.sha256, a.size));

        let known = Known::from_index(Some(&index));
        assert_eq!(known.find(&a.sha256, a.size), Some(a));
        assert_eq!(known.find(&a.sha256, a.size + 1), None);

        // A tampered index: wrong hash, wrong size, a range over a non-chunk.
        let mut bad = index.files[2].clone();
        bad.sha256[0] ^= 1;
        assert!(matches!(
            read_content(&mut log, &bad, Vec::new()),
            Err(AssetError::Hash { .. })
        ));
        let mut bad = index.files[2].clone();
        bad.size -= 1;
        assert!(matches!(
            read_content(&mut log, &bad, Vec::new()),
            Err(AssetError::Size { .. })
        ));
        let mut bad = index.files[2].clone();
        bad.start = 2;
        bad.blocks = 3;
        assert!(matches!(
            read_content(&mut log, &bad, Vec::new()),
            Err(AssetError::NotAChunk { index: 4, .. })
        ));
        bad.start = 10;
        assert!(matches!(
            read_content(&mut log, &bad, Vec::new()),
            Err(AssetError::Missing(10))
        ));
    }

    #[test]
    fn index_pointing_past_itself_is_skipped() {
        let mut log: Vec<Vec<u8>> = Vec::new();
        let c = append_content(&mut log, &b"hello"[..], |_| {}).unwrap();
        log.push(
            index_entry(vec![c.asset("a", "text/plain")], 1)
                .encode()
                .unwrap(),
        );
        let mut late = c.asset("b", "text/plain");
        late.start = 5;
        log.push(index_entry(vec![late], 2).encode().unwrap());
        let (found, notes) = asset_index(&mut log).unwrap();
        assert_eq!(found.unwrap().0, 1);
        assert_eq!(notes.skipped_total, 1);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a/b/APP.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.wasm"), "application/wasm");
        assert_eq!(content_type(".htaccess"), "application/octet-stream");
        assert_eq!(content_type("dir.d/README"), "application/octet-stream");
        assert_eq!(content_type("logo.svg"), "image/svg+xml");
    }
}
