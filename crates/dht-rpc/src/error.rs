//! Errors of the core API.

/// Why a request failed. None of these travel on the wire: a node that answers with an error
/// code produces a [`crate::Reply`] whose `error` is non-zero, not a `RequestError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No response after every retry (JS `REQUEST_TIMEOUT`).
    #[error("request timed out")]
    Timeout,
    /// Cancelled locally (JS `REQUEST_DESTROYED`).
    #[error("request destroyed")]
    Destroyed,
    /// Too many requests in flight already (ours: JS queues without bound).
    #[error("too many requests in flight")]
    Overloaded,
    /// The datagram would exceed [`crate::messages::MAX_DATAGRAM`] bytes, which udx-native
    /// would truncate.
    #[error("request too large for one datagram")]
    TooLarge,
}

impl RequestError {
    /// The JS error code (`err.code`), for comparing failures with dht-rpc.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "REQUEST_TIMEOUT",
            Self::Destroyed => "REQUEST_DESTROYED",
            Self::Overloaded => "OVERLOADED",
            Self::TooLarge => "TOO_LARGE",
        }
    }
}

/// Why a reply could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The datagram would exceed [`crate::messages::MAX_DATAGRAM`] bytes.
    #[error("reply too large for one datagram")]
    TooLarge,
}
