//! Node configuration (the options of dht-rpc's `new DHT(opts)` that concern the protocol,
//! plus our bounds).

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::limit::RateLimits;

/// How a node is configured. `Config::default()` is a JS `new DHT()` with no bootstrap nodes:
/// adaptive, firewalled until proven otherwise, ephemeral until stable.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Nodes to join through (`bootstrap`). Names must be resolved by the caller (the tokio
    /// driver has a helper); JS's `ip@host` form is not supported.
    pub bootstrap: Vec<SocketAddrV4>,
    /// `Some(true)`: always ephemeral. `Some(false)`: become persistent as soon as bootstrap
    /// shows a consistent public address (JS `ephemeral: false`). `None`: adaptive.
    pub ephemeral: Option<bool>,
    /// With `ephemeral: None`: turn persistent after ~20 minutes of stable uptime
    /// (JS `adaptive`, default true).
    pub adaptive: bool,
    /// Start firewalled (send from the client socket, prove reachability before serving as a
    /// routing node). JS default true.
    pub firewalled: bool,
    /// Ping one responder's NAT during bootstrap to test reachability early
    /// (JS `quickFirewall`, default true).
    pub quick_firewall: bool,
    /// Requests in flight per query (JS `concurrency`, default 10).
    pub concurrency: usize,
    /// Congestion window per 750 ms (JS `maxWindow`, default 80).
    pub max_window: u32,
    /// Longest DELAYED_PING we honour (JS `maxPingDelay`, default 10 s).
    pub max_ping_delay: Duration,
    /// Send DOWN_HINTs (JS `sendDownHints`, default true).
    pub send_down_hints: bool,
    /// DOWN_HINTs per 5 s tick, `None` for no limit (JS `downHintsRateLimit`, default 50).
    pub down_hints_rate_limit: Option<u32>,
    /// Hand application commands to the application as [`crate::Event::Request`]. When false
    /// every application command gets `UNKNOWN_COMMAND`, as a JS node without a `'request'`
    /// listener does.
    pub handle_user_commands: bool,
    /// Nodes to add to the routing table at start (JS `nodes`).
    pub nodes: Vec<SocketAddrV4>,
    /// Seed the NAT sampler with our known public address (what `DHT.bootstrapper` does).
    pub nat_seed: Option<SocketAddrV4>,
    /// Only let addresses passing this filter into the routing table and queries
    /// (JS `filterNode`).
    pub filter_node: Option<fn(&SocketAddrV4) -> bool>,
    /// Seed for the node's randomness (ids, tids, secrets); `None` draws from the OS. Tests
    /// use a fixed seed for reproducible runs.
    pub seed: Option<[u8; 32]>,
    /// Bounds on memory and work.
    pub limits: Limits,
}

/// Bounds on what a node keeps and does (all ours: JS has none of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Requests in flight or queued; beyond, new requests fail with `Overloaded`.
    pub max_inflight: usize,
    /// Queries at once (including our own maintenance queries).
    pub max_queries: usize,
    /// DELAYED_PING replies waiting; beyond, new ones are ignored.
    pub max_delayed_pings: usize,
    /// Events waiting for `poll_event`; beyond, incoming application requests and query
    /// replies are dropped (completion events are always kept: they are bounded by the
    /// requests and queries in flight).
    pub max_events: usize,
    /// Datagrams waiting for `poll_transmit`; beyond, new ones are dropped.
    pub max_transmits: usize,
    /// Inbound request rate limits.
    pub rate: RateLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_inflight: 2048,
            max_queries: 128,
            max_delayed_pings: 256,
            max_events: 4096,
            max_transmits: 8192,
            rate: RateLimits::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            ephemeral: None,
            adaptive: true,
            firewalled: true,
            quick_firewall: true,
            concurrency: 10,
            max_window: crate::io::MAX_WINDOW,
            max_ping_delay: Duration::from_millis(10_000),
            send_down_hints: true,
            down_hints_rate_limit: Some(50),
            handle_user_commands: false,
            nodes: Vec::new(),
            nat_seed: None,
            filter_node: None,
            seed: None,
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// A node joining through `bootstrap`.
    pub fn with_bootstrap(bootstrap: Vec<SocketAddrV4>) -> Self {
        Self {
            bootstrap,
            ..Self::default()
        }
    }

    /// A bootstrap node at the public address `public` (JS `DHT.bootstrapper(port, host)`):
    /// persistent, not firewalled, no bootstrap nodes, NAT sampler seeded with `public`, so its
    /// id is `NodeId::from_addr(public)` from the start. Its server socket must be bound to
    /// `public.port()`.
    pub fn bootstrapper(public: SocketAddrV4) -> Self {
        Self {
            ephemeral: Some(false),
            firewalled: false,
            bootstrap: Vec::new(),
            nat_seed: Some(public),
            ..Self::default()
        }
    }
}
