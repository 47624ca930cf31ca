//! Where the tree's blocks come from: any log, held here in full, in part, or not at all.

use std::convert::Infallible;

/// A log's blocks by sequence number: all the tree needs to read.
///
/// A block that is not held here is `Ok(None)`, not an error: the tree then stops with
/// [`Error::Missing`](crate::Error::Missing) naming it, so that the caller can fetch it (from
/// peers, verified) and call again.
pub trait Blocks {
    /// A failure to read (I/O, damage); not "the block is not here", which is `Ok(None)`.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Blocks in the log (whether held here or not): the version the tree is read at.
    fn length(&self) -> u64;

    /// Block `seq`, or `None` if it is not held here.
    fn block(&mut self, seq: u64) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The log's fork id: when it changes (a truncation), decoded blocks cached from before are
    /// dropped. A log that never truncates keeps the default.
    fn fork(&self) -> u64 {
        0
    }
}

/// A log this side writes.
pub trait AppendBlocks: Blocks {
    /// Append `blocks` at the end, as one batch; returns the new length.
    fn append_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<u64, Self::Error>;
}

/// An in-memory log (tests, tools, building an index before writing it out).
impl Blocks for Vec<Vec<u8>> {
    type Error = Infallible;

    fn length(&self) -> u64 {
        self.len() as u64
    }

    fn block(&mut self, seq: u64) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(usize::try_from(seq).ok().and_then(|i| self.get(i)).cloned())
    }
}

impl AppendBlocks for Vec<Vec<u8>> {
    fn append_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<u64, Infallible> {
        self.extend_from_slice(blocks);
        Ok(self.len() as u64)
    }
}

/// A sparse in-memory log: `length` blocks, of which only some are held (`None`: not here).
/// What a reader that fetches blocks on demand looks like.
impl Blocks for Vec<Option<Vec<u8>>> {
    type Error = Infallible;

    fn length(&self) -> u64 {
        self.len() as u64
    }

    fn block(&mut self, seq: u64) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(usize::try_from(seq)
            .ok()
            .and_then(|i| self.get(i))
            .cloned()
            .flatten())
    }
}

impl<T: Blocks + ?Sized> Blocks for &mut T {
    type Error = T::Error;

    fn length(&self) -> u64 {
        (**self).length()
    }

    fn block(&mut self, seq: u64) -> Result<Option<Vec<u8>>, T::Error> {
        (**self).block(seq)
    }

    fn fork(&self) -> u64 {
        (**self).fork()
    }
}

impl<T: AppendBlocks + ?Sized> AppendBlocks for &mut T {
    fn append_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<u64, T::Error> {
        (**self).append_blocks(blocks)
    }
}
