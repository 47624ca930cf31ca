//! What the swarm remembers about one remote public key (hyperswarm `lib/peer-info.js`).
//!
//! Pure bookkeeping: attempts, whether the peer ever connected ("proven"), its priority in the
//! dial queue, ban and explicit flags. Time comes in as `now`.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// A connection that lasted at least this long resets the attempt counter on disconnect
/// (`MIN_CONNECTION_TIME`).
pub(crate) const MIN_CONNECTION_TIME: Duration = Duration::from_millis(15_000);

/// Position in the dial queue; higher is dialled first (`peer-info.js` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Priority {
    /// Tried more than three times (`VERY_LOW_PRIORITY`, 0).
    VeryLow = 0,
    /// Three attempts (`LOW_PRIORITY`, 1).
    Low = 1,
    /// Never tried (`NORMAL_PRIORITY`, 2).
    Normal = 2,
    /// Two attempts (`HIGH_PRIORITY`, 3).
    High = 3,
    /// One attempt: reconnect fast (`VERY_HIGH_PRIORITY`, 4).
    VeryHigh = 4,
}

impl Priority {
    /// The queue level (0–4).
    pub(crate) fn level(self) -> usize {
        self as usize
    }
}

/// A snapshot of what the swarm knows about a peer, handed out with each connection (JS
/// `PeerInfo`, which is a live object; ours is a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's public key.
    pub public_key: [u8; 32],
    /// Nodes that hold the peer's route, from the last announce record seen (empty when the
    /// peer connected to us: JS sets them to `null` then).
    pub relay_addresses: Vec<SocketAddrV4>,
    /// We dialled the peer (JS `peerInfo.client`); false when it connected to us.
    pub client: bool,
    /// Topics under which we found the peer, in discovery order.
    pub topics: Vec<[u8; 32]>,
    /// Added with `join_peer`.
    pub explicit: bool,
    /// The peer connected at least once.
    pub proven: bool,
    /// Failed or ended connections since the last long-lived one.
    pub attempts: u32,
    /// Its place in the dial queue.
    pub priority: Priority,
    /// Banned: never dialled and refused at the handshake.
    pub banned: bool,
}

/// `PeerInfo` state (hyperswarm `lib/peer-info.js`).
///
/// JS also has `tried` (never set to true anywhere in hyperswarm 4.17.2, so "stale" never
/// applies), `reconnecting` (always true unless the application calls `reconnect(false)`)
/// and `forceRelaying` (blind relays, not implemented): we leave them out.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) public_key: [u8; 32],
    pub(crate) relay_addresses: Vec<SocketAddrV4>,
    pub(crate) proven: bool,
    pub(crate) connected_at: Option<Instant>,
    pub(crate) disconnected_at: Option<Instant>,
    pub(crate) banned: bool,
    pub(crate) explicit: bool,
    /// In a retry timer.
    pub(crate) waiting: bool,
    /// In the dial queue.
    pub(crate) queued: bool,
    /// We dialled it (JS `client`; `server` is its negation).
    pub(crate) client: bool,
    pub(crate) topics: Vec<[u8; 32]>,
    pub(crate) attempts: u32,
    pub(crate) priority: Priority,
    /// The flush generation current when it was queued (JS `_flushTick`).
    pub(crate) flush_tick: u64,
}

impl Peer {
    pub(crate) fn new(public_key: [u8; 32], relay_addresses: Vec<SocketAddrV4>) -> Self {
        Self {
            public_key,
            relay_addresses,
            proven: false,
            connected_at: None,
            disconnected_at: None,
            banned: false,
            explicit: false,
            waiting: false,
            queued: false,
            client: false,
            topics: Vec::new(),
            attempts: 0,
            priority: Priority::Normal,
            flush_tick: 0,
        }
    }

    /// JS getter `prioritized`.
    pub(crate) fn prioritized(&self) -> bool {
        self.priority >= Priority::Normal
    }

    /// JS `_getPriority` (without the never-reachable "stale" case).
    pub(crate) fn compute_priority(&self) -> Priority {
        match self.attempts {
            0 => Priority::Normal,
            1 => Priority::VeryHigh,
            2 => Priority::High,
            3 => Priority::Low,
            _ => Priority::VeryLow,
        }
    }

