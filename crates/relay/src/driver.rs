//! The tokio driver: relay sessions and relay clients over any connection that carries whole
//! messages, with relay streams spliced on a [`peerhost_udx::driver::Socket`].
//!
//! - A connection is a [`Messages`] pair of bounded channels (for a hyperdht connection: its
//!   `sender()` and a task forwarding its `recv()`, as `peerhost-hyperdht`'s driver does).
//! - [`RelayServer`] owns the sans-IO [`Server`] behind a mutex (never held across an
//!   `.await`) and the UDX socket the relayed packets arrive on — the socket that carries the
//!   peers' connections to the relay, since peers send relayed packets to the address their
//!   relay connection talks to. Each accepted connection is one task: read → feed the core →
//!   handle its events (splice on the socket, confirm; unsplice) → write the session's output;
//!   a [`Notify`] per session wakes the task when another session's input produced output for
//!   it (the second side of a pairing answers both).
//!   A sweeper task ends, every second, the splices past their bounds (idle, lifetime, bytes:
//!   [`peerhost_udx::relay::SpliceLimits`]) and frees their pairings in the core.
//! - [`RelayClient`] is one task per relay connection; [`RelayClient::pair`] waits (with a
//!   timeout) for the relay's answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use peerhost_udx::driver::Socket;
pub use peerhost_udx::relay::SpliceLimits;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::{Client, Event as ClientEvent};
use crate::error::{Error, PairError};
use crate::server::{Config, Event, Server, SessionId, Stats};

/// Messages queued each way on a [`Messages`] made by [`Messages::channel`].
pub const QUEUE: usize = 64;

/// How often the sweeper ends splices past their bounds.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A connection as two bounded message queues: what we send, what we received.
#[derive(Debug)]
pub struct Messages {
    /// Messages to send on the connection.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Messages received from it; `None` once it ended.
    pub rx: mpsc::Receiver<Vec<u8>>,
}

impl Messages {
    /// Two connected ends (in-memory), for tests and for bridging other transports.
    pub fn channel() -> (Self, Self) {
        let (a_tx, b_rx) = mpsc::channel(QUEUE);
        let (b_tx, a_rx) = mpsc::channel(QUEUE);
        (Self { tx: a_tx, rx: a_rx }, Self { tx: b_tx, rx: b_rx })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct ServerShared {
    core: Mutex<Server>,
    socket: Socket,
    wakers: Mutex<HashMap<SessionId, Arc<Notify>>>,
}

/// A blind-relay server. Clone it freely.
#[derive(Debug, Clone)]
pub struct RelayServer {
    shared: Arc<ServerShared>,
}

impl RelayServer {
    /// A relay splicing streams on `socket` (the socket the peers' relay connections use),
    /// each splice within the default [`SpliceLimits`]. Must be called within a tokio runtime
    /// (it starts the sweeper task, which ends with the last clone).
    pub fn new(socket: Socket, config: Config) -> Self {
        Self::with_limits(socket, config, SpliceLimits::default())
    }

    /// [`RelayServer::new`] with these bounds on every splice.
    pub fn with_limits(socket: Socket, config: Config, limits: SpliceLimits) -> Self {
        socket.set_relay_limits(limits);
        let shared = Arc::new(ServerShared {
            core: Mutex::new(Server::new(config)),
            socket,
            wakers: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let ended = shared.socket.relay_expire();
                if ended.is_empty() {
                    continue;
                }
                {
                    let mut core = lock(&shared.core);
                    for id in ended {
                        core.end_splice(id);
                    }
                }
                handle_events(&shared);
            }
        });
        Self { shared }
    }

    /// The UDX socket relayed packets go through.
    pub fn socket(&self) -> &Socket {
        &self.shared.socket
    }

    /// Counters of the pairing core.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.core).stats()
    }

    /// Serve one peer's connection: open the `blind-relay` channel with `id` (hyperdht relays
    /// pass the peer's public key) and handle its requests until it closes. The task ends the
    /// session's pairings when the connection ends; its result says why it ended. The
    /// session's address is unknown here (relay streams learn their peers from their first
    /// packets); a relay whose sessions arrive on its UDX socket uses
    /// [`RelayServer::accept_from`].
    pub fn accept(&self, conn: Messages, id: Option<[u8; 32]>) -> JoinHandle<Result<(), Error>> {
        let sid = lock(&self.shared.core).accept(id.as_ref().map(|k| &k[..]));
        self.run_session(sid, conn)
    }

    /// [`RelayServer::accept`] for a connection from `remote`: the session counts against its
    /// client's bounds (`None`, and the connection should be dropped, when that client has too
    /// many sessions), and its relay streams only ever talk to `remote`, the address that
    /// completed the handshake with the relay and asked to be paired.
    pub fn accept_from(
        &self,
        conn: Messages,
        id: Option<[u8; 32]>,
        remote: SocketAddr,
    ) -> Option<JoinHandle<Result<(), Error>>> {
        let sid = lock(&self.shared.core).accept_from(id.as_ref().map(|k| &k[..]), remote)?;
        Some(self.run_session(sid, conn))
    }

    fn run_session(&self, sid: SessionId, conn: Messages) -> JoinHandle<Result<(), Error>> {
        let shared = self.shared.clone();
        let notify = Arc::new(Notify::new());
        lock(&shared.wakers).insert(sid, notify.clone());
        tokio::spawn(async move {
            let r = session(&shared, sid, conn, &notify).await;
            lock(&shared.core).close(sid);
            handle_events(&shared);
            lock(&shared.wakers).remove(&sid);
            r
        })
    }
}

