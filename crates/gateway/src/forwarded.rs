//! The client behind a reverse proxy (`protocol/gateway.md` §4.2): `X-Forwarded-For`, believed
//! only from proxies the operator trusts.
//!
//! Behind nginx or Caddy every request reaches the gateway from the proxy's address, so the
//! per-client limits and the signaling and report budgets would put every reader in one
//! bucket. With `trusted_proxies` (`serve --trusted-proxy CIDR`) set, a request whose TCP peer
//! is in one of those networks is keyed by the right-most address of its `X-Forwarded-For`
//! that is not a trusted proxy: each proxy appends the address it received the request from,
//! so the entries to the left of the last trusted hop are whatever the client wrote and prove
//! nothing. From any other peer the header is ignored, so a client cannot pick its own bucket.
//! None is trusted by default.
//!
//! The addresses read here are only classified and used as keys: nothing connects to them.

use std::net::IpAddr;
use std::str::FromStr;

use crate::address::unmap;

/// Proxies trusted at most (entries of `trusted_proxies`).
pub const MAX_TRUSTED_PROXIES: usize = 64;
/// `X-Forwarded-For` entries looked at, from the right: a chain of proxies is short, and a
/// header stuffed with thousands of entries costs no more than this.
pub const MAX_HOPS: usize = 16;

/// An IP network, `ADDR/LEN`; a bare address is its own /32 or /128. IPv4-mapped IPv6
/// addresses are read as the IPv4 address they carry, on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a `trusted_proxies` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// Not `ADDRESS` or `ADDRESS/LENGTH`.
    #[error("{0:?} is not an IP network (ADDRESS or ADDRESS/LENGTH, e.g. 10.0.0.0/8 or ::1)")]
    Syntax(String),
    /// The prefix length is longer than the address.
    #[error("{0:?}: the prefix length is longer than the address (32 for IPv4, 128 for IPv6)")]
    Length(String),
    /// More networks than [`MAX_TRUSTED_PROXIES`].
    #[error("more than {MAX_TRUSTED_PROXIES} trusted proxy networks: merge them into wider ones")]
    TooMany,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let t = s.trim();
        let (addr, len) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l
                .parse::<u8>()
                .map_err(|_| CidrError::Length(s.to_owned()))?,
            Some(_) => return Err(CidrError::Syntax(s.to_owned())),
        };
        if len > max {
            return Err(CidrError::Length(s.to_owned()));
        }
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
        Ok(match (addr, unmap(addr)) {
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) if len >= 96 => Self {
                addr: v4,
                len: len - 96,
            },
            _ => Self { addr, len },
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Cidr {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.len,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.len)
            }
            _ => false,
        }
    }
}

/// Whether the first `len` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, len: u8) -> bool {
    len == 0 || (a ^ b) >> (128 - u32::from(len)) == 0
}

