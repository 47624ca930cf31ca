//! A home peer: a node behind NAT that serves browsers over WebRTC, signaled through its
//! instance (`protocol/webrtc.md` §2.1, `protocol/gateway.md` §7.3). It opens no port: it
//! keeps one outbound long-poll to the instance (`POST /v1/signal/poll`, signed with its node
//! key; `https://` with the gateway's `tls` feature), answers each browser's offer through the
//! [`Server`] and signs the answer with its node key, and answers the instance's health checks
//! (the last block of each community log, the gateway's own bodies, signed).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use peerhost_gateway::Cores;
//! use peerhost_ids::KeyPair;
//! use peerhost_webrtc::home::{HomeOptions, HomePeer};
//!
//! let cores = Cores::new(); // the node's logs
//! let node_key = KeyPair::generate(); // the daemon's identity
//! let home =
//!     HomePeer::start(cores, node_key, "https://instance.example", HomeOptions::default())
//!         .await?;
//! println!("serving browsers as {}", hex::encode(home.key()));
//! # Ok(())
//! # }
//! ```
//!
//! Ownership: [`HomePeer::start`] learns the instance's ICE servers with a first, immediate
//! poll, binds the [`Server`] (one UDP socket) with their STUN servers, then spawns the poll
//! loop, which spawns one task per offer or check (at most [`MAX_TASKS`] at once). Failed
//! polls are retried after 1 s, doubling to 30 s. [`HomePeer::shutdown`] stops the loop and
//! the server.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerhost_gateway::api::Api;
use peerhost_gateway::signal::{
    CheckAnswer, CheckResult, IceServer, OfferAnswer, PollRequest, PollResponse, Task, sign_answer,
};
use peerhost_gateway::{Config as GatewayConfig, LogSource, auth, client};
use peerhost_ids::KeyPair;
use tokio::sync::{Semaphore, watch};

use crate::driver::{self, Server};

/// Offers and checks handled at once at most.
pub const MAX_TASKS: usize = 32;

/// How a home peer runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HomeOptions {
    /// The WebRTC driver's configuration; the instance's STUN servers are added to
    /// `stun_servers`.
    pub rtc: driver::Config,
    /// The gateway limits its answers follow (range caps, store reads at once).
    pub gateway: GatewayConfig,
    /// The UDP address to bind; `None`: the address of the interface that routes towards
    /// the instance's STUN server (or the instance), port 0.
    pub bind: Option<SocketAddr>,
    /// How long one poll may take before it is given up (the instance answers within 25 s).
    pub poll_timeout: Duration,
    /// How long the first poll (learning the ICE servers) may take in [`HomePeer::start`].
    pub first_poll_timeout: Duration,
}

impl Default for HomeOptions {
    fn default() -> Self {
        Self {
            rtc: driver::Config::default(),
            gateway: GatewayConfig::default(),
            bind: None,
            poll_timeout: Duration::from_secs(40),
            first_poll_timeout: Duration::from_secs(10),
        }
    }
}

impl HomeOptions {
    /// Binding the UDP socket at `addr`.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// With this driver configuration.
    pub fn rtc(mut self, config: driver::Config) -> Self {
        self.rtc = config;
        self
    }

    /// With these gateway limits.
    pub fn gateway(mut self, config: GatewayConfig) -> Self {
        self.gateway = config;
        self
    }
}

/// What the home peer did, and what the instance said of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HomeStatus {
    /// Polls answered by the instance.
    pub polls: u64,
    /// Whether the last poll succeeded.
    pub connected: bool,
    /// Whether the instance lists us to readers (it checked us and we passed).
    pub listed: bool,
    /// Why not, as the instance says (`NOT_CHECKED`, `BAD_PROOF`, `TIMEOUT`, …).
    pub problem: Option<String>,
    /// The last error talking to the instance, in words.
    pub last_error: Option<String>,
    /// The last poll's failure, by kind (`None` once a poll succeeds).
    pub failure: Option<PollFailure>,
    /// Offers answered.
    pub answered: u64,
    /// Offers refused (the driver was full, the offer did not parse).
    pub refused: u64,
    /// Health checks answered.
    pub checks: u64,
    /// The ICE servers the instance gives browsers.
    pub ice_servers: Vec<IceServer>,
}

