//! What can stop a lookup or a write.

use crate::messages::DecodeError;

/// A lookup or a write could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Block `seq` is not held here. Fetch it (verified, from peers) and call again: nothing
    /// was changed, and an iterator resumes where it stopped.
    #[error("block {seq} is not held here: fetch it and try again")]
    Missing {
        /// The block to fetch.
        seq: u64,
    },
    /// Block `seq` is not a well-formed Hyperbee block.
    #[error("block {seq} is not a hyperbee block ({source}): is this log a hyperbee?")]
    Decode {
        /// The block.
        seq: u64,
        /// What is wrong with it.
        source: DecodeError,
    },
    /// Block `seq` is well-formed but its tree is not one hyperbee writes (a pointer out of
    /// range, a cycle, a tree deeper than any real one).
    #[error("block {seq} holds a damaged tree: {what}")]
    Corrupt {
        /// The block.
        seq: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Reading or appending to the log failed.
    #[error("the log failed: {0}")]
    Log(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An earlier operation of this batch failed part way: the batch is dropped, start again.
    #[error("an earlier operation of this batch failed: start a new batch")]
    Poisoned,
}

impl Error {
    /// The JS error code of the same failure (`hypercore-errors`), where there is one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Missing { .. } => Some("BLOCK_NOT_AVAILABLE"),
            Self::Decode { .. } | Self::Corrupt { .. } => Some("DECODING_ERROR"),
            Self::Log(_) | Self::Poisoned => None,
        }
    }

    pub(crate) fn log<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        Self::Log(Box::new(e))
    }
}
