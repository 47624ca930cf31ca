//! The peerhost node: the tokio driver that runs secret streams, protomux and hypercore
//! replication over each connection — a TCP stream or a HyperDHT (UDX) connection the swarm
//! opened — all sharing one [`Replicator`].
//!
//! Ownership and message flow:
//! - a [`Node`] owns one [`Replicator`] (every log it replicates, every connection's protomux
//!   and channel state) behind a mutex that is never held across an `await`, nor across the
//!   file writes of downloaded data: the replicator hands those out as commits, which
//!   [`Node::with`] runs with the mutex released;
//! - each connection is one task, the connection driver (`connection.rs`), owning its
//!   transport: a TCP stream ([`Node::run_connection`]: the secret stream's handshake first) or
//!   the UDX stream of a connection the swarm handed over ([`Node::run_swarm_connection`]: the
//!   handshake already done inside HyperDHT's PEER_HANDSHAKE). It runs the secret stream over
//!   the transport itself, hands each message to the replicator, and pulls frames from the
//!   replicator only while its write buffer is below a high-water mark — so a peer that does
//!   not read gets nothing more produced for it, and a peer whose requests pile up is no
//!   longer read;
//! - when a call on the replicator (from any task) queues frames for a connection, that
//!   connection's task is woken through its [`Notify`];
//! - one timer task fires the replicator's request timeouts;
//! - replicator events are published on a bounded broadcast channel ([`Node::subscribe`]),
//!   counted per log ([`Node::log_stats`]), and every change pings [`Node::changed`];
//! - every write of every connection takes tokens from one bucket when an upload limit is set
//!   ([`Config::upload_limit`]); a download budget ([`Node::set_download_budget`]) stops all
//!   downloads the moment it is spent (the disk quota).
//!
//! This crate owns no protocol logic: that is `peerhost-noise`, `peerhost-protomux`,
//! `peerhost-replication` and `peerhost-hyperdht`. It does not own discovery (`peerhost-swarm`
//! finds peers and hands their connections over), the application that decides what to
//! replicate (`peerhost-daemon`: roles, communities, files, quota, status, HTTP, control
//! socket), the CLI (`cli/`) or the on-disk format of logs (`peerhost-store`).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod connection;
mod error;
mod limit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use peerhost_ids::{DiscoveryKey, KeyPair};
use peerhost_replication::{ConnId, Event, Replicator};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

pub use error::ConnectionError;
pub use peerhost_replication as replication;

/// Settings of a [`Node`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The replicator's limits.
    pub replication: peerhost_replication::Config,
    /// Send a keep-alive when nothing was sent for this long (hypercore sets 5 s).
    pub keep_alive: Duration,
    /// End a connection when nothing was received for this long (`None`: never). With the
    /// remote's keep-alives this detects dead peers.
    pub timeout: Option<Duration>,
    /// The largest secret-stream frame accepted (at most and by default 2^24 - 1 bytes, the
    /// protocol's limit; one frame is buffered at most per connection).
    pub max_frame_len: usize,
    /// Bytes per second all connections together may send (`None`: no limit).
    pub upload_limit: Option<u64>,
    /// Inbound TCP connections ([`Node::listen_tcp`]) at once; more are closed at accept.
    pub max_inbound: usize,
    /// Inbound TCP connections at once from one IPv4 address or IPv6 /64.
    pub max_inbound_per_ip: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            replication: peerhost_replication::Config::default(),
            keep_alive: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(30)),
            max_frame_len: peerhost_noise::MAX_FRAME_LEN,
            upload_limit: None,
            max_inbound: 512,
            max_inbound_per_ip: 16,
        }
    }
}

impl Config {
    /// Set [`Config::max_frame_len`].
    pub fn with_max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max;
        self
    }

    /// Set [`Config::timeout`].
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set [`Config::replication`].
    pub fn with_replication(mut self, replication: peerhost_replication::Config) -> Self {
        self.replication = replication;
        self
    }

    /// Set [`Config::max_inbound`] and [`Config::max_inbound_per_ip`].
    pub fn with_inbound_limits(mut self, total: usize, per_ip: usize) -> Self {
        self.max_inbound = total;
        self.max_inbound_per_ip = per_ip;
        self
    }

    /// Set [`Config::upload_limit`].
    pub fn with_upload_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.upload_limit = bytes_per_second;
        self
    }
}

