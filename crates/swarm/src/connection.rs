//! A swarm connection: a HyperDHT [`Connection`](peerhost_hyperdht::driver::Connection)
//! (secret-stream messages over UDX) behind a small forwarding task the swarm owns.
//!
//! - The application holds a [`Connection`]: messages in ([`Connection::recv`]) and out
//!   ([`Connection::send`], or a [`Connection::sender`] clone from another task), each through
//!   a bounded queue of [`MESSAGE_QUEUE`] messages.
//! - The forwarding task owns the HyperDHT connection. It moves messages both ways
//!   independently (a full queue one way never stops the other), counts them (the duplicate
//!   rule asks whether a connection carried traffic both ways), and reports to the swarm when
//!   it ends. The swarm ends it by aborting the task: the HyperDHT connection is dropped,
//!   which flushes what it had queued and ends the UDX stream; the application's `recv` then
//!   returns `None` and `send` fails.
//! - It ends by itself once the peer ended (or the stream failed) and everything read was
//!   handed over, and the application dropped its [`Connection`] and every sender; or as soon
//!   as the application dropped them, whatever the peer does.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use peerhost_hyperdht::driver::Connection as DhtConnection;
use peerhost_hyperdht::messages::NoisePayload;
use tokio::sync::{mpsc, oneshot};

/// Messages queued per connection in each direction between the application and the
/// forwarding task (the HyperDHT connection queues 64 more each way).
pub const MESSAGE_QUEUE: usize = 16;

/// Traffic counters of one connection (JS `rawBytesRead` / `rawBytesWritten`, in messages).
#[derive(Debug, Default)]
pub(crate) struct Link {
    read: AtomicU64,
    written: AtomicU64,
}

impl Link {
    /// JS `existingIsOutdated`: traffic both ways. We count application messages: JS counts
    /// raw bytes, which include the secret-stream header each side sends at once; a message
    /// from the peer also proves the peer's swarm kept this connection.
    pub(crate) fn outdated(&self) -> bool {
        self.read.load(Ordering::Relaxed) > 0 && self.written.load(Ordering::Relaxed) > 0
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    remote_public_key: [u8; 32],
    handshake_hash: [u8; 64],
    is_initiator: bool,
    remote_address: SocketAddr,
    remote_payload: NoisePayload,
    error: Mutex<Option<String>>,
}

impl Shared {
    /// Record why the connection ended, unless a reason is already known.
    pub(crate) fn set_error(&self, reason: &str) {
        if let Ok(mut e) = self.error.lock() {
            if e.is_none() {
                *e = Some(reason.to_owned());
            }
        }
    }
}

/// An encrypted, authenticated connection to a peer, as the swarm hands it out: whole
/// secret-stream messages both ways.
///
/// Dropping it (and every [`Connection::sender`]) ends the connection. When the swarm ends it
/// (a duplicate, a ban, `destroy`), [`Connection::recv`] returns `None` and sends fail.
#[derive(Debug)]
pub struct Connection {
    incoming: mpsc::Receiver<Vec<u8>>,
    outgoing: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

impl Connection {
    /// The peer's static public key (authenticated by the Noise handshake).
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.shared.remote_public_key
    }

    /// The Noise handshake hash (equal on both ends; hypercore's capabilities use it).
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.shared.handshake_hash
    }

    /// Whether we dialled (the Noise initiator).
    pub fn is_initiator(&self) -> bool {
        self.shared.is_initiator
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.shared.remote_address
    }

    /// The peer's Noise payload (its addresses, firewall kind, UDX stream).
    pub fn remote_payload(&self) -> &NoisePayload {
        &self.shared.remote_payload
    }

