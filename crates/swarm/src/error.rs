//! Errors of the swarm.

use std::io;

/// A swarm operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The DHT sockets could not be bound.
    #[error("could not bind the DHT sockets: {0}")]
    Bind(#[from] io::Error),
    /// The swarm was destroyed (or every handle dropped) before the operation finished.
    #[error("the swarm was destroyed")]
    Destroyed,
    /// A DHT operation failed (listening for connections).
    #[error("DHT: {0}")]
    Dht(#[from] peerhost_hyperdht::Error),
    /// The topic is not joined (a session of a topic that was left).
    #[error("topic not joined")]
    NotJoined,
    /// A join or refresh with neither `server` nor `client` (JS: "Cannot refresh with neither
    /// client nor server option").
    #[error("a topic must be joined as server, client or both")]
    NoMode,
    /// A bootstrap node's public host must be a specific IPv4 address (JS `bootstrapper`:
    /// "Invalid host").
    #[error("invalid bootstrap host {0}: it must be the node's public IPv4 address")]
    InvalidHost(std::net::Ipv4Addr),
    /// A bootstrap node did not resolve to an IPv4 address (ours: JS skips it silently).
    #[error(
        "cannot resolve the bootstrap node {node}: {source} (check --bootstrap or `bootstrap`)"
    )]
    Resolve {
        /// The node as configured (`HOST:PORT` or `IP@HOST:PORT`).
        node: String,
        /// Why.
        source: io::Error,
    },
    /// [`Config::max_topics`](crate::Config::max_topics) topics are joined already.
    #[error("too many topics joined: leave one first, or raise the swarm's max_topics")]
    TooManyTopics,
}

pub use peerhost_hyperdht::ParseBootstrapError;
