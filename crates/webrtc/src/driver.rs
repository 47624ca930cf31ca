//! The tokio driver: one UDP socket, many browsers' peer connections, answered from the
//! gateway's [`Api`].
//!
//! - [`Server::bind`] binds the socket, learns the socket's public address by STUN binding
//!   against the configured servers (the instance's `serve --stun`), generates the node's
//!   DTLS certificate, and spawns the driver task on the current runtime.
//! - [`Server::answer`] takes a browser's offer (from the signaling path) and returns the
//!   answer; the [`Peer`] joins the driver.
//! - The driver task owns the socket and every [`Peer`]: a datagram goes to the peer whose
//!   ufrag its STUN USERNAME names, or that the source address belongs to; each request a
//!   peer emits runs [`Api::get`] in its own task (bounded: per channel by `max_dispatch`,
//!   store reads by the gateway's `max_inflight`), whose answer comes back on a bounded
//!   queue; timers sit in one ordered set.
//! - Birthday search ([`Server::probe`], or automatically `Birthday::delay` after an answer
//!   that has not connected): datagrams to random ports of the browser's public address, so
//!   that a port-restricted NAT in front of us lets in the checks a symmetric NAT in front
//!   of the browser sends from a port we cannot know.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerhost_gateway::LogSource;
use peerhost_gateway::api::Api;
use str0m::Candidate;
use str0m::channel::ChannelId;
use str0m::config::{CryptoProvider, DtlsCert};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::frame::{ContentType, GoAwayCode};
use crate::peer::{self, Event, Peer, PeerError};
use crate::stun::{self, Binding};

/// A birthday search's shape.
#[derive(Debug, Clone)]
pub struct Birthday {
    /// Start this long after the answer if ICE has not connected yet.
    pub delay: Duration,
    /// Ports probed per public address of the browser.
    pub count: u32,
    /// Between two probes.
    pub interval: Duration,
}

impl Default for Birthday {
    fn default() -> Self {
        // The holepuncher's shape for UDX (crates/hyperdht): 3500 tries every 4 ms.
        Self {
            delay: Duration::from_millis(1500),
            count: 3500,
            interval: Duration::from_millis(4),
        }
    }
}

/// The driver's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Each peer connection's limits.
    pub peer: peer::Config,
    /// Peer connections at once; offers beyond are refused.
    pub max_peers: usize,
    /// STUN servers to learn our public address from (the instance's).
    pub stun_servers: Vec<SocketAddr>,
    /// How long [`Server::bind`] waits for the first STUN answer.
    pub stun_wait: Duration,
    /// How often the public address is learned again (keeps the NAT mapping too).
    pub stun_refresh: Duration,
    /// Offer the socket's own address as a host candidate.
    pub host_candidate: bool,
    /// Birthday search for browsers that do not connect by plain ICE (`None`: off).
    pub birthday: Option<Birthday>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            peer: peer::Config::default(),
            max_peers: 256,
            stun_servers: Vec::new(),
            stun_wait: Duration::from_secs(3),
            stun_refresh: Duration::from_secs(25),
            host_candidate: true,
            birthday: Some(Birthday::default()),
        }
    }
}

/// Why an offer was not answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The offer was refused.
    #[error(transparent)]
    Offer(#[from] PeerError),
    /// `max_peers` connections are open.
    #[error("too many peer connections")]
    Full,
    /// The driver has stopped.
    #[error("the WebRTC driver has stopped")]
    Stopped,
}

/// A peer connection as [`Server::status`] reports it.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// The id [`Server::answer`] returned.
    pub id: u64,
    /// Milliseconds from the answer to ICE + DTLS up.
    pub connect_ms: Option<u64>,
    /// The browser's address in use.
    pub remote: Option<SocketAddr>,
    /// Data channels open.
    pub channels: usize,
    /// Counters.
    pub stats: peer::Stats,
    /// Why it closed, if it did.
    pub closed: Option<String>,
    /// Birthday probes sent for it.
    pub probes: u32,
}

