//! The swarm's sans-IO core (hyperswarm `index.js` minus the I/O): peers, the dial queue and
//! its gates, one connection per remote key with the duplicate rule, retries, bans and flush
//! accounting.
//!
//! Drain contract: after every `handle_*` call (and `join_peer`, `ban`, `flush`, …) drain
//! [`Core::poll_action`] until `None`, then sleep until [`Core::poll_timeout`] and call
//! [`Core::handle_timeout`]. Decisions that need an answer at once (accept or drop a
//! connection) are return values; the core never reads a clock or touches a socket.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerhost_hyperdht::messages::NoisePayload;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::peer::{Peer, PeerInfo};
use crate::queue::ShuffledQueue;
use crate::retry::{Backoffs, RetryTimer};

pub(crate) type Key = [u8; 32];

/// The firewall callback: `(remote public key, its Noise payload) → reject?`. The payload is
/// `None` when we are about to dial (JS passes `null`). Returning true bans the peer.
pub type Firewall = Arc<dyn Fn(&[u8; 32], Option<&NoisePayload>) -> bool + Send + Sync>;

/// Identifies one connection (a dial in progress or an open connection) in the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(pub(crate) u64);

/// The knobs of [`Core`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_peers: usize,
    pub(crate) max_parallel: usize,
    pub(crate) max_client_connections: usize,
    pub(crate) max_server_connections: usize,
    pub(crate) max_known_peers: usize,
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Connect to `public_key` (JS `dht.connect(publicKey, { relayAddresses })`) and report
    /// with [`Core::handle_dialed`].
    Dial {
        conn: ConnId,
        public_key: Key,
        relay_addresses: Vec<SocketAddrV4>,
    },
    /// A flush resolved.
    Flushed { id: u64, ok: bool },
    /// A peer was banned (by the application or by the firewall callback).
    Banned(Key),
}

/// Why an incoming connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// The swarm is being destroyed (JS `ERR_DESTROYED`).
    Destroyed,
    /// We keep the connection we already have (JS `ERR_DUPLICATE`).
    Duplicate,
    /// Our own key, or a banned one.
    Firewalled,
    /// `max_server_connections` (ours).
    Limit,
}

/// What to do with an incoming connection (JS `_handleServerConnection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// Keep it and hand it to the application.
    Accept { conn: ConnId, peer: PeerInfo },
    /// Drop it.
    Reject(Reject),
    /// Keep it, but only once the existing connection `close` has closed (JS
    /// `_handleServerConnectionSwap`): close that one now, hold this one, and expect its
    /// fate from [`Core::handle_closed`] for `close`.
    Replace { conn: ConnId, close: ConnId },
}

/// What to do with a finished dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dialed {
    /// Keep it and hand it to the application.
    Open(PeerInfo),
    /// Drop it: it was superseded (duplicate rule) or the peer was banned meanwhile.
    Drop,
    /// The dial failed (already accounted).
    Failed,
}

/// The duplicate-connection rule of `_handleServerConnection` (hyperswarm 4.17.2), for a new
/// connection arriving while one to the same key exists:
///
/// ```text
/// existingIsOutdated = existing.rawBytesRead > 0 && existing.rawBytesWritten > 0
/// expectedInitiator  = b4a.compare(conn.publicKey, conn.remotePublicKey) > 0
/// keepNew            = existingIsOutdated || expectedInitiator === conn.isInitiator
/// ```
///
/// The peer with the larger public key is expected to dial; an existing connection that has
/// carried traffic both ways yields to the new one (the peer must have lost it).
pub(crate) fn keep_new(
    existing_outdated: bool,
    local: &Key,
    remote: &Key,
    new_is_initiator: bool,
) -> bool {
    let expected_initiator = local > remote;
    existing_outdated || expected_initiator == new_is_initiator
}

/// JS `_withinMaxPeers`: explicit peers reserve room (factor 1 with none, 2 with one, 3 with
/// two or three, 4 with more).
pub(crate) fn within_max_peers(connections: usize, explicit: usize, max_peers: usize) -> bool {
    let factor = match explicit {
        0 => 1,
        1 => 2,
        2 | 3 => 3,
        _ => 4,
    };
    factor * connections < max_peers
}

#[derive(Debug)]
struct Conn {
    key: Key,
    client: bool,
    open: bool,
    /// A dial taken from the queue (counts for flushes).
    queued: bool,
}

#[derive(Debug)]
struct Flush {
    id: u64,
    missing: usize,
    tick: u64,
}

/// Counters (JS `swarm.stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Dials started.
    pub client_attempted: u64,
    /// Dials that opened.
    pub client_opened: u64,
    /// Client connections (or dials) that ended.
    pub client_closed: u64,
    /// Incoming connections accepted.
    pub server_opened: u64,
    /// Incoming connections that ended.
    pub server_closed: u64,
    /// Bans.
    pub banned_peers: u64,
}

