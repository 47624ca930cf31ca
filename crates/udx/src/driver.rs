//! The tokio driver: one UDP socket, one background task, many streams.
//!
//! - [`Socket`] owns the `tokio::net::UdpSocket` and the [`Endpoint`]. [`Socket::bind`] spawns
//!   the driver task, which loops: receive a batch of datagrams → feed the endpoint → send
//!   what it polls → sleep until the next timeout or until a handle pokes it.
//! - [`Stream`] is a handle on one stream: `AsyncRead + AsyncWrite`, unreliable messages,
//!   `destroy`, `closed`. Handles lock the shared state (a `std::sync::Mutex`, never held
//!   across an `.await`), call the endpoint, and wake the driver.
//! - Datagrams that are not UDX (dht-rpc requests and responses, holepunch probes, packets for
//!   unknown stream ids) go to a bounded queue read with [`Socket::recv_datagram`]; when it is
//!   full, new ones are dropped, as UDP would. [`Socket::send_datagram`] sends raw datagrams
//!   on the same socket.
//!
//! - On Linux, runs of packets to one destination of one size (a stream's full data packets)
//!   leave in one `sendmsg` with `UDP_SEGMENT` (generic segmentation offload): the kernel cuts
//!   them into the same datagrams, so the wire is unchanged, for one system call and one
//!   route lookup per run instead of per packet. A socket whose path refuses it (no checksum
//!   offload: `EIO`; kernels before 4.18: `EINVAL`) falls back to one datagram per call.
//!
//! The driver stops when every [`Socket`] and [`Stream`] handle is dropped, after flushing
//! what the endpoint still has to send (DESTROY packets of dropped streams).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};

use crate::relay::{Relay, RelayStats, Relayed};
use crate::{Endpoint, Error, Event, Received, StreamConfig, StreamError, StreamInfo, Transmit};

/// Non-UDX datagrams queued for [`Socket::recv_datagram`] before new ones are dropped.
pub const DATAGRAM_QUEUE: usize = 1024;
/// Messages queued per stream for [`Stream::recv_message`] before new ones are dropped.
pub const MESSAGE_QUEUE: usize = 256;
/// The IP TTL sockets use unless told otherwise (Linux's default).
const DEFAULT_TTL: u32 = 64;
/// Datagrams received per wake-up before the driver sends (acknowledgements coalesce).
const RECV_BATCH: usize = 32;
/// Datagrams sent in one segmentation-offload call at most (Linux's `UDP_MAX_SEGMENTS` is 64
/// on older kernels).
const GSO_SEGMENTS: usize = 64;
/// Bytes sent in one segmentation-offload call at most (one UDP payload: 65 507 over IPv4).
const GSO_BYTES: usize = 65_000;

#[derive(Debug, Default)]
struct Slots {
    read: Option<Waker>,
    write: Option<Waker>,
    message: Option<Waker>,
    closed: Option<Waker>,
    messages: VecDeque<Vec<u8>>,
    connected: Option<SocketAddr>,
    remote_changed: bool,
}

