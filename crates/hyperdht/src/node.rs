//! The sans-IO HyperDHT node (hyperdht `index.js` `HyperDHT`, on top of dht-rpc's `DHT`).
//!
//! Ownership and flow:
//! - [`Node`] owns a [`peerhost_dht_rpc::Node`] (routing, requests, queries, tokens), the
//!   storage it keeps for others ([`crate::store`]: records, routes, mutable and immutable
//!   values), the listening servers (`server.rs`) and the client operations in flight
//!   (`client.rs`).
//! - Inputs: [`Node::handle_datagram`], [`Node::handle_timeout`], and commands ([`Node::lookup`],
//!   [`Node::announce`], [`Node::connect`], [`Node::listen`], …), each returning an [`OpId`].
//! - Outputs: [`Node::poll_transmit`] (dht-rpc datagrams, with the socket to send from),
//!   [`Node::poll_event`] ([`Event::Done`] per operation, [`Event::Incoming`] per accepted
//!   connection), [`Node::poll_timeout`].
//!
//! Application commands arrive from dht-rpc as requests; `handle_request` (`node/requests.rs`)
//! answers the storage ones there (`persistent.js`) and hands PEER_HANDSHAKE / PEER_HOLEPUNCH to
//! the router (`node/router.rs`, `router.js`). Anything else gets `UNKNOWN_COMMAND`, as a JS node without a handler answers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use peerhost_dht_rpc::{
    self as rpc, Event as RpcEvent, IncomingRequest, QueryError, QueryId, Reply, ReplyOptions,
    RequestError, RequestId, SocketKind, Transmit,
};
use peerhost_encoding::{CompactEncoding, Reader};
use peerhost_ids::KeyPair;
use peerhost_noise::HandshakeResult;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::constants::{Command, ErrorCode, Mode};
use crate::crypto::{self, announce_signable};
use crate::error::{ConnectError, Error};
use crate::messages::{
    self, Announce, Handshake, Holepunch, MutableGetResponse, MutablePutRequest, NoisePayload,
    PeerRecord, encode_lookup_reply,
};
use crate::store::{Cache, RecordCache, StoreLimits};

mod requests;
mod router;

/// Bump timestamps further than this in the future are ignored (`MAX_BUMP_DRIFT`).
const MAX_BUMP_DRIFT_MS: u64 = 60_000;
/// Records returned per LOOKUP.
const LOOKUP_RECORDS: usize = 20;
/// Relay addresses kept per record.
const MAX_RELAY_ADDRESSES: usize = 3;

/// How a node is configured.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The dht-rpc layer (bootstrap nodes, ephemeral / firewalled, limits). Application
    /// commands are always handed to this crate, whatever `handle_user_commands` says.
    pub dht: rpc::Config,
    /// Caps and lifetimes of what the node stores for others.
    pub store: StoreLimits,
    /// Our LAN addresses, offered to peers with the server socket's port for the same-LAN
    /// shortcut (JS `localAddresses(serverSocket)`); empty means `127.0.0.1`, as JS falls back.
    pub local_addresses: Vec<Ipv4Addr>,
    /// Offer `local_addresses` to connecting clients (JS `shareLocalAddress`, default true).
    pub share_local_address: bool,
    /// Try the same-LAN shortcut when connecting (JS `localConnection`, default true).
    pub local_connection: bool,
    /// How often a server re-announces itself to its closest nodes (JS: ~5 min).
    pub announce_interval: Duration,
    /// How long a connection may wait for the peer's first UDX packet when the peer is the
    /// one to connect (JS `HANDSHAKE_INITIAL_TIMEOUT` / passive timeout, 10 s).
    pub passive_wait: Duration,
    /// How long a server remembers a handshake, to answer its retransmits and relayed copies
    /// with the same reply (JS `handshakeClearWait`, 10 s).
    pub handshake_clear_wait: Duration,
    /// Operations in flight at once (ours).
    pub max_ops: usize,
    /// Handshakes a server remembers at once (ours); new ones beyond are dropped.
    pub max_handshakes: usize,
    /// Keep-alive interval of connections (JS `connectionKeepAlive`, 5 s); used by drivers.
    pub connection_keep_alive: Duration,
    /// Blind relays (their public keys) to fall back to when holepunching fails, e.g. when
    /// both NATs randomize (hyperswarm's `relayThrough` list; used by the driver's connect).
    pub relays: Vec<[u8; 32]>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dht: rpc::Config::default(),
            store: StoreLimits::default(),
            local_addresses: Vec::new(),
            share_local_address: true,
            local_connection: true,
            announce_interval: Duration::from_secs(5 * 60),
            passive_wait: Duration::from_secs(10),
            handshake_clear_wait: Duration::from_secs(10),
            max_ops: 1024,
            max_handshakes: 1024,
            connection_keep_alive: Duration::from_secs(5),
            relays: Vec::new(),
        }
    }
}

