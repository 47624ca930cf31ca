//! Why a connection ended.

/// Why a connection driven by [`crate::Node`] ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The secret stream failed: the handshake, a frame that does not decrypt (garbage after
    /// the handshake), a frame above the size limit, the receive timeout.
    #[error("secret stream: {0}")]
    SecretStream(#[from] peerhost_noise::Error),
    /// The replicator ended the connection: the remote broke the protocol, sent data that did
    /// not verify, or was too slow.
    #[error("replication: {message}")]
    Replication {
        /// The replicator's error, rendered.
        message: String,
        /// Its JS `hypercore-errors` code, if it has one.
        code: Option<&'static str>,
    },
    /// The node is shutting down.
    #[error("node closed")]
    Closed,
    /// The swarm ended the connection (another connection to the peer is kept, the peer was
    /// banned, the swarm stopped).
    #[error("the swarm ended it: {0}")]
    Swarm(peerhost_swarm::CloseReason),
}

impl ConnectionError {
    /// The JS `hypercore-errors` code, if the replicator gave one (`INVALID_SIGNATURE`, …).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Replication { code, .. } => *code,
            _ => None,
        }
    }
}
