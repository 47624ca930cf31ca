//! The routes a node relays PEER_HANDSHAKE and PEER_HOLEPUNCH messages along (issue 17).
//!
//! hyperdht's `router.js` relays to whatever address a message names: a `FROM_CLIENT` handshake
//! goes to its `relayAddress` if it has one, a `FROM_SERVER` one to its `peerAddress`, a
//! holepunch to its `peerAddress`. A stranger can then make any node send a ~1.5 KB message to
//! an address of its choice. Ours relays only along routes it knows:
//!
//! - `FROM_CLIENT` goes to the server's route in our forwards (its announce), never to a
//!   `relayAddress` the message names (JS clients never set one);
//! - relaying it opens a **handshake route** `(tid, target, client)`: only a `FROM_SERVER` with
//!   that tid, for that target, naming that client, is answered to the client;
//! - that answer opens a **holepunch route** `(target, client, server)`: holepunch messages are
//!   relayed from that client to that server, and answers from that server to that client;
//! - a listening server answers `FROM_SECOND_RELAY` (whose reply goes to the `relayAddress` it
//!   names) only from a node it announced itself to.
//!
//! Bounded: at most [`MAX_ROUTES`] of each kind, each for [`HANDSHAKE_ROUTE_TTL`] or
//! [`HOLEPUNCH_ROUTE_TTL`]; when full, the route closest to its end is dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Routes of each kind at most.
pub(crate) const MAX_ROUTES: usize = 4096;
/// How long a relayed `FROM_CLIENT` waits for the server's answer (the client retries within
/// a few seconds, each retry reopening the route).
pub(crate) const HANDSHAKE_ROUTE_TTL: Duration = Duration::from_secs(30);
/// How long holepunch messages may follow a handshake (refreshed by each one).
pub(crate) const HOLEPUNCH_ROUTE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Expiring<K> {
    until: HashMap<K, Instant>,
}

impl<K> Default for Expiring<K> {
    fn default() -> Self {
        Self {
            until: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Copy> Expiring<K> {
    fn open(&mut self, key: K, now: Instant, ttl: Duration) {
        if !self.until.contains_key(&key) && self.until.len() >= MAX_ROUTES {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_ROUTES {
                if let Some(k) = self.until.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                    self.until.remove(&k);
                }
            }
        }
        self.until.insert(key, now + ttl);
    }

    fn is_open(&self, key: &K, now: Instant) -> bool {
        self.until.get(key).is_some_and(|t| *t > now)
    }
}

/// Handshake and holepunch routes.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    handshakes: Expiring<(u16, [u8; 32], SocketAddrV4)>,
    holepunches: Expiring<([u8; 32], SocketAddrV4, SocketAddrV4)>,
}

impl Routes {
    /// We relayed `client`'s `FROM_CLIENT` handshake (transaction `tid`) for `target`.
    pub(crate) fn open_handshake(
        &mut self,
        tid: u16,
        target: [u8; 32],
        client: SocketAddrV4,
        now: Instant,
    ) {
        self.handshakes
            .open((tid, target, client), now, HANDSHAKE_ROUTE_TTL);
    }

    /// Whether a `FROM_SERVER` (transaction `tid`) for `target` may be answered to `client`.
    pub(crate) fn handshake(
        &self,
        tid: u16,
        target: [u8; 32],
        client: SocketAddrV4,
        now: Instant,
    ) -> bool {
        self.handshakes.is_open(&(tid, target, client), now)
    }

    /// The server at `server` answered `client`'s handshake for `target` through us.
    pub(crate) fn open_holepunch(
        &mut self,
        target: [u8; 32],
        client: SocketAddrV4,
        server: SocketAddrV4,
        now: Instant,
    ) {
        self.holepunches
            .open((target, client, server), now, HOLEPUNCH_ROUTE_TTL);
    }

    /// Whether holepunch messages for `target` may pass between `client` and `server` (using
    /// the route refreshes it).
    pub(crate) fn holepunch(
        &mut self,
        target: [u8; 32],
        client: SocketAddrV4,
        server: SocketAddrV4,
        now: Instant,
    ) -> bool {
        let key = (target, client, server);
        let open = self.holepunches.is_open(&key, now);
        if open {
            self.holepunches.open(key, now, HOLEPUNCH_ROUTE_TTL);
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn routes_open_expire_and_stay_bounded() {
        let now = Instant::now();
        let mut r = Routes::default();
        let (c, s) = (a("1.1.1.1:1"), a("2.2.2.2:2"));
        assert!(!r.handshake(7, [1; 32], c, now));
        r.open_handshake(7, [1; 32], c, now);
        assert!(r.handshake(7, [1; 32], c, now));
        assert!(!r.handshake(8, [1; 32], c, now), "another tid");
        assert!(!r.handshake(7, [2; 32], c, now), "another target");
        assert!(!r.handshake(7, [1; 32], s, now), "another client");
        assert!(!r.handshake(7, [1; 32], c, now + HANDSHAKE_ROUTE_TTL));
        r.open_holepunch([1; 32], c, s, now);
        let later = now + HOLEPUNCH_ROUTE_TTL - Duration::from_secs(1);
        assert!(r.holepunch([1; 32], c, s, later), "refreshed by use");
        assert!(r.holepunch([1; 32], c, s, later + Duration::from_secs(30)));
        assert!(!r.holepunch([1; 32], s, c, now), "one way round");
        for i in 0..(MAX_ROUTES as u32 + 100) {
            let client = SocketAddrV4::new(i.into(), 1);
            r.open_handshake(1, [0; 32], client, now);
        }
        assert!(r.handshakes.until.len() <= MAX_ROUTES);
    }
}
