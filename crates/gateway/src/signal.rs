//! WebRTC signaling through the instance (`protocol/gateway.md` §7.3, `protocol/webrtc.md`
//! §2.1): a home peer behind NAT, with no inbound port, keeps an outbound long-poll to the
//! instance; a browser's offer reaches it through that poll, its signed answer comes back the
//! same way; the instance health-checks it over the same path and lists the healthy ones by
//! node key.
//!
//! ```text
//! home peer                               instance                              browser
//!   POST /v1/signal/poll (signed) ──▶ waits ≤ 25 s
//!                                     ◀── POST /v1/signal {peer: K, sdp: offer}
//!   ◀── {tasks: [{id, offer}]}
//!   POST /v1/signal/answer/{id}
//!     {sdp, signature} ──────────────▶ verify the signature against K and the offer
//!                                     ──▶ {peer: K, sdp: answer, signature}
//!   ◀── {tasks: [{id, check: [path…]}]}   (every check period)
//!   POST /v1/signal/answer/{id}
//!     {results, signature} ──────────▶ verify each PHR1 proof against the instance's head
//! ```
//!
//! Ownership: the [`Relay`] (one per [`crate::Instance`]) holds the WebRTC peers' table, the
//! tasks waiting for a poll, the offers and checks waiting for an answer, and the per-client
//! offer budget, all bounded ([`SignalLimits`]). The HTTP handlers (`http.rs` registers them)
//! and the check loop ([`run_checks`], joined into [`crate::run_checks`]) share it. The
//! message types and signatures here are what the peer side (`peerhost-webrtc`'s home peer)
//! uses too; their decoders are fuzzed (`fuzz/fuzz_targets/signal_messages.rs`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use peerhost_ids::{Key, verify_signature};
use rand::seq::SliceRandom;
use tokio::sync::{Notify, oneshot};

use crate::api::ApiError;
use crate::instance::{
    Contribution, Failure, InstanceOptions, head_to_prove, judge_last_block, last_block_path,
};
use crate::limit::ClientId;
use crate::source::LogSource;
use crate::{address, auth};

mod messages;
pub use messages::*;

// ---------------------------------------------------------------------------------------------
// The relay

fn now_ms() -> u64 {
    auth::now_ms()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A reply to whoever waits on a task.
#[derive(Debug)]
enum Reply {
    Answer(String, [u8; 64]),
    Refused(String),
    BadAnswer,
    Check(CheckAnswer),
}

#[derive(Debug)]
enum Waiting {
    Offer { offer_hash: [u8; 32] },
    Check,
}

#[derive(Debug)]
struct Pending {
    peer: [u8; 32],
    kind: Waiting,
    client: Option<ClientId>,
    reply: oneshot::Sender<Reply>,
}

#[derive(Debug)]
struct RtcPeer {
    ip: IpAddr,
    notify: Arc<Notify>,
    /// The newest poll's number: older polls still waiting answer with no task.
    generation: u64,
    polls: u32,
    tasks: VecDeque<Task>,
    checking: bool,
    /// Its newest poll said it takes trickled candidates.
    trickle: bool,
    row: Contribution,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
    pending: usize,
}

/// Candidate tasks queued for one peer at most (not yet taken by a poll).
const MAX_QUEUED_CANDIDATES: usize = 64;
/// What one trickled candidate costs of a client's offer budget (an offer costs 1).
const CANDIDATE_COST: f64 = 0.25;

#[derive(Debug, Default)]
struct State {
    peers: HashMap<[u8; 32], RtcPeer>,
    pending: HashMap<TaskId, Pending>,
    clients: HashMap<ClientId, Bucket>,
}

/// Why an offer was not relayed (the error a browser gets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// No live WebRTC peer with that key here.
    #[error("no WebRTC peer with this key is connected to this instance")]
    UnknownPeer,
    /// That peer has too many offers waiting.
    #[error("the peer has too many offers waiting; try another peer")]
    PeerBusy,
    /// This client sent too many offers.
    #[error("too many offers from this client; retry in a second")]
    TooMany,
    /// The peer did not answer in time.
    #[error("the peer did not answer in time")]
    Timeout,
    /// The peer refused the offer.
    #[error("the peer refused the offer: {0}")]
    Refused(String),
    /// A trickle offer (or candidate) for a peer that takes no trickled candidates.
    #[error("this peer takes whole offers only; send the offer with its candidates")]
    NoTrickle,
    /// The peer's answer was not signed by its key.
    #[error("the peer's answer is not signed by its key")]
    BadAnswer,
}

impl OfferError {
    /// The HTTP status and code.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            Self::UnknownPeer => (404, "UNKNOWN_PEER"),
            Self::PeerBusy => (503, "PEER_BUSY"),
            Self::TooMany => (429, "TOO_MANY_REQUESTS"),
            Self::Timeout => (504, "PEER_TIMEOUT"),
            Self::Refused(_) => (502, "PEER_REFUSED"),
            Self::NoTrickle => (409, "NO_TRICKLE"),
            Self::BadAnswer => (502, "BAD_ANSWER"),
        }
    }
}

/// Why a poll was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// The address is not allowed (private, without `--allow-private-peers`).
    #[error("WebRTC peers from this address are not accepted")]
    RefusedAddress,
    /// Too many WebRTC peers at this address or in its network.
    #[error("too many WebRTC peers from this address or its network")]
    AddressCap,
    /// The table is full of live peers.
    #[error("the WebRTC peer table is full")]
    Full,
}

