//! Converting a store of format 1 (one directory of 5–6 files per log, `cores/<dkey>/`) to
//! format 2 (`logs/<dkey>.meta`, `.data`, `.key`), when it is opened.
//!
//! Per log, in this order (a crash at any point leaves a store the next open finishes):
//! 1. the new metadata file is built under `tmp/` from the old `header`, `manifest`, `tree`
//!    and `bitfield` (the same header payload, node records and bitfield pages, at their new
//!    positions; plus a block index entry for every held block whose offset the tree gives),
//!    and fsynced;
//! 2. the old `data` and `secret_key` files are hard-linked as `logs/<dkey>.data` and
//!    `logs/<dkey>.key` (no copy; any file left there by an interrupted earlier attempt is
//!    replaced), and `logs/` is fsynced;
//! 3. the metadata file is linked into place as `logs/<dkey>.meta`: **the log's commit point**.
//!    Before it the old directory is whole and the log is converted again from it; after it,
//!    the new files are the log;
//! 4. the old directory is removed.
//!
//! `VERSION` says format 2 before the first log is touched (so an older peerhost refuses the
//! store rather than see part of it), and `cores/` is removed after the last. The fsyncs are
//! made under [`Durability::Sync`] and for a log with a secret key, as at creation.

use std::cell::{Cell, RefCell};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::fsutil::{check_real_dir, open_read, read_full_at, read_small, sync_dir, temp_name};
use crate::header::{
    FLAG_KEY, FLAG_MANIFEST, Header, HeaderState, MAX_MANIFEST, initial_image, manifest_region,
};
use crate::layout::{self, CHUNK_BLOCKS, MANIFEST_AT, PAGE, RECORD};
use crate::tree::decode_record;
use crate::{Durability, Error, LogLabel, flat, index};

/// The `VERSION` line of format 1.
pub(crate) const VERSION_1: &str = "peerhost-store 1";
/// Format 1's directory of logs.
pub(crate) const CORES: &str = "cores";

thread_local! {
    /// Test hook: fail the conversion at this step (counted on this thread), as a crash there
    /// would stop it.
    static FAIL_AT: Cell<Option<u64>> = const { Cell::new(None) };
    static STEP: Cell<u64> = const { Cell::new(0) };
}

/// Make the next conversion on this thread stop with an error at step `step` (1-based, counted
/// across the conversion's logs), or not at all with `None`. For tests only.
pub(crate) fn fail_at(step: Option<u64>) {
    FAIL_AT.with(|f| f.set(step));
    STEP.with(|s| s.set(0));
}

fn step(at: &Path) -> Result<(), Error> {
    let n = STEP.with(|s| {
        s.set(s.get() + 1);
        s.get()
    });
    if FAIL_AT.with(Cell::get) == Some(n) {
        return Err(Error::io("convert", at)(io::Error::other(
            "injected failure (test)",
        )));
    }
    Ok(())
}

/// Convert every log left in `<root>/cores`, then remove it.
pub(crate) fn convert(root: &Path, durability: Durability) -> Result<(), Error> {
    let cores = root.join(CORES);
    check_real_dir(&cores)?;
    let logs = root.join("logs");
    let tmp = root.join("tmp");
    let mut dirs = Vec::new();
    for entry in fs::read_dir(&cores).map_err(Error::io("list", &cores))? {
        let entry = entry.map_err(Error::io("list", &cores))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(".tmp-")) {
            // A log being created when format 1 crashed: never part of the store.
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(Error::io("remove", &path))?;
            continue;
        }
        dirs.push(entry.path());
    }
    dirs.sort();
    for dir in dirs {
        convert_log(&dir, &logs, &tmp, durability)?;
    }
    fs::remove_dir(&cores).map_err(Error::io("remove", &cores))?;
    sync_dir(root)
}

/// A file of a format-1 log directory, hard-linked to `to` (replacing what an interrupted
/// attempt left there), if it exists.
fn link(from: &Path, to: &Path) -> Result<bool, Error> {
    match fs::remove_file(to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", to)(e)),
    }
    match fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("link", to)(e)),
    }
}

