//! Serving the router on a TCP listener with bounded connections and an idle timeout.
//!
//! `axum::serve` accepts without limit and keeps idle connections forever; [`Limited`] wraps
//! the listener so that at most `max_connections` are open (accept waits for one to close), at
//! most `max_connections_per_ip` from one client (an IPv4 address or IPv6 /64: more are closed
//! at once), and each connection is closed after `idle_timeout` without a byte moving either
//! way (slow-loris clients, dead keep-alives). Accept errors (out of file descriptors and the
//! like) never end the listener: they are logged, rate-limited, and retried after a pause that
//! doubles from 10 ms to 1 s.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

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
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 64,
            idle_timeout: Duration::from_secs(30),
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

/// A TCP listener that holds at most `max_connections` connections open.
#[derive(Debug)]
pub struct Limited {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    per_ip: Arc<std::sync::Mutex<HashMap<ClientId, usize>>>,
    max_per_ip: usize,
    idle_timeout: Duration,
    errors: u64,
    last_error_log: Option<std::time::Instant>,
}

/// One client's place among the open connections; freed when the connection is dropped.
#[derive(Debug)]
struct IpSlot {
    table: Arc<std::sync::Mutex<HashMap<ClientId, usize>>>,
    client: ClientId,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut t = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = t.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.client);
            }
        }
    }
}

/// Accept errors are logged at most this often.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

impl Limited {
    /// Wrap `listener` with `options`.
    pub fn new(listener: TcpListener, options: ServeOptions) -> Self {
        Self {
            inner: listener,
            permits: Arc::new(Semaphore::new(options.max_connections.max(1))),
            per_ip: Arc::default(),
            max_per_ip: options.max_connections_per_ip.max(1),
            idle_timeout: options.idle_timeout,
            errors: 0,
            last_error_log: None,
        }
    }

    fn admit(&self, ip: std::net::IpAddr) -> Option<IpSlot> {
        let client = ClientId::of(ip);
        let mut t = self
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = t.entry(client).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.per_ip.clone(),
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
}

impl Listener for Limited {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        let mut backoff = Duration::from_millis(10);
        loop {
            // The semaphore is never closed, so this only waits.
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    backoff = Duration::from_millis(10);
                    let Some(slot) = self.admit(addr.ip()) else {
                        tracing::debug!(peer = %addr, "HTTP connection over the per-client cap");
                        continue;
                    };
                    // Small responses: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return (Conn::new(stream, permit, slot, self.idle_timeout), addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    self.note_error(&e);
                    drop(permit);
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

/// An accepted connection: the stream, its connection permit, and its idle deadline.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    _slot: IpSlot,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        slot: IpSlot,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            _permit: permit,
            _slot: slot,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    /// After an I/O poll: progress re-arms the deadline; no progress past it is an error.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                let next = Instant::now() + self.idle_timeout;
                self.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
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
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
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
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.track(cx, poll)
    }

    /// Headers and a shared body go out in one `writev`, the body never copied into a buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
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
    let app = router(source, config).into_make_service_with_connect_info::<ClientAddr>();
    axum::serve(Limited::new(listener, options), app)
        .with_graceful_shutdown(shutdown)
        .await
}
