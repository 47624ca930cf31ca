//! Errors: one enum for what the remote did (the connection ends), one for commands.

use peerhost_encoding::DecodeError;

/// The remote broke the protocol, or a bound was exceeded; the connection must end.
///
/// Returned by [`Mux::handle_input`](crate::Mux::handle_input). When it is returned the mux has
/// already shut down as JS does when `_ondata` throws (`_safeDestroy` then `_shutdown`): every
/// open channel got a [`ChannelClosed`](crate::Event::ChannelClosed) `{ remote: true }` event,
/// queued transmits were dropped, and later input is refused with [`Error::Closed`].
///
/// Variants that mirror a JS throw say so; the others are bounds JS does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of a frame could not be read (JS: `Out of bounds`, or a 64-bit value above
    /// 2^53 - 1).
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    /// An open used remote id 0, the control channel. JS means to reject it but its reject
    /// path throws on the missing id (`uint must be between 0 and …`), which ends the
    /// connection; we end it too.
    #[error("open on the control channel (id 0)")]
    OpenControlChannel,
    /// An open used a remote id that is in use, or that is more than one past the highest
    /// remote id seen (JS: `Invalid open message`).
    #[error("invalid open message: remote id {remote_id} is in use or skips ahead")]
    InvalidOpen {
        /// The id the remote sent.
        remote_id: u64,
    },
    /// A reject named a local id that has no open awaiting an answer (JS:
    /// `Invalid reject message`).
    #[error("invalid reject message: local id {local_id} has no pending open")]
    InvalidReject {
        /// The id the remote sent.
        local_id: u64,
    },
    /// More remote opens await an answer than [`Config::max_backlog`](crate::Config) allows
    /// (JS: `Remote exceeded backlog`, with a bound of `Infinity`).
    #[error("remote exceeded the backlog of unanswered opens")]
    BacklogExceeded,
    /// The remote's channel ids would grow past [`Config::max_channels`](crate::Config)
    /// (no bound in JS).
    #[error("remote opened more channels than allowed")]
    TooManyChannels,
    /// Messages and opens held for channels not yet answered exceed
    /// [`Config::max_pending_bytes`](crate::Config) (JS only pauses the stream, see
    /// [`Mux::is_paused`](crate::Mux::is_paused)).
    #[error("too many bytes buffered for channels not yet opened")]
    BufferOverflow,
    /// Batches nested deeper than [`MAX_BATCH_DEPTH`](crate::MAX_BATCH_DEPTH) (JS recurses
    /// until its stack overflows).
    #[error("batches nested too deep")]
    BatchTooDeep,
    /// The mux was shut down earlier (an error, or
    /// [`handle_stream_closed`](crate::Mux::handle_stream_closed)).
    #[error("the mux is closed")]
    Closed,
}

/// A command ([`Mux::open`](crate::Mux::open), [`Mux::send`](crate::Mux::send), …) could not be
/// carried out. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A channel of this protocol and id is open and the open asked for uniqueness (JS
    /// `createChannel` returns `null`).
    #[error("a channel for this protocol and id is already open")]
    AlreadyOpen,
    /// Opening would need more than [`Config::max_channels`](crate::Config) local ids.
    #[error("too many local channels")]
    TooManyChannels,
    /// The handle names no open channel (it was closed, rejected, or belongs to another mux).
    #[error("no such open channel")]
    UnknownChannel,
    /// A message type above 2^53 - 1, which a JS peer cannot decode.
    #[error("message type out of the range a JS peer can read")]
    TypeOutOfRange,
    /// The mux is shut down.
    #[error("the mux is closed")]
    Closed,
}
