//! The sans-IO dht-rpc node (dht-rpc `index.js` `DHT` + `lib/io.js` `IO`).
//!
//! Ownership and flow:
//! - [`Node`] owns the routing [`Table`], the [`NatSampler`], the token secrets, the requests
//!   in flight ([`Io`]), the queries, the inbound rate limiter and two bounded queues: datagrams
//!   to send and events for the application.
//! - Inputs: [`Node::handle_datagram`] (a datagram on one of our two sockets),
//!   [`Node::handle_timeout`] (time passed), and commands ([`Node::request`], [`Node::query`],
//!   [`Node::reply`], …).
//! - Outputs: [`Node::poll_transmit`], [`Node::poll_event`], [`Node::poll_timeout`].
//!
//! Maintenance runs from `handle_timeout`: a 750 ms drain (token rotation, congestion window)
//! and a 5 s tick (pings of old nodes, refresh queries, the adaptive switch to persistent,
//! wake-up detection).

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use peerhost_encoding::{CompactEncoding, Sizer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::error::{ReplyError, RequestError};
use crate::io::{DEFAULT_TIMEOUT, Io, NewRequest, Outbox, Owner};
use crate::limit::RateLimiter;
use crate::messages::{
    Command, INVALID_TOKEN, MAX_DATAGRAM, Message, OK, REQUEST_ID, RESPONSE_ID, Request, Response,
    UNKNOWN_COMMAND, peek_response_tid,
};
use crate::nat::NatSampler;
use crate::peer::{NodeId, decode_addr, to_v4};
use crate::proof::Proofs;
use crate::query::{Commit, CommitError, Purpose, Query, QueryError, QueryParams, QueryResult};
use crate::table::{K, Table, TableNode};
use crate::token::Tokens;

mod maintenance;
mod walk;

use maintenance::{Bootstrap, FirewallCheck};

mod inbound;
mod outbound;

/// JS `TICK_INTERVAL`.
pub const TICK_INTERVAL: Duration = Duration::from_millis(5000);
/// JS `_drain` interval.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(750);
/// More than this between two ticks means the machine slept (JS `SLEEPING_INTERVAL`).
const SLEEPING_INTERVAL: Duration = Duration::from_millis(3 * 5000);
/// Ticks of stable uptime before an adaptive node tries to turn persistent (~20 min).
const STABLE_TICKS: i64 = 240;
const MORE_STABLE_TICKS: i64 = 3 * STABLE_TICKS;
/// Refresh every ~5 min when idle.
const REFRESH_TICKS: i64 = 60;
/// We heard from a node less than a minute ago.
const RECENT_NODE: u64 = 12;
/// A node around for more than 30 minutes.
const OLD_NODE: u64 = 360;
/// Retries of a query's requests (JS `Query` default; 3 for DOWN_HINT queries).
const QUERY_RETRIES: u32 = 5;
/// Retries of a plain request (JS `Request#retries`).
pub const DEFAULT_RETRIES: u32 = 3;
/// Bounds on a request's per-send timeout (ours).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Bytes a relayed request may exceed the request it relays by, to an unproven address: an
/// address (6), our id (32) and their flags, with room to spare (`crate::proof`).
pub const RELAY_SLACK: usize = 64;
/// Hosts remembered while a firewall check listens on the server socket (ours).
const MAX_CHECK_HOSTS: usize = 64;

/// Which of the node's two UDP sockets (dht-rpc `IO#serverSocket` / `IO#clientSocket`).
///
/// The server socket is the node's public face: bound to the configured port, answering
/// requests, and the one whose reachability the firewall check proves. While firewalled, the
/// node sends its requests from the client socket; once reachable, from the server socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketKind {
    /// The listening socket.
    Server,
    /// The socket requests go out from while firewalled.
    Client,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The socket to send it from.
    pub socket: SocketKind,
    /// Where to.
    pub destination: SocketAddrV4,
    /// The datagram (at most [`MAX_DATAGRAM`] bytes).
    pub contents: Vec<u8>,
}

