//! Peer gateway addresses: one canonical form per gateway, and which addresses an instance may
//! connect to (`protocol/gateway.md` §7.2).
//!
//! - [`parse_peer_url`]: `http://HOST:PORT` with the host spelled any way a browser or
//!   `inet_aton` accepts (`127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`, `[::ffff:7f00:1]`),
//!   a port with leading zeros, or a DNS name.
//! - [`resolve`]: the name resolved **once**, the address classified, and the result a
//!   [`SocketAddr`] that every later connection uses as is: no second lookup, so no DNS
//!   rebinding window between the check and the connection. Its [`canonical_url`]
//!   (`http://IP:PORT`, IPv4-mapped IPv6 as IPv4) is the peer table's key, so every spelling
//!   of one gateway is one entry.
//! - [`classify`]: the ranges an instance refuses unless told `allow_private_peers`
//!   ([`Policy`]): loopback, private, link-local, unique-local, CGNAT, multicast, documentation,
//!   benchmarking, reserved, unspecified, broadcast (and IPv6 forms embedding such an IPv4
//!   address: mapped, compatible, NAT64, 6to4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The longest peer URL accepted.
pub const MAX_URL: usize = 200;
/// Time allowed to resolve a peer's host name.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an address may not be connected to. [`Refusal::code`] is what the public table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7` (and the deprecated site-local `fec0::/10`).
    UniqueLocal,
    /// `100.64/10` (carrier-grade NAT).
    Cgnat,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`.
    Documentation,
    /// `198.18/15`, `2001:2::/48`.
    Benchmarking,
    /// Other special-purpose ranges: `192.0.0/24`, `240/4`, `192.88.99/24`, `100::/64`,
    /// `2001::/23` (Teredo, ORCHID, …), `64:ff9b:1::/48`.
    Reserved,
}

impl Refusal {
    /// The short code shown publicly.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unspecified => "UNSPECIFIED_ADDRESS",
            Self::Loopback => "LOOPBACK_ADDRESS",
            Self::Private => "PRIVATE_ADDRESS",
            Self::LinkLocal => "LINK_LOCAL_ADDRESS",
            Self::UniqueLocal => "UNIQUE_LOCAL_ADDRESS",
            Self::Cgnat => "CGNAT_ADDRESS",
            Self::Multicast => "MULTICAST_ADDRESS",
            Self::Broadcast => "BROADCAST_ADDRESS",
            Self::Documentation => "DOCUMENTATION_ADDRESS",
            Self::Benchmarking => "BENCHMARKING_ADDRESS",
            Self::Reserved => "RESERVED_ADDRESS",
        }
    }

    /// Whether `allow_private_peers` lifts this refusal (it never lifts unspecified, multicast
    /// and broadcast: nothing serves HTTP there).
    pub fn is_private(self) -> bool {
        !matches!(self, Self::Unspecified | Self::Multicast | Self::Broadcast)
    }
}

/// Which addresses may be connected to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Also loopback, private, link-local, unique-local, CGNAT, documentation, benchmarking and
    /// reserved ranges (LANs, tests, the demo).
    pub allow_private: bool,
}

impl Policy {
    /// Private ranges allowed.
    pub const ALLOW_PRIVATE: Self = Self {
        allow_private: true,
    };

    /// `Ok` if `ip` may be connected to under this policy.
    pub fn check(self, ip: IpAddr) -> Result<(), Refusal> {
        match classify(ip) {
            None => Ok(()),
            Some(r) if self.allow_private && r.is_private() => Ok(()),
            Some(r) => Err(r),
        }
    }
}

/// The class of `ip` that an instance refuses by default, or `None` for a public unicast
/// address.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_broadcast() => Refusal::Broadcast,
        (0, _, _) => Refusal::Unspecified,
        (127, _, _) => Refusal::Loopback,
        (10, _, _) => Refusal::Private,
        (172, 16..=31, _) | (192, 168, _) => Refusal::Private,
        (169, 254, _) => Refusal::LinkLocal,
        (100, 64..=127, _) => Refusal::Cgnat,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Refusal::Documentation,
        (198, 18..=19, _) => Refusal::Benchmarking,
        (224..=239, _, _) => Refusal::Multicast,
        (240..=255, _, _) | (192, 0, 0) | (192, 88, 99) => Refusal::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Refusal::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Refusal::Loopback);
    }
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96)
    // and 6to4 (2002:AABB:CCDD::/48): what the packet finally reaches is the IPv4 address.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return classify_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return classify_v4(embedded(s[1], s[2]));
    }
    Some(match s[0] {
        0xff00..=0xffff => Refusal::Multicast,
        0xfe80..=0xfebf => Refusal::LinkLocal,
        0xfec0..=0xfeff | 0xfc00..=0xfdff => Refusal::UniqueLocal,
        0x2001 if s[1] == 0xdb8 => Refusal::Documentation,
        0x2001 if s[1] == 2 && s[2] == 0 => Refusal::Benchmarking,
        // 2001::/23: IETF protocol assignments (Teredo 2001::/32, ORCHID, AMT, …).
        0x2001 if s[1] < 0x200 => Refusal::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => Refusal::Reserved,
        0x0064 if s[1] == 0xff9b && s[2] == 1 => Refusal::Reserved,
        // Anything outside 2000::/3 is not global unicast.
        x if !(0x2000..=0x3fff).contains(&x) => Refusal::Reserved,
        _ => return None,
    })
}

/// A peer URL's host, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A literal address (any IPv4 spelling, or `[IPv6]`).
    Ip(IpAddr),
    /// A DNS name (lowercase).
    Name(String),
}

/// Why a peer URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `http://HOST:PORT` (no path, at most [`MAX_URL`] characters).
    #[error("url must be http://HOST:PORT (no path), at most {MAX_URL} characters")]
    Malformed,
    /// The name does not resolve (or not in time).
    #[error("cannot resolve {0}")]
    Unresolved(String),
    /// The address is in a range this instance does not connect to.
    #[error(
        "{addr} is a {what} address: this instance only checks public addresses (its operator \
         can allow private ones with --allow-private-peers)",
        what = .refusal.code().trim_end_matches("_ADDRESS").to_ascii_lowercase().replace('_', "-")
    )]
    Refused {
        /// The address.
        addr: IpAddr,
        /// Its class.
        refusal: Refusal,
    },
}