/// Blocks and bytes moved for one log since the node started (block payloads, not proofs or
/// framing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Blocks we sent in answer to requests.
    pub uploaded_blocks: u64,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Verified blocks we stored.
    pub downloaded_blocks: u64,
    /// Their bytes.
    pub downloaded_bytes: u64,
}

/// A connection of the node, as [`Node::peers`] reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The replicator's id of the connection.
    pub conn: ConnId,
    /// The remote's static public key (its Noise identity).
    pub remote_public_key: [u8; 32],
    /// The remote's address or name, for people.
    pub label: String,
    /// `tcp` or `dht`.
    pub transport: &'static str,
    /// Whether we dialled.
    pub is_initiator: bool,
    /// When the secret stream was established.
    pub since: SystemTime,
    /// Bytes received on the transport (secret-stream frames: ciphertext).
    pub bytes_in: u64,
    /// Bytes sent, counted the same way.
    pub bytes_out: u64,
}

/// Byte counters of one connection, shared by its task and the registry.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

struct ConnEntry {
    notify: Arc<Notify>,
    counters: Arc<Counters>,
    remote_public_key: [u8; 32],
    label: String,
    transport: &'static str,
    is_initiator: bool,
    since: SystemTime,
}

/// What a [`Node`] may still store (see [`Node::set_download_budget`]).
#[derive(Debug, Default)]
struct Budget {
    remaining: Option<u64>,
    exhausted: bool,
}

/// Bytes charged per downloaded block on top of its value: the tree nodes stored with it
/// (one 64-byte record for the leaf, about one for its parents) — an estimate, so that a log
/// of tiny blocks cannot overshoot a quota by much.
const BLOCK_OVERHEAD: u64 = 128;

struct Inner {
    replicator: Replicator,
    conns: HashMap<ConnId, ConnEntry>,
    stats: HashMap<DiscoveryKey, LogStats>,
    budget: Budget,
}

struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    changed: Notify,
    closed: watch::Sender<bool>,
    upload: Option<limit::Bucket>,
    key_pair: KeyPair,
    config: Config,
}

/// A replication node: a [`Replicator`] shared by connection tasks. Cheap to clone.
///
/// Needs a tokio runtime with the `net`, `time` and `io-util` drivers; create it inside one
/// ([`Node::new`] starts the timer task).
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("public_key", &hex(&self.shared.key_pair.public_key()))
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Capacity of the event broadcast channel; slow subscribers miss the oldest events.
const EVENTS: usize = 4096;

