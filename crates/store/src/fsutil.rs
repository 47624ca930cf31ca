//! File-system helpers: positional reads, atomic whole-file writes, directory fsync, hole punching.
//!
//! The store is Unix-only (positional I/O through `FileExt`, `flock`, `fallocate`), which is what
//! every peerhost node runs on.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// Read into `buf` at `offset` until it is full or the file ends; returns the bytes read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `O_NOFOLLOW`: opening a symbolic link fails (`ELOOP`) instead of opening its target.
pub(crate) fn no_follow() -> i32 {
    // The flag's bits are a small positive constant on every Unix.
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

/// Map an open error, naming a symbolic link for what it is: every file inside the store is
/// opened without following links, so a link planted there cannot redirect a write (or a
/// truncation) to a file outside it.
pub(crate) fn open_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            Error::Symlink {
                path: path.to_owned(),
            }
        } else {
            Error::io(op, path)(e)
        }
    }
}

/// Open (creating if needed) a file for positional reads and writes. A symbolic link is
/// refused ([`Error::Symlink`]), never followed.
pub(crate) fn open_rw(path: &Path) -> Result<File, Error> {
    open_rw_mode(path, 0o644)
}

/// [`open_rw`] with the permission bits `mode` for a new file.
pub(crate) fn open_rw_mode(path: &Path, mode: u32) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(no_follow())
        .open(path)
        .map_err(open_err("open", path))
}

/// Open a file for positional reads. A symbolic link is refused ([`Error::Symlink`]).
pub(crate) fn open_read(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
        .map_err(open_err("open", path))
}

/// Refuse `dir` unless it is a real directory (not a symbolic link to one): the directories
/// inside the store are checked before files in them are opened.
pub(crate) fn check_real_dir(dir: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(dir).map_err(Error::io("stat", dir))?;
    if meta.file_type().is_symlink() {
        return Err(Error::Symlink {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

/// fsync a directory, so that a rename or create inside it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// A name for a temporary file or directory, unique within this process. Temporary names start
/// with `.tmp-`, which no log name or core directory does, so a crash's leftovers are recognised
/// and removed when the store is next opened.
pub(crate) fn temp_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".tmp-{stem}-{}-{n}", std::process::id())
}

/// Replace `path` with `bytes` atomically: write a temporary file beside it, fsync it, rename it
/// over `path`, fsync the directory. A crash leaves either the old file or the new one.
/// `mode` sets the permission bits of a new file (e.g. `0o600` for a secret key).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    write_atomic_with(path, bytes, mode, true)
}

/// [`write_atomic`], fsyncing only when `sync`: without, the rename still makes the
/// replacement atomic for a process killed at any moment (not for a power cut).
pub(crate) fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
) -> Result<(), Error> {
    let dir = parent(path);
    let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(temp_name(stem));
    write_new_with(&tmp, bytes, mode, sync)?;
    fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
    if sync { sync_dir(&dir) } else { Ok(()) }
}

/// [`write_atomic_with`], with the temporary file in `tmp` (on the same file system) instead of
/// beside `path`: a directory holding tens of thousands of logs is then never listed to find
/// leftovers.
pub(crate) fn write_atomic_in(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
) -> Result<(), Error> {
    let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let staged = tmp.join(temp_name(stem));
    write_new_with(&staged, bytes, mode, sync)?;
    fs::rename(&staged, path).map_err(Error::io("rename into place", path))?;
    if sync {
        sync_dir(&parent(path))
    } else {
        Ok(())
    }
}

/// Create `path` (which must not exist) holding `bytes`, with permission bits `mode`; fsynced
/// when `sync`.
pub(crate) fn write_new_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io("create", path))?;
    f.write_all(bytes).map_err(Error::io("write", path))?;
    if sync {
        f.sync_all().map_err(Error::io("fsync", path))?;
    }
    Ok(())
}

/// Read a whole small file, refusing files larger than `limit` bytes (so a damaged or hostile
/// file cannot make us allocate without bound). `Ok(None)` when the file does not exist.
pub(crate) fn read_small(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, Error> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_err("open", path)(e)),
    };
    let len = file.metadata().map_err(Error::io("stat", path))?.len();
    if len > limit {
        return Err(Error::CorruptFile {
            what: "file",
            path: path.to_owned(),
            reason: format!("{len} bytes, at most {limit} expected"),
        });
    }
    let mut buf = vec![0; len as usize];
    let n = read_full_at(&file, &mut buf, 0).map_err(Error::io("read", path))?;
    buf.truncate(n);
    Ok(Some(buf))
}

/// Free the disk space of `len` bytes at `offset` and make them read as zeros, keeping the file
/// size. Uses `fallocate(PUNCH_HOLE)` where the file system supports it, else writes zeros.
pub(crate) fn punch(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    if len == 0 {
        return Ok(());
    }
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    if fallocate(file, flags, offset, len).is_ok() {
        return Ok(());
    }
    // Not supported here (tmpfs on old kernels, some network file systems): zero it by hand,
    // in bounded chunks, and never past the end of the file.
    let end = (offset + len).min(file.metadata()?.len());
    let zeros = [0u8; 64 * 1024];
    let mut at = offset;
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlinks_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        let link = dir.path().join("tree");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(matches!(open_rw(&link), Err(Error::Symlink { .. })));
        assert!(matches!(read_small(&link, 100), Err(Error::Symlink { .. })));
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        let dl = dir.path().join("dl");
        std::os::unix::fs::symlink(&d, &dl).unwrap();
        assert!(check_real_dir(&d).is_ok());
        assert!(matches!(check_real_dir(&dl), Err(Error::Symlink { .. })));
    }

    #[test]
    fn read_small_bounds_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert!(read_small(&p, 10).unwrap().is_none());
        fs::write(&p, [1u8; 11]).unwrap();
        assert!(read_small(&p, 10).unwrap_err().is_corruption());
        assert_eq!(read_small(&p, 11).unwrap().unwrap().len(), 11);
    }

    #[test]
    fn punch_zeroes_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        let f = open_rw(&p).unwrap();
        f.write_all_at(&[0xaa; 100_000], 0).unwrap();
        punch(&f, 10, 70_000).unwrap();
        let mut buf = vec![0; 100_000];
        assert_eq!(read_full_at(&f, &mut buf, 0).unwrap(), 100_000);
        assert!(buf[..10].iter().all(|&b| b == 0xaa));
        assert!(buf[10..70_010].iter().all(|&b| b == 0));
        assert!(buf[70_010..].iter().all(|&b| b == 0xaa));
        assert_eq!(f.metadata().unwrap().len(), 100_000);
    }
}
