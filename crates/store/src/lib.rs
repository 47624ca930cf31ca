//! Many hypercore logs in one directory on disk: crash-safe and memory-bounded.
//!
//! This crate owns the on-disk format (`protocol/store.md`): a root with a `VERSION`, a lock,
//! local names, and per log a metadata file holding its committed head (two header slots), its
//! manifest, which blocks it holds (bitfield), where each block starts (block index) and its
//! Merkle tree nodes; a data file with its block bytes; and, for a log we write, the secret
//! key. A store of the earlier format (a directory of files per log) is converted on open.
//!
//! It does file I/O and nothing else: it does not hash trees, sign or verify heads (the `log`
//! crate does), and it has no network or runtime. What it guarantees:
//!
//! - **One commit point.** A [`Transaction`] writes blocks and nodes where the committed head
//!   does not reach, then commits by writing the `header` (two checksummed alternating slots).
//!   A process killed at any moment reopens to its last committed head, and so does a machine
//!   that loses power under [`Durability::Sync`]. A replica's verified downloads commit the same
//!   way in two steps ([`Core::begin_commit`], [`Commit::run`], [`Core::finish_commit`]), so
//!   the writes and fsyncs can run outside the caller's locks while reads stay on the committed
//!   state.
//! - **Every read checked.** A block is checked against its leaf node's hash on every read
//!   (unless a caller that verifies it anyway says so: [`Core::proof_with`]); a tree record
//!   against its checksum and index; a header slot against its checksum. Damage is a typed
//!   [`Error`] naming the log and the index, never a panic or a wrong answer.
//! - **Bounded memory and files.** Tree nodes, index entries and bitfield pages are read on
//!   demand through one page cache for the whole store, and files are opened through one pool
//!   of bounded size ([`Options`]): an open log costs a few hundred bytes and no file
//!   descriptor of its own, so a node can hold tens of thousands open. No file is ever read
//!   whole; write buffers are bounded.
//! - **Reading a block is `O(1)`.** Its offset comes from the block index (checked, and
//!   recomputed from the tree when missing), not from a walk over the nodes left of it.
//!
//! [`Store`] opens a root; [`CoreStorage`] is one log's files; [`Core`] combines
//! them with the `log` crate's tree into a signed, verifiable log.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod bitfield;
mod cache;
mod commit;
mod data;
mod error;
mod flat;
mod fsutil;
mod header;
mod hypercore;
mod index;
mod layout;
mod meta;
mod migrate;
pub mod seeded;
mod shared;
mod storage;
mod store;
mod tree;

pub use commit::{BlockWrite, Changes, Commit};
pub use error::{Error, LogLabel};
pub use header::Head;
pub use hypercore::{
    Core, CoreError, CreateOptions, Info, Report, VERIFY_STEP_NODES, Verification,
};
pub use storage::{CoreStorage, Transaction, leaf_hash};
pub use store::{Durability, NewLog, Options, Store, VERSION_LINE};

/// Re-exported from the `log` crate: the node type the tree file stores.
pub use peerhost_log::{Node, NodeSource};

/// Hooks for the store's own tests. Not a stable API.
#[doc(hidden)]
pub mod testing {
    /// Make the next conversion of a format-1 store on this thread stop with an error at
    /// `step` (1-based, counted across its logs), as a crash there would; `None` to stop none.
    pub fn fail_conversion_at(step: Option<u64>) {
        crate::migrate::fail_at(step);
    }
}

/// Entry points for the fuzz targets in `fuzz/`: decode untrusted on-disk bytes exactly as a
/// reopen does. Not a stable API.
#[doc(hidden)]
pub mod fuzz {
    /// Decode a `header` file image (both slots, newest valid wins); whether one was valid.
    pub fn header_file(image: &[u8]) -> bool {
        image
            .chunks(crate::header::SLOT_SIZE)
            .take(2)
            .filter_map(|slot| crate::header::decode_slot(slot).ok())
            .any(|(_, payload)| crate::header::Header::decode(payload).is_ok())
    }

    /// Decode a 16-byte block index entry for block `block`; whether it is a valid one.
    pub fn index_entry(block: u64, entry: &[u8]) -> bool {
        crate::index::decode(block, entry).is_some()
    }

    /// Decode a 64-byte `tree` record at flat index `index`; whether it is a node.
    pub fn tree_record(index: u64, record: &[u8]) -> bool {
        let Ok(record) = <&[u8; crate::layout::RECORD]>::try_from(record) else {
            return false;
        };
        matches!(crate::tree::decode_record(index, record), Ok(Some(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_points_accept_valid_and_reject_garbage() {
        let h = header::Header {
            key: peerhost_ids::Key([1; 32]),
            head: Head::default(),
            flags: 0,
        };
        let slot = header::encode_slot(3, &h.encode()).unwrap();
        let mut image = vec![0u8; header::SLOT_SIZE];
        image.extend_from_slice(&slot);
        assert!(fuzz::header_file(&image));
        assert!(!fuzz::header_file(&[0x55; 9000]));
        let node = Node {
            index: 4,
            size: 1,
            hash: [2; 32],
        };
        assert!(fuzz::tree_record(4, &tree::encode_record(&node)));
        assert!(!fuzz::tree_record(5, &tree::encode_record(&node)));
        assert!(!fuzz::tree_record(4, &[1; 10]));
        assert!(fuzz::index_entry(3, &index::encode(3, 99)));
        assert!(!fuzz::index_entry(4, &index::encode(3, 99)));
    }
}
