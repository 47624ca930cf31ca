//! A Hyperbee-compatible B-tree over a log: the block format and tree algorithm of the JS
//! `hyperbee` package 2.x, so that a JS Hyperbee reads what this writes and the other way
//! round, byte for byte. The format and the algorithm are in `protocol/bee.md`.
//!
//! What this crate owns:
//! - [`messages`]: the blocks (header, nodes with their index of tree nodes), byte-exact;
//! - [`Bee`]: `get`, range and prefix iteration ([`Range`], [`Iter`]), versions (a past log
//!   length), and writes: `put`, `del`, compare-and-swap, [`Batch`]es appended at once,
//!   producing the same blocks as JS for the same operations;
//! - [`Sub`]: sub-bees (key prefixes, as `bee.sub(name)`).
//!
//! What it does not: do I/O. The tree reads blocks through [`Blocks`]; a block not held there
//! stops the call with [`Error::Missing`] naming it (nothing changed), so that a reader
//! fetching sparsely from peers asks for it and calls again. Implementations: an in-memory
//! `Vec<Vec<u8>>` (and a sparse `Vec<Option<Vec<u8>>>`) and, with the default feature `store`,
//! a `peerhost_store::Core`. Nor does it speak hyperbee's replication extension (lookups
//! answered by peers), watch a log, or diff versions.
//!
//! ```no_run
//! use peerhost_bee::{Bee, Range};
//!
//! let mut bee = Bee::new(Vec::<Vec<u8>>::new());
//! bee.put(b"posts/0001", b"hello")?;
//! bee.put(b"posts/0002", b"world")?;
//! assert_eq!(bee.get(b"posts/0001")?.and_then(|e| e.value), Some(b"hello".to_vec()));
//! let newest = bee.range(Range::prefix(b"posts/").reverse().limit(1))?;
//! assert_eq!(newest[0].key, b"posts/0002");
//! # Ok::<(), peerhost_bee::Error>(())
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod blocks;
mod cache;
mod error;
mod iter;
pub mod messages;
#[cfg(test)]
mod model_tests;
#[cfg(feature = "store")]
mod store;
mod sub;
mod tree;
mod write;

pub use blocks::{AppendBlocks, Blocks};
pub use error::Error;
pub use iter::{Iter, Range};
pub use messages::{DecodeError, Header, Metadata};
pub use sub::{SEP, Sub};
pub use tree::{Bee, Config, Entry};
pub use write::{Batch, Cas};

/// Entry points for the fuzz targets in `fuzz/`. Not a stable API.
#[doc(hidden)]
pub mod fuzz {
    use crate::messages::{Header, Node, YoloIndex};
    use crate::{Bee, Range};

    /// Decode `data` as a node block, its index and a header; what decodes must encode to
    /// bytes that decode to the same value.
    pub fn node(data: &[u8]) {
        if let Ok(n) = Node::decode(data) {
            assert_eq!(Node::decode(&n.encode()).as_ref(), Ok(&n));
            if let Ok(i) = YoloIndex::decode(&n.index) {
                assert_eq!(YoloIndex::decode(&i.encode()).as_ref(), Ok(&i));
            }
        }
        if let Ok(h) = Header::decode(data) {
            let again = Header::decode(&h.encode());
            assert_eq!(again.as_ref(), Ok(&h));
        }
    }

    /// A log of a valid header, then `data` cut into blocks (each prefixed by a length byte):
    /// lookups, walks and a write over it must end (in a result or an error), never panic or
    /// loop.
    pub fn tree(data: &[u8]) {
        let mut log = vec![Header::new(None).encode()];
        let mut rest = data;
        while let Some((&n, tail)) = rest.split_first() {
            let n = usize::from(n).min(tail.len());
            log.push(tail[..n].to_vec());
            rest = &tail[n..];
        }
        let mut bee = Bee::new(log);
        for key in [&b""[..], b"a", b"m", b"\xff"] {
            let _ = bee.get(key);
        }
        for r in [
            Range::all(),
            Range::all().reverse(),
            Range::all().gte(b"c".to_vec()).lt(b"x".to_vec()),
        ] {
            let mut it = bee.iter(r);
            // A cycle cannot make a walk longer than the blocks it can visit.
            for _ in 0..10_000 {
                match it.next(&mut bee) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
        let mut b = bee.batch();
        let _ = b.put(b"k", b"v");
        let _ = b.del(b"m");
        let _ = b.finish();
    }
}
