//! The signaling messages (`protocol/gateway.md` §7.3): what a home peer's poll, the tasks it
//! gets, its signed answers and check results, and a browser's offer look like on the wire, with
//! their bounds, decoders and signatures. The peer side (`peerhost-webrtc`'s home peer) uses them
//! too; the decoders are fuzzed (`fuzz/fuzz_targets/signal_messages.rs`).

use std::time::Duration;

use peerhost_ids::{KeyPair, verify_signature};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The context of an answer's signature.
pub const ANSWER_CONTEXT: &str = "peerhost/webrtc-answer/v1";
/// The context of a health check answer's signature.
pub const CHECK_CONTEXT: &str = "peerhost/webrtc-check/v1";
/// Bytes of an SDP (offer or answer) at most.
pub const MAX_SDP: usize = 16 * 1024;
/// Paths in one check at most.
pub const MAX_CHECK_PATHS: usize = 16;
/// Bytes of one check result's body at most (a last block and its proof).
pub const MAX_CHECK_BODY: usize = 512 * 1024;
/// Bytes of a browser's offer request, or an answer to an offer, at most.
pub const MAX_OFFER_POST: usize = 40 * 1024;
/// Bytes of an answer to a check at most (hex bodies).
pub const MAX_CHECK_POST: usize = 2 * MAX_CHECK_BODY * MAX_CHECK_PATHS / 4 + 4096;
/// Tasks handed to one poll at most.
pub const TASKS_PER_POLL: usize = 16;
/// Bytes of a refusal's reason at most.
pub const MAX_REASON: usize = 200;
/// Bytes of a trickled candidate line at most (`candidate:…`, as `RTCIceCandidate.candidate`).
pub const MAX_CANDIDATE: usize = 512;
/// Bytes of a browser's candidate request at most.
pub const MAX_CANDIDATE_POST: usize = 2048;

/// Limits of the signaling relay.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SignalLimits {
    /// How long a poll waits for a task before it answers with none.
    pub poll_wait: Duration,
    /// How long a browser's offer waits for the peer's answer.
    pub answer_timeout: Duration,
    /// How long a check waits for the peer's answer.
    pub check_timeout: Duration,
    /// WebRTC peers in the table at most.
    pub max_peers: usize,
    /// Offers waiting for one peer's answer at most (delivered or not).
    pub per_peer: usize,
    /// Offers one client (IPv4 address, IPv6 /64) has waiting at most.
    pub per_client: usize,
    /// Offers one client may start per second, on average.
    pub client_rate: u32,
    /// And in a burst.
    pub client_burst: u32,
    /// Clients whose offer budget is tracked at most.
    pub max_clients: usize,
}

impl Default for SignalLimits {
    fn default() -> Self {
        Self {
            poll_wait: Duration::from_secs(25),
            answer_timeout: Duration::from_secs(10),
            check_timeout: Duration::from_secs(10),
            max_peers: 256,
            per_peer: 16,
            per_client: 8,
            client_rate: 2,
            client_burst: 16,
            max_clients: 4096,
        }
    }
}