impl PollError {
    /// The HTTP status and code.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            Self::RefusedAddress => (400, "REFUSED_ADDRESS"),
            Self::AddressCap => (403, "ADDRESS_CAP"),
            Self::Full => (503, "FULL"),
        }
    }
}

/// The instance's WebRTC side: peers that poll, tasks for them, answers being waited for.
#[derive(Debug)]
pub struct Relay {
    limits: SignalLimits,
    options: InstanceOptions,
    ice: Vec<IceServer>,
    state: Mutex<State>,
}

/// Removes a pending task when its waiter goes away (timeout, a browser that hung up).
struct PendingGuard<'a> {
    relay: &'a Relay,
    id: TaskId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.relay.state);
        if let Some(p) = s.pending.remove(&self.id) {
            if let Some(c) = p.client {
                if let Some(b) = s.clients.get_mut(&c) {
                    b.pending = b.pending.saturating_sub(1);
                }
            }
            if let Some(peer) = s.peers.get_mut(&p.peer) {
                peer.tasks.retain(|t| t.id() != &self.id);
                if matches!(p.kind, Waiting::Check) {
                    peer.checking = false;
                }
            }
        }
    }
}

impl Relay {
    /// A relay with these limits, the instance's options (caps, lifetimes) and ICE servers.
    pub fn new(limits: SignalLimits, options: InstanceOptions, ice: Vec<IceServer>) -> Self {
        Self {
            limits,
            options,
            ice,
            state: Mutex::default(),
        }
    }

