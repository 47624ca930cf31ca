//! Blind relay, wire-compatible with the `blind-relay` npm package 1.6.1 (what hyperdht's
//! `relayThrough` and hyperswarm's relay fallback use).
//!
//! Two peers that cannot reach each other both connect to a relay (an ordinary HyperDHT
//! server), open a `blind-relay` protomux channel on that connection and ask it to *pair* them
//! under a shared random token, each announcing one of its UDX stream ids. The relay answers
//! each with the id of a relay stream; each peer then sends its UDX packets to the relay,
//! which forwards them to the other peer unchanged but for the destination id. The peers' own
//! connection (a secret stream keyed by their Noise handshake) runs end to end through it: the
//! relay never holds a key and sees only ciphertext.
//!
//! This crate owns:
//! - the messages ([`messages`]): `pair`, `unpair`;
//! - a sans-IO relay core ([`server::Server`]: sessions, the pairing table, bounds) and client
//!   core ([`client::Client`]), both over [`peerhost_protomux`];
//! - a tokio driver ([`driver`], feature `tokio`): [`driver::RelayServer`] splices on a
//!   [`peerhost_udx::driver::Socket`] (see [`peerhost_udx::relay`]), [`driver::RelayClient`].
//!
//! It does not own the connections to the relay (HyperDHT makes them), nor when to relay
//! (HyperDHT's connect and server decide, from `relayThrough` in the Noise payload). The wire
//! format and flows are in `protocol/blind-relay.md`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

pub mod client;
mod error;
pub mod messages;
pub mod server;

#[cfg(feature = "tokio")]
pub mod driver;

pub use error::{Error, PairError};

/// The protomux protocol name of the channel.
pub const PROTOCOL: &str = "blind-relay";

/// How long hyperdht waits for a relay to pair (connect.js `relayConnection`, 15 s).
pub const PAIRING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