    /// JS `_connected`.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.proven = true;
        self.connected_at = Some(now);
    }

    /// JS `_disconnected`: a connection of at least [`MIN_CONNECTION_TIME`] resets the attempts
    /// ("fast retry"), then every disconnect counts one.
    pub(crate) fn disconnected(&mut self, now: Instant) {
        self.disconnected_at = Some(now);
        if let Some(at) = self.connected_at.take() {
            if now.saturating_duration_since(at) >= MIN_CONNECTION_TIME {
                self.attempts = 0;
            }
        }
        self.attempts = self.attempts.saturating_add(1);
    }

    /// JS `_reset` (rediscovered).
    pub(crate) fn reset(&mut self) {
        self.client = false;
        self.proven = false;
        self.attempts = 0;
    }

    /// JS `_updatePriority`: false when the peer must not be queued.
    pub(crate) fn update_priority(&mut self) -> bool {
        if self.explicit && self.attempts > 3 {
            // `_deprioritize`
            self.attempts = 3;
        }
        if self.banned || self.queued || self.attempts > 3 {
            return false;
        }
        self.priority = self.compute_priority();
        true
    }

    /// JS `_topic`: remember a topic once.
    pub(crate) fn add_topic(&mut self, topic: [u8; 32]) {
        if !self.topics.contains(&topic) {
            self.topics.push(topic);
        }
    }

    /// JS `shouldGC`.
    pub(crate) fn should_gc(&self) -> bool {
        !(self.banned || self.queued || self.explicit || self.waiting)
    }

    pub(crate) fn info(&self) -> PeerInfo {
        PeerInfo {
            public_key: self.public_key,
            relay_addresses: self.relay_addresses.clone(),
            client: self.client,
            topics: self.topics.clone(),
            explicit: self.explicit,
            proven: self.proven,
            attempts: self.attempts,
            priority: self.priority,
            banned: self.banned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_follows_attempts() {
        let mut p = Peer::new([1; 32], Vec::new());
        let want = [
            Priority::Normal,
            Priority::VeryHigh,
            Priority::High,
            Priority::Low,
        ];
        for (attempts, want) in want.into_iter().enumerate() {
            p.attempts = u32::try_from(attempts).unwrap();
            assert!(p.update_priority());
            assert_eq!(p.priority, want, "attempts {attempts}");
        }
        // More than three attempts: dropped, unless explicit (then pinned back to 3).
        p.attempts = 4;
        assert!(!p.update_priority());
        p.explicit = true;
        assert!(p.update_priority());
        assert_eq!((p.attempts, p.priority), (3, Priority::Low));
        // Banned or already queued: never queued again.
        p.queued = true;
        assert!(!p.update_priority());
        p.queued = false;
        p.banned = true;
        assert!(!p.update_priority());
    }

    #[test]
    fn long_connections_reset_attempts() {
        let t0 = Instant::now();
        let mut p = Peer::new([1; 32], Vec::new());
        p.attempts = 3;
        p.connected(t0);
        p.disconnected(t0 + Duration::from_secs(14));
        assert_eq!(p.attempts, 4, "a short connection counts as an attempt");
        p.connected(t0 + Duration::from_secs(20));
        p.disconnected(t0 + Duration::from_secs(35));
        assert_eq!(p.attempts, 1, "15 s or more: fast retry");
        // A failed dial (never connected) just counts.
        p.disconnected(t0 + Duration::from_secs(40));
        assert_eq!(p.attempts, 2);
        assert!(p.proven);
    }

    #[test]
    fn gc_keeps_banned_queued_explicit_waiting() {
        let mut p = Peer::new([1; 32], Vec::new());
        assert!(p.should_gc());
        for f in [
            |p: &mut Peer| p.banned = true,
            |p: &mut Peer| p.queued = true,
            |p: &mut Peer| p.explicit = true,
            |p: &mut Peer| p.waiting = true,
        ] {
            let mut q = p.clone();
            f(&mut q);
            assert!(!q.should_gc());
        }
        p.add_topic([2; 32]);
        p.add_topic([2; 32]);
        assert_eq!(p.topics.len(), 1);
    }
}
