//! [`Blocks`] and [`AppendBlocks`] for a log in the local store (feature `store`).

use peerhost_store::{Core, CoreError};

use crate::blocks::{AppendBlocks, Blocks};

impl Blocks for Core {
    type Error = CoreError;

    fn length(&self) -> u64 {
        // The inherent method (inherent impls win path resolution): no recursion.
        Self::length(self)
    }

    fn block(&mut self, seq: u64) -> Result<Option<Vec<u8>>, CoreError> {
        self.get(seq)
    }

    fn fork(&self) -> u64 {
        Self::fork(self)
    }
}

impl AppendBlocks for Core {
    fn append_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<u64, CoreError> {
        self.append(blocks)
    }
}
