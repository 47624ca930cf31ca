//! The tokio driver: one task runs a [`Node`] over two datagram sockets.
//!
//! - [`Dht`] is a cheap, cloneable handle. Its async methods send a command over a bounded
//!   channel to the task and await the answer on a oneshot.
//! - The task owns the [`Node`] and both sockets. It loops: wait for a command, a datagram on
//!   either socket or the node's next timeout (fairly: a flood on one socket cannot starve the
//!   other or the timers) → feed the node → send every datagram it polls → route its events
//!   to whoever waits (request and query callers, [`Dht::bootstrapped`], the application's
//!   request channel).
//! - Application requests ([`Config::handle_user_commands`]) arrive on the bounded channel
//!   taken once with [`Dht::take_requests`]; each [`Incoming`] answers itself. When the
//!   channel is full the request is dropped (the requester retries); when nobody holds the
//!   receiver, it is answered `UNKNOWN_COMMAND`.
//! - The sockets are anything implementing [`Transport`]: by default two tokio `UdpSocket`s
//!   ([`Dht::bind`]); a UDX socket can carry dht-rpc the same way ([`Dht::with_transport`]).
//!
//! The task stops when every handle is dropped or on [`Dht::destroy`]; requests and queries
//! still waiting then fail with `Destroyed` / `Cancelled`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::messages::{MAX_DATAGRAM, UNKNOWN_COMMAND};
use crate::{
    Config, Event, IncomingRequest, Node, NodeId, QueryError, QueryId, QueryParams, QueryResult,
    Reply, ReplyError, ReplyOptions, RequestError, RequestId, RequestOptions, RequestParams,
    SocketKind, Stats,
};

/// Commands queued for the task before callers wait.
const COMMANDS: usize = 256;
/// Application requests queued for the application before new ones are dropped.
pub const REQUEST_QUEUE: usize = 1024;
/// Query replies queued per [`QueryStream`] before new ones are dropped.
pub const QUERY_REPLY_QUEUE: usize = 256;
/// Receive buffer: libudx receives into 2048 bytes and truncates the rest; so do we.
const RECV_BUFFER: usize = MAX_DATAGRAM;

/// A datagram socket the driver can run on: a UDP socket, or a UDX socket handing over the
/// datagrams that are not UDX.
pub trait Transport: Send + Sync + 'static {
    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Receive one datagram into `buf` (truncating it if longer). Must be cancel-safe.
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a;

    /// Send one datagram.
    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
}

impl Transport for UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Self::local_addr(self)
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        Self::recv_from(self, buf)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<()> {
        Self::send_to(self, buf, target).await.map(|_| ())
    }
}

/// Where to bind the two UDP sockets (JS `host`, `port`, `anyPort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindOptions {
    /// Local address of both sockets (JS default `0.0.0.0`).
    pub host: Ipv4Addr,
    /// Server socket port: 0 for any; otherwise this port or one of the next four.
    pub port: u16,
    /// Fall back to any port when the wanted ones are taken (JS `anyPort`, default true).
    pub any_port: bool,
}

impl Default for BindOptions {
    fn default() -> Self {
        Self {
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            any_port: true,
        }
    }
}

impl BindOptions {
    /// Bind on `host`, any port.
    pub fn host(host: Ipv4Addr) -> Self {
        Self {
            host,
            ..Self::default()
        }
    }
}

/// A snapshot of the node's state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Info {
    /// Our id while persistent.
    pub id: Option<NodeId>,
    /// Whether we are ephemeral.
    pub ephemeral: bool,
    /// Whether we believe we are firewalled.
    pub firewalled: bool,
    /// Whether the bootstrap walk is over.
    pub bootstrapped: bool,
    /// Our public host and port as sampled.
    pub nat: (Option<Ipv4Addr>, u16),
    /// Our public address if reachable on it.
    pub remote_address: Option<SocketAddrV4>,
    /// Routing-table nodes, most recently seen first.
    pub nodes: Vec<SocketAddrV4>,
    /// Counters.
    pub stats: Stats,
    /// Requests in flight.
    pub inflight: usize,
    /// Queries running.
    pub queries: usize,
    /// Source IPs the rate limiter tracks.
    pub rate_limited_ips: usize,
    /// The server socket's local address.
    pub server_addr: SocketAddr,
    /// The client socket's local address.
    pub client_addr: SocketAddr,
}

