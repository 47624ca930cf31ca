//! Address proofs: a node sends no answer larger than the request it answers to an address that
//! has not proven it receives there (issue 17; `protocol/dht-rpc.md` "Amplification").
//!
//! UDP source addresses are not authenticated: a request "from" a victim makes a node answer
//! the victim. JS dht-rpc answers an `IMMUTABLE_GET` of a stored value with ~2 KB to a 43-byte
//! request, a 47-fold amplifier. Ours answers an address that has not proven itself with at most
//! as many bytes as it sent:
//!
//! - **Proven** (per IP, as dht-rpc tokens are): the host sent a request carrying a valid token
//!   (a token reached it), or answered one of our requests from the address we sent it to (our
//!   request reached it, and only it saw the random tid), within [`PROOF_LIFETIME`].
//! - A tid has 16 bits: an off-path attacker could try to guess one "from" a victim. Our tids
//!   are random (not JS's counter), and a response with a tid we do not wait for **taints** its
//!   host for [`TAINT`]: no proof from it meanwhile, and its probe in flight fails. So an
//!   attacker gets one guess per host per [`TAINT`] (odds 1 in 65 536 each: about 90 hours per
//!   2-minute proof). The price: a host whose answers someone keeps spoofing cannot get a *new*
//!   proof from us while that goes on (it still gets every answer that fits its request, and a
//!   proof it holds stays valid).
//! - An answer that fits its request is sent at once, proven or not.
//! - An answer that does not fit, to an unproven host, is **held** and the host is **probed**:
//!   one plain `PING` without our id (11 bytes, the smallest request there is, so never larger
//!   than what triggered it) from the socket the request came in on. Every dht-rpc node answers
//!   `PING`, JS ones included (ephemeral too): the pong proves the host, and the held answers go
//!   out. JS clients never send tokens outside commits, so this probe is what keeps them working:
//!   they get their answer one round trip later.
//! - A `PING` from a host we are probing is answered at once: it may be that host's probe of us
//!   (two of our nodes each holding an answer for the other), and holding it would make each
//!   wait for the other forever. This is the one exception: at most a 42-byte pong (our id) to
//!   an 11-byte ping, and only while our own probe of that host is in flight.
//! - Our id is never left out to make an answer fit: JS needs it in pongs (its routing table
//!   drops a node whose pong lacks it) and samples its NAT from id-less answers.
//!
//! Bounded: [`MAX_PROVEN`] hosts remembered, [`MAX_HELD`] answers held ([`MAX_HELD_PER_HOST`] per
//! host), each at most [`HOLD_FOR`]; one probe in flight per host, [`MAX_PROBES`] in all.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::node::Transmit;

/// How long a proof lasts.
pub const PROOF_LIFETIME: Duration = Duration::from_secs(2 * 60);
/// How long a host that sent an unexpected response cannot be proven.
pub const TAINT: Duration = Duration::from_secs(5);
/// Tainted hosts remembered at most.
pub const MAX_TAINTED: usize = 4096;
/// Hosts remembered as proven at most.
pub const MAX_PROVEN: usize = 16_384;
/// Answers held for probes at most.
pub const MAX_HELD: usize = 512;
/// Answers held for one host at most.
pub const MAX_HELD_PER_HOST: usize = 16;
/// How long an answer waits for its host's proof.
pub const HOLD_FOR: Duration = Duration::from_secs(3);
/// Probes in flight at most (a flood of requests from spoofed sources must not fill our own
/// requests' slots): past it, answers to unproven hosts are dropped, as a lost datagram.
pub const MAX_PROBES: usize = 64;

#[derive(Debug)]
struct Held {
    transmit: Transmit,
    tid: u16,
    expires: Instant,
}

/// Proven hosts, held answers, probes in flight.
#[derive(Debug, Default)]
pub(crate) struct Proofs {
    proven: HashMap<Ipv4Addr, Instant>,
    held: HashMap<Ipv4Addr, Vec<Held>>,
    held_count: usize,
    probing: HashSet<Ipv4Addr>,
    tainted: HashMap<Ipv4Addr, Instant>,
}

impl Proofs {
    pub(crate) fn is_proven(&self, ip: Ipv4Addr, now: Instant) -> bool {
        self.proven.get(&ip).is_some_and(|until| *until > now)
    }