/// An ICE server for browsers (`RTCIceServer`): the instance's STUN, configured STUN or TURN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IceServer {
    /// `stun:HOST:PORT`, `turn:HOST:PORT?transport=udp`, …
    pub urls: Vec<String>,
    /// A TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// A STUN server at `addr` (`HOST:PORT`).
    pub fn stun(addr: impl std::fmt::Display) -> Self {
        Self {
            urls: vec![format!("stun:{addr}")],
            username: None,
            credential: None,
        }
    }

    /// A TURN server with credentials.
    pub fn turn(url: impl Into<String>, username: String, credential: String) -> Self {
        Self {
            urls: vec![url.into()],
            username: Some(username),
            credential: Some(credential),
        }
    }

    /// The `HOST:PORT` of each `stun:` URL (what a home peer asks for its public address).
    pub fn stun_hosts(&self) -> Vec<String> {
        self.urls
            .iter()
            .filter_map(|u| u.strip_prefix("stun:"))
            .map(|h| h.split('?').next().unwrap_or(h).to_owned())
            .filter(|h| !h.is_empty() && h.len() <= 255)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and signatures

/// Why a signaling message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MessageError(pub &'static str);

pub(super) fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// A task id: 16 random bytes, 32 hex characters on the wire.
pub type TaskId = [u8; 16];

pub(super) fn parse_id(s: &str) -> Result<TaskId, MessageError> {
    let bad = MessageError("a task id is 32 hex characters");
    if s.len() != 32 {
        return Err(bad);
    }
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(bad)
}

pub(super) fn parse_key(s: &str) -> Result<[u8; 32], MessageError> {
    let bad = MessageError("a node key is 64 hex characters");
    if s.len() != 64 {
        return Err(bad);
    }
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(bad)
}

pub(super) fn parse_sig(s: &str) -> Result<[u8; 64], MessageError> {
    let bad = MessageError("a signature is 128 hex characters");
    if s.len() != 128 {
        return Err(bad);
    }
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(bad)
}

pub(super) fn check_sdp(sdp: &str) -> Result<(), MessageError> {
    if sdp.is_empty() || sdp.len() > MAX_SDP {
        return Err(MessageError("an SDP is 1 to 16384 bytes"));
    }
    if sdp
        .bytes()
        .any(|b| b == 0 || (b.is_ascii_control() && b != b'\r' && b != b'\n' && b != b'\t'))
    {
        return Err(MessageError("an SDP holds no control characters"));
    }
    Ok(())
}

/// An ICE username fragment (RFC 8839: 4 to 256 `ice-char`s; Chromium's are 4).
pub(super) fn check_ufrag(u: &str) -> Result<(), MessageError> {
    if u.len() < 4
        || u.len() > 256
        || !u
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(MessageError("an ICE ufrag is 4 to 256 of A-Z a-z 0-9 + /"));
    }
    Ok(())
}

/// A trickled candidate line: `candidate:…`, at most [`MAX_CANDIDATE`] bytes, printable ASCII.
pub(super) fn check_candidate(c: &str) -> Result<(), MessageError> {
    if !c.starts_with("candidate:")
        || c.len() > MAX_CANDIDATE
        || !c.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(MessageError(
            "a candidate is \"candidate:…\", at most 512 printable ASCII bytes",
        ));
    }
    Ok(())
}

/// The bytes an answer's signature covers: `ANSWER_CONTEXT ‖ 0 ‖ SHA-256(offer) ‖
/// SHA-256(answer)`. The answer carries the peer's DTLS fingerprint and ICE credentials, so a
/// relaying instance can swap neither without breaking the signature.
pub fn answer_signable(offer: &str, answer: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(ANSWER_CONTEXT.len() + 65);
    m.extend_from_slice(ANSWER_CONTEXT.as_bytes());
    m.push(0);
    m.extend_from_slice(&sha256(offer.as_bytes()));
    m.extend_from_slice(&sha256(answer.as_bytes()));
    m
}

/// Sign `answer` to `offer` with the node key.
pub fn sign_answer(key_pair: &KeyPair, offer: &str, answer: &str) -> [u8; 64] {
    key_pair.sign(&answer_signable(offer, answer))
}

pub(super) fn answer_signable_hashed(offer_hash: &[u8; 32], answer: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(ANSWER_CONTEXT.len() + 65);
    m.extend_from_slice(ANSWER_CONTEXT.as_bytes());
    m.push(0);
    m.extend_from_slice(offer_hash);
    m.extend_from_slice(&sha256(answer.as_bytes()));
    m
}

/// Whether `signature` is `key`'s over `answer` to `offer`.
pub fn verify_answer(key: &[u8; 32], offer: &str, answer: &str, signature: &[u8; 64]) -> bool {
    verify_signature(key, &answer_signable(offer, answer), signature)
}

/// One answered path of a check: the status and body the gateway API gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The HTTP status.
    pub status: u16,
    /// The body (a PHR1 proof for a 200).
    pub body: Vec<u8>,
}

