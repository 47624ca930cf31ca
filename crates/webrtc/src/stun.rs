//! STUN binding (RFC 8489), sans-IO: the message codec, a server's answer to a binding
//! request, a client's binding transaction, and a per-source rate limit.
//!
//! Only the Binding method is spoken. A server answers a binding request with its source
//! address (XOR-MAPPED-ADDRESS, plus FINGERPRINT when the request carried one) and nothing
//! else: no SOFTWARE, no OTHER-ADDRESS, no RESPONSE-ORIGIN, so an answer is 32 or 40 bytes
//! (IPv4) and at most 52 (IPv6). Everything else (indications, responses, other methods,
//! malformed or oversized datagrams, a bad fingerprint) is dropped without a word.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |0 0|     STUN Message Type     |         Message Length        |
//! |                         Magic Cookie 0x2112A442               |
//! |                     Transaction ID (96 bits)                  |
//! attributes: u16 type ‖ u16 length ‖ value, padded to 4 bytes
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The magic cookie of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Header bytes.
pub const HEADER_LEN: usize = 20;
/// The largest message decoded (a STUN message fits an unfragmented datagram: RFC 8489 §6.1
/// asks for at most 548 bytes over IPv4 without path MTU knowledge; ICE checks are ~100).
pub const MAX_MESSAGE: usize = 1280;
/// The most attributes read from one message.
pub const MAX_ATTRIBUTES: usize = 32;

/// Binding request (method 0x001, class request).
pub const BINDING_REQUEST: u16 = 0x0001;
/// Binding indication.
pub const BINDING_INDICATION: u16 = 0x0011;
/// Binding success response.
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Binding error response.
pub const BINDING_ERROR: u16 = 0x0111;

/// MAPPED-ADDRESS.
pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
/// USERNAME (ICE: `remote-ufrag:local-ufrag` as the receiver sees it).
pub const ATTR_USERNAME: u16 = 0x0006;
/// ERROR-CODE.
pub const ATTR_ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES.
pub const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// XOR-MAPPED-ADDRESS.
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// FINGERPRINT (must be last).
pub const ATTR_FINGERPRINT: u16 = 0x8028;

/// `FINGERPRINT` is the CRC-32 of the message XORed with this ("STUN").
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Why bytes are not a STUN message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Shorter than a header, or the header's length runs past the datagram.
    #[error("STUN message truncated")]
    Truncated,
    /// Longer than [`MAX_MESSAGE`], or bytes after the length the header gives.
    #[error("STUN message too long or trailing bytes")]
    Length,
    /// The first two bits are not zero, the length is not a multiple of 4, or no cookie.
    #[error("not a STUN message")]
    NotStun,
    /// An attribute runs past the message, or more than [`MAX_ATTRIBUTES`].
    #[error("malformed STUN attribute")]
    BadAttribute,
    /// FINGERPRINT is not the last attribute, or its CRC does not match.
    #[error("bad STUN fingerprint")]
    BadFingerprint,
}

/// One decoded message; attributes borrow the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Message type (method and class).
    pub kind: u16,
    /// Transaction id.
    pub transaction: [u8; 12],
    /// Attributes in order (type, value without padding). FINGERPRINT, when present and
    /// valid, is the last one.
    pub attributes: Vec<(u16, &'a [u8])>,
}

/// Whether `bytes` look like STUN at all (RFC 7983 demultiplexing: first byte 0–3, and the
/// magic cookie), without decoding it.
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && bytes[0] < 4
        && bytes[4..8] == MAGIC_COOKIE.to_be_bytes()
        && bytes.len() % 4 == 0
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ FINGERPRINT_XOR
}

