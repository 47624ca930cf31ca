//! A HyperDHT network on this machine: one bootstrap node and a few persistent nodes, all in
//! this process (`peerhost demo`, tests). Daemons join it with [`Testnet::bootstrap`].

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_hyperdht::{Config, dht_rpc};

use super::DaemonError;

/// The running nodes; dropping it stops them.
#[derive(Debug)]
pub struct Testnet {
    /// The bootstrap node's address.
    pub bootstrap: SocketAddrV4,
    nodes: Vec<Dht>,
}

impl Testnet {
    /// Start a bootstrap node and `persistent` more nodes on `host`, and wait until every node
    /// is persistent (stores records for others).
    pub async fn start(host: Ipv4Addr, persistent: usize) -> Result<Self, DaemonError> {
        let err = |e: std::io::Error| DaemonError::Dht(e.to_string());
        let mut config = Config::default();
        config.dht = dht_rpc::Config::bootstrapper(SocketAddrV4::new(host, 0));
        let first = Dht::bind(config, BindOptions::host(host))
            .await
            .map_err(err)?;
        let bootstrap = SocketAddrV4::new(host, first.server_addr().port());
        first.bootstrapped().await;
        let mut nodes = vec![first];
        for _ in 0..persistent {
            let mut config = Config::default();
            config.dht.bootstrap = vec![bootstrap];
            config.dht.ephemeral = Some(false);
            config.dht.firewalled = false;
            let dht = Dht::bind(config, BindOptions::host(host))
                .await
                .map_err(err)?;
            dht.bootstrapped().await;
            nodes.push(dht);
        }
        for n in &nodes {
            let wait = async {
                while !n.info().await.is_some_and(|i| i.persistent) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(30), wait)
                .await
                .map_err(|_| DaemonError::Dht("testnet nodes did not become persistent".into()))?;
        }
        Ok(Self { bootstrap, nodes })
    }

    /// The bootstrap list for daemons joining it.
    pub fn bootstrap(&self) -> Vec<SocketAddrV4> {
        vec![self.bootstrap]
    }

    /// How many nodes run.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: a testnet has at least its bootstrap node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
