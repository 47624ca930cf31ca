//! The tokio driver: one task runs a [`Node`] over two UDX sockets; connections are
//! secret-streams over UDX streams on those same sockets.
//!
//! - [`Dht`] is a cheap, cloneable handle. Its async methods send a command over a bounded
//!   channel to the task and await the outcome on a oneshot.
//! - The task owns the [`Node`] and both [`peerhost_udx::driver::Socket`]s (dht-rpc's server
//!   and client sockets). It loops: wait for a command, a non-UDX datagram on either socket
//!   (UDX packets are consumed by the socket's own driver), or the node's next timeout → feed
//!   the node → handle its events (open streams for accepted and established connections,
//!   answer waiting callers) → send its datagrams.
//! - Each new connection is set up in its own task ([`Route::Connect`]: connect the stream now;
//!   [`Route::Await`]: a stream on each socket waits for the peer's first packet), then runs as
//!   a [`Connection`]: one task pumping a [`SecretStream`] over the UDX stream, with bounded
//!   queues both ways.
//! - A [`Server`] (from [`Dht::listen`]) yields accepted connections from a bounded queue;
//!   when it is full, new connections are dropped (the client sees its stream fail).
//!
//! The task stops when every [`Dht`] handle is dropped; operations still waiting then fail
//! with [`Error::Destroyed`] / [`ConnectError::Destroyed`].

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peerhost_dht_rpc::SocketKind;
use peerhost_ids::KeyPair;
use peerhost_noise::{Config as StreamConfig, Event as StreamEvent, SecretStream};
use peerhost_udx::driver::{Socket, Stream};
use peerhost_udx::{Firewall, StreamConfig as UdxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

mod relay;

pub use relay::RelayService;

use crate::client::{AnnounceOptions, ConnectOptions};
use crate::error::{ConnectError, Error};
use crate::holepunch::{PunchCommand, PunchSocket};
use crate::messages::NoisePayload;
use crate::node::{
    AnnounceResult, Config, Established, Event, FindPeerResult, ImmutablePutResult, ImmutableValue,
    Listening, LookupResult, MutablePutResult, MutableValue, Node, OpId, Outcome, Route,
};

/// Commands queued for the task before callers wait.
const COMMANDS: usize = 256;
/// Accepted connections queued per [`Server`] before new ones are dropped.
pub const ACCEPT_QUEUE: usize = 64;
/// Messages queued per [`Connection`] in each direction.
pub const MESSAGE_QUEUE: usize = 64;
/// Read buffer of a connection's pump.
const READ_CHUNK: usize = 64 * 1024;

/// Where to bind.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct BindOptions {
    /// The host both sockets bind to (JS `host`, default `0.0.0.0`).
    pub host: Ipv4Addr,
    /// The server socket's port; 0 picks any (JS defaults to 49737).
    pub port: u16,
}

impl Default for BindOptions {
    fn default() -> Self {
        Self {
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
        }
    }
}

impl BindOptions {
    /// Bind both sockets to `host`, the server socket on any port.
    pub fn host(host: Ipv4Addr) -> Self {
        Self { host, port: 0 }
    }

    /// Set [`BindOptions::port`].
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

/// A snapshot of the node's state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Info {
    /// dht-rpc persistent (stores records for others).
    pub persistent: bool,
    /// dht-rpc firewalled.
    pub firewalled: bool,
    /// Our public address if reachable on it (dht-rpc `remoteAddress()`).
    pub remote_address: Option<SocketAddrV4>,
    /// Nodes in the routing table.
    pub nodes: usize,
    /// HyperDHT counters.
    pub stats: crate::Stats,
    /// dht-rpc counters.
    pub dht_stats: peerhost_dht_rpc::Stats,
    /// Records, routes and values held for others.
    pub stored: usize,
}

/// Fallback relays a [`Dht`] keeps at most.
pub const MAX_RELAYS: usize = 64;

type Start = Box<dyn FnOnce(&mut Node, Instant) -> Result<OpId, Box<Outcome>> + Send>;

enum Waiter {
    Outcome(oneshot::Sender<Outcome>),
    Connect(oneshot::Sender<Result<Connection, ConnectError>>),
    Listen {
        reply: oneshot::Sender<Result<Server, Error>>,
        server: Option<Server>,
    },
}

enum Command {
    Op {
        start: Start,
        waiter: Waiter,
    },
    /// A lookup whose records are also sent to `records` as they arrive.
    Lookup {
        start: Start,
        waiter: Waiter,
        records: mpsc::Sender<LookupResult>,
    },
    Listen {
        key_pair: KeyPair,
        firewall: crate::FirewallFn,
        reply: oneshot::Sender<Result<Server, Error>>,
    },
    Unlisten([u8; 32]),
    Release(u32),
    Bootstrapped(oneshot::Sender<()>),
    Info(oneshot::Sender<Info>),
    RelayAddresses([u8; 32], oneshot::Sender<Vec<SocketAddrV4>>),
}

