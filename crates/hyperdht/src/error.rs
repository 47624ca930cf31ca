//! Errors, one enum per failure domain: DHT operations ([`Error`]) and connections
//! ([`ConnectError`]). Each has `code()`, the JS error code where JS has one, so interop tests
//! can compare failures.

use peerhost_dht_rpc::{QueryError, RequestError};

/// Why a DHT operation (lookup, announce, put, get, listen) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The iterative query failed (no node answered, every commit failed, …).
    #[error("query failed: {0}")]
    Query(#[from] QueryError),
    /// A single request failed.
    #[error("request failed: {0}")]
    Request(#[from] RequestError),
    /// Every node that answered the put refused it: the sequence number was already used for
    /// another value (`SEQ_REUSED`, code 16).
    #[error("sequence number reused with a different value")]
    SeqReused,
    /// Every node that answered the put refused it: it holds a higher sequence number
    /// (`SEQ_TOO_LOW`, code 17).
    #[error("sequence number lower than the stored one")]
    SeqTooLow,
    /// Too many operations in flight on this node (ours; JS has no bound).
    #[error("too many operations in flight")]
    Overloaded,
    /// A server with this key pair is already listening on this node.
    #[error("key pair already used by a listening server")]
    KeyPairAlreadyUsed,
    /// The node shut down before the operation finished.
    #[error("node destroyed")]
    Destroyed,
}

impl Error {
    /// The JS error code (`err.code`) or ours where JS has none.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Query(QueryError::TooFewNodes) => "TOO_FEW_NODES",
            Self::Query(_) => "QUERY_FAILED",
            Self::Request(e) => e.code(),
            Self::SeqReused => "SEQ_REUSED",
            Self::SeqTooLow => "SEQ_TOO_LOW",
            Self::Overloaded => "OVERLOADED",
            Self::KeyPairAlreadyUsed => "KEYPAIR_ALREADY_USED",
            Self::Destroyed => "NODE_DESTROYED",
        }
    }
}

/// Why `connect(publicKey)` failed (hyperdht `lib/errors.js`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No node knows a route to the key (`PEER_NOT_FOUND`).
    #[error("peer not found")]
    PeerNotFound,
    /// Routes were found but no handshake completed (`PEER_CONNECTION_FAILED`).
    #[error("could not connect to the peer")]
    PeerConnectionFailed,
    /// The handshake reply did not decrypt or authenticate (`HANDSHAKE_INVALID`).
    #[error("invalid handshake")]
    HandshakeInvalid,
    /// The server speaks another payload version (`SERVER_INCOMPATIBLE`).
    #[error("server is incompatible")]
    ServerIncompatible,
    /// The server answered with an error or without UDX data (`SERVER_ERROR`).
    #[error("server error: {0}")]
    ServerError(&'static str),
    /// The server is behind a NAT and offered no way to punch through (`CANNOT_HOLEPUNCH`).
    #[error("cannot holepunch to the peer")]
    CannotHolepunch,
    /// Both sides are firewalled and not on one LAN and holepunching is off (ours). No longer
    /// returned since holepunching is implemented (`holepunch/`); kept so matches still build.
    #[error("both peers are firewalled; holepunching is not implemented")]
    HolepunchRequired,
    /// The LAN shortcut failed, the peer never connected within the wait, or holepunching
    /// gave up: probe timeout, both NATs randomize, the remote stopped or could not punch,
    /// or the punches ran out (`HOLEPUNCH_ABORTED` and the JS codes it stands for here).
    #[error("holepunch aborted")]
    HolepunchAborted,
    /// Too many operations in flight on this node (ours).
    #[error("too many operations in flight")]
    Overloaded,
    /// The UDX stream could not be set up or broke before the secret stream opened (ours).
    #[error("stream failed: {0}")]
    Stream(String),
    /// The node shut down first (`NODE_DESTROYED`).
    #[error("node destroyed")]
    Destroyed,
}

impl ConnectError {
    /// The JS error code (`err.code`) or ours where JS has none.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PeerNotFound => "PEER_NOT_FOUND",
            Self::PeerConnectionFailed => "PEER_CONNECTION_FAILED",
            Self::HandshakeInvalid => "HANDSHAKE_INVALID",
            Self::ServerIncompatible => "SERVER_INCOMPATIBLE",
            Self::ServerError(_) => "SERVER_ERROR",
            Self::CannotHolepunch => "CANNOT_HOLEPUNCH",
            Self::HolepunchRequired => "HOLEPUNCH_REQUIRED",
            Self::HolepunchAborted => "HOLEPUNCH_ABORTED",
            Self::Overloaded => "OVERLOADED",
            Self::Stream(_) => "STREAM_FAILED",
            Self::Destroyed => "NODE_DESTROYED",
        }
    }
}
