//! Noise handshakes and @hyperswarm/secret-stream, sans-IO.
//!
//! This crate owns:
//! - the Noise handshakes **XX** and **IK** exactly as noise-handshake 4.2.0 with the
//!   noise-curve-ed curve runs them: BLAKE2b-512, ChaCha20-Poly1305, and DH on *Ed25519* keys
//!   ([`Handshake`], [`HandshakeResult`]);
//! - libsodium's `crypto_secretstream_xchacha20poly1305` ([`Push`], [`Pull`]);
//! - the `uint24le` framing ([`FrameDecoder`], [`encode_frame`]);
//! - @hyperswarm/secret-stream 6.9.2 as a state machine ([`SecretStream`]): the XX handshake
//!   (or keys from a handshake run elsewhere, as HyperDHT does), the id+header frame, encrypted
//!   messages, keep-alives and the receive timeout.
//!
//! It owns no socket, clock, task or runtime: bytes and `Instant`s go in, bytes and events come
//! out (see the drain contract on [`SecretStream`]). It does not own what runs over the stream
//! (protomux), HyperDHT's `noisePayload` encoding or its `PEER_HANDSHAKE` routing (it hands them
//! [`Handshake`] with a caller-chosen prologue and payload), or secret-stream's unordered
//! `send`/`trySend` datagrams over UDX (see `protocol/secret-stream.md`). The wire format is
//! specified in `protocol/secret-stream.md`.
//!
//! Untrusted input enters through [`SecretStream::handle_input`], [`FrameDecoder::decode`],
//! [`Handshake::read_message`] and [`Pull::pull`]; [`fuzz`] wraps each for fuzz targets.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod cipher;
mod dh;
mod error;
mod frame;
pub mod fuzz;
mod handshake;
mod kdf;
pub mod secretstream;
mod stream;

pub use error::{DecryptError, Error, HandshakeError, SendError};
pub use frame::{FrameDecoder, MAX_FRAME_LEN, Oversized, encode_frame};
pub use handshake::{Handshake, HandshakeResult, Pattern};
pub use secretstream::{Pull, Push};
pub use stream::{
    Config, Event, ID_HEADER_LEN, MAX_HANDSHAKE_FRAME_LEN, MAX_MESSAGE_LEN, SecretStream, stream_id,
};

/// The hash length (BLAKE2b-512) and so the length of a handshake hash.
pub const HASHLEN: usize = kdf::HASHLEN;