    /// `ip` sent a response we did not wait for: no proof from it for [`TAINT`]. Returns
    /// whether a probe of it was in flight (the caller voids it).
    pub(crate) fn taint(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        if !self.tainted.contains_key(&ip) && self.tainted.len() >= MAX_TAINTED {
            self.tainted.retain(|_, until| *until > now);
            if self.tainted.len() >= MAX_TAINTED {
                if let Some(k) = self
                    .tainted
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(k, _)| *k)
                {
                    self.tainted.remove(&k);
                }
            }
        }
        self.tainted.insert(ip, now + TAINT);
        self.probing.contains(&ip)
    }

    fn is_tainted(&self, ip: Ipv4Addr, now: Instant) -> bool {
        self.tainted.get(&ip).is_some_and(|until| *until > now)
    }

    /// `ip` proved it receives: remember it and return what was held for it. A tainted host
    /// proves nothing (what was held for it stays held until it expires or its probe ends).
    pub(crate) fn prove(&mut self, ip: Ipv4Addr, now: Instant) -> Vec<Transmit> {
        if self.is_tainted(ip, now) {
            return Vec::new();
        }
        if !self.proven.contains_key(&ip) && self.proven.len() >= MAX_PROVEN {
            self.proven.retain(|_, until| *until > now);
            if self.proven.len() >= MAX_PROVEN {
                // Full of live proofs: forget the one closest to its end.
                if let Some(oldest) = self.proven.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) {
                    self.proven.remove(&oldest);
                }
            }
        }
        self.proven.insert(ip, now + PROOF_LIFETIME);
        self.probing.remove(&ip);
        self.take(ip)
    }

    /// Hold `transmit` (an answer with transaction id `tid`) until `ip` proves itself. Returns
    /// false (and holds nothing) when over the bounds. A second answer to the same tid replaces
    /// the first (a retransmitted request).
    pub(crate) fn hold(
        &mut self,
        ip: Ipv4Addr,
        tid: u16,
        transmit: Transmit,
        now: Instant,
    ) -> bool {
        let list = self.held.entry(ip).or_default();
        if let Some(h) = list
            .iter_mut()
            .find(|h| h.tid == tid && h.transmit.destination == transmit.destination)
        {
            h.transmit = transmit;
            h.expires = now + HOLD_FOR;
            return true;
        }
        if list.len() >= MAX_HELD_PER_HOST || self.held_count >= MAX_HELD {
            if list.is_empty() {
                self.held.remove(&ip);
            }
            return false;
        }
        list.push(Held {
            transmit,
            tid,
            expires: now + HOLD_FOR,
        });
        self.held_count += 1;
        true
    }

    fn take(&mut self, ip: Ipv4Addr) -> Vec<Transmit> {
        let list = self.held.remove(&ip).unwrap_or_default();
        self.held_count -= list.len();
        list.into_iter().map(|h| h.transmit).collect()
    }

    /// The probe of `ip` failed: drop what was held for it.
    pub(crate) fn fail(&mut self, ip: Ipv4Addr) -> usize {
        self.probing.remove(&ip);
        self.take(ip).len()
    }

    /// Whether a probe of `ip` is in flight.
    pub(crate) fn is_probing(&self, ip: Ipv4Addr) -> bool {
        self.probing.contains(&ip)
    }

    /// Whether answers for `ip` can be held: it is not tainted, and a probe of it is in flight
    /// or one can start.
    pub(crate) fn can_hold(&self, ip: Ipv4Addr, now: Instant) -> bool {
        !self.is_tainted(ip, now) && (self.probing.contains(&ip) || self.probing.len() < MAX_PROBES)
    }

    /// Whether a probe of `ip` should start now (none in flight, room for one); marks it in
    /// flight.
    pub(crate) fn start_probe(&mut self, ip: Ipv4Addr) -> bool {
        self.probing.len() < MAX_PROBES && self.probing.insert(ip)
    }

    /// Drop answers held past [`HOLD_FOR`]; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        self.held.retain(|_, list| {
            let before = list.len();
            list.retain(|h| h.expires > now);
            dropped += before - list.len();
            !list.is_empty()
        });
        self.held_count -= dropped;
        dropped
    }

    /// When the next held answer expires.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.held.values().flatten().map(|h| h.expires).min()
    }

    /// Answers held now.
    pub(crate) fn held(&self) -> usize {
        self.held_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::SocketKind;
    use std::net::SocketAddrV4;

    fn t(port: u16) -> Transmit {
        Transmit {
            socket: SocketKind::Server,
            destination: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port),
            contents: vec![port as u8],
        }
    }

    #[test]
    fn held_answers_go_out_on_proof_and_are_bounded() {
        let now = Instant::now();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let mut p = Proofs::default();
        assert!(!p.is_proven(ip, now));
        assert!(p.start_probe(ip) && !p.start_probe(ip));
        assert!(p.hold(ip, 1, t(1), now));
        assert!(p.hold(ip, 1, t(1), now), "a retransmit replaces");
        assert!(p.hold(ip, 2, t(2), now));
        assert_eq!(p.held(), 2);
        let out = p.prove(ip, now);
        assert_eq!(out.len(), 2);
        assert_eq!(p.held(), 0);
        assert!(p.is_proven(ip, now));
        assert!(!p.is_proven(ip, now + PROOF_LIFETIME));
        let other = Ipv4Addr::new(10, 0, 0, 2);
        for tid in 0..100 {
            p.hold(other, tid, t(tid), now);
        }
        assert_eq!(p.held(), MAX_HELD_PER_HOST);
        assert_eq!(p.expire(now + HOLD_FOR), MAX_HELD_PER_HOST);
        assert_eq!(p.held(), 0);
        p.hold(other, 1, t(1), now);
        assert_eq!(p.fail(other), 1);
        assert_eq!(p.held(), 0);
    }

    #[test]
    fn a_tainted_host_is_not_proven_until_the_taint_passes() {
        let now = Instant::now();
        let ip = Ipv4Addr::new(10, 0, 0, 3);
        let mut p = Proofs::default();
        assert!(p.start_probe(ip));
        p.hold(ip, 1, t(1), now);
        assert!(p.taint(ip, now), "its probe was in flight");
        assert!(p.prove(ip, now).is_empty());
        assert!(!p.is_proven(ip, now) && !p.can_hold(ip, now));
        let later = now + TAINT;
        assert!(p.can_hold(ip, later));
        assert_eq!(p.prove(ip, later).len(), 1);
        assert!(p.is_proven(ip, later));
    }
}