impl Slots {
    fn wake_all(&mut self) {
        for w in [
            self.read.take(),
            self.write.take(),
            self.message.take(),
            self.closed.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

#[derive(Debug)]
struct State {
    ep: Endpoint,
    slots: HashMap<u32, Slots>,
    datagrams: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    /// Datagrams polled from the endpoint and not sent yet (the socket refused them with
    /// `WouldBlock`, or they wait for the rest of their batch), sent first. At most
    /// [`GSO_SEGMENTS`] + 1.
    pending: VecDeque<Transmit>,
    /// Whether runs of datagrams go out with segmentation offload.
    gso: bool,
    /// Relay splices on this socket (blind-relay servers).
    relay: Relay,
}

#[derive(Debug)]
struct Inner {
    socket: UdpSocket,
    local_addr: SocketAddr,
    state: Mutex<State>,
    wake: Notify,
    shutdown: AtomicBool,
    datagram_rx: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the endpoint usable enough to shut down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Dropping the last guard stops the driver.
#[derive(Debug)]
struct Guard(Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.shutdown.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

/// A UDP socket carrying UDX streams and, alongside, any other datagrams.
#[derive(Debug, Clone)]
pub struct Socket {
    inner: Arc<Inner>,
    guard: Arc<Guard>,
}

fn io_error(e: Error) -> io::Error {
    let kind = match e {
        Error::Stream(StreamError::Reset) => io::ErrorKind::ConnectionReset,
        Error::Stream(StreamError::TimedOut) => io::ErrorKind::TimedOut,
        Error::NotConnected => io::ErrorKind::NotConnected,
        Error::Ended | Error::Closed => io::ErrorKind::BrokenPipe,
        Error::IdInUse => io::ErrorKind::AddrInUse,
        Error::InvalidAddress | Error::MessageTooLarge => io::ErrorKind::InvalidInput,
        Error::QueueFull => io::ErrorKind::WouldBlock,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl Socket {
    /// Bind a UDP socket and start its driver task on the current tokio runtime.
    ///
    /// Like libudx, the receive buffer is raised towards 1 MiB.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std)?;
        Ok(Self::from_tokio(socket))
    }

    /// Wrap an already bound socket (for custom socket options) and start the driver.
    pub fn from_tokio(socket: UdpSocket) -> Self {
        let sock2 = socket2::SockRef::from(&socket);
        for size in [1 << 20, 512 << 10, 256 << 10] {
            if sock2.set_recv_buffer_size(size).is_ok() {
                break;
            }
        }
        let _ = sock2.set_send_buffer_size(212_992);
        let local_addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = mpsc::channel(DATAGRAM_QUEUE);
        let inner = Arc::new(Inner {
            socket,
            local_addr,
            state: Mutex::new(State {
                ep: Endpoint::new(),
                slots: HashMap::new(),
                datagrams: tx,
                pending: VecDeque::new(),
                gso: cfg!(target_os = "linux"),
                relay: Relay::default(),
            }),
            wake: Notify::new(),
            shutdown: AtomicBool::new(false),
            datagram_rx: tokio::sync::Mutex::new(rx),
        });
        tokio::spawn(run(inner.clone()));
        let guard = Arc::new(Guard(inner.clone()));
        Self { inner, guard }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Register a stream under `local_id` (udx `createStream(id)`); `connect` it next, or let
    /// its [`Firewall`](crate::Firewall) connect it.
    pub fn create_stream(&self, local_id: u32, config: StreamConfig) -> io::Result<Stream> {
        let mut st = self.inner.lock();
        st.ep
            .create_stream(local_id, config, Instant::now())
            .map_err(io_error)?;
        st.slots.insert(local_id, Slots::default());
        Ok(Stream {
            inner: self.inner.clone(),
            _guard: self.guard.clone(),
            id: local_id,
            end_sent: false,
        })
    }

    /// The next datagram that was not a UDX packet for a live stream, with its source (what
    /// udx-native emits as `socket.on('message')`). Returns `None` once the socket stopped.
    pub async fn recv_datagram(&self) -> Option<(Vec<u8>, SocketAddr)> {
        self.inner.datagram_rx.lock().await.recv().await
    }

    /// Splice two relay streams on this socket (libudx `relayTo` both ways, what a blind-relay
    /// server does for a matched pair): returns the relay ids given to the peers that announced
    /// stream ids `a_remote` and `b_remote`, in that order. Packets each peer sends to its relay
    /// id go to the other peer, addressed to its announced id (see [`crate::relay`]).
    ///
    /// Fails with `AddrInUse` if no free id pair was found or the splice table is full.
    pub fn relay_splice(&self, a_remote: u32, b_remote: u32) -> io::Result<(u32, u32)> {
        self.relay_splice_pinned((a_remote, None), (b_remote, None))
    }

    /// [`Socket::relay_splice`] with each end `(announced stream id, address)` pinned to an
    /// address when one is given (see [`crate::relay::Relay::splice_pinned`]).
    pub fn relay_splice_pinned(
        &self,
        (a_remote, a_addr): (u32, Option<SocketAddr>),
        (b_remote, b_addr): (u32, Option<SocketAddr>),
    ) -> io::Result<(u32, u32)> {
        let mut st = self.inner.lock();
        let now = Instant::now();
        for _ in 0..64 {
            let a = random_id(&st);
            let b = random_id(&st);
            if a != b
                && st
                    .relay
                    .splice_pinned(now, (a, a_remote, a_addr), (b, b_remote, b_addr))
            {
                return Ok((a, b));
            }
            if st.relay.stats().splices >= st.relay.max_splices() {
                break;
            }
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, "no relay id free"))
    }

    /// Remove the splice relay id `id` belongs to. Returns whether it existed.
    pub fn relay_unsplice(&self, id: u32) -> bool {
        self.inner.lock().relay.unsplice(id)
    }

    /// Bound every relay splice on this socket (see [`crate::relay::SpliceLimits`]).
    pub fn set_relay_limits(&self, limits: crate::relay::SpliceLimits) {
        self.inner.lock().relay.set_limits(limits);
    }

    /// End the splices past their idle time or lifetime, and return the relay ids (one per
    /// splice) of every splice that ended by itself since the last call (DESTROY, a bound).
    pub fn relay_expire(&self) -> Vec<u32> {
        let mut st = self.inner.lock();
        st.relay.expire(Instant::now());
        st.relay.take_ended()
    }

    /// Relay counters of this socket.
    pub fn relay_stats(&self) -> RelayStats {
        self.inner.lock().relay.stats()
    }

    /// Start keeping a copy of up to `limit` bytes of relayed datagrams (tests proving that a
    /// relay sees only ciphertext); [`Socket::take_relay_capture`] returns them.
    pub fn start_relay_capture(&self, limit: usize) {
        self.inner.lock().relay.start_capture(limit);
    }

    /// The relayed bytes captured so far.
    pub fn take_relay_capture(&self) -> Vec<u8> {
        self.inner.lock().relay.take_capture()
    }

    /// Send a raw datagram with IP time-to-live `ttl`, then restore the default 64
    /// (holepunch probes: TTL 5 opens our own NAT without reaching the peer's). UDX packets
    /// the driver sends meanwhile leave with the same TTL.
    pub async fn send_datagram_ttl(
        &self,
        data: &[u8],
        dest: SocketAddr,
        ttl: u32,
    ) -> io::Result<()> {
        if ttl == DEFAULT_TTL {
            return self.send_datagram(data, dest).await;
        }
        self.inner.socket.set_ttl(ttl)?;
        let r = self.inner.socket.send_to(data, dest).await.map(|_| ());
        let _ = self.inner.socket.set_ttl(DEFAULT_TTL);
        r
    }

    /// Send a raw datagram on the socket (dht-rpc traffic, holepunch probes). Keep it at most
    /// 2048 bytes if a udx-native peer is to read it whole.
    pub async fn send_datagram(&self, data: &[u8], dest: SocketAddr) -> io::Result<()> {
        self.inner.socket.send_to(data, dest).await.map(|_| ())
    }
}

/// One UDX stream: `AsyncRead + AsyncWrite` plus unreliable messages.
///
/// `poll_flush` waits until everything written is acknowledged; `poll_shutdown` sends END and
/// waits until it is acknowledged. Dropping the handle releases the stream: an ending stream
/// may finish its close in the background, any other open stream is destroyed.
#[derive(Debug)]
pub struct Stream {
    inner: Arc<Inner>,
    _guard: Arc<Guard>,
    id: u32,
    end_sent: bool,
}

impl Stream {
    /// Our stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.inner.lock());
        self.inner.wake.notify_one();
        r
    }

    /// Change how the stream treats packets while unconnected (see
    /// [`Endpoint::set_firewall`](crate::Endpoint::set_firewall)): a stream that took packets
    /// in under [`Firewall::Accept`](crate::Firewall::Accept) and is given
    /// [`Firewall::Connect`](crate::Firewall::Connect) connects to the first one's source.
    pub fn set_firewall(&self, firewall: crate::Firewall) -> io::Result<()> {
        self.with(|st| st.ep.set_firewall(self.id, firewall, Instant::now()))
            .map_err(io_error)
    }

    /// Set the peer's stream id and address (udx `stream.connect`).
    pub fn connect(&self, remote_id: u32, remote: SocketAddr) -> io::Result<()> {
        self.with(|st| st.ep.connect(self.id, remote_id, remote, Instant::now()))
            .map_err(io_error)
    }

    /// Move to a new peer id and address (udx `changeRemote`); resolves once the packets sent
    /// before the change are acknowledged.
    pub async fn change_remote(&self, remote_id: u32, remote: SocketAddr) -> io::Result<()> {
        let done = self.with(|st| {
            if let Some(s) = st.slots.get_mut(&self.id) {
                s.remote_changed = false;
            }
            st.ep.change_remote(self.id, remote_id, remote)
        });
        if done.map_err(io_error)? {
            return Ok(());
        }
        std::future::poll_fn(|cx| {
            let mut st = self.inner.lock();
            let closed = st.ep.close_reason(self.id).ok().flatten().is_some();
            let Some(slot) = st.slots.get_mut(&self.id) else {
                return Poll::Ready(Err(io_error(Error::Closed)));
            };
            if slot.remote_changed {
                return Poll::Ready(Ok(()));
            }
            if closed {
                return Poll::Ready(Err(io_error(Error::Closed)));
            }
            slot.closed = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The remote learned by a [`Firewall::Connect`](crate::Firewall::Connect) stream.
    pub async fn connected(&self) -> io::Result<SocketAddr> {
        std::future::poll_fn(|cx| {
            let mut st = self.inner.lock();
            if let Some(remote) = st.ep.stream_info(self.id).and_then(|i| i.remote) {
                return Poll::Ready(Ok(remote));
            }
            let closed = st.ep.close_reason(self.id).ok().flatten().is_some();
            if closed {
                return Poll::Ready(Err(io_error(Error::Closed)));
            }
            if let Some(slot) = st.slots.get_mut(&self.id) {
                slot.closed = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Send an unreliable MESSAGE (udx `stream.send()`); at most
    /// [`MAX_MESSAGE`](crate::MAX_MESSAGE) bytes.
    pub fn send_message(&self, data: &[u8]) -> io::Result<()> {
        self.with(|st| st.ep.send_message(self.id, data))
            .map_err(io_error)
    }

    /// The next MESSAGE received on this stream; `None` once the stream closed.
    pub async fn recv_message(&self) -> Option<Vec<u8>> {
        std::future::poll_fn(|cx| {
            let mut st = self.inner.lock();
            let closed =
                !st.ep.contains(self.id) || st.ep.close_reason(self.id).ok().flatten().is_some();
            let Some(slot) = st.slots.get_mut(&self.id) else {
                return Poll::Ready(None);
            };
            if let Some(m) = slot.messages.pop_front() {
                return Poll::Ready(Some(m));
            }
            if closed {
                return Poll::Ready(None);
            }
            slot.message = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Abort: send DESTROY (the peer sees `ECONNRESET`) and close locally.
    pub fn destroy(&self) {
        self.with(|st| {
            let _ = st.ep.destroy(self.id);
        });
    }

    /// Wait until the stream closed: `Ok` for a graceful close or a local destroy.
    pub async fn closed(&self) -> Result<(), StreamError> {
        std::future::poll_fn(|cx| {
            let mut st = self.inner.lock();
            match st.ep.close_reason(self.id) {
                Ok(Some(None)) | Err(_) => return Poll::Ready(Ok(())),
                Ok(Some(Some(e))) => return Poll::Ready(Err(e)),
                Ok(None) => {}
            }
            if let Some(slot) = st.slots.get_mut(&self.id) {
                slot.closed = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Counters and congestion state.
    pub fn info(&self) -> Option<StreamInfo> {
        self.inner.lock().ep.stream_info(self.id)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.inner.lock();
        let r = st.ep.read(this.id, buf.initialize_unfilled());
        match r {
            Ok(Some(n)) => {
                buf.advance(n);
                drop(st);
                if n > 0 {
                    // Reading may open the window: let the driver send an update.
                    this.inner.wake.notify_one();
                }
                Poll::Ready(Ok(()))
            }
            Ok(None) => {
                if let Some(slot) = st.slots.get_mut(&this.id) {
                    slot.read = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Err(Error::Closed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut st = this.inner.lock();
        match st.ep.write(this.id, data, Instant::now()) {
            Ok(0) if !data.is_empty() => {
                if let Some(slot) = st.slots.get_mut(&this.id) {
                    slot.write = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                drop(st);
                this.inner.wake.notify_one();
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.inner.lock();
        if let Ok(Some(Some(e))) = st.ep.close_reason(this.id) {
            return Poll::Ready(Err(io_error(Error::Stream(e))));
        }
        match st.ep.unacked(this.id) {
            Ok(0) | Err(_) => Poll::Ready(Ok(())),
            Ok(_) if st.ep.close_reason(this.id).ok().flatten().is_some() => Poll::Ready(Ok(())),
            Ok(_) => {
                if let Some(slot) = st.slots.get_mut(&this.id) {
                    slot.write = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.inner.lock();
        if !this.end_sent {
            match st.ep.end(this.id, Instant::now()) {
                Ok(()) | Err(Error::Ended) => {}
                Err(e) => return Poll::Ready(Err(io_error(e))),
            }
            this.end_sent = true;
            this.inner.wake.notify_one();
        }
        match st.ep.close_reason(this.id) {
            Ok(Some(Some(e))) => return Poll::Ready(Err(io_error(Error::Stream(e)))),
            Ok(Some(None)) | Err(_) => return Poll::Ready(Ok(())),
            Ok(None) => {}
        }
        if st.ep.is_end_acked(this.id).unwrap_or(true) {
            return Poll::Ready(Ok(()));
        }
        if let Some(slot) = st.slots.get_mut(&this.id) {
            slot.write = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        let _ = st.ep.release(self.id, Instant::now());
        st.slots.remove(&self.id);
        drop(st);
        self.inner.wake.notify_one();
    }
}

/// A stream id free on this socket (neither a stream nor a relay end): a random-looking u32
/// from a hash of the time and a counter; no RNG dependency is needed for uniqueness, only for
/// not being guessable, which the ids of a blind relay need not be (JS allocates them
/// sequentially in `RawStreamSet`).
fn random_id(st: &State) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let id = h.finish() as u32;
        if id != 0 && !st.ep.contains(id) && !st.relay.contains(id) {
            return id;
        }
    }
}

/// Send everything the endpoint has; false if the socket would block.
fn flush(inner: &Inner, st: &mut State, now: Instant) -> bool {
    loop {
        // Top up `pending` while everything in it still fits one batch.
        while st.pending.len() <= GSO_SEGMENTS && batch_len(&st.pending, st.gso) == st.pending.len()
        {
            match st.ep.poll_transmit(now) {
                Some(t) => st.pending.push_back(t),
                None => break,
            }
        }
        let n = batch_len(&st.pending, st.gso);
        if n == 0 {
            return true;
        }
        let sent = if n == 1 {
            inner
                .socket
                .try_send_to(&st.pending[0].bytes, st.pending[0].dest)
                .map(|_| ())
        } else {
            send_segments(inner, st.pending.make_contiguous(), n)
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) if n > 1 => {
                // Either this path refuses segmentation offload or the destination is
                // unreachable: the first datagram alone tells which.
                match inner
                    .socket
                    .try_send_to(&st.pending[0].bytes, st.pending[0].dest)
                {
                    Ok(_) => {
                        st.gso = false;
                        st.pending.pop_front();
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(_) => {}
                }
            }
            // Like libudx, other send errors are swallowed: the packets count as lost.
            Err(_) => {}
        }
        st.pending.drain(..n);
    }
}

/// How many datagrams at the front of `pending` leave in one call: with segmentation
/// offload, a run to one destination, all of the first one's size but the last (which may
/// be shorter), within [`GSO_SEGMENTS`] and [`GSO_BYTES`]; else one.
fn batch_len(pending: &VecDeque<Transmit>, gso: bool) -> usize {
    let Some(first) = pending.front() else {
        return 0;
    };
    if !gso {
        return 1;
    }
    let size = first.bytes.len();
    let mut total = size;
    let mut n = 1;
    for t in pending.iter().skip(1) {
        let len = t.bytes.len();
        if n == GSO_SEGMENTS || t.dest != first.dest || len > size || total + len > GSO_BYTES {
            break;
        }
        n += 1;
        total += len;
        if len < size {
            break;
        }
    }
    n
}

/// Send `batch[..n]` (a run as [`batch_len`] cuts it) in one `sendmsg` with `UDP_SEGMENT`.
#[cfg(target_os = "linux")]
fn send_segments(inner: &Inner, batch: &[Transmit], n: usize) -> io::Result<()> {
    let bufs: Vec<io::IoSlice<'_>> = batch[..n]
        .iter()
        .map(|t| io::IoSlice::new(&t.bytes))
        .collect();
    let size = u16::try_from(batch[0].bytes.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let control = gso_control(size);
    let addr = socket2::SockAddr::from(batch[0].dest);
    let msg = socket2::MsgHdr::new()
        .with_addr(&addr)
        .with_buffers(&bufs)
        .with_control(&control);
    inner.socket.try_io(tokio::io::Interest::WRITABLE, || {
        socket2::SockRef::from(&inner.socket)
            .sendmsg(&msg, 0)
            .map(|_| ())
    })
}

#[cfg(not(target_os = "linux"))]
fn send_segments(_: &Inner, _: &[Transmit], _: usize) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The bytes of one `cmsghdr` carrying `UDP_SEGMENT` (level `SOL_UDP` = 17, type 103) with
/// the segment size, laid out as the kernel reads it: `size_t cmsg_len; int cmsg_level; int
/// cmsg_type;`, then the data aligned to `size_t` (`CMSG_LEN(2)` in `cmsg_len`, the buffer
/// `CMSG_SPACE(2)` long).
#[cfg(target_os = "linux")]
fn gso_control(size: u16) -> [u8; CMSG_SPACE] {
    let mut c = [0u8; CMSG_SPACE];
    c[..WORD].copy_from_slice(&(CMSG_HDR + 2).to_ne_bytes());
    c[WORD..WORD + 4].copy_from_slice(&17i32.to_ne_bytes());
    c[WORD + 4..WORD + 8].copy_from_slice(&103i32.to_ne_bytes());
    c[CMSG_HDR..CMSG_HDR + 2].copy_from_slice(&size.to_ne_bytes());
    c
}

#[cfg(target_os = "linux")]
const WORD: usize = size_of::<usize>();
/// `sizeof(struct cmsghdr)`, aligned to `size_t`.
#[cfg(target_os = "linux")]
const CMSG_HDR: usize = (WORD + 8).div_ceil(WORD) * WORD;
/// `CMSG_SPACE(sizeof(u16))`.
#[cfg(target_os = "linux")]
const CMSG_SPACE: usize = CMSG_HDR + WORD;

fn dispatch(st: &mut State) {
    while let Some(ev) = st.ep.poll_event() {
        match ev {
            Event::Readable { id } => {
                if let Some(w) = st.slots.get_mut(&id).and_then(|s| s.read.take()) {
                    w.wake();
                }
            }
            Event::Writable { id } => {
                if let Some(w) = st.slots.get_mut(&id).and_then(|s| s.write.take()) {
                    w.wake();
                }
            }
            Event::Message { id, data } => {
                if let Some(s) = st.slots.get_mut(&id) {
                    if s.messages.len() < MESSAGE_QUEUE {
                        s.messages.push_back(data);
                    }
                    if let Some(w) = s.message.take() {
                        w.wake();
                    }
                }
            }
            Event::Connected { id, remote } => {
                if let Some(s) = st.slots.get_mut(&id) {
                    s.connected = Some(remote);
                    if let Some(w) = s.closed.take() {
                        w.wake();
                    }
                }
            }
            Event::RemoteChanged { id } => {
                if let Some(s) = st.slots.get_mut(&id) {
                    s.remote_changed = true;
                    if let Some(w) = s.closed.take() {
                        w.wake();
                    }
                }
            }
            Event::Closed { id, .. } => {
                if let Some(s) = st.slots.get_mut(&id) {
                    s.wake_all();
                }
            }
        }
    }
}

async fn run(inner: Arc<Inner>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let notified = inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let (deadline, blocked) = {
            let mut st = inner.lock();
            let now = Instant::now();
            st.ep.handle_timeout(now);
            let sent_all = flush(&inner, &mut st, now);
            dispatch(&mut st);
            (st.ep.poll_timeout(), !sent_all)
        };
        if inner.shutdown.load(Ordering::Acquire) {
            break;
        }
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut notified => {}
            r = inner.socket.readable() => {
                if r.is_err() {
                    break;
                }
                receive(&inner, &mut buf);
            }
            _ = inner.socket.writable(), if blocked => {}
            _ = sleep => {}
        }
    }
    // Last flush: DESTROY packets of streams dropped at the end.
    let mut st = inner.lock();
    let now = Instant::now();
    let _ = flush(&inner, &mut st, now);
    for slot in st.slots.values_mut() {
        slot.wake_all();
    }
}

fn receive(inner: &Inner, buf: &mut [u8]) {
    let mut st = inner.lock();
    for _ in 0..RECV_BATCH {
        let (n, from) = match inner.socket.try_recv_from(buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // ICMP errors (connection refused) and the like: skip the datagram.
            Err(_) => continue,
        };
        match st.relay.handle_datagram(Instant::now(), from, &buf[..n]) {
            Relayed::No => {}
            Relayed::Dropped => continue,
            Relayed::Forward(t) => {
                // No queueing for relayed packets: when the socket is full they are lost, as
                // any datagram would be; the peers' UDX retransmits.
                let _ = inner.socket.try_send_to(&t.bytes, t.dest);
                continue;
            }
        }
        let now = Instant::now();
        match st.ep.handle_datagram(now, from, &buf[..n]) {
            Received::NotUdx => {
                // Bounded: when the application is not reading, drop like a full UDP buffer.
                let _ = st.datagrams.try_send((buf[..n].to_vec(), from));
            }
            Received::Udx(id) => {
                // Acknowledgements may complete a flush or shutdown.
                if let Some(w) = st.slots.get_mut(&id).and_then(|s| s.write.take()) {
                    w.wake();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dest: u16, len: usize) -> Transmit {
        Transmit {
            dest: SocketAddr::from(([127, 0, 0, 1], dest)),
            bytes: vec![0; len],
            stream: None,
        }
    }

    #[test]
    fn batches_are_runs_of_one_size_to_one_destination() {
        let q = |v: Vec<Transmit>| v.into_iter().collect::<VecDeque<_>>();
        assert_eq!(batch_len(&q(vec![]), true), 0);
        assert_eq!(batch_len(&q(vec![t(1, 1200), t(1, 1200)]), false), 1);
        // A shorter datagram ends a run; a longer one or another destination starts a new one.
        let run = q(vec![t(1, 1200), t(1, 1200), t(1, 500), t(1, 1200)]);
        assert_eq!(batch_len(&run, true), 3);
        assert_eq!(batch_len(&q(vec![t(1, 500), t(1, 1200)]), true), 1);
        assert_eq!(batch_len(&q(vec![t(1, 1200), t(2, 1200)]), true), 1);
        // Bounded in segments and in bytes.
        assert_eq!(
            batch_len(&q((0..100).map(|_| t(1, 100)).collect()), true),
            GSO_SEGMENTS
        );
        assert_eq!(
            batch_len(&q((0..60).map(|_| t(1, 1472)).collect()), true),
            GSO_BYTES / 1472
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn gso_control_is_one_udp_segment_cmsg() {
        let c = gso_control(1180);
        assert_eq!(c.len(), if WORD == 8 { 24 } else { 16 });
        let mut len = [0u8; WORD];
        len.copy_from_slice(&c[..WORD]);
        assert_eq!(usize::from_ne_bytes(len), CMSG_HDR + 2);
        assert_eq!(c[WORD..WORD + 4], 17i32.to_ne_bytes()); // SOL_UDP
        assert_eq!(c[WORD + 4..WORD + 8], 103i32.to_ne_bytes()); // UDP_SEGMENT
        assert_eq!(c[CMSG_HDR..CMSG_HDR + 2], 1180u16.to_ne_bytes());
    }

    /// Runs leave as separate datagrams, byte for byte: a plain socket (no GRO) receives each
    /// one as sent.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn segmented_sends_arrive_as_the_datagrams_sent() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = Socket::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dest = rx.local_addr().unwrap();
        let sent: Vec<Transmit> = (0..10u8)
            .map(|i| Transmit {
                dest,
                bytes: vec![i; if i == 9 { 300 } else { 1000 }],
                stream: None,
            })
            .collect();
        tx.inner.socket.writable().await.unwrap();
        send_segments(&tx.inner, &sent, sent.len()).unwrap();
        let mut buf = [0u8; 2048];
        for s in &sent {
            let (n, _) =
                tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(&buf[..n], &s.bytes[..]);
        }
    }
}
