//! An established connection: opening its UDX stream on the route the handshake chose,
//! handing it over ([`RawConnection`]: the stream and the finished Noise IK handshake, for a
//! caller that runs secret-stream itself, as `peerhost-node` does), or running this crate's
//! own secret-stream pump over it ([`Connection`]: whole messages through bounded queues, for
//! the blind-relay client, tools and tests).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use peerhost_dht_rpc::SocketKind;
use peerhost_ids::KeyPair;
use peerhost_noise::{Config as StreamConfig, Event as StreamEvent, HandshakeResult, SecretStream};
use peerhost_udx::driver::Stream;
use peerhost_udx::{Firewall, StreamConfig as UdxConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::{
    Command, MESSAGE_QUEUE, READ_CHUNK, Shared, connect_once, lock_awaiting, lock_early,
    lock_extra, lock_relayed,
};
use crate::client::ConnectOptions;
use crate::error::ConnectError;
use crate::messages::NoisePayload;
use crate::node::{Established, Route};

/// Open the UDX stream of an established handshake and hand it over with the handshake.
pub(super) async fn establish(
    shared: std::sync::Arc<Shared>,
    est: Established,
) -> Result<RawConnection, ConnectError> {
    let release = Release {
        commands: shared.commands.clone(),
        local_id: est.local_id,
    };
    let (stream, remote_address) = open_stream(&shared, &est).await?;
    Ok(RawConnection {
        stream,
        handshake: est.handshake,
        remote_public_key: est.remote_public_key,
        remote_address,
        remote_payload: est.payload,
        keep_alive: shared.keep_alive,
        release,
    })
}

async fn open_stream(
    shared: &Shared,
    est: &Established,
) -> Result<(Stream, SocketAddr), ConnectError> {
    let io = |e: io::Error| ConnectError::Stream(e.to_string());
    // Our connect's streams opened before the handshake completed (`task.rs`), one per DHT
    // socket: the route takes the one on its socket (what the server sent early is in it),
    // the others go when this returns. A new stream never takes their ids on their sockets.
    let mut early = lock_early(shared).remove(&est.local_id).unwrap_or_default();
    let mut take_early = |kind: SocketKind| {
        early
            .iter()
            .position(|(k, _)| *k == kind)
            .map(|i| early.swap_remove(i).1)
    };
    let stream_on = |kind: SocketKind, early: Option<Stream>, firewall: Firewall| match early {
        Some(s) => s.set_firewall(firewall).map(|()| s),
        None => shared
            .socket(kind)
            .create_stream(est.local_id, UdxConfig::default().firewall(firewall)),
    };
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
            let stream = stream_on(*socket, take_early(*socket), Firewall::Drop).map_err(io)?;
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
            let msgs = relay_messages(relay_conn.into_connection());
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
            let stream = stream_on(*socket, take_early(*socket), Firewall::Drop).map_err(io)?;
            stream.connect(relay_id, relay_addr).map_err(io)?;
            Ok((stream, relay_addr))
        }
        Route::Await { sockets, timeout } => {
            let firewall = Firewall::Connect {
                remote_id: est.remote_id,
            };
            let mut streams = Vec::new();
            for s in sockets {
                // An early stream that already heard the server connects to it here.
                streams.push(stream_on(*s, take_early(*s), firewall).map_err(io)?);
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
async fn futures_select_all<F, T>(mut futs: Vec<Pin<Box<F>>>) -> (T, usize, ())
where
    F: Future<Output = T>,
{
    std::future::poll_fn(move |cx| {
        for (i, f) in futs.iter_mut().enumerate() {
            if let Poll::Ready(v) = f.as_mut().poll(cx) {
                return Poll::Ready((v, i, ()));
            }
        }
        Poll::Pending
    })
    .await
}

/// Gives the connection's UDX stream id back to the node (and drops a relayed connection's
/// relay client) when the connection is gone.
#[derive(Debug)]
struct Release {
    commands: mpsc::Sender<Command>,
    local_id: u32,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Release(self.local_id));
    }
}

/// An established connection, handed over before anything runs on it: the UDX stream to the
/// peer and the finished Noise IK handshake of PEER_HANDSHAKE. Run secret-stream over it
/// yourself ([`RawConnection::into_parts`]: one task per connection, no queue in between), or
/// let this crate do it ([`RawConnection::into_connection`]). Dropping it ends the stream.
#[derive(Debug)]
pub struct RawConnection {
    stream: Stream,
    handshake: HandshakeResult,
    remote_public_key: [u8; 32],
    remote_address: SocketAddr,
    remote_payload: NoisePayload,
    keep_alive: Duration,
    release: Release,
}

impl RawConnection {
    /// The peer's static public key (authenticated by the Noise handshake).
    pub fn remote_public_key(&self) -> [u8; 32] {
        self.remote_public_key
    }

    /// The Noise handshake hash (equal on both ends).
    pub fn handshake_hash(&self) -> [u8; 64] {
        *self.handshake.hash()
    }

    /// Whether we dialled.
    pub fn is_initiator(&self) -> bool {
        self.handshake.is_initiator()
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.remote_address
    }

    /// The peer's Noise payload (addresses, UDX id, firewall…).
    pub fn remote_payload(&self) -> &NoisePayload {
        &self.remote_payload
    }

    /// The keep-alive the DHT is configured with ([`crate::Config::connection_keep_alive`]).
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// The secret stream (keys from the handshake; its id+header frame queued) and the
    /// transport to run it over. The caller drives both, in one task: bytes read from the
    /// transport go to [`SecretStream::handle_input`], what
    /// [`SecretStream::poll_transmit`] yields is written to it.
    pub fn into_parts(self, config: StreamConfig, now: Instant) -> (SecretStream, Transport) {
        let ss = SecretStream::from_handshake(&self.handshake, config, now);
        let transport = Transport {
            stream: self.stream,
            _release: self.release,
        };
        (ss, transport)
    }

    /// Run secret-stream in a task of its own and exchange whole messages with it.
    pub fn into_connection(self) -> Connection {
        let (out_tx, out_rx) = mpsc::channel(MESSAGE_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(MESSAGE_QUEUE);
        let error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let conn = Connection {
            remote_public_key: self.remote_public_key,
            handshake_hash: *self.handshake.hash(),
            is_initiator: self.handshake.is_initiator(),
            remote_address: self.remote_address,
            remote_payload: self.remote_payload.clone(),
            outgoing: out_tx,
            incoming: in_rx,
            error: error.clone(),
        };
        let config = StreamConfig::default().with_keep_alive(self.keep_alive);
        let (ss, transport) = self.into_parts(config, Instant::now());
        tokio::spawn(async move {
            if let Err(e) = pump(ss, transport, out_rx, in_tx).await {
                if let Ok(mut slot) = error.lock() {
                    *slot = Some(e);
                }
            }
        });
        conn
    }
}

/// The byte stream of a [`RawConnection`]: its UDX stream, which gives its id back to the
/// node when dropped. Reading yields what the peer wrote (secret-stream frames); a write is
/// sent reliably, in order.
#[derive(Debug)]
pub struct Transport {
    stream: Stream,
    _release: Release,
}

impl AsyncRead for Transport {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
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

/// A connection as blind-relay's message queues: a task forwards what it receives until the
/// relay client stops listening (then the connection is dropped and ends).
pub(super) fn relay_messages(mut conn: Connection) -> peerhost_relay::driver::Messages {
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

/// The connection task: bytes from UDX into the secret stream, messages from the application
/// into it, ciphertext out to UDX, decrypted messages up to the application.
async fn pump(
    mut ss: SecretStream,
    stream: Transport,
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
