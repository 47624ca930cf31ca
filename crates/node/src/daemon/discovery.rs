//! Finding peers on HyperDHT: topics announced and looked up, connections by public key.
//!
//! The daemon's needs are few: announce a topic (a discovery key) so that peers looking it up
//! find our public key, look a topic up and dial the peers found, accept whoever dials us.
//! This module does exactly that on `peerhost-hyperdht`, hyperswarm-style (a record is
//! `{publicKey, relayAddresses}` under the topic; a dial is `dht.connect(publicKey)`), so JS
//! hyperswarm peers find us and we find them.
//!
//! - one scheduler task: announces due topics (at most [`ANNOUNCES`] at once, the community
//!   topics first, then every log's own topic), looks up due topics (at most [`LOOKUPS`] at
//!   once) and dials what it finds, at most [`DIALS`] at once;
//! - one accept task: hands every incoming connection to the node, and refreshes the relay
//!   addresses we put in our records;
//! - a topic is re-announced every [`ANNOUNCE_EVERY`] (records live 20 min on DHT nodes) and
//!   looked up again after [`LOOKUP_AGAIN`], sooner (1 s doubling to 30 s) while a lookup
//!   finds no one;
//! - a peer we are already connected to is not dialled again; a failed dial waits 1 s,
//!   doubling to 60 s, before that peer is tried again.
//!
//! - relays: when no hole can be punched (both NATs randomize), a dial goes through a blind
//!   relay, from the configured list and those other peerhost nodes announce under
//!   [`relay_topic`] (looked up at start, then every [`RELAY_LOOKUP_EVERY`]); with
//!   `offer_relay` we run one on our DHT node and announce it there.
//!
//! `peerhost-swarm` (hyperswarm's full connection management: dedup of simultaneous dials,
//! priorities, bans) will replace this once its driver is in; the daemon only calls
//! [`Discovery::join`], [`Discovery::status`] and [`Discovery::close`].

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerhost_hyperdht::driver::{BindOptions, Dht, Server};
use peerhost_hyperdht::{AnnounceOptions, Config as DhtConfig, ConnectOptions, LookupResult};
use peerhost_ids::KeyPair;
use tokio::sync::{Notify, Semaphore, watch};

use super::state::DhtStatus;
use super::{DaemonError, DhtOptions, lock};
use crate::Node;

/// Announces in flight at once.
pub(crate) const ANNOUNCES: usize = 16;
/// Lookups in flight at once.
pub(crate) const LOOKUPS: usize = 8;
/// Dials in flight at once.
pub(crate) const DIALS: usize = 16;
/// Re-announce period.
pub(crate) const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Lookup period once a lookup found peers.
pub(crate) const LOOKUP_AGAIN: Duration = Duration::from_secs(60);
/// Topics tracked at most (each log held is one; beyond, new topics are not joined).
pub(crate) const MAX_TOPICS: usize = 1 << 16;
/// How often the relay topic is looked up again (sooner, from 5 s doubling, while it finds
/// none).
pub(crate) const RELAY_LOOKUP_EVERY: Duration = Duration::from_secs(10 * 60);

/// The DHT topic peerhost nodes that offer a blind relay announce it under (the record's
/// public key is the relay's).
pub fn relay_topic() -> [u8; 32] {
    peerhost_hyperdht::crypto::hash(b"peerhost/blind-relays/v1")
}

/// The topic a community is found under: the discovery key of its descriptor log (so a JS
/// peer that joined every log's discovery key announces it too).
pub fn community_topic(community_key: &peerhost_ids::Key) -> [u8; 32] {
    community_key.discovery_key().0
}

#[derive(Debug)]
struct Topic {
    announce: bool,
    lookup: bool,
    priority: bool,
    next_announce: Option<Instant>,
    next_lookup: Option<Instant>,
    lookup_delay: Duration,
    announced: bool,
    busy: bool,
}