impl Node {
    /// A node with this static key pair (the Noise identity of every connection).
    pub fn new(key_pair: KeyPair, config: Config) -> Self {
        let (events, _) = broadcast::channel(EVENTS);
        let (closed, _) = watch::channel(false);
        let upload = config
            .upload_limit
            .map(|rate| limit::Bucket::new(rate, Instant::now()));
        let node = Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    replicator: Replicator::new(config.replication.clone()),
                    conns: HashMap::new(),
                    stats: HashMap::new(),
                    budget: Budget::default(),
                }),
                events,
                changed: Notify::new(),
                closed,
                upload,
                key_pair,
                config,
            }),
        };
        let weak = Arc::downgrade(&node.shared);
        tokio::spawn(async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let node = Self { shared };
                let now = Instant::now();
                let next = node.with(|r| {
                    r.handle_timeout(now);
                    r.poll_timeout()
                });
                drop(node);
                let cap = now + Duration::from_millis(500);
                let at = next.map_or(cap, |d| d.min(cap));
                tokio::time::sleep_until(at.into()).await;
            }
        });
        node
    }

    /// Our static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.shared.key_pair.public_key()
    }

    /// Our static key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.shared.key_pair
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the state is still usable for reads.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Read the replicator without waiting: `None` when another thread holds it (a commit in
    /// progress, a connection's frames). For callers on the async runtime that must not block,
    /// such as the gateway asking a log's head version. `f` cannot change anything, so there
    /// are no commits or events to run afterwards.
    pub fn try_peek<R>(&self, f: impl FnOnce(&Replicator) -> R) -> Option<R> {
        let inner = match self.shared.inner.try_lock() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(f(&inner.replicator))
    }

    /// Run `f` on the replicator, then run the commits it asks for (without the lock), wake
    /// the connections it queued frames for, count and publish its events. Never call it from
    /// inside `f`.
    pub fn with<R>(&self, f: impl FnOnce(&mut Replicator) -> R) -> R {
        let mut inner = self.lock();
        let out = f(&mut inner.replicator);
        inner = self.commit(inner);
        let mut any = false;
        let mut exhausted = false;
        while let Some(e) = inner.replicator.poll_event() {
            any = true;
            match &e {
                Event::Downloaded {
                    discovery_key,
                    bytes,
                    ..
                } => {
                    let s = inner.stats.entry(*discovery_key).or_default();
                    s.downloaded_blocks += 1;
                    s.downloaded_bytes += bytes;
                    let b = &mut inner.budget;
                    if let Some(left) = &mut b.remaining {
                        *left = left.saturating_sub(bytes + BLOCK_OVERHEAD);
                        if *left == 0 && !b.exhausted {
                            b.exhausted = true;
                            exhausted = true;
                        }
                    }
                }
                Event::Uploaded {
                    discovery_key,
                    bytes,
                    ..
                } => {
                    let s = inner.stats.entry(*discovery_key).or_default();
                    s.uploaded_blocks += 1;
                    s.uploaded_bytes += bytes;
                }
                _ => {}
            }
            let _ = self.shared.events.send(e);
        }
        if exhausted {
            // The quota is spent: stop every download now, before another block is stored.
            let now = Instant::now();
            let keys: Vec<DiscoveryKey> = inner.replicator.discovery_keys().copied().collect();
            for k in keys {
                inner.replicator.stop_download(&k, now);
            }
            tracing::debug!("download budget spent: every download stopped");
            while let Some(e) = inner.replicator.poll_event() {
                let _ = self.shared.events.send(e);
            }
        }
        let woken = inner.replicator.take_woken();
        for id in woken {
            if let Some(c) = inner.conns.get(&id) {
                c.notify.notify_one();
            }
        }
        drop(inner);
        if any {
            self.shared.changed.notify_waiters();
        }
        out
    }

    /// Make the replicator's verified data durable: each commit's file writes (and fsyncs)
    /// run with the lock released, so other connections and the daemon go on meanwhile; the
    /// replicator takes them back under the lock, which may begin the next commits.
    fn commit<'a>(&'a self, mut inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        loop {
            let commits: Vec<_> = std::iter::from_fn(|| inner.replicator.poll_commit()).collect();
            if commits.is_empty() {
                return inner;
            }
            drop(inner);
            for c in &commits {
                c.run();
            }
            inner = self.lock();
            let now = Instant::now();
            for c in commits {
                inner.replicator.handle_committed(c, now);
            }
        }
    }

    /// Replicator events from now on (bounded: a subscriber that falls more than 4096 events
    /// behind misses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Resolves at the next batch of replicator events. Create the future before checking the
    /// state you wait for, then await it (see [`Notify::notified`]).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.changed.notified()
    }

    /// Blocks and bytes moved per log since the node started (exact: counted as the
    /// replicator reports them, not from the lossy broadcast).
    pub fn log_stats(&self) -> HashMap<DiscoveryKey, LogStats> {
        self.lock().stats.clone()
    }

    /// The connections whose secret stream is established, oldest first.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let inner = self.lock();
        let mut out: Vec<PeerInfo> = inner
            .conns
            .iter()
            .map(|(id, c)| PeerInfo {
                conn: *id,
                remote_public_key: c.remote_public_key,
                label: c.label.clone(),
                transport: c.transport,
                is_initiator: c.is_initiator,
                since: c.since,
                bytes_in: c.counters.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.counters.bytes_out.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|p| p.conn);
        out
    }

    /// Whether a connection to the peer with this public key is established.
    pub fn is_connected(&self, remote_public_key: &[u8; 32]) -> bool {
        self.lock()
            .conns
            .values()
            .any(|c| c.remote_public_key == *remote_public_key)
    }

    /// Let downloads store at most `bytes` more (block values plus an estimate of their tree
    /// nodes); `None` lifts the limit. The block that spends the budget is the last one: at
    /// that moment every wanted range of every log is dropped and the requests in flight are
    /// cancelled ([`Replicator::stop_download`]), so nothing more is stored until a new budget
    /// is set and downloads are asked for again. Serving goes on.
    pub fn set_download_budget(&self, bytes: Option<u64>) {
        let mut inner = self.lock();
        inner.budget = Budget {
            remaining: bytes,
            exhausted: bytes == Some(0),
        };
    }

    /// Whether the download budget is spent (see [`Node::set_download_budget`]).
    pub fn download_budget_exhausted(&self) -> bool {
        self.lock().budget.exhausted
    }

    /// End every connection (each flushes what it has and closes its transport) and refuse
    /// new ones. Resolves at once; the connection tasks end shortly after.
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
    }

    /// Whether [`Node::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Drive one connection over `stream` until it ends. `label` names the peer in logs.
    pub async fn run_connection<S>(
        &self,
        stream: S,
        is_initiator: bool,
        label: String,
    ) -> Result<(), ConnectionError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let now = Instant::now();
        let secret = peerhost_noise::SecretStream::new(
            is_initiator,
            self.key_pair().clone(),
            self.noise(),
            now,
        );
        let setup = connection::Setup {
            label: label.clone(),
            transport: "tcp",
            control: None,
        };
        let result = connection::run(self.clone(), stream, secret, setup).await;
        log_end(&label, &result);
        result
    }

    /// Drive one connection the swarm opened until it ends: the secret stream (its handshake
    /// done inside HyperDHT's PEER_HANDSHAKE) over its UDX stream, in this task.
    pub async fn run_swarm_connection(
        &self,
        conn: peerhost_swarm::Connection,
        label: String,
    ) -> Result<(), ConnectionError> {
        let (raw, control) = conn.into_parts();
        let (secret, transport) = raw.into_parts(self.noise(), Instant::now());
        let setup = connection::Setup {
            label: label.clone(),
            transport: "dht",
            control: Some(control),
        };
        let result = connection::run(self.clone(), transport, secret, setup).await;
        log_end(&label, &result);
        result
    }

    /// The secret stream's settings for every connection.
    fn noise(&self) -> peerhost_noise::Config {
        let config = &self.shared.config;
        let mut noise = peerhost_noise::Config::default()
            .with_keep_alive(config.keep_alive)
            .with_max_frame_len(config.max_frame_len);
        if let Some(t) = config.timeout {
            noise = noise.with_timeout(t);
        }
        noise
    }

    /// Connect to `addr` over TCP and replicate with it (we initiate the secret stream) in a
    /// new task.
    pub fn connect_tcp(&self, addr: SocketAddr) -> JoinHandle<Result<(), ConnectionError>> {
        let node = self.clone();
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            node.run_connection(stream, true, addr.to_string()).await
        })
    }

    /// Accept TCP connections on `listener` and replicate on each until the node closes.
    ///
    /// The listener outlives any accept error: running out of file descriptors (`EMFILE`,
    /// `ENFILE`), buffers or memory, or a connection reset before it was accepted, is logged
    /// (once per [`ACCEPT_ERROR_LOG_EVERY`], with the count) and retried after a pause that
    /// doubles from 10 ms to 1 s while errors go on. At most [`Config::max_inbound`] inbound
    /// connections run at once, and [`Config::max_inbound_per_ip`] from one IPv4 address (or
    /// IPv6 /64); a connection over either cap is closed at once.
    pub async fn listen_tcp(&self, listener: TcpListener) -> std::io::Result<()> {
        let mut closed = self.shared.closed.subscribe();
        let caps = Arc::new(Mutex::new(InboundCaps::new(
            self.shared.config.max_inbound,
            self.shared.config.max_inbound_per_ip,
        )));
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut errors = AcceptErrors::default();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stopped(&mut closed) => return Ok(()),
            };
            let (stream, addr) = match accepted {
                Ok(a) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    a
                }
                Err(e) => {
                    errors.note(&e, Instant::now());
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stopped(&mut closed) => return Ok(()),
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let Some(slot) = InboundCaps::admit(&caps, addr.ip()) else {
                tracing::debug!(peer = %addr, "inbound connection over the cap: closed");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            tracing::info!(peer = %addr, "accepted connection");
            let node = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let _ = node.run_connection(stream, false, addr.to_string()).await;
            });
        }
    }

    pub(crate) fn register(&self, id: ConnId, entry: Registration) {
        self.lock().conns.insert(
            id,
            ConnEntry {
                notify: entry.notify,
                counters: entry.counters,
                remote_public_key: entry.remote_public_key,
                label: entry.label,
                transport: entry.transport,
                is_initiator: entry.is_initiator,
                since: SystemTime::now(),
            },
        );
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        self.lock().conns.remove(&id);
        let now = Instant::now();
        self.with(|r| r.remove_connection(id, now));
    }

    pub(crate) fn upload(&self) -> Option<&limit::Bucket> {
        self.shared.upload.as_ref()
    }

    pub(crate) fn closed(&self) -> watch::Receiver<bool> {
        self.shared.closed.subscribe()
    }
}