/// Identifies a request started with [`Node::request`] or [`Node::ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Identifies a query started with [`Node::query`] or [`Node::find_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// A response as received: the wire fields plus what the node checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Where it came from.
    pub from: SocketAddrV4,
    /// The responder's id, only if it hashes `from` (else dropped, as JS `validateId` does).
    pub from_id: Option<NodeId>,
    /// Our address as the responder saw it.
    pub to: SocketAddrV4,
    /// A token for a later request to the responder.
    pub token: Option<[u8; 32]>,
    /// Nodes closer to the target.
    pub closer_nodes: Vec<SocketAddrV4>,
    /// The error code ([`OK`] = 0).
    pub error: u64,
    /// The payload.
    pub value: Option<Vec<u8>>,
    /// Time since the request was created.
    pub rtt: Duration,
}

/// An application request to answer with [`Node::reply`] or [`Node::reply_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// Transaction id (the reply echoes it).
    pub tid: u16,
    /// The requester's address.
    pub from: SocketAddrV4,
    /// The requester's id, only if it hashes `from`.
    pub from_id: Option<NodeId>,
    /// Our address as the requester addressed it.
    pub to: SocketAddrV4,
    /// The socket it arrived on (the reply leaves from it).
    pub socket: SocketKind,
    /// The token presented. Always one we issued to this host: requests with a bad token are
    /// answered `INVALID_TOKEN` before they get here.
    pub token: Option<[u8; 32]>,
    /// The command.
    pub command: u64,
    /// The target.
    pub target: Option<[u8; 32]>,
    /// The payload.
    pub value: Option<Vec<u8>>,
    /// The request's size in bytes: an answer to an address that has not proven it receives
    /// is held, and the address probed, when it would be larger (`crate::proof`).
    pub size: usize,
}

/// How to send a reply (JS `req.reply(value, opts)` / `req.error(code, opts)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyOptions {
    /// Include a token for the requester.
    pub token: bool,
    /// Include closer nodes when the request had a target.
    pub closer_nodes: bool,
    /// Send to (and report as `to`) this address instead of the requester.
    pub to: Option<SocketAddrV4>,
    /// Send from this socket instead of the one the request arrived on.
    pub socket: Option<SocketKind>,
}

impl ReplyOptions {
    /// The defaults of `req.reply`: token and closer nodes.
    pub const REPLY: Self = Self {
        token: true,
        closer_nodes: true,
        to: None,
        socket: None,
    };
    /// The defaults of `req.error`: closer nodes, no token.
    pub const ERROR: Self = Self {
        token: false,
        closer_nodes: true,
        to: None,
        socket: None,
    };
}

/// An application request to send with [`Node::request`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestParams {
    /// A token the destination handed out.
    pub token: Option<[u8; 32]>,
    /// The command (always an application command: the internal flag is not set).
    pub command: u64,
    /// The target.
    pub target: Option<[u8; 32]>,
    /// The payload.
    pub value: Option<Vec<u8>>,
}

/// How to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// Resends after the first send (JS default 3; `retry: false` is 0).
    pub retries: u32,
    /// Per-send timeout (JS default 1000 ms).
    pub timeout: Duration,
    /// Send from this socket instead of the default one.
    pub socket: Option<SocketKind>,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            socket: None,
        }
    }
}

/// What the node reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The bootstrap walk is over (JS `'ready'`); the node serves and maintains itself.
    Bootstrapped,
    /// The node turned persistent: it now sends its id and enters others' routing tables
    /// (JS `'persistent'`).
    Persistent {
        /// Its id, `NodeId::from_addr(public address)`.
        id: NodeId,
    },
    /// After a wake-up an adaptive node turned ephemeral again (JS `'ephemeral'`).
    Ephemeral,
    /// Our public address estimate changed (JS `'nat-update'`).
    NatUpdate {
        /// The host, if known.
        host: Option<Ipv4Addr>,
        /// The port; 0 if unknown or randomised.
        port: u16,
    },
    /// More than 15 s passed between two ticks (JS `'wakeup'`).
    Wakeup,
    /// An application command to answer.
    Request(IncomingRequest),
    /// The outcome of [`Node::request`] / [`Node::ping`]. A reply with a non-zero `error` is
    /// still `Ok`: the node answered.
    Response {
        /// Which request.
        id: RequestId,
        /// The reply or why there is none.
        result: Result<Reply, RequestError>,
    },
    /// A successful reply during a query's walk (JS: the query stream's `'data'`).
    QueryReply {
        /// Which query.
        id: QueryId,
        /// The reply.
        reply: Reply,
    },
    /// A query is over.
    QueryDone {
        /// Which query.
        id: QueryId,
        /// What it found, or why it failed.
        result: Result<QueryResult, QueryError>,
    },
}