fn convert_log(dir: &Path, logs: &Path, tmp: &Path, durability: Durability) -> Result<(), Error> {
    let corrupt = |reason: String| Error::CorruptFile {
        what: "format 1 log directory",
        path: dir.to_owned(),
        reason,
    };
    let hex_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.len() == 64 && hex::decode(n).is_ok())
        .ok_or_else(|| corrupt("not named by a discovery key".to_owned()))?
        .to_owned();
    let meta = logs.join(format!("{hex_name}.meta"));
    if meta.exists() {
        // Converted by an earlier attempt that stopped before removing the old directory.
        fs::remove_dir_all(dir).map_err(Error::io("remove", dir))?;
        return Ok(());
    }
    check_real_dir(dir)?;
    step(dir)?;
    let header_path = dir.join("header");
    let image = read_small(&header_path, 2 * PAGE as u64)?
        .ok_or_else(|| corrupt("no header file".to_owned()))?;
    let old = HeaderState::decode(&image, &header_path)?.current().clone();
    if old.key.discovery_key().to_hex() != hex_name {
        return Err(corrupt(format!("its header holds key {}", old.key)));
    }
    let manifest = read_small(&dir.join("manifest"), MAX_MANIFEST as u64)?;
    let has_key = dir.join("secret_key").exists();
    let sync = has_key || durability == Durability::Sync;
    let mut flags = 0;
    if manifest.is_some() {
        flags |= FLAG_MANIFEST;
    }
    if has_key {
        flags |= FLAG_KEY;
    }
    let header = Header {
        key: old.key,
        head: old.head.clone(),
        flags,
    };
    let label = LogLabel::new(old.key, None);

    // 1. The new metadata file.
    let staged = tmp.join(temp_name(&hex_name));
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&staged)
        .map_err(Error::io("create", &staged))?;
    let write = |at: u64, bytes: &[u8]| {
        out.write_all_at(bytes, at)
            .map_err(Error::io("write", &staged))
    };
    let mut start = initial_image(&header, &label)?;
    if let Some(m) = &manifest {
        start.resize(MANIFEST_AT as usize, 0);
        start.extend_from_slice(&manifest_region(m));
    }
    write(0, &start)?;
    let length = header.head.length;
    let tree = Old::open(&dir.join("tree"))?;
    // The records of a tree of `length` blocks: 0 ..= 2·length − 2.
    let records = length.saturating_mul(2).saturating_sub(1);
    for p in 0..records.div_ceil(PAGE as u64 / RECORD as u64) {
        let mut page = tree.page(p)?;
        let first = p * (PAGE / RECORD) as u64;
        let keep = ((records - first) as usize * RECORD).min(PAGE);
        page[keep..].fill(0);
        if page.iter().any(|&b| b != 0) {
            if let Some(at) = layout::record_at(first) {
                // 64 records never cross a chunk (65 536 records): one run.
                write(at, &page)?;
            }
        }
    }
    let bitfield = Old::open(&dir.join("bitfield"))?;
    for p in 0..length.div_ceil(CHUNK_BLOCKS) {
        let mut page = bitfield.page(p)?;
        let held = length - p * CHUNK_BLOCKS;
        if held < CHUNK_BLOCKS {
            // Bits past the length are not the log's.
            for bit in held..CHUNK_BLOCKS {
                page[(bit / 8) as usize] &= !(1 << (bit % 8));
            }
        }
        if page.iter().any(|&b| b != 0) {
            if let Some(at) = layout::bitfield_page_at(p) {
                write(at, &page)?;
            }
        }
    }
    write_index(&tree, &bitfield, length, &write)?;
    if sync {
        out.sync_all().map_err(Error::io("fsync", &staged))?;
    }
    drop(out);
    step(dir)?;

    // 2. The block bytes and the secret key, linked.
    link(&dir.join("data"), &logs.join(format!("{hex_name}.data")))?;
    step(dir)?;
    if has_key {
        link(
            &dir.join("secret_key"),
            &logs.join(format!("{hex_name}.key")),
        )?;
    }
    if sync {
        sync_dir(logs)?;
    }
    step(dir)?;

    // 3. The commit point.
    fs::hard_link(&staged, &meta).map_err(Error::io("link into place", &meta))?;
    let _ = fs::remove_file(&staged);
    if sync {
        sync_dir(logs)?;
    }
    step(dir)?;

    // 4. The old directory.
    fs::remove_dir_all(dir).map_err(Error::io("remove", dir))
}

