//! Serving the router on a TCP listener with bounded connections and fair deadlines.
//!
//! `axum::serve` accepts without limit and keeps idle connections forever; [`Limited`] wraps
//! the listener (`protocol/gateway.md` §4):
//!
//! - at most `max_connections` are open. When a new client arrives at a full gateway, the
//!   connection that has waited longest without being answered — idle between requests, or
//!   half-open (part of a request head read) — is closed to make room, instead of making the
//!   newcomer wait; a connection whose request is complete and being answered is never shed;
//! - at most `max_connections_per_ip` from one client (an IPv4 address or IPv6 /64): more are
//!   closed at once; a trusted reverse proxy's ([`crate::forwarded`]) are not capped so, as
//!   they carry many clients;
//! - a request head must arrive whole within `header_timeout` of its first byte, and its body
//!   (and the start of the answer) within `body_timeout` of the head's end: bytes trickled in
//!   one at a time do not extend either deadline;
//! - a connection is closed after `idle_timeout` without a byte moving either way (dead
//!   keep-alives).
//!
//! Accept errors (out of file descriptors and the like) never end the listener: they are
//! logged, rate-limited, and retried after a pause that doubles from 10 ms to 1 s.
//!
//! With the `tls` feature, [`serve_tls`] speaks HTTPS on the same limits: a connection takes
//! its permit and per-client slot at accept, its TLS handshake runs in a task of its own (at
//! most `max_connections` at once, each within `header_timeout`), so a slow handshake holds up
//! no other client, and the deadlines above then run on the decrypted bytes.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::forwarded::TrustedProxies;
use crate::http::{Config, router};
use crate::limit::ClientId;
use crate::source::LogSource;

/// Connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Connections open at once; accepting waits while this many are open.
    pub max_connections: usize,
    /// Connections open at once from one client (IPv4 address, IPv6 /64); more are closed at
    /// accept.
    pub max_connections_per_ip: usize,
    /// A connection on which no byte moved for this long is closed.
    pub idle_timeout: Duration,
    /// A request head must arrive whole within this time of its first byte.
    pub header_timeout: Duration,
    /// A request body must arrive, and its answer start, within this time of the head's end.
    pub body_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 64,
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
        }
    }
}

impl ServeOptions {
    /// With at most `n` connections open.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// With at most `n` connections open from one client.
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n;
        self
    }

    /// Closing connections idle for `timeout`.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Closing connections whose request head is not whole `timeout` after its first byte.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Closing connections whose request body is not whole (and answered) `timeout` after the
    /// end of its head.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }
}

/// The remote address of a connection accepted by [`Limited`] (the router's per-client limits
/// read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, Limited>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, Limited>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// The byte stream of an accepted connection: plain TCP, or TLS over it ([`serve_tls`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS, the handshake done.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! on_stream {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => $e,
            #[cfg(feature = "tls")]
            Stream::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_stream!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Connections whose TLS handshake finished, waiting for the server to take them.
#[cfg(feature = "tls")]
struct Handshakes {
    acceptor: tokio_rustls::TlsAcceptor,
    tx: tokio::sync::mpsc::Sender<(Conn, SocketAddr)>,
    rx: tokio::sync::mpsc::Receiver<(Conn, SocketAddr)>,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for Handshakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshakes").finish_non_exhaustive()
    }
}

/// A TCP listener that holds at most `max_connections` connections open ([module docs](self)).
#[derive(Debug)]
pub struct Limited {
    #[cfg(feature = "tls")]
    tls: Option<Handshakes>,
    inner: TcpListener,
    permits: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<ClientId, usize>>>,
    max_per_ip: usize,
    /// Reverse proxies: their connections carry many clients, so they are not capped per
    /// address (the router keys their requests by `X-Forwarded-For`).
    trusted: TrustedProxies,
    options: ServeOptions,
    registry: Arc<Registry>,
    errors: u64,
    last_error_log: Option<std::time::Instant>,
}

/// One client's place among the open connections; freed when the connection is dropped.
#[derive(Debug)]
struct IpSlot {
    /// `None` for a trusted proxy's connection (not counted).
    table: Option<Arc<Mutex<HashMap<ClientId, usize>>>>,
    client: ClientId,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(table) = &self.table else {
            return;
        };
        let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = t.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.client);
            }
        }
    }
}

