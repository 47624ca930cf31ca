//! Per-client concurrency: at most `per_client` requests in flight from one client, with the
//! set of tracked clients itself bounded.
//!
//! A client is an IPv4 address, or the /64 prefix of an IPv6 address (one host usually holds a
//! whole /64, so keying by full address would let it open unlimited buckets). Behind a reverse
//! proxy the address is the one a trusted proxy forwarded ([`crate::forwarded`]); without
//! `trusted_proxies` every request through a proxy looks like the proxy's.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The identity requests are limited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientId(IpAddr);

impl ClientId {
    /// The client of a remote address: IPv4 as is (IPv4-mapped IPv6 included), IPv6 cut to
    /// its /64.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }

    /// Requests whose remote address is unknown share one bucket.
    pub(crate) fn unknown() -> Self {
        Self(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This client already has `per_client` requests in flight.
    Client,
    /// `max_clients` clients all have requests in flight.
    Full,
}

/// Semaphores per client, in a map of at most `max_clients` entries. Idle entries (no permit
/// out) are dropped when the map is full.
#[derive(Debug)]
pub(crate) struct ClientLimiter {
    per_client: usize,
    max_clients: usize,
    clients: Mutex<HashMap<ClientId, Arc<Semaphore>>>,
}

impl ClientLimiter {
    pub(crate) fn new(per_client: usize, max_clients: usize) -> Self {
        Self {
            per_client: per_client.max(1),
            max_clients: max_clients.max(1),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A permit for one request of `client`, held until the response is produced.
    pub(crate) fn try_acquire(&self, client: ClientId) -> Result<OwnedSemaphorePermit, Refused> {
        let mut clients = self.clients.lock().map_err(|_| Refused::Full)?;
        if !clients.contains_key(&client) && clients.len() >= self.max_clients {
            // A semaphore is shared with its permits: a count of 1 means none is out.
            clients.retain(|_, s| Arc::strong_count(s) > 1);
            if clients.len() >= self.max_clients {
                return Err(Refused::Full);
            }
        }
        let sem = clients
            .entry(client)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_client)))
            .clone();
        sem.try_acquire_owned().map_err(|_| Refused::Client)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.clients.lock().map_or(0, |c| c.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> ClientId {
        ClientId::of(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn ipv6_clients_are_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientId::of(a), ClientId::of(b));
        assert_ne!(ClientId::of(a), ClientId::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ClientId::of(mapped), v4(1));
    }

    #[test]
    fn per_client_limit_and_release() {
        let l = ClientLimiter::new(2, 8);
        let p1 = l.try_acquire(v4(1)).unwrap();
        let _p2 = l.try_acquire(v4(1)).unwrap();
        assert_eq!(l.try_acquire(v4(1)).unwrap_err(), Refused::Client);
        // Another client is not affected.
        let _q = l.try_acquire(v4(2)).unwrap();
        drop(p1);
        assert!(l.try_acquire(v4(1)).is_ok());
    }

    #[test]
    fn tracked_clients_are_bounded() {
        let l = ClientLimiter::new(1, 3);
        let held: Vec<_> = (0..3).map(|i| l.try_acquire(v4(i)).unwrap()).collect();
        assert_eq!(l.try_acquire(v4(9)).unwrap_err(), Refused::Full);
        drop(held);
        // Idle entries make room.
        for i in 10..100 {
            drop(l.try_acquire(v4(i)).unwrap());
            assert!(l.tracked() <= 3);
        }
    }
}