/// A handle on a running HyperDHT node. Clone it freely; the node stops when the last handle
/// is dropped.
#[derive(Clone, Debug)]
pub struct Dht {
    commands: mpsc::Sender<Command>,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    /// The server socket (a blind relay splices on it, see [`Dht::serve_relay`]).
    server_socket: Socket,
    /// Fallback relays ([`Config::relays`], then [`Dht::add_relays`]).
    relays: std::sync::Arc<std::sync::RwLock<Vec<[u8; 32]>>>,
    _guard: std::sync::Arc<Guard>,
}

/// Tells the task to stop when the last [`Dht`] handle is dropped.
#[derive(Debug, Default)]
struct Stop {
    flag: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

#[derive(Debug)]
struct Guard(std::sync::Arc<Stop>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0
            .flag
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.notify.notify_one();
    }
}

/// Connections accepted by a listening server. Dropping it stops listening.
#[derive(Debug)]
pub struct Server {
    public_key: [u8; 32],
    incoming: mpsc::Receiver<Connection>,
    commands: mpsc::Sender<Command>,
}

struct Shared {
    server: Socket,
    client: Socket,
    commands: mpsc::Sender<Command>,
    keep_alive: Duration,
    /// Holepunch birthday sockets by id, each with the task forwarding its datagrams.
    extra: std::sync::Mutex<HashMap<u32, (Socket, tokio::task::JoinHandle<()>)>>,
    /// Datagrams from birthday sockets, for the node task.
    punch_tx: mpsc::Sender<(u32, Vec<u8>, SocketAddr)>,
    /// Relayed connections' relay clients (and with them their relay connections), by local
    /// stream id; dropped on [`Command::Release`].
    relayed: std::sync::Mutex<HashMap<u32, peerhost_relay::driver::RelayClient>>,
    /// Server connections waiting for their client ([`Route::Await`]), by local stream id:
    /// streams on birthday sockets opened later are offered here.
    awaiting: std::sync::Mutex<HashMap<u32, mpsc::Sender<Stream>>>,
}

/// Datagrams from birthday sockets queued for the node before new ones are dropped.
const PUNCH_QUEUE: usize = 1024;