/// Identifies an operation started on a [`Node`]; its outcome arrives as [`Event::Done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// The firewall callback of a server: `(remote public key, remote payload, client address)
/// → reject?` (JS `createServer({ firewall })`; returning true drops the handshake silently).
pub type FirewallFn = Box<dyn FnMut(&[u8; 32], &NoisePayload, SocketAddrV4) -> bool + Send>;

/// One LOOKUP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// The node that answered.
    pub from: SocketAddrV4,
    /// Our address as it saw us.
    pub to: SocketAddrV4,
    /// Its token for us.
    pub token: Option<[u8; 32]>,
    /// The records it holds for the topic.
    pub peers: Vec<PeerRecord>,
    /// The topic's bump.
    pub bump: u64,
}

/// One FIND_PEER reply that held a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindPeerResult {
    /// The node that answered (it holds a route to the peer).
    pub from: SocketAddrV4,
    /// Our address as it saw us.
    pub to: SocketAddrV4,
    /// The record.
    pub peer: PeerRecord,
}

/// What an announce did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResult {
    /// The closest nodes that answered the walk.
    pub closest_nodes: Vec<SocketAddrV4>,
    /// How many stored the record.
    pub stored: usize,
}

/// What a mutable put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutablePutResult {
    /// The signer.
    pub public_key: [u8; 32],
    /// The sequence number.
    pub seq: u64,
    /// The signature sent.
    pub signature: [u8; 64],
    /// How many nodes accepted it.
    pub stored: usize,
    /// The closest nodes that answered the walk.
    pub closest_nodes: Vec<SocketAddrV4>,
}

/// A verified mutable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableValue {
    /// The sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// Its signature (checked).
    pub signature: [u8; 64],
    /// The node that served it.
    pub from: SocketAddrV4,
}

/// What an immutable put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutablePutResult {
    /// The value's hash, its target.
    pub hash: [u8; 32],
    /// How many nodes stored it.
    pub stored: usize,
    /// The closest nodes that answered the walk.
    pub closest_nodes: Vec<SocketAddrV4>,
}

/// A verified immutable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableValue {
    /// The value (its hash is the target).
    pub value: Vec<u8>,
    /// The node that served it.
    pub from: SocketAddrV4,
}

/// A server's state once announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// The server's public key.
    pub public_key: [u8; 32],
    /// Nodes that hold a route to us (≤ 3), as put in handshake replies.
    pub relay_addresses: Vec<SocketAddrV4>,
}

/// How the UDX stream of a new connection reaches the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Connect the stream on `socket` to `addr` now.
    Connect {
        /// The socket to carry the stream.
        socket: SocketKind,
        /// The peer's address.
        addr: SocketAddrV4,
    },
    /// Connect the stream on the birthday socket `socket` (a [`crate::PunchCommand::Open`]
    /// id) to `addr`, where a punch came from.
    Punched {
        /// The birthday socket.
        socket: u32,
        /// The peer's address.
        addr: SocketAddrV4,
    },
    /// Through a blind relay (both sides' `relayThrough`): connect to the relay `relay`, pair
    /// under `token` as `is_initiator`, then connect the stream on `socket` (the one carrying
    /// the relay connection) to the relay stream id the relay answers.
    Relay {
        /// The relay server's public key.
        relay: [u8; 32],
        /// The pairing token.
        token: [u8; 32],
        /// Our side of the pairing.
        is_initiator: bool,
        /// The socket our connection to the relay uses.
        socket: SocketKind,
    },
    /// The peer connects to us: accept the first UDX packet for our id on any of `sockets`
    /// (udx `Firewall::Connect`), giving up after `timeout`.
    Await {
        /// Where the peer's packets may arrive.
        sockets: Vec<SocketKind>,
        /// How long to wait.
        timeout: Duration,
    },
}