async fn session(
    shared: &ServerShared,
    sid: SessionId,
    mut conn: Messages,
    notify: &Notify,
) -> Result<(), Error> {
    loop {
        let out: Vec<Vec<u8>> = {
            let mut core = lock(&shared.core);
            std::iter::from_fn(|| core.poll_transmit(sid)).collect()
        };
        for m in out {
            conn.tx.send(m).await.map_err(|_| Error::Closed)?;
        }
        handle_events(shared);
        if lock(&shared.core).is_closed(sid) {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = notify.notified() => {}
            m = conn.rx.recv() => match m {
                Some(m) => lock(&shared.core).handle_input(sid, &m)?,
                None => return Ok(()),
            },
        }
    }
}

fn handle_events(shared: &ServerShared) {
    loop {
        let Some(ev) = lock(&shared.core).poll_event() else {
            return;
        };
        match ev {
            Event::Matched {
                token,
                initiator,
                responder,
            } => {
                // Each relay stream pinned to its session's address (when known).
                match shared.socket.relay_splice_pinned(
                    (initiator.remote_id, initiator.addr),
                    (responder.remote_id, responder.addr),
                ) {
                    Ok((a, b)) => {
                        if !lock(&shared.core).confirm(token, a, b) {
                            shared.socket.relay_unsplice(a);
                        }
                    }
                    Err(_) => lock(&shared.core).cancel(token),
                }
                let wakers = lock(&shared.wakers);
                for s in [initiator.session, responder.session] {
                    if let Some(n) = wakers.get(&s) {
                        n.notify_one();
                    }
                }
            }
            Event::Unspliced { relay_ids, .. } => {
                shared.socket.relay_unsplice(relay_ids[0]);
            }
            Event::SessionClosed(sid) => {
                if let Some(n) = lock(&shared.wakers).get(&sid) {
                    n.notify_one();
                }
            }
        }
    }
}

type Waiters = HashMap<[u8; 32], oneshot::Sender<Result<u32, PairError>>>;

#[derive(Debug)]
struct ClientShared {
    core: Mutex<Client>,
    waiters: Mutex<Waiters>,
    notify: Notify,
    stopped: std::sync::atomic::AtomicBool,
}

/// Stops the client task when the last [`RelayClient`] handle is dropped.
#[derive(Debug)]
struct ClientGuard(Arc<ClientShared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.notify.notify_one();
    }
}

/// Our side of a connection to a blind relay. Clone it freely; the task (and with it our
/// side of the connection) ends when the connection does or the last handle is dropped.
#[derive(Debug, Clone)]
pub struct RelayClient {
    shared: Arc<ClientShared>,
    _guard: Arc<ClientGuard>,
}

impl RelayClient {
    /// Open the `blind-relay` channel with `id` (hyperdht: our public key) on `conn`.
    pub fn start(conn: Messages, id: Option<[u8; 32]>) -> Self {
        let shared = Arc::new(ClientShared {
            core: Mutex::new(Client::new(id.as_ref().map(|k| &k[..]))),
            waiters: Mutex::new(HashMap::new()),
            notify: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let task = shared.clone();
        tokio::spawn(async move {
            client_task(&task, conn).await;
            lock(&task.core).handle_stream_closed();
            client_events(&task);
            for (_, w) in lock(&task.waiters).drain() {
                let _ = w.send(Err(PairError::Closed));
            }
        });
        Self {
            _guard: Arc::new(ClientGuard(shared.clone())),
            shared,
        }
    }

    /// Ask the relay to pair our UDX stream `stream_id` with the peer holding `token`, and
    /// wait up to `timeout` for the relay stream id to connect to.
    pub async fn pair(
        &self,
        is_initiator: bool,
        token: [u8; 32],
        stream_id: u32,
        timeout: Duration,
    ) -> Result<u32, PairError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.core).pair(is_initiator, token, stream_id)?;
        lock(&self.shared.waiters).insert(token, tx);
        self.shared.notify.notify_one();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(PairError::Closed),
            Err(_) => {
                self.unpair(token);
                Err(PairError::TimedOut)
            }
        }
    }

    /// Cancel a request or end an active pairing.
    pub fn unpair(&self, token: [u8; 32]) {
        lock(&self.shared.core).unpair(token);
        if let Some(w) = lock(&self.shared.waiters).remove(&token) {
            let _ = w.send(Err(PairError::Cancelled));
        }
        self.shared.notify.notify_one();
    }
}

async fn client_task(shared: &ClientShared, mut conn: Messages) {
    loop {
        let out: Vec<Vec<u8>> = {
            let mut core = lock(&shared.core);
            std::iter::from_fn(|| core.poll_transmit()).collect()
        };
        for m in out {
            if conn.tx.send(m).await.is_err() {
                return;
            }
        }
        if !client_events(shared) || shared.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        tokio::select! {
            biased;
            _ = shared.notify.notified() => {}
            m = conn.rx.recv() => match m {
                Some(m) => {
                    if lock(&shared.core).handle_input(&m).is_err() {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

/// Deliver events to waiters; false once the channel closed.
fn client_events(shared: &ClientShared) -> bool {
    loop {
        let Some(ev) = lock(&shared.core).poll_event() else {
            return true;
        };
        match ev {
            ClientEvent::Paired {
                token, relay_id, ..
            } => {
                if let Some(w) = lock(&shared.waiters).remove(&token) {
                    let _ = w.send(Ok(relay_id));
                }
            }
            ClientEvent::Closed => {
                for (_, w) in lock(&shared.waiters).drain() {
                    let _ = w.send(Err(PairError::Closed));
                }
                return false;
            }
            _ => {}
        }
    }
}