/// The accept queue asked of the kernel for the gateway's listener.
const ACCEPT_BACKLOG: i32 = 4096;

/// Accept errors are logged at most this often.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

impl Limited {
    /// Wrap `listener` with `options`. Its accept queue is raised to 4096 connections (the
    /// kernel caps it at `net.core.somaxconn`): a flood of connects must not fill it and make
    /// a newcomer's SYN wait a second for its retransmission while the gateway would shed
    /// room for it at once.
    pub fn new(listener: TcpListener, options: ServeOptions) -> Self {
        if let Err(e) = socket2::SockRef::from(&listener).listen(ACCEPT_BACKLOG) {
            tracing::debug!("HTTP gateway: cannot raise the accept queue ({e})");
        }
        Self {
            #[cfg(feature = "tls")]
            tls: None,
            inner: listener,
            permits: Arc::new(Semaphore::new(options.max_connections.max(1))),
            per_ip: Arc::default(),
            max_per_ip: options.max_connections_per_ip.max(1),
            trusted: TrustedProxies::default(),
            options,
            registry: Arc::new(Registry::new()),
            errors: 0,
            last_error_log: None,
        }
    }

    /// The same, speaking TLS with `acceptor` (each handshake in a task of its own, within
    /// `header_timeout`).
    #[cfg(feature = "tls")]
    pub fn with_tls(
        listener: TcpListener,
        options: ServeOptions,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> Self {
        let mut me = Self::new(listener, options);
        // At most `max_connections` handshakes hold permits, so this never fills for long.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        me.tls = Some(Handshakes { acceptor, tx, rx });
        me
    }

    /// Not capping the connections of these reverse proxies per address.
    pub fn trusting(mut self, proxies: TrustedProxies) -> Self {
        self.trusted = proxies;
        self
    }

    fn admit(&self, ip: std::net::IpAddr) -> Option<IpSlot> {
        let client = ClientId::of(ip);
        if self.trusted.contains(ip) {
            return Some(IpSlot {
                table: None,
                client,
            });
        }
        let mut t = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = t.entry(client).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: Some(self.per_ip.clone()),
            client,
        })
    }

    fn note_error(&mut self, e: &io::Error) {
        self.errors += 1;
        let now = std::time::Instant::now();
        if self
            .last_error_log
            .is_some_and(|t| now.duration_since(t) < ACCEPT_ERROR_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            errors = self.errors,
            "HTTP gateway: cannot accept a connection ({e}); still listening, retrying"
        );
        self.errors = 0;
        self.last_error_log = Some(now);
    }

    /// A connection permit: at once when one is free; when full, after shedding the
    /// connection waiting longest without being answered (or, when every connection is being
    /// answered, after one closes).
    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        self.registry.shed_one();
        // The semaphore is never closed, so this only waits.
        self.permits.clone().acquire_owned().await.ok()
    }
}

