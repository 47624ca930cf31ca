//! Hyperswarm 4 for peerhost: find peers by topic on HyperDHT and keep one encrypted
//! connection to each, wire- and behaviour-compatible with the `hyperswarm` npm package
//! 4.17.
//!
//! This crate owns:
//! - topics ([`Swarm::join`], [`Swarm::leave`], [`Discovery`]): announcing a topic as a
//!   server and looking it up as a client, refreshed every 10–12 minutes;
//! - the connection set: one connection per remote public key, with hyperswarm's rule for
//!   duplicates (the larger key's dial wins; an old connection that carried traffic yields to
//!   a new one);
//! - dialling: a priority queue, `max_parallel` dials at once, the `max_peers` limit, retries
//!   with hyperswarm's backoff schedule, explicit peers ([`Swarm::join_peer`]), bans and a
//!   firewall callback;
//! - [`Swarm::flush`];
//! - what the peerhost daemon needs on top of JS (`protocol/swarm.md`, "Ours"): a cap on
//!   topics, bounded refreshes with prioritized topics, retrying empty lookups, looking every
//!   topic up again ([`Swarm::lookup_again`]), and blind relays found and offered on the DHT
//!   ([`relays`]);
//! - bootstrap nodes: parsing, the public defaults, resolving them, and running one
//!   ([`run_bootstrap`], [`Bootstrapper`]).
//!
//! It does not own the DHT, holepunching, blind-relay connections, the handshake or the
//! encryption (`peerhost-hyperdht`, `peerhost-relay`, `peerhost-noise`), nor what runs on a
//! connection (the node attaches protomux and hypercore replication to each [`Connection`];
//! see `protocol/swarm.md`).
//!
//! The bookkeeping (peers, queue, retry timers, duplicate decisions, flush accounting, topic
//! refresh scheduling) is a sans-IO core with time passed in (`state.rs`, `topic.rs`,
//! `retry.rs`); the tokio driver ([`Swarm`]) runs it over a [`peerhost_hyperdht::driver::Dht`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use peerhost_swarm::{BootstrapNode, Config, JoinOptions, Swarm};
//! use peerhost_ids::KeyPair;
//!
//! let config = Config::new(KeyPair::generate())
//!     .with_bootstrap(vec![BootstrapNode::new("127.0.0.1", 49737)]);
//! let (swarm, mut connections) = Swarm::new(config).await?;
//! let topic = [7; 32];
//! swarm.join(topic, JoinOptions::both()).await?;
//! swarm.flush().await;
//! while let Some((conn, peer)) = connections.next().await {
//!     // Whole messages through queues; `conn.into_parts()` hands over the stream instead.
//!     let mut conn = conn.into_messages();
//!     conn.send(b"hello".to_vec()).await?;
//!     let reply = conn.recv().await;
//!     # let _ = (peer, reply);
//! }
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod bootstrap;
mod connection;
mod driver;
mod error;
mod peer;
mod queue;
pub mod relays;
mod retry;
mod state;
mod timers;
mod topic;

pub use bootstrap::{
    BootstrapNode, BootstrapOptions, Bootstrapper, PUBLIC_BOOTSTRAP, parse_bootstrap_list,
    public_bootstrap, resolve_bootstrap, run_bootstrap,
};
pub use connection::{CloseReason, Connection, Control, MESSAGE_QUEUE, Messages};
pub use driver::{
    CONNECTION_QUEUE, Config, Connections, Discovery, MAX_BANS, PENDING_CONNECTIONS, Swarm,
};
pub use error::{Error, ParseBootstrapError};
pub use peer::{PeerInfo, Priority};
pub use relays::{RelayOptions, Relays, relay_topic};
pub use retry::{Backoffs, DEFAULT_JITTER};
pub use state::{Firewall, Stats, Status};
pub use topic::{
    DELAY_GRACE_PERIOD, EmptyLookupRetry, JoinOptions, RANDOM_JITTER, REFRESH_INTERVAL,
};

/// The HyperDHT layer underneath (its `Dht`, `Config`, payloads).
pub use peerhost_hyperdht as hyperdht;