/// Counters, for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams handed to the node.
    pub datagrams: u64,
    /// Datagrams dropped as not dht-rpc, malformed, or from an unusable address.
    pub malformed: u64,
    /// Requests dropped by the rate limiter.
    pub rate_limited: u64,
    /// Requests handled (answered or handed to the application).
    pub requests: u64,
    /// Requests answered `UNKNOWN_COMMAND`.
    pub unknown_commands: u64,
    /// Requests answered `INVALID_TOKEN`.
    pub invalid_tokens: u64,
    /// Application requests dropped because the event queue was full.
    pub requests_dropped: u64,
    /// Responses matched to a request.
    pub responses: u64,
    /// Responses nobody waited for.
    pub unmatched_responses: u64,
    /// Requests that failed after every retry.
    pub timeouts: u64,
    /// Resends.
    pub retries: u64,
    /// Query replies dropped because the event queue was full.
    pub events_dropped: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Answers held until their address proved it receives (larger than their request).
    pub answers_held: u64,
    /// Answers dropped because their address never proved it receives (or over the bounds).
    pub answers_unproven: u64,
    /// Probes sent (`PING`s proving an address receives).
    pub probes: u64,
}

#[derive(Debug, Clone, Copy)]
struct DelayedReply {
    socket: SocketKind,
    tid: u16,
    to: SocketAddrV4,
    budget: usize,
}

/// A dht-rpc node without I/O.
///
/// # Drain contract
///
/// After every call that takes `now` (a `handle_*` or a command), the caller:
/// 1. sends every [`Node::poll_transmit`] datagram from the socket it names;
/// 2. handles every [`Node::poll_event`];
/// 3. sleeps until [`Node::poll_timeout`] (or the next datagram) and then calls
///    [`Node::handle_timeout`].
///
/// Answering events may queue more datagrams: drain transmits again before sleeping. Both
/// queues are bounded ([`crate::Limits`]); a caller that stops draining loses datagrams (as a
/// full socket would) and application requests, never memory.
#[derive(Debug)]
pub struct Node {
    // --- configuration
    bootstrap_nodes: Vec<SocketAddrV4>,
    concurrency: usize,
    max_ping_delay: Duration,
    send_down_hints: bool,
    down_hints_rate_limit: Option<u32>,
    handle_user_commands: bool,
    filter_node: Option<fn(&SocketAddrV4) -> bool>,
    limits: crate::config::Limits,
    server_port: u16,

    // --- state
    rng: StdRng,
    table: Table,
    nat: NatSampler,
    tokens: Tokens,
    io: Io,
    limiter: RateLimiter,
    outbox: Outbox,
    events: VecDeque<Event>,
    queries: BTreeMap<QueryId, Query>,
    next_query: u64,
    next_request: u64,

    ephemeral: bool,
    firewalled: bool,
    adaptive: bool,
    force_persistent: bool,
    bootstrapped: bool,
    bootstrap: Bootstrap,
    quick_firewall_first: bool,
    test_nat: bool,

    tick: u64,
    last_tick: Instant,
    next_tick: Instant,
    next_drain: Instant,
    refresh_ticks: i64,
    stable_ticks: i64,
    last_host: Option<Ipv4Addr>,
    repinging: u32,
    checks: u32,
    none_persistent_samples: Vec<SocketAddrV4>,
    down_hints_sent: u32,
    check: Option<FirewallCheck>,
    check_generation: u64,
    delayed: BTreeMap<(Instant, u64), DelayedReply>,
    delayed_seq: u64,
    /// Addresses that proved they receive, answers held for the others (`crate::proof`).
    proofs: Proofs,
    /// The latest time an input brought (answers made outside a `handle_*` call use it).
    now: Instant,
    stats: Stats,
}