/// A snapshot of the swarm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Open connections (JS `connections.size`).
    pub connections: usize,
    /// Dials in progress.
    pub connecting: usize,
    /// Client connections, open or dialling.
    pub client_connections: usize,
    /// Server connections.
    pub server_connections: usize,
    /// Peers known.
    pub peers: usize,
    /// Peers waiting in the dial queue.
    pub queued: usize,
    /// Topics joined.
    pub topics: usize,
    /// Topics announced at least once (ours).
    pub announced_topics: usize,
    /// Topics looked up (joined as a client; ours).
    pub client_topics: usize,
    /// Whether we accept connections to our key (listening on the DHT; ours).
    pub listening: bool,
    /// Counters.
    pub stats: Stats,
}

struct FirewallFn(Option<Firewall>);

impl std::fmt::Debug for FirewallFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Core {
    local: Key,
    limits: Limits,
    firewall: FirewallFn,
    peers: HashMap<Key, Peer>,
    /// `explicitPeers`, in insertion order.
    explicit: Vec<Key>,
    conns: HashMap<ConnId, Conn>,
    /// `_allConnections`: one connection (or dial) per remote key.
    by_key: HashMap<Key, ConnId>,
    /// Replacing connections held until the replaced one closes: old → [(new, key)], in
    /// arrival order (JS registers one close listener per swap).
    swaps: HashMap<ConnId, Vec<(ConnId, Key)>>,
    open: usize,
    connecting: usize,
    client_connections: usize,
    server_connections: usize,
    queue: ShuffledQueue<Key>,
    retry: RetryTimer<Key>,
    flushes: Vec<Flush>,
    flush_tick: u64,
    topics: HashSet<Key>,
    next_conn: u64,
    actions: VecDeque<Action>,
    rng: StdRng,
    destroyed: bool,
    stats: Stats,
}

impl Core {
    pub(crate) fn new(
        local: Key,
        limits: Limits,
        firewall: Option<Firewall>,
        backoffs: Option<Backoffs>,
        jitter: Duration,
        seed: Option<u64>,
    ) -> Self {
        let mut rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        let backoffs = backoffs.unwrap_or_else(|| Backoffs::random(&mut rng));
        let retry = RetryTimer::new(backoffs, jitter, &mut rng);
        Self {
            local,
            limits,
            firewall: FirewallFn(firewall),
            peers: HashMap::new(),
            explicit: Vec::new(),
            conns: HashMap::new(),
            by_key: HashMap::new(),
            swaps: HashMap::new(),
            open: 0,
            connecting: 0,
            client_connections: 0,
            server_connections: 0,
            queue: ShuffledQueue::default(),
            retry,
            flushes: Vec::new(),
            flush_tick: 0,
            topics: HashSet::new(),
            next_conn: 0,
            actions: VecDeque::new(),
            rng,
            destroyed: false,
            stats: Stats::default(),
        }
    }