impl Listener for Limited {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        let mut backoff = Duration::from_millis(10);
        loop {
            #[cfg(feature = "tls")]
            let accepted = match &mut self.tls {
                Some(h) => tokio::select! {
                    ready = h.rx.recv() => match ready {
                        Some(c) => return c,
                        None => continue,
                    },
                    r = self.inner.accept() => r,
                },
                None => self.inner.accept().await,
            };
            #[cfg(not(feature = "tls"))]
            let accepted = self.inner.accept().await;
            match accepted {
                Ok((stream, addr)) => {
                    backoff = Duration::from_millis(10);
                    let Some(slot) = self.admit(addr.ip()) else {
                        tracing::debug!(peer = %addr, "HTTP connection over the per-client cap");
                        continue;
                    };
                    let Some(permit) = self.permit().await else {
                        continue;
                    };
                    // Small responses: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    #[cfg(feature = "tls")]
                    if let Some(h) = &self.tls {
                        let (acceptor, tx) = (h.acceptor.clone(), h.tx.clone());
                        let (options, registry) = (self.options, self.registry.clone());
                        tokio::spawn(async move {
                            let hs = tokio::time::timeout(
                                options.header_timeout,
                                acceptor.accept(stream),
                            );
                            match hs.await {
                                Ok(Ok(tls)) => {
                                    let s = Stream::Tls(Box::new(tls));
                                    let conn = Conn::new(s, permit, slot, &options, &registry);
                                    let _ = tx.send((conn, addr)).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(peer = %addr, "TLS handshake failed: {e}");
                                }
                                Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
                            }
                        });
                        continue;
                    }
                    let conn = Conn::new(
                        Stream::Plain(stream),
                        permit,
                        slot,
                        &self.options,
                        &self.registry,
                    );
                    return (conn, addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    self.note_error(&e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// What a connection is doing, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Between requests: nothing of the next request read (after accept, or since the
    /// server last wrote). Sheddable.
    Idle = 0,
    /// Part of a request head read, not its end. Sheddable.
    Head = 1,
    /// The head is whole: its body is being read or its answer made. Never shed.
    Body = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Idle,
            1 => Self::Head,
            _ => Self::Body,
        }
    }
}

/// The request deadlines of one connection, driven by the bytes read and written: the head
/// deadline starts at a request's first byte and is not moved by more bytes; the body
/// deadline starts at the head's end (a line with nothing but `\r`); a write (the answer)
/// ends both.
#[derive(Debug, Clone)]
pub(crate) struct Phases {
    phase: Phase,
    /// The deadline of the current phase (none while idle).
    deadline: Option<Instant>,
    /// In the head: the current line is empty so far (only `\r` seen since the last `\n`).
    line_empty: bool,
    header_timeout: Duration,
    body_timeout: Duration,
}

impl Phases {
    pub(crate) fn new(header_timeout: Duration, body_timeout: Duration) -> Self {
        Self {
            phase: Phase::Idle,
            deadline: None,
            line_empty: false,
            header_timeout,
            body_timeout,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// `bytes` were read at `now`; returns whether the phase changed.
    pub(crate) fn on_read(&mut self, now: Instant, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        let before = self.phase;
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.deadline = Some(now + self.header_timeout);
            self.line_empty = false;
        }
        if self.phase == Phase::Head {
            for &b in bytes {
                match b {
                    b'\n' if self.line_empty => {
                        self.phase = Phase::Body;
                        self.deadline = Some(now + self.body_timeout);
                        break;
                    }
                    b'\n' => self.line_empty = true,
                    b'\r' => {}
                    _ => self.line_empty = false,
                }
            }
        }
        self.phase != before
    }

    /// The server wrote (an answer); returns whether the phase changed.
    pub(crate) fn on_write(&mut self) -> bool {
        self.deadline = None;
        std::mem::replace(&mut self.phase, Phase::Idle) != Phase::Idle
    }
}

/// What the listener knows of an open connection.
#[derive(Debug)]
struct Track {
    id: u64,
    phase: AtomicU8,
    /// Milliseconds since the registry's epoch when the connection entered its phase (for
    /// an idle one: when a byte last moved).
    since: AtomicU64,
    shed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The open connections, for shedding when full.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Track>>>,
    shed: AtomicU64,
}

impl Registry {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            conns: Mutex::default(),
            shed: AtomicU64::new(0),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Track>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn register(&self) -> Arc<Track> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Track {
            id,
            phase: AtomicU8::new(Phase::Idle as u8),
            since: AtomicU64::new(self.ms(Instant::now())),
            shed: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        self.lock().insert(id, t.clone());
        t
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Close the connection waiting longest without being answered, if any.
    fn shed_one(&self) -> bool {
        let victim = {
            let conns = self.lock();
            let id = victim(
                conns
                    .values()
                    .filter(|t| !t.shed.load(Ordering::Relaxed))
                    .map(|t| {
                        (
                            t.id,
                            Phase::from_u8(t.phase.load(Ordering::Relaxed)),
                            t.since.load(Ordering::Relaxed),
                        )
                    }),
            );
            id.and_then(|id| conns.get(&id).cloned())
        };
        let Some(t) = victim else {
            return false;
        };
        t.shed.store(true, Ordering::Release);
        let n = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            shed = n,
            phase = t.phase.load(Ordering::Relaxed),
            "HTTP gateway full: closed the connection waiting longest without an answer"
        );
        let waker = t
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = waker {
            w.wake();
        }
        true
    }
}

/// Which of `conns` (id, phase, since) to shed: the idle or half-open one with the oldest
/// `since` (the lowest id among equals: accepted first).
pub(crate) fn victim(conns: impl Iterator<Item = (u64, Phase, u64)>) -> Option<u64> {
    conns
        .filter(|&(_, phase, _)| phase != Phase::Body)
        .min_by_key(|&(id, _, since)| (since, id))
        .map(|(id, _, _)| id)
}

/// An accepted connection: the stream, its connection permit, and its deadlines.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    _permit: OwnedSemaphorePermit,
    _slot: IpSlot,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    phases: Phases,
    track: Arc<Track>,
    registry: Arc<Registry>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.registry.remove(self.track.id);
    }
}

impl Conn {
    fn new(
        stream: Stream,
        permit: OwnedSemaphorePermit,
        slot: IpSlot,
        options: &ServeOptions,
        registry: &Arc<Registry>,
    ) -> Self {
        Self {
            stream,
            _permit: permit,
            _slot: slot,
            idle_timeout: options.idle_timeout,
            deadline: Box::pin(tokio::time::sleep(options.idle_timeout)),
            phases: Phases::new(options.header_timeout, options.body_timeout),
            track: registry.register(),
            registry: registry.clone(),
        }
    }

    /// Shed by the listener to make room: fail every poll from now on.
    fn shed(&self) -> Option<io::Error> {
        self.track
            .shed
            .load(Ordering::Acquire)
            .then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "shed: gateway full"))
    }