/// Why a poll failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PollFailure {
    /// The instance could not be reached: no connection, TLS failed, no answer in time.
    #[error("cannot reach the instance {url}: {reason}")]
    Unreachable {
        /// The instance's base URL.
        url: String,
        /// Why, in words.
        reason: String,
    },
    /// The instance answered with an error status: it refused our poll (a 4xx such as
    /// `REFUSED_ADDRESS`, `ADDRESS_CAP`, `CLOCK_SKEW`; `503 FULL`) or is failing (5xx).
    #[error("the instance {url} refused our registration: HTTP {status} {code}{}", message_suffix(.message))]
    Refused {
        /// The instance's base URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error code of the body (`REFUSED_ADDRESS`, …), or empty.
        code: String,
        /// The body's message, if any (at most 200 bytes, control characters replaced).
        message: String,
    },
    /// The answer was not a poll response (not a peerhost instance, or a newer one).
    #[error("the instance {url} sent an answer we cannot read: {reason}")]
    BadResponse {
        /// The instance's base URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

fn message_suffix(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// The code and message of a gateway error body (`{"error": CODE, "message": …}`), cleaned
/// for one line.
fn error_body(body: &[u8]) -> (String, String) {
    let clean = |s: &str| -> String {
        s.chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => (
            clean(v["error"].as_str().unwrap_or_default()),
            clean(v["message"].as_str().unwrap_or_default()),
        ),
        Err(_) => (
            String::new(),
            clean(&String::from_utf8_lossy(&body[..body.len().min(200)])),
        ),
    }
}

/// Why a home peer did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// The instance URL is not `http://HOST[:PORT]` or `https://HOST[:PORT]`.
    #[error("the instance URL {0:?} is not http(s)://HOST[:PORT]")]
    Url(String),
    /// Binding the UDP socket failed.
    #[error("cannot bind the WebRTC socket: {0}")]
    Bind(#[from] io::Error),
}

/// A running home peer. Dropping it does not stop it: call [`HomePeer::shutdown`].
#[derive(Debug)]
pub struct HomePeer {
    server: Server,
    key: [u8; 32],
    status: Arc<Mutex<HomeStatus>>,
    stop: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The instance's base URL, checked: `http(s)://HOST[:PORT]`, no path.
fn base_url(url: &str) -> Result<String, HomeError> {
    let base = url.trim().trim_end_matches('/');
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .ok_or_else(|| HomeError::Url(url.to_owned()))?;
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(HomeError::Url(url.to_owned()));
    }
    Ok(base.to_owned())
}

/// The host:port of the instance, for finding our interface.
fn instance_authority(base: &str) -> String {
    let (https, rest) = match base.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (false, base.trim_start_matches("http://")),
    };
    let has_port = rest.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':')
    });
    if has_port && !rest.ends_with(']') {
        rest.to_owned()
    } else {
        format!("{rest}:{}", if https { 443 } else { 80 })
    }
}

/// The STUN servers among `ice`, resolved (at most 8).
async fn stun_addrs(ice: &[IceServer]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for host in ice.iter().flat_map(IceServer::stun_hosts) {
        let host = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host
        } else {
            format!("{host}:3478")
        };
        if let Ok(Ok(mut addrs)) =
            tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host(&host)).await
        {
            if let Some(a) = addrs.find(SocketAddr::is_ipv4) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        if out.len() >= 8 {
            break;
        }
    }
    out
}

/// The local address of the interface that routes towards `to` (no packet is sent).
async fn interface_towards(to: &str) -> io::Result<SocketAddr> {
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
    socket.connect(to).await?;
    Ok(SocketAddr::new(socket.local_addr()?.ip(), 0))
}