/// A completed handshake: everything a driver needs to open the UDX stream and start
/// secret-stream with [`peerhost_noise::SecretStream::from_handshake`].
#[derive(Debug, Clone)]
pub struct Established {
    /// The peer's static key (authenticated by the handshake).
    pub remote_public_key: [u8; 32],
    /// The Noise IK result.
    pub handshake: HandshakeResult,
    /// Our UDX stream id (give it back with [`Node::release_stream_id`] when done).
    pub local_id: u32,
    /// The peer's UDX stream id.
    pub remote_id: u32,
    /// How to reach the peer.
    pub route: Route,
    /// The peer's Noise payload.
    pub payload: NoisePayload,
}

/// A connection a listening server accepted.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The server's public key.
    pub server: [u8; 32],
    /// The client's address as a relay (or we) saw it.
    pub client_address: SocketAddrV4,
    /// The handshake and route.
    pub established: Established,
}

/// How an operation ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// [`Node::lookup`].
    Lookup(Result<Vec<LookupResult>, Error>),
    /// [`Node::announce`].
    Announce(Result<AnnounceResult, Error>),
    /// [`Node::unannounce`].
    Unannounce(Result<(), Error>),
    /// [`Node::find_peer`].
    FindPeer(Result<Vec<FindPeerResult>, Error>),
    /// [`Node::mutable_put`].
    MutablePut(Result<MutablePutResult, Error>),
    /// [`Node::mutable_get`]: the highest verified value, if any.
    MutableGet(Result<Option<MutableValue>, Error>),
    /// [`Node::immutable_put`].
    ImmutablePut(Result<ImmutablePutResult, Error>),
    /// [`Node::immutable_get`].
    ImmutableGet(Result<Option<ImmutableValue>, Error>),
    /// [`Node::listen`]: the first announce finished.
    Listen(Result<Listening, Error>),
    /// [`Node::connect`].
    Connect(Box<Result<Established, ConnectError>>),
}

/// What the node reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The dht-rpc bootstrap walk is over.
    Bootstrapped,
    /// The node turned persistent: it now stores records and routes for others.
    Persistent,
    /// An operation ended.
    Done {
        /// Which.
        id: OpId,
        /// How.
        outcome: Outcome,
    },
    /// A listening server accepted a handshake.
    Incoming(Box<Incoming>),
    /// A lookup still running got records from one node (hyperswarm dials on these without
    /// waiting for the query's end); its [`Event::Done`] lists every reply again.
    LookupRecords {
        /// The lookup.
        id: OpId,
        /// The node's reply (its `peers` is not empty).
        result: LookupResult,
    },
}

/// Counters, for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Application requests handled.
    pub requests: u64,
    /// Requests answered `UNKNOWN_COMMAND` (unknown numbers, storage commands while
    /// ephemeral, PLUGIN).
    pub unknown_commands: u64,
    /// Requests dropped because their value did not decode or failed a check.
    pub invalid: u64,
    /// Handshakes relayed for others.
    pub relayed: u64,
}

/// A route in the router (`router.js` `forwards`): where a server announced itself from.
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    /// The server's address as seen by us; `None` for our own servers.
    pub(crate) relay: Option<SocketAddrV4>,
    /// The server's encoded peer record.
    pub(crate) record: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct Refresh {
    target: [u8; 32],
    record: Vec<u8>,
    announce_self: bool,
}

/// Who waits for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryOwner {
    Op(OpId),
    Announcer([u8; 32]),
}

/// Who waits for a request.
#[derive(Debug, Clone)]
pub(crate) enum RequestOwner {
    /// Fire and forget (the announcer's UNANNOUNCE).
    Ignore,
    /// An UNANNOUNCE an unannounce operation waits for before it reports.
    Unannounced { op: OpId },
    /// A connect op's handshake through `node`.
    Handshake {
        op: OpId,
        node: SocketAddrV4,
        socket: SocketKind,
    },
    /// A connect op's same-LAN ping.
    LanPing { op: OpId },
    /// The announcer's FIND_PEER for a token before unannouncing from `node`.
    UnannounceToken {
        key_pair: Box<KeyPair>,
        target: [u8; 32],
    },
}

/// A HyperDHT node without I/O.
///
/// # Drain contract
///
/// After every call that takes `now` (a `handle_*` or a command), the caller:
/// 1. handles every [`Node::poll_event`] (open UDX streams for [`Event::Incoming`] and
///    successful connects *before* sending, so the peer's first packets find them);
/// 2. sends every [`Node::poll_transmit`] datagram from the socket it names;
/// 3. sleeps until [`Node::poll_timeout`] (or the next datagram) and calls
///    [`Node::handle_timeout`].
///
/// Every queue is bounded: dht-rpc's by its [`rpc::Limits`], operations by
/// [`Config::max_ops`], a server's remembered handshakes by [`Config::max_handshakes`].
/// Never panics on any input.
pub struct Node {
    pub(crate) dht: rpc::Node,
    pub(crate) config: Config,
    pub(crate) rng: StdRng,
    created: Instant,
    unix_ms_at_start: u64,
    server_port: u16,