/// The replies of a running query, then its result.
#[derive(Debug)]
pub struct QueryStream {
    replies: mpsc::Receiver<Reply>,
    done: oneshot::Receiver<Result<QueryResult, QueryError>>,
}

impl QueryStream {
    /// The next successful reply, or `None` once the walk is over. Replies beyond
    /// [`QUERY_REPLY_QUEUE`] unread ones are dropped.
    pub async fn next_reply(&mut self) -> Option<Reply> {
        self.replies.recv().await
    }

    /// Wait for the end (remaining replies are discarded).
    pub async fn finish(self) -> Result<QueryResult, QueryError> {
        self.done.await.unwrap_or(Err(QueryError::Cancelled))
    }
}

/// An application request; answer it with [`Incoming::reply`] or [`Incoming::error`]
/// (unanswered, the requester times out).
#[derive(Debug)]
pub struct Incoming {
    /// The request.
    pub req: IncomingRequest,
    dht: mpsc::WeakSender<Cmd>,
}

impl Incoming {
    /// Reply with a value (token and closer nodes included; see [`ReplyOptions::REPLY`]).
    pub async fn reply(&self, value: Option<&[u8]>) -> Result<(), ReplyError> {
        self.reply_with(value, ReplyOptions::REPLY).await
    }

    /// Reply with a value and explicit options.
    pub async fn reply_with(
        &self,
        value: Option<&[u8]>,
        opts: ReplyOptions,
    ) -> Result<(), ReplyError> {
        self.send(Answer::Value(value.map(<[u8]>::to_vec)), opts)
            .await
    }

    /// Reply with an error code ([`ReplyOptions::ERROR`] defaults).
    pub async fn error(&self, code: u64) -> Result<(), ReplyError> {
        self.send(Answer::Error(code), ReplyOptions::ERROR).await
    }

    async fn send(&self, answer: Answer, opts: ReplyOptions) -> Result<(), ReplyError> {
        let Some(tx) = self.dht.upgrade() else {
            return Ok(()); // the node is gone; so is the socket
        };
        let (done, rx) = oneshot::channel();
        let cmd = Cmd::Reply {
            req: Box::new(self.req.clone()),
            answer,
            opts,
            done,
        };
        if tx.send(cmd).await.is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}

#[derive(Debug)]
enum Answer {
    Value(Option<Vec<u8>>),
    Error(u64),
}

#[derive(Debug)]
enum Cmd {
    Request {
        to: SocketAddrV4,
        params: RequestParams,
        opts: RequestOptions,
        done: oneshot::Sender<Result<Reply, RequestError>>,
    },
    Ping {
        to: SocketAddrV4,
        opts: RequestOptions,
        done: oneshot::Sender<Result<Reply, RequestError>>,
    },
    Query {
        params: Box<QueryParams>,
        find_node: bool,
        replies: Option<mpsc::Sender<Reply>>,
        done: oneshot::Sender<Result<QueryResult, QueryError>>,
    },
    Reply {
        req: Box<IncomingRequest>,
        answer: Answer,
        opts: ReplyOptions,
        done: oneshot::Sender<Result<(), ReplyError>>,
    },
    AddNode(SocketAddrV4),
    Refresh,
    Bootstrapped(oneshot::Sender<()>),
    Info(oneshot::Sender<Info>),
    Destroy(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Shared {
    requests: Mutex<Option<mpsc::Receiver<Incoming>>>,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
}

/// A running dht-rpc node.
#[derive(Debug, Clone)]
pub struct Dht {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
}

fn bind_std(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    // A roomy receive buffer (libudx asks for 1 MiB) rides out bursts while the task is busy.
    let sock = socket2::SockRef::from(&s);
    for size in [1 << 20, 512 << 10, 256 << 10] {
        if sock.set_recv_buffer_size(size).is_ok() {
            break;
        }
    }
    UdpSocket::from_std(s)
}

impl Dht {
    /// Bind a server and a client UDP socket and start the node on the current runtime.
    pub async fn bind(config: Config, opts: BindOptions) -> io::Result<Self> {
        let mut server = None;
        if opts.port != 0 {
            for port in opts.port..opts.port.saturating_add(5) {
                if let Ok(s) = bind_std(SocketAddrV4::new(opts.host, port)) {
                    server = Some(s);
                    break;
                }
            }
            if server.is_none() && !opts.any_port {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "no port of the wanted range is free",
                ));
            }
        }
        let server = match server {
            Some(s) => s,
            None => bind_std(SocketAddrV4::new(opts.host, 0))?,
        };
        let client = bind_std(SocketAddrV4::new(opts.host, 0))?;
        Self::with_transport(config, server, client)
    }

