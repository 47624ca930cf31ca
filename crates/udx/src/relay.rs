//! Stream relaying (libudx `udx_stream_relay_to`, what a blind-relay server uses), sans-IO.
//!
//! A [`Relay`] holds *splices*: pairs of relay stream ids living on one socket. Each relay id
//! is given out to one peer (blind-relay's `pair` reply); that peer then sends its UDX packets
//! to the socket with the relay id as destination. The first packet of an end fixes the end's
//! address (libudx's firewall hook, which blind-relay answers with `stream.connect` to the
//! sender). From then on every packet for one end is forwarded to the other end's address with
//! the destination id (header bytes 4..8) rewritten to the id that peer announced, and nothing
//! else changed: no decryption (the payload is secret-stream ciphertext anyway), no
//! acknowledgement, no congestion control — the two peers run UDX end to end.
//!
//! Differences from libudx, on purpose:
//! - packets for an end from any address other than the one it learned are dropped (libudx
//!   processes them); a relay should not be a reflector for third parties;
//! - a packet for an end whose peer has no address yet is dropped, as libudx drops a relayed
//!   packet to an unconnected stream;
//! - a DESTROY packet is forwarded, then the whole splice is removed (libudx closes the stream
//!   that saw it; blind-relay then unlinks the pair).
//!
//! - an end can be **pinned** to an address when spliced ([`Relay::splice_pinned`]): a
//!   blind-relay server pins each end to the address of the peer's own relay connection (a
//!   Noise session with the relay: an address that proved it receives and that asked to be
//!   paired), so a spoofed first packet cannot point a splice at a third party.
//!
//! Bounded: at most [`Relay::max_splices`] splices; each splice within [`SpliceLimits`] (bytes
//! in all, a rate with a burst, an idle and a total lifetime: over the rate packets are dropped,
//! past a bound the splice ends); the optional capture (for tests proving a relay cannot read
//! what it carries) keeps at most the bytes it was given. Splices the relay ends by itself
//! (DESTROY, a bound) are listed by [`Relay::take_ended`], for the blind-relay server to free
//! the pairing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Transmit;
use crate::packet::{Flags, Header};

/// Default cap on live splices per socket.
pub const MAX_SPLICES: usize = 4096;

/// Bounds of every splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpliceLimits {
    /// Bytes forwarded (both ways, whole datagrams) after which the splice ends.
    pub max_bytes: u64,
    /// Bytes per second forwarded (both ways); datagrams over it are dropped.
    pub rate: u64,
    /// Bytes that may pass at once above the rate.
    pub burst: u64,
    /// No datagram either way for this long ends the splice (peers send keep-alives every 5 s).
    pub idle: Duration,
    /// A splice ends this long after it was made, whatever it carries.
    pub lifetime: Duration,
}

impl Default for SpliceLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            rate: 1 << 20,
            burst: 256 << 10,
            idle: Duration::from_secs(20),
            lifetime: Duration::from_secs(30 * 60),
        }
    }
}

impl SpliceLimits {
    /// No bounds (what libudx does).
    pub const UNLIMITED: Self = Self {
        max_bytes: u64::MAX,
        rate: u64::MAX,
        burst: u64::MAX,
        idle: Duration::MAX,
        lifetime: Duration::MAX,
    };
}

/// One end of a splice.
#[derive(Debug, Clone, Copy)]
struct End {
    /// The stream id the peer behind this end announced (our packets to it carry this id).
    remote_id: u32,
    /// The relay id of the other end.
    other: u32,
    /// Learned from this end's first packet, or pinned when spliced.
    addr: Option<SocketAddr>,
}

/// What one splice used, kept under its lower relay id.
#[derive(Debug, Clone, Copy)]
struct Usage {
    created: Instant,
    last: Instant,
    bytes: u64,
    tokens: u64,
    refilled: Instant,
}