    /// The ICE servers browsers get.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice
    }

    /// The limits.
    pub fn limits(&self) -> &SignalLimits {
        &self.limits
    }

    fn alive(&self, p: &RtcPeer, now: u64) -> bool {
        p.polls > 0 || p.row.last_seen_ms + ms(self.limits.poll_wait) + 10_000 >= now
    }

    fn fresh(&self, p: &RtcPeer, now: u64) -> bool {
        p.polls > 0 || p.row.last_seen_ms + ms(self.options.stale_after) >= now
    }

    /// Up to `limit` node keys (hex) of live, healthy WebRTC peers, a random sample.
    pub fn listed(&self, limit: usize) -> Vec<String> {
        let now = now_ms();
        let s = lock(&self.state);
        let all: Vec<String> = s
            .peers
            .iter()
            .filter(|(_, p)| p.row.healthy && self.alive(p, now))
            .map(|(k, _)| hex::encode(k))
            .collect();
        drop(s);
        let mut rng = rand::thread_rng();
        all.choose_multiple(&mut rng, limit).cloned().collect()
    }

    /// The WebRTC rows of the contribution table.
    pub fn contributions(&self) -> Vec<Contribution> {
        let now = now_ms();
        let s = lock(&self.state);
        let mut rows: Vec<Contribution> = s
            .peers
            .values()
            .map(|p| {
                let mut r = p.row.clone();
                if !self.alive(p, now) && r.problem.is_none() {
                    r.problem = Some("NOT_POLLING".into());
                }
                r
            })
            .collect();
        rows.sort_by(|a, b| a.url.cmp(&b.url));
        rows
    }

    /// A signed poll from `key` at `ip`: registers or refreshes the peer, records its
    /// counters.
    fn join(&self, key: [u8; 32], ip: IpAddr, req: &PollRequest) -> Result<u64, PollError> {
        let ip = address::unmap(ip);
        let policy = self.options.policy();
        if policy.check(ip).is_err() {
            return Err(PollError::RefusedAddress);
        }
        let now = now_ms();
        let mut s = lock(&self.state);
        let forget = ms(self.options.forget_after);
        s.peers
            .retain(|_, p| p.polls > 0 || p.row.last_seen_ms + forget >= now);
        if !s.peers.contains_key(&key) {
            let capped = !(self.options.allow_private_peers && address::classify(ip).is_some());
            if capped {
                let prefix = address::prefix_of(ip);
                let same_ip = s.peers.values().filter(|p| p.ip == ip).count();
                let same_net = s
                    .peers
                    .values()
                    .filter(|p| address::prefix_of(p.ip) == prefix)
                    .count();
                if same_ip >= self.options.max_per_ip.max(1)
                    || same_net >= self.options.max_per_prefix.max(1)
                {
                    self.evict(&mut s, now, |p| {
                        p.ip == ip || address::prefix_of(p.ip) == prefix
                    })
                    .ok_or(PollError::AddressCap)?;
                }
            }
            if s.peers.len() >= self.limits.max_peers.max(1) {
                self.evict(&mut s, now, |_| true).ok_or(PollError::Full)?;
            }
            s.peers.insert(
                key,
                RtcPeer {
                    ip,
                    notify: Arc::new(Notify::new()),
                    generation: 0,
                    polls: 0,
                    tasks: VecDeque::new(),
                    checking: false,
                    trickle: false,
                    row: Contribution {
                        url: format!("rtc://{}", hex::encode(key)),
                        key: hex::encode(key),
                        proven: true,
                        problem: Some("NOT_CHECKED".into()),
                        first_seen_ms: now,
                        transport: Some("webrtc".into()),
                        ..Contribution::default()
                    },
                },
            );
        }
        let p = s.peers.get_mut(&key).ok_or(PollError::Full)?;
        p.ip = ip;
        p.trickle = req.trickle;
        p.generation += 1;
        p.row.last_seen_ms = now;
        p.row.bytes_served = req.bytes;
        p.row.requests = req.requests;
        p.row.started_ms = req.started_ms;
        // Older polls of this key return now, with no task.
        p.notify.notify_waiters();
        Ok(p.generation)
    }

    /// Remove one peer that is not live (stale first, then failing), matching `within`.
    fn evict(&self, s: &mut State, now: u64, within: impl Fn(&RtcPeer) -> bool) -> Option<()> {
        let victim = s
            .peers
            .iter()
            .filter(|(_, p)| within(p))
            .filter_map(|(k, p)| {
                let rank = if !self.fresh(p, now) {
                    0
                } else if !p.row.healthy {
                    1
                } else {
                    return None;
                };
                Some(((rank, p.row.last_seen_ms), *k))
            })
            .min()
            .map(|(_, k)| k)?;
        s.peers.remove(&victim);
        Some(())
    }

    /// Serve one poll: up to [`TASKS_PER_POLL`] tasks, waiting up to `poll_wait` for one.
    pub async fn poll(
        &self,
        key: [u8; 32],
        ip: IpAddr,
        req: PollRequest,
    ) -> Result<PollResponse, PollError> {
        let generation = self.join(key, ip, &req)?;
        let notify = lock(&self.state)
            .peers
            .get(&key)
            .map(|p| p.notify.clone())
            .ok_or(PollError::Full)?;
        let deadline = tokio::time::Instant::now() + self.limits.poll_wait;
        self.polling(&key, 1);
        let _polling = PollGuard { relay: self, key };
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = lock(&self.state);
                let Some(p) = s.peers.get_mut(&key) else {
                    break;
                };
                if p.generation != generation {
                    break; // a newer poll took over
                }
                if !p.tasks.is_empty() || !req.wait {
                    let n = p.tasks.len().min(TASKS_PER_POLL);
                    let tasks: Vec<Task> = p.tasks.drain(..n).collect();
                    p.row.last_seen_ms = now_ms();
                    return Ok(self.response(p, tasks));
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut s = lock(&self.state);
        let p = s.peers.get_mut(&key).ok_or(PollError::Full)?;
        p.row.last_seen_ms = now_ms();
        Ok(self.response(p, Vec::new()))
    }

    fn response(&self, p: &RtcPeer, tasks: Vec<Task>) -> PollResponse {
        PollResponse {
            tasks,
            ice_servers: self.ice.clone(),
            listed: p.row.healthy,
            problem: p.row.problem.clone(),
        }
    }

    fn polling(&self, key: &[u8; 32], delta: i32) {
        if let Some(p) = lock(&self.state).peers.get_mut(key) {
            p.polls = p.polls.saturating_add_signed(delta);
            if delta < 0 {
                p.row.last_seen_ms = now_ms();
            }
        }
    }

    /// Queue `task` for `peer` and wait for its answer.
    fn enqueue(
        &self,
        s: &mut State,
        peer: [u8; 32],
        kind: Waiting,
        client: Option<ClientId>,
        make: impl FnOnce(TaskId) -> Task,
    ) -> Option<(TaskId, oneshot::Receiver<Reply>)> {
        let p = s.peers.get_mut(&peer)?;
        let id: TaskId = rand::random();
        let (tx, rx) = oneshot::channel();
        p.tasks.push_back(make(id));
        p.notify.notify_waiters();
        s.pending.insert(
            id,
            Pending {
                peer,
                kind,
                client,
                reply: tx,
            },
        );
        Some((id, rx))
    }

    /// `client`'s budget (full for a client not seen yet), refilled for the time since it was
    /// last used.
    fn refilled<'s>(&self, s: &'s mut State, client: ClientId, now: u64) -> &'s mut Bucket {
        let b = s.clients.entry(client).or_insert(Bucket {
            tokens: f64::from(self.limits.client_burst),
            at_ms: now,
            pending: 0,
        });
        let elapsed = now.saturating_sub(b.at_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * f64::from(self.limits.client_rate))
            .min(f64::from(self.limits.client_burst));
        b.at_ms = now;
        b
    }

    /// Take one offer from `client` (its budget).
    fn admit_client(&self, s: &mut State, client: ClientId, now: u64) -> Result<(), OfferError> {
        if !s.clients.contains_key(&client) && s.clients.len() >= self.limits.max_clients {
            let rate = f64::from(self.limits.client_rate);
            let burst = f64::from(self.limits.client_burst);
            // Forget clients with nothing waiting whose bucket has refilled.
            s.clients.retain(|_, b| {
                b.pending > 0
                    || b.tokens + (now.saturating_sub(b.at_ms) as f64 / 1000.0) * rate < burst
            });
            if s.clients.len() >= self.limits.max_clients {
                return Err(OfferError::TooMany);
            }
        }
        let b = self.refilled(s, client, now);
        if b.tokens < 1.0 || b.pending >= self.limits.per_client {
            return Err(OfferError::TooMany);
        }
        b.tokens -= 1.0;
        b.pending += 1;
        Ok(())
    }

    /// Relay a browser's offer to `peer` and wait for its signed answer.
    pub async fn offer(
        &self,
        client: Option<IpAddr>,
        req: OfferRequest,
    ) -> Result<SignedAnswer, OfferError> {
        let now = now_ms();
        let client = client.map(ClientId::of);
        let offer_hash = sha256(req.sdp.as_bytes());
        let (id, rx) = {
            let mut s = lock(&self.state);
            let p = s.peers.get(&req.peer).ok_or(OfferError::UnknownPeer)?;
            if !self.alive(p, now) {
                return Err(OfferError::UnknownPeer);
            }
            if req.trickle && !p.trickle {
                return Err(OfferError::NoTrickle);
            }
            let waiting = s
                .pending
                .values()
                .filter(|w| w.peer == req.peer && matches!(w.kind, Waiting::Offer { .. }))
                .count();
            if waiting >= self.limits.per_peer {
                return Err(OfferError::PeerBusy);
            }
            if let Some(c) = client {
                self.admit_client(&mut s, c, now)?;
            }
            let sdp = req.sdp;
            self.enqueue(
                &mut s,
                req.peer,
                Waiting::Offer { offer_hash },
                client,
                move |id| Task::Offer { id, sdp },
            )
            .ok_or(OfferError::UnknownPeer)?
        };
        let _guard = PendingGuard { relay: self, id };
        let t0 = std::time::Instant::now();
        let reply = tokio::time::timeout(self.limits.answer_timeout, rx).await;
        tracing::debug!(
            waited_us = t0.elapsed().as_micros(),
            "webrtc signaling: an offer's reply"
        );
        match reply {
            Ok(Ok(Reply::Answer(sdp, signature))) => Ok(SignedAnswer {
                peer: req.peer,
                sdp,
                signature,
            }),
            Ok(Ok(Reply::Refused(why))) => Err(OfferError::Refused(why)),
            Ok(Ok(Reply::BadAnswer | Reply::Check(_))) => Err(OfferError::BadAnswer),
            Ok(Err(_)) | Err(_) => Err(OfferError::Timeout),
        }
    }

    /// Relay a browser's trickled candidate to `peer` (queued for its poll; nothing waits).
    /// Bounded: [`MAX_QUEUED_CANDIDATES`] per peer, a quarter of an offer from the client's
    /// budget each.
    pub fn candidate(
        &self,
        client: Option<IpAddr>,
        req: CandidateRequest,
    ) -> Result<(), OfferError> {
        let now = now_ms();
        let mut s = lock(&self.state);
        let p = s.peers.get(&req.peer).ok_or(OfferError::UnknownPeer)?;
        if !self.alive(p, now) {
            return Err(OfferError::UnknownPeer);
        }
        if !p.trickle {
            return Err(OfferError::NoTrickle);
        }
        let queued = p
            .tasks
            .iter()
            .filter(|t| matches!(t, Task::Candidate { .. }))
            .count();
        if queued >= MAX_QUEUED_CANDIDATES {
            return Err(OfferError::PeerBusy);
        }
        if let Some(c) = client.map(ClientId::of) {
            self.admit_candidate(&mut s, c, now)?;
        }
        let p = s.peers.get_mut(&req.peer).ok_or(OfferError::UnknownPeer)?;
        p.tasks.push_back(Task::Candidate {
            id: rand::random(),
            ufrag: req.ufrag,
            candidate: req.candidate,
        });
        p.notify.notify_waiters();
        Ok(())
    }

    /// Take one candidate's cost from `client`'s offer budget (usually made by its offer; a
    /// candidate may overtake it on another connection).
    fn admit_candidate(&self, s: &mut State, client: ClientId, now: u64) -> Result<(), OfferError> {
        if !s.clients.contains_key(&client) && s.clients.len() >= self.limits.max_clients {
            return Err(OfferError::TooMany);
        }
        let b = self.refilled(s, client, now);
        if b.tokens < CANDIDATE_COST {
            return Err(OfferError::TooMany);
        }
        b.tokens -= CANDIDATE_COST;
        Ok(())
    }

    /// Whether task `id` waits for an answer, and how large that answer may be.
    pub fn answer_limit(&self, id: &TaskId) -> Option<usize> {
        lock(&self.state).pending.get(id).map(|p| match p.kind {
            Waiting::Offer { .. } => MAX_OFFER_POST,
            Waiting::Check => MAX_CHECK_POST,
        })
    }

    /// A peer's answer to task `id` (`POST /v1/signal/answer/{id}`).
    pub fn answer(&self, id: &TaskId, body: &[u8]) -> Result<(), ApiError> {
        let mut s = lock(&self.state);
        let p = s
            .pending
            .get(id)
            .ok_or_else(|| ApiError::new(404u16, "UNKNOWN_TASK", "no such task waits here"))?;
        let peer = p.peer;
        let (reply, problem) = match &p.kind {
            Waiting::Offer { offer_hash } => {
                match OfferAnswer::parse(body).map_err(|e| ApiError::bad_request(e.0))? {
                    OfferAnswer::Answer { sdp, signature } => {
                        if verify_signature(
                            &peer,
                            &answer_signable_hashed(offer_hash, &sdp),
                            &signature,
                        ) {
                            (Reply::Answer(sdp, signature), None)
                        } else {
                            (Reply::BadAnswer, Some("BAD_ANSWER"))
                        }
                    }
                    OfferAnswer::Refused(why) => (Reply::Refused(why), None),
                }
            }
            Waiting::Check => {
                let a = CheckAnswer::parse(body).map_err(|e| ApiError::bad_request(e.0))?;
                if a.verify(&peer, id) {
                    (Reply::Check(a), None)
                } else {
                    (Reply::BadAnswer, Some("BAD_SIGNATURE"))
                }
            }
        };
        let Some(p) = s.pending.remove(id) else {
            return Ok(());
        };
        if let Some(c) = p.client {
            if let Some(b) = s.clients.get_mut(&c) {
                b.pending = b.pending.saturating_sub(1);
            }
        }
        if let Some(code) = problem {
            if let Some(e) = s.peers.get_mut(&peer) {
                e.row.healthy = false;
                e.row.problem = Some(code.into());
                e.row.detail = Some("an answer's signature did not verify".into());
            }
        }
        let _ = p.reply.send(reply);
        if problem.is_some() {
            return Err(ApiError::new(
                400u16,
                "BAD_SIGNATURE",
                "the signature does not verify for this task",
            ));
        }
        Ok(())
    }

    /// Live peers with no check running, marked as being checked.
    fn due(&self) -> Vec<[u8; 32]> {
        let now = now_ms();
        let mut s = lock(&self.state);
        let keys: Vec<[u8; 32]> = s
            .peers
            .iter()
            .filter(|(_, p)| !p.checking && self.alive(p, now))
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            if let Some(p) = s.peers.get_mut(k) {
                p.checking = true;
            }
        }
        keys
    }

    /// Ask `peer` for `paths` and wait for its signed results.
    async fn check(&self, peer: [u8; 32], paths: Vec<String>) -> Result<CheckAnswer, Failure> {
        let (id, rx) = {
            let mut s = lock(&self.state);
            self.enqueue(&mut s, peer, Waiting::Check, None, move |id| Task::Check {
                id,
                paths,
            })
            .ok_or_else(|| Failure::new("NOT_POLLING", "gone"))?
        };
        let _guard = PendingGuard { relay: self, id };
        match tokio::time::timeout(self.limits.check_timeout, rx).await {
            Ok(Ok(Reply::Check(a))) => Ok(a),
            Ok(Ok(_)) => Err(Failure::new(
                "BAD_SIGNATURE",
                "the check answer's signature does not verify",
            )),
            Ok(Err(_)) | Err(_) => Err(Failure::new(
                "TIMEOUT",
                "no answer to the health check through the poll",
            )),
        }
    }

    fn record(&self, key: &[u8; 32], result: Result<(), Failure>) {
        let mut s = lock(&self.state);
        if let Some(p) = s.peers.get_mut(key) {
            p.checking = false;
            p.row.record_check(result, now_ms());
        }
    }
}

