//! A swarm connection: a HyperDHT [`RawConnection`] (the UDX stream and the finished Noise
//! handshake) with the swarm's hold on it ([`Control`]).
//!
//! - The application runs the connection: secret-stream over the stream, in a task of its own
//!   ([`Connection::into_parts`], what `peerhost-node` does: one task per connection, no queue
//!   in between), or through this crate's message queues ([`Connection::into_messages`]).
//! - The swarm keeps a hold on each connection it handed out: [`Control::read`] and
//!   [`Control::written`] count messages each way (the duplicate rule asks whether a connection
//!   carried traffic both ways), [`Control::ended`] resolves when the swarm ends it (a
//!   duplicate, a ban, `destroy`), and dropping the [`Control`] tells the swarm the connection
//!   closed (its peer is then retried per the schedule).
//! - [`Messages`]: whole secret-stream messages both ways through bounded queues of
//!   [`MESSAGE_QUEUE`] messages, for applications that want them (and the tests); two tasks
//!   run it (HyperDHT's secret-stream pump and a forwarding task that counts and obeys the
//!   swarm).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use peerhost_hyperdht::driver::{Connection as DhtConnection, RawConnection};
use peerhost_hyperdht::messages::NoisePayload;
use tokio::sync::{mpsc, oneshot};

/// Messages queued per connection in each direction between the application and the
/// forwarding task of [`Messages`] (the HyperDHT connection queues 64 more each way).
pub const MESSAGE_QUEUE: usize = 16;

/// Why the swarm ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer was banned (by the application or the firewall callback).
    #[error("the peer was banned")]
    Banned,
    /// Another connection to the same peer is kept (hyperswarm's duplicate rule).
    #[error("duplicate connection: another connection to this peer is kept")]
    Duplicate,
    /// The swarm was destroyed.
    #[error("the swarm was destroyed")]
    Destroyed,
    /// The application stopped taking connections ([`crate::Connections`] dropped).
    #[error("the application no longer takes connections")]
    NotTaken,
    /// Too many connections were waiting for the application to take them.
    #[error("too many connections waiting for the application")]
    Backlog,
}

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

/// Why the swarm ended a connection, shared between the swarm and the connection's holder.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    reason: Mutex<Option<CloseReason>>,
}

impl Shared {
    /// Record why the connection ended, unless a reason is already known.
    pub(crate) fn set_reason(&self, reason: CloseReason) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
    }

    fn reason(&self) -> Option<CloseReason> {
        self.reason.lock().ok().and_then(|r| *r)
    }
}

/// The swarm's hold on a connection it handed out (see the module docs). Keep it as long as
/// the connection runs; drop it when the connection ended.
#[derive(Debug)]
pub struct Control {
    link: Arc<Link>,
    shared: Arc<Shared>,
    kill: Option<oneshot::Receiver<()>>,
    /// Dropped with the control: the swarm hears the connection closed.
    _closed: oneshot::Sender<()>,
}

impl Control {
    /// Count `n` messages received from the peer.
    pub fn read(&self, n: u64) {
        self.link.read.fetch_add(n, Ordering::Relaxed);
    }

    /// Count `n` messages sent to the peer.
    pub fn written(&self, n: u64) {
        self.link.written.fetch_add(n, Ordering::Relaxed);
    }

    /// Resolves when the swarm ends the connection (or stops), with why; end it then. Once
    /// resolved, it resolves at once again.
    pub async fn ended(&mut self) -> CloseReason {
        if let Some(kill) = &mut self.kill {
            // Sent, or the swarm's actor is gone: either way the connection is to end.
            let _ = kill.await;
            self.kill = None;
        }
        self.shared.reason().unwrap_or(CloseReason::Destroyed)
    }

    /// Why the swarm ended the connection, if it did.
    pub fn reason(&self) -> Option<CloseReason> {
        self.shared.reason()
    }
}

/// Make the pieces of a connection handed out: the control the application gets, and what
/// the swarm keeps (the kill switch, the counters, the reason) plus the receiver that tells
/// it the connection closed.
pub(crate) fn control() -> (
    Control,
    oneshot::Sender<()>,
    Arc<Link>,
    Arc<Shared>,
    oneshot::Receiver<()>,
) {
    let (kill_tx, kill_rx) = oneshot::channel();
    let (closed_tx, closed_rx) = oneshot::channel();
    let link = Arc::new(Link::default());
    let shared = Arc::new(Shared::default());
    let control = Control {
        link: link.clone(),
        shared: shared.clone(),
        kill: Some(kill_rx),
        _closed: closed_tx,
    };
    (control, kill_tx, link, shared, closed_rx)
}

/// An encrypted, authenticated connection to a peer as the swarm hands it out: the stream
/// and its finished handshake, with the swarm's [`Control`]. Nothing runs on it yet: take it
/// apart ([`Connection::into_parts`]) or let this crate exchange messages
/// ([`Connection::into_messages`]). Dropping it ends the connection.
#[derive(Debug)]
pub struct Connection {
    raw: RawConnection,
    control: Control,
}

impl Connection {
    pub(crate) fn new(raw: RawConnection, control: Control) -> Self {
        Self { raw, control }
    }