/// The signed link to the instance.
struct Link<S> {
    base: String,
    key_pair: KeyPair,
    api: Api<S>,
    status: Arc<Mutex<HomeStatus>>,
    started_ms: u64,
}

struct Poller<S> {
    link: Link<S>,
    server: Server,
    poll_timeout: Duration,
    own_stun: Vec<SocketAddr>,
    /// A connection to the instance opened ahead of the next answer (TCP and TLS done): a
    /// browser waits for that answer, and the handshakes were a third of the signaling's time
    /// on loopback (BENCHMARKS.md).
    warm: Arc<Mutex<Option<client::Warm>>>,
}

/// A warm connection older than this is not used (the instance's listener closes a
/// connection idle for 30 s).
const WARM_MAX_AGE: Duration = Duration::from_secs(20);
/// How often the warm connection is looked at (and replaced when too old).
const WARM_EVERY: Duration = Duration::from_secs(5);
/// How long opening a warm connection may take.
const WARM_TIMEOUT: Duration = Duration::from_secs(5);

impl<S: LogSource> Link<S> {
    async fn poll(&self, wait: bool, timeout: Duration) -> Result<PollResponse, PollFailure> {
        let counters = &self.api.config().counters;
        let body = serde_json::to_vec(
            &PollRequest::new(counters.bytes(), counters.requests(), self.started_ms, wait)
                // Browsers may send offers before their candidates (Task::Candidate follows).
                .with_trickle(true),
        )
        .unwrap_or_default();
        let url = format!("{}/v1/signal/poll", self.base);
        let r = client::send_signed(
            "POST",
            &url,
            Some(("application/json", &body)),
            &self.key_pair,
            timeout,
        )
        .await
        .map_err(|e| PollFailure::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        if r.status != 200 {
            let (code, message) = error_body(&r.body);
            return Err(PollFailure::Refused {
                url: self.base.clone(),
                status: r.status,
                code,
                message,
            });
        }
        PollResponse::parse(&r.body).map_err(|e| PollFailure::BadResponse {
            url: self.base.clone(),
            reason: e.to_string(),
        })
    }

    fn record(&self, r: &Result<PollResponse, PollFailure>) {
        let mut s = lock(&self.status);
        match r {
            Ok(p) => {
                s.polls += 1;
                s.connected = true;
                s.listed = p.listed;
                s.problem.clone_from(&p.problem);
                s.last_error = None;
                s.failure = None;
                s.ice_servers.clone_from(&p.ice_servers);
            }
            Err(e) => {
                s.connected = false;
                s.last_error = Some(e.to_string());
                s.failure = Some(e.clone());
            }
        }
    }
}

impl<S: LogSource> Poller<S> {
    /// The warm connection, if it is fresh enough; a new one is opened in the background.
    fn take_warm(&self) -> Option<client::Warm> {
        let warm = lock(&self.warm).take().filter(|w| w.age() < WARM_MAX_AGE);
        self.refill_warm();
        warm
    }

    /// Open a warm connection in the background unless a fresh one is there.
    fn refill_warm(&self) {
        {
            let mut slot = lock(&self.warm);
            if slot.as_ref().is_some_and(|w| w.age() < WARM_MAX_AGE) {
                return;
            }
            *slot = None;
        }
        let slot = self.warm.clone();
        let base = self.link.base.clone();
        tokio::spawn(async move {
            match client::Warm::open(&base, WARM_TIMEOUT).await {
                Ok(w) => {
                    let mut slot = lock(&slot);
                    if slot.is_none() {
                        *slot = Some(w);
                    }
                }
                Err(e) => tracing::debug!("webrtc signaling: no warm connection: {e}"),
            }
        });
    }