    // storage (persistent.js)
    pub(crate) records: RecordCache,
    pub(crate) bumps: Cache<u64>,
    pub(crate) refreshes: Cache<Refresh>,
    pub(crate) mutables: Cache<Vec<u8>>,
    pub(crate) immutables: Cache<Vec<u8>>,
    pub(crate) forwards: Cache<Forward>,

    pub(crate) servers: HashMap<[u8; 32], crate::server::Server>,
    pub(crate) ops: BTreeMap<OpId, crate::client::Op>,
    pub(crate) queries: HashMap<QueryId, QueryOwner>,
    pub(crate) requests: HashMap<RequestId, RequestOwner>,
    pub(crate) stream_ids: HashSet<u32>,
    pub(crate) events: VecDeque<Event>,
    /// Holepunch sessions (`holepunch/`).
    pub(crate) holepunch: crate::holepunch::State,
    /// The handshake and holepunch routes we relay along (`routes.rs`).
    pub(crate) routes: crate::routes::Routes,
    next_op: u64,
    pub(crate) stats: Stats,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("dht", &self.dht)
            .field("servers", &self.servers.len())
            .field("ops", &self.ops.len())
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node whose server socket is bound to `server_port`. `unix_ms` is the wall-clock time
    /// at `now` (bump timestamps are wall-clock milliseconds). It starts bootstrapping at once:
    /// drain its transmits.
    pub fn new(mut config: Config, server_port: u16, now: Instant, unix_ms: u64) -> Self {
        config.dht.handle_user_commands = true;
        let rng = match config.dht.seed {
            Some(mut seed) => {
                seed[0] ^= 0x68; // a stream apart from dht-rpc's own
                StdRng::from_seed(seed)
            }
            None => StdRng::from_entropy(),
        };
        let limits = config.store;
        let half = (limits.max_size / 2).max(1);
        let dht = rpc::Node::new(config.dht.clone(), server_port, now);
        Self {
            dht,
            rng,
            created: now,
            unix_ms_at_start: unix_ms,
            server_port,
            records: RecordCache::new(limits.max_size, limits.max_age, now),
            bumps: Cache::new(limits.max_size, usize::MAX, limits.max_age, now),
            refreshes: Cache::new(limits.max_size, usize::MAX, limits.max_age, now),
            mutables: Cache::new(half, limits.max_value_bytes, limits.max_value_age, now),
            immutables: Cache::new(half, limits.max_value_bytes, limits.max_value_age, now),
            forwards: Cache::new(limits.max_size, usize::MAX, limits.max_age, now),
            servers: HashMap::new(),
            ops: BTreeMap::new(),
            queries: HashMap::new(),
            requests: HashMap::new(),
            stream_ids: HashSet::new(),
            events: VecDeque::new(),
            holepunch: crate::holepunch::State::default(),
            routes: crate::routes::Routes::default(),
            next_op: 0,
            stats: Stats::default(),
            config,
        }
    }

    // ------------------------------------------------------------------ accessors

    /// The dht-rpc node underneath (routing table, NAT state, counters).
    pub fn dht(&self) -> &rpc::Node {
        &self.dht
    }

    /// Our counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the node stores records for others (dht-rpc persistent).
    pub fn is_persistent(&self) -> bool {
        self.dht.id().is_some()
    }

    /// The server socket's port.
    pub fn server_port(&self) -> u16 {
        self.server_port
    }

    /// Operations in flight.
    pub fn ops(&self) -> usize {
        self.ops.len()
    }

    /// Records, routes and values held for others.
    pub fn stored(&self) -> usize {
        self.records.len() + self.forwards.len() + self.mutables.len() + self.immutables.len()
    }

    /// Give back a UDX stream id handed out in an [`Established`] once its stream is gone.
    pub fn release_stream_id(&mut self, id: u32) {
        self.stream_ids.remove(&id);
    }

