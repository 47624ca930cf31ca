//! `peerhost dht bootstrap` (a bootstrap node for an isolated network) and `peerhost relay`
//! (a blind relay: it splices two peers' encrypted UDX streams it cannot read).

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use peerhost_ids::KeyPair;
use peerhost_swarm::hyperdht::driver::{BindOptions, Dht};
use peerhost_swarm::{BootstrapOptions, Bootstrapper};

#[derive(Debug, Subcommand)]
pub(crate) enum DhtCommand {
    /// Run a DHT bootstrap node for an isolated network; prints HOST:PORT, runs until Ctrl-C.
    Bootstrap {
        /// The node's public IPv4 address (others reach it there; its DHT id derives from it).
        #[arg(long)]
        host: Ipv4Addr,
        /// UDP port (0 picks a free one).
        #[arg(long, default_value_t = 49737)]
        port: u16,
    },
}

/// `peerhost relay`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Address to bind the relay's DHT node on.
    #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
    host: Ipv4Addr,
    /// UDP port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// DHT bootstrap nodes [default: the public HyperDHT nodes]
    #[arg(
        long,
        value_delimiter = ',',
        env = "PEERHOST_BOOTSTRAP",
        value_name = "HOST:PORT,…"
    )]
    bootstrap: Vec<String>,
}

pub(crate) fn run(command: DhtCommand) -> anyhow::Result<()> {
    match command {
        DhtCommand::Bootstrap { host, port } => {
            let rt = crate::net::runtime()?;
            rt.block_on(async move {
                if host.is_unspecified() {
                    bail!("--host must be the address peers reach this node on, not 0.0.0.0");
                }
                let node = Bootstrapper::bind(BootstrapOptions::new(host, port))
                    .await
                    .with_context(|| format!("cannot start a bootstrap node on {host}:{port}"))?;
                println!("{}", node.addr());
                eprintln!(
                    "bootstrap node running; peers use --bootstrap {}",
                    node.addr()
                );
                tokio::select! {
                    _ = node.run() => {}
                    _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
                }
                Ok(())
            })
        }
    }
}

pub(crate) fn relay(args: RelayArgs) -> anyhow::Result<()> {
    let rt = crate::net::runtime()?;
    rt.block_on(async move {
        let nodes = if args.bootstrap.is_empty() {
            peerhost_swarm::public_bootstrap()
        } else {
            crate::net::parse_bootstrap(&args.bootstrap)?
        };
        let bootstrap = peerhost_swarm::resolve_bootstrap(&nodes).await?;
        let mut config = peerhost_swarm::hyperdht::Config::default();
        config.dht.bootstrap = bootstrap;
        // A relay must be reachable: it is only useful on a public address.
        config.dht.firewalled = false;
        let dht = Dht::bind(config, BindOptions::host(args.host).with_port(args.port))
            .await
            .with_context(|| format!("cannot bind the relay on {}:{}", args.host, args.port))?;
        dht.bootstrapped().await;
        let key_pair = KeyPair::generate();
        let relay = dht.serve_relay(&key_pair).await.context("cannot start the relay")?;
        println!("{}", hex::encode(relay.public_key()));
        eprintln!(
            "blind relay running on {}; list its key in the relays of the peers that may use it",
            dht.server_addr()
        );
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let (s, r) = (relay.stats(), relay.relayed());
                    tracing::info!(sessions = s.active_sessions, splices = r.splices, bytes = r.bytes, "relay");
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        Ok(())
    })
}
