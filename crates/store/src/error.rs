//! The store's one failure domain: storage.

use std::fmt;
use std::io;
use std::path::PathBuf;

use peerhost_ids::Key;

/// How an error names a log: its local name when it was opened by name, else its key.
#[derive(Clone, PartialEq, Eq)]
pub struct LogLabel {
    key: Key,
    name: Option<String>,
}

impl LogLabel {
    /// A label for the log `key`, opened under `name` if any.
    pub fn new(key: Key, name: Option<&str>) -> Self {
        Self {
            key,
            name: name.map(str::to_owned),
        }
    }

    /// The log's key.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The local name the log was opened by, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for LogLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let z = self.key.to_z32();
        match &self.name {
            // A name plus enough of the key to tell two stores' "posts" apart.
            Some(name) => write!(f, "{name:?} ({}…)", &z[..12]),
            None => f.write_str(&z),
        }
    }
}

impl fmt::Debug for LogLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogLabel({self})")
    }
}

/// A storage failure. Each message is one line: what is wrong, then what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log is already open through this [`Store`](crate::Store).
    #[error("log {log} is already open in this process: reuse the open handle")]
    AlreadyOpen {
        /// The log.
        log: LogLabel,
    },
    /// A block's bytes on disk do not match the tree (hash or size mismatch, or missing bytes).
    #[error(
        "log {log} block {index} is corrupt on disk ({reason}): run `peerhost log verify` or \
         re-sync it from a peer"
    )]
    CorruptBlock {
        /// The log.
        log: LogLabel,
        /// The block index.
        index: u64,
        /// What exactly did not match.
        reason: &'static str,
    },
    /// A file that holds one value (header, manifest, secret key, name) failed its checks.
    #[error(
        "{what} at {path} is corrupt ({reason}): restore it from a backup, or delete the log and \
         re-sync it from a peer"
    )]
    CorruptFile {
        /// Which file, in words (e.g. "log header").
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A tree record failed its checksum or names another index.
    #[error(
        "log {log} tree node {index} is corrupt on disk ({reason}): run `peerhost log verify` or \
         re-sync it from a peer"
    )]
    CorruptNode {
        /// The log.
        log: LogLabel,
        /// The flat-tree index of the record.
        index: u64,
        /// What failed.
        reason: &'static str,
    },
    /// A header (signature) too large for a header slot, or a manifest too large to store.
    #[error(
        "log {log} metadata needs {size} bytes but at most {limit} fit: use a manifest with \
         fewer signers"
    )]
    HeaderTooLarge {
        /// The log.
        log: LogLabel,
        /// The encoded header size.
        size: usize,
        /// The largest header a slot holds.
        limit: usize,
    },
    /// A log name outside the accepted alphabet or length.
    #[error(
        "invalid log name {name:?}: use 1 to 64 characters from a-z A-Z 0-9 . _ - not starting \
         with '.'"
    )]
    InvalidName {
        /// The rejected name (cut to 80 characters).
        name: String,
    },
    /// An operating-system call failed.
    #[error("cannot {op} {path}: {source}: check that the disk is mounted, writable and not full")]
    Io {
        /// What we were doing, as a verb phrase ("read", "fsync", "create").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An operation that reaches past the log's length.
    #[error(
        "log {log}: {what} {index} is past its length {length}: check the length with \
         `peerhost log info`"
    )]
    OutOfRange {
        /// The log.
        log: LogLabel,
        /// What was asked for ("truncate to length", "block").
        what: &'static str,
        /// The index or length asked for.
        index: u64,
        /// The log's length.
        length: u64,
    },
    /// Another process holds the store's lock.
    #[error(
        "store {root} is in use by another process: stop that process (or wait for it) and retry"
    )]
    Locked {
        /// The store's root directory.
        root: PathBuf,
    },
    /// `create` for a key that already has a log in this store.
    #[error("log {log} already exists in this store: open it instead of creating it")]
    LogExists {
        /// The log.
        log: LogLabel,
    },
    /// A local name already bound to another log.
    #[error("the name {name:?} is already used by log {key}: choose another name")]
    NameTaken {
        /// The name.
        name: String,
        /// The log it names.
        key: Key,
    },
    /// A non-empty directory that is not a store.
    #[error(
        "{root} is not a peerhost store (it has files but no VERSION): pass a new or empty \
         directory"
    )]
    NotAStore {
        /// The directory.
        root: PathBuf,
    },
    /// No log with that name or key.
    #[error(
        "no log named or keyed {query:?} in this store: list the logs with `peerhost log list`"
    )]
    UnknownLog {
        /// What was looked up.
        query: String,
    },
    /// A symbolic link where the store keeps a file or directory: refused, never followed (a
    /// link planted in the store must not redirect a write to a file outside it).
    #[error(
        "{path} is a symbolic link inside the store: remove it (the store never follows links)"
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// The store's root directory is writable by other users, who could then plant files or
    /// links in it, or take its lock.
    #[error(
        "store {root} is writable by other users (mode {mode:03o}): run `chmod go-w {root}` \
         (or `chmod 700`) and retry"
    )]
    InsecureRoot {
        /// The store's root directory.
        root: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A store written by a newer (or unknown) format version.
    #[error("store {root} has format {found:?}, this build reads format 1: upgrade peerhost")]
    UnsupportedVersion {
        /// The store's root directory.
        root: PathBuf,
        /// The first line of its VERSION file (cut to 80 characters).
        found: String,
    },
}

impl Error {
    /// Wrap an I/O error with what we were doing and where.
    pub(crate) fn io<P: Into<PathBuf>>(
        op: &'static str,
        path: P,
    ) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// [`Self::io`] with the path made only when there is an error (a log's file paths are
    /// formatted from its discovery key: too dear for every successful read and write).
    pub(crate) fn io_with(
        op: &'static str,
        path: impl FnOnce() -> PathBuf,
    ) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io {
            op,
            path: path(),
            source,
        }
    }

    /// Whether this error says the data on disk is damaged (as opposed to an OS failure or a
    /// caller's mistake).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::CorruptBlock { .. } | Self::CorruptFile { .. } | Self::CorruptNode { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_with_advice() {
        let log = LogLabel::new(Key([7; 32]), Some("posts"));
        let e = Error::CorruptBlock {
            log: log.clone(),
            index: 12,
            reason: "hash mismatch",
        };
        let s = e.to_string();
        assert_eq!(
            s,
            "log \"posts\" (yhdoqba8yhdo…) block 12 is corrupt on disk (hash mismatch): run \
             `peerhost log verify` or re-sync it from a peer"
        );
        assert!(e.is_corruption());
        let e = Error::io("read", "/x/tree")(io::Error::other("boom"));
        assert!(!e.to_string().contains('\n'));
        assert!(!e.is_corruption());
        let unnamed = LogLabel::new(Key([7; 32]), None);
        assert_eq!(unnamed.to_string(), Key([7; 32]).to_z32());
    }
}
