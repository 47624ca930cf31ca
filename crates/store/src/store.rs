//! [`Store`]: one root directory, its lock, its local names and its logs.
//!
//! ```text
//! <root>/VERSION                 "peerhost-store 2\n"
//! <root>/LOCK                    flock(2)ed by the process that has the store open
//! <root>/names/<name>            "<64 hex key>\n"
//! <root>/logs/<dkey>.meta        one log: header, manifest, bitfield, block index, tree
//! <root>/logs/<dkey>.data        its block bytes (once it holds one)
//! <root>/logs/<dkey>.key         its secret key (0600), for a log this store writes
//! <root>/tmp/                    temporaries, removed when the store is opened
//! ```
//!
//! A store of format 1 (`cores/<dkey>/` directories) is converted when opened (`migrate.rs`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use peerhost_ids::{DiscoveryKey, Key, KeyPair};

use crate::fsutil::{
    check_real_dir, open_rw_mode, read_full_at, read_small, sync_dir, temp_name, write_atomic,
    write_atomic_in, write_new_with,
};
use crate::header::{
    FLAG_KEY, FLAG_MANIFEST, Header, HeaderState, MAX_MANIFEST, initial_image, manifest_region,
};
use crate::layout::MANIFEST_AT;
use crate::shared::{Kind, Shared};
use crate::storage::CoreStorage;
use crate::{Error, Head, LogLabel};

/// The first line of `<root>/VERSION` for this format.
pub const VERSION_LINE: &str = "peerhost-store 2";

/// How hard a commit pushes data to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// No fsync. The order of `write` calls alone keeps every commit that returned across a
    /// killed process (the kernel's page cache survives it) but not across a power cut or kernel
    /// crash, which can lose recent commits or, on disks that reorder writes, the log itself.
    /// For tests, caches and replicas that can re-sync.
    Process,
    /// fsync blocks, tree and bitfield before the header write and the header after it: every
    /// commit that returned survives a power cut. The default.
    #[default]
    Sync,
}

/// Store settings. The caches and the open files are the store's, shared by every log it has
/// open: memory and file descriptors stay bounded however many logs are open.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// How hard commits push data to the disk (default [`Durability::Sync`]).
    pub durability: Durability,
    /// Tree nodes cached, all logs together, in pages of 64 neighbouring nodes (default
    /// 262 144 nodes: 4096 pages, 16 MiB).
    pub node_cache: usize,
    /// Bitfield and block index pages (4 KiB) cached, all logs together (default 1024:
    /// 4 MiB).
    pub page_cache: usize,
    /// Files held open, all logs together (default 1024); a log's files are opened when it
    /// reads or writes and closed when others need the room.
    pub open_files: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            node_cache: 262_144,
            page_cache: 1024,
            open_files: 1024,
        }
    }
}

impl Options {
    /// Set the durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Set the tree nodes cached, all logs together (at least 2).
    pub fn node_cache(mut self, nodes: usize) -> Self {
        self.node_cache = nodes.max(2);
        self
    }

    /// Set the bitfield and block index pages cached, all logs together (at least 2).
    pub fn page_cache(mut self, pages: usize) -> Self {
        self.page_cache = pages.max(2);
        self
    }

    /// Set the files held open, all logs together (at least 4).
    pub fn open_files(mut self, files: usize) -> Self {
        self.open_files = files.max(4);
        self
    }

    /// Pages of 4 KiB the store's cache holds.
    fn cache_pages(&self) -> usize {
        self.node_cache.div_ceil(64) + self.page_cache
    }
}

/// What to create a log with: see [`Store::create_storage`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewLog {
    /// The log's key.
    pub key: Key,
    /// The manifest's encoding, if known.
    pub manifest: Option<Vec<u8>>,
    /// The writer's key pair, for a log this store appends to.
    pub key_pair: Option<KeyPair>,
    /// The initial head (usually empty, possibly signed).
    pub head: Head,
    /// A local name to bind to the new log.
    pub name: Option<String>,
}