/// What a connection task tells the node about itself once its secret stream is up.
pub(crate) struct Registration {
    pub(crate) notify: Arc<Notify>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) remote_public_key: [u8; 32],
    pub(crate) label: String,
    pub(crate) transport: &'static str,
    pub(crate) is_initiator: bool,
}

/// The first pause after an accept error; it doubles while errors go on.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause after accept errors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept errors are logged at most this often (with how many there were).
pub const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accept errors since the last log line.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error, now: Instant) {
        self.unlogged += 1;
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < ACCEPT_ERROR_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            errors = self.unlogged,
            "TCP listener: cannot accept a connection ({e}); still listening, retrying{}",
            if e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) {
                " (out of file descriptors: raise `ulimit -n` or lower the connection caps)"
            } else {
                ""
            }
        );
        self.last_log = Some(now);
        self.unlogged = 0;
    }
}

/// How many inbound connections run, in all and per client (an IPv4 address, an IPv6 /64).
#[derive(Debug)]
struct InboundCaps {
    total: usize,
    max_total: usize,
    max_per_ip: usize,
    per_ip: HashMap<std::net::IpAddr, usize>,
}

/// One admitted connection; frees its place when dropped.
#[derive(Debug)]
struct InboundSlot {
    caps: Arc<Mutex<InboundCaps>>,
    client: std::net::IpAddr,
}