#[derive(Debug, Default)]
struct Dials {
    dialing: HashSet<[u8; 32]>,
    /// After a failed dial: when to try again, and the current delay.
    backoff: HashMap<[u8; 32], (Instant, Duration)>,
}

struct Shared {
    dht: Dht,
    node: Node,
    key_pair: KeyPair,
    topics: Mutex<HashMap<[u8; 32], Topic>>,
    dials: Mutex<Dials>,
    relays: Mutex<Vec<SocketAddrV4>>,
    nodes: Mutex<usize>,
    /// The blind relay we offer (its key), once it runs.
    offered_relay: Mutex<Option<[u8; 32]>>,
    offer_relay: bool,
    wake: Notify,
    stop: watch::Sender<bool>,
    announces: Arc<Semaphore>,
    lookups: Arc<Semaphore>,
    dial_slots: Arc<Semaphore>,
}

/// The daemon's DHT presence. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Discovery {
    shared: Arc<Shared>,
}

impl Discovery {
    /// Bind the DHT node's sockets and start the tasks; bootstrapping and listening on our
    /// key pair go on in the background (topics joined meanwhile wait for them), so a node
    /// without Internet access still starts and serves over TCP.
    pub(crate) async fn start(node: Node, opts: &DhtOptions) -> Result<Self, DaemonError> {
        let mut config = DhtConfig::default();
        config.dht.bootstrap = opts.bootstrap.clone();
        config.relays.clone_from(&opts.relays);
        let dht = Dht::bind(config, BindOptions::host(opts.host).with_port(opts.port))
            .await
            .map_err(|e| DaemonError::Dht(e.to_string()))?;
        let key_pair = node.key_pair().clone();
        let (stop, _) = watch::channel(false);
        let d = Self {
            shared: Arc::new(Shared {
                dht,
                node,
                key_pair,
                topics: Mutex::new(HashMap::new()),
                dials: Mutex::new(Dials::default()),
                relays: Mutex::new(Vec::new()),
                nodes: Mutex::new(0),
                offered_relay: Mutex::new(None),
                offer_relay: opts.offer_relay,
                wake: Notify::new(),
                stop,
                announces: Arc::new(Semaphore::new(ANNOUNCES)),
                lookups: Arc::new(Semaphore::new(LOOKUPS)),
                dial_slots: Arc::new(Semaphore::new(DIALS)),
            }),
        };
        let me = d.clone();
        tokio::spawn(async move {
            let mut stop = me.shared.stop.subscribe();
            let up = async {
                me.shared.dht.bootstrapped().await;
                me.shared.dht.listen(&me.shared.key_pair).await
            };
            let server = tokio::select! {
                s = up => s,
                () = crate::stopped(&mut stop) => return,
            };
            match server {
                Ok(server) => {
                    *lock(&me.shared.relays) = server.relay_addresses().await;
                    tracing::info!(addr = %me.address(), "on the DHT");
                    tokio::spawn(me.clone().accept(server));
                    tokio::spawn(me.clone().find_relays());
                    if me.shared.offer_relay {
                        tokio::spawn(me.clone().offer_relay());
                    }
                    me.schedule().await;
                }
                Err(e) => tracing::error!("the DHT is unusable: cannot listen on our key: {e}"),
            }
        });
        Ok(d)
    }

    /// Our DHT server socket.
    pub(crate) fn address(&self) -> SocketAddr {
        self.shared.dht.server_addr()
    }

    /// Take part in `topic`: announce it, look it up, or both (each flag only ever turns on).
    /// `priority` topics are announced before the others (community topics).
    pub(crate) fn join(&self, topic: [u8; 32], announce: bool, lookup: bool, priority: bool) {
        if !announce && !lookup {
            return;
        }
        let mut topics = lock(&self.shared.topics);
        if topics.len() >= MAX_TOPICS && !topics.contains_key(&topic) {
            tracing::warn!("too many DHT topics: not joining another");
            return;
        }
        let now = Instant::now();
        let t = topics.entry(topic).or_insert(Topic {
            announce: false,
            lookup: false,
            priority,
            next_announce: None,
            next_lookup: None,
            lookup_delay: Duration::from_secs(1),
            announced: false,
            busy: false,
        });
        t.priority |= priority;
        if announce && !t.announce {
            t.announce = true;
            t.next_announce = Some(now);
        }
        if lookup && !t.lookup {
            t.lookup = true;
            t.next_lookup = Some(now);
        }
        drop(topics);
        self.shared.wake.notify_one();
    }