impl<'a> Message<'a> {
    /// Decode one message: header checks, attribute bounds, and the fingerprint if present.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StunError> {
        if bytes.len() < HEADER_LEN {
            return Err(StunError::Truncated);
        }
        if bytes.len() > MAX_MESSAGE {
            return Err(StunError::Length);
        }
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if kind & 0xC000 != 0 || len % 4 != 0 || bytes[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(StunError::NotStun);
        }
        match (HEADER_LEN + len).cmp(&bytes.len()) {
            std::cmp::Ordering::Greater => return Err(StunError::Truncated),
            std::cmp::Ordering::Less => return Err(StunError::Length),
            std::cmp::Ordering::Equal => {}
        }
        let mut transaction = [0; 12];
        transaction.copy_from_slice(&bytes[8..20]);
        let mut attributes = Vec::new();
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            if attributes.len() == MAX_ATTRIBUTES || at + 4 > bytes.len() {
                return Err(StunError::BadAttribute);
            }
            let t = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            let l = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            let value = bytes
                .get(at + 4..at + 4 + l)
                .ok_or(StunError::BadAttribute)?;
            let next = at + 4 + l.next_multiple_of(4);
            if next > bytes.len() {
                return Err(StunError::BadAttribute);
            }
            if t == ATTR_FINGERPRINT {
                // > the FINGERPRINT attribute MUST be the last attribute in the message
                // (RFC 8489 §14.7); the CRC covers everything before it, with the header's
                // length already counting it.
                let want = <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes);
                if next != bytes.len() || want != Some(crc(&bytes[..at])) {
                    return Err(StunError::BadFingerprint);
                }
            }
            attributes.push((t, value));
            at = next;
        }
        Ok(Self {
            kind,
            transaction,
            attributes,
        })
    }

    /// The first value of attribute `t`.
    pub fn attribute(&self, t: u16) -> Option<&'a [u8]> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| *v)
    }

    /// Whether the message carried a (valid) FINGERPRINT.
    pub fn has_fingerprint(&self) -> bool {
        self.attributes
            .last()
            .is_some_and(|(t, _)| *t == ATTR_FINGERPRINT)
    }

    /// USERNAME as text, if present and UTF-8.
    pub fn username(&self) -> Option<&'a str> {
        std::str::from_utf8(self.attribute(ATTR_USERNAME)?).ok()
    }

    /// The mapped address of a response: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        if let Some(v) = self.attribute(ATTR_XOR_MAPPED_ADDRESS) {
            return decode_address(v, Some(&self.transaction));
        }
        decode_address(self.attribute(ATTR_MAPPED_ADDRESS)?, None)
    }
}

/// The ufrag a receiver named itself by in an ICE check's USERNAME (`ours:theirs`): the part
/// before the colon. Used to route a check to its peer connection.
pub fn local_ufrag(datagram: &[u8]) -> Option<String> {
    let m = Message::decode(datagram).ok()?;
    let user = m.username()?;
    Some(user.split_once(':').map_or(user, |(a, _)| a).to_owned())
}