/// The proxies whose `X-Forwarded-For` is believed; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Trusting `networks` (at most [`MAX_TRUSTED_PROXIES`]).
    pub fn new(networks: Vec<Cidr>) -> Result<Self, CidrError> {
        if networks.len() > MAX_TRUSTED_PROXIES {
            return Err(CidrError::TooMany);
        }
        Ok(Self(networks))
    }

    /// Parse `ADDRESS[/LENGTH]` entries, as the config file and `--trusted-proxy` give them.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, CidrError> {
        let networks = entries
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<Vec<Cidr>, _>>()?;
        Self::new(networks)
    }

    /// Whether none is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client of a request that reached us from `peer` with these `X-Forwarded-For`
    /// header values (in the order received). `peer` itself unless it is a trusted proxy;
    /// then, walking the entries from the right, the first that is not a trusted proxy. An
    /// entry that is not an address (`unknown`, garbage) ends the walk at the hop that handed
    /// it over, as does the [`MAX_HOPS`] limit; a chain of trusted proxies only is keyed by its
    /// left-most entry.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = unmap(peer);
        if !self.contains(peer) {
            return peer;
        }
        // The last MAX_HOPS entries, right-most last.
        let mut hops: std::collections::VecDeque<&[u8]> = std::collections::VecDeque::new();
        for value in forwarded_for {
            for entry in value.split(|b| *b == b',') {
                if hops.len() == MAX_HOPS {
                    hops.pop_front();
                }
                hops.push_back(entry);
            }
        }
        let mut client = peer;
        for entry in hops.iter().rev() {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`, spaces around; IPv4-mapped IPv6 as IPv4.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(unmap(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|v6| unmap(IpAddr::V6(v6)));
    }
    let (addr, port) = s.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(nets).unwrap()
    }

    fn client(t: &TrustedProxies, peer: &str, headers: &[&str]) -> IpAddr {
        t.client(ip(peer), headers.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::a00:1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));
        let mapped: Cidr = "::ffff:192.168.0.0/112".parse().unwrap();
        assert_eq!(mapped.to_string(), "192.168.0.0/16");
        assert!("::1/128".parse::<Cidr>().unwrap().contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/+8",
            "x",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_TRUSTED_PROXIES)
            .map(|i| format!("10.0.0.{i}"))
            .collect();
        assert_eq!(TrustedProxies::parse(&many), Err(CidrError::TooMany));
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_only_its_right_most_untrusted_entry() {
        let none = TrustedProxies::default();
        assert_eq!(
            client(&none, "127.0.0.1", &["203.0.113.7"]),
            ip("127.0.0.1")
        );
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        // An untrusted peer's header is ignored, whatever it says.
        assert_eq!(
            client(&t, "198.51.100.9", &["203.0.113.7"]),
            ip("198.51.100.9")
        );
        assert_eq!(client(&t, "127.0.0.2", &["10.0.0.1"]), ip("127.0.0.2"));
        // Through the trusted proxy: the address it appended.
        assert_eq!(client(&t, "127.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            client(&t, "::ffff:127.0.0.1", &[" 203.0.113.7 "]),
            ip("203.0.113.7")
        );
        // What the client wrote to the left proves nothing.
        assert_eq!(
            client(&t, "127.0.0.1", &["1.1.1.1, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Two trusted hops: skipped; several header lines read in order.
        assert_eq!(
            client(&t, "127.0.0.1", &["9.9.9.9, 203.0.113.7", "10.1.1.1"]),
            ip("203.0.113.7")
        );
        // Trusted hops only: the left-most. No header: the proxy itself.
        assert_eq!(
            client(&t, "127.0.0.1", &["10.0.0.2, 10.0.0.3"]),
            ip("10.0.0.2")
        );
        assert_eq!(client(&t, "127.0.0.1", &[]), ip("127.0.0.1"));
        // Garbage ends the walk at the hop that handed it over.
        assert_eq!(
            client(&t, "127.0.0.1", &["203.0.113.7, unknown"]),
            ip("127.0.0.1")
        );
        assert_eq!(
            client(&t, "127.0.0.1", &["garbage, 10.0.0.5"]),
            ip("10.0.0.5")
        );
        assert_eq!(client(&t, "127.0.0.1", &[""]), ip("127.0.0.1"));
        // Ports and brackets.
        assert_eq!(
            client(&t, "127.0.0.1", &["203.0.113.7:4711"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(&t, "127.0.0.1", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            client(&t, "127.0.0.1", &["[2001:db8::1]"]),
            ip("2001:db8::1")
        );
        assert_eq!(client(&t, "127.0.0.1", &["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(
            client(&t, "127.0.0.1", &["[2001:db8::1]:x"]),
            ip("127.0.0.1")
        );
        assert_eq!(
            client(&t, "127.0.0.1", &["203.0.113.7:99999x"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_stuffed_header_costs_at_most_max_hops() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let mut h = "203.0.113.7, ".repeat(10_000);
        h.push_str(&"10.0.0.1, ".repeat(MAX_HOPS - 1));
        h.push_str("10.0.0.1");
        // The untrusted entry is past MAX_HOPS: the walk stops at the left-most trusted hop.
        assert_eq!(client(&t, "127.0.0.1", &[&h]), ip("10.0.0.1"));
    }

    /// Whatever the header holds (random bytes from a fixed seed, biased towards address
    /// characters), the answer is the peer or an address in the header, and never anything but
    /// the peer when the peer is not trusted.
    #[test]
    fn any_header_is_the_peer_or_one_of_its_addresses() {
        let t = trusted(&["127.0.0.1"]);
        let peer = IpAddr::from([127, 0, 0, 1]);
        let alphabet = b"0123456789abcdef.:[], \t\xff";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..5000 {
            let mut h = Vec::new();
            for _ in 0..(round % 120) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                h.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let got = t.client(peer, [h.as_slice()]);
            let listed = h
                .split(|b| *b == b',')
                .filter_map(parse_entry)
                .any(|ip| ip == got);
            assert!(
                got == peer || listed,
                "{:?} -> {got}",
                String::from_utf8_lossy(&h)
            );
            let other = IpAddr::from([198, 51, 100, (round % 256) as u8]);
            assert_eq!(t.client(other, [h.as_slice()]), other);
        }
    }
}