    /// Post an answer (on the warm connection if there is one; on a fresh one if that
    /// failed); once more after 250 ms if the instance was busy or unreachable (a browser
    /// waits for it), never for a refusal (4xx other than 429).
    async fn post_answer(&self, id: &[u8; 16], body: &serde_json::Value) {
        let url = format!("{}/v1/signal/answer/{}", self.link.base, hex::encode(id));
        let timeout = Duration::from_secs(10);
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let warm = if attempt == 0 { self.take_warm() } else { None };
            let r = match warm {
                Some(w) => match w.post_json(&url, body, timeout).await {
                    // Closed under us (nothing answered): at once on a fresh connection.
                    Err(client::ClientError::Io(_) | client::ClientError::BadResponse(_)) => {
                        client::post_json(&url, body, timeout).await
                    }
                    r => r,
                },
                None => client::post_json(&url, body, timeout).await,
            };
            match r {
                Ok(r) if r.status == 200 => return,
                Ok(r) if r.status == 429 || r.status >= 500 => tracing::debug!(
                    "webrtc signaling: answer not taken (HTTP {}), attempt {}",
                    r.status,
                    attempt + 1
                ),
                Ok(r) => {
                    tracing::debug!(
                        "webrtc signaling: answer refused: HTTP {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                    );
                    return;
                }
                Err(e) => tracing::debug!("webrtc signaling: cannot post an answer: {e}"),
            }
        }
    }

    async fn task(&self, task: Task) {
        match task {
            Task::Offer { id, sdp } => {
                let t0 = std::time::Instant::now();
                let body = match self.server.answer(sdp.clone()).await {
                    Ok(a) => {
                        lock(&self.link.status).answered += 1;
                        let signature = sign_answer(&self.link.key_pair, &sdp, &a.sdp);
                        OfferAnswer::Answer {
                            sdp: a.sdp,
                            signature,
                        }
                    }
                    Err(e) => {
                        lock(&self.link.status).refused += 1;
                        tracing::debug!("webrtc signaling: offer refused: {e}");
                        OfferAnswer::Refused(e.to_string())
                    }
                };
                let answered = t0.elapsed();
                self.post_answer(&id, &body.to_json()).await;
                tracing::debug!(
                    answer_us = answered.as_micros(),
                    posted_us = t0.elapsed().as_micros(),
                    "webrtc signaling: offer answered"
                );
            }
            Task::Candidate {
                ufrag, candidate, ..
            } => {
                let _ = self.server.candidate(ufrag, candidate).await;
            }
            Task::Check { id, paths } => {
                let mut results = Vec::with_capacity(paths.len());
                for p in &paths {
                    let a = self.link.api.get(p).await;
                    results.push(CheckResult {
                        status: a.status,
                        body: a.body.to_vec(),
                    });
                }
                lock(&self.link.status).checks += 1;
                let answer = CheckAnswer::sign(&self.link.key_pair, &id, results);
                self.post_answer(&id, &answer.to_json()).await;
            }
        }
    }

