//! One error enum per failure domain: the Noise handshake, the secretstream cipher, the framing,
//! the secret-stream state machine and its send path.

/// Why a Noise handshake step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A remote public key (static or ephemeral) that libsodium's
    /// `crypto_scalarmult_ed25519_noclamp` refuses: not a canonical point encoding, of small
    /// order, outside the prime-order subgroup, or giving the identity.
    #[error("invalid public key for Ed25519 DH")]
    InvalidPublicKey,
    /// The message ended before a key or tag it must carry (noise.js "Insufficient bytes").
    #[error("handshake message too short")]
    MessageTooShort,
    /// A ciphertext failed authentication: wrong keys, a different prologue, or tampering.
    #[error("handshake message failed to decrypt")]
    Decrypt,
    /// A ciphertext above Noise's 65535-byte limit (noise-handshake `cipher.js`).
    #[error("handshake payload too large")]
    PayloadTooLarge,
    /// An IK initiator needs the responder's static key.
    #[error("the initiator of this pattern needs the remote static key")]
    MissingRemoteStatic,
    /// Write called when a read was due, or the reverse.
    #[error("handshake step out of turn")]
    OutOfTurn,
    /// A step after the last message.
    #[error("handshake already complete")]
    Complete,
    /// A step after an earlier step failed.
    #[error("handshake failed earlier")]
    Failed,
}

/// Why a secretstream message failed to decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// Shorter than the 17 bytes of tag and MAC.
    #[error("ciphertext shorter than ABYTES")]
    TooShort,
    /// The MAC did not match: tampering, a dropped or reordered message, or the wrong key.
    #[error("ciphertext failed authentication")]
    Authentication,
}

/// Why a secret stream stopped. After any of these the stream accepts no further input.
///
/// The JS counterpart destroys the stream with the error named in each variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Noise handshake failed (JS: "Noise handshake failed").
    #[error("noise handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The first frame after the handshake was not 56 bytes (JS: "Invalid header message
    /// received").
    #[error("invalid header message: {len} bytes, expected 56")]
    InvalidHeaderLength {
        /// The frame's length.
        len: usize,
    },
    /// The remote's stream id did not match the handshake (JS: "Invalid header received").
    #[error("invalid stream id in header")]
    InvalidStreamId,
    /// A data frame shorter than 17 bytes (JS: "Invalid message received").
    #[error("data frame shorter than 17 bytes")]
    MessageTooShort,
    /// A data frame failed to decrypt (JS: sodium throws from `crypto_secretstream_..._pull`).
    #[error("data frame failed to decrypt: {0}")]
    Decrypt(#[from] DecryptError),
    /// A frame announced more bytes than this stream accepts in its current phase. JS has no
    /// such cap beyond the 24-bit length; see `protocol/secret-stream.md`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// Nothing was received for the configured timeout (JS: "Stream timed out").
    #[error("stream timed out")]
    TimedOut,
    /// The remote ended its side before the handshake finished or in the middle of a frame.
    #[error("remote ended the stream early")]
    UnexpectedEnd,
    /// Input or a timeout after the stream had already ended.
    #[error("stream already ended")]
    Ended,
}

/// Why [`crate::SecretStream::send`] refused a message. The stream itself is unaffected unless
/// the variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Above [`crate::MAX_MESSAGE_LEN`] (JS: "Message is too large for an atomic write").
    #[error("message of {len} bytes exceeds the atomic write limit of {max}")]
    TooLarge {
        /// The message length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes waiting in [`crate::SecretStream::poll_transmit`] would exceed
    /// [`crate::Config::max_send_buffer`]; drain transmits and retry.
    #[error("send buffer full")]
    BufferFull,
    /// The stream failed or ended.
    #[error("stream closed")]
    Closed,
}