struct PollGuard<'a> {
    relay: &'a Relay,
    key: [u8; 32],
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.relay.polling(&self.key, -1);
    }
}

/// Check one WebRTC peer: the last block of each of `keys` at the instance's own head, its
/// proof verified against that head (the same check as an HTTP mirror's, through the poll).
async fn check_one<S: LogSource>(
    relay: &Relay,
    source: &Arc<S>,
    peer: [u8; 32],
    keys: &[Key],
) -> Result<(), Failure> {
    let mut heads = Vec::new();
    for key in keys {
        if let Some(h) = head_to_prove(source, *key).await? {
            heads.push((*key, h));
        }
    }
    heads.truncate(MAX_CHECK_PATHS);
    if heads.is_empty() {
        return Ok(());
    }
    let paths: Vec<String> = heads.iter().map(|(k, h)| last_block_path(k, h)).collect();
    let answer = relay.check(peer, paths).await?;
    if answer.results.len() != heads.len() {
        return Err(Failure::new(
            "BAD_RESPONSE",
            format!("{} results for {} paths", answer.results.len(), heads.len()),
        ));
    }
    for ((key, head), r) in heads.iter().zip(&answer.results) {
        judge_last_block(key, head, r.status, &r.body)?;
    }
    Ok(())
}

/// The WebRTC side of the instance's check loop: every `check_every`, every live WebRTC peer
/// is asked, through its poll, to prove the last block of every community log. Ends with
/// `shutdown`.
pub async fn run_checks<S: LogSource>(
    instance: Arc<crate::Instance>,
    source: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut running = tokio::task::JoinSet::new();
    loop {
        let keys: Arc<[Key]> = instance
            .communities()
            .iter()
            .flat_map(|c| c.keys().collect::<Vec<_>>())
            .collect::<Vec<_>>()
            .into();
        for peer in instance.signal().due() {
            let (i, s, k) = (instance.clone(), source.clone(), keys.clone());
            running.spawn(async move {
                let r = check_one(i.signal(), &s, peer, &k).await;
                if let Err(e) = &r {
                    tracing::debug!(peer = %hex::encode(peer), code = e.code, "{}", e.detail);
                }
                i.signal().record(&peer, r);
            });
        }
        while running.try_join_next().is_some() {}
        tokio::select! {
            () = &mut shutdown => {
                running.abort_all();
                return;
            }
            () = tokio::time::sleep(instance.options().check_every) => {}
        }
    }
}