    /// Start the node on two given sockets (the hook for UDX-carried dht-rpc).
    pub fn with_transport<T: Transport>(config: Config, server: T, client: T) -> io::Result<Self> {
        let server_addr = server.local_addr()?;
        let client_addr = client.local_addr()?;
        let handle_user_commands = config.handle_user_commands;
        let node = Node::new(config, server_addr.port(), Instant::now());
        let (tx, rx) = mpsc::channel(COMMANDS);
        let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
        let shared = Arc::new(Shared {
            requests: Mutex::new(handle_user_commands.then_some(req_rx)),
            server_addr,
            client_addr,
        });
        let task = Task {
            node,
            server,
            client,
            rx,
            weak: tx.downgrade(),
            requests: req_tx,
            pending: HashMap::new(),
            queries: HashMap::new(),
            bootstrapped: Vec::new(),
            shared: shared.clone(),
        };
        tokio::spawn(task.run());
        Ok(Self { tx, shared })
    }

    /// The server socket's local address.
    pub fn server_addr(&self) -> SocketAddr {
        self.shared.server_addr
    }

    /// The client socket's local address.
    pub fn client_addr(&self) -> SocketAddr {
        self.shared.client_addr
    }

    /// The application's request channel (once; `None` after, or when
    /// [`Config::handle_user_commands`] is off).
    pub fn take_requests(&self) -> Option<mpsc::Receiver<Incoming>> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    async fn call<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> Cmd) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Wait until the bootstrap walk is over.
    pub async fn bootstrapped(&self) {
        let _ = self.call(Cmd::Bootstrapped).await;
    }

    /// A snapshot of the node's state (`None` once destroyed).
    pub async fn info(&self) -> Option<Info> {
        self.call(Cmd::Info).await
    }

    /// Send an application request and wait for the reply.
    pub async fn request(
        &self,
        to: SocketAddrV4,
        params: RequestParams,
        opts: RequestOptions,
    ) -> Result<Reply, RequestError> {
        self.call(|done| Cmd::Request {
            to,
            params,
            opts,
            done,
        })
        .await
        .unwrap_or(Err(RequestError::Destroyed))
    }

    /// PING a node.
    pub async fn ping(&self, to: SocketAddrV4) -> Result<Reply, RequestError> {
        self.call(|done| Cmd::Ping {
            to,
            opts: RequestOptions::default(),
            done,
        })
        .await
        .unwrap_or(Err(RequestError::Destroyed))
    }

