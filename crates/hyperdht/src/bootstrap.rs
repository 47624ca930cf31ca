//! Bootstrap nodes as people configure them: `HOST:PORT` or JS's `IP@HOST:PORT`, the public
//! HyperDHT defaults, and resolving one to an IPv4 address. The swarm's `resolve_bootstrap`
//! resolves a list for every caller (the daemon, `peerhost dht`, `peerhost relay`).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::str::FromStr;

/// The public HyperDHT bootstrap nodes, `IP@HOST:PORT` (hyperdht 6.34 `lib/constants.js`
/// `BOOTSTRAP_NODES`).
pub const PUBLIC_BOOTSTRAP: [&str; 3] = [
    "88.99.3.86@node1.hyperdht.org:49737",
    "142.93.90.113@node2.hyperdht.org:49737",
    "138.68.147.8@node3.hyperdht.org:49737",
];

/// A bootstrap entry did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseBootstrapError {
    /// No `:PORT` at the end.
    #[error("{0:?}: expected HOST:PORT (or IP@HOST:PORT)")]
    MissingPort(String),
    /// The port is not a number in 1–65535.
    #[error("{0:?}: invalid port")]
    InvalidPort(String),
    /// The part before `@` is not an IPv4 address.
    #[error("{0:?}: the part before @ must be an IPv4 address")]
    InvalidIp(String),
    /// An empty host.
    #[error("{0:?}: empty host")]
    EmptyHost(String),
}

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

    /// This node's IPv4 address: an IP literal as it is, a name through the system resolver,
    /// else the suggested IP. JS first pings the suggested IP and looks the name up only if
    /// that fails; we cannot ping before the DHT is bound, so we prefer the name.
    ///
    /// Blocks on DNS: call it from a blocking context.
    pub fn resolve(&self) -> io::Result<SocketAddrV4> {
        if let Ok(ip) = self.host.parse::<Ipv4Addr>() {
            return Ok(SocketAddrV4::new(ip, self.port));
        }
        let looked_up = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map(|mut addrs| {
                addrs.find_map(|a| match a {
                    SocketAddr::V4(a) => Some(a),
                    SocketAddr::V6(_) => None,
                })
            });
        match (looked_up, self.suggested_ip) {
            (Ok(Some(a)), _) => Ok(a),
            (_, Some(ip)) => Ok(SocketAddrV4::new(ip, self.port)),
            (Ok(None), None) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} has no IPv4 address", self.host),
            )),
            (Err(e), None) => Err(e),
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

    #[test]
    fn resolves_literals_and_falls_back_to_the_suggested_ip() {
        // `.invalid` never resolves (RFC 6761), so no network is needed.
        assert_eq!(
            BootstrapNode::new("127.0.0.1", 5).resolve().unwrap(),
            "127.0.0.1:5".parse::<SocketAddrV4>().unwrap()
        );
        let named: BootstrapNode = "10.1.2.3@name.invalid:7".parse().unwrap();
        assert_eq!(named.resolve().unwrap(), "10.1.2.3:7".parse().unwrap());
        assert!(BootstrapNode::new("nothing.invalid", 9).resolve().is_err());
    }
}