    /// Point the driver at the instance's STUN servers (and ours).
    async fn use_stun(&self, ice: &[IceServer], current: &mut Vec<SocketAddr>) {
        let mut want = self.own_stun.clone();
        for a in stun_addrs(ice).await {
            if !want.contains(&a) {
                want.push(a);
            }
        }
        if &want != current {
            *current = want.clone();
            let _ = self.server.set_stun_servers(want).await;
        }
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>, mut stun: Vec<SocketAddr>) {
        let tasks = Arc::new(Semaphore::new(MAX_TASKS));
        let mut backoff = Duration::from_secs(1);
        // The warm connection for answers, kept fresh while the loop runs.
        let keeper = {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    if lock(&me.link.status).connected {
                        me.refill_warm();
                    }
                    tokio::time::sleep(WARM_EVERY).await;
                }
            })
        };
        let _keeper = AbortOnDrop(keeper);
        // The failure last logged: a lasting one is logged once (at warn), not at every retry.
        let mut logged = lock(&self.link.status).failure.clone();
        loop {
            let r = tokio::select! {
                r = self.link.poll(true, self.poll_timeout) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            self.link.record(&r);
            match r {
                Ok(p) => {
                    backoff = Duration::from_secs(1);
                    if logged.take().is_some() {
                        tracing::info!(
                            "webrtc signaling: the instance {} answers again",
                            self.link.base
                        );
                    }
                    self.use_stun(&p.ice_servers, &mut stun).await;
                    for t in p.tasks {
                        // A trickled candidate: to the driver at once, in order (nothing to
                        // answer; one that overtook its offer waits there for it).
                        if let Task::Candidate {
                            ufrag, candidate, ..
                        } = t
                        {
                            let _ = self.server.candidate(ufrag, candidate).await;
                            continue;
                        }
                        let Ok(permit) = tasks.clone().acquire_owned().await else {
                            return;
                        };
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.task(t).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    if logged.as_ref() == Some(&e) {
                        tracing::debug!("webrtc signaling: {e}; retrying in {backoff:?}");
                    } else {
                        tracing::warn!("webrtc signaling: {e}; retrying (backoff to 30 s)");
                        logged = Some(e);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HomePeer {
    /// Start serving `source` to browsers through the instance at `instance_url`
    /// (`http(s)://HOST[:PORT]`), signing with `key_pair` (the node key). Returns once the
    /// UDP socket is bound; an instance that does not answer the first poll is retried in the
    /// background (its STUN servers are used once it answers).
    pub async fn start<S: LogSource>(
        source: S,
        key_pair: KeyPair,
        instance_url: &str,
        options: HomeOptions,
    ) -> Result<Self, HomeError> {
        let base = base_url(instance_url)?;
        let api = Api::new(source, options.gateway.clone());
        let status = Arc::new(Mutex::new(HomeStatus::default()));
        // The first poll: the ICE servers (for our public address) and that the instance
        // knows us, before the socket is bound.
        let link = Link {
            base: base.clone(),
            key_pair: key_pair.clone(),
            api: api.clone(),
            status: status.clone(),
            started_ms: auth::now_ms(),
        };
        let first = link.poll(false, options.first_poll_timeout).await;
        link.record(&first);
        let mut config = options.rtc.clone();
        match &first {
            Ok(p) => {
                for a in stun_addrs(&p.ice_servers).await {
                    if !config.stun_servers.contains(&a) {
                        config.stun_servers.push(a);
                    }
                }
            }
            Err(e) => tracing::warn!("webrtc signaling: {e}; retrying in the background"),
        }
        let bind = match options.bind {
            Some(b) => b,
            None => {
                let towards = config
                    .stun_servers
                    .first()
                    .map_or_else(|| instance_authority(&base), ToString::to_string);
                interface_towards(&towards).await?
            }
        };
        let stun = config.stun_servers.clone();
        let server = Server::bind(bind, api, config).await?;
        let poller = Poller {
            link,
            server: server.clone(),
            poll_timeout: options.poll_timeout,
            own_stun: options.rtc.stun_servers.clone(),
            warm: Arc::default(),
        };
        let (stop, rx) = watch::channel(false);
        // Tasks the first poll carried (normally none) wait for the next poll.
        tokio::spawn(Arc::new(poller).run(rx, stun));
        Ok(Self {
            server,
            key: key_pair.public_key(),
            status,
            stop,
        })
    }

    /// The WebRTC server (its addresses, its connections).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The node key browsers check our answers against.
    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    /// What happened so far.
    pub fn status(&self) -> HomeStatus {
        lock(&self.status).clone()
    }

    /// Stop polling and close every connection.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_urls() {
        assert_eq!(base_url("http://a:1/").unwrap(), "http://a:1");
        assert_eq!(base_url("https://a.example").unwrap(), "https://a.example");
        for bad in ["ftp://a", "http://", "http://a/b", "a:1"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
        assert_eq!(instance_authority("http://a:1"), "a:1");
        assert_eq!(instance_authority("https://a.example"), "a.example:443");
        assert_eq!(instance_authority("http://[::1]"), "[::1]:80");
        assert_eq!(instance_authority("http://[::1]:8"), "[::1]:8");
    }
}