/// Parse a WHATWG/`inet_aton` IPv4 number: decimal, `0x` hex, or octal with a leading `0`.
fn ipv4_number(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0, as in WHATWG.
        return (radix == 16).then_some(0);
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// An IPv4 address in any of the forms browsers and `inet_aton` accept (1 to 4 parts, the
/// last filling the remaining bytes), or `None` if `host` is not one (a DNS name).
fn parse_ipv4(host: &str) -> Option<Result<Ipv4Addr, UrlError>> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    // WHATWG "ends in a number": only then is the host an IPv4 address (else a name).
    let last = parts.last()?;
    let numeric = |p: &str| {
        !p.is_empty()
            && (p.bytes().all(|b| b.is_ascii_digit())
                || ((p.starts_with("0x") || p.starts_with("0X"))
                    && p[2..].bytes().all(|b| b.is_ascii_hexdigit())))
    };
    if !numeric(last) {
        return None;
    }
    if parts.len() > 4 {
        return Some(Err(UrlError::Malformed));
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        match ipv4_number(p) {
            Some(n) if numeric(p) => nums.push(n),
            _ => return Some(Err(UrlError::Malformed)),
        }
    }
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) || *last >= 1u64 << (8 * (5 - nums.len())) {
        return Some(Err(UrlError::Malformed));
    }
    let mut v = *last;
    for (i, n) in init.iter().enumerate() {
        v += n << (8 * (3 - i));
    }
    Some(
        u32::try_from(v)
            .map(Ipv4Addr::from)
            .map_err(|_| UrlError::Malformed),
    )
}