    /// Find the nodes closest to `target` (internal FIND_NODE).
    pub async fn find_node(&self, target: [u8; 32]) -> Result<QueryResult, QueryError> {
        self.call(|done| Cmd::Query {
            params: Box::new(QueryParams::new(target, 0)),
            find_node: true,
            replies: None,
            done,
        })
        .await
        .unwrap_or(Err(QueryError::Cancelled))
    }

    /// Run a query to the end.
    pub async fn query(&self, params: QueryParams) -> Result<QueryResult, QueryError> {
        self.call(|done| Cmd::Query {
            params: Box::new(params),
            find_node: false,
            replies: None,
            done,
        })
        .await
        .unwrap_or(Err(QueryError::Cancelled))
    }

    /// Start a query and stream its replies.
    pub async fn query_stream(&self, params: QueryParams) -> QueryStream {
        let (rtx, rrx) = mpsc::channel(QUERY_REPLY_QUEUE);
        let (done, drx) = oneshot::channel();
        let _ = self
            .tx
            .send(Cmd::Query {
                params: Box::new(params),
                find_node: false,
                replies: Some(rtx),
                done,
            })
            .await;
        QueryStream {
            replies: rrx,
            done: drx,
        }
    }

    /// Add a node to the routing table.
    pub async fn add_node(&self, addr: SocketAddrV4) {
        let _ = self.tx.send(Cmd::AddNode(addr)).await;
    }

    /// Start a background refresh.
    pub async fn refresh(&self) {
        let _ = self.tx.send(Cmd::Refresh).await;
    }

    /// Stop the node and wait until its task is gone.
    pub async fn destroy(self) {
        let _ = self.call(Cmd::Destroy).await;
    }
}

/// Resolve `host:port` strings to IPv4 bootstrap addresses (names through the system
/// resolver); entries that do not resolve are skipped, as JS skips them.
pub async fn resolve_bootstrap(nodes: &[&str]) -> Vec<SocketAddrV4> {
    let mut out = Vec::new();
    for n in nodes {
        if let Ok(addrs) = tokio::net::lookup_host(n).await {
            if let Some(a) = addrs.filter_map(crate::to_v4).next() {
                out.push(a);
            }
        }
    }
    out
}

struct QueryWaiter {
    replies: Option<mpsc::Sender<Reply>>,
    done: oneshot::Sender<Result<QueryResult, QueryError>>,
}

struct Task<T> {
    node: Node,
    server: T,
    client: T,
    rx: mpsc::Receiver<Cmd>,
    weak: mpsc::WeakSender<Cmd>,
    requests: mpsc::Sender<Incoming>,
    pending: HashMap<RequestId, oneshot::Sender<Result<Reply, RequestError>>>,
    queries: HashMap<QueryId, QueryWaiter>,
    bootstrapped: Vec<oneshot::Sender<()>>,
    shared: Arc<Shared>,
}