/// Writes bytes at a position of the file being built.
type Writer<'a> = dyn Fn(u64, &[u8]) -> Result<(), Error> + 'a;

/// The block index entries of a converted log: the offset of every held block, summing the
/// leaf sizes left of it as the blocks go by, and from the full roots left of a block after a
/// missing leaf (a sparse replica; no entry when those are missing too).
fn write_index(tree: &Old, bitfield: &Old, length: u64, write: &Writer<'_>) -> Result<(), Error> {
    let mut offset = Some(0u64);
    let mut entries: Vec<(u64, u64)> = Vec::new();
    let mut bits = (u64::MAX, [0u8; PAGE]);
    for b in 0..length {
        if offset.is_none() {
            offset = flat::full_roots(b).into_iter().try_fold(0u64, |sum, i| {
                tree.node(i).ok().flatten().map(|n| sum.saturating_add(n))
            });
        }
        if bits.0 != b / CHUNK_BLOCKS {
            bits = (b / CHUNK_BLOCKS, bitfield.page(b / CHUNK_BLOCKS)?);
        }
        let bit = b % CHUNK_BLOCKS;
        let held = bits.1[(bit / 8) as usize] & (1 << (bit % 8)) != 0;
        if let (true, Some(at)) = (held, offset) {
            entries.push((b, at));
        }
        offset = match (offset, tree.node(2 * b)?) {
            (Some(at), Some(size)) => Some(at.saturating_add(size)),
            _ => None,
        };
        if entries.len() >= 4096 || b + 1 == length {
            for (at, bytes) in index::runs_of(entries.drain(..)) {
                write(at, &bytes)?;
            }
        }
    }
    Ok(())
}

/// A file of a format-1 log, read in 4 KiB pages (zeros past its end, or when it is missing).
struct Old {
    file: Option<File>,
    path: std::path::PathBuf,
    /// The last page read, for the sequential reads of `write_index`.
    last: RefCell<(u64, Box<[u8; PAGE]>)>,
}

impl Old {
    fn open(path: &Path) -> Result<Self, Error> {
        let file = match open_read(path) {
            Ok(f) => Some(f),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            file,
            path: path.to_owned(),
            last: RefCell::new((u64::MAX, Box::new([0; PAGE]))),
        })
    }

    /// Run `f` on page `p`.
    fn with_page<T>(&self, p: u64, f: impl FnOnce(&[u8; PAGE]) -> T) -> Result<T, Error> {
        let mut last = self.last.borrow_mut();
        if last.0 != p {
            last.1.fill(0);
            if let (Some(file), Some(at)) = (&self.file, p.checked_mul(PAGE as u64)) {
                read_full_at(file, &mut last.1[..], at).map_err(Error::io("read", &self.path))?;
            }
            last.0 = p;
        }
        Ok(f(&last.1))
    }

    fn page(&self, p: u64) -> Result<[u8; PAGE], Error> {
        self.with_page(p, |page| *page)
    }

    /// The size of tree node `i`, if its record is valid (a damaged one is copied as it is
    /// and reported when read; here it only means "unknown").
    fn node(&self, i: u64) -> Result<Option<u64>, Error> {
        let per_page = (PAGE / RECORD) as u64;
        let at = (i % per_page) as usize * RECORD;
        self.with_page(i / per_page, |page| {
            let mut rec = [0u8; RECORD];
            rec.copy_from_slice(&page[at..at + RECORD]);
            decode_record(i, &rec).ok().flatten().map(|n| n.size)
        })
    }
}