impl NewLog {
    /// An empty log with key `key` and nothing else.
    pub fn new(key: Key) -> Self {
        Self {
            key,
            manifest: None,
            key_pair: None,
            head: Head::default(),
            name: None,
        }
    }

    /// With the manifest's encoding.
    pub fn manifest(mut self, manifest: Vec<u8>) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// With the writer's key pair.
    pub fn key_pair(mut self, key_pair: KeyPair) -> Self {
        self.key_pair = Some(key_pair);
        self
    }

    /// With an initial head.
    pub fn head(mut self, head: Head) -> Self {
        self.head = head;
        self
    }

    /// With a local name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Many logs in one directory. See `protocol/store.md` for the format.
///
/// One process at a time opens a store (an exclusive `flock` on `<root>/LOCK`, released when the
/// `Store` and every log opened from it are dropped, or when the process dies). Within the
/// process each log has at most one open handle.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    options: Options,
    shared: Arc<Shared>,
}

impl Store {
    /// Open the store at `root` with default [`Options`], creating it if the directory is
    /// missing or empty.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(root, Options::default())
    }

    /// Open the store at `root` with `options`, creating it if the directory is missing or
    /// empty, and converting it if it is of format 1.
    pub fn open_with(root: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let root = root.as_ref().to_owned();
        create_private_dir(&root)?;
        check_root_mode(&root)?;
        let lock = lock(&root)?;
        let version_path = root.join("VERSION");
        match read_small(&version_path, 256)? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let line = text.lines().next().unwrap_or_default().trim();
                if line == crate::migrate::VERSION_1 {
                    // Mark the store as format 2 before converting anything: from here on an
                    // older peerhost refuses it instead of seeing half of its logs.
                    for sub in ["logs", "tmp"] {
                        let dir = root.join(sub);
                        fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
                    }
                    write_atomic(&version_path, format!("{VERSION_LINE}\n").as_bytes(), 0o644)?;
                } else if line != VERSION_LINE {
                    return Err(Error::UnsupportedVersion {
                        root,
                        found: line.chars().take(80).collect(),
                    });
                }
            }
            None => {
                let foreign = fs::read_dir(&root)
                    .map_err(Error::io("list", &root))?
                    .filter_map(Result::ok)
                    .any(|e| {
                        let name = e.file_name();
                        name != "LOCK" && !is_temp(&name) && !is_daemon_file(&name)
                    });
                if foreign {
                    return Err(Error::NotAStore { root });
                }
                write_atomic(&version_path, format!("{VERSION_LINE}\n").as_bytes(), 0o644)?;
            }
        }
        for sub in ["logs", "names", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
            check_real_dir(&dir)?;
        }
        sync_dir(&root)?;
        // Leftovers of a crash during create, rename or conversion: never part of the store.
        for dir in [root.clone(), root.join("names"), root.join("tmp")] {
            remove_temps(&dir, dir.ends_with("tmp"))?;
        }
        let shared = Arc::new(Shared::new(
            root.join("logs"),
            lock,
            options.open_files,
            options.cache_pages(),
        ));
        if root.join(crate::migrate::CORES).exists() {
            crate::migrate::convert(&root, options.durability)?;
        }
        Ok(Self {
            root,
            options,
            shared,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn meta_path(&self, key: &Key) -> PathBuf {
        self.shared.path(&key.discovery_key().0, Kind::Meta)
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.root.join("names").join(name)
    }

    /// Whether this store has the log `key`.
    pub fn contains(&self, key: &Key) -> bool {
        self.meta_path(key).exists()
    }

    /// The key bound to local name `name`, if any.
    pub fn name_key(&self, name: &str) -> Result<Option<Key>, Error> {
        check_name(name)?;
        let path = self.name_path(name);
        let Some(bytes) = read_small(&path, 256)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Key::parse(text.trim())
            .map(Some)
            .map_err(|_| Error::CorruptFile {
                what: "log name",
                path,
                reason: "not a 64-hex-character key".to_owned(),
            })
    }

    /// Bind local name `name` to the log `key` (which need not be in the store yet).
    pub fn set_name(&self, name: &str, key: &Key) -> Result<(), Error> {
        match self.name_key(name)? {
            Some(k) if k == *key => Ok(()),
            Some(k) => Err(Error::NameTaken {
                name: name.to_owned(),
                key: k,
            }),
            None => write_atomic(
                &self.name_path(name),
                format!("{}\n", key.to_hex()).as_bytes(),
                0o644,
            ),
        }
    }

    /// Remove the local name `name` (the log stays). Returns whether it existed.
    pub fn remove_name(&self, name: &str) -> Result<bool, Error> {
        check_name(name)?;
        let path = self.name_path(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.root.join("names"))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", path)(e)),
        }
    }

    /// Every local name and its key, sorted by name.
    pub fn names(&self) -> Result<Vec<(String, Key)>, Error> {
        let dir = self.root.join("names");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("list", &dir))? {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            if let Some(key) = self.name_key(&name)? {
                out.push((name, key));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The keys of every log in the store, sorted (each read from its header).
    pub fn keys(&self) -> Result<Vec<Key>, Error> {
        let mut out = Vec::new();
        for dkey in self.discovery_keys()? {
            let path = self.shared.path(&dkey.0, Kind::Meta);
            let file = crate::fsutil::open_read(&path)?;
            let mut image = vec![0u8; 2 * 4096];
            let n = read_full_at(&file, &mut image, 0).map_err(Error::io("read", &path))?;
            let header = HeaderState::decode(&image[..n], &path)?;
            out.push(header.current().key);
        }
        out.sort();
        Ok(out)
    }

    /// Find a log by local name, or by key (z-base32, hex or `pear://`); returns its key and the
    /// name it was found by. A name is looked up first.
    pub fn resolve(&self, query: &str) -> Result<(Key, Option<String>), Error> {
        if check_name(query).is_ok() {
            if let Some(key) = self.name_key(query)? {
                return Ok((key, Some(query.to_owned())));
            }
        }
        match Key::parse(query) {
            Ok(key) if self.contains(&key) => Ok((key, None)),
            _ => Err(Error::UnknownLog {
                query: query.chars().take(80).collect(),
            }),
        }
    }

    /// Open the files of log `key`; `name` only labels errors.
    pub fn open_storage(&self, key: &Key, name: Option<&str>) -> Result<CoreStorage, Error> {
        CoreStorage::open(&self.shared, *key, name, &self.options)
    }

    /// Create a log and open it.
    ///
    /// The log's metadata file (header, manifest) is written under a temporary name and
    /// linked into place, which fails if the log exists: a crash leaves either no log or a
    /// complete one. A writer's secret key file is written before it. The name is bound
    /// afterwards; a crash in between leaves the log without its name.
    pub fn create_storage(&self, new: NewLog) -> Result<CoreStorage, Error> {
        let label = LogLabel::new(new.key, new.name.as_deref());
        if let Some(name) = &new.name {
            match self.name_key(name)? {
                Some(k) if k != new.key => {
                    return Err(Error::NameTaken {
                        name: name.clone(),
                        key: k,
                    });
                }
                _ => {}
            }
        }
        if let Some(m) = &new.manifest {
            if m.len() > MAX_MANIFEST {
                return Err(Error::HeaderTooLarge {
                    log: label,
                    size: m.len(),
                    limit: MAX_MANIFEST,
                });
            }
        }
        let dkey = new.key.discovery_key().0;
        let meta = self.shared.path(&dkey, Kind::Meta);
        if meta.exists() {
            return Err(Error::LogExists { log: label });
        }
        let logs = self.shared.logs().to_owned();
        let tmp = self.root.join("tmp");
        // fsynced under `Durability::Sync`, and always for a log we can write to (its secret
        // key exists nowhere else). A replica under `Process` skips the fsyncs: linking the
        // finished file into place alone keeps a killed process from leaving half a log, and
        // a replica lost to a power cut is fetched again.
        let sync = new.key_pair.is_some() || self.options.durability == Durability::Sync;
        let mut flags = 0;
        if let Some(kp) = &new.key_pair {
            write_atomic_in(&tmp, &key_path(&meta), &kp.secret_key(), 0o600, sync)?;
            flags |= FLAG_KEY;
        }
        if new.manifest.is_some() {
            flags |= FLAG_MANIFEST;
        }
        let header = Header {
            key: new.key,
            head: new.head.clone(),
            flags,
        };
        let mut image = initial_image(&header, &label)?;
        if let Some(m) = &new.manifest {
            image.resize(MANIFEST_AT as usize, 0);
            image.extend_from_slice(&manifest_region(m));
        }
        let staged = tmp.join(temp_name(&hex::encode(dkey)));
        write_new_with(&staged, &image, 0o644, sync)?;
        // A link, not a rename: it fails when the log exists (two creates racing), where a
        // rename would replace it.
        let linked = fs::hard_link(&staged, &meta);
        let _ = fs::remove_file(&staged);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::LogExists { log: label });
            }
            Err(e) => return Err(Error::io("link into place", &meta)(e)),
        }
        if sync {
            sync_dir(&logs)?;
        }
        if let Some(name) = &new.name {
            self.set_name(name, &new.key)?;
        }
        self.open_storage(&new.key, new.name.as_deref())
    }

    /// The discovery keys of every log (no file is read).
    pub fn discovery_keys(&self) -> Result<Vec<DiscoveryKey>, Error> {
        let dir = self.shared.logs();
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(Error::io("list", dir))? {
            let entry = entry.map_err(Error::io("list", dir))?;
            let name = entry.file_name();
            let Some(hex_name) = name.to_str().and_then(|s| s.strip_suffix(".meta")) else {
                continue;
            };
            let Some(bytes) = hex::decode(hex_name).ok() else {
                continue;
            };
            if let Ok(dk) = <[u8; 32]>::try_from(bytes.as_slice()) {
                out.push(DiscoveryKey(dk));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The secret key file beside a metadata file.
pub(crate) fn key_path(meta: &Path) -> PathBuf {
    meta.with_extension("key")
}

/// Take the store's exclusive lock.
/// Create the store's root if it is missing: its parents as usual, the root itself `0700`
/// (only the owner may list, read or change the store).
fn create_private_dir(root: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    if root.exists() {
        return Ok(());
    }
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => Ok(()),
        // Another process created it meanwhile: the mode check decides.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create directory", root)(e)),
    }
}

/// Refuse a root that users other than its owner can write to: they could plant links or
/// files in it, or replace its lock.
fn check_root_mode(root: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(root)
        .map_err(Error::io("stat", root))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::InsecureRoot {
            root: root.to_owned(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

fn lock(root: &Path) -> Result<File, Error> {
    use rustix::fs::{FlockOperation, flock};
    use std::os::unix::fs::PermissionsExt;
    let path = root.join("LOCK");
    // 0600: another user who could open the lock file could flock it and hold the store.
    let file = open_rw_mode(&path, 0o600)?;
    let mode = file
        .metadata()
        .map_err(Error::io("stat", &path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        // A LOCK left by an older version (0644): tighten it.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(Error::io("chmod", &path))?;
    }
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(Error::Locked {
            root: root.to_owned(),
        }),
        Err(e) => Err(Error::io("lock", path)(e.into())),
    }
}

/// Files the node daemon keeps beside the store (`peerhost.toml`, `peerhost-state.json`, …):
/// a directory holding only those is still an empty one to initialise.
fn is_daemon_file(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        n.starts_with("peerhost") && (n.ends_with(".toml") || n.ends_with(".json"))
    })
}

fn is_temp(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with(".tmp-"))
}

/// Remove the temporaries in `dir` (everything in it when `all`).
pub(crate) fn remove_temps(dir: &Path, all: bool) -> Result<(), Error> {
    for entry in fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        if !all && !is_temp(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(Error::io("remove", &path))?;
    }
    Ok(())
}

/// Check a local name: 1 to 64 of `a-z A-Z 0-9 . _ -`, not starting with `.`, and not
/// something that parses as a key (which would make lookups ambiguous).
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && Key::parse(name).is_err();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_store_is_private_and_a_shared_root_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/store");
        drop(Store::open(&root).unwrap());
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("LOCK")), 0o600);

        // A LOCK an older version left world-readable is tightened on open.
        fs::set_permissions(root.join("LOCK"), fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&root).unwrap());
        assert_eq!(mode(&root.join("LOCK")), 0o600);

        // An existing 0755 root is fine (others cannot write to it); 0775 and 0757 are not.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        drop(Store::open(&root).unwrap());
        for bad in [0o775, 0o757, 0o777] {
            fs::set_permissions(&root, fs::Permissions::from_mode(bad)).unwrap();
            let e = Store::open(&root).unwrap_err();
            assert!(matches!(e, Error::InsecureRoot { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains("chmod go-w") && !msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn a_link_planted_in_a_log_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap();
        let kp = KeyPair::from_seed(&[5; 32]);
        let key = Key(kp.public_key());
        {
            let mut s = store.create_storage(NewLog::new(key).key_pair(kp)).unwrap();
            let mut tx = s.transaction();
            tx.put_block(0, 0, b"abc").unwrap();
            tx.put_node(peerhost_log::Node {
                index: 0,
                size: 3,
                hash: crate::leaf_hash(b"abc"),
            })
            .unwrap();
            tx.set_head(Head {
                length: 1,
                byte_length: 3,
                ..Head::default()
            });
            tx.commit().unwrap();
        }
        let outside = dir.path().join("precious");
        fs::write(&outside, b"not yours").unwrap();
        let meta = store.meta_path(&key);
        let plant = |p: &Path| {
            let saved = fs::read(p).unwrap();
            fs::remove_file(p).unwrap();
            std::os::unix::fs::symlink(&outside, p).unwrap();
            saved
        };
        let restore = |p: &Path, saved: Vec<u8>| {
            fs::remove_file(p).unwrap();
            fs::write(p, saved).unwrap();
        };
        for p in [meta.clone(), key_path(&meta)] {
            let saved = plant(&p);
            let e = store.open_storage(&key, None).unwrap_err();
            assert!(matches!(e, Error::Symlink { .. }), "{}: {e}", p.display());
            restore(&p, saved);
        }
        // The data file is opened when a block is read or written: refused then.
        let data = meta.with_extension("data");
        let saved = plant(&data);
        let mut s = store.open_storage(&key, None).unwrap();
        assert!(matches!(s.block(0), Err(Error::Symlink { .. })));
        assert!(matches!(s.clear(0, 1), Err(Error::Symlink { .. }) | Ok(())));
        drop(s);
        restore(&data, saved);
        let saved = plant(&meta);
        assert!(matches!(store.keys(), Err(Error::Symlink { .. })));
        restore(&meta, saved);
        // The whole logs directory replaced by a link to a copy elsewhere: refused too.
        drop(store);
        let logs = root.join("logs");
        let moved = dir.path().join("moved");
        fs::rename(&logs, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, &logs).unwrap();
        assert!(matches!(Store::open(&root), Err(Error::Symlink { .. })));
        assert_eq!(fs::read(&outside).unwrap(), b"not yours");
    }

    #[test]
    fn creates_layout_and_rejects_foreign_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("VERSION")).unwrap(),
            "peerhost-store 2\n"
        );
        assert!(root.join("logs").is_dir() && root.join("names").is_dir());
        drop(store);
        // Reopening works; a second opener in the same process is refused by the lock
        // (flock locks are per open file description).
        let a = Store::open(&root).unwrap();
        assert!(matches!(Store::open(&root), Err(Error::Locked { .. })));
        drop(a);

        let foreign = dir.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "hi").unwrap();
        assert!(matches!(
            Store::open(&foreign),
            Err(Error::NotAStore { .. })
        ));

        fs::write(root.join("VERSION"), "peerhost-store 9\n").unwrap();
        let e = Store::open(&root).unwrap_err();
        assert!(matches!(e, Error::UnsupportedVersion { .. }), "{e}");
    }

    #[test]
    fn names_bind_resolve_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = Key([1; 32]);
        let other = Key([2; 32]);
        store.set_name("posts", &key).unwrap();
        store.set_name("posts", &key).unwrap();
        assert!(matches!(
            store.set_name("posts", &other),
            Err(Error::NameTaken { .. })
        ));
        for bad in [
            "",
            ".hidden",
            "a/b",
            "sp ace",
            &"x".repeat(65),
            &key.to_hex(),
        ] {
            assert!(
                matches!(store.set_name(bad, &key), Err(Error::InvalidName { .. })),
                "{bad}"
            );
        }
        assert_eq!(store.names().unwrap(), vec![("posts".to_owned(), key)]);
        // The name exists, the log does not yet: resolving by key fails, by name works.
        assert_eq!(
            store.resolve("posts").unwrap(),
            (key, Some("posts".to_owned()))
        );
        assert!(matches!(
            store.resolve(&key.to_z32()),
            Err(Error::UnknownLog { .. })
        ));
        assert!(store.remove_name("posts").unwrap());
        assert!(!store.remove_name("posts").unwrap());
        // A damaged name file is a clear error.
        fs::write(dir.path().join("names/broken"), "zzz").unwrap();
        assert!(store.name_key("broken").unwrap_err().is_corruption());
    }

    #[test]
    fn create_is_atomic_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kp = KeyPair::from_seed(&[5; 32]);
        let key = Key(kp.public_key());
        // A crash mid-create leaves a temporary file, removed at the next open.
        fs::write(dir.path().join("tmp/abc-1-0"), b"half a log").unwrap();
        let s = store
            .create_storage(
                NewLog::new(key)
                    .key_pair(kp.clone())
                    .manifest(vec![1, 2, 3])
                    .name("mine"),
            )
            .unwrap();
        assert_eq!(s.key_pair().unwrap().public_key(), kp.public_key());
        assert_eq!(s.manifest(), Some(&[1u8, 2, 3][..]));
        assert!(matches!(
            store.open_storage(&key, None),
            Err(Error::AlreadyOpen { .. })
        ));
        drop(s);
        assert!(matches!(
            store.create_storage(NewLog::new(key)),
            Err(Error::LogExists { .. })
        ));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(key_path(&store.meta_path(&key)))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(!dir.path().join("tmp/abc-1-0").exists());
        assert_eq!(store.keys().unwrap(), vec![key]);
        assert_eq!(store.discovery_keys().unwrap(), vec![key.discovery_key()]);
        let (k, name) = store.resolve("mine").unwrap();
        let s = store.open_storage(&k, name.as_deref()).unwrap();
        assert_eq!(s.head(), &Head::default());
        assert_eq!(store.resolve(&key.to_z32()).unwrap().0, key);
    }

    #[test]
    fn damaged_secret_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kp = KeyPair::from_seed(&[5; 32]);
        let key = Key(kp.public_key());
        drop(store.create_storage(NewLog::new(key).key_pair(kp)).unwrap());
        let p = key_path(&store.meta_path(&key));
        let mut bytes = fs::read(&p).unwrap();
        bytes[40] ^= 1;
        fs::write(&p, &bytes).unwrap();
        let e = store.open_storage(&key, None).unwrap_err();
        assert!(e.is_corruption(), "{e}");
        fs::write(&p, [1u8; 10]).unwrap();
        assert!(store.open_storage(&key, None).unwrap_err().is_corruption());
    }
}