/// The bytes a check answer's signature covers: `CHECK_CONTEXT ‖ 0 ‖ id[16] ‖ u32le(n) ‖
/// (u16le(status) ‖ SHA-256(body))×n`.
pub fn check_signable(id: &TaskId, results: &[CheckResult]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECK_CONTEXT.len() + 21 + 34 * results.len());
    m.extend_from_slice(CHECK_CONTEXT.as_bytes());
    m.push(0);
    m.extend_from_slice(id);
    m.extend_from_slice(
        &u32::try_from(results.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for r in results {
        m.extend_from_slice(&r.status.to_le_bytes());
        m.extend_from_slice(&sha256(&r.body));
    }
    m
}

/// What a poll carries (peer → instance): the peer's own counters of what it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PollRequest {
    /// Body bytes its data channels sent.
    #[serde(default)]
    pub bytes: u64,
    /// Requests its data channels answered.
    #[serde(default)]
    pub requests: u64,
    /// When it started, ms since the Unix epoch.
    #[serde(default)]
    pub started_ms: u64,
    /// `false`: answer at once, even with no task (the first poll: learn the ICE servers).
    #[serde(default = "yes")]
    pub wait: bool,
    /// The peer takes trickled candidates ([`Task::Candidate`]): offers may come without the
    /// browser's candidates, which follow as tasks of their own.
    #[serde(default)]
    pub trickle: bool,
}

pub(super) fn yes() -> bool {
    true
}

impl PollRequest {
    /// Counters, waiting for tasks.
    pub fn new(bytes: u64, requests: u64, started_ms: u64, wait: bool) -> Self {
        Self {
            bytes,
            requests,
            started_ms,
            wait,
            trickle: false,
        }
    }

    /// The same, saying whether the peer takes trickled candidates.
    #[must_use]
    pub fn with_trickle(mut self, trickle: bool) -> Self {
        self.trickle = trickle;
        self
    }

    /// Decode a poll body.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        if body.len() > 4096 {
            return Err(MessageError("a poll body is at most 4096 bytes"));
        }
        let bad = || MessageError("a poll body is a JSON object");
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
        if !v.is_object() {
            return Err(bad());
        }
        serde_json::from_value(v).map_err(|_| bad())
    }
}

/// A task for a peer, as a poll answer carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// A browser's offer: answer it (`POST /v1/signal/answer/{id}` with an [`OfferAnswer`]).
    Offer {
        /// The task id.
        id: TaskId,
        /// The browser's SDP offer.
        sdp: String,
    },
    /// A health check: answer each path as the gateway API does, signed ([`CheckAnswer`]).
    Check {
        /// The task id.
        id: TaskId,
        /// Gateway paths (`/v1/logs/{key}/blocks?…`).
        paths: Vec<String>,
    },
    /// A browser's trickled ICE candidate for the offer whose `a=ice-ufrag` is `ufrag` (only
    /// to peers whose poll said `trickle`; nothing to answer).
    Candidate {
        /// The task id (random; nothing waits on it).
        id: TaskId,
        /// The browser's ICE username fragment, from its offer.
        ufrag: String,
        /// The candidate line, `candidate:…` (no `a=` prefix).
        candidate: String,
    },
}

impl Task {
    /// The task's id.
    pub fn id(&self) -> &TaskId {
        match self {
            Self::Offer { id, .. } | Self::Check { id, .. } | Self::Candidate { id, .. } => id,
        }
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Offer { id, sdp } => serde_json::json!({ "id": hex::encode(id), "offer": sdp }),
            Self::Check { id, paths } => {
                serde_json::json!({ "id": hex::encode(id), "check": paths })
            }
            Self::Candidate {
                id,
                ufrag,
                candidate,
            } => serde_json::json!({
                "id": hex::encode(id),
                "candidate": { "ufrag": ufrag, "candidate": candidate },
            }),
        }
    }
}