impl<T: Transport> Task<T> {
    async fn run(mut self) {
        let mut sbuf = vec![0u8; RECV_BUFFER];
        let mut cbuf = vec![0u8; RECV_BUFFER];
        loop {
            self.drain().await;
            let deadline = self
                .node
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + crate::TICK_INTERVAL);
            // Not biased: neither socket nor the commands can starve the others.
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(Cmd::Destroy(done)) => {
                        let _ = done.send(());
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                r = self.server.recv_from(&mut sbuf) => {
                    if let Ok((n, from)) = r {
                        self.node.handle_datagram(Instant::now(), SocketKind::Server, from, &sbuf[..n]);
                    }
                }
                r = self.client.recv_from(&mut cbuf) => {
                    if let Ok((n, from)) = r {
                        self.node.handle_datagram(Instant::now(), SocketKind::Client, from, &cbuf[..n]);
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
            // Timers are checked after every input, so a busy socket cannot starve them.
            let now = Instant::now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
        }
        for (_, done) in self.pending.drain() {
            let _ = done.send(Err(RequestError::Destroyed));
        }
        for (_, w) in self.queries.drain() {
            let _ = w.done.send(Err(QueryError::Cancelled));
        }
    }

    /// Send every queued datagram and route every event, until both queues are empty.
    async fn drain(&mut self) {
        loop {
            let mut idle = true;
            while let Some(t) = self.node.poll_transmit() {
                idle = false;
                let socket = match t.socket {
                    SocketKind::Server => &self.server,
                    _ => &self.client,
                };
                // UDP is best effort: a failed send is a lost datagram.
                let _ = socket
                    .send_to(&t.contents, SocketAddr::V4(t.destination))
                    .await;
            }
            while let Some(ev) = self.node.poll_event() {
                idle = false;
                self.on_event(ev);
            }
            if idle {
                return;
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Bootstrapped => {
                for w in self.bootstrapped.drain(..) {
                    let _ = w.send(());
                }
            }
            Event::Response { id, result } => {
                if let Some(done) = self.pending.remove(&id) {
                    let _ = done.send(result);
                }
            }
            Event::QueryReply { id, reply } => {
                if let Some(tx) = self.queries.get(&id).and_then(|w| w.replies.as_ref()) {
                    let _ = tx.try_send(reply);
                }
            }
            Event::QueryDone { id, result } => {
                if let Some(w) = self.queries.remove(&id) {
                    let _ = w.done.send(result);
                }
            }
            Event::Request(req) => {
                let incoming = Incoming {
                    req,
                    dht: self.weak.clone(),
                };
                match self.requests.try_send(incoming) {
                    Ok(()) => {}
                    // Nobody handles application commands.
                    Err(mpsc::error::TrySendError::Closed(i)) => {
                        let _ = self
                            .node
                            .reply_error(&i.req, UNKNOWN_COMMAND, ReplyOptions::ERROR);
                    }
                    // The application is behind: drop it, the requester retries.
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                }
            }
            _ => {}
        }
    }

    fn on_command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Request {
                to,
                params,
                opts,
                done,
            } => match self.node.request(now, to, params, opts) {
                Ok(id) => {
                    self.pending.insert(id, done);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Cmd::Ping { to, opts, done } => match self.node.ping(now, to, opts) {
                Ok(id) => {
                    self.pending.insert(id, done);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Cmd::Query {
                params,
                find_node,
                replies,
                done,
            } => {
                let started = if find_node {
                    self.node.find_node(now, params.target)
                } else {
                    self.node.query(now, *params)
                };
                match started {
                    // The query may already be over; its events are still queued.
                    Ok(id) => {
                        self.queries.insert(id, QueryWaiter { replies, done });
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                }
            }
            Cmd::Reply {
                req,
                answer,
                opts,
                done,
            } => {
                let r = match answer {
                    Answer::Value(v) => self.node.reply(&req, v.as_deref(), opts),
                    Answer::Error(code) => self.node.reply_error(&req, code, opts),
                };
                let _ = done.send(r);
            }
            Cmd::AddNode(addr) => self.node.add_node(now, addr),
            Cmd::Refresh => self.node.refresh(now),
            Cmd::Bootstrapped(w) => {
                if self.node.is_bootstrapped() {
                    let _ = w.send(());
                } else {
                    self.bootstrapped.push(w);
                }
            }
            Cmd::Info(w) => {
                let n = &self.node;
                let _ = w.send(Info {
                    id: n.id(),
                    ephemeral: n.is_ephemeral(),
                    firewalled: n.is_firewalled(),
                    bootstrapped: n.is_bootstrapped(),
                    nat: n.nat(),
                    remote_address: n.remote_address(),
                    nodes: n.nodes(),
                    stats: n.stats(),
                    inflight: n.inflight(),
                    queries: n.queries(),
                    rate_limited_ips: n.rate_limited_ips(),
                    server_addr: self.shared.server_addr,
                    client_addr: self.shared.client_addr,
                });
            }
            Cmd::Destroy(_) => {}
        }
    }
}