    /// What `peerhost status` shows.
    pub(crate) fn status(&self) -> DhtStatus {
        let topics = lock(&self.shared.topics);
        DhtStatus {
            address: self.address().to_string(),
            nodes: *lock(&self.shared.nodes),
            announced: topics.values().filter(|t| t.announced).count(),
            lookups: topics.values().filter(|t| t.lookup).count(),
            relays: self.shared.dht.relays().len(),
            offered_relay: lock(&self.shared.offered_relay).map(|k| crate::hex(&k)),
        }
    }

    /// Stop the tasks and take our records down (for at most 2 s; the rest expire).
    pub(crate) async fn close(&self) {
        self.shared.stop.send_replace(true);
        let announced: Vec<[u8; 32]> = lock(&self.shared.topics)
            .iter()
            .filter(|(_, t)| t.announced)
            .map(|(k, _)| *k)
            .collect();
        let dht = self.shared.dht.clone();
        let kp = self.shared.key_pair.clone();
        let all = async move {
            let mut set = tokio::task::JoinSet::new();
            for topic in announced {
                let (dht, kp) = (dht.clone(), kp.clone());
                set.spawn(async move { dht.unannounce(topic, &kp).await });
                while set.len() >= ANNOUNCES {
                    set.join_next().await;
                }
            }
            while set.join_next().await.is_some() {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
    }

    /// Look the relay topic up now and then; add the relays found to the fallback list.
    async fn find_relays(self) {
        let mut stop = self.shared.stop.subscribe();
        let mut delay = Duration::from_secs(5);
        loop {
            let own = *lock(&self.shared.offered_relay);
            let found: Vec<[u8; 32]> = match self.shared.dht.lookup(relay_topic()).await {
                Ok(replies) => replies
                    .iter()
                    .flat_map(|r| r.peers.iter().map(|p| p.public_key))
                    .filter(|k| Some(*k) != own)
                    .collect(),
                Err(_) => Vec::new(),
            };
            let before = self.shared.dht.relays().len();
            self.shared.dht.add_relays(found.iter().copied());
            let after = self.shared.dht.relays().len();
            if after > before {
                tracing::info!(relays = after, "found blind relays on the DHT");
                // Dials that failed for want of a relay are retried at once: look every
                // topic up again now rather than at its next period.
                let now = Instant::now();
                for t in lock(&self.shared.topics).values_mut() {
                    if t.lookup && !t.busy {
                        t.next_lookup = Some(now);
                    }
                }
                lock(&self.shared.dials).backoff.clear();
                self.shared.wake.notify_one();
            }
            let wait = if found.is_empty() {
                delay = (delay * 2).min(RELAY_LOOKUP_EVERY);
                delay / 2
            } else {
                RELAY_LOOKUP_EVERY
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = crate::stopped(&mut stop) => return,
            }
        }
    }

    /// Run a blind relay on our DHT node and keep it announced under the relay topic.
    async fn offer_relay(self) {
        let mut stop = self.shared.stop.subscribe();
        let key_pair = KeyPair::generate();
        let relay = match self.shared.dht.serve_relay(&key_pair).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot offer a blind relay: {e}");
                return;
            }
        };
        if self.shared.dht.info().await.is_some_and(|i| i.firewalled) {
            tracing::warn!(
                "offering a blind relay, but our DHT node looks firewalled: peers may not reach it"
            );
        }
        tracing::info!(key = %crate::hex(&key_pair.public_key()), "offering a blind relay");
        loop {
            let wait = match self
                .shared
                .dht
                .announce(
                    relay_topic(),
                    &key_pair,
                    Vec::new(),
                    AnnounceOptions::default(),
                )
                .await
            {
                Ok(_) => {
                    // Offered once others can find it.
                    *lock(&self.shared.offered_relay) = Some(key_pair.public_key());
                    ANNOUNCE_EVERY
                }
                Err(e) => {
                    tracing::debug!("cannot announce our relay: {e}");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = crate::stopped(&mut stop) => {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        self.shared.dht.unannounce(relay_topic(), &key_pair),
                    )
                    .await;
                    drop(relay);
                    return;
                }
            }
        }
    }