/// An instance's answer to a poll (instance → peer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollResponse {
    /// Tasks to do, at most [`TASKS_PER_POLL`].
    pub tasks: Vec<Task>,
    /// The ICE servers the instance gives browsers (the home peer asks the `stun:` ones for
    /// its public address).
    pub ice_servers: Vec<IceServer>,
    /// Whether the instance lists this peer to readers now.
    pub listed: bool,
    /// Why not, if its last check failed (a short code).
    pub problem: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawPollResponse {
    #[serde(default)]
    tasks: Vec<RawTask>,
    #[serde(default)]
    ice_servers: Vec<IceServer>,
    #[serde(default)]
    listed: bool,
    #[serde(default)]
    problem: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawTask {
    id: String,
    #[serde(default)]
    offer: Option<String>,
    #[serde(default)]
    check: Option<Vec<String>>,
    #[serde(default)]
    candidate: Option<RawCandidate>,
}

#[derive(Deserialize)]
pub(super) struct RawCandidate {
    ufrag: String,
    candidate: String,
}

impl PollResponse {
    /// Decode an instance's poll answer (at most `max` bytes: a home peer trusts no server's
    /// sizes). Unknown task kinds are skipped (newer instances may add some).
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        if body.len() > TASKS_PER_POLL * (MAX_SDP * 2 + 1024) + 16 * 1024 {
            return Err(MessageError("a poll answer is too large"));
        }
        let raw: RawPollResponse = serde_json::from_slice(body)
            .map_err(|_| MessageError("a poll answer is a JSON object"))?;
        if raw.tasks.len() > TASKS_PER_POLL || raw.ice_servers.len() > 16 {
            return Err(MessageError("too many tasks or ICE servers"));
        }
        let mut tasks = Vec::with_capacity(raw.tasks.len());
        for t in raw.tasks {
            let id = parse_id(&t.id)?;
            match (t.offer, t.check, t.candidate) {
                (Some(sdp), None, None) => {
                    check_sdp(&sdp)?;
                    tasks.push(Task::Offer { id, sdp });
                }
                (None, None, Some(c)) => {
                    check_ufrag(&c.ufrag)?;
                    check_candidate(&c.candidate)?;
                    tasks.push(Task::Candidate {
                        id,
                        ufrag: c.ufrag,
                        candidate: c.candidate,
                    });
                }
                (None, Some(paths), None) => {
                    if paths.len() > MAX_CHECK_PATHS
                        || paths.iter().any(|p| p.is_empty() || p.len() > 1024)
                    {
                        return Err(MessageError("a check has 1 to 16 paths of ≤ 1024 bytes"));
                    }
                    tasks.push(Task::Check { id, paths });
                }
                _ => {}
            }
        }
        Ok(Self {
            tasks,
            ice_servers: raw.ice_servers,
            listed: raw.listed,
            problem: raw.problem.map(|p| p.chars().take(64).collect()),
        })
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tasks": self.tasks.iter().map(Task::to_json).collect::<Vec<_>>(),
            "iceServers": self.ice_servers,
            "listed": self.listed,
            "problem": self.problem,
        })
    }
}

/// A peer's answer to an offer task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferAnswer {
    /// The SDP answer and the node key's signature ([`answer_signable`]).
    Answer {
        /// The SDP.
        sdp: String,
        /// Ed25519 by the node key.
        signature: [u8; 64],
    },
    /// The peer refused the offer (too many connections, a bad offer): why, for people.
    Refused(String),
}

#[derive(Deserialize)]
pub(super) struct RawOfferAnswer {
    #[serde(default)]
    sdp: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl OfferAnswer {
    /// Decode `{sdp, signature}` or `{error}`.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        if body.len() > MAX_OFFER_POST {
            return Err(MessageError("an answer is at most 40 KiB"));
        }
        let raw: RawOfferAnswer =
            serde_json::from_slice(body).map_err(|_| MessageError("an answer is a JSON object"))?;
        match (raw.sdp, raw.signature, raw.error) {
            (Some(sdp), Some(sig), None) => {
                check_sdp(&sdp)?;
                Ok(Self::Answer {
                    sdp,
                    signature: parse_sig(&sig)?,
                })
            }
            (None, None, Some(e)) => Ok(Self::Refused(clean_reason(&e))),
            _ => Err(MessageError("an answer is {sdp, signature} or {error}")),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Answer { sdp, signature } => {
                serde_json::json!({ "sdp": sdp, "signature": hex::encode(signature) })
            }
            Self::Refused(e) => serde_json::json!({ "error": clean_reason(e) }),
        }
    }
}

pub(super) fn clean_reason(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON)
        .collect()
}

/// A peer's answer to a check task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAnswer {
    /// One result per path, in order.
    pub results: Vec<CheckResult>,
    /// Ed25519 by the node key over [`check_signable`].
    pub signature: [u8; 64],
}

#[derive(Deserialize)]
pub(super) struct RawCheckAnswer {
    results: Vec<RawResult>,
    signature: String,
}

#[derive(Deserialize)]
pub(super) struct RawResult {
    status: u16,
    body: String,
}

impl CheckAnswer {
    /// Sign `results` for check `id`.
    pub fn sign(key_pair: &KeyPair, id: &TaskId, results: Vec<CheckResult>) -> Self {
        let signature = key_pair.sign(&check_signable(id, &results));
        Self { results, signature }
    }