/// What [`Relay::handle_datagram`] did with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// Not addressed to a relay id: process it as usual.
    No,
    /// Addressed to a relay id but dropped (peer not known yet, wrong source).
    Dropped,
    /// Send this datagram on.
    Forward(Transmit),
}

/// Counters, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Live splices.
    pub splices: usize,
    /// Datagrams forwarded.
    pub packets: u64,
    /// Bytes forwarded (whole datagrams).
    pub bytes: u64,
    /// Datagrams for relay ids that were dropped.
    pub dropped: u64,
    /// Of those, dropped over a splice's rate.
    pub over_rate: u64,
    /// Splices ended by a bound (bytes, idle, lifetime).
    pub expired: u64,
}

/// The splices of one socket. See the module docs.
#[derive(Debug)]
pub struct Relay {
    ends: HashMap<u32, End>,
    usage: HashMap<u32, Usage>,
    max_splices: usize,
    limits: SpliceLimits,
    ended: VecDeque<u32>,
    stats: RelayStats,
    capture: Option<(Vec<u8>, usize)>,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new(MAX_SPLICES)
    }
}

impl Relay {
    /// A relay holding at most `max_splices` splices.
    pub fn new(max_splices: usize) -> Self {
        Self {
            ends: HashMap::new(),
            usage: HashMap::new(),
            max_splices,
            limits: SpliceLimits::default(),
            ended: VecDeque::new(),
            stats: RelayStats::default(),
            capture: None,
        }
    }

    /// Bound every splice made from now on (and those running) by `limits`.
    pub fn set_limits(&mut self, limits: SpliceLimits) {
        self.limits = limits;
    }

    /// The bounds of a splice.
    pub fn limits(&self) -> SpliceLimits {
        self.limits
    }

    /// The cap on live splices.
    pub fn max_splices(&self) -> usize {
        self.max_splices
    }

    /// Whether `id` is a relay id here.
    pub fn contains(&self, id: u32) -> bool {
        self.ends.contains_key(&id)
    }

    /// Splice relay id `a` (whose peer announced stream id `a_remote`) with relay id `b`
    /// (peer stream id `b_remote`), each end learning its address from its first packet (as
    /// libudx). Returns `false`, changing nothing, if either id is taken, the ids are equal, or
    /// the table is full.
    pub fn splice(&mut self, now: Instant, a: u32, a_remote: u32, b: u32, b_remote: u32) -> bool {
        self.splice_pinned(now, (a, a_remote, None), (b, b_remote, None))
    }

    /// [`Relay::splice`] with each end `(relay id, announced stream id, address)` pinned to an
    /// address when one is given: packets for that end from any other address are dropped, and
    /// the other end's packets go only there.
    pub fn splice_pinned(
        &mut self,
        now: Instant,
        (a, a_remote, a_addr): (u32, u32, Option<SocketAddr>),
        (b, b_remote, b_addr): (u32, u32, Option<SocketAddr>),
    ) -> bool {
        if a == b
            || self.ends.contains_key(&a)
            || self.ends.contains_key(&b)
            || self.ends.len() / 2 >= self.max_splices
        {
            return false;
        }
        self.ends.insert(
            a,
            End {
                remote_id: a_remote,
                other: b,
                addr: a_addr,
            },
        );
        self.ends.insert(
            b,
            End {
                remote_id: b_remote,
                other: a,
                addr: b_addr,
            },
        );
        self.usage.insert(
            a.min(b),
            Usage {
                created: now,
                last: now,
                bytes: 0,
                tokens: self.limits.burst,
                refilled: now,
            },
        );
        self.stats.splices = self.ends.len() / 2;
        true
    }

