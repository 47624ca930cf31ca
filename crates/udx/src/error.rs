//! Error types: why a call failed ([`Error`]) and why a stream closed ([`StreamError`]).

/// Why a stream closed abnormally. A graceful close (both ENDs acknowledged, or our own
/// `destroy`) carries no error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer sent DESTROY (libudx closes with `UV_ECONNRESET`).
    #[error("stream reset by peer")]
    Reset,
    /// A packet went unacknowledged through too many retransmission timeouts
    /// (libudx `UV_ETIMEDOUT`).
    #[error("stream timed out")]
    TimedOut,
}

impl StreamError {
    /// The error code udx-native reports for the same condition.
    pub fn code(self) -> &'static str {
        match self {
            Self::Reset => "ECONNRESET",
            Self::TimedOut => "ETIMEDOUT",
        }
    }
}

/// Why an [`Endpoint`](crate::Endpoint) call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No stream has that local id.
    #[error("unknown stream id")]
    UnknownStream,
    /// A stream with that local id already exists.
    #[error("stream id already in use")]
    IdInUse,
    /// The endpoint holds its maximum number of streams.
    #[error("too many streams")]
    TooManyStreams,
    /// The stream has no remote yet (`connect` first).
    #[error("stream is not connected")]
    NotConnected,
    /// `connect` was already called.
    #[error("stream is already connected")]
    AlreadyConnected,
    /// A previous `change_remote` has not completed yet.
    #[error("remote change already in progress")]
    RemoteChanging,
    /// The stream was ended; no more writes (libudx `UV_EPIPE`).
    #[error("stream already ended")]
    Ended,
    /// The stream closed gracefully or was destroyed locally.
    #[error("stream is closed")]
    Closed,
    /// The stream closed with an error.
    #[error("stream failed: {0}")]
    Stream(#[from] StreamError),
    /// Port 0 is not a valid remote.
    #[error("invalid remote address")]
    InvalidAddress,
    /// A message longer than [`MAX_MESSAGE`](crate::MAX_MESSAGE) bytes.
    #[error("message too large")]
    MessageTooLarge,
    /// Too many messages are waiting to be sent.
    #[error("message queue full")]
    QueueFull,
}
