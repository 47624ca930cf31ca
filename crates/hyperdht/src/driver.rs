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
//!   (The task is `driver/task.rs`.)
//! - Each new connection's stream is opened in its own task ([`Route::Connect`]: connect the
//!   stream now; [`Route::Await`]: a stream on each socket waits for the peer's first packet;
//!   [`Route::Relay`]: pair through a blind relay), then handed over as a [`RawConnection`]
//!   (the stream and the finished handshake): the caller runs secret-stream over it in its own
//!   task (`peerhost-node`), or [`RawConnection::into_connection`] runs this crate's pump (one
//!   task, bounded message queues both ways). `driver/connection.rs`.
//! - A [`Server`] (from [`Dht::listen`]) yields accepted connections from a bounded queue;
//!   when it is full, new connections are dropped (the client sees its stream fail).
//!
//! The task stops when every [`Dht`] handle is dropped; operations still waiting then fail
//! with [`Error::Destroyed`] / [`ConnectError::Destroyed`].

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peerhost_dht_rpc::SocketKind;
use peerhost_ids::KeyPair;
use peerhost_udx::driver::{Socket, Stream};
use tokio::sync::{mpsc, oneshot};

mod connection;
mod relay;
mod task;

pub use connection::{Connection, RawConnection, Transport};
pub use relay::RelayService;

use crate::client::{AnnounceOptions, ConnectOptions};
use crate::error::{ConnectError, Error};
#[cfg(doc)]
use crate::node::Route;
use crate::node::{
    AnnounceResult, Config, FindPeerResult, ImmutablePutResult, ImmutableValue, LookupResult,
    MutablePutResult, MutableValue, Node, OpId, Outcome,
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
    Connect(oneshot::Sender<Result<RawConnection, ConnectError>>),
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
    incoming: mpsc::Receiver<RawConnection>,
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
    /// Streams of our connects still running, by local stream id, one per DHT socket: they
    /// keep what a server sends before our handshake completed (see `task.rs`).
    early: std::sync::Mutex<HashMap<u32, Vec<(SocketKind, Stream)>>>,
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
            early: std::sync::Mutex::new(HashMap::new()),
        });
        let stop = std::sync::Arc::new(Stop::default());
        tokio::spawn(task::run(node, shared, rx, punch_rx, stop.clone()));
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
        self.connect_raw(key_pair, remote_public_key, opts)
            .await
            .map(RawConnection::into_connection)
    }

    /// [`Dht::connect_with`], handing the connection over before anything runs on it (the
    /// caller runs secret-stream: [`RawConnection::into_parts`]).
    pub async fn connect_raw(
        &self,
        key_pair: &KeyPair,
        remote_public_key: [u8; 32],
        opts: ConnectOptions,
    ) -> Result<RawConnection, ConnectError> {
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
) -> Result<RawConnection, ConnectError> {
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

    /// The next accepted connection, with this crate's secret-stream pump running on it;
    /// `None` once the node stopped.
    pub async fn accept(&mut self) -> Option<Connection> {
        self.incoming
            .recv()
            .await
            .map(RawConnection::into_connection)
    }

    /// The next accepted connection, handed over before anything runs on it (see
    /// [`RawConnection`]); `None` once the node stopped.
    pub async fn accept_raw(&mut self) -> Option<RawConnection> {
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

fn lock_relayed(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, HashMap<u32, peerhost_relay::driver::RelayClient>> {
    shared.relayed.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_awaiting(shared: &Shared) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::Sender<Stream>>> {
    shared.awaiting.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_early(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, HashMap<u32, Vec<(SocketKind, Stream)>>> {
    shared.early.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_extra(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, HashMap<u32, (Socket, tokio::task::JoinHandle<()>)>> {
    shared.extra.lock().unwrap_or_else(|e| e.into_inner())
}