    fn note_phase(&self, now: Instant) {
        let t = &self.track;
        t.phase.store(self.phases.phase() as u8, Ordering::Relaxed);
        t.since.store(self.registry.ms(now), Ordering::Relaxed);
    }

    /// After an I/O poll: progress re-arms the idle deadline (never past the request's own);
    /// no progress past either is an error.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                let mut next = Instant::now() + self.idle_timeout;
                if let Some(d) = self.phases.deadline() {
                    next = next.min(d);
                }
                self.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => {
                {
                    let mut w = self
                        .track
                        .waker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *w = Some(cx.waker().clone());
                    }
                }
                // Shed while this poll was registering: fail now rather than sleep.
                if let Some(e) = self.shed() {
                    return Poll::Ready(Err(e));
                }
                match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 {
            let now = Instant::now();
            // The phase changes on the first write of an answer; an idle connection's `since`
            // follows its last write.
            self.phases.on_write();
            self.note_phase(now);
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.shed() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let now = Instant::now();
            if this.phases.on_read(now, &buf.filled()[before..]) {
                this.note_phase(now);
            }
        }
        this.track(cx, poll)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.shed() {
            return Poll::Ready(Err(e));
        }
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.wrote(n);
        }
        this.track(cx, poll)
    }

    /// Headers and a shared body go out in one `writev`, the body never copied into a buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.shed() {
            return Poll::Ready(Err(e));
        }
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            this.wrote(n);
        }
        this.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.track(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serve the gateway over `source` on `listener` until `shutdown` resolves, then finish the
/// requests in flight.
///
/// ```no_run
/// # async fn run(store: peerhost_store::Store) -> Result<(), Box<dyn std::error::Error>> {
/// use peerhost_gateway::{Config, Cores, ServeOptions};
///
/// let cores = Cores::open_all(&store)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// peerhost_gateway::serve(
///     listener,
///     cores,
///     Config::default(),
///     ServeOptions::default(),
///     std::future::pending(),
/// )
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn serve<S: LogSource>(
    listener: TcpListener,
    source: S,
    config: Config,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let trusted = config.trusted_proxies.clone();
    let app = router(source, config).into_make_service_with_connect_info::<ClientAddr>();
    axum::serve(Limited::new(listener, options).trusting(trusted), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] over HTTPS: TLS with `acceptor` on every connection, the same limits as
/// [`Limited`] (each handshake in its own task, within `header_timeout`).
/// [`crate::tls::acceptor`] reads a certificate and key.
#[cfg(feature = "tls")]
pub async fn serve_tls<S: LogSource>(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    source: S,
    config: Config,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let trusted = config.trusted_proxies.clone();
    let app = router(source, config).into_make_service_with_connect_info::<ClientAddr>();
    axum::serve(
        Limited::with_tls(listener, options, acceptor).trusting(trusted),
        app,
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const BODY: Duration = Duration::from_secs(60);

    #[test]
    fn trickled_head_bytes_do_not_move_the_head_deadline() {
        let t0 = Instant::now();
        let mut p = Phases::new(HEAD, BODY);
        assert_eq!((p.phase(), p.deadline()), (Phase::Idle, None));
        let head = b"GET /v1/logs HTTP/1.1\r\nhost: x\r\n\r\n";
        // One byte a second: the deadline stays where the first byte put it.
        for (i, b) in head[..head.len() - 1].iter().enumerate() {
            p.on_read(t0 + Duration::from_secs(i as u64), std::slice::from_ref(b));
            assert_eq!(p.phase(), Phase::Head, "byte {i}");
            assert_eq!(p.deadline(), Some(t0 + HEAD), "byte {i}");
        }
        // The head's end starts the body deadline.
        let end = t0 + Duration::from_secs(40);
        assert!(p.on_read(end, b"\n"));
        assert_eq!((p.phase(), p.deadline()), (Phase::Body, Some(end + BODY)));
        // Body bytes (even blank lines) move nothing.
        assert!(!p.on_read(end + Duration::from_secs(1), b"\r\n\r\nbody"));
        assert_eq!(p.deadline(), Some(end + BODY));
        // The answer ends the request: idle, no deadline but the idle timeout.
        assert!(p.on_write());
        assert_eq!((p.phase(), p.deadline()), (Phase::Idle, None));
        assert!(!p.on_write());
        // Bare LF line ends count too; a head in one read goes straight to the body phase.
        let t1 = t0 + Duration::from_secs(100);
        assert!(p.on_read(t1, b"GET / HTTP/1.1\nhost: x\n\nGET /next"));
        assert_eq!((p.phase(), p.deadline()), (Phase::Body, Some(t1 + BODY)));
        // An empty read (EOF) changes nothing.
        p.on_write();
        assert!(!p.on_read(t1, b""));
        assert_eq!(p.phase(), Phase::Idle);
        // A blank line first does not end a head that has not begun.
        assert!(p.on_read(t1, b"\r\nGET"));
        assert_eq!(p.phase(), Phase::Head);
    }

    #[test]
    fn the_oldest_idle_or_half_open_connection_is_shed_never_one_being_answered() {
        use Phase::{Body, Head, Idle};
        assert_eq!(victim([].into_iter()), None);
        assert_eq!(victim([(1, Body, 0), (2, Body, 5)].into_iter()), None);
        assert_eq!(
            victim([(1, Body, 0), (2, Idle, 7), (3, Head, 5), (4, Head, 9)].into_iter()),
            Some(3)
        );
        assert_eq!(
            victim([(5, Idle, 4), (3, Head, 4), (9, Body, 1)].into_iter()),
            Some(3)
        );
    }

    #[tokio::test]
    async fn shedding_marks_the_victim_and_wakes_it() {
        let r = Registry::new();
        let a = r.register();
        let b = r.register();
        a.phase.store(Phase::Body as u8, Ordering::Relaxed);
        b.since.store(10, Ordering::Relaxed);
        let woken = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        *b.waker.lock().unwrap() = Some(Waker::from(Arc::new(Flag(woken.clone()))));
        assert!(r.shed_one());
        assert!(b.shed.load(Ordering::Relaxed) && !a.shed.load(Ordering::Relaxed));
        assert!(woken.load(Ordering::Relaxed));
        // Already shed, and the other is being answered: nothing more to shed.
        assert!(!r.shed_one());
        assert_eq!(r.shed.load(Ordering::Relaxed), 1);
        r.remove(b.id);
        r.remove(a.id);
        assert_eq!(r.len(), 0);
    }
}
