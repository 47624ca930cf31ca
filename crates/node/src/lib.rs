//! The peerhost node's drivers: tokio tasks that run secret streams, protomux and hypercore
//! replication over byte streams.
//!
//! Ownership and message flow:
//! - a [`Node`] owns one [`Replicator`] (every log it replicates, every connection's protomux
//!   and channel state) behind a mutex that is never held across an `await`;
//! - each connection is one task ([`Node::run_connection`]) owning its transport (any
//!   `AsyncRead + AsyncWrite`: TCP now, UDX later) and its [`peerhost_noise::SecretStream`]. It reads bytes,
//!   decrypts them, hands each message to the replicator, and pulls frames from the replicator
//!   only while its write buffer is below a high-water mark — so a peer that does not read
//!   gets nothing more produced for it, and a peer whose requests pile up is no longer read;
//! - when a call on the replicator (from any task) queues frames for a connection, that
//!   connection's task is woken through its [`Notify`];
//! - one timer task fires the replicator's request timeouts;
//! - replicator events are published on a bounded broadcast channel ([`Node::subscribe`]) and
//!   every change pings [`Node::changed`].
//!
//! This crate owns no protocol logic: that is `peerhost-noise`, `peerhost-protomux` and
//! `peerhost-replication`. It does not own the CLI (`cli/`) or the store (`peerhost-store`).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod connection;
mod error;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use peerhost_ids::KeyPair;
use peerhost_replication::{ConnId, Event, Replicator};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            replication: peerhost_replication::Config::default(),
            keep_alive: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(30)),
            max_frame_len: peerhost_noise::MAX_FRAME_LEN,
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
}

struct Inner {
    replicator: Replicator,
    wakers: HashMap<ConnId, Arc<Notify>>,
}

struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    changed: Notify,
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
        let node = Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    replicator: Replicator::new(config.replication.clone()),
                    wakers: HashMap::new(),
                }),
                events,
                changed: Notify::new(),
                key_pair,
                config,
            }),
        };
        let weak = Arc::downgrade(&node.shared);
        tokio::spawn(async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let node = Self { shared };
                let now = std::time::Instant::now();
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the state is still usable for reads.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run `f` on the replicator, then wake the connections it queued frames for and publish
    /// its events. Never call it from inside `f`.
    pub fn with<R>(&self, f: impl FnOnce(&mut Replicator) -> R) -> R {
        let mut inner = self.lock();
        let out = f(&mut inner.replicator);
        let woken = inner.replicator.take_woken();
        for id in woken {
            if let Some(n) = inner.wakers.get(&id) {
                n.notify_one();
            }
        }
        let mut any = false;
        while let Some(e) = inner.replicator.poll_event() {
            any = true;
            let _ = self.shared.events.send(e);
        }
        drop(inner);
        if any {
            self.shared.changed.notify_waiters();
        }
        out
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
        let result = connection::run(self.clone(), stream, is_initiator, &label).await;
        match &result {
            Ok(()) => tracing::info!(peer = %label, "connection closed"),
            Err(e) => {
                tracing::warn!(peer = %label, code = e.code().unwrap_or(""), "connection ended: {e}")
            }
        }
        result
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

    /// Accept TCP connections forever, replicating with each in its own task (the remote
    /// initiates the secret stream).
    pub async fn listen_tcp(&self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, addr) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tracing::info!(peer = %addr, "accepted connection");
            let node = self.clone();
            tokio::spawn(async move {
                let _ = node.run_connection(stream, false, addr.to_string()).await;
            });
        }
    }

    pub(crate) fn register(&self, id: ConnId, notify: Arc<Notify>) {
        self.lock().wakers.insert(id, notify);
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        self.lock().wakers.remove(&id);
        let now = std::time::Instant::now();
        self.with(|r| r.remove_connection(id, now));
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.shared.key_pair
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }
}