impl Shared {
    fn socket(&self, kind: SocketKind) -> &Socket {
        if kind == SocketKind::Server {
            &self.server
        } else {
            &self.client
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Dht {
    /// Bind dht-rpc's two sockets (each also carries UDX streams) and start the node on the
    /// current tokio runtime. If `config.local_addresses` is empty and `opts.host` is a
    /// specific address, that address is offered for the same-LAN shortcut. A
    /// `config.dht.nat_seed` with port 0 (a bootstrapper on an ephemeral port) gets the server
    /// socket's port.
    pub async fn bind(mut config: Config, opts: BindOptions) -> io::Result<Self> {
        let server = Socket::bind(SocketAddr::from((opts.host, opts.port))).await?;
        let client = Socket::bind(SocketAddr::from((opts.host, 0))).await?;
        if let Some(seed) = &mut config.dht.nat_seed {
            // A bootstrapper seeded with port 0 means "the port the server socket got".
            if seed.port() == 0 {
                seed.set_port(server.local_addr().port());
            }
        }
        if config.local_addresses.is_empty() && !opts.host.is_unspecified() {
            config.local_addresses = vec![opts.host];
        }
        let (tx, rx) = mpsc::channel(COMMANDS);
        let server_addr = server.local_addr();
        let client_addr = client.local_addr();
        let now = Instant::now();
        let keep_alive = config.connection_keep_alive;
        let relays = std::sync::Arc::new(std::sync::RwLock::new(config.relays.clone()));
        let server_socket = server.clone();
        let node = Node::new(config, server_addr.port(), now, unix_ms());
        let (punch_tx, punch_rx) = mpsc::channel(PUNCH_QUEUE);
        let shared = std::sync::Arc::new(Shared {
            server,
            client,
            commands: tx.clone(),
            keep_alive,
            extra: std::sync::Mutex::new(HashMap::new()),
            punch_tx,
            awaiting: std::sync::Mutex::new(HashMap::new()),
            relayed: std::sync::Mutex::new(HashMap::new()),
        });
        let stop = std::sync::Arc::new(Stop::default());
        tokio::spawn(run(node, shared, rx, punch_rx, stop.clone()));
        Ok(Self {
            commands: tx,
            server_addr,
            client_addr,
            server_socket,
            relays,
            _guard: std::sync::Arc::new(Guard(stop)),
        })
    }

    /// The server socket's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// The client socket's address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Resolves once the bootstrap walk is over.
    pub async fn bootstrapped(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Bootstrapped(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// A snapshot of the node's state; `None` once it stopped.
    pub async fn info(&self) -> Option<Info> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Info(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn op(&self, start: Start) -> Option<Outcome> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Op {
            start,
            waiter: Waiter::Outcome(tx),
        };
        self.commands.send(cmd).await.ok()?;
        rx.await.ok()
    }

    /// Records announced under `target` (JS `lookup`), one entry per answering node.
    pub async fn lookup(&self, target: [u8; 32]) -> Result<Vec<LookupResult>, Error> {
        let start: Start = Box::new(move |n, now| {
            n.lookup(now, target)
                .map_err(|e| Box::new(Outcome::Lookup(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::Lookup(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// [`Dht::lookup`], also sending each reply that holds records to `records` while the
    /// query runs (as hyperswarm dials on the first record, not at the query's end). A full
    /// `records` drops the reply there; the returned list still has it.
    pub async fn lookup_with(
        &self,
        target: [u8; 32],
        records: mpsc::Sender<LookupResult>,
    ) -> Result<Vec<LookupResult>, Error> {
        let start: Start = Box::new(move |n, now| {
            n.lookup(now, target)
                .map_err(|e| Box::new(Outcome::Lookup(Err(e))))
        });
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Lookup {
            start,
            waiter: Waiter::Outcome(tx),
            records,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| Error::Destroyed)?;
        match rx.await {
            Ok(Outcome::Lookup(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// Announce `key_pair` under `target` (JS `announce`).
    pub async fn announce(
        &self,
        target: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
        opts: AnnounceOptions,
    ) -> Result<AnnounceResult, Error> {
        let kp = key_pair.clone();
        let start: Start = Box::new(move |n, now| {
            n.announce(now, target, &kp, relay_addresses, opts)
                .map_err(|e| Box::new(Outcome::Announce(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::Announce(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// Remove `key_pair`'s record under `target` (JS `unannounce`).
    pub async fn unannounce(&self, target: [u8; 32], key_pair: &KeyPair) -> Result<(), Error> {
        let kp = key_pair.clone();
        let start: Start = Box::new(move |n, now| {
            n.unannounce(now, target, &kp)
                .map_err(|e| Box::new(Outcome::Unannounce(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::Unannounce(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// Nodes holding a route to `public_key` (JS `findPeer`).
    pub async fn find_peer(&self, public_key: [u8; 32]) -> Result<Vec<FindPeerResult>, Error> {
        let start: Start = Box::new(move |n, now| {
            n.find_peer(now, &public_key)
                .map_err(|e| Box::new(Outcome::FindPeer(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::FindPeer(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// Store a signed mutable value (JS `mutablePut`).
    pub async fn mutable_put(
        &self,
        key_pair: &KeyPair,
        value: Vec<u8>,
        seq: u64,
    ) -> Result<MutablePutResult, Error> {
        let kp = key_pair.clone();
        let start: Start = Box::new(move |n, now| {
            n.mutable_put(now, &kp, &value, seq)
                .map_err(|e| Box::new(Outcome::MutablePut(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::MutablePut(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// The latest verified mutable value of `public_key` with `seq` at least `min_seq`
    /// (JS `mutableGet`).
    pub async fn mutable_get(
        &self,
        public_key: [u8; 32],
        min_seq: u64,
    ) -> Result<Option<MutableValue>, Error> {
        let start: Start = Box::new(move |n, now| {
            n.mutable_get(now, &public_key, min_seq, true)
                .map_err(|e| Box::new(Outcome::MutableGet(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::MutableGet(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// Store `value` under its hash (JS `immutablePut`).
    pub async fn immutable_put(&self, value: Vec<u8>) -> Result<ImmutablePutResult, Error> {
        let start: Start = Box::new(move |n, now| {
            n.immutable_put(now, &value)
                .map_err(|e| Box::new(Outcome::ImmutablePut(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::ImmutablePut(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// The value whose hash is `target` (JS `immutableGet`).
    pub async fn immutable_get(&self, target: [u8; 32]) -> Result<Option<ImmutableValue>, Error> {
        let start: Start = Box::new(move |n, now| {
            n.immutable_get(now, target)
                .map_err(|e| Box::new(Outcome::ImmutableGet(Err(e))))
        });
        match self.op(start).await {
            Some(Outcome::ImmutableGet(r)) => r,
            _ => Err(Error::Destroyed),
        }
    }

    /// Listen for connections to `key_pair` (JS `createServer().listen(keyPair)`), accepting
    /// every client.
    pub async fn listen(&self, key_pair: &KeyPair) -> Result<Server, Error> {
        self.listen_with_firewall(key_pair, Box::new(|_, _, _| false))
            .await
    }

    /// Listen with a firewall callback: `(client key, client payload, client address) →
    /// reject?` (JS `createServer({ firewall })`). Resolves once the first announce is done.
    pub async fn listen_with_firewall(
        &self,
        key_pair: &KeyPair,
        firewall: crate::FirewallFn,
    ) -> Result<Server, Error> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Listen {
            key_pair: key_pair.clone(),
            firewall,
            reply: tx,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| Error::Destroyed)?;
        rx.await.unwrap_or(Err(Error::Destroyed))
    }

    /// Connect to the server listening on `remote_public_key`, as `key_pair` (JS
    /// `dht.connect(publicKey, { keyPair })`).
    pub async fn connect(
        &self,
        key_pair: &KeyPair,
        remote_public_key: [u8; 32],
    ) -> Result<Connection, ConnectError> {
        self.connect_with(key_pair, remote_public_key, ConnectOptions::default())
            .await
    }

    /// The blind relays a failed holepunch falls back to.
    pub fn relays(&self) -> Vec<[u8; 32]> {
        self.relays.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Add fallback relays (found on the DHT, say); keys already listed are skipped, and the
    /// list keeps at most [`MAX_RELAYS`] keys (the newest are dropped beyond it).
    pub fn add_relays(&self, keys: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut r) = self.relays.write() {
            for k in keys {
                if r.len() < MAX_RELAYS && !r.contains(&k) {
                    r.push(k);
                }
            }
        }
    }

    /// [`Dht::connect`] with options.
    ///
    /// When holepunching fails (`HOLEPUNCH_ABORTED`, `CANNOT_HOLEPUNCH`, as hyperswarm's
    /// `shouldForceRelaying`) and [`Config::relays`] names blind relays, the connect is retried
    /// once through one of them, picked at random (hyperswarm's forced `relayThrough`).
    pub async fn connect_with(
        &self,
        key_pair: &KeyPair,
        remote_public_key: [u8; 32],
        opts: ConnectOptions,
    ) -> Result<Connection, ConnectError> {
        let first = connect_once(&self.commands, key_pair, remote_public_key, opts.clone()).await;
        let relays = self.relays();
        let fallback = matches!(
            first,
            Err(ConnectError::HolepunchAborted | ConnectError::CannotHolepunch)
        ) && opts.relay_through.is_none()
            && !relays.is_empty();
        if !fallback {
            return first;
        }
        let pick = rand::Rng::gen_range(&mut rand::thread_rng(), 0..relays.len());
        let mut opts = opts;
        opts.relay_through = Some(relays[pick]);
        connect_once(&self.commands, key_pair, remote_public_key, opts).await
    }
}

/// One connect attempt through the node task.
async fn connect_once(
    commands: &mpsc::Sender<Command>,
    key_pair: &KeyPair,
    remote_public_key: [u8; 32],
    opts: ConnectOptions,
) -> Result<Connection, ConnectError> {
    {
        let (tx, rx) = oneshot::channel();
        let kp = key_pair.clone();
        let start: Start = Box::new(move |n, now| {
            n.connect(now, &kp, &remote_public_key, opts)
                .map_err(|e| Box::new(Outcome::Connect(Box::new(Err(e)))))
        });
        let cmd = Command::Op {
            start,
            waiter: Waiter::Connect(tx),
        };
        commands
            .send(cmd)
            .await
            .map_err(|_| ConnectError::Destroyed)?;
        rx.await.unwrap_or(Err(ConnectError::Destroyed))
    }
}

impl Server {
    /// The server's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The next accepted connection; `None` once the node stopped.
    pub async fn accept(&mut self) -> Option<Connection> {
        self.incoming.recv().await
    }

    /// The nodes holding our route (for [`Dht::announce`] on topics, as hyperswarm does).
    pub async fn relay_addresses(&self) -> Vec<SocketAddrV4> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::RelayAddresses(self.public_key, tx);
        if self.commands.send(cmd).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Unlisten(self.public_key));
    }
}

// ---------------------------------------------------------------------- the node task

struct Task {
    node: Node,
    shared: std::sync::Arc<Shared>,
    waiters: HashMap<OpId, Waiter>,
    /// Lookups started with [`Dht::lookup_with`]: where their records go as they arrive.
    records: HashMap<OpId, mpsc::Sender<LookupResult>>,
    accept: HashMap<[u8; 32], mpsc::Sender<Connection>>,
    bootstrapped: bool,
    on_bootstrap: Vec<oneshot::Sender<()>>,
}

async fn run(
    node: Node,
    shared: std::sync::Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    mut punches: mpsc::Receiver<(u32, Vec<u8>, SocketAddr)>,
    stop: std::sync::Arc<Stop>,
) {
    let mut t = Task {
        node,
        shared: shared.clone(),
        waiters: HashMap::new(),
        records: HashMap::new(),
        accept: HashMap::new(),
        bootstrapped: false,
        on_bootstrap: Vec::new(),
    };
    while !stop.flag.load(std::sync::atomic::Ordering::Acquire) {
        t.drain().await;
        let deadline = t
            .node
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        tokio::select! {
            () = stop.notify.notified() => {}
            cmd = commands.recv() => match cmd {
                Some(cmd) => t.command(cmd),
                None => break,
            },
            d = shared.server.recv_datagram() => match d {
                Some((data, from)) => t.node.handle_datagram(Instant::now(), SocketKind::Server, from, &data),
                None => break,
            },
            d = shared.client.recv_datagram() => match d {
                Some((data, from)) => t.node.handle_datagram(Instant::now(), SocketKind::Client, from, &data),
                None => break,
            },
            Some((id, data, from)) = punches.recv() => {
                t.node.handle_punch_datagram(Instant::now(), PunchSocket::Extra(id), from, &data);
            }
            () = tokio::time::sleep_until(deadline.into()) => t.node.handle_timeout(Instant::now()),
        }
    }
    for (_, w) in t.waiters.drain() {
        fail(w);
    }
}

fn fail(w: Waiter) {
    match w {
        Waiter::Outcome(_) => {}
        Waiter::Connect(tx) => {
            let _ = tx.send(Err(ConnectError::Destroyed));
        }
        Waiter::Listen { reply, .. } => {
            let _ = reply.send(Err(Error::Destroyed));
        }
    }
}

impl Task {
    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Op { start, waiter } => match start(&mut self.node, now) {
                Ok(id) => {
                    self.waiters.insert(id, waiter);
                }
                Err(outcome) => self.deliver(waiter, *outcome),
            },
            Command::Lookup {
                start,
                waiter,
                records,
            } => match start(&mut self.node, now) {
                Ok(id) => {
                    self.waiters.insert(id, waiter);
                    self.records.insert(id, records);
                }
                Err(outcome) => self.deliver(waiter, *outcome),
            },
            Command::Listen {
                key_pair,
                firewall,
                reply,
            } => {
                let public_key = key_pair.public_key();
                match self.node.listen(now, key_pair, firewall) {
                    Ok(id) => {
                        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
                        self.accept.insert(public_key, tx);
                        let server = Server {
                            public_key,
                            incoming: rx,
                            commands: self.shared.commands.clone(),
                        };
                        self.waiters.insert(
                            id,
                            Waiter::Listen {
                                reply,
                                server: Some(server),
                            },
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Unlisten(pk) => {
                self.accept.remove(&pk);
                self.node.unlisten(now, &pk);
            }
            Command::Release(id) => {
                self.node.release_stream_id(id);
                // A relayed connection ended: drop its relay connection.
                lock_relayed(&self.shared).remove(&id);
            }
            Command::Bootstrapped(tx) => {
                if self.bootstrapped || self.node.dht().is_bootstrapped() {
                    let _ = tx.send(());
                } else {
                    self.on_bootstrap.push(tx);
                }
            }
            Command::Info(tx) => {
                let d = self.node.dht();
                let _ = tx.send(Info {
                    persistent: self.node.is_persistent(),
                    firewalled: d.is_firewalled(),
                    remote_address: d.remote_address(),
                    nodes: d.table().len(),
                    stats: self.node.stats(),
                    dht_stats: d.stats(),
                    stored: self.node.stored(),
                });
            }
            Command::RelayAddresses(pk, tx) => {
                let _ = tx.send(self.node.relay_addresses(&pk));
            }
        }
    }

    fn deliver(&mut self, waiter: Waiter, outcome: Outcome) {
        match (waiter, outcome) {
            (Waiter::Outcome(tx), o) => {
                let _ = tx.send(o);
            }
            (Waiter::Connect(tx), Outcome::Connect(r)) => match *r {
                Ok(est) => {
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(establish(shared, est).await);
                    });
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
            (Waiter::Listen { reply, server }, Outcome::Listen(r)) => {
                let r = r.and_then(|_: Listening| server.ok_or(Error::Destroyed));
                let _ = reply.send(r);
            }
            (w, _) => fail(w),
        }
    }

    async fn drain(&mut self) {
        let now = Instant::now();
        while let Some(ev) = self.node.poll_event(now) {
            match ev {
                Event::Bootstrapped => {
                    self.bootstrapped = true;
                    for tx in self.on_bootstrap.drain(..) {
                        let _ = tx.send(());
                    }
                }
                Event::LookupRecords { id, result } => {
                    if let Some(tx) = self.records.get(&id) {
                        let _ = tx.try_send(result);
                    }
                }
                Event::Done { id, outcome } => {
                    self.records.remove(&id);
                    if let Some(w) = self.waiters.remove(&id) {
                        self.deliver(w, outcome);
                    } else if let Outcome::Connect(r) = outcome {
                        if let Ok(est) = *r {
                            self.node.release_stream_id(est.local_id);
                        }
                    }
                }
                Event::Incoming(inc) => {
                    let Some(tx) = self.accept.get(&inc.server).cloned() else {
                        self.node.release_stream_id(inc.established.local_id);
                        continue;
                    };
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        if let Ok(conn) = establish(shared, inc.established).await {
                            let _ = tx.try_send(conn);
                        }
                    });
                }
                _ => {}
            }
        }
        while let Some(t) = self.node.poll_transmit() {
            let socket = self.shared.socket(t.socket);
            let _ = socket
                .send_datagram(&t.contents, SocketAddr::V4(t.destination))
                .await;
        }
        while let Some(cmd) = self.node.poll_punch() {
            punch_command(&self.shared, cmd).await;
        }
    }
}

// ---------------------------------------------------------------------- holepunching

/// Carry out one [`PunchCommand`]: a punch, or opening / closing birthday sockets.
async fn punch_command(shared: &std::sync::Arc<Shared>, cmd: PunchCommand) {
    match cmd {
        PunchCommand::Send { socket, dest, ttl } => {
            let sock = match socket {
                PunchSocket::Dht(kind) => Some(shared.socket(kind).clone()),
                PunchSocket::Extra(id) => lock_extra(shared).get(&id).map(|(s, _)| s.clone()),
            };
            if let Some(sock) = sock {
                let _ = sock
                    .send_datagram_ttl(&crate::holepunch::puncher::PUNCH, SocketAddr::V4(dest), ttl)
                    .await;
            }
        }
        PunchCommand::Open { ids, stream } => {
            let waiting = stream.and_then(|(local, _)| {
                let awaiting = shared.awaiting.lock().unwrap_or_else(|e| e.into_inner());
                awaiting.get(&local).cloned()
            });
            for id in ids {
                let Ok(sock) = Socket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await
                else {
                    continue;
                };
                if let (Some(tx), Some((local, remote_id))) = (&waiting, stream) {
                    let config = UdxConfig::default().firewall(Firewall::Connect { remote_id });
                    if let Ok(s) = sock.create_stream(local, config) {
                        let _ = tx.try_send(s);
                    }
                }
                let tx = shared.punch_tx.clone();
                let reader = sock.clone();
                let task = tokio::spawn(async move {
                    while let Some((data, from)) = reader.recv_datagram().await {
                        // Bounded: drop when the node is behind, as UDP would.
                        if tx.try_send((id, data, from)).is_err() && tx.is_closed() {
                            break;
                        }
                    }
                });
                lock_extra(shared).insert(id, (sock, task));
            }
        }
        PunchCommand::Close { ids } => {
            let mut extra = lock_extra(shared);
            for id in ids {
                if let Some((_, task)) = extra.remove(&id) {
                    task.abort();
                }
            }
        }
    }
}

/// A connection as blind-relay's message queues: a task forwards what it receives until the
/// relay client stops listening (then the connection is dropped and ends).
fn relay_messages(mut conn: Connection) -> peerhost_relay::driver::Messages {
    let tx = conn.sender();
    let (in_tx, rx) = mpsc::channel(peerhost_relay::driver::QUEUE);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = conn.recv() => match m {
                    Some(m) => {
                        if in_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                () = in_tx.closed() => break,
            }
        }
    });
    peerhost_relay::driver::Messages { tx, rx }
}

fn lock_relayed(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, HashMap<u32, peerhost_relay::driver::RelayClient>> {
    shared.relayed.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_awaiting(shared: &Shared) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::Sender<Stream>>> {
    shared.awaiting.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_extra(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, HashMap<u32, (Socket, tokio::task::JoinHandle<()>)>> {
    shared.extra.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------- connections

/// Open the UDX stream of an established handshake and start secret-stream on it.
async fn establish(
    shared: std::sync::Arc<Shared>,
    est: Established,
) -> Result<Connection, ConnectError> {
    let local_id = est.local_id;
    let result = open_stream(&shared, &est).await;
    match result {
        Ok((stream, remote)) => Ok(Connection::start(shared, stream, est, remote)),
        Err(e) => {
            let _ = shared.commands.try_send(Command::Release(local_id));
            Err(e)
        }
    }
}

async fn open_stream(
    shared: &Shared,
    est: &Established,
) -> Result<(Stream, SocketAddr), ConnectError> {
    let io = |e: io::Error| ConnectError::Stream(e.to_string());
    match &est.route {
        Route::Punched { socket, addr } => {
            // The birthday socket the punch came through now belongs to this stream (its
            // driver lives as long as the stream); stop forwarding its datagrams.
            let Some((sock, task)) = lock_extra(shared).remove(socket) else {
                return Err(ConnectError::HolepunchAborted);
            };
            task.abort();
            let stream = sock
                .create_stream(est.local_id, UdxConfig::default())
                .map_err(io)?;
            stream
                .connect(est.remote_id, SocketAddr::V4(*addr))
                .map_err(io)?;
            Ok((stream, SocketAddr::V4(*addr)))
        }
        Route::Connect { socket, addr } => {
            let stream = shared
                .socket(*socket)
                .create_stream(est.local_id, UdxConfig::default())
                .map_err(io)?;
            stream
                .connect(est.remote_id, SocketAddr::V4(*addr))
                .map_err(io)?;
            Ok((stream, SocketAddr::V4(*addr)))
        }
        Route::Relay {
            relay,
            token,
            is_initiator,
            socket,
        } => {
            // > relayConnection: a normal connection to the relay, blind-relay's pair on it,
            // > then our stream connects to the relay stream at the relay's address.
            let relay_key_pair = KeyPair::generate();
            let relay_conn = connect_once(
                &shared.commands,
                &relay_key_pair,
                *relay,
                ConnectOptions::default(),
            )
            .await?;
            let relay_addr = relay_conn.remote_address();
            // The relay names the channel by our key on that connection (JS
            // `Client.from(relaySocket, { id: relaySocket.publicKey })`).
            let local_key = relay_key_pair.public_key();
            let msgs = relay_messages(relay_conn);
            let client = peerhost_relay::driver::RelayClient::start(msgs, Some(local_key));
            let relay_id = client
                .pair(
                    *is_initiator,
                    *token,
                    est.local_id,
                    peerhost_relay::PAIRING_TIMEOUT,
                )
                .await
                .map_err(|_| ConnectError::HolepunchAborted)?;
            lock_relayed(shared).insert(est.local_id, client);
            let stream = shared
                .socket(*socket)
                .create_stream(est.local_id, UdxConfig::default())
                .map_err(io)?;
            stream.connect(relay_id, relay_addr).map_err(io)?;
            Ok((stream, relay_addr))
        }
        Route::Await { sockets, timeout } => {
            let config = UdxConfig::default().firewall(Firewall::Connect {
                remote_id: est.remote_id,
            });
            let mut streams = Vec::new();
            for s in sockets {
                streams.push(
                    shared
                        .socket(*s)
                        .create_stream(est.local_id, config)
                        .map_err(io)?,
                );
            }
            // Holepunching may open birthday sockets later; their streams arrive here.
            let (tx, mut more) = mpsc::channel(crate::holepunch::puncher::BIRTHDAY_SOCKETS);
            lock_awaiting(shared).insert(est.local_id, tx);
            let deadline = tokio::time::Instant::now() + *timeout;
            enum Next {
                Connected(io::Result<SocketAddr>, usize),
                More(Option<Stream>),
                Timeout,
            }
            let result = loop {
                let next = {
                    let futs: Vec<_> = streams.iter().map(|s| Box::pin(s.connected())).collect();
                    tokio::select! {
                        (r, i, ()) = futures_select_all(futs) => Next::Connected(r, i),
                        s = more.recv() => Next::More(s),
                        () = tokio::time::sleep_until(deadline) => Next::Timeout,
                    }
                };
                match next {
                    Next::Connected(Ok(addr), i) => break Ok((streams.swap_remove(i), addr)),
                    Next::Connected(Err(e), _) => break Err(io(e)),
                    Next::More(Some(s)) => streams.push(s),
                    Next::More(None) => {}
                    Next::Timeout => break Err(ConnectError::HolepunchAborted),
                }
            };
            lock_awaiting(shared).remove(&est.local_id);
            result
        }
    }
}

/// Resolve the first of several futures (a tiny `select_all`, to avoid a futures dependency).
async fn futures_select_all<F, T>(mut futs: Vec<std::pin::Pin<Box<F>>>) -> (T, usize, ())
where
    F: Future<Output = T>,
{
    std::future::poll_fn(move |cx| {
        for (i, f) in futs.iter_mut().enumerate() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready((v, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// An encrypted connection to a peer: secret-stream over a UDX stream, message by message.
///
/// A task pumps bytes between the UDX stream and the [`SecretStream`]; [`Connection::send`]
/// and [`Connection::recv`] talk to it through bounded queues (so a slow reader slows the
/// sender down through UDX's window). Dropping the connection ends it gracefully (pending
/// messages are flushed, then UDX END).
#[derive(Debug)]
pub struct Connection {
    remote_public_key: [u8; 32],
    handshake_hash: [u8; 64],
    is_initiator: bool,
    remote_address: SocketAddr,
    remote_payload: NoisePayload,
    outgoing: mpsc::Sender<Vec<u8>>,
    incoming: mpsc::Receiver<Vec<u8>>,
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Connection {
    fn start(
        shared: std::sync::Arc<Shared>,
        stream: Stream,
        est: Established,
        remote_address: SocketAddr,
    ) -> Self {
        let (out_tx, out_rx) = mpsc::channel(MESSAGE_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(MESSAGE_QUEUE);
        let error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let config = StreamConfig::default().with_keep_alive(shared.keep_alive);
        let ss = SecretStream::from_handshake(&est.handshake, config, Instant::now());
        let conn = Self {
            remote_public_key: est.remote_public_key,
            handshake_hash: *est.handshake.hash(),
            is_initiator: est.handshake.is_initiator(),
            remote_address,
            remote_payload: est.payload.clone(),
            outgoing: out_tx,
            incoming: in_rx,
            error: error.clone(),
        };
        let local_id = est.local_id;
        tokio::spawn(async move {
            let r = pump(ss, stream, out_rx, in_tx).await;
            if let Err(e) = r {
                if let Ok(mut slot) = error.lock() {
                    *slot = Some(e);
                }
            }
            let _ = shared.commands.try_send(Command::Release(local_id));
        });
        conn
    }

    /// The peer's static public key (authenticated by the Noise handshake).
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.remote_public_key
    }

    /// The Noise handshake hash (equal on both ends).
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.handshake_hash
    }

    /// Whether we dialled.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.remote_address
    }

    /// The peer's Noise payload (addresses, UDX id, firewall…).
    pub fn remote_payload(&self) -> &NoisePayload {
        &self.remote_payload
    }

    /// Queue one message (at most [`peerhost_noise::MAX_MESSAGE_LEN`] bytes); waits while the
    /// queue is full. Fails once the connection is closed.
    pub async fn send(&self, message: Vec<u8>) -> io::Result<()> {
        self.outgoing
            .send(message)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, self.failure()))
    }

    /// The sending queue itself, for a task that sends while it waits in
    /// [`Connection::recv`] (`reserve` a slot, then produce the message, so nothing is made
    /// that cannot be queued). Our side of the stream ends once the connection and every
    /// such handle are dropped.
    pub fn sender(&self) -> mpsc::Sender<Vec<u8>> {
        self.outgoing.clone()
    }

    /// The next message; `None` once the peer ended the stream or it failed (see
    /// [`Connection::error`]). Keep-alives are not reported.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.incoming.recv().await
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    fn failure(&self) -> String {
        self.error().unwrap_or_else(|| "connection closed".into())
    }
}

/// The connection task: bytes from UDX into the secret stream, messages from the application
/// into it, ciphertext out to UDX, decrypted messages up to the application.
async fn pump(
    mut ss: SecretStream,
    stream: Stream,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    incoming: mpsc::Sender<Vec<u8>>,
) -> Result<(), String> {
    // Dropped once the peer ended its side and everything before was delivered: the
    // application's `recv` then returns `None` (JS `'end'`), while it may still send.
    let mut incoming = Some(incoming);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut writes: VecDeque<Vec<u8>> = VecDeque::new();
    let mut offset = 0usize;
    let mut delivered: VecDeque<Vec<u8>> = VecDeque::new();
    let mut app_done = false;
    let mut read_done = false;
    let mut shut = false;
    loop {
        while let Some(t) = ss.poll_transmit() {
            writes.push_back(t);
        }
        while let Some(ev) = ss.poll_event() {
            match ev {
                StreamEvent::Message(m) => delivered.push_back(m),
                StreamEvent::End => read_done = true,
                _ => {}
            }
        }
        if let Some(e) = ss.error() {
            return Err(e.to_string());
        }
        if app_done && writes.is_empty() && !shut {
            shut = true;
            let _ = wr.shutdown().await;
        }
        if read_done && delivered.is_empty() {
            incoming = None;
        }
        let app_gone = incoming.as_ref().is_none_or(mpsc::Sender::is_closed);
        if shut && (app_gone || read_done) && delivered.is_empty() {
            return Ok(());
        }
        let deadline = ss.poll_timeout();
        let front = writes.front().map(|w| &w[offset..]);
        tokio::select! {
            n = rd.read(&mut buf), if delivered.is_empty() && !read_done => {
                let now = Instant::now();
                match n {
                    Ok(0) => {
                        read_done = true;
                        ss.handle_eof().map_err(|e| e.to_string())?;
                    }
                    Ok(n) => ss.handle_input(now, &buf[..n]).map_err(|e| e.to_string())?,
                    Err(e) => return Err(e.to_string()),
                }
            }
            permit = async { incoming.as_ref()?.reserve().await.ok() }, if !delivered.is_empty() => {
                match permit {
                    Some(p) => {
                        if let Some(m) = delivered.pop_front() {
                            p.send(m);
                        }
                    }
                    // The application dropped its receiver: nobody reads any more.
                    None => delivered.clear(),
                }
            }
            w = async { wr.write(front.unwrap_or_default()).await }, if front.is_some() => match w {
                Ok(n) => {
                    offset += n;
                    if writes.front().is_some_and(|f| offset >= f.len()) {
                        writes.pop_front();
                        offset = 0;
                    }
                }
                Err(e) => return Err(e.to_string()),
            },
            m = outgoing.recv(), if !app_done && writes.len() < 8 => match m {
                Some(m) => {
                    if let Err(e) = ss.send(Instant::now(), &m) {
                        return Err(e.to_string());
                    }
                }
                None => app_done = true,
            },
            () = sleep_opt(deadline) => {
                ss.handle_timeout(Instant::now()).map_err(|e| e.to_string())?;
            }
        }
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