    /// A fresh UDX stream id not in use by any connection of this node (JS `RawStreamSet`
    /// draws random 32-bit ids too).
    pub(crate) fn alloc_stream_id(&mut self) -> u32 {
        loop {
            let id: u32 = self.rng.r#gen();
            if id != 0 && self.stream_ids.insert(id) {
                return id;
            }
        }
    }

    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.created).as_millis();
        self.unix_ms_at_start
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// Addresses we offer for the same-LAN shortcut: our LAN hosts with the server port.
    pub(crate) fn local_addresses(&self) -> Vec<SocketAddrV4> {
        if self.config.local_addresses.is_empty() {
            return vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.server_port)];
        }
        self.config
            .local_addresses
            .iter()
            .map(|h| SocketAddrV4::new(*h, self.server_port))
            .collect()
    }

    pub(crate) fn next_op_id(&mut self) -> Result<OpId, ()> {
        if self.ops.len() >= self.config.max_ops {
            return Err(());
        }
        self.next_op += 1;
        Ok(OpId(self.next_op))
    }

    pub(crate) fn done(&mut self, id: OpId, outcome: Outcome) {
        self.events.push_back(Event::Done { id, outcome });
    }

    // ------------------------------------------------------------------ drain

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.dht.poll_transmit()
    }

    /// The next event. Drains dht-rpc's events first, so call it until `None`.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            let ev = self.dht.poll_event()?;
            self.on_rpc_event(now, ev);
        }
    }

    /// When to call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = [
            self.dht.poll_timeout(),
            Some(self.records.poll_timeout()),
            Some(self.bumps.poll_timeout()),
            Some(self.refreshes.poll_timeout()),
            Some(self.mutables.poll_timeout()),
            Some(self.immutables.poll_timeout()),
            Some(self.forwards.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        for s in self.servers.values() {
            let next = s.poll_timeout();
            t = Some(t.map_or(next, |t| t.min(next)));
        }
        if let Some(next) = self.holepunch.poll_timeout() {
            t = Some(t.map_or(next, |t| t.min(next)));
        }
        t
    }

    // ------------------------------------------------------------------ inputs

    /// A datagram arrived on `socket` from `from`. Datagrams that are not dht-rpc (holepunch
    /// probes, stray UDX packets) are counted and dropped by dht-rpc.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddr,
        data: &[u8],
    ) {
        // > socket-pool.js: datagrams of at most one byte are holepunches, not dht-rpc.
        if data.len() <= 1 {
            return self.on_punch(now, crate::PunchSocket::Dht(socket), from);
        }
        self.dht.handle_datagram(now, socket, from, data);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dht.handle_timeout(now);
        self.records.handle_timeout(now);
        self.bumps.handle_timeout(now);
        self.refreshes.handle_timeout(now);
        self.mutables.handle_timeout(now);
        self.immutables.handle_timeout(now);
        self.forwards.handle_timeout(now);
        self.servers_timeout(now);
        self.holepunch_timeout(now);
    }

    fn on_rpc_event(&mut self, now: Instant, ev: RpcEvent) {
        match ev {
            RpcEvent::Bootstrapped => self.events.push_back(Event::Bootstrapped),
            RpcEvent::Persistent { .. } => {
                self.events.push_back(Event::Persistent);
                // JS `network-change` → `server.refresh()`: our route moves with our socket.
                self.refresh_servers(now);
            }
            RpcEvent::Request(req) => self.handle_request(now, req),
            RpcEvent::Response { id, result } => self.on_response(now, id, result),
            RpcEvent::QueryReply { id, reply } => self.on_query_reply(now, id, reply),
            RpcEvent::QueryDone { id, result } => self.on_query_done(now, id, result),
            _ => {}
        }
    }

    fn on_response(&mut self, now: Instant, id: RequestId, result: Result<Reply, RequestError>) {
        let Some(owner) = self.requests.remove(&id) else {
            return self.on_holepunch_response(now, id, result);
        };
        match owner {
            RequestOwner::Ignore => {}
            RequestOwner::Unannounced { op } => self.on_unannounced(now, op),
            RequestOwner::Handshake { op, node, socket } => {
                self.on_handshake_response(now, op, node, socket, result);
            }
            RequestOwner::LanPing { op } => self.on_lan_ping(now, op, result.is_ok()),
            RequestOwner::UnannounceToken { key_pair, target } => {
                if let Ok(reply) = result {
                    self.send_unannounce(now, &key_pair, target, &reply, RequestOwner::Ignore);
                }
            }
        }
    }

    fn on_query_reply(&mut self, now: Instant, id: QueryId, reply: Reply) {
        if let Some(QueryOwner::Op(op)) = self.queries.get(&id).copied() {
            self.on_op_query_reply(now, op, id, reply);
        }
    }

    fn on_query_done(
        &mut self,
        now: Instant,
        id: QueryId,
        result: Result<rpc::QueryResult, QueryError>,
    ) {
        match self.queries.remove(&id) {
            Some(QueryOwner::Op(op)) => self.on_op_query_done(now, op, result),
            Some(QueryOwner::Announcer(target)) => self.on_announced(now, target, result),
            None => {}
        }
    }

    /// Sign and send an UNANNOUNCE for `key_pair` under `target` to the node behind `reply`
    /// (`_requestUnannounce`); its response goes to `owner`. False if none was sent.
    pub(crate) fn send_unannounce(
        &mut self,
        now: Instant,
        key_pair: &KeyPair,
        target: [u8; 32],
        reply: &Reply,
        owner: RequestOwner,
    ) -> bool {
        let (Some(token), Some(node_id)) = (reply.token, reply.from_id) else {
            return false;
        };
        let peer = PeerRecord {
            public_key: key_pair.public_key(),
            relay_addresses: vec![],
        };
        let signable = announce_signable(
            &crate::constants::ns::UNANNOUNCE,
            &target,
            node_id.as_bytes(),
            &token,
            &peer,
            None,
        );
        let value = messages::encode(&Announce {
            peer: Some(peer),
            refresh: None,
            signature: Some(key_pair.sign(&signable)),
            bump: 0,
        });
        let params = rpc::RequestParams {
            token: Some(token),
            command: Command::Unannounce.as_u64(),
            target: Some(target),
            value: Some(value),
        };
        match self
            .dht
            .request(now, reply.from, params, rpc::RequestOptions::default())
        {
            Ok(rid) => {
                self.requests.insert(rid, owner);
                true
            }
            Err(_) => false,
        }
    }
}