impl InboundCaps {
    fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            total: 0,
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            per_ip: HashMap::new(),
        }
    }

    fn client(ip: std::net::IpAddr) -> std::net::IpAddr {
        use std::net::{IpAddr, Ipv6Addr};
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        }
    }

    fn admit(caps: &Arc<Mutex<Self>>, ip: std::net::IpAddr) -> Option<InboundSlot> {
        let client = Self::client(ip);
        let mut c = caps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = c.per_ip.get(&client).copied().unwrap_or(0);
        if c.total >= c.max_total || n >= c.max_per_ip {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(client, n + 1);
        Some(InboundSlot {
            caps: caps.clone(),
            client,
        })
    }
}

impl Drop for InboundSlot {
    fn drop(&mut self) {
        let mut c = self
            .caps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.client);
            }
        }
    }
}

/// Resolves once the flag behind `rx` is true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn log_end(label: &str, result: &Result<(), ConnectionError>) {
    match result {
        Ok(()) => tracing::info!(peer = %label, "connection closed"),
        Err(ConnectionError::Swarm(reason)) => {
            tracing::info!(peer = %label, "connection closed: {reason}")
        }
        Err(e) => {
            tracing::warn!(peer = %label, code = e.code().unwrap_or(""), "connection ended: {e}")
        }
    }
}

#[cfg(test)]
mod inbound_tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_client() {
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        let caps = Arc::new(Mutex::new(InboundCaps::new(4, 2)));
        let a1 = InboundCaps::admit(&caps, ip("10.0.0.1")).unwrap();
        let _a2 = InboundCaps::admit(&caps, ip("::ffff:10.0.0.1")).unwrap();
        assert!(
            InboundCaps::admit(&caps, ip("10.0.0.1")).is_none(),
            "per client"
        );
        let _b = InboundCaps::admit(&caps, ip("2001:db8::1")).unwrap();
        let _c = InboundCaps::admit(&caps, ip("2001:db8::2")).unwrap();
        assert!(
            InboundCaps::admit(&caps, ip("2001:db8::3")).is_none(),
            "one /64 is one client"
        );
        assert!(
            InboundCaps::admit(&caps, ip("10.9.9.9")).is_none(),
            "in all"
        );
        drop(a1);
        assert!(
            InboundCaps::admit(&caps, ip("10.9.9.9")).is_some(),
            "a place freed"
        );
    }
}