    /// The peer's static public key (authenticated by the Noise handshake).
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.raw.remote_public_key()
    }

    /// The Noise handshake hash (equal on both ends; hypercore's capabilities use it).
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.raw.handshake_hash()
    }

    /// Whether we dialled (the Noise initiator).
    pub fn is_initiator(&self) -> bool {
        self.raw.is_initiator()
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.raw.remote_address()
    }

    /// The peer's Noise payload (its addresses, firewall kind, UDX stream).
    pub fn remote_payload(&self) -> &NoisePayload {
        self.raw.remote_payload()
    }

    /// The connection and the swarm's hold on it, for an application that runs secret-stream
    /// itself: count messages on the [`Control`], end the connection when
    /// [`Control::ended`] resolves, drop the control when it ended.
    pub fn into_parts(self) -> (RawConnection, Control) {
        (self.raw, self.control)
    }

    /// Exchange whole messages through bounded queues (two tasks run it; see the module docs).
    pub fn into_messages(self) -> Messages {
        let (to_app, incoming) = mpsc::channel(MESSAGE_QUEUE);
        let (outgoing, from_app) = mpsc::channel(MESSAGE_QUEUE);
        let shared = self.control.shared.clone();
        let meta = Meta {
            remote_public_key: self.raw.remote_public_key(),
            handshake_hash: self.raw.handshake_hash(),
            is_initiator: self.raw.is_initiator(),
            remote_address: self.raw.remote_address(),
            remote_payload: self.raw.remote_payload().clone(),
        };
        let error = Arc::new(Mutex::new(None));
        let inner = self.raw.into_connection();
        tokio::spawn(forward(
            inner,
            self.control,
            to_app,
            from_app,
            error.clone(),
        ));
        Messages {
            incoming,
            outgoing,
            meta,
            shared,
            error,
        }
    }
}

#[derive(Debug)]
struct Meta {
    remote_public_key: [u8; 32],
    handshake_hash: [u8; 64],
    is_initiator: bool,
    remote_address: SocketAddr,
    remote_payload: NoisePayload,
}

/// A swarm connection as whole secret-stream messages both ways
/// ([`Connection::into_messages`]).
///
/// Dropping it (and every [`Messages::sender`]) ends the connection. When the swarm ends it
/// (a duplicate, a ban, `destroy`), [`Messages::recv`] returns `None` and sends fail.
#[derive(Debug)]
pub struct Messages {
    incoming: mpsc::Receiver<Vec<u8>>,
    outgoing: mpsc::Sender<Vec<u8>>,
    meta: Meta,
    shared: Arc<Shared>,
    /// Why the HyperDHT connection failed, if it did.
    error: Arc<Mutex<Option<String>>>,
}

impl Messages {
    /// The peer's static public key (authenticated by the Noise handshake).
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.meta.remote_public_key
    }

    /// The Noise handshake hash (equal on both ends).
    pub fn handshake_hash(&self) -> [u8; 64] {
        self.meta.handshake_hash
    }

    /// Whether we dialled (the Noise initiator).
    pub fn is_initiator(&self) -> bool {
        self.meta.is_initiator
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.meta.remote_address
    }

    /// The peer's Noise payload.
    pub fn remote_payload(&self) -> &NoisePayload {
        &self.meta.remote_payload
    }

    /// Queue one message (at most `peerhost_noise::MAX_MESSAGE_LEN`, 2^24 − 18 bytes); waits
    /// while the queue is full. Fails once the connection ended.
    pub async fn send(&self, message: Vec<u8>) -> io::Result<()> {
        self.outgoing
            .send(message)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, self.failure()))
    }

    /// The sending queue, for a task that sends while another waits in [`Messages::recv`]
    /// (`reserve` a slot first, then produce the message). The connection ends once it and
    /// every such sender are dropped.
    pub fn sender(&self) -> mpsc::Sender<Vec<u8>> {
        self.outgoing.clone()
    }

    /// The next message; `None` once the peer ended the stream, it failed, or the swarm
    /// closed it (see [`Messages::error`]). Keep-alives are not reported.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.incoming.recv().await
    }

    /// Why the connection ended, if it failed or the swarm closed it.
    pub fn error(&self) -> Option<String> {
        self.shared
            .reason()
            .map(|r| r.to_string())
            .or_else(|| self.error.lock().ok().and_then(|e| e.clone()))
    }

    fn failure(&self) -> String {
        self.error().unwrap_or_else(|| "connection closed".into())
    }
}

/// The forwarding task of [`Messages`]: moves messages both ways independently (a full queue
/// one way never stops the other), counts them on the control, and ends when the swarm says
/// so (dropping the HyperDHT connection, which flushes what it had queued and ends the UDX
/// stream). It ends by itself once the peer ended (or the stream failed) and everything read
/// was handed over, and the application dropped its [`Messages`] and every sender; or as soon
/// as the application dropped them, whatever the peer does.
async fn forward(
    mut inner: DhtConnection,
    mut control: Control,
    to_app: mpsc::Sender<Vec<u8>>,
    mut from_app: mpsc::Receiver<Vec<u8>>,
    error: Arc<Mutex<Option<String>>>,
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
            _ = control.ended() => break,
            m = inner.recv(), if inbound.is_none() && !peer_done => match m {
                Some(m) => {
                    control.read(1);
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
                    control.written(1);
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
    if let (Some(e), Ok(mut slot)) = (inner.error(), error.lock()) {
        *slot = Some(e);
    }
}