/// `Holepuncher.matchAddress`: the remote address sharing the longest dotted prefix (3 octets
/// wins at once, then 2, then 1) with one of ours.
pub(crate) fn match_address(
    local: &[SocketAddrV4],
    remote: &[SocketAddrV4],
) -> Option<SocketAddrV4> {
    let mut best: (u8, Option<SocketAddrV4>) = (1, None);
    for l in local {
        let a = l.ip().octets();
        for r in remote {
            let b = r.ip().octets();
            if a[0] == b[0] {
                if best.0 == 1 {
                    best = (2, Some(*r));
                }
                if a[1] == b[1] {
                    if best.0 == 2 {
                        best = (3, Some(*r));
                    }
                    if a[2] == b[2] {
                        return Some(*r);
                    }
                }
            }
        }
    }
    best.1
}

/// `bogon.isPrivate` for IPv4.
pub(crate) fn is_private(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 10
        || (o[0] == 100 && (64..=127).contains(&o[1]))
        || o[0] == 127
        || (o[0] == 169 && o[1] == 254)
        || (o[0] == 172 && (16..=31).contains(&o[1]))
        || (o[0] == 192 && o[1] == 168)
}

/// `bogon.isReserved` for IPv4.
pub(crate) fn is_reserved(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 0
        || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
        || (o[0] == 198 && (18..=19).contains(&o[1]))
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || o[0] >= 224
}

/// Decode a record from a FIND_PEER reply value.
pub(crate) fn decode_record(value: Option<&[u8]>) -> Option<PeerRecord> {
    value.and_then(|v| PeerRecord::decode(&mut Reader::new(v)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn match_address_prefers_longest_prefix() {
        let local = [a("192.168.122.238:1")];
        assert_eq!(
            match_address(&local, &[a("192.168.0.23:2"), a("192.168.122.1:3")]),
            Some(a("192.168.122.1:3"))
        );
        assert_eq!(
            match_address(&local, &[a("192.168.0.23:2")]),
            Some(a("192.168.0.23:2"))
        );
        assert_eq!(match_address(&local, &[a("10.0.0.1:2")]), None);
        assert_eq!(match_address(&local, &[]), None);
    }

    #[test]
    fn bogon_classes() {
        assert!(is_private(&"127.0.0.1".parse().unwrap()));
        assert!(!is_reserved(&"127.0.0.1".parse().unwrap()));
        assert!(is_reserved(&"0.0.0.0".parse().unwrap()));
        assert!(is_reserved(&"239.1.1.1".parse().unwrap()));
        assert!(
            !is_private(&"8.8.8.8".parse().unwrap()) && !is_reserved(&"8.8.8.8".parse().unwrap())
        );
    }
}