/// Parse `http://HOST:PORT` (one trailing `/` allowed, nothing else after the port). Numeric
/// hosts are decoded; names are lowercased, not resolved.
pub fn parse_peer_url(url: &str) -> Result<(Host, u16), UrlError> {
    if url.len() > MAX_URL {
        return Err(UrlError::Malformed);
    }
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
        .ok_or(UrlError::Malformed)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inner, after) = v6.split_once(']').ok_or(UrlError::Malformed)?;
        let port = after.strip_prefix(':').ok_or(UrlError::Malformed)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| UrlError::Malformed)?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = rest.rsplit_once(':').ok_or(UrlError::Malformed)?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(UrlError::Malformed);
        }
        let h = match parse_ipv4(host) {
            Some(ip) => Host::Ip(IpAddr::V4(ip?)),
            None => Host::Name(host.to_ascii_lowercase()),
        };
        (h, port)
    };
    // Decimal digits only (leading zeros allowed, as browsers do), 1..=65535.
    if port.is_empty() || port.len() > 10 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::Malformed);
    }
    let port = port
        .parse::<u32>()
        .ok()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or(UrlError::Malformed)?;
    Ok((host, port))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `http://IP:PORT` (`http://[IPv6]:PORT`): the one spelling of a gateway's address.
pub fn canonical_url(addr: SocketAddr) -> String {
    match unmap(addr.ip()) {
        IpAddr::V4(v4) => format!("http://{v4}:{}", addr.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", addr.port()),
    }
}

/// Resolve a peer URL once and check the address under `policy`: the returned address is the
/// one to connect to, always. A name that resolves to several addresses gives the first one the
/// policy allows.
pub async fn resolve(url: &str, policy: Policy) -> Result<SocketAddr, UrlError> {
    let (host, port) = parse_peer_url(url)?;
    let candidates: Vec<IpAddr> = match host {
        Host::Ip(ip) => vec![unmap(ip)],
        Host::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            let found = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => Some(addrs.map(|a| unmap(a.ip())).take(16).collect()),
                _ => None,
            };
            found.ok_or(UrlError::Unresolved(name))?
        }
    };
    let mut refused = None;
    for ip in candidates {
        match policy.check(ip) {
            Ok(()) => return Ok(SocketAddr::new(ip, port)),
            Err(refusal) => {
                refused.get_or_insert(UrlError::Refused { addr: ip, refusal });
            }
        }
    }
    Err(refused.unwrap_or(UrlError::Malformed))
}