    /// Queue one message (at most `peerhost_noise::MAX_MESSAGE_LEN`, 2^24 − 18 bytes); waits
    /// while the queue is full. Fails once the connection ended.
    pub async fn send(&self, message: Vec<u8>) -> io::Result<()> {
        self.outgoing
            .send(message)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, self.failure()))
    }

    /// The sending queue, for a task that sends while another waits in
    /// [`Connection::recv`] (`reserve` a slot first, then produce the message). The
    /// connection ends once it and every such sender are dropped.
    pub fn sender(&self) -> mpsc::Sender<Vec<u8>> {
        self.outgoing.clone()
    }

    /// The next message; `None` once the peer ended the stream, it failed, or the swarm
    /// closed it (see [`Connection::error`]). Keep-alives are not reported.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.incoming.recv().await
    }

    /// Why the connection ended, if it failed or the swarm closed it.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }

    fn failure(&self) -> String {
        self.error().unwrap_or_else(|| "connection closed".into())
    }
}

/// Wrap `inner`: the application's [`Connection`], its counters and shared state, and the
/// forwarding task to spawn, which ends when `kill` fires or its sender is dropped.
pub(crate) fn wrap(
    inner: DhtConnection,
    kill: oneshot::Receiver<()>,
) -> (
    Connection,
    Arc<Link>,
    Arc<Shared>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (to_app, incoming) = mpsc::channel(MESSAGE_QUEUE);
    let (outgoing, from_app) = mpsc::channel(MESSAGE_QUEUE);
    let shared = Arc::new(Shared {
        remote_public_key: inner.remote_public_key(),
        handshake_hash: inner.handshake_hash(),
        is_initiator: inner.is_initiator(),
        remote_address: inner.remote_address(),
        remote_payload: inner.remote_payload().clone(),
        error: Mutex::new(None),
    });
    let link = Arc::new(Link::default());
    let conn = Connection {
        incoming,
        outgoing,
        shared: shared.clone(),
    };
    let task = forward(inner, kill, to_app, from_app, link.clone(), shared.clone());
    (conn, link, shared, task)
}

/// The forwarding task (see the module docs).
async fn forward(
    mut inner: DhtConnection,
    mut kill: oneshot::Receiver<()>,
    to_app: mpsc::Sender<Vec<u8>>,
    mut from_app: mpsc::Receiver<Vec<u8>>,
    link: Arc<Link>,
    shared: Arc<Shared>,
) {
    let to_peer = inner.sender();
    let mut to_app = Some(to_app);
    // Read from the peer, waiting for room towards the application.
    let mut inbound: Option<Vec<u8>> = None;
    // From the application, waiting for room towards the peer.
    let mut outbound: Option<Vec<u8>> = None;
    let mut peer_done = false;
    let mut app_done = false;
    let mut reader_gone = false;
    loop {
        if peer_done && inbound.is_none() {
            // Everything read was handed over: the application's `recv` returns `None`.
            to_app = None;
        }
        let app_gone = to_app.as_ref().is_none_or(mpsc::Sender::is_closed);
        if app_gone {
            inbound = None;
        }
        if app_done && outbound.is_none() && (app_gone || peer_done) {
            break;
        }
        tokio::select! {
            biased;
            // The swarm ends it (or is gone).
            _ = &mut kill => break,
            m = inner.recv(), if inbound.is_none() && !peer_done => match m {
                Some(m) => {
                    link.read.fetch_add(1, Ordering::Relaxed);
                    if !app_gone {
                        inbound = Some(m);
                    }
                }
                None => peer_done = true,
            },
            permit = async { to_app.as_ref()?.reserve().await.ok() }, if inbound.is_some() => {
                match (permit, inbound.take()) {
                    (Some(p), Some(m)) => p.send(m),
                    // The application dropped its receiver: nobody reads any more.
                    _ => reader_gone = true,
                }
            },
            m = from_app.recv(), if outbound.is_none() && !app_done => match m {
                Some(m) => outbound = Some(m),
                None => app_done = true,
            },
            permit = to_peer.reserve(), if outbound.is_some() => match (permit, outbound.take()) {
                (Ok(p), Some(m)) => {
                    p.send(m);
                    link.written.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    // The stream is gone: refuse further sends, let reads drain.
                    from_app.close();
                    app_done = true;
                }
            },
            else => break,
        }
        if reader_gone {
            to_app = None;
        }
    }
    if let Some(e) = inner.error() {
        shared.set_error(&e);
    }
}