    /// End the splices past their idle time or lifetime; returns how many ended. Call it every
    /// few seconds; their ids then come out of [`Relay::take_ended`].
    pub fn expire(&mut self, now: Instant) -> usize {
        let l = self.limits;
        let gone: Vec<u32> = self
            .usage
            .iter()
            .filter(|(_, u)| {
                now.saturating_duration_since(u.last) >= l.idle
                    || now.saturating_duration_since(u.created) >= l.lifetime
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.end(*id);
            self.stats.expired += 1;
        }
        gone.len()
    }

    /// Relay ids (one per splice) of the splices that ended by themselves since the last call:
    /// a DESTROY passed, or a bound was reached.
    pub fn take_ended(&mut self) -> Vec<u32> {
        self.ended.drain(..).collect()
    }

    /// Remove a splice the relay ends by itself, and note it for [`Relay::take_ended`].
    fn end(&mut self, id: u32) {
        if self.unsplice(id) {
            // At most one note per live splice fits: the queue stays bounded.
            if self.ended.len() < self.max_splices.saturating_mul(2).max(16) {
                self.ended.push_back(id);
            }
        }
    }

    /// Remove the splice that relay id `id` belongs to (both ends). Returns whether it existed.
    pub fn unsplice(&mut self, id: u32) -> bool {
        let Some(end) = self.ends.remove(&id) else {
            return false;
        };
        self.ends.remove(&end.other);
        self.usage.remove(&id.min(end.other));
        self.stats.splices = self.ends.len() / 2;
        true
    }

    /// The address an end learned, if any.
    pub fn peer_address(&self, id: u32) -> Option<SocketAddr> {
        self.ends.get(&id).and_then(|e| e.addr)
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Keep a copy of the next `limit` bytes of forwarded datagrams (replacing any earlier
    /// capture), for tests that check what a relay can see.
    pub fn start_capture(&mut self, limit: usize) {
        self.capture = Some((Vec::new(), limit));
    }

    /// The captured bytes so far (the capture goes on).
    pub fn take_capture(&mut self) -> Vec<u8> {
        match &mut self.capture {
            Some((buf, _)) => std::mem::take(buf),
            None => Vec::new(),
        }
    }

    /// Route one datagram received at `now`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Relayed {
        let Some(header) = Header::decode(data) else {
            return Relayed::No;
        };
        let Some(end) = self.ends.get_mut(&header.id) else {
            return Relayed::No;
        };
        match end.addr {
            None => end.addr = Some(from),
            Some(addr) if !same_addr(addr, from) => {
                self.stats.dropped += 1;
                return Relayed::Dropped;
            }
            Some(_) => {}
        }
        let other_id = end.other;
        let Some(other) = self.ends.get(&other_id).copied() else {
            self.stats.dropped += 1;
            return Relayed::Dropped;
        };
        let Some(dest) = other.addr else {
            self.stats.dropped += 1;
            return Relayed::Dropped;
        };
        let key = header.id.min(other_id);
        let l = self.limits;
        if let Some(u) = self.usage.get_mut(&key) {
            u.last = now;
            // Refill the bucket for the time passed (rate · elapsed, capped at the burst).
            let elapsed = now.saturating_duration_since(u.refilled);
            let add = u128::from(l.rate).saturating_mul(elapsed.as_micros()) / 1_000_000;
            if add > 0 {
                u.tokens = u
                    .tokens
                    .saturating_add(u64::try_from(add).unwrap_or(u64::MAX))
                    .min(l.burst);
                u.refilled = now;
            }
            let len = data.len() as u64;
            if u.tokens < len {
                self.stats.dropped += 1;
                self.stats.over_rate += 1;
                return Relayed::Dropped;
            }
            u.tokens -= len;
            u.bytes = u.bytes.saturating_add(len);
            if u.bytes > l.max_bytes {
                self.end(header.id);
                self.stats.expired += 1;
                self.stats.dropped += 1;
                return Relayed::Dropped;
            }
        }
        let mut bytes = data.to_vec();
        bytes[4..8].copy_from_slice(&other.remote_id.to_le_bytes());
        self.stats.packets += 1;
        self.stats.bytes += bytes.len() as u64;
        if let Some((buf, limit)) = &mut self.capture {
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        if header.flags.contains(Flags::DESTROY) {
            self.end(header.id);
        }
        Relayed::Forward(Transmit {
            dest,
            bytes,
            stream: None,
        })
    }
}

/// Equal addresses, an IPv4-mapped IPv6 spelling being its IPv4 address.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let unmap = |s: SocketAddr| match s {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map_or(s, |v4| SocketAddr::from((v4, v6.port()))),
        v4 => v4,
    };
    unmap(a) == unmap(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(id: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            flags: Flags(flags),
            data_offset: 0,
            id,
            rwnd: 1000,
            seq: 7,
            ack: 3,
        }
        .write_to(&mut out);
        out.extend_from_slice(payload);
        out
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    /// One fixed instant for the tests that do not let time pass.
    fn t0() -> Instant {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    #[test]
    fn pinned_ends_ignore_other_sources_and_send_only_to_their_address() {
        let mut r = Relay::default();
        let now = t0();
        assert!(r.splice_pinned(now, (100, 1, Some(addr(1))), (200, 2, Some(addr(2)))));
        // A spoofed first packet "from" a victim cannot point the splice at it.
        assert_eq!(
            r.handle_datagram(now, addr(9), &packet(100, 1, b"x")),
            Relayed::Dropped
        );
        // The pinned peer's first packet goes through at once: the other end is known.
        let Relayed::Forward(t) = r.handle_datagram(now, addr(1), &packet(100, 1, b"hi")) else {
            panic!("not forwarded");
        };
        assert_eq!(t.dest, addr(2));
        // An IPv4-mapped spelling of the pinned address is the same address.
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:2".parse().unwrap();
        assert!(matches!(
            r.handle_datagram(now, mapped, &packet(200, 1, b"x")),
            Relayed::Forward(_)
        ));
    }

    #[test]
    fn rate_bytes_idle_and_lifetime_are_bounded() {
        let mut r = Relay::default();
        r.set_limits(SpliceLimits {
            max_bytes: 10_000,
            rate: 1000,
            burst: 2000,
            idle: Duration::from_secs(20),
            lifetime: Duration::from_secs(60),
        });
        let now = t0();
        assert!(r.splice_pinned(now, (100, 1, Some(addr(1))), (200, 2, Some(addr(2)))));
        let big = packet(100, 1, &[7; 480]); // 500 bytes
        // The burst passes, then the rate holds: over it datagrams are dropped.
        let sent = (0..10)
            .filter(|_| matches!(r.handle_datagram(now, addr(1), &big), Relayed::Forward(_)))
            .count();
        assert_eq!(sent, 4);
        assert_eq!(r.stats().over_rate, 6);
        // A second later, one second of rate (1000 bytes) is back.
        let later = now + Duration::from_secs(1);
        let sent = (0..10)
            .filter(|_| matches!(r.handle_datagram(later, addr(1), &big), Relayed::Forward(_)))
            .count();
        assert_eq!(sent, 2);
        // Past max_bytes the splice ends.
        let mut t = later;
        while r.contains(100) {
            t += Duration::from_secs(1);
            r.handle_datagram(t, addr(1), &big);
            assert!(t < later + Duration::from_secs(60), "never ended");
        }
        assert_eq!(r.take_ended(), vec![100]);
        assert!(r.take_ended().is_empty());
        // Idle: no packet for 20 s.
        assert!(r.splice_pinned(t, (300, 3, Some(addr(1))), (400, 4, Some(addr(2)))));
        assert_eq!(r.expire(t + Duration::from_secs(19)), 0);
        r.handle_datagram(t + Duration::from_secs(19), addr(1), &packet(300, 1, b""));
        assert_eq!(r.expire(t + Duration::from_secs(38)), 0);
        assert_eq!(r.expire(t + Duration::from_secs(40)), 1);
        assert_eq!(r.take_ended(), vec![300]);
        // Lifetime: ends after 60 s even while busy.
        assert!(r.splice_pinned(t, (500, 5, Some(addr(1))), (600, 6, Some(addr(2)))));
        for s in 1..60 {
            let at = t + Duration::from_secs(s);
            r.handle_datagram(at, addr(1), &packet(500, 1, b""));
            assert_eq!(r.expire(at), 0);
        }
        assert_eq!(r.expire(t + Duration::from_secs(60)), 1);
        assert!(!r.contains(500) && !r.contains(600));
        assert_eq!(r.stats().splices, 0);
    }

    #[test]
    fn forwards_with_rewritten_id_once_both_ends_are_known() {
        let mut r = Relay::default();
        assert!(r.splice(t0(), 100, 1, 200, 2));
        // A speaks first: B has no address yet, so the packet is dropped (A is learned).
        assert_eq!(
            r.handle_datagram(t0(), addr(1), &packet(100, 1, b"x")),
            Relayed::Dropped
        );
        // B speaks: forwarded to A with A's stream id.
        let Relayed::Forward(t) = r.handle_datagram(t0(), addr(2), &packet(200, 1, b"hello"))
        else {
            panic!("not forwarded");
        };
        assert_eq!(t.dest, addr(1));
        assert_eq!(&t.bytes[4..8], &1u32.to_le_bytes());
        assert_eq!(&t.bytes[20..], b"hello");
        // Everything but the id is untouched.
        let orig = packet(200, 1, b"hello");
        assert_eq!(&t.bytes[..4], &orig[..4]);
        assert_eq!(&t.bytes[8..], &orig[8..]);
        // A again: now forwarded to B with B's id.
        let Relayed::Forward(t) = r.handle_datagram(t0(), addr(1), &packet(100, 1, b"y")) else {
            panic!("not forwarded");
        };
        assert_eq!((t.dest, &t.bytes[4..8]), (addr(2), &2u32.to_le_bytes()[..]));
        assert_eq!(r.stats().packets, 2);
    }

    #[test]
    fn drops_packets_from_a_third_address_and_ignores_other_ids() {
        let mut r = Relay::default();
        assert!(r.splice(t0(), 100, 1, 200, 2));
        r.handle_datagram(t0(), addr(1), &packet(100, 1, b""));
        r.handle_datagram(t0(), addr(2), &packet(200, 1, b""));
        assert_eq!(
            r.handle_datagram(t0(), addr(3), &packet(100, 1, b"")),
            Relayed::Dropped
        );
        assert_eq!(
            r.handle_datagram(t0(), addr(3), &packet(300, 1, b"")),
            Relayed::No
        );
        assert_eq!(
            r.handle_datagram(t0(), addr(3), b"\x03not udx"),
            Relayed::No
        );
    }

    #[test]
    fn destroy_removes_the_splice_and_bounds_hold() {
        let mut r = Relay::new(1);
        assert!(r.splice(t0(), 100, 1, 200, 2));
        assert!(!r.splice(t0(), 300, 3, 400, 4), "over the cap");
        assert!(!r.splice(t0(), 500, 5, 500, 5), "equal ids");
        r.handle_datagram(t0(), addr(1), &packet(100, 1, b""));
        r.handle_datagram(t0(), addr(2), &packet(200, 1, b""));
        let out = r.handle_datagram(t0(), addr(1), &packet(100, Flags::DESTROY.0, b""));
        assert!(matches!(out, Relayed::Forward(_)));
        assert!(!r.contains(100) && !r.contains(200));
        assert!(r.splice(t0(), 300, 3, 400, 4));
        assert!(r.unsplice(400));
        assert!(!r.contains(300));
    }

    #[test]
    fn capture_is_bounded() {
        let mut r = Relay::default();
        r.start_capture(30);
        assert!(r.splice(t0(), 100, 1, 200, 2));
        r.handle_datagram(t0(), addr(1), &packet(100, 1, b""));
        for _ in 0..3 {
            r.handle_datagram(t0(), addr(2), &packet(200, 1, b"0123456789"));
        }
        assert_eq!(r.take_capture().len(), 30);
    }
}