/// The prefix a cap on entries per network counts by: the /24 of an IPv4 address, the /48 of an
/// IPv6 one.
pub fn prefix_of(ip: IpAddr) -> IpAddr {
    match unmap(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_spelling_of_loopback_is_one_address() {
        for s in [
            "http://127.0.0.1:8080",
            "http://127.1:8080",
            "http://127.0.1:08080",
            "http://0x7f000001:8080",
            "http://0X7F.0.0.1:8080/",
            "http://2130706433:8080",
            "http://0177.0.0.1:8080",
            "http://017700000001:8080",
            "http://[::ffff:127.0.0.1]:8080",
            "http://[::ffff:7f00:1]:0008080",
            "HTTP://127.0.0.1:8080",
        ] {
            let (host, port) = parse_peer_url(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let Host::Ip(a) = host else { panic!("{s}") };
            assert_eq!(
                canonical_url(SocketAddr::new(a, port)),
                "http://127.0.0.1:8080",
                "{s}"
            );
        }
        assert_eq!(
            parse_peer_url("http://LocalHost:1").unwrap(),
            (Host::Name("localhost".into()), 1)
        );
    }

    #[test]
    fn malformed_urls() {
        for bad in [
            "http://127.0.0.1",
            "http://h:0",
            "http://h:1/x",
            "https://h:1",
            "http://h:1//",
            "http://h:99999",
            "http://h:65536",
            "http://256.0.0.1:1",
            "http://1.2.3.4.5:1",
            "http://1.2.3.0x100:1",
            "http://0x100000000:1",
            "http://08.0.0.1:1",
            "http://[::1:1",
            "http://[zz]:1",
            "http://a b:1",
            "http://user@h:1",
            "http://h:-1",
            "http://h:+1",
            "ftp://h:1",
        ] {
            assert!(parse_peer_url(bad).is_err(), "{bad}");
        }
        assert!(parse_peer_url(&format!("http://{}:1", "a".repeat(200))).is_err());
    }

    #[test]
    fn ranges_are_classified() {
        let cases = [
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("0.1.2.3", Some(Refusal::Unspecified)),
            ("127.0.0.1", Some(Refusal::Loopback)),
            ("127.255.0.9", Some(Refusal::Loopback)),
            ("10.1.2.3", Some(Refusal::Private)),
            ("172.16.0.1", Some(Refusal::Private)),
            ("172.31.255.255", Some(Refusal::Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Refusal::Private)),
            ("169.254.169.254", Some(Refusal::LinkLocal)),
            ("100.64.0.1", Some(Refusal::Cgnat)),
            ("100.127.255.255", Some(Refusal::Cgnat)),
            ("100.128.0.1", None),
            ("192.0.2.5", Some(Refusal::Documentation)),
            ("198.51.100.5", Some(Refusal::Documentation)),
            ("203.0.113.5", Some(Refusal::Documentation)),
            ("198.18.0.1", Some(Refusal::Benchmarking)),
            ("198.19.255.1", Some(Refusal::Benchmarking)),
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("239.255.255.250", Some(Refusal::Multicast)),
            ("240.0.0.1", Some(Refusal::Reserved)),
            ("255.255.255.255", Some(Refusal::Broadcast)),
            ("192.0.0.9", Some(Refusal::Reserved)),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("::", Some(Refusal::Unspecified)),
            ("::1", Some(Refusal::Loopback)),
            ("::ffff:10.0.0.1", Some(Refusal::Private)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Refusal::Loopback)),
            ("64:ff9b::c0a8:1", Some(Refusal::Private)),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::", Some(Refusal::Loopback)),
            ("2002:808:808::1", None),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("fc00::1", Some(Refusal::UniqueLocal)),
            ("fd12:3456::1", Some(Refusal::UniqueLocal)),
            ("fec0::1", Some(Refusal::UniqueLocal)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("2001:db8::1", Some(Refusal::Documentation)),
            ("2001:2::1", Some(Refusal::Benchmarking)),
            ("2001::1", Some(Refusal::Reserved)),
            ("100::1", Some(Refusal::Reserved)),
            ("::2", Some(Refusal::Unspecified)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450::1", None),
        ];
        for (s, want) in cases {
            assert_eq!(classify(ip(s)), want, "{s}");
        }
        let strict = Policy::default();
        let lan = Policy::ALLOW_PRIVATE;
        assert_eq!(strict.check(ip("10.0.0.1")), Err(Refusal::Private));
        assert_eq!(lan.check(ip("10.0.0.1")), Ok(()));
        assert_eq!(lan.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(lan.check(ip("0.0.0.0")), Err(Refusal::Unspecified));
        assert_eq!(lan.check(ip("224.0.0.1")), Err(Refusal::Multicast));
        assert_eq!(strict.check(ip("8.8.8.8")), Ok(()));
    }

    #[tokio::test]
    async fn resolve_checks_the_address_it_returns() {
        // Literal addresses: no lookup at all.
        let e = resolve("http://127.1:9", Policy::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                UrlError::Refused {
                    refusal: Refusal::Loopback,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("--allow-private-peers"), "{e}");
        assert_eq!(
            resolve("http://0x7f000001:9", Policy::ALLOW_PRIVATE)
                .await
                .unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        // `localhost` resolves (from /etc/hosts) to loopback: refused by default.
        assert!(matches!(
            resolve("http://localhost:9", Policy::default()).await,
            Err(UrlError::Refused { .. })
        ));
        let a = resolve("http://localhost:9", Policy::ALLOW_PRIVATE)
            .await
            .unwrap();
        assert!(a.ip().is_loopback());
        assert_eq!(
            resolve("http://[::ffff:127.0.0.1]:9", Policy::ALLOW_PRIVATE)
                .await
                .unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(prefix_of(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(prefix_of(ip("2001:db8:1:2::5")), ip("2001:db8:1::"));
    }
}
