//! dht-rpc: the Kademlia RPC layer under HyperDHT, wire-compatible with the `dht-rpc` npm
//! package 6.27.
//!
//! This crate owns:
//! - the two datagrams ([`messages`]): requests and responses, internal commands (PING,
//!   PING_NAT, FIND_NODE, DOWN_HINT, DELAYED_PING), error codes;
//! - node ids bound to public addresses ([`NodeId::from_addr`]) and the k-bucket routing
//!   table ([`Table`], as `kademlia-routing-table`);
//! - a sans-IO core, [`Node`]: requests with retries and dht-rpc's congestion window, tokens
//!   with rotating secrets, iterative queries with commit, NAT sampling and the firewall check,
//!   ephemeral / persistent / adaptive modes, bootstrap, routing-table maintenance (pings,
//!   refreshes, DOWN_HINTs, full-row swaps), serving the internal commands and handing
//!   application commands to the caller ([`Event::Request`]);
//! - bounds JS does not have: requests in flight, queries, queued events and datagrams, and an
//!   inbound rate limit per source IP ([`RateLimits`]);
//! - a tokio driver, [`driver`] (feature `tokio`, on by default): two UDP sockets, or any
//!   [`driver::Transport`] (so a UDX socket can carry dht-rpc later).
//!
//! It does not own: HyperDHT's commands and records (announce, lookup, mutable/immutable
//! storage, handshakes), which sit on top and answer [`Event::Request`]s; name resolution of
//! bootstrap hosts (the driver offers a helper); IPv6 (dht-rpc speaks IPv4 only);
//! network-health reporting (JS `lib/health.js`, no wire effect).
//!
//! The core reads no clock and owns no socket: every input carries `now: Instant`, and output
//! is polled (see the drain contract on [`Node`]). The protocol and our deliberate
//! differences from JS are written down in `protocol/dht-rpc.md`.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> std::io::Result<()> {
//! use peerhost_dht_rpc::driver::{Dht, BindOptions};
//! use peerhost_dht_rpc::Config;
//!
//! let mut config = Config::default();
//! config.bootstrap = vec!["127.0.0.1:49737".parse().unwrap()];
//! let dht = Dht::bind(config, BindOptions::default()).await?;
//! dht.bootstrapped().await;
//! let found = dht.find_node([7; 32]).await;
//! # let _ = found;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod config;
mod error;
mod io;
mod limit;
pub mod messages;
mod nat;
mod node;
mod peer;
pub mod proof;
mod query;
mod table;
mod token;

#[cfg(feature = "tokio")]
pub mod driver;

pub use config::{Config, Limits};
pub use error::{ReplyError, RequestError};
pub use limit::RateLimits;
pub use nat::NatSampler;
pub use node::{
    DEFAULT_RETRIES, DRAIN_INTERVAL, Event, IncomingRequest, Node, QueryId, RELAY_SLACK, Reply,
    ReplyOptions, RequestId, RequestOptions, RequestParams, SocketKind, Stats, TICK_INTERVAL,
    Transmit,
};
pub use peer::{ID_LEN, NodeId, decode_addr, encode_addr, to_v4};
pub use query::{
    Commit, CommitError, CommitFn, CommitRequest, QueryError, QueryParams, QueryResult,
};
pub use table::{K, Table, TableNode};
