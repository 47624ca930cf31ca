//! Why a connection ends, and why a command failed.

use peerhost_ids::DiscoveryKey;
use peerhost_store::CoreError;

use crate::messages::MessageError;

/// Why the replicator ended a connection. Every variant is something the remote did (or did not
/// do); the driver closes the transport and logs the error once.
///
/// [`Error::code`] gives the JS `hypercore-errors` code where JS has one, so tests can compare
/// failures with JS's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The protomux layer failed (malformed frame, bounds): see `protocol/protomux.md`.
    #[error("protomux: {0}")]
    Mux(#[from] peerhost_protomux::Error),
    /// A channel message that does not decode, or of a type past the ten hypercore defines.
    #[error("log {discovery_key}: {source}")]
    Message {
        /// The channel's log.
        discovery_key: DiscoveryKey,
        /// What was wrong.
        #[source]
        source: MessageError,
    },
    /// A channel open whose handshake does not decode.
    #[error("log {discovery_key}: malformed channel handshake")]
    InvalidHandshake {
        /// The channel's log.
        discovery_key: DiscoveryKey,
    },
    /// A message larger than its type ever needs (`Config::max_message_len`).
    #[error("log {discovery_key}: {name} message of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// The channel's log.
        discovery_key: DiscoveryKey,
        /// The message type's name.
        name: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The remote's capability does not prove it knows the log's key for this connection
    /// (JS `INVALID_CAPABILITY`).
    #[error("log {discovery_key}: remote sent an invalid replication capability")]
    InvalidCapability {
        /// The channel's log.
        discovery_key: DiscoveryKey,
    },
    /// A `data` message that failed verification: a bad proof, a bad signature, a bad manifest.
    /// Nothing of it was stored.
    #[error("invalid data from peer: {source}")]
    InvalidData {
        /// The channel's log.
        discovery_key: DiscoveryKey,
        /// Why it failed.
        #[source]
        source: Box<CoreError>,
    },
    /// A `data` message that does not answer the request it names (another block, an upgrade
    /// nobody asked for).
    #[error("log {discovery_key}: data for request {request} does not match the request")]
    UnexpectedData {
        /// The channel's log.
        discovery_key: DiscoveryKey,
        /// The request id.
        request: u64,
    },
    /// More requests waiting for an answer than `Config::max_pending_requests`.
    #[error("remote sent more than {max} requests without reading the answers")]
    TooManyRequests {
        /// The limit.
        max: usize,
    },
    /// More invalid requests than `Config::max_invalid_requests` (JS destroys the stream after
    /// 64, `MAX_INVALID_REQUESTS`).
    #[error("remote sent {count} invalid requests")]
    TooManyInvalidRequests {
        /// How many.
        count: u32,
    },
    /// Requests went unanswered past `Config::request_timeout` too many times: a slow or stuck
    /// peer.
    #[error("remote left {count} requests unanswered past the timeout")]
    TimedOut {
        /// How many timed out.
        count: u32,
    },
}

impl Error {
    /// The JS `hypercore-errors` code, where JS has one (`INVALID_SIGNATURE`, …).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::InvalidCapability { .. } => Some("INVALID_CAPABILITY"),
            Self::InvalidData { source, .. } => source.code(),
            Self::TimedOut { .. } => Some("REQUEST_TIMEOUT"),
            _ => None,
        }
    }
}

/// A command of the app ([`crate::Replicator::append`], …) that could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No log with this discovery key was added to the replicator.
    #[error("log {0} is not replicated here")]
    UnknownLog(DiscoveryKey),
    /// The log failed (not writable, storage).
    #[error(transparent)]
    Core(#[from] CoreError),
}
