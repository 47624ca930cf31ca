//! How to start a [`crate::Daemon`]: the storage directory, the config file's content, the
//! network (DHT or TCP only), the listener, the HTTP gateway and the identity.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use peerhost_ids::KeyPair;
use peerhost_swarm::BootstrapNode;

use crate::config::FileConfig;
use crate::http::HttpOptions;

/// How the daemon finds peers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Network {
    /// No DHT: TCP only (`--peer tcp://…`, `listen_tcp`).
    Off,
    /// HyperDHT through these bootstrap nodes.
    Dht(DhtOptions),
}

/// Where the daemon's DHT node binds and whom it asks first.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DhtOptions {
    /// Bootstrap nodes (resolved when the daemon starts; one that does not resolve is an
    /// error naming it).
    pub bootstrap: Vec<BootstrapNode>,
    /// The address both UDP sockets bind to (`0.0.0.0` by default).
    pub host: Ipv4Addr,
    /// The server socket's port (0: any).
    pub port: u16,
    /// Our LAN addresses, offered to peers behind the same NAT (default: the bound host if
    /// specific, else loopback).
    pub local_addresses: Vec<Ipv4Addr>,
    /// Blind relays (public keys) to fall back to when holepunching fails; relays announced
    /// by other peerhost nodes are added as they are found.
    pub relays: Vec<[u8; 32]>,
    /// Run a blind relay on our DHT node and announce it.
    pub offer_relay: bool,
}

impl DhtOptions {
    /// Bootstrap through `bootstrap`, binding to any address and port.
    pub fn new(bootstrap: Vec<BootstrapNode>) -> Self {
        Self {
            bootstrap,
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            local_addresses: Vec::new(),
            relays: Vec::new(),
            offer_relay: false,
        }
    }

    /// Set [`DhtOptions::relays`].
    pub fn with_relays(mut self, relays: Vec<[u8; 32]>) -> Self {
        self.relays = relays;
        self
    }

    /// Set [`DhtOptions::offer_relay`].
    pub fn with_offer_relay(mut self, offer: bool) -> Self {
        self.offer_relay = offer;
        self
    }

    /// Set [`DhtOptions::host`].
    pub fn with_host(mut self, host: Ipv4Addr) -> Self {
        self.host = host;
        self
    }

    /// Set [`DhtOptions::local_addresses`].
    pub fn with_local_addresses(mut self, addresses: Vec<Ipv4Addr>) -> Self {
        self.local_addresses = addresses;
        self
    }
}

/// How to start a [`Daemon`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The storage directory (the store, the config, state and status files).
    pub storage: PathBuf,
    /// The config file's content.
    pub file: FileConfig,
    /// DHT or not.
    pub network: Network,
    /// Accept TCP connections here (overrides the config's `listen_tcp`).
    pub listen_tcp: Option<SocketAddr>,
    /// Announce what we serve (overrides the config's `announce`).
    pub announce: Option<bool>,
    /// Write the state and status files (false for one-shot commands such as `follow`).
    pub write_files: bool,
    /// The Noise identity; by default the one kept in `<storage>/peerhost-identity.json`
    /// (created at the first start).
    pub key_pair: Option<KeyPair>,
    /// The HTTP gateway (each field overrides the config file's).
    pub http: HttpOptions,
}

impl Options {
    /// Defaults: no DHT, no listener, files written, the config file's settings.
    pub fn new(storage: impl Into<PathBuf>, file: FileConfig) -> Self {
        Self {
            storage: storage.into(),
            file,
            network: Network::Off,
            listen_tcp: None,
            announce: None,
            write_files: true,
            key_pair: None,
            http: HttpOptions::default(),
        }
    }

    /// Set [`Options::http`].
    pub fn with_http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Set [`Options::network`].
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Set [`Options::listen_tcp`].
    pub fn with_listen_tcp(mut self, addr: Option<SocketAddr>) -> Self {
        self.listen_tcp = addr;
        self
    }

    /// Set [`Options::announce`].
    pub fn with_announce(mut self, announce: bool) -> Self {
        self.announce = Some(announce);
        self
    }

    /// Set [`Options::write_files`].
    pub fn with_write_files(mut self, write: bool) -> Self {
        self.write_files = write;
        self
    }

    /// Set [`Options::key_pair`].
    pub fn with_key_pair(mut self, key_pair: KeyPair) -> Self {
        self.key_pair = Some(key_pair);
        self
    }
}