    async fn accept(self, mut server: Server) {
        let mut stop = self.shared.stop.subscribe();
        let mut refresh = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                c = server.accept() => {
                    let Some(conn) = c else { return };
                    let node = self.shared.node.clone();
                    let label = format!("dht:{}", conn.remote_address());
                    tracing::info!(peer = %label, key = %crate::hex(&conn.remote_public_key()[..8]), "accepted DHT connection");
                    tokio::spawn(async move {
                        let _ = node.run_dht_connection(conn, label).await;
                    });
                }
                _ = refresh.tick() => {
                    let relays = server.relay_addresses().await;
                    *lock(&self.shared.relays) = relays;
                    if let Some(info) = self.shared.dht.info().await {
                        *lock(&self.shared.nodes) = info.nodes;
                    }
                }
                () = crate::stopped(&mut stop) => return,
            }
        }
    }

    async fn schedule(self) {
        let mut stop = self.shared.stop.subscribe();
        loop {
            let now = Instant::now();
            let mut due_announce = Vec::new();
            let mut due_lookup = Vec::new();
            let mut next: Option<Instant> = None;
            {
                let mut topics = lock(&self.shared.topics);
                for (k, t) in topics.iter_mut() {
                    if t.busy {
                        continue;
                    }
                    if let Some(at) = t.next_announce {
                        if at <= now {
                            due_announce.push((!t.priority, *k));
                        } else {
                            next = Some(next.map_or(at, |n| n.min(at)));
                        }
                    }
                    if let Some(at) = t.next_lookup {
                        if at <= now {
                            due_lookup.push(*k);
                        } else {
                            next = Some(next.map_or(at, |n| n.min(at)));
                        }
                    }
                }
                due_announce.sort();
                for (_, k) in &due_announce {
                    if let Some(t) = topics.get_mut(k) {
                        t.busy = true;
                        t.next_announce = None;
                    }
                }
                for k in &due_lookup {
                    if let Some(t) = topics.get_mut(k) {
                        t.busy = true;
                        t.next_lookup = None;
                    }
                }
            }
            // Lookups first: a follower waits on them; announces run in the background.
            for topic in due_lookup {
                let d = self.clone();
                let Ok(permit) = self.shared.lookups.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    d.lookup(topic).await;
                    drop(permit);
                });
            }
            for (_, topic) in due_announce {
                let d = self.clone();
                let Ok(permit) = self.shared.announces.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    d.announce(topic).await;
                    drop(permit);
                });
            }
            let sleep = next.map_or(Duration::from_secs(5), |n| n.saturating_duration_since(now));
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep(sleep.min(Duration::from_secs(5))) => {}
                () = crate::stopped(&mut stop) => return,
            }
        }
    }

    fn done(&self, topic: [u8; 32], f: impl FnOnce(&mut Topic)) {
        if let Some(t) = lock(&self.shared.topics).get_mut(&topic) {
            t.busy = false;
            f(t);
        }
        self.shared.wake.notify_one();
    }

    async fn announce(&self, topic: [u8; 32]) {
        let relays = lock(&self.shared.relays).clone();
        let r = self
            .shared
            .dht
            .announce(
                topic,
                &self.shared.key_pair,
                relays,
                AnnounceOptions::default(),
            )
            .await;
        let now = Instant::now();
        match r {
            Ok(_) => {
                tracing::debug!(topic = %crate::hex(&topic[..8]), "announced");
                self.done(topic, |t| {
                    t.announced = true;
                    if t.lookup {
                        // Our own lookup may now find peers that announced before us.
                        t.next_lookup = t.next_lookup.map(|l| l.min(now));
                    }
                    t.next_announce = Some(now + ANNOUNCE_EVERY);
                });
            }
            Err(e) => {
                tracing::debug!(topic = %crate::hex(&topic[..8]), "announce failed: {e}");
                self.done(topic, |t| {
                    t.next_announce = Some(now + Duration::from_secs(5))
                });
            }
        }
    }

    async fn lookup(&self, topic: [u8; 32]) {
        // Dial each peer as its record arrives, as hyperswarm does, not at the query's end
        // (on the public DHT the end can be seconds later); the dial list dedups.
        let (tx, mut records) = tokio::sync::mpsc::channel::<LookupResult>(32);
        let me = self.clone();
        let early = tokio::spawn(async move {
            while let Some(reply) = records.recv().await {
                for p in reply.peers {
                    if p.public_key != me.shared.key_pair.public_key() {
                        me.dial(p.public_key, p.relay_addresses);
                    }
                }
            }
        });
        let r = self.shared.dht.lookup_with(topic, tx).await;
        let _ = early.await;
        let now = Instant::now();
        let mut found: HashMap<[u8; 32], Vec<SocketAddrV4>> = HashMap::new();
        if let Ok(replies) = &r {
            for reply in replies {
                for p in &reply.peers {
                    if p.public_key == self.shared.key_pair.public_key() {
                        continue;
                    }
                    found
                        .entry(p.public_key)
                        .or_default()
                        .extend(p.relay_addresses.iter().copied());
                }
            }
        }
        tracing::debug!(topic = %crate::hex(&topic[..8]), peers = found.len(), "looked up");
        let any = !found.is_empty();
        for (pk, relays) in found {
            self.dial(pk, relays);
        }
        self.done(topic, |t| {
            if any {
                t.lookup_delay = Duration::from_secs(1);
                t.next_lookup = Some(now + LOOKUP_AGAIN);
            } else {
                t.next_lookup = Some(now + t.lookup_delay);
                t.lookup_delay = (t.lookup_delay * 2).min(Duration::from_secs(30));
            }
        });
    }

    fn dial(&self, pk: [u8; 32], relay_addresses: Vec<SocketAddrV4>) {
        if self.shared.node.is_connected(&pk) || self.shared.node.is_closed() {
            return;
        }
        let now = Instant::now();
        {
            let mut d = lock(&self.shared.dials);
            if d.dialing.contains(&pk) || d.backoff.get(&pk).is_some_and(|(at, _)| *at > now) {
                return;
            }
            d.dialing.insert(pk);
        }
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = me.shared.dial_slots.clone().acquire_owned().await else {
                return;
            };
            let mut opts = ConnectOptions::default();
            opts.relay_addresses = relay_addresses;
            let r = me
                .shared
                .dht
                .connect_with(&me.shared.key_pair, pk, opts)
                .await;
            let conn = match r {
                Ok(c) => {
                    let mut d = lock(&me.shared.dials);
                    d.dialing.remove(&pk);
                    d.backoff.remove(&pk);
                    c
                }
                Err(e) => {
                    tracing::debug!(peer = %crate::hex(&pk[..8]), "dial failed: {e}");
                    let mut d = lock(&me.shared.dials);
                    d.dialing.remove(&pk);
                    let delay = d.backoff.get(&pk).map_or(Duration::from_secs(1), |(_, d)| {
                        (*d * 2).min(Duration::from_secs(60))
                    });
                    d.backoff.insert(pk, (Instant::now() + delay, delay));
                    return;
                }
            };
            drop(_permit);
            let label = format!("dht:{}", conn.remote_address());
            tracing::info!(peer = %label, key = %crate::hex(&pk[..8]), "connected over the DHT");
            let _ = me.shared.node.run_dht_connection(conn, label).await;
        });
    }
}