fn random_offset(rng: &mut StdRng, n: i64) -> i64 {
    // > n - ((Math.random() * 0.5 * n) | 0)
    n - (rng.r#gen::<f64>() * 0.5 * n as f64) as i64
}

impl Node {
    /// A node whose server socket is bound to `server_port`; it starts bootstrapping at once
    /// (drain its transmits).
    pub fn new(config: Config, server_port: u16, now: Instant) -> Self {
        let mut rng = match config.seed {
            Some(seed) => StdRng::from_seed(seed),
            None => StdRng::from_entropy(),
        };
        let table = Table::new(NodeId(rng.r#gen()));
        let tokens = Tokens::new([rng.r#gen(), rng.r#gen()]);
        let io = Io::new(
            rng.r#gen(),
            config.max_window,
            config.limits.max_inflight.max(1),
        );
        let adaptive = config.ephemeral.is_none() && config.adaptive;
        let tick = random_offset(&mut rng, 100) as u64;
        let refresh_ticks = random_offset(&mut rng, REFRESH_TICKS);
        let mut node = Self {
            bootstrap_nodes: config.bootstrap,
            concurrency: config.concurrency.max(1),
            max_ping_delay: config.max_ping_delay,
            send_down_hints: config.send_down_hints,
            down_hints_rate_limit: config.down_hints_rate_limit,
            handle_user_commands: config.handle_user_commands,
            filter_node: config.filter_node,
            limits: config.limits,
            server_port,
            rng,
            table,
            nat: NatSampler::new(),
            tokens,
            io,
            limiter: RateLimiter::new(config.limits.rate, now),
            outbox: Outbox::new(config.limits.max_transmits.max(1)),
            events: VecDeque::new(),
            queries: BTreeMap::new(),
            next_query: 0,
            next_request: 0,
            ephemeral: true,
            firewalled: config.firewalled,
            adaptive,
            force_persistent: config.ephemeral == Some(false),
            bootstrapped: false,
            bootstrap: Bootstrap::Done,
            quick_firewall_first: false,
            test_nat: false,
            tick,
            last_tick: now,
            next_tick: now + TICK_INTERVAL,
            next_drain: now + DRAIN_INTERVAL,
            refresh_ticks,
            stable_ticks: if adaptive { STABLE_TICKS } else { 0 },
            last_host: None,
            repinging: 0,
            checks: 0,
            none_persistent_samples: Vec::new(),
            down_hints_sent: 0,
            check: None,
            check_generation: 0,
            delayed: BTreeMap::new(),
            delayed_seq: 0,
            proofs: Proofs::default(),
            now,
            stats: Stats::default(),
        };
        // `DHT.bootstrapper` seeds the sampler right after construction.
        if let Some(seed) = config.nat_seed {
            node.nat.add(*seed.ip(), seed.port());
        }
        for n in config.nodes.iter().rev() {
            node.add_node(now, *n);
        }
        node.quick_firewall_first =
            node.firewalled && config.quick_firewall && !node.force_persistent;
        node.bootstrap_round(now, 0);
        node
    }

    // ------------------------------------------------------------------ accessors

    /// Our id while persistent (JS `dht.id`); `None` while ephemeral.
    pub fn id(&self) -> Option<NodeId> {
        (!self.ephemeral).then(|| self.table.id())
    }

    /// The routing table's centre (random until the node turns persistent).
    pub fn table_id(&self) -> NodeId {
        self.table.id()
    }

    /// The routing table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Whether the node is ephemeral (sends no id, enters nobody's routing table).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Whether the node believes it cannot be reached unsolicited.
    pub fn is_firewalled(&self) -> bool {
        self.firewalled
    }

    /// Whether the bootstrap walk is over.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// Our public host and port as sampled (`dht.host`, `dht.port`; port 0 if randomised).
    pub fn nat(&self) -> (Option<Ipv4Addr>, u16) {
        (self.nat.host(), self.nat.port())
    }

    /// Our public address if we are reachable on it (JS `remoteAddress()`): a sampled host and
    /// port, not firewalled, and the port is our server socket's.
    pub fn remote_address(&self) -> Option<SocketAddrV4> {
        let host = self.nat.host()?;
        let port = self.nat.port();
        (port != 0 && !self.firewalled && port == self.server_port)
            .then(|| SocketAddrV4::new(host, port))
    }

    /// The socket requests leave from (JS `dht.socket`).
    pub fn default_socket(&self) -> SocketKind {
        if self.firewalled {
            SocketKind::Client
        } else {
            SocketKind::Server
        }
    }

    /// Known nodes, most recently seen first (JS `toArray()`).
    pub fn nodes(&self) -> Vec<SocketAddrV4> {
        self.table.oldest_first().rev().map(|n| n.addr).collect()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            transmits_dropped: self.outbox.dropped,
            ..self.stats
        }
    }

    /// Requests in flight or queued.
    pub fn inflight(&self) -> usize {
        self.io.len()
    }

    /// Queries running (including maintenance).
    pub fn queries(&self) -> usize {
        self.queries.len()
    }

    /// Answers held now until their address proves it receives (`crate::proof`).
    pub fn answers_held(&self) -> usize {
        self.proofs.held()
    }

    /// Whether `ip` proved lately that it receives at its address (`crate::proof`).
    pub fn is_proven(&self, ip: Ipv4Addr) -> bool {
        self.proofs.is_proven(ip, self.now)
    }

    /// Source IPs the rate limiter tracks.
    pub fn rate_limited_ips(&self) -> usize {
        self.limiter.tracked()
    }

    // ------------------------------------------------------------------ drain

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.io.next_timeout(),
            self.delayed.keys().next().map(|(t, _)| *t),
            self.proofs.next_timeout(),
            Some(self.next_drain),
            Some(self.next_tick),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn emit(&mut self, ev: Event) {
        let droppable = matches!(
            ev,
            Event::Request(_) | Event::QueryReply { .. } | Event::NatUpdate { .. }
        );
        if droppable && self.events.len() >= self.limits.max_events {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(ev);
    }

    // ------------------------------------------------------------------ inputs

    /// A datagram arrived on `socket` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.now = self.now.max(now);
        self.stats.datagrams += 1;
        let Some(from) = to_v4(from) else {
            self.stats.malformed += 1;
            return;
        };
        // `_checkIfFirewalled` listens for any datagram on the server socket.
        if socket == SocketKind::Server {
            if let Some(check) = &mut self.check {
                if check.hosts.len() < MAX_CHECK_HOSTS {
                    check.hosts.insert(*from.ip());
                }
            }
        }
        // > if (buffer.byteLength < 2 || !(port > 0 && port < 65536) || ...) return
        if data.len() < 2 || from.port() == 0 {
            self.stats.malformed += 1;
            return;
        }
        match data[0] {
            REQUEST_ID => {
                if !self.limiter.allow(*from.ip(), now) {
                    self.stats.rate_limited += 1;
                    return;
                }
                match Message::decode(data) {
                    Ok(Message::Request(req)) => {
                        self.on_request(now, socket, from, req, data.len());
                    }
                    _ => self.stats.malformed += 1,
                }
            }
            RESPONSE_ID => {
                // Cheap drop of responses nobody waits for.
                if let Some(tid) = peek_response_tid(data) {
                    if self.io.get(tid).is_none() {
                        self.stats.unmatched_responses += 1;
                        // Someone may be guessing tids "from" this host to make it look proven:
                        // no proof for it for a while, and its probe (if any) fails.
                        if self.proofs.taint(*from.ip(), now) {
                            self.cancel_probe(*from.ip());
                        }
                        return;
                    }
                }
                match Message::decode(data) {
                    Ok(Message::Response(res)) => self.on_response(now, socket, from, res),
                    _ => self.stats.malformed += 1,
                }
            }
            _ => self.stats.malformed += 1,
        }
    }

    /// Time passed: fire timeouts, the drain and the tick that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.stats.answers_unproven += self.proofs.expire(now) as u64;
        while let Some(tid) = self.io.pop_expired(now) {
            self.on_send_timeout(now, tid);
        }
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let r = entry.remove();
            self.send_reply(r.socket, r.tid, r.to, OK, None, false, None, r.budget);
        }
        if now >= self.next_drain {
            self.on_drain(now);
            self.next_drain += DRAIN_INTERVAL;
            if self.next_drain <= now {
                self.next_drain = now + DRAIN_INTERVAL;
            }
        }
        if now >= self.next_tick {
            self.on_tick(now);
            self.next_tick += TICK_INTERVAL;
            if self.next_tick <= now {
                self.next_tick = now + TICK_INTERVAL;
            }
        }
    }

    // ------------------------------------------------------------------ commands

    /// Add a node to the routing table (JS `addNode`).
    pub fn add_node(&mut self, now: Instant, addr: SocketAddrV4) {
        self.add_table_node(TableNode::new(addr, None), now);
    }

    /// Send an application request to `to` (JS `dht.request`). The outcome arrives as
    /// [`Event::Response`].
    pub fn request(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        params: RequestParams,
        opts: RequestOptions,
    ) -> Result<RequestId, RequestError> {
        let id = self.next_request_id();
        self.send_request(
            now,
            Outgoing {
                to,
                to_id: None,
                no_id: false,
                token: params.token,
                internal: false,
                command: params.command,
                target: params.target,
                value: params.value,
            },
            opts,
            Owner::User(id),
        )?;
        Ok(id)
    }

    /// PING `to` (JS `dht.ping`). The outcome arrives as [`Event::Response`].
    pub fn ping(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        opts: RequestOptions,
    ) -> Result<RequestId, RequestError> {
        let id = self.next_request_id();
        self.send_request(
            now,
            Outgoing::internal(to, None, Command::Ping, None),
            opts,
            Owner::User(id),
        )?;
        Ok(id)
    }

    /// DELAYED_PING `to`: it answers after `delay` (JS `dht.delayedPing`; the per-send
    /// timeout is `delay + 1 s`).
    pub fn delayed_ping(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        delay: Duration,
    ) -> Result<RequestId, RequestError> {
        let id = self.next_request_id();
        let ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        let opts = RequestOptions {
            timeout: Duration::from_millis(u64::from(ms)) + Duration::from_secs(1),
            ..RequestOptions::default()
        };
        self.send_request(
            now,
            Outgoing::internal(
                to,
                None,
                Command::DelayedPing,
                Some(ms.to_le_bytes().to_vec()),
            ),
            opts,
            Owner::User(id),
        )?;
        Ok(id)
    }

    /// Cancel a request; it ends with [`RequestError::Destroyed`].
    pub fn cancel_request(&mut self, id: RequestId) {
        for tid in self
            .io
            .tids_where(|o| matches!(o, Owner::User(r) if *r == id))
        {
            self.io.remove(tid);
            self.emit(Event::Response {
                id,
                result: Err(RequestError::Destroyed),
            });
        }
    }

    /// Start a query (JS `dht.query`). Replies stream as [`Event::QueryReply`]; the end is one
    /// [`Event::QueryDone`].
    pub fn query(&mut self, now: Instant, params: QueryParams) -> Result<QueryId, QueryError> {
        let q = Query::new(
            Purpose::User,
            NodeId(params.target),
            false,
            params.command,
            params.value,
            params.concurrency.unwrap_or(self.concurrency),
            params.retries.unwrap_or(QUERY_RETRIES),
            params.commit,
        );
        self.start_query(now, q, &params.nodes)
            .ok_or(QueryError::Overloaded)
    }

    /// Find the nodes closest to `target` (JS `dht.findNode`: the internal FIND_NODE).
    pub fn find_node(&mut self, now: Instant, target: [u8; 32]) -> Result<QueryId, QueryError> {
        let q = Query::new(
            Purpose::User,
            NodeId(target),
            true,
            Command::FindNode as u64,
            None,
            self.concurrency,
            QUERY_RETRIES,
            Commit::None,
        );
        self.start_query(now, q, &[]).ok_or(QueryError::Overloaded)
    }

    /// Cancel a query; it ends with [`QueryError::Cancelled`].
    pub fn cancel_query(&mut self, now: Instant, id: QueryId) {
        if let Some(q) = self.queries.remove(&id) {
            self.end_query(now, id, q, Err(QueryError::Cancelled));
        }
    }

    /// Start a background refresh: a FIND_NODE walk towards a random known node
    /// (JS `refresh()`).
    pub fn refresh(&mut self, now: Instant) {
        let target = if self.table.is_empty() {
            self.table.id()
        } else {
            let i = self.rng.gen_range(0..self.table.len());
            self.table.nth(i).map_or(self.table.id(), |n| n.id)
        };
        self.background_query(now, target, Purpose::Refresh);
    }

    /// Answer an application request with a value (JS `req.reply(value, opts)`).
    pub fn reply(
        &mut self,
        req: &IncomingRequest,
        value: Option<&[u8]>,
        opts: ReplyOptions,
    ) -> Result<(), ReplyError> {
        self.answer(req, OK, value, opts)
    }

    /// Answer an application request with an error code (JS `req.error(code, opts)`; use
    /// [`ReplyOptions::ERROR`] for its defaults).
    pub fn reply_error(
        &mut self,
        req: &IncomingRequest,
        code: u64,
        opts: ReplyOptions,
    ) -> Result<(), ReplyError> {
        self.answer(req, code, None, opts)
    }

    /// Forward a request to `to` with a new value, keeping its tid (JS `req.relay`): the
    /// receiver answers whoever it decides to, typically the original requester via
    /// `ReplyOptions::to`.
    pub fn relay(
        &mut self,
        req: &IncomingRequest,
        value: Option<&[u8]>,
        to: SocketAddrV4,
        socket: Option<SocketKind>,
    ) -> Result<(), ReplyError> {
        let socket = socket.unwrap_or(req.socket);
        let msg = Request {
            tid: req.tid,
            to,
            id: self.id_for(socket),
            token: None,
            internal: false,
            command: req.command,
            target: req.target,
            value: value.map(<[u8]>::to_vec),
        };
        let bytes = encode_bounded(&msg).ok_or(ReplyError::TooLarge)?;
        let t = Transmit {
            socket,
            destination: to,
            contents: bytes,
        };
        // A relayed request grows by what the relay adds (the requester's address, our id):
        // that slack is no amplification, and its destination is the relayer's choice (hyperdht
        // relays only along routes it knows).
        self.answer_out(t, req.tid, req.size + RELAY_SLACK);
        Ok(())
    }

    fn answer(
        &mut self,
        req: &IncomingRequest,
        code: u64,
        value: Option<&[u8]>,
        opts: ReplyOptions,
    ) -> Result<(), ReplyError> {
        let socket = opts.socket.unwrap_or(req.socket);
        let to = opts.to.unwrap_or(req.from);
        let target = req.target.filter(|_| opts.closer_nodes).map(NodeId);
        if self.send_reply(
            socket, req.tid, to, code, value, opts.token, target, req.size,
        ) {
            Ok(())
        } else {
            Err(ReplyError::TooLarge)
        }
    }
}

/// What the node remembers of a finished request.
#[derive(Debug, Clone, Copy)]
struct Done {
    tid: u16,
    to: SocketAddrV4,
    slow: bool,
}

/// A request to build.
#[derive(Debug)]
struct Outgoing {
    to: SocketAddrV4,
    to_id: Option<NodeId>,
    /// Send without our id even from the server socket (probes: as small as a request gets).
    no_id: bool,
    token: Option<[u8; 32]>,
    internal: bool,
    command: u64,
    target: Option<[u8; 32]>,
    value: Option<Vec<u8>>,
}

impl Outgoing {
    fn internal(
        to: SocketAddrV4,
        to_id: Option<NodeId>,
        command: Command,
        value: Option<Vec<u8>>,
    ) -> Self {
        Self {
            to,
            to_id,
            no_id: false,
            token: None,
            internal: true,
            command: command as u64,
            target: None,
            value,
        }
    }
}

/// Encode a message if it fits one datagram.
fn encode_bounded<T: CompactEncoding>(msg: &T) -> Option<Vec<u8>> {
    let mut s = Sizer::default();
    msg.preencode(&mut s);
    (s.len() <= MAX_DATAGRAM).then(|| peerhost_encoding::to_vec(msg))
}
