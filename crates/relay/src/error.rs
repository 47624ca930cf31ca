//! Errors of the blind-relay client and server.

/// Why a relay session (one peer's connection to the relay) or a client channel ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The protomux layer failed (malformed frame, limits): the connection must end.
    #[error("protomux: {0}")]
    Mux(#[from] peerhost_protomux::Error),
    /// A `pair` or `unpair` message that does not decode (JS ends the stream on a decode error
    /// too).
    #[error("bad blind-relay message: {0}")]
    Decode(#[from] peerhost_encoding::DecodeError),
    /// The session or channel is closed.
    #[error("channel closed")]
    Closed,
}

/// Why a client request could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    /// A request with this token is already waiting (JS `ALREADY_PAIRING`).
    #[error("already pairing with this token")]
    AlreadyPairing,
    /// Too many requests waiting on this channel.
    #[error("too many pairing requests")]
    TooManyRequests,
    /// The channel is closed or destroyed (JS `CHANNEL_DESTROYED` / `CHANNEL_CLOSED`).
    #[error("channel closed")]
    Closed,
    /// The request was cancelled with `unpair` (JS `PAIRING_CANCELLED`).
    #[error("pairing cancelled")]
    Cancelled,
    /// The relay did not pair us in time (hyperdht's 15 s, `RELAY_ABORTED`).
    #[error("relay did not pair in time")]
    TimedOut,
}
