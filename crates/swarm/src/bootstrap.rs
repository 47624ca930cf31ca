//! Bootstrap nodes: parsing `--bootstrap HOST:PORT,…`, the public defaults, resolving names,
//! and running a bootstrap node of our own (`peerhost dht bootstrap`).

use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;

use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_hyperdht::{Config, dht_rpc};

use crate::error::{Error, ParseBootstrapError};

/// The public HyperDHT bootstrap nodes, `IP@HOST:PORT` (hyperdht 6.34 `lib/constants.js`
/// `BOOTSTRAP_NODES`).
pub const PUBLIC_BOOTSTRAP: [&str; 3] = [
    "88.99.3.86@node1.hyperdht.org:49737",
    "142.93.90.113@node2.hyperdht.org:49737",
    "138.68.147.8@node3.hyperdht.org:49737",
];

/// One bootstrap node as configured: a host name or IPv4 address and a port, optionally with
/// a suggested IP to use when the name does not resolve (JS `IP@HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BootstrapNode {
    /// Host name or IPv4 address.
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// The IP before `@`, if any.
    pub suggested_ip: Option<Ipv4Addr>,
}

impl BootstrapNode {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            suggested_ip: None,
        }
    }
}

impl From<SocketAddrV4> for BootstrapNode {
    fn from(a: SocketAddrV4) -> Self {
        Self::new(a.ip().to_string(), a.port())
    }
}

impl FromStr for BootstrapNode {
    type Err = ParseBootstrapError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (rest, port) = s
            .rsplit_once(':')
            .ok_or_else(|| ParseBootstrapError::MissingPort(s.to_owned()))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ParseBootstrapError::InvalidPort(s.to_owned()))?;
        let (suggested_ip, host) = match rest.split_once('@') {
            Some((ip, host)) => {
                let ip = ip
                    .parse()
                    .map_err(|_| ParseBootstrapError::InvalidIp(s.to_owned()))?;
                (Some(ip), host)
            }
            None => (None, rest),
        };
        if host.is_empty() {
            return Err(ParseBootstrapError::EmptyHost(s.to_owned()));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            suggested_ip,
        })
    }
}

impl fmt::Display for BootstrapNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.suggested_ip {
            write!(f, "{ip}@")?;
        }
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The public HyperDHT bootstrap nodes ([`PUBLIC_BOOTSTRAP`]).
pub fn public_bootstrap() -> Vec<BootstrapNode> {
    PUBLIC_BOOTSTRAP
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Parse a comma-separated `HOST:PORT,…` list (the CLI's `--bootstrap`); empty entries are
/// skipped.
pub fn parse_bootstrap_list(list: &str) -> Result<Vec<BootstrapNode>, ParseBootstrapError> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Resolve bootstrap nodes to IPv4 addresses: IP literals as they are, names through the
/// system resolver, falling back to the suggested IP; nodes that resolve to nothing are
/// skipped, as JS skips them. JS first pings the suggested IP and looks the name up only if
/// that fails; we cannot ping before the DHT is bound, so we prefer the name.
pub async fn resolve_bootstrap(nodes: &[BootstrapNode]) -> Vec<SocketAddrV4> {
    let mut out = Vec::new();
    for n in nodes {
        if let Ok(ip) = n.host.parse::<Ipv4Addr>() {
            out.push(SocketAddrV4::new(ip, n.port));
            continue;
        }
        let resolved = tokio::net::lookup_host((n.host.as_str(), n.port))
            .await
            .ok()
            .and_then(|mut addrs| {
                addrs.find_map(|a| match a {
                    SocketAddr::V4(a) => Some(a),
                    SocketAddr::V6(_) => None,
                })
            });
        match (resolved, n.suggested_ip) {
            (Some(a), _) => out.push(a),
            (None, Some(ip)) => out.push(SocketAddrV4::new(ip, n.port)),
            (None, None) => {}
        }
    }
    out
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

    #[test]
    fn parses_cli_lists_and_js_defaults() {
        let list = parse_bootstrap_list("127.0.0.1:49737, node.example:1234,,").unwrap();
        assert_eq!(
            list,
            [
                BootstrapNode::new("127.0.0.1", 49737),
                BootstrapNode::new("node.example", 1234)
            ]
        );
        let public = public_bootstrap();
        assert_eq!(public.len(), 3);
        assert_eq!(public[0].host, "node1.hyperdht.org");
        assert_eq!(public[0].port, 49737);
        assert_eq!(public[0].suggested_ip, Some(Ipv4Addr::new(88, 99, 3, 86)));
        assert_eq!(public[2].to_string(), PUBLIC_BOOTSTRAP[2]);
        for bad in ["host", "host:0", "host:x", "1.2.3@h:1", ":80", "1.2.3.4@:5"] {
            assert!(bad.parse::<BootstrapNode>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn resolves_literals_and_falls_back_to_the_suggested_ip() {
        let nodes = [
            BootstrapNode::new("127.0.0.1", 5),
            "10.1.2.3@name.invalid:7".parse().unwrap(),
            BootstrapNode::new("nothing.invalid", 9),
        ];
        // `.invalid` never resolves (RFC 6761), so no network is needed.
        assert_eq!(
            resolve_bootstrap(&nodes).await,
            [
                "127.0.0.1:5".parse::<SocketAddrV4>().unwrap(),
                "10.1.2.3:7".parse().unwrap()
            ]
        );
    }
}