fn decode_address(v: &[u8], xor: Option<&[u8; 12]>) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut port = u16::from_be_bytes([v[2], v[3]]);
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match (v[1], v.len()) {
        (0x01, 8) => {
            let mut a = [v[4], v[5], v[6], v[7]];
            if xor.is_some() {
                for (b, c) in a.iter_mut().zip(cookie) {
                    *b ^= c;
                }
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (0x02, 20) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&v[4..20]);
            if let Some(txid) = xor {
                let mask: Vec<u8> = cookie.iter().chain(txid.iter()).copied().collect();
                for (b, c) in a.iter_mut().zip(mask) {
                    *b ^= c;
                }
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Builds one message: header, attributes, optional FINGERPRINT.
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// A message of type `kind` with this transaction id.
    pub fn new(kind: u16, transaction: [u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&kind.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&transaction);
        Self { buf }
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Append attribute `t` (padded with zeros to 4 bytes). Values over 65 535 bytes are cut.
    pub fn attribute(mut self, t: u16, value: &[u8]) -> Self {
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
        self
    }

    /// Append XOR-MAPPED-ADDRESS of `addr`.
    pub fn xor_mapped_address(self, addr: SocketAddr) -> Self {
        let txid: [u8; 12] = self.buf[8..20].try_into().unwrap_or_default();
        let cookie = MAGIC_COOKIE.to_be_bytes();
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut v = vec![0];
        match addr.ip() {
            IpAddr::V4(ip) => {
                v.push(0x01);
                v.extend_from_slice(&port.to_be_bytes());
                v.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
            }
            IpAddr::V6(ip) => {
                v.push(0x02);
                v.extend_from_slice(&port.to_be_bytes());
                let mask = cookie.iter().chain(txid.iter());
                v.extend(ip.octets().iter().zip(mask).map(|(a, b)| a ^ b));
            }
        }
        self.attribute(ATTR_XOR_MAPPED_ADDRESS, &v)
    }

    /// The message without a fingerprint.
    pub fn finish(mut self) -> Vec<u8> {
        self.set_len();
        self.buf
    }

    /// The message with FINGERPRINT as its last attribute.
    pub fn finish_with_fingerprint(mut self) -> Vec<u8> {
        // The length in the header counts the fingerprint (8 bytes) before the CRC is taken.
        let len = (self.buf.len() - HEADER_LEN + 8) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        let value = crc(&self.buf).to_be_bytes();
        self.buf.extend_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
        self.buf.extend_from_slice(&4u16.to_be_bytes());
        self.buf.extend_from_slice(&value);
        self.buf
    }
}

/// A STUN server's answer to one datagram from `source`: a binding success response with
/// `source` as XOR-MAPPED-ADDRESS (and FINGERPRINT if the request had one), a `420` naming at
/// most 4 unknown comprehension-required attributes, or `None` (dropped: not a binding
/// request, malformed, bad fingerprint).
pub fn answer(datagram: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    let m = Message::decode(datagram).ok()?;
    if m.kind != BINDING_REQUEST {
        return None;
    }
    // > unknown comprehension-required attributes [0x0000–0x7FFF] … the server MUST reply
    // > with an error response with error code 420 (RFC 8489 §6.3.1.1).
    // A binding server without credentials needs none of them; the ones ICE and the
    // credential mechanisms define are known (we just do not use them).
    const KNOWN: [u16; 8] = [
        0x0006, 0x0008, 0x0014, 0x0015, 0x001C, 0x001E, 0x0024, 0x0025,
    ];
    let unknown: Vec<u16> = m
        .attributes
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t < 0x8000 && !KNOWN.contains(t))
        .take(4)
        .collect();
    let b = if unknown.is_empty() {
        Builder::new(BINDING_SUCCESS, m.transaction).xor_mapped_address(source)
    } else {
        let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
        Builder::new(BINDING_ERROR, m.transaction)
            // class 4, number 20: "Unknown Attribute"; no reason phrase (kept short).
            .attribute(ATTR_ERROR_CODE, &[0, 0, 4, 20])
            .attribute(ATTR_UNKNOWN_ATTRIBUTES, &list)
    };
    Some(if m.has_fingerprint() {
        b.finish_with_fingerprint()
    } else {
        b.finish()
    })
}

/// A client's binding transaction: learn the address a STUN server sees us at.
///
/// Retransmits as RFC 8489 §6.2.1 with RTO 500 ms doubling (the driver calls
/// [`Binding::poll_transmit`] at [`Binding::poll_timeout`]), at most [`Binding::MAX_SENDS`]
/// sends; then it has failed.
#[derive(Debug, Clone)]
pub struct Binding {
    transaction: [u8; 12],
    server: SocketAddr,
    sends: u32,
    next: Option<Instant>,
    result: Option<SocketAddr>,
}

impl Binding {
    /// Requests sent at most (at 0, 0.5, 1.5, 3.5, 7.5, 15.5 s; gives up at 23.5 s).
    pub const MAX_SENDS: u32 = 6;
    const RTO: Duration = Duration::from_millis(500);

    /// A new transaction towards `server`, with a random transaction id.
    pub fn new(server: SocketAddr, now: Instant) -> Self {
        Self {
            transaction: rand::random(),
            server,
            sends: 0,
            next: Some(now),
            result: None,
        }
    }

    /// The server asked.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Whether `datagram` is this transaction's answer (same transaction id).
    pub fn matches(&self, datagram: &[u8]) -> bool {
        datagram.len() >= HEADER_LEN && datagram[8..20] == self.transaction && is_stun(datagram)
    }

    /// Feed a datagram from the server; returns the mapped address once learned.
    pub fn handle_response(&mut self, datagram: &[u8]) -> Option<SocketAddr> {
        let m = Message::decode(datagram).ok()?;
        if m.transaction != self.transaction || m.kind != BINDING_SUCCESS {
            return None;
        }
        let addr = m.mapped_address()?;
        self.result = Some(addr);
        self.next = None;
        Some(addr)
    }

    /// The request to send now, if a (re)transmission is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let due = self.next.filter(|t| *t <= now)?;
        if self.sends == Self::MAX_SENDS {
            self.next = None;
            return None;
        }
        self.sends += 1;
        // After the last send, wait 16 RTO (RFC 8489: Rm) before giving up.
        let wait = if self.sends == Self::MAX_SENDS {
            Self::RTO * 16
        } else {
            Self::RTO * (1 << (self.sends - 1))
        };
        self.next = Some(due.max(now) + wait);
        let req = Builder::new(BINDING_REQUEST, self.transaction).finish_with_fingerprint();
        Some((self.server, req))
    }

    /// When to call [`Binding::poll_transmit`] next; `None` once done or failed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// The mapped address, once learned.
    pub fn result(&self) -> Option<SocketAddr> {
        self.result
    }

    /// Whether the transaction ended without an answer.
    pub fn failed(&self) -> bool {
        self.result.is_none() && self.next.is_none()
    }
}

/// Per-source rate limit of a STUN server: a token bucket per client (an IPv4 address, or an
/// IPv6 /64), `rate` answers per second with a burst of `burst`, at most `max_clients`
/// buckets (a full table evicts the bucket idle longest). Keeps the server useless as a
/// reflector: a forged source gets at most `rate` answers of ≤ 52 bytes a second.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    max_clients: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimit {
    /// `rate` per second, `burst` at once, `max_clients` tracked.
    pub fn new(rate: u32, burst: u32, max_clients: usize) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            max_clients: max_clients.max(1),
            buckets: HashMap::new(),
        }
    }

    fn client(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        }
    }

    /// Whether `ip` may get an answer at `now` (takes a token if so).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = Self::client(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_clients {
            // Evict the bucket touched longest ago (a linear scan, bounded by max_clients, and
            // only when a new client arrives at a full table).
            if let Some(old) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&old);
            }
        }
        let (tokens, last) = self.buckets.entry(key).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5769 §2.1: the sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
    /// MESSAGE-INTEGRITY, FINGERPRINT).
    const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae\
        802200105354554e20746573742063 6c69656e74\
        002400046e0001ff80290008932ff9b151263b36\
        000600096576746a3a68367659202020\
        000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
        80280004e57a3bcf";

    /// RFC 5769 §2.2: the sample IPv4 response (192.0.2.1:32853).
    const RFC5769_RESPONSE_V4: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000080001a147e112a643\
        000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
        80280004c07d4c96";

    /// RFC 5769 §2.3: the sample IPv6 response (2001:db8:1234:5678:11:2233:4455:6677, 32853).
    const RFC5769_RESPONSE_V6: &str = "010100482112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9\
        00080014a382954e4be67bf11784c97c8292c275bfe3ed41\
        80280004c8fb0b4c";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn rfc5769_vectors_decode_with_their_fingerprints() {
        let req = unhex(RFC5769_REQUEST);
        let m = Message::decode(&req).unwrap();
        assert_eq!(m.kind, BINDING_REQUEST);
        assert!(m.has_fingerprint());
        assert_eq!(m.username(), Some("evtj:h6vY"));
        assert_eq!(local_ufrag(&req).as_deref(), Some("evtj"));

        let v4 = unhex(RFC5769_RESPONSE_V4);
        let m = Message::decode(&v4).unwrap();
        assert_eq!(m.kind, BINDING_SUCCESS);
        assert_eq!(m.mapped_address(), Some("192.0.2.1:32853".parse().unwrap()));
        let v6 = unhex(RFC5769_RESPONSE_V6);
        assert_eq!(
            Message::decode(&v6).unwrap().mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        // Every bit flip is caught, or leaves a message without a fingerprint (a flip in the
        // FINGERPRINT attribute's type, or a length that swallows it), which decoding reports.
        for i in 0..v4.len() * 8 {
            let mut b = v4.clone();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(m) = Message::decode(&b) {
                assert!(!m.has_fingerprint(), "bit {i} flipped still decodes: {m:?}");
            }
        }
    }

    #[test]
    fn answers_are_small_and_carry_the_source() {
        let src: SocketAddr = "203.0.113.11:40000".parse().unwrap();
        let tx = [7u8; 12];
        let plain = Builder::new(BINDING_REQUEST, tx).finish();
        assert_eq!(plain.len(), 20);
        let a = answer(&plain, src).unwrap();
        assert_eq!(a.len(), 32);
        let m = Message::decode(&a).unwrap();
        assert_eq!((m.kind, m.transaction), (BINDING_SUCCESS, tx));
        assert_eq!(m.mapped_address(), Some(src));
        assert!(!m.has_fingerprint());

        let fp = Builder::new(BINDING_REQUEST, tx).finish_with_fingerprint();
        let a = answer(&fp, src).unwrap();
        assert_eq!(a.len(), 40);
        assert!(Message::decode(&a).unwrap().has_fingerprint());

        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        let a = answer(&fp, v6).unwrap();
        assert_eq!(a.len(), 52);
        assert_eq!(Message::decode(&a).unwrap().mapped_address(), Some(v6));

        // The RFC 5769 request (ICE attributes, all known) gets a plain success.
        let req = unhex(RFC5769_REQUEST);
        let a = answer(&req, src).unwrap();
        assert_eq!(Message::decode(&a).unwrap().kind, BINDING_SUCCESS);
        assert!(a.len() <= req.len());
    }

    #[test]
    fn drops_what_is_not_a_binding_request() {
        let src: SocketAddr = "203.0.113.11:40000".parse().unwrap();
        let tx = [1u8; 12];
        for kind in [BINDING_INDICATION, BINDING_SUCCESS, BINDING_ERROR, 0x0003] {
            assert_eq!(answer(&Builder::new(kind, tx).finish(), src), None);
        }
        let mut bad_fp = Builder::new(BINDING_REQUEST, tx).finish_with_fingerprint();
        let last = bad_fp.len() - 1;
        bad_fp[last] ^= 1;
        assert_eq!(answer(&bad_fp, src), None);
        assert_eq!(answer(&[0; 19], src), None);
        assert_eq!(answer(&vec![0; 2000], src), None);
        // Unknown comprehension-required attribute: 420 listing it.
        let req = Builder::new(BINDING_REQUEST, tx)
            .attribute(0x0003, &[0, 0, 0, 0])
            .finish();
        let a = answer(&req, src).unwrap();
        let m = Message::decode(&a).unwrap();
        assert_eq!(m.kind, BINDING_ERROR);
        assert_eq!(m.attribute(ATTR_UNKNOWN_ATTRIBUTES), Some(&[0u8, 3][..]));
        // Comprehension-optional ones are ignored.
        let req = Builder::new(BINDING_REQUEST, tx)
            .attribute(0xC057, &[0, 1, 0, 0])
            .finish();
        assert_eq!(
            Message::decode(&answer(&req, src).unwrap()).unwrap().kind,
            BINDING_SUCCESS
        );
    }

    #[test]
    fn client_retransmits_then_learns_or_fails() {
        let server: SocketAddr = "198.51.100.30:3478".parse().unwrap();
        let t0 = Instant::now();
        let mut b = Binding::new(server, t0);
        let (to, req) = b.poll_transmit(t0).unwrap();
        assert_eq!(to, server);
        assert!(b.poll_transmit(t0).is_none());
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        let (_, again) = b.poll_transmit(t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(req, again);
        // A response for another transaction is ignored, ours is taken.
        let me: SocketAddr = "203.0.113.11:5000".parse().unwrap();
        let other = answer(&Builder::new(BINDING_REQUEST, [9; 12]).finish(), me).unwrap();
        assert!(!b.matches(&other));
        assert_eq!(b.handle_response(&other), None);
        let resp = answer(&req, me).unwrap();
        assert!(b.matches(&resp));
        assert_eq!(b.handle_response(&resp), Some(me));
        assert_eq!(b.poll_timeout(), None);

        let mut lost = Binding::new(server, t0);
        let mut now = t0;
        let mut sends = 0;
        while let Some(t) = lost.poll_timeout() {
            now = t;
            if lost.poll_transmit(now).is_some() {
                sends += 1;
            }
        }
        assert_eq!(sends, Binding::MAX_SENDS);
        assert!(lost.failed());
        assert_eq!(now - t0, Duration::from_millis(23_500));
    }

    #[test]
    fn rate_limit_is_per_client_and_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 5, 3);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!((0..20).filter(|_| r.allow(a, t0)).count(), 5);
        assert!(r.allow(a, t0 + Duration::from_millis(100)));
        assert!(!r.allow(a, t0 + Duration::from_millis(100)));
        // IPv6 clients share their /64.
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!((0..5).filter(|_| r.allow(x, t0)).count(), 5);
        assert!(!r.allow(y, t0));
        for i in 0..100u8 {
            r.allow(IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)), t0);
        }
        assert_eq!(r.len(), 3);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&bytes);
            let _ = answer(&bytes, "192.0.2.1:1".parse().unwrap());
        }

        #[test]
        fn built_messages_roundtrip(
            kind in 0u16..0x0400,
            tx in any::<[u8; 12]>(),
            attrs in proptest::collection::vec((0x8000u16..0x8027, proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
            fp in any::<bool>(),
        ) {
            let mut b = Builder::new(kind, tx);
            for (t, v) in &attrs {
                b = b.attribute(*t, v);
            }
            let bytes = if fp { b.finish_with_fingerprint() } else { b.finish() };
            prop_assert!(is_stun(&bytes));
            let m = Message::decode(&bytes).unwrap();
            prop_assert_eq!(m.kind, kind);
            prop_assert_eq!(m.transaction, tx);
            prop_assert_eq!(m.has_fingerprint(), fp);
            let got: Vec<_> = m.attributes.iter().filter(|(t, _)| *t != ATTR_FINGERPRINT)
                .map(|(t, v)| (*t, v.to_vec())).collect();
            prop_assert_eq!(got, attrs);
        }
    }
}
