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
//! Bounded: at most [`Relay::max_splices`] splices; the optional capture (for tests proving a
//! relay cannot read what it carries) keeps at most the bytes it was given.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::Transmit;
use crate::packet::{Flags, Header};

/// Default cap on live splices per socket.
pub const MAX_SPLICES: usize = 4096;

/// One end of a splice.
#[derive(Debug, Clone, Copy)]
struct End {
    /// The stream id the peer behind this end announced (our packets to it carry this id).
    remote_id: u32,
    /// The relay id of the other end.
    other: u32,
    /// Learned from this end's first packet.
    addr: Option<SocketAddr>,
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
}

/// The splices of one socket. See the module docs.
#[derive(Debug)]
pub struct Relay {
    ends: HashMap<u32, End>,
    max_splices: usize,
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
            max_splices,
            stats: RelayStats::default(),
            capture: None,
        }
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
    /// (peer stream id `b_remote`). Returns `false`, changing nothing, if either id is taken,
    /// the ids are equal, or the table is full.
    pub fn splice(&mut self, a: u32, a_remote: u32, b: u32, b_remote: u32) -> bool {
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
                addr: None,
            },
        );
        self.ends.insert(
            b,
            End {
                remote_id: b_remote,
                other: a,
                addr: None,
            },
        );
        self.stats.splices = self.ends.len() / 2;
        true
    }

    /// Remove the splice that relay id `id` belongs to (both ends). Returns whether it existed.
    pub fn unsplice(&mut self, id: u32) -> bool {
        let Some(end) = self.ends.remove(&id) else {
            return false;
        };
        self.ends.remove(&end.other);
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

    /// Route one received datagram.
    pub fn handle_datagram(&mut self, from: SocketAddr, data: &[u8]) -> Relayed {
        let Some(header) = Header::decode(data) else {
            return Relayed::No;
        };
        let Some(end) = self.ends.get_mut(&header.id) else {
            return Relayed::No;
        };
        match end.addr {
            None => end.addr = Some(from),
            Some(addr) if addr != from => {
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
        let mut bytes = data.to_vec();
        bytes[4..8].copy_from_slice(&other.remote_id.to_le_bytes());
        self.stats.packets += 1;
        self.stats.bytes += bytes.len() as u64;
        if let Some((buf, limit)) = &mut self.capture {
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        if header.flags.contains(Flags::DESTROY) {
            self.unsplice(header.id);
        }
        Relayed::Forward(Transmit {
            dest,
            bytes,
            stream: None,
        })
    }
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

    #[test]
    fn forwards_with_rewritten_id_once_both_ends_are_known() {
        let mut r = Relay::default();
        assert!(r.splice(100, 1, 200, 2));
        // A speaks first: B has no address yet, so the packet is dropped (A is learned).
        assert_eq!(
            r.handle_datagram(addr(1), &packet(100, 1, b"x")),
            Relayed::Dropped
        );
        // B speaks: forwarded to A with A's stream id.
        let Relayed::Forward(t) = r.handle_datagram(addr(2), &packet(200, 1, b"hello")) else {
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
        let Relayed::Forward(t) = r.handle_datagram(addr(1), &packet(100, 1, b"y")) else {
            panic!("not forwarded");
        };
        assert_eq!((t.dest, &t.bytes[4..8]), (addr(2), &2u32.to_le_bytes()[..]));
        assert_eq!(r.stats().packets, 2);
    }

    #[test]
    fn drops_packets_from_a_third_address_and_ignores_other_ids() {
        let mut r = Relay::default();
        assert!(r.splice(100, 1, 200, 2));
        r.handle_datagram(addr(1), &packet(100, 1, b""));
        r.handle_datagram(addr(2), &packet(200, 1, b""));
        assert_eq!(
            r.handle_datagram(addr(3), &packet(100, 1, b"")),
            Relayed::Dropped
        );
        assert_eq!(
            r.handle_datagram(addr(3), &packet(300, 1, b"")),
            Relayed::No
        );
        assert_eq!(r.handle_datagram(addr(3), b"\x03not udx"), Relayed::No);
    }

    #[test]
    fn destroy_removes_the_splice_and_bounds_hold() {
        let mut r = Relay::new(1);
        assert!(r.splice(100, 1, 200, 2));
        assert!(!r.splice(300, 3, 400, 4), "over the cap");
        assert!(!r.splice(500, 5, 500, 5), "equal ids");
        r.handle_datagram(addr(1), &packet(100, 1, b""));
        r.handle_datagram(addr(2), &packet(200, 1, b""));
        let out = r.handle_datagram(addr(1), &packet(100, Flags::DESTROY.0, b""));
        assert!(matches!(out, Relayed::Forward(_)));
        assert!(!r.contains(100) && !r.contains(200));
        assert!(r.splice(300, 3, 400, 4));
        assert!(r.unsplice(400));
        assert!(!r.contains(300));
    }

    #[test]
    fn capture_is_bounded() {
        let mut r = Relay::default();
        r.start_capture(30);
        assert!(r.splice(100, 1, 200, 2));
        r.handle_datagram(addr(1), &packet(100, 1, b""));
        for _ in 0..3 {
            r.handle_datagram(addr(2), &packet(200, 1, b"0123456789"));
        }
        assert_eq!(r.take_capture().len(), 30);
    }
}