    /// Decode `{results: [{status, body (hex)}], signature}`.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        if body.len() > MAX_CHECK_POST {
            return Err(MessageError("a check answer is too large"));
        }
        let raw: RawCheckAnswer = serde_json::from_slice(body)
            .map_err(|_| MessageError("a check answer is {results, signature}"))?;
        if raw.results.len() > MAX_CHECK_PATHS {
            return Err(MessageError("too many check results"));
        }
        let mut results = Vec::with_capacity(raw.results.len());
        for r in raw.results {
            if r.body.len() > 2 * MAX_CHECK_BODY {
                return Err(MessageError("a check result is at most 512 KiB"));
            }
            let body = hex::decode(&r.body).map_err(|_| MessageError("a check body is hex"))?;
            results.push(CheckResult {
                status: r.status,
                body,
            });
        }
        Ok(Self {
            results,
            signature: parse_sig(&raw.signature)?,
        })
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "results": self.results.iter().map(|r| serde_json::json!({
                "status": r.status,
                "body": hex::encode(&r.body),
            })).collect::<Vec<_>>(),
            "signature": hex::encode(self.signature),
        })
    }

    /// Whether the signature is `key`'s for check `id`.
    pub fn verify(&self, key: &[u8; 32], id: &TaskId) -> bool {
        verify_signature(key, &check_signable(id, &self.results), &self.signature)
    }
}

/// A browser's offer (`POST /v1/signal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRequest {
    /// The WebRTC peer's node key.
    pub peer: [u8; 32],
    /// The SDP offer.
    pub sdp: String,
    /// The browser sent the offer before its candidates and trickles them
    /// (`POST /v1/signal/candidate`): refused with `409 NO_TRICKLE` for a peer that does not
    /// take them, so the browser sends the whole offer instead.
    pub trickle: bool,
}

#[derive(Deserialize)]
pub(super) struct RawOffer {
    peer: String,
    sdp: String,
    #[serde(default)]
    trickle: bool,
}

impl OfferRequest {
    /// Decode `{peer, sdp}`.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        if body.len() > MAX_OFFER_POST {
            return Err(MessageError("an offer is at most 40 KiB"));
        }
        let raw: RawOffer = serde_json::from_slice(body)
            .map_err(|_| MessageError("an offer is {\"peer\": KEY, \"sdp\": SDP}"))?;
        check_sdp(&raw.sdp)?;
        Ok(Self {
            peer: parse_key(&raw.peer)?,
            sdp: raw.sdp,
            trickle: raw.trickle,
        })
    }
}

/// A browser's trickled candidate (`POST /v1/signal/candidate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateRequest {
    /// The WebRTC peer's node key.
    pub peer: [u8; 32],
    /// The browser's ICE ufrag (its offer's `a=ice-ufrag`).
    pub ufrag: String,
    /// `candidate:…`.
    pub candidate: String,
}

impl CandidateRequest {
    /// Decode `{peer, ufrag, candidate}`.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Raw {
            peer: String,
            ufrag: String,
            candidate: String,
        }
        if body.len() > MAX_CANDIDATE_POST {
            return Err(MessageError("a candidate request is at most 2 KiB"));
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|_| {
            MessageError("a candidate request is {\"peer\", \"ufrag\", \"candidate\"}")
        })?;
        check_ufrag(&raw.ufrag)?;
        check_candidate(&raw.candidate)?;
        Ok(Self {
            peer: parse_key(&raw.peer)?,
            ufrag: raw.ufrag,
            candidate: raw.candidate,
        })
    }
}

/// What the browser gets back (`200` of `POST /v1/signal`): the answer and the signature it
/// must check against the key it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAnswer {
    /// The node key.
    pub peer: [u8; 32],
    /// The SDP answer.
    pub sdp: String,
    /// Ed25519 over [`answer_signable`].
    pub signature: [u8; 64],
}

impl SignedAnswer {
    /// Decode the JSON a browser gets.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Raw {
            peer: String,
            sdp: String,
            signature: String,
        }
        if body.len() > MAX_OFFER_POST {
            return Err(MessageError("a signed answer is at most 40 KiB"));
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|_| MessageError("a signed answer is {peer, sdp, signature}"))?;
        check_sdp(&raw.sdp)?;
        Ok(Self {
            peer: parse_key(&raw.peer)?,
            sdp: raw.sdp,
            signature: parse_sig(&raw.signature)?,
        })
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "peer": hex::encode(self.peer),
            "sdp": self.sdp,
            "signature": hex::encode(self.signature),
        })
    }
}