    /// The next piece of work for the driver.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Core::handle_timeout`] wants to run (the retry timers).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.destroyed {
            return None;
        }
        self.retry.poll_timeout()
    }

    /// Retry timers: requeue the peers whose backoff is over (JS `_requeue`).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let batch = self.retry.handle_timeout(now);
        if batch.is_empty() || self.destroyed {
            return;
        }
        for key in batch {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            peer.waiting = false;
            if !peer.update_priority() || self.by_key.contains_key(&key) {
                continue;
            }
            peer.queued = true;
            peer.flush_tick = self.flush_tick;
            self.queue.push(key, peer.priority);
        }
        self.attempt(now);
    }

    /// The topic is joined (`true`) or left: peers found under a joined topic are retried.
    pub(crate) fn set_topic(&mut self, topic: Key, joined: bool) {
        if joined {
            self.topics.insert(topic);
        } else {
            self.topics.remove(&topic);
        }
    }

    pub(crate) fn peer_info(&self, key: &Key) -> Option<PeerInfo> {
        self.peers.get(key).map(Peer::info)
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            connections: self.open,
            connecting: self.connecting,
            client_connections: self.client_connections,
            server_connections: self.server_connections,
            peers: self.peers.len(),
            queued: self.queue.len(),
            topics: self.topics.len(),
            announced_topics: 0,
            client_topics: 0,
            listening: false,
            stats: self.stats,
        }
    }

    /// The connection (or dial) we have to `key`.
    pub(crate) fn connection_of(&self, key: &Key) -> Option<ConnId> {
        self.by_key.get(key).copied()
    }

    /// Whether `conn` waits for the connection it replaces to close.
    pub(crate) fn is_parked(&self, conn: ConnId) -> bool {
        self.swaps.values().flatten().any(|(c, _)| *c == conn)
    }

    /// Whether `conn` is open (not a dial in progress).
    pub(crate) fn is_open(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.open)
    }

    fn alloc(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// JS `_upsertPeer`; `None` for our own key, or for a new peer beyond `max_known_peers`
    /// unless `force`.
    fn upsert(
        &mut self,
        key: Key,
        relay_addresses: Vec<SocketAddrV4>,
        force: bool,
    ) -> Option<&mut Peer> {
        if key == self.local {
            return None;
        }
        let full = self.peers.len() >= self.limits.max_known_peers;
        match self.peers.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let p = e.into_mut();
                // "new is always better"
                p.relay_addresses = relay_addresses;
                Some(p)
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                if full && !force {
                    return None;
                }
                Some(e.insert(Peer::new(key, relay_addresses)))
            }
        }
    }

    fn within_max_peers(&self) -> bool {
        within_max_peers(
            self.by_key.len(),
            self.explicit.len(),
            self.limits.max_peers,
        )
    }

    /// JS `_shouldConnect`.
    fn should_connect(&self) -> bool {
        !self.destroyed
            && self.connecting < self.limits.max_parallel
            && self.within_max_peers()
            && self.client_connections < self.limits.max_client_connections
    }

    /// JS `_shouldConnectExplicit`.
    fn should_connect_explicit(&self) -> bool {
        !self.destroyed && self.connecting < self.limits.max_parallel
    }

    /// JS `_shouldRequeue`.
    fn should_requeue(&self, peer: &Peer) -> bool {
        if peer.explicit {
            return true;
        }
        !self.destroyed && peer.topics.iter().any(|t| self.topics.contains(t))
    }

    /// A peer found under `topic` (JS `_handlePeer`): queue it unless connected; a peer
    /// rediscovered while deprioritized, or one that only ever connected to us, starts over.
    pub(crate) fn handle_peer(
        &mut self,
        now: Instant,
        topic: Key,
        key: Key,
        relay_addresses: Vec<SocketAddrV4>,
    ) {
        let connected = self.by_key.contains_key(&key);
        let Some(peer) = self.upsert(key, relay_addresses, false) else {
            return;
        };
        peer.add_topic(topic);
        if connected {
            return;
        }
        if !peer.prioritized() || !peer.client {
            peer.reset();
        }
        if peer.update_priority() {
            self.enqueue(now, key);
        }
    }

    /// JS `_enqueue`.
    fn enqueue(&mut self, now: Instant, key: Key) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.queued {
            return;
        }
        peer.queued = true;
        peer.flush_tick = self.flush_tick;
        self.queue.push(key, peer.priority);
        self.attempt(now);
    }

    /// JS `joinPeer`: keep a connection to `key` whatever the topics.
    pub(crate) fn join_peer(&mut self, now: Instant, key: Key) {
        let Some(peer) = self.upsert(key, Vec::new(), true) else {
            return;
        };
        if !peer.explicit {
            peer.explicit = true;
            self.explicit.push(key);
        }
        if self.by_key.contains_key(&key) {
            return;
        }
        if self.peers.get_mut(&key).is_some_and(Peer::update_priority) {
            self.enqueue(now, key);
        }
    }

    /// JS `leavePeer`.
    pub(crate) fn leave_peer(&mut self, key: &Key) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        peer.explicit = false;
        self.explicit.retain(|k| k != key);
        self.maybe_delete(key);
    }

    /// Ban `key` (JS `peerInfo.ban(true)`): never dialled, refused at the handshake. Returns
    /// its open connection, which the driver closes (JS leaves it open; see `swarm.md`).
    pub(crate) fn ban(&mut self, key: Key) -> Option<ConnId> {
        let peer = self.upsert(key, Vec::new(), true)?;
        if !peer.banned {
            peer.banned = true;
            self.stats.banned_peers += 1;
            self.actions.push_back(Action::Banned(key));
        }
        self.by_key.get(&key).copied().filter(|c| self.is_open(*c))
    }

    /// Lift a ban.
    pub(crate) fn unban(&mut self, key: &Key) {
        if let Some(p) = self.peers.get_mut(key) {
            p.banned = false;
        }
        self.maybe_delete(key);
    }

    /// JS `_handleFirewall` for a dial (`payload = null`): our own key, a banned key, or the
    /// callback says no (which bans).
    fn firewalled(&mut self, key: &Key) -> bool {
        if *key == self.local {
            return true;
        }
        if self.peers.get(key).is_some_and(|p| p.banned) {
            return true;
        }
        let reject = self.firewall.0.as_ref().is_some_and(|f| f(key, None));
        if reject {
            self.ban(*key);
        }
        reject
    }

    /// JS `_maybeDeletePeer`.
    fn maybe_delete(&mut self, key: &Key) {
        let gc = self.peers.get(key).is_some_and(Peer::should_gc);
        if gc && !self.by_key.contains_key(key) {
            self.peers.remove(key);
        }
    }

    /// JS `_attemptClientConnections`: explicit peers first (within `max_parallel` only),
    /// then the queue while every gate is open.
    fn attempt(&mut self, now: Instant) {
        for key in self.explicit.clone() {
            if !self.should_connect_explicit() {
                break;
            }
            let Some(p) = self.peers.get(&key) else {
                continue;
            };
            let recent = p.disconnected_at.is_some_and(|at| {
                now.saturating_duration_since(at)
                    < Duration::from_secs(1).saturating_mul(p.attempts)
            });
            if p.attempts >= 5 || recent {
                continue;
            }
            self.connect(key, false);
        }
        while !self.queue.is_empty() && self.should_connect() {
            let Some(key) = self.queue.shift(&mut self.rng) else {
                break;
            };
            if let Some(p) = self.peers.get_mut(&key) {
                p.queued = false;
            }
            self.connect(key, true);
        }
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    /// JS `_connect`.
    fn connect(&mut self, key: Key, queued: bool) {
        let banned = self.peers.get(&key).is_none_or(|p| p.banned);
        if banned || self.by_key.contains_key(&key) || self.firewalled(&key) {
            if queued {
                self.flush_maybe(&key);
            }
            return;
        }
        let relay_addresses = self
            .peers
            .get(&key)
            .map(|p| p.relay_addresses.clone())
            .unwrap_or_default();
        let conn = self.alloc();
        self.conns.insert(
            conn,
            Conn {
                key,
                client: true,
                open: false,
                queued,
            },
        );
        self.by_key.insert(key, conn);
        self.stats.client_attempted += 1;
        self.connecting += 1;
        self.client_connections += 1;
        self.actions.push_back(Action::Dial {
            conn,
            public_key: key,
            relay_addresses,
        });
    }

    /// JS `_connectDone`.
    fn connect_done(&mut self, now: Instant) {
        self.connecting = self.connecting.saturating_sub(1);
        if self.connecting < self.limits.max_parallel {
            self.attempt(now);
        }
        if self.connecting == 0 {
            self.flush_all_maybe();
        }
    }

    /// A dial finished (JS the client connection's `open`, or its `close` before opening).
    pub(crate) fn handle_dialed(&mut self, now: Instant, conn: ConnId, ok: bool) -> Dialed {
        let Some(c) = self.conns.get(&conn) else {
            return Dialed::Drop;
        };
        if c.open {
            return Dialed::Drop;
        }
        let (key, queued) = (c.key, c.queued);
        let banned = self.peers.get(&key).is_some_and(|p| p.banned);
        if !ok || banned || self.destroyed {
            self.close(now, conn);
            return if ok { Dialed::Drop } else { Dialed::Failed };
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.open = true;
        }
        self.open += 1;
        self.stats.client_opened += 1;
        self.connect_done(now);
        let info = self.peers.get_mut(&key).map(|p| {
            p.connected(now);
            p.client = true;
            p.info()
        });
        if queued {
            self.flush_maybe(&key);
        }
        // The peer record outlives its connections (`_maybeDeletePeer` keeps connected peers).
        Dialed::Open(info.unwrap_or_else(|| {
            let mut p = Peer::new(key, Vec::new());
            p.client = true;
            p.info()
        }))
    }

    /// A connection arrived at our server (JS `_handleServerConnection`); `existing_outdated`
    /// says whether the connection we already have to that key carried traffic both ways.
    pub(crate) fn handle_incoming(
        &mut self,
        now: Instant,
        key: Key,
        existing_outdated: bool,
    ) -> Incoming {
        let conn = self.alloc();
        self.incoming(now, key, conn, existing_outdated)
    }

    fn incoming(&mut self, now: Instant, key: Key, conn: ConnId, outdated: bool) -> Incoming {
        if self.destroyed {
            return Incoming::Reject(Reject::Destroyed);
        }
        if key == self.local || self.peers.get(&key).is_some_and(|p| p.banned) {
            return Incoming::Reject(Reject::Firewalled);
        }
        if let Some(&existing) = self.by_key.get(&key) {
            if !keep_new(outdated, &self.local, &key, false) {
                return Incoming::Reject(Reject::Duplicate);
            }
            if self.is_open(existing) {
                self.swaps.entry(existing).or_default().push((conn, key));
                return Incoming::Replace {
                    conn,
                    close: existing,
                };
            }
            // A dial still in progress: it ends now; the new connection takes its place
            // first, so nothing re-dials the key in between.
            self.by_key.remove(&key);
            let accepted = self.adopt(key, conn);
            self.close(now, existing);
            return accepted;
        }
        if self.server_connections >= self.limits.max_server_connections {
            return Incoming::Reject(Reject::Limit);
        }
        self.adopt(key, conn)
    }

    fn adopt(&mut self, key: Key, conn: ConnId) -> Incoming {
        self.stats.server_opened += 1;
        let info = match self.upsert(key, Vec::new(), true) {
            Some(p) => {
                p.client = false;
                p.info()
            }
            None => Peer::new(key, Vec::new()).info(),
        };
        self.conns.insert(
            conn,
            Conn {
                key,
                client: false,
                open: true,
                queued: false,
            },
        );
        self.by_key.insert(key, conn);
        self.open += 1;
        self.server_connections += 1;
        Incoming::Accept { conn, peer: info }
    }

    /// A connection closed (or a dial was abandoned). If it was being replaced, the fate of
    /// each replacing connection, in order (the second one meets the first as the existing
    /// connection, JS `_handleServerConnection` again).
    pub(crate) fn handle_closed(&mut self, now: Instant, conn: ConnId) -> Vec<Incoming> {
        self.close(now, conn);
        let waiting = self.swaps.remove(&conn).unwrap_or_default();
        waiting
            .into_iter()
            .map(|(new, key)| self.incoming(now, key, new, false))
            .collect()
    }

    /// The `close` handlers of `_connect` and `_handleServerConnection`.
    fn close(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let key = c.key;
        if c.client {
            if !c.open {
                self.connect_done(now);
            }
            self.stats.client_closed += 1;
        } else {
            self.stats.server_closed += 1;
        }
        if c.open {
            self.open -= 1;
        }
        if self.by_key.get(&key) == Some(&conn) {
            self.by_key.remove(&key);
        }
        if c.client {
            self.client_connections = self.client_connections.saturating_sub(1);
            let tick = self.peers.get(&key).map(|p| p.flush_tick);
            if let Some(mut peer) = self.peers.remove(&key) {
                peer.disconnected(now);
                peer.waiting = self.should_requeue(&peer) && self.retry.add(&peer, key, now);
                self.peers.insert(key, peer);
            }
            self.maybe_delete(&key);
            if !c.open && c.queued {
                self.flush_maybe_tick(tick.unwrap_or(0));
            }
        } else {
            self.server_connections = self.server_connections.saturating_sub(1);
            self.maybe_delete(&key);
        }
        self.attempt(now);
    }

    /// Begin a flush (JS `flush()` after every topic flushed). True when already flushed;
    /// otherwise [`Action::Flushed`] with `id` comes later.
    pub(crate) fn flush(&mut self, id: u64) -> bool {
        if self.flush_all_maybe() {
            return true;
        }
        let pending = self
            .by_key
            .values()
            .filter(|c| self.conns.get(c).is_some_and(|c| !c.open && c.queued))
            .count();
        if self.queue.is_empty() && pending == 0 {
            return true;
        }
        self.flushes.push(Flush {
            id,
            missing: self.queue.len() + pending,
            tick: self.flush_tick,
        });
        self.flush_tick += 1;
        false
    }

    /// JS `_flushMaybe`.
    fn flush_maybe(&mut self, key: &Key) {
        let tick = self.peers.get(key).map_or(0, |p| p.flush_tick);
        self.flush_maybe_tick(tick);
    }

    fn flush_maybe_tick(&mut self, tick: u64) {
        let mut i = 0;
        while i < self.flushes.len() {
            let f = &mut self.flushes[i];
            if tick > f.tick {
                i += 1;
                continue;
            }
            f.missing = f.missing.saturating_sub(1);
            if f.missing > 0 {
                i += 1;
                continue;
            }
            let id = f.id;
            self.flushes.remove(i);
            self.actions.push_back(Action::Flushed { id, ok: true });
        }
    }

    /// JS `_flushAllMaybe`: nothing in flight and no room for more connections.
    fn flush_all_maybe(&mut self) -> bool {
        if self.connecting > 0
            || (self.within_max_peers()
                && self.client_connections < self.limits.max_client_connections)
        {
            return false;
        }
        while let Some(f) = self.flushes.pop() {
            self.actions
                .push_back(Action::Flushed { id: f.id, ok: true });
        }
        true
    }

    /// JS `destroy()`: no more dials; pending flushes resolve false.
    pub(crate) fn destroy(&mut self) {
        self.destroyed = true;
        self.retry.clear();
        self.queue.clear();
        for f in self.flushes.drain(..) {
            self.actions.push_back(Action::Flushed {
                id: f.id,
                ok: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const LOCAL: Key = [0x50; 32];
    const SMALL: Key = [0x10; 32];
    const LARGE: Key = [0x90; 32];
    const TOPIC: Key = [0xee; 32];

    fn limits() -> Limits {
        Limits {
            max_peers: 64,
            max_parallel: 3,
            max_client_connections: usize::MAX,
            max_server_connections: usize::MAX,
            max_known_peers: 1000,
        }
    }

    fn core_with(limits: Limits, firewall: Option<Firewall>) -> Core {
        let b = Backoffs([1000 * MS, 5000 * MS, 15_000 * MS, 600_000 * MS]);
        let mut c = Core::new(LOCAL, limits, firewall, Some(b), Duration::ZERO, Some(1));
        c.set_topic(TOPIC, true);
        c
    }

    fn core() -> Core {
        core_with(limits(), None)
    }

    fn key(i: u8) -> Key {
        let mut k = [0x20; 32];
        k[0] = i;
        k
    }

    fn actions(c: &mut Core) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn dials(c: &mut Core) -> Vec<(ConnId, Key)> {
        actions(c)
            .into_iter()
            .filter_map(|a| match a {
                Action::Dial {
                    conn, public_key, ..
                } => Some((conn, public_key)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dedup_rule_matches_hyperswarm() {
        // (outdated, local, remote, new is initiator) → keep new
        let cases = [
            // No traffic on the existing one: the larger key's dial wins.
            (false, LOCAL, LARGE, false, true), // remote larger, it dialled: keep its dial
            (false, LOCAL, SMALL, false, false), // remote smaller: keep ours
            (false, LARGE, LOCAL, true, true),  // we are larger and dialled: keep ours (new)
            (false, SMALL, LOCAL, true, false),
            // Traffic both ways on the existing one: the new one always wins.
            (true, LOCAL, SMALL, false, true),
            (true, LOCAL, LARGE, false, true),
        ];
        for (outdated, local, remote, init, want) in cases {
            assert_eq!(
                keep_new(outdated, &local, &remote, init),
                want,
                "{outdated} {:x} {:x} {init}",
                local[0],
                remote[0]
            );
        }
    }

    #[test]
    fn simultaneous_dials_keep_the_larger_keys_connection_on_both_sides() {
        // Two cores, each dialling the other; each one's incoming arrives while its own dial
        // is still in progress. Both must keep the same connection: the larger key's dial.
        let t0 = Instant::now();
        let (a_key, b_key) = (SMALL, LARGE);
        let b = Backoffs([1000 * MS, 5000 * MS, 15_000 * MS, 600_000 * MS]);
        let mut a = Core::new(a_key, limits(), None, Some(b), Duration::ZERO, Some(1));
        let mut b = Core::new(b_key, limits(), None, Some(b), Duration::ZERO, Some(2));
        a.set_topic(TOPIC, true);
        b.set_topic(TOPIC, true);
        a.handle_peer(t0, TOPIC, b_key, Vec::new());
        b.handle_peer(t0, TOPIC, a_key, Vec::new());
        let [(a_dial, _)] = dials(&mut a)[..] else {
            panic!()
        };
        let [(b_dial, _)] = dials(&mut b)[..] else {
            panic!()
        };
        // A (smaller) receives B's dial: keeps it, abandons its own.
        let Incoming::Accept { conn: a_in, .. } = a.handle_incoming(t0, b_key, false) else {
            panic!("A must keep B's dial")
        };
        // B (larger) receives A's dial: drops it, keeps its own.
        assert_eq!(
            b.handle_incoming(t0, a_key, false),
            Incoming::Reject(Reject::Duplicate)
        );
        assert_eq!(a.handle_dialed(t0, a_dial, true), Dialed::Drop);
        assert!(matches!(b.handle_dialed(t0, b_dial, true), Dialed::Open(_)));
        assert_eq!(a.connection_of(&b_key), Some(a_in));
        assert_eq!((a.status().connections, b.status().connections), (1, 1));
        assert_eq!((a.status().connecting, b.status().connecting), (0, 0));
        // A's abandoned dial counts as a disconnect, but the key is connected: no re-dial.
        a.handle_timeout(t0 + Duration::from_secs(60));
        assert!(dials(&mut a).is_empty());
    }

    #[test]
    fn outdated_connection_is_replaced_after_it_closes() {
        let t0 = Instant::now();
        let mut c = core();
        let Incoming::Accept { conn: old, .. } = c.handle_incoming(t0, SMALL, false) else {
            panic!()
        };
        // Same peer again, the old one idle: we are larger, so a server-side duplicate loses.
        assert_eq!(
            c.handle_incoming(t0, SMALL, false),
            Incoming::Reject(Reject::Duplicate)
        );
        // The old one carried traffic both ways: the peer lost it; the new one wins once the
        // old one closed.
        let Incoming::Replace { conn: new, close } = c.handle_incoming(t0, SMALL, true) else {
            panic!()
        };
        assert_eq!(close, old);
        assert_eq!(c.connection_of(&SMALL), Some(old));
        let [Incoming::Accept { conn, peer }] = &c.handle_closed(t0, old)[..] else {
            panic!()
        };
        let (conn, peer) = (*conn, peer.clone());
        assert_eq!(conn, new);
        assert!(!peer.client);
        assert_eq!(c.connection_of(&SMALL), Some(new));
        assert_eq!(c.status().server_connections, 1);
        assert_eq!(c.handle_closed(t0, new), []);
        assert_eq!(
            c.status(),
            Status {
                peers: 0,
                topics: 1,
                stats: c.status().stats,
                ..Status::default()
            }
        );
    }

    #[test]
    fn two_replacements_meet_each_other_after_the_old_one_closes() {
        let t0 = Instant::now();
        let mut c = core();
        // A larger remote: its new connections win against an idle existing one.
        let Incoming::Accept { conn: old, .. } = c.handle_incoming(t0, LARGE, false) else {
            panic!()
        };
        let Incoming::Replace { conn: n1, .. } = c.handle_incoming(t0, LARGE, false) else {
            panic!()
        };
        let Incoming::Replace { conn: n2, .. } = c.handle_incoming(t0, LARGE, false) else {
            panic!()
        };
        assert!(c.is_parked(n1) && c.is_parked(n2));
        let fates = c.handle_closed(t0, old);
        assert!(matches!(fates[0], Incoming::Accept { conn, .. } if conn == n1));
        // The second meets the first (idle) and wins too: it waits for the first to close.
        assert_eq!(
            fates[1],
            Incoming::Replace {
                conn: n2,
                close: n1
            }
        );
        assert!(!c.is_parked(n1) && c.is_parked(n2));
        let fates = c.handle_closed(t0, n1);
        assert!(matches!(fates[..], [Incoming::Accept { conn, .. }] if conn == n2));
        assert_eq!(c.status().server_connections, 1);
    }

    #[test]
    fn parallel_dials_and_peer_limit() {
        let t0 = Instant::now();
        let mut l = limits();
        l.max_peers = 4;
        let mut c = core_with(l, None);
        for i in 0..6 {
            c.handle_peer(t0, TOPIC, key(i), Vec::new());
        }
        // max_parallel 3.
        let first = dials(&mut c);
        assert_eq!(first.len(), 3);
        assert_eq!(c.status().queued, 3);
        for (conn, _) in &first {
            assert!(matches!(c.handle_dialed(t0, *conn, true), Dialed::Open(_)));
        }
        // 3 connections < 4: one more dial, then the limit (4 connections) stops the queue.
        let more = dials(&mut c);
        assert_eq!(more.len(), 1);
        assert!(matches!(
            c.handle_dialed(t0, more[0].0, true),
            Dialed::Open(_)
        ));
        assert!(dials(&mut c).is_empty());
        assert_eq!(c.status().connections, 4);
        assert_eq!(c.status().queued, 2);
        // One explicit peer doubles the weight of each connection (2 · 4 ≥ 4): explicit
        // peers still get dialled.
        c.join_peer(t0, LARGE);
        let ex = dials(&mut c);
        assert_eq!(ex.iter().map(|d| d.1).collect::<Vec<_>>(), [LARGE]);
        assert!(within_max_peers(1, 1, 4) && !within_max_peers(2, 1, 4));
        assert!(within_max_peers(5, 3, 16) && !within_max_peers(4, 4, 16));
    }

    #[test]
    fn failed_dials_back_off_then_give_up() {
        let t0 = Instant::now();
        let mut c = core();
        c.handle_peer(t0, TOPIC, SMALL, Vec::new());
        let mut now = t0;
        // Unproven: M (5 s), L (15 s), L; then dropped.
        for (attempt, period) in [(1, 3300), (2, 9900), (3, 9900)] {
            let [(conn, _)] = dials(&mut c)[..] else {
                panic!("attempt {attempt}")
            };
            assert_eq!(c.handle_dialed(now, conn, false), Dialed::Failed);
            assert_eq!(c.peer_info(&SMALL).unwrap().attempts, attempt);
            let due = c.poll_timeout().unwrap();
            assert_eq!(due, now + period * MS, "attempt {attempt}");
            c.handle_timeout(due);
            assert!(dials(&mut c).is_empty(), "released on the second tick");
            now = due + period * MS;
            c.handle_timeout(now);
        }
        let [(conn, _)] = dials(&mut c)[..] else {
            panic!()
        };
        assert_eq!(c.handle_dialed(now, conn, false), Dialed::Failed);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.peer_info(&SMALL).is_none(), "forgotten");
        // Rediscovering it starts over.
        c.handle_peer(now, TOPIC, SMALL, Vec::new());
        assert_eq!(dials(&mut c).len(), 1);
    }

    #[test]
    fn left_topics_are_not_retried_but_explicit_peers_are() {
        let t0 = Instant::now();
        let mut c = core();
        c.handle_peer(t0, TOPIC, SMALL, Vec::new());
        c.join_peer(t0, LARGE);
        let d = dials(&mut c);
        assert_eq!(d.len(), 2);
        c.set_topic(TOPIC, false);
        for (conn, _) in d {
            c.handle_dialed(t0, conn, false);
        }
        assert!(c.peer_info(&SMALL).is_none());
        assert!(c.peer_info(&LARGE).unwrap().explicit);
        // Explicit retry: unproven after one attempt, so the M timer (5 s → ticks every
        // 3.3 s), released on the second tick.
        c.handle_timeout(t0 + 3300 * MS);
        assert!(dials(&mut c).is_empty());
        c.handle_timeout(t0 + 6600 * MS);
        assert_eq!(dials(&mut c).len(), 1);
    }

    #[test]
    fn firewall_bans_and_ban_closes() {
        let t0 = Instant::now();
        let fw: Firewall = Arc::new(|k, payload| {
            assert!(payload.is_none(), "dials pass no payload");
            k[0] == 0x10
        });
        let mut c = core_with(limits(), Some(fw));
        c.handle_peer(t0, TOPIC, SMALL, Vec::new());
        assert_eq!(actions(&mut c), [Action::Banned(SMALL)]);
        assert!(c.peer_info(&SMALL).unwrap().banned);
        assert_eq!(
            c.handle_incoming(t0, SMALL, false),
            Incoming::Reject(Reject::Firewalled)
        );
        // Our own key is never dialled nor accepted.
        c.handle_peer(t0, TOPIC, LOCAL, Vec::new());
        assert!(actions(&mut c).is_empty());
        assert_eq!(
            c.handle_incoming(t0, LOCAL, false),
            Incoming::Reject(Reject::Firewalled)
        );
        // Banning a connected peer closes its connection; it is not retried.
        let Incoming::Accept { conn, .. } = c.handle_incoming(t0, LARGE, false) else {
            panic!()
        };
        assert_eq!(c.ban(LARGE), Some(conn));
        assert_eq!(actions(&mut c), [Action::Banned(LARGE)]);
        c.handle_closed(t0, conn);
        c.handle_peer(t0, TOPIC, LARGE, Vec::new());
        assert!(dials(&mut c).is_empty());
        c.unban(&LARGE);
        c.handle_peer(t0, TOPIC, LARGE, Vec::new());
        assert_eq!(dials(&mut c).len(), 1);
    }

    #[test]
    fn flush_waits_for_queued_dials() {
        let t0 = Instant::now();
        let mut c = core();
        assert!(c.flush(1), "nothing to do");
        for i in 0..5 {
            c.handle_peer(t0, TOPIC, key(i), Vec::new());
        }
        let d = dials(&mut c);
        assert_eq!(d.len(), 3);
        assert!(!c.flush(2));
        // 3 pending + 2 queued.
        let mut done = Vec::new();
        for (conn, _) in d {
            c.handle_dialed(t0, conn, false);
            done.extend(actions(&mut c));
        }
        assert!(!done.iter().any(|a| matches!(a, Action::Flushed { .. })));
        let d = done
            .into_iter()
            .filter_map(|a| match a {
                Action::Dial { conn, .. } => Some(conn),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(d.len(), 2);
        c.handle_dialed(t0, d[0], true);
        assert!(actions(&mut c).is_empty());
        c.handle_dialed(t0, d[1], true);
        assert_eq!(actions(&mut c), [Action::Flushed { id: 2, ok: true }]);
        // Peers queued after a flush began do not hold it up.
        c.handle_peer(t0, TOPIC, key(9), Vec::new());
        assert!(!c.flush(3));
        c.handle_peer(t0, TOPIC, key(10), Vec::new());
        let d = dials(&mut c);
        c.handle_dialed(t0, d[0].0, true);
        assert_eq!(actions(&mut c), [Action::Flushed { id: 3, ok: true }]);
        // Destroy resolves the rest with false.
        c.handle_peer(t0, TOPIC, key(11), Vec::new());
        assert!(!c.flush(4));
        c.destroy();
        assert!(
            actions(&mut c).contains(&Action::Flushed { id: 4, ok: false }),
            "destroy fails pending flushes"
        );
    }

    #[test]
    fn full_swarm_flushes_at_once() {
        let t0 = Instant::now();
        let mut l = limits();
        l.max_peers = 1;
        let mut c = core_with(l, None);
        c.handle_peer(t0, TOPIC, SMALL, Vec::new());
        c.handle_peer(t0, TOPIC, LARGE, Vec::new());
        let d = dials(&mut c);
        assert_eq!(d.len(), 1);
        assert!(!c.flush(1));
        c.handle_dialed(t0, d[0].0, true);
        // Full (1 connection = max_peers) and nothing connecting: every flush resolves.
        assert!(actions(&mut c).contains(&Action::Flushed { id: 1, ok: true }));
        assert!(c.flush(2));
        assert_eq!(c.status().queued, 1);
    }

    #[test]
    fn server_connection_limit_is_ours() {
        let t0 = Instant::now();
        let mut l = limits();
        l.max_server_connections = 1;
        let mut c = core_with(l, None);
        assert!(matches!(
            c.handle_incoming(t0, SMALL, false),
            Incoming::Accept { .. }
        ));
        assert_eq!(
            c.handle_incoming(t0, LARGE, false),
            Incoming::Reject(Reject::Limit)
        );
    }

    #[test]
    fn known_peers_are_capped_for_discovery_only() {
        let t0 = Instant::now();
        let mut l = limits();
        l.max_known_peers = 2;
        l.max_parallel = 0;
        let mut c = core_with(l, None);
        for i in 0..5 {
            c.handle_peer(t0, TOPIC, key(i), Vec::new());
        }
        assert_eq!(c.status().peers, 2);
        c.join_peer(t0, LARGE);
        assert_eq!(c.status().peers, 3);
    }
}
