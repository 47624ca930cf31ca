//! Bootstrap nodes: parsing `--bootstrap HOST:PORT,…`, the public defaults, resolving names,
//! and running a bootstrap node of our own (`peerhost dht bootstrap`).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddrV4};

use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_hyperdht::{Config, dht_rpc};

use crate::error::Error;

pub use peerhost_hyperdht::bootstrap::{
    BootstrapNode, PUBLIC_BOOTSTRAP, parse_bootstrap_list, public_bootstrap,
};

/// Resolve bootstrap nodes to IPv4 addresses ([`BootstrapNode::resolve`], on tokio's blocking
/// pool). A node that resolves to nothing is an error naming it (ours: JS skips it, and a
/// misspelt `--bootstrap` then looks like a network without peers); the public defaults
/// carry JS's pinned addresses, so they resolve without DNS.
pub async fn resolve_bootstrap(nodes: &[BootstrapNode]) -> Result<Vec<SocketAddrV4>, Error> {
    let nodes = nodes.to_vec();
    tokio::task::spawn_blocking(move || {
        nodes
            .iter()
            .map(|n| {
                n.resolve().map_err(|source| Error::Resolve {
                    node: n.to_string(),
                    source,
                })
            })
            .collect()
    })
    .await
    .map_err(|_| Error::Destroyed)?
}

/// Where a bootstrap node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BootstrapOptions {
    /// The node's public IPv4 address (JS `--host`): it seeds the NAT sampler, so the node's
    /// id is derived from `host:port` from the start.
    pub host: Ipv4Addr,
    /// The UDP port (JS `--port`, 49737 by default in the JS CLI). 0 picks a free port
    /// (ours; for tests), which then seeds the NAT sampler.
    pub port: u16,
    /// The address to bind (JS binds every interface).
    pub bind: Ipv4Addr,
}

impl BootstrapOptions {
    /// A node reachable at `host:port`, bound on every interface.
    pub fn new(host: Ipv4Addr, port: u16) -> Self {
        Self {
            host,
            port,
            bind: Ipv4Addr::UNSPECIFIED,
        }
    }

    /// Set [`BootstrapOptions::bind`].
    pub fn with_bind(mut self, bind: Ipv4Addr) -> Self {
        self.bind = bind;
        self
    }
}

/// A running bootstrap node (JS `DHT.bootstrapper(port, host)`): persistent from the start
/// (`ephemeral: false`), not firewalled, no bootstrap nodes of its own. It answers every
/// dht-rpc and HyperDHT command, so it also stores records and relays handshakes: a testnet
/// can consist of it alone. Dropping it stops the node.
#[derive(Debug, Clone)]
pub struct Bootstrapper {
    dht: Dht,
    addr: SocketAddrV4,
}

impl Bootstrapper {
    /// Bind and start the node.
    pub async fn bind(opts: BootstrapOptions) -> Result<Self, Error> {
        if opts.host.is_unspecified() {
            return Err(Error::InvalidHost(opts.host));
        }
        let mut config = Config::default();
        config.dht = dht_rpc::Config::bootstrapper(SocketAddrV4::new(opts.host, opts.port));
        let bind = BindOptions::host(opts.bind).with_port(opts.port);
        let dht = Dht::bind(config, bind).await?;
        let addr = SocketAddrV4::new(opts.host, dht.server_addr().port());
        Ok(Self { dht, addr })
    }

    /// The address peers use to bootstrap: the public host and the bound port.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// The node.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// Serve until the future is dropped.
    pub async fn run(self) -> Infallible {
        let _keep = self;
        std::future::pending().await
    }
}

/// `peerhost dht bootstrap --host H --port P`: run a bootstrap node at public address
/// `host:port` (bound on every interface) until the future is dropped (e.g. in a
/// `tokio::select!` with Ctrl-C). Fails only if the socket cannot be bound or `host` is
/// `0.0.0.0`.
pub async fn run_bootstrap(host: Ipv4Addr, port: u16) -> Result<Infallible, Error> {
    let node = Bootstrapper::bind(BootstrapOptions::new(host, port)).await?;
    Ok(node.run().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_literals_and_falls_back_to_the_suggested_ip() {
        let nodes = [
            BootstrapNode::new("127.0.0.1", 5),
            "10.1.2.3@name.invalid:7".parse().unwrap(),
        ];
        // `.invalid` never resolves (RFC 6761), so no network is needed.
        assert_eq!(
            resolve_bootstrap(&nodes).await.unwrap(),
            [
                "127.0.0.1:5".parse::<SocketAddrV4>().unwrap(),
                "10.1.2.3:7".parse().unwrap()
            ]
        );
        // A name that resolves to nothing, with no suggested IP, is named in the error.
        let bad = [nodes[0].clone(), BootstrapNode::new("nothing.invalid", 9)];
        let e = resolve_bootstrap(&bad).await.unwrap_err().to_string();
        assert!(e.contains("nothing.invalid:9"), "{e}");
    }
}
