//! Protomux, sans-IO: many channels over one message stream, byte-compatible with the
//! `protomux` npm package 3.12.1.
//!
//! # What this crate owns
//! - the frame format (`uint channel ‖ uint type ‖ payload`) and the control channel 0: open,
//!   reject, close and batch ([`frame`]);
//! - the channel tables and the pairing rules: a channel is named by a protocol and an optional
//!   id; our open and the remote's open of the same name become one channel, whoever opens first
//!   ([`Mux`]);
//! - batching (`cork` / `uncork`), and the bounds on everything the remote can make us hold.
//!
//! # What it does not own
//! - I/O: it reads no socket and starts no task. Each input is one whole stream message, already
//!   decrypted and de-framed (by the secret-stream layer in production, or by any framing in
//!   tests); each output is one message to write.
//! - message encodings: handshakes and message payloads are bytes. The protocol on top (e.g.
//!   hypercore's `hypercore/alpha`, ten message types) encodes and decodes them.
//! - time: protomux has no timers.
//!
//! # Use
//! ```no_run
//! use peerhost_protomux::{Event, Mux};
//!
//! let mut mux = Mux::default();
//! mux.pair("hypercore/alpha", None); // be told about the remote's opens
//! let ch = mux.open("hypercore/alpha", Some(&[7; 32]), b"handshake").unwrap();
//! mux.send(ch, 0, b"sync message").unwrap();
//! # let message_from_the_stream: &[u8] = &[];
//! while let Some(frame) = mux.poll_transmit() { /* write `frame` as one stream message */ }
//! mux.handle_input(message_from_the_stream).unwrap(); // an error ends the connection
//! while let Some(event) = mux.poll_event() {
//!     match event {
//!         Event::RemoteOpen { protocol, id, .. } => { mux.open(&protocol, id.as_deref(), b"hs").ok(); }
//!         Event::Message { channel, message_type, payload } => { /* … */ }
//!         _ => {}
//!     }
//! }
//! ```
//!
//! The wire format, the pairing rules, the bounds and our deliberate differences from JS are
//! written down in `protocol/protomux.md`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod error;
mod event;
pub mod frame;
mod mux;

pub use error::{CommandError, Error};
pub use event::{ChannelHandle, Event};
pub use mux::{Mux, OpenOptions};

/// Bytes of messages held for channels the remote opened and we have not answered, above which
/// JS pauses the stream (`MAX_BUFFERED`); see [`Mux::is_paused`]. Counted as JS counts them:
/// 512 plus the message length each.
pub const MAX_BUFFERED: usize = 32_768;

/// The size at which a batch frame is cut (JS `MAX_BATCH`, 8 MiB). As in JS the check happens
/// before each entry is added, so a frame may exceed it by one entry.
pub const MAX_BATCH: usize = 8 * 1024 * 1024;

/// What JS adds to each buffered message's length when it counts buffered bytes (`byteSize`).
pub const BUFFER_OVERHEAD: usize = 512;

/// How deep batches may nest inside batches. JS never sends a nested batch but reads one by
/// recursion, without bound; we stop at this depth with [`Error::BatchTooDeep`].
pub const MAX_BATCH_DEPTH: usize = 8;

/// Limits. The defaults mirror JS where JS has a finite limit and are documented bounds where
/// JS has none.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Soft limit on buffered bytes for unanswered remote opens: above it
    /// [`Mux::is_paused`] is true (JS `MAX_BUFFERED`, 32 KiB).
    pub max_buffered: usize,
    /// Hard limit on the bytes held for unanswered remote opens: their buffered messages plus
    /// the opens themselves, counted like JS counts buffered messages (512 + length each).
    /// Above it the connection ends with [`Error::BufferOverflow`]. JS has no hard limit (it
    /// relies on the paused stream). Default 16 MiB.
    pub max_pending_bytes: usize,
    /// Remote opens that may await our answer at once; one more ends the connection with
    /// [`Error::BacklogExceeded`] (JS `MAX_BACKLOG = Infinity`). Default 4096.
    pub max_backlog: usize,
    /// Channel ids per direction: the length of the remote-id table (a remote open past it ends
    /// the connection with [`Error::TooManyChannels`]) and of the local-id table
    /// ([`CommandError::TooManyChannels`]). No bound in JS. Default 65536.
    pub max_channels: usize,
    /// Batch frame size limit ([`MAX_BATCH`]).
    pub max_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_buffered: MAX_BUFFERED,
            max_pending_bytes: 16 * 1024 * 1024,
            max_backlog: 4096,
            max_channels: 65_536,
            max_batch: MAX_BATCH,
        }
    }
}