/// The `POST /v1/signal` handler's work: the offer, relayed.
pub(crate) async fn offer_answer(
    relay: &Relay,
    client: Option<IpAddr>,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let req = OfferRequest::parse(body).map_err(|e| ApiError::bad_request(e.0))?;
    match relay.offer(client, req).await {
        Ok(a) => Ok(a.to_json()),
        Err(e) => {
            let (status, code) = e.status_code();
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

/// The `POST /v1/signal/candidate` handler's work: the candidate, queued for the peer.
pub(crate) fn candidate_answer(
    relay: &Relay,
    client: Option<IpAddr>,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let req = CandidateRequest::parse(body).map_err(|e| ApiError::bad_request(e.0))?;
    match relay.candidate(client, req) {
        Ok(()) => Ok(serde_json::json!({ "ok": true })),
        Err(e) => {
            let (status, code) = e.status_code();
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

/// The `POST /v1/signal/poll` handler's work, for a verified `key`.
pub(crate) async fn poll_answer(
    relay: &Relay,
    key: [u8; 32],
    ip: IpAddr,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let req = PollRequest::parse(body).map_err(|e| ApiError::bad_request(e.0))?;
    match relay.poll(key, ip, req).await {
        Ok(r) => Ok(r.to_json()),
        Err(e) => {
            let (status, code) = e.status_code();
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

/// Parse a task id from a path segment.
pub(crate) fn task_id(s: &str) -> Result<TaskId, ApiError> {
    parse_id(s).map_err(|e| ApiError::bad_request(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerhost_ids::KeyPair;

    fn relay() -> Relay {
        Relay::new(
            SignalLimits {
                poll_wait: Duration::from_millis(200),
                answer_timeout: Duration::from_millis(300),
                ..SignalLimits::default()
            },
            InstanceOptions::default().allow_private_peers(true),
            vec![IceServer::stun("127.0.0.1:3478")],
        )
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn answer_signatures_bind_offer_and_answer() {
        let kp = KeyPair::generate();
        let sig = sign_answer(&kp, "offer", "answer");
        assert!(verify_answer(&kp.public_key(), "offer", "answer", &sig));
        assert!(!verify_answer(&kp.public_key(), "offer2", "answer", &sig));
        assert!(!verify_answer(&kp.public_key(), "offer", "answer2", &sig));
        assert!(!verify_answer(
            &KeyPair::generate().public_key(),
            "offer",
            "answer",
            &sig
        ));
        // Never mistaken for a signed request or a challenge.
        assert_ne!(
            &answer_signable("", "")[..20],
            &auth::challenge_signable("", &[0; 32])[..20]
        );
        let layout = answer_signable("o", "a");
        assert_eq!(layout.len(), ANSWER_CONTEXT.len() + 1 + 64);
        assert_eq!(&layout[..ANSWER_CONTEXT.len()], ANSWER_CONTEXT.as_bytes());
    }

    #[test]
    fn messages_round_trip_and_refuse() {
        let r = PollResponse {
            tasks: vec![
                Task::Offer {
                    id: [1; 16],
                    sdp: "v=0\r\n".into(),
                },
                Task::Check {
                    id: [2; 16],
                    paths: vec!["/v1/logs".into()],
                },
            ],
            ice_servers: vec![IceServer::stun("1.2.3.4:3478")],
            listed: true,
            problem: None,
        };
        let bytes = serde_json::to_vec(&r.to_json()).unwrap();
        assert_eq!(PollResponse::parse(&bytes).unwrap(), r);
        let kp = KeyPair::generate();
        let a = CheckAnswer::sign(
            &kp,
            &[3; 16],
            vec![CheckResult {
                status: 200,
                body: vec![1, 2, 3],
            }],
        );
        let bytes = serde_json::to_vec(&a.to_json()).unwrap();
        let back = CheckAnswer::parse(&bytes).unwrap();
        assert_eq!(back, a);
        assert!(back.verify(&kp.public_key(), &[3; 16]));
        assert!(!back.verify(&kp.public_key(), &[4; 16]));
        for bad in [
            &b"{}"[..],
            b"{\"peer\":\"00\",\"sdp\":\"x\"}",
            b"{\"peer\":\"zz\",\"sdp\":\"x\"}",
        ] {
            assert!(OfferRequest::parse(bad).is_err());
        }
        let ok = format!("{{\"peer\":\"{}\",\"sdp\":\"v=0\"}}", "ab".repeat(32));
        assert!(OfferRequest::parse(ok.as_bytes()).is_ok());
        let nul = format!(
            "{{\"peer\":\"{}\",\"sdp\":\"v=0\\u0000\"}}",
            "ab".repeat(32)
        );
        assert!(OfferRequest::parse(nul.as_bytes()).is_err());
        assert!(OfferAnswer::parse(b"{\"sdp\":\"x\"}").is_err());
        assert_eq!(
            OfferAnswer::parse(b"{\"error\":\"full\\n\"}").unwrap(),
            OfferAnswer::Refused("full".into())
        );
        assert!(PollRequest::parse(b"[]").is_err());
        assert!(PollRequest::parse(b"{}").unwrap().wait);
    }

    #[tokio::test]
    async fn an_offer_reaches_the_poll_and_the_signed_answer_comes_back() {
        let relay = Arc::new(relay());
        let kp = KeyPair::generate();
        let key = kp.public_key();
        // Unknown until it polls.
        let req = OfferRequest {
            peer: key,
            sdp: "offer".into(),
            trickle: false,
        };
        assert_eq!(
            relay.offer(Some(IP), req.clone()).await,
            Err(OfferError::UnknownPeer)
        );
        let first = relay
            .poll(key, IP, PollRequest::new(0, 0, 0, false))
            .await
            .unwrap();
        assert!(first.tasks.is_empty() && first.ice_servers.len() == 1);
        let r2 = relay.clone();
        let peer = tokio::spawn(async move {
            let got = r2.poll(key, IP, PollRequest::default()).await.unwrap();
            let Task::Offer { id, sdp } = &got.tasks[0] else {
                panic!("not an offer")
            };
            assert_eq!(sdp, "offer");
            let answer = OfferAnswer::Answer {
                sdp: "answer".into(),
                signature: sign_answer(&kp, sdp, "answer"),
            };
            r2.answer(id, &serde_json::to_vec(&answer.to_json()).unwrap())
                .unwrap();
        });
        let a = relay.offer(Some(IP), req.clone()).await.unwrap();
        peer.await.unwrap();
        assert_eq!(a.sdp, "answer");
        assert!(verify_answer(&key, "offer", &a.sdp, &a.signature));
        // A forged answer: the browser gets BAD_ANSWER, the peer is marked.
        let r3 = relay.clone();
        let forger = tokio::spawn(async move {
            let got = r3.poll(key, IP, PollRequest::default()).await.unwrap();
            let id = *got.tasks[0].id();
            let bad = OfferAnswer::Answer {
                sdp: "answer".into(),
                signature: sign_answer(&KeyPair::generate(), "offer", "answer"),
            };
            assert!(
                r3.answer(&id, &serde_json::to_vec(&bad.to_json()).unwrap())
                    .is_err()
            );
        });
        assert_eq!(
            relay.offer(Some(IP), req.clone()).await,
            Err(OfferError::BadAnswer)
        );
        forger.await.unwrap();
        assert_eq!(
            relay.contributions()[0].problem.as_deref(),
            Some("BAD_ANSWER")
        );
        // Nobody answers: a timeout, and nothing stays pending.
        assert_eq!(relay.offer(Some(IP), req).await, Err(OfferError::Timeout));
        assert!(lock(&relay.state).pending.is_empty());
        // The undelivered task went with it.
        assert!(lock(&relay.state).peers[&key].tasks.is_empty());
    }

    #[tokio::test]
    async fn offers_are_bounded_per_client_and_per_peer() {
        let relay = Arc::new(Relay::new(
            SignalLimits {
                poll_wait: Duration::from_millis(100),
                answer_timeout: Duration::from_millis(400),
                per_peer: 3,
                per_client: 2,
                client_rate: 0,
                client_burst: 3,
                ..SignalLimits::default()
            },
            InstanceOptions::default().allow_private_peers(true),
            vec![],
        ));
        let key = KeyPair::generate().public_key();
        relay
            .poll(key, IP, PollRequest::new(0, 0, 0, false))
            .await
            .unwrap();
        let offer = |ip: &str| {
            let r = relay.clone();
            let ip: IpAddr = ip.parse().unwrap();
            tokio::spawn(async move {
                r.offer(
                    Some(ip),
                    OfferRequest {
                        peer: key,
                        sdp: "o".into(),
                        trickle: false,
                    },
                )
                .await
            })
        };
        let a = offer("10.0.0.1");
        let b = offer("10.0.0.1");
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A third from the same client: refused at once (2 waiting).
        assert_eq!(offer("10.0.0.1").await.unwrap(), Err(OfferError::TooMany));
        let c = offer("10.0.0.2");
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The peer has 3 waiting: busy for everyone.
        assert_eq!(offer("10.0.0.3").await.unwrap(), Err(OfferError::PeerBusy));
        for h in [a, b, c] {
            assert_eq!(h.await.unwrap(), Err(OfferError::Timeout));
        }
        // The first client spent 2 of its 3 tokens (no refill here): one more, then refused.
        let d = offer("10.0.0.1");
        assert_eq!(d.await.unwrap(), Err(OfferError::Timeout));
        assert_eq!(offer("10.0.0.1").await.unwrap(), Err(OfferError::TooMany));
        assert!(lock(&relay.state).pending.is_empty());
    }

    #[tokio::test]
    async fn trickled_candidates_reach_a_trickle_peer_only_and_are_bounded() {
        let relay = Arc::new(relay());
        let key = KeyPair::generate().public_key();
        let cand = |n: u32| CandidateRequest {
            peer: key,
            ufrag: "Ab+1".into(),
            candidate: format!("candidate:{n} 1 udp 1677729535 203.0.113.7 40001 typ srflx"),
        };
        let trickle_offer = move || OfferRequest {
            peer: key,
            sdp: "o".into(),
            trickle: true,
        };
        // An old peer (its poll does not say `trickle`): trickle offers and candidates are
        // refused at once, so the page sends a whole offer.
        relay
            .poll(key, IP, PollRequest::new(0, 0, 0, false))
            .await
            .unwrap();
        assert_eq!(
            relay.offer(Some(IP), trickle_offer()).await,
            Err(OfferError::NoTrickle)
        );
        assert_eq!(
            relay.candidate(Some(IP), cand(1)),
            Err(OfferError::NoTrickle)
        );
        assert_eq!(OfferError::NoTrickle.status_code(), (409, "NO_TRICKLE"));
        // A trickle peer: the offer, then its candidate, in order on the next poll.
        relay
            .poll(key, IP, PollRequest::new(0, 0, 0, false).with_trickle(true))
            .await
            .unwrap();
        let r = relay.clone();
        let waiting = tokio::spawn(async move { r.offer(Some(IP), trickle_offer()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        relay.candidate(Some(IP), cand(1)).unwrap();
        let got = relay
            .poll(key, IP, PollRequest::new(0, 0, 0, true).with_trickle(true))
            .await
            .unwrap();
        assert!(matches!(got.tasks[0], Task::Offer { .. }));
        let Task::Candidate {
            ufrag, candidate, ..
        } = &got.tasks[1]
        else {
            panic!("no candidate task: {:?}", got.tasks);
        };
        assert_eq!(
            (ufrag.as_str(), candidate.as_str()),
            ("Ab+1", cand(1).candidate.as_str())
        );
        // The poll answer carries it on the wire and parses back.
        let wire = serde_json::to_vec(&got.to_json()).unwrap();
        assert_eq!(PollResponse::parse(&wire).unwrap(), got);
        assert_eq!(waiting.await.unwrap(), Err(OfferError::Timeout));
        // Bounded: per peer, MAX_QUEUED_CANDIDATES waiting for a poll; per client, a quarter
        // of an offer each from its budget (16 offers' burst: 64 candidates, less what the
        // offers above took).
        let mut ok = 0;
        let mut refused = None;
        for n in 0..200 {
            let ip: IpAddr = format!("10.1.{}.{}", n / 100, n % 100).parse().unwrap();
            match relay.candidate(Some(ip), cand(n)) {
                Ok(()) => ok += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert_eq!(ok, MAX_QUEUED_CANDIDATES);
        assert_eq!(refused, Some(OfferError::PeerBusy));
        let other: IpAddr = "10.9.9.9".parse().unwrap();
        let mut taken = 0;
        loop {
            match relay.candidate(Some(other), cand(taken)) {
                Ok(()) => taken += 1,
                // Drain the queue (16 tasks per poll) and go on.
                Err(OfferError::PeerBusy) => {
                    let quick = PollRequest::new(0, 0, 0, false).with_trickle(true);
                    relay.poll(key, IP, quick).await.unwrap();
                }
                Err(e) => {
                    assert_eq!(e, OfferError::TooMany);
                    break;
                }
            }
            assert!(taken <= 70, "a client's candidates are bounded");
        }
        // 16 tokens at a quarter each (and what 2/s refilled while the loop ran).
        assert!((64..=70).contains(&taken), "{taken}");
    }

    #[test]
    fn candidate_requests_are_checked() {
        let key = hex::encode([7u8; 32]);
        let ok = format!(
            r#"{{"peer":"{key}","ufrag":"Ab+1","candidate":"candidate:1 1 udp 1 203.0.113.7 9 typ srflx"}}"#
        );
        let c = CandidateRequest::parse(ok.as_bytes()).unwrap();
        assert_eq!(c.ufrag, "Ab+1");
        for bad in [
            format!(r#"{{"peer":"{key}","ufrag":"Ab","candidate":"candidate:1"}}"#),
            format!(r#"{{"peer":"{key}","ufrag":"Ab c1","candidate":"candidate:1"}}"#),
            format!(r#"{{"peer":"{key}","ufrag":"Abcd","candidate":"a=candidate:1"}}"#),
            format!(
                r#"{{"peer":"{key}","ufrag":"Abcd","candidate":"candidate:1
x"}}"#
            ),
            format!(
                r#"{{"peer":"{key}","ufrag":"Abcd","candidate":"candidate:{}"}}"#,
                "1".repeat(MAX_CANDIDATE)
            ),
            r#"{"peer":"ab","ufrag":"Abcd","candidate":"candidate:1"}"#.to_owned(),
            "[]".to_owned(),
        ] {
            assert!(CandidateRequest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        // A trickle offer says so; an old page's offer does not.
        let o = format!(r#"{{"peer":"{key}","sdp":"v=0","trickle":true}}"#);
        assert!(OfferRequest::parse(o.as_bytes()).unwrap().trickle);
        let o = format!(r#"{{"peer":"{key}","sdp":"v=0"}}"#);
        assert!(!OfferRequest::parse(o.as_bytes()).unwrap().trickle);
        // An old home peer skips candidate tasks it does not know (unknown task kinds).
        assert!(PollRequest::parse(b"{}").map(|p| !p.trickle).unwrap());
    }

    #[tokio::test]
    async fn a_newer_poll_takes_over() {
        let relay = Arc::new(relay());
        let key = KeyPair::generate().public_key();
        let r2 = relay.clone();
        let old = tokio::spawn(async move { r2.poll(key, IP, PollRequest::default()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = tokio::time::Instant::now();
        let r3 = relay.clone();
        let new = tokio::spawn(async move { r3.poll(key, IP, PollRequest::default()).await });
        let got = old.await.unwrap().unwrap();
        assert!(got.tasks.is_empty());
        assert!(
            t0.elapsed() < Duration::from_millis(100),
            "the old poll returned at once"
        );
        assert!(new.await.unwrap().unwrap().tasks.is_empty());
    }

    #[tokio::test]
    async fn caps_per_address() {
        let relay = Relay::new(
            SignalLimits::default(),
            InstanceOptions::default().caps(8, 2, 3),
            vec![],
        );
        let ip: IpAddr = "8.8.8.8".parse().unwrap();
        let quick = PollRequest::new(0, 0, 0, false);
        for _ in 0..2 {
            relay
                .poll(KeyPair::generate().public_key(), ip, quick)
                .await
                .unwrap();
        }
        // Two fresh peers at 8.8.8.8, both unhealthy (never checked): one is evicted.
        relay
            .poll(KeyPair::generate().public_key(), ip, quick)
            .await
            .unwrap();
        assert_eq!(relay.contributions().len(), 2);
        // Healthy ones stay: the next is refused.
        for k in lock(&relay.state).peers.values_mut() {
            k.row.healthy = true;
        }
        assert_eq!(
            relay
                .poll(KeyPair::generate().public_key(), ip, quick)
                .await
                .unwrap_err(),
            PollError::AddressCap
        );
        // Loopback without --allow-private-peers: refused.
        assert_eq!(
            relay
                .poll(KeyPair::generate().public_key(), IP, quick)
                .await
                .unwrap_err(),
            PollError::RefusedAddress
        );
    }
}
