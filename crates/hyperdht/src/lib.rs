//! HyperDHT 6: the layer of the Holepunch stack that finds peers by key and connects to them,
//! wire-compatible with the `hyperdht` npm package 6.34.
//!
//! This crate owns:
//! - every HyperDHT message encoding ([`messages`]) and its signatures and secrets
//!   ([`crypto`]): peer records, announce / unannounce, lookup replies, PEER_HANDSHAKE and
//!   PEER_HOLEPUNCH values, the Noise and holepunch payloads, mutable and immutable values;
//! - a sans-IO core, [`Node`], on top of [`peerhost_dht_rpc::Node`]: the storage a persistent
//!   node keeps for others (records, routes, mutable and immutable values, with TTLs and caps),
//!   the router that relays handshakes and holepunch messages between clients and servers,
//!   client operations (lookup, announce, unannounce, find_peer, mutable / immutable put and
//!   get, connect) and listening servers (announcing, Noise IK responder, firewall callback);
//! - a tokio driver, [`driver`] (feature `tokio`, on by default): dht-rpc's two UDP sockets,
//!   each also carrying UDX streams, and connections as secret-streams over UDX.
//!
//! - holepunching (`holepunch/`: probe and punch rounds, server slots, the punch strategies
//!   with birthday sockets, NAT kind from dht-rpc's sampler) and blind-relay connections
//!   ([`Route::Relay`], the relay fallback of [`driver::Dht::connect_with`], and
//!   [`driver::Dht::serve_relay`] over `peerhost-relay`).
//!
//! It does not own (yet): reusable sockets, moving a relayed stream to a direct path,
//! plugins, or Hyperswarm's topic and connection management. See `protocol/hyperdht.md`,
//! `protocol/holepunch.md` and `protocol/blind-relay.md` for the wire format, the flows and
//! every deliberate difference from JS.
//!
//! The core reads no clock and owns no socket: every input carries `now: Instant`, and output
//! is polled (see the drain contract on [`Node`]).
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use peerhost_hyperdht::driver::{BindOptions, Dht};
//! use peerhost_hyperdht::Config;
//! use peerhost_ids::KeyPair;
//!
//! let mut config = Config::default();
//! config.dht.bootstrap = vec!["127.0.0.1:49737".parse()?];
//! let dht = Dht::bind(config, BindOptions::default()).await?;
//! dht.bootstrapped().await;
//!
//! let key_pair = KeyPair::generate();
//! let put = dht.mutable_put(&key_pair, b"hello".to_vec(), 1).await?;
//! let got = dht.mutable_get(key_pair.public_key(), 0).await?;
//! # let _ = (put, got);
//! let mut conn = dht.connect(&key_pair, [7; 32]).await?;
//! conn.send(b"hi".to_vec()).await?;
//! let reply = conn.recv().await;
//! # let _ = reply;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

pub mod bootstrap;
mod client;
pub mod constants;
pub mod crypto;
mod error;
pub mod fuzz;
mod holepunch;
pub mod messages;
mod node;
mod routes;
mod server;
mod store;

#[cfg(feature = "tokio")]
pub mod driver;

/// The dht-rpc layer underneath ([`Config::dht`] is its configuration).
pub use peerhost_dht_rpc as dht_rpc;

pub use bootstrap::{BootstrapNode, ParseBootstrapError};
pub use client::{AnnounceOptions, ConnectOptions};
pub use error::{ConnectError, Error};
pub use holepunch::{PunchCommand, PunchSocket};
pub use node::{
    AnnounceResult, Config, Established, Event, FindPeerResult, FirewallFn, ImmutablePutResult,
    ImmutableValue, Incoming, Listening, LookupResult, MutablePutResult, MutableValue, Node, OpId,
    Outcome, Route, Stats,
};
pub use store::StoreLimits;