/// The driver as a whole.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The socket's address.
    pub local: Option<SocketAddr>,
    /// Our public addresses as STUN servers see them.
    pub public: Vec<SocketAddr>,
    /// Open peer connections, then the last closed ones (at most 64 kept).
    pub peers: Vec<PeerStatus>,
    /// Datagrams that no peer claimed.
    pub unclaimed: u64,
}

/// An answered offer.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The peer connection's id in [`Status`].
    pub id: u64,
    /// The SDP answer for the browser.
    pub sdp: String,
}

enum Command {
    Answer(String, oneshot::Sender<Result<Answered, Error>>),
    Probe(u64, IpAddr, Birthday),
    Candidate(String, String),
    SetStun(Vec<SocketAddr>),
    Status(oneshot::Sender<Status>),
    Shutdown,
}

/// A handle on the driver task. Dropping every handle stops it.
#[derive(Debug, Clone)]
pub struct Server {
    commands: mpsc::Sender<Command>,
    local: SocketAddr,
    public: Vec<SocketAddr>,
}

impl Server {
    /// Bind `addr`, learn our public address from `config.stun_servers`, and spawn the driver
    /// answering from `api`. `addr` should be a specific interface address (the host
    /// candidate; str0m needs the address a datagram arrived at).
    pub async fn bind<S: LogSource>(
        addr: SocketAddr,
        api: Api<S>,
        config: Config,
    ) -> io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local = socket.local_addr()?;
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| io::Error::other("could not generate a DTLS certificate"))?;
        let public = learn_public(&socket, &config.stun_servers, config.stun_wait).await;
        let (tx, rx) = mpsc::channel(64);
        let driver = Driver {
            socket,
            local,
            api,
            crypto,
            cert,
            config,
            public: public.clone(),
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_remote_ufrag: HashMap::new(),
            early: VecDeque::new(),
            by_addr: HashMap::new(),
            timers: BTreeSet::new(),
            next_id: 1,
            closed: Vec::new(),
            unclaimed: 0,
            probes: Vec::new(),
            bindings: Vec::new(),
            next_refresh: Instant::now(),
            punches: Vec::new(),
            sweeps: HashMap::new(),
        };
        tokio::spawn(driver.run(rx));
        Ok(Self {
            commands: tx,
            local,
            public,
        })
    }

    /// The socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Our public addresses as the STUN servers saw them at bind time.
    pub fn public_addrs(&self) -> &[SocketAddr] {
        &self.public
    }

    /// Answer a browser's SDP offer.
    pub async fn answer(&self, offer: String) -> Result<Answered, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Answer(offer, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// A candidate the browser whose ICE ufrag is `ufrag` trickled after its offer
    /// (`candidate:…`). One that comes before its offer is kept a little while
    /// ([`TRICKLE_EARLY`], at most [`TRICKLE_PENDING`] of them) and taken when the offer is.
    pub async fn candidate(&self, ufrag: String, candidate: String) -> Result<(), Error> {
        self.commands
            .send(Command::Candidate(ufrag, candidate))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Start a birthday search for peer `id` towards `ip` now.
    pub async fn probe(&self, id: u64, ip: IpAddr, shape: Birthday) -> Result<(), Error> {
        self.commands
            .send(Command::Probe(id, ip, shape))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Learn our public address from these STUN servers from now on (at once, then every
    /// `stun_refresh`): what signaling learns from the instance after [`Server::bind`].
    pub async fn set_stun_servers(&self, servers: Vec<SocketAddr>) -> Result<(), Error> {
        self.commands
            .send(Command::SetStun(servers))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// The driver's state.
    pub async fn status(&self) -> Result<Status, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Status(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Close every connection (GOAWAY `Shutdown`) and stop.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

/// Ask each STUN server for our address from `socket`, waiting at most `wait`.
async fn learn_public(
    socket: &UdpSocket,
    servers: &[SocketAddr],
    wait: Duration,
) -> Vec<SocketAddr> {
    let now = Instant::now();
    let mut bindings: Vec<Binding> = servers.iter().map(|s| Binding::new(*s, now)).collect();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        for b in &mut bindings {
            if let Some((to, req)) = b.poll_transmit(now) {
                let _ = socket.send_to(&req, to).await;
            }
        }
        if bindings.iter().all(|b| b.result().is_some() || b.failed()) {
            break;
        }
        let next = bindings
            .iter()
            .filter_map(Binding::poll_timeout)
            .min()
            .map_or(deadline, |t| {
                tokio::time::Instant::from_std(t).min(deadline)
            });
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    for b in &mut bindings {
                        if b.server() == from && b.matches(&buf[..n]) {
                            b.handle_response(&buf[..n]);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in bindings.iter().filter_map(Binding::result) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Trickled candidates whose offer has not come yet, kept at most (across all browsers).
pub const TRICKLE_PENDING: usize = 64;
/// How long such a candidate waits for its offer.
pub const TRICKLE_EARLY: Duration = Duration::from_secs(10);

struct Entry {
    peer: Peer,
    deadline: Instant,
    probes: u32,
    birthday_at: Option<Instant>,
}

/// A walk over the ports 1024..=65535 in a random order that visits each once: `start +
/// i · stride (mod N)` with a stride coprime to N = 64 512 = 2^10 · 3^2 · 7.
#[derive(Debug)]
struct Sweep {
    start: u32,
    stride: u32,
    i: u32,
}

impl Sweep {
    const N: u32 = 65_536 - 1024;

    fn new() -> Self {
        let mut stride = 1 + rand::random::<u32>() % (Self::N - 1);
        while stride % 2 == 0 || stride % 3 == 0 || stride % 7 == 0 {
            stride = 1 + rand::random::<u32>() % (Self::N - 1);
        }
        Self {
            start: rand::random::<u32>() % Self::N,
            stride,
            i: 0,
        }
    }

    fn next_port(&mut self) -> u16 {
        let k = (u64::from(self.start) + u64::from(self.i) * u64::from(self.stride))
            % u64::from(Self::N);
        self.i = self.i.wrapping_add(1);
        // k < N, so the port is at most 65 535.
        (1024 + k) as u16
    }
}

struct Probe {
    peer: u64,
    ip: IpAddr,
    left: u32,
    interval: Duration,
    next: Instant,
}

struct Driver<S> {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    api: Api<S>,
    crypto: Arc<CryptoProvider>,
    cert: DtlsCert,
    config: Config,
    public: Vec<SocketAddr>,
    peers: HashMap<u64, Entry>,
    by_ufrag: HashMap<String, u64>,
    /// Connections by the browser's ufrag (where its trickled candidates go).
    by_remote_ufrag: HashMap<String, u64>,
    /// Trickled candidates that came before their offer: (when, ufrag, line).
    early: VecDeque<(Instant, String, String)>,
    by_addr: HashMap<SocketAddr, u64>,
    timers: BTreeSet<(Instant, u64)>,
    next_id: u64,
    closed: Vec<PeerStatus>,
    unclaimed: u64,
    probes: Vec<Probe>,
    bindings: Vec<Binding>,
    next_refresh: Instant,
    /// Datagrams to send at once (the first punch towards a new browser).
    punches: Vec<(SocketAddr, Vec<u8>)>,
    /// One port sweep per address being searched.
    sweeps: HashMap<IpAddr, Sweep>,
}

type AnswerMsg = (u64, ChannelId, u32, peerhost_gateway::api::Answer);

impl<S: LogSource> Driver<S> {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let (answers_tx, mut answers) = mpsc::channel::<AnswerMsg>(1024);
        let mut buf = vec![0u8; 2048];
        let socket = self.socket.clone();
        self.next_refresh = Instant::now() + self.config.stun_refresh;
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                c = commands.recv() => match c {
                    Some(Command::Shutdown) | None => {
                        self.shutdown().await;
                        return;
                    }
                    Some(c) => self.command(c, &answers_tx).await,
                },
                a = answers.recv() => {
                    if let Some((id, ch, rid, ans)) = a {
                        let now = Instant::now();
                        if let Some(e) = self.peers.get_mut(&id) {
                            let ct = ContentType::of_media_type(ans.content_type);
                            e.peer.handle_answer(now, ch, rid, ans.status, ct, ans.body.to_vec());
                        }
                        self.after(id, &answers_tx).await;
                    }
                }
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.datagram(from, &buf[..n], &answers_tx).await,
                    Err(e) => tracing::debug!("webrtc: recv: {e}"),
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    self.timers_due(&answers_tx).await;
                }
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let mut t = self.next_refresh;
        if let Some((at, _)) = self.timers.first() {
            t = t.min(*at);
        }
        for p in &self.probes {
            t = t.min(p.next);
        }
        for b in &self.bindings {
            if let Some(at) = b.poll_timeout() {
                t = t.min(at);
            }
        }
        t
    }

    async fn command(&mut self, c: Command, answers: &mpsc::Sender<AnswerMsg>) {
        match c {
            Command::Answer(offer, reply) => {
                let r = self.accept(&offer);
                let id = r.as_ref().ok().map(|a| a.id);
                let _ = reply.send(r);
                for (to, bytes) in std::mem::take(&mut self.punches) {
                    let _ = self.socket.send_to(&bytes, to).await;
                }
                if let Some(id) = id {
                    self.after(id, answers).await;
                }
            }
            Command::Probe(id, ip, shape) => self.start_probe(id, ip, &shape, Instant::now()),
            Command::Candidate(ufrag, line) => {
                let now = Instant::now();
                match self.by_remote_ufrag.get(&ufrag).copied() {
                    Some(id) => {
                        self.trickle(id, &line, now);
                        for (to, bytes) in std::mem::take(&mut self.punches) {
                            let _ = self.socket.send_to(&bytes, to).await;
                        }
                        self.after(id, answers).await;
                    }
                    None => {
                        self.early
                            .retain(|(at, _, _)| now.duration_since(*at) < TRICKLE_EARLY);
                        if self.early.len() < TRICKLE_PENDING {
                            self.early.push_back((now, ufrag, line));
                        }
                    }
                }
            }
            Command::SetStun(servers) => {
                self.config.stun_servers = servers;
                self.next_refresh = Instant::now();
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Shutdown => {}
        }
    }

    fn accept(&mut self, offer: &str) -> Result<Answered, Error> {
        if self.peers.len() >= self.config.max_peers {
            return Err(Error::Full);
        }
        let now = Instant::now();
        let mut candidates = Vec::new();
        if self.config.host_candidate {
            if let Ok(c) = Candidate::host(self.local, "udp") {
                candidates.push(c);
            }
        }
        for p in &self.public {
            if *p != self.local {
                if let Ok(c) = Candidate::server_reflexive(*p, self.local, "udp") {
                    candidates.push(c);
                }
            }
        }
        let (peer, sdp) = Peer::accept(
            offer,
            &candidates,
            self.crypto.clone(),
            Some(self.cert.clone()),
            self.config.peer.clone(),
            now,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        self.by_ufrag.insert(peer.ufrag().to_owned(), id);
        if !peer.remote_ufrag().is_empty() {
            self.by_remote_ufrag
                .insert(peer.remote_ufrag().to_owned(), id);
        }
        let birthday_at = self
            .config
            .birthday
            .as_ref()
            .filter(|_| !peer.remote_public().is_empty())
            .map(|b| now + b.delay);
        let deadline = peer.poll_timeout();
        self.timers.insert((deadline, id));
        self.peers.insert(
            id,
            Entry {
                peer,
                deadline,
                probes: 0,
                birthday_at,
            },
        );
        if let Some(at) = birthday_at {
            self.timers.insert((at, id));
        }
        // Open our NAT towards the browser's public addresses now, before the answer reaches
        // it: its first checks then find the way open (a port- or address-restricted NAT in
        // front of us drops what comes from where we have not sent).
        if let Some(e) = self.peers.get(&id) {
            for a in e.peer.remote_public() {
                let req = stun::Builder::new(stun::BINDING_REQUEST, rand::random()).finish();
                self.punches.push((*a, req));
            }
        }
        // Candidates the browser trickled before its offer came.
        if let Some(ufrag) = self
            .peers
            .get(&id)
            .map(|e| e.peer.remote_ufrag().to_owned())
        {
            if !ufrag.is_empty() && self.early.iter().any(|(_, u, _)| *u == ufrag) {
                let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.early)
                    .into_iter()
                    .partition(|(_, u, _)| *u == ufrag);
                self.early = rest;
                for (at, _, line) in mine {
                    if now.duration_since(at) < TRICKLE_EARLY {
                        self.trickle(id, &line, now);
                    }
                }
            }
        }
        Ok(Answered { id, sdp })
    }

    /// Give peer `id` a trickled candidate: a new public (server-reflexive) address of the
    /// browser is punched at once and, while the connection is not up, searched as the
    /// offer's would be (`Birthday::delay` after the answer). The caller sends the punches and
    /// drives the peer's output (`after`) or lets its timer do it.
    fn trickle(&mut self, id: u64, line: &str, now: Instant) {
        let Some(e) = self.peers.get_mut(&id) else {
            return;
        };
        let (taken, public) = e.peer.add_remote_candidate(line, now);
        if !taken {
            return;
        }
        // Its checks started (the caller's `after` sends them and re-arms the timer).
        let Some(a) = public else {
            return;
        };
        let req = stun::Builder::new(stun::BINDING_REQUEST, rand::random()).finish();
        self.punches.push((a, req));
        if e.birthday_at.is_none() && e.probes == 0 && e.peer.connected_at().is_none() {
            if let Some(b) = self.config.birthday.as_ref() {
                let at = (e.peer.created_at() + b.delay).max(now);
                e.birthday_at = Some(at);
                self.timers.insert((at, id));
            }
        }
    }

    fn start_probe(&mut self, id: u64, ip: IpAddr, shape: &Birthday, now: Instant) {
        if self.probes.len() >= 16 || self.probes.iter().any(|p| p.peer == id && p.ip == ip) {
            return;
        }
        tracing::debug!("webrtc: peer {id}: birthday search towards {ip}");
        self.probes.push(Probe {
            peer: id,
            ip,
            left: shape.count,
            interval: shape.interval,
            next: now,
        });
    }

    fn status(&self) -> Status {
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(id, e)| peer_status(*id, e))
            .collect();
        peers.sort_by_key(|p| p.id);
        peers.extend(self.closed.iter().cloned());
        Status {
            local: Some(self.local),
            public: self.public.clone(),
            peers,
            unclaimed: self.unclaimed,
        }
    }

    /// Which peer a datagram from `from` belongs to.
    fn route(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> Option<u64> {
        if stun::is_stun(bytes) {
            if let Some(ufrag) = stun::local_ufrag(bytes) {
                let id = *self.by_ufrag.get(&ufrag)?;
                self.remember(from, id);
                return Some(id);
            }
        }
        if let Some(id) = self.by_addr.get(&from) {
            return Some(*id);
        }
        // From an address no check came from: only DTLS (RFC 7983: first byte 20..=63) is
        // worth asking every connection about; anything else is dropped without a scan.
        if !bytes.first().is_some_and(|b| (20..64).contains(b)) {
            return None;
        }
        let local = self.local;
        let id = self
            .peers
            .iter()
            .find(|(_, e)| e.peer.accepts(now, from, local, bytes))
            .map(|(id, _)| *id)?;
        self.remember(from, id);
        Some(id)
    }

    /// Route `from` to peer `id` from now on. Bounded: a ufrag is in the SDP, so anyone who
    /// saw it can send checks from many (spoofed) addresses before str0m's integrity check
    /// drops them; past the bound, routing falls back to the ufrag and the DTLS scan.
    fn remember(&mut self, from: SocketAddr, id: u64) {
        if self.by_addr.len() < self.config.max_peers.saturating_mul(8).max(64) {
            self.by_addr.insert(from, id);
        }
    }

    async fn datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        answers: &mpsc::Sender<AnswerMsg>,
    ) {
        let now = Instant::now();
        // Our own STUN refreshes.
        if stun::is_stun(bytes) {
            let mut learned = None;
            for b in &mut self.bindings {
                if b.server() == from && b.matches(bytes) {
                    learned = b.handle_response(bytes);
                }
            }
            if let Some(a) = learned {
                if !self.public.contains(&a) {
                    tracing::info!("webrtc: public address now {a}");
                    self.public.push(a);
                    if self.public.len() > 4 {
                        self.public.remove(0);
                    }
                }
                return;
            }
        }
        let Some(id) = self.route(from, bytes, now) else {
            self.unclaimed += 1;
            return;
        };
        if let Some(e) = self.peers.get_mut(&id) {
            e.peer.handle_receive(now, from, self.local, bytes);
        }
        self.after(id, answers).await;
    }

    async fn timers_due(&mut self, answers: &mpsc::Sender<AnswerMsg>) {
        let now = Instant::now();
        // STUN refresh.
        if now >= self.next_refresh {
            self.next_refresh = now + self.config.stun_refresh;
            self.bindings.retain(|b| b.poll_timeout().is_some());
            for s in self.config.stun_servers.clone() {
                if self.bindings.len() < 8 {
                    self.bindings.push(Binding::new(s, now));
                }
            }
        }
        let mut sends = Vec::new();
        for b in &mut self.bindings {
            if let Some(x) = b.poll_transmit(now) {
                sends.push(x);
            }
        }
        // Birthday probes: one datagram per due probe (a 20-byte STUN binding request with
        // a random transaction id, which the browser's NAT drops or its ICE ignores). All
        // searches towards one address share one sweep: no port is probed twice.
        for p in &mut self.probes {
            while p.next <= now && p.left > 0 {
                let port = self
                    .sweeps
                    .entry(p.ip)
                    .or_insert_with(Sweep::new)
                    .next_port();
                let req = stun::Builder::new(stun::BINDING_REQUEST, rand::random()).finish();
                sends.push((SocketAddr::new(p.ip, port), req));
                p.left -= 1;
                p.next += p.interval;
                if let Some(e) = self.peers.get_mut(&p.peer) {
                    e.probes += 1;
                }
            }
        }
        let peers = &self.peers;
        let before = self.probes.len();
        self.probes.retain(|p| {
            p.left > 0
                && peers
                    .get(&p.peer)
                    .is_some_and(|e| e.peer.is_alive() && e.peer.connected_at().is_none())
        });
        if self.probes.len() != before {
            let probes = &self.probes;
            self.sweeps
                .retain(|ip, _| probes.iter().any(|p| p.ip == *ip));
        }
        for (to, bytes) in sends {
            let _ = self.socket.send_to(&bytes, to).await;
        }
        // Peer timers: take the due ones first (driving a peer re-arms its timer, maybe in
        // the past: that waits for the next turn of the loop).
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            due.push(id);
        }
        due.sort_unstable();
        due.dedup();
        for id in due {
            let mut birthday = None;
            if let Some(e) = self.peers.get_mut(&id) {
                if e.birthday_at.is_some_and(|t| t <= now) {
                    e.birthday_at = None;
                    if e.peer.connected_at().is_none() {
                        birthday = Some(e.peer.remote_public().to_vec());
                    }
                }
                if e.deadline <= now {
                    e.peer.handle_timeout(now);
                }
            }
            if let (Some(addrs), Some(shape)) = (birthday, self.config.birthday.clone()) {
                let mut ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
                ips.dedup();
                for ip in ips {
                    self.start_probe(id, ip, &shape, now);
                }
            }
            self.after(id, answers).await;
        }
    }

    /// After peer `id` was driven: send its datagrams, start its requests, re-arm its timer,
    /// forget it if it closed.
    async fn after(&mut self, id: u64, answers: &mpsc::Sender<AnswerMsg>) {
        let Some(e) = self.peers.get_mut(&id) else {
            return;
        };
        while let Some(t) = e.peer.poll_transmit() {
            if let Err(err) = self.socket.send_to(&t.contents, t.destination).await {
                tracing::debug!("webrtc: send to {}: {err}", t.destination);
            }
        }
        while let Some((ch, rid, path)) = e.peer.poll_request() {
            let api = self.api.clone();
            let tx = answers.clone();
            tokio::spawn(async move {
                let ans = api.get(&path).await;
                // Served over WebRTC counts as served, as the HTTP gateway counts its answers
                // (the instance's contribution table reads these counters).
                api.config().counters.add(ans.body.len() as u64);
                let _ = tx.send((id, ch, rid, ans)).await;
            });
        }
        while let Some(ev) = e.peer.poll_event() {
            match ev {
                Event::Connected { remote } => {
                    tracing::debug!("webrtc: peer {id} connected from {remote:?}");
                }
                Event::ChannelRefused { code, reason } => {
                    tracing::debug!("webrtc: peer {id}: channel refused: {code:?} {reason}");
                }
                _ => {}
            }
        }
        // Re-arm (the entry may have been taken by timers_due).
        let deadline = e.peer.poll_timeout();
        if e.birthday_at != Some(e.deadline) {
            self.timers.remove(&(e.deadline, id));
        }
        e.deadline = deadline;
        self.timers.insert((deadline, id));
        if !e.peer.is_alive() {
            let Some(e) = self.peers.remove(&id) else {
                return;
            };
            self.timers.remove(&(e.deadline, id));
            if let Some(t) = e.birthday_at {
                self.timers.remove(&(t, id));
            }
            self.by_ufrag.remove(e.peer.ufrag());
            if self.by_remote_ufrag.get(e.peer.remote_ufrag()) == Some(&id) {
                self.by_remote_ufrag.remove(e.peer.remote_ufrag());
            }
            self.by_addr.retain(|_, v| *v != id);
            self.probes.retain(|p| p.peer != id);
            tracing::debug!(
                "webrtc: peer {id} closed: {}",
                e.peer.close_reason().unwrap_or("closed")
            );
            self.closed.push(peer_status(id, &e));
            if self.closed.len() > 64 {
                self.closed.remove(0);
            }
        }
    }

    async fn shutdown(&mut self) {
        let now = Instant::now();
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in &ids {
            if let Some(e) = self.peers.get_mut(id) {
                e.peer.close(now, GoAwayCode::Shutdown, "shutting down");
                while let Some(t) = e.peer.poll_transmit() {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
            }
        }
    }
}

fn peer_status(id: u64, e: &Entry) -> PeerStatus {
    PeerStatus {
        id,
        connect_ms: e
            .peer
            .connected_at()
            .map(|t| (t - e.peer.created_at()).as_millis() as u64),
        remote: e.peer.remote(),
        channels: e.peer.channels(),
        stats: e.peer.stats(),
        closed: if e.peer.is_alive() {
            None
        } else {
            Some(e.peer.close_reason().unwrap_or("closed").to_owned())
        },
        probes: e.probes,
    }
}

#[cfg(test)]
mod tests {
    use super::Sweep;

    #[test]
    fn a_sweep_visits_every_port_once() {
        for _ in 0..3 {
            let mut s = Sweep::new();
            let mut seen = vec![false; 65_536];
            for _ in 0..Sweep::N {
                let p = usize::from(s.next_port());
                assert!(p >= 1024);
                assert!(!seen[p], "port {p} twice");
                seen[p] = true;
            }
        }
    }
}
