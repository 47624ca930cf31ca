//! What a community's instance serves beyond the log endpoints (`protocol/gateway.md` §7):
//! the bootstrap page and its script ([`Site`]), the bootstrap JSON (the community's keys and
//! the healthy peers), the table of registered peers ([`Instance`]) with their health and what
//! they report having served; and the two loops around it: [`run_checks`] (the instance checks
//! every registered peer) and [`run_reporter`] (a mirror registers and reports to an instance).
//!
//! Ownership and flow:
//! - [`Instance`] is shared (`Arc`) between the router (registrations, reports, listings),
//!   the check loop (health) and the node (the communities it publishes, the status file);
//! - a mirror's [`run_reporter`] POSTs `{url}` to `/v1/peers` and `{bytes, requests,
//!   startedMs}` to `/v1/report` every few seconds, both signed with its node key
//!   ([`crate::auth`]); the router verifies them and resolves the URL once
//!   ([`crate::address`]); the table keeps one entry per canonical address, at most
//!   [`MAX_REGISTERED`], capped per IP and per /24 (/48), stale entries evicted first;
//! - [`run_checks`] first challenges every new entry (`GET /v1/identity`: its gateway must sign
//!   with the key that registered it), then asks every proven, fresh peer, every few seconds,
//!   for the last block of each community log at the instance's own head and verifies the
//!   range proof against it: a peer is listed (a random sample to each reader) only while that
//!   works and it keeps registering. Every connection goes to the address checked at
//!   registration, and only if the address policy allows it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use peerhost_ids::{Key, KeyPair};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::range::{self, TrustedHead};
use crate::report::{Outcome, ReportError, ReportLimits, Reports, Urgent};
use crate::signal::{IceServer, Relay, SignalLimits};
use crate::site::Site;
use crate::source::{LogSource, SignedHead};
use crate::{address, auth, client};

mod checks;
pub use checks::run_checks;
pub(crate) use checks::{head_to_prove, judge_last_block, last_block_path};

/// Peers kept in the table at most; a full table replaces its stalest unhealthy entry.
pub const MAX_REGISTERED: usize = 256;
/// Peers checked at once.
pub const CHECKS_IN_FLIGHT: usize = 16;

/// Bytes and requests a gateway answered (bodies only, as sent: compressed if compressed).
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    /// Count one response of `bytes` body bytes.
    pub fn add(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Body bytes sent.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A community the instance publishes, as the bootstrap JSON names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CommunityInfo {
    /// The community key (its descriptor log), hex.
    pub key: String,
    /// Its short name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// The posts log (hex), if any.
    pub posts: Option<String>,
    /// The comments log (hex), if any.
    pub comments: Option<String>,
    /// The web app's assets log (hex), if any.
    pub assets: Option<String>,
}

impl CommunityInfo {
    /// A community and its logs.
    pub fn new(
        key: Key,
        name: String,
        title: String,
        posts: Option<Key>,
        comments: Option<Key>,
        assets: Option<Key>,
    ) -> Self {
        Self {
            key: key.to_hex(),
            name,
            title,
            posts: posts.map(|k| k.to_hex()),
            comments: comments.map(|k| k.to_hex()),
            assets: assets.map(|k| k.to_hex()),
        }
    }

    /// The keys of its logs (descriptor, posts, comments, assets) that parse.
    pub(crate) fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        [
            Some(&self.key),
            self.posts.as_ref(),
            self.comments.as_ref(),
            self.assets.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|h| Key::parse(h).ok())
    }
}

/// One row of the contribution table (`GET /v1/contributions`, `peerhost status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Contribution {
    /// The peer's gateway base URL, canonical (`http://IP:PORT`).
    pub url: String,
    /// The key it registered with (hex): its node key, proven by a challenge.
    #[serde(default)]
    pub key: String,
    /// Whether it answered the key challenge (until then it is not health-checked).
    #[serde(default)]
    pub proven: bool,
    /// Whether its last health check passed.
    pub healthy: bool,
    /// Why the last check failed, as a short code (`UNREACHABLE`, `TIMEOUT`, `HTTP_STATUS`,
    /// `BEHIND`, `BAD_PROOF`, `BAD_RESPONSE`, `CHALLENGE_FAILED`, `NOT_CHECKED`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The failure in words (the OS error, the status and body start): only in the operator's
    /// view (`peerhost status`, logs), never in the public table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// First registration, ms since the Unix epoch.
    pub first_seen_ms: u64,
    /// Last registration or report.
    pub last_seen_ms: u64,
    /// Last health check.
    pub checked_ms: u64,
    /// Time it passed its checks in all (ms): each passed check counts the time since the
    /// previous one, when that passed too.
    pub uptime_ms: u64,
    /// Body bytes its gateway served, as it last reported (its own count).
    pub bytes_served: u64,
    /// Requests its gateway answered, as it last reported.
    pub requests: u64,
    /// When its gateway started (reported), ms since the Unix epoch.
    pub started_ms: u64,
    /// `"webrtc"` for a WebRTC peer (`url` is then `rtc://` and its node key; it is reached
    /// through signaling, §7.3); absent for an HTTP gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Readers' reports of bad data from it that the instance admitted (§7.4).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reports: u64,
    /// When a report last made the instance check it (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reported_ms: u64,
    /// Until when it is not listed nor checked (ms since the Unix epoch): a check a report
    /// asked for found a bad proof (§7.4).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub banned_until_ms: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How an [`Instance`] checks and lists peers.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct InstanceOptions {
    /// How often every registered peer is checked.
    pub check_every: Duration,
    /// A peer that has not registered or reported for this long is no longer listed, no longer
    /// checked, and the first to be evicted when room is needed.
    pub stale_after: Duration,
    /// A peer not seen for this long is dropped from the table.
    pub forget_after: Duration,
    /// Time allowed for one check request.
    pub check_timeout: Duration,
    /// Peers kept in the table at most.
    pub max_registered: usize,
    /// Peers with one IP address at most (public addresses).
    pub max_per_ip: usize,
    /// Peers in one /24 (IPv4) or /48 (IPv6) at most (public addresses).
    pub max_per_prefix: usize,
    /// Accept (and connect to) loopback, private, link-local, unique-local, CGNAT,
    /// documentation and benchmarking addresses: for LANs, tests and the demo. Those peers are
    /// not subject to the per-address caps (the operator vouches for that network).
    pub allow_private_peers: bool,
    /// The limits of WebRTC signaling (§7.3).
    pub signal: SignalLimits,
    /// The limits of readers' reports of bad peers (§7.4).
    pub report: ReportLimits,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        Self {
            check_every: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
            check_timeout: Duration::from_secs(5),
            max_registered: MAX_REGISTERED,
            max_per_ip: 4,
            max_per_prefix: 16,
            allow_private_peers: false,
            signal: SignalLimits::default(),
            report: ReportLimits::default(),
        }
    }
}

impl InstanceOptions {
    /// Checking every `every`.
    pub fn check_every(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }

    /// Whether private addresses are accepted (see [`InstanceOptions::allow_private_peers`]).
    pub fn allow_private_peers(mut self, allow: bool) -> Self {
        self.allow_private_peers = allow;
        self
    }

    /// With these caps: in all, per IP address, per /24 or /48.
    pub fn caps(mut self, total: usize, per_ip: usize, per_prefix: usize) -> Self {
        self.max_registered = total;
        self.max_per_ip = per_ip;
        self.max_per_prefix = per_prefix;
        self
    }

    /// Listing peers seen within `stale_after`, forgetting them after `forget_after`.
    pub fn lifetimes(mut self, stale_after: Duration, forget_after: Duration) -> Self {
        self.stale_after = stale_after;
        self.forget_after = forget_after;
        self
    }

    /// With these signaling limits.
    pub fn signal_limits(mut self, limits: SignalLimits) -> Self {
        self.signal = limits;
        self
    }

    /// With these limits on readers' reports.
    pub fn report_limits(mut self, limits: ReportLimits) -> Self {
        self.report = limits;
        self
    }

    /// The address policy of checks and registrations.
    pub fn policy(&self) -> address::Policy {
        address::Policy {
            allow_private: self.allow_private_peers,
        }
    }
}

/// Where a peer is in the proof of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// Not proven yet: the next challenge is due at `next_ms`; `failures` in a row so far.
    Pending { failures: u32, next_ms: u64 },
    /// It answered a challenge with its key.
    Proven,
}

/// One registered gateway.
#[derive(Debug, Clone)]
struct Entry {
    key: [u8; 32],
    addr: SocketAddr,
    proof: Proof,
    row: Contribution,
}

/// The peer table: entries by canonical URL, and which URL each key holds.
#[derive(Debug, Default)]
struct Table {
    by_url: BTreeMap<String, Entry>,
    by_key: HashMap<[u8; 32], String>,
}

impl Table {
    fn remove(&mut self, url: &str) {
        if let Some(e) = self.by_url.remove(url) {
            if self.by_key.get(&e.key).is_some_and(|u| u == url) {
                self.by_key.remove(&e.key);
            }
        }
    }
}

/// The instance's side: its page, its communities, the peers registered with it.
#[derive(Debug)]
pub struct Instance {
    site: Option<Site>,
    options: InstanceOptions,
    communities: RwLock<Vec<CommunityInfo>>,
    peers: Mutex<Table>,
    verifier: auth::Verifier,
    signal: Relay,
    reports: Reports,
}

fn now_ms() -> u64 {
    auth::now_ms()
}

/// Why a registration or report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The URL is malformed, does not resolve, or is in a refused range.
    #[error("{0}")]
    BadUrl(#[from] address::UrlError),
    /// The table is full of fresh, proven, healthy peers.
    #[error("the peer table is full")]
    Full,
    /// Too many peers at this IP address or in its /24 (/48).
    #[error("too many peers registered from this address or its network")]
    AddressCap,
    /// Another key holds this URL and proved it lately.
    #[error("another key holds this URL")]
    Taken,
    /// A report from a key that is not registered.
    #[error("not registered: POST /v1/peers first")]
    Unknown,
    /// A report from a key that has not answered its challenge yet.
    #[error("not proven yet: the instance has not checked this key's gateway")]
    NotProven,
}

impl RegisterError {
    /// The code of the HTTP error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUrl(address::UrlError::Refused { .. }) => "REFUSED_ADDRESS",
            Self::BadUrl(_) => "BAD_URL",
            Self::Full => "FULL",
            Self::AddressCap => "ADDRESS_CAP",
            Self::Taken => "URL_TAKEN",
            Self::Unknown => "NOT_REGISTERED",
            Self::NotProven => "NOT_PROVEN",
        }
    }
}

/// A registration's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registered {
    /// The canonical URL.
    pub url: String,
    /// Whether the key is already proven at that URL.
    pub proven: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A failed check: a public code and the operator's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: &'static str,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    fn of_client(log: &str, e: &client::ClientError) -> Self {
        let code = match e {
            client::ClientError::Timeout => "TIMEOUT",
            client::ClientError::Refused(_) => "REFUSED_ADDRESS",
            client::ClientError::BadResponse(_) | client::ClientError::Url(_) => "BAD_RESPONSE",
            _ => "UNREACHABLE",
        };
        Self::new(code, format!("{log}{e}"))
    }
}

impl Instance {
    /// An instance serving `site` (if any) at `/`.
    pub fn new(site: Option<Site>, options: InstanceOptions) -> Self {
        Self {
            site,
            options,
            communities: RwLock::new(Vec::new()),
            peers: Mutex::new(Table::default()),
            verifier: auth::Verifier::default(),
            signal: Relay::new(options.signal, options, Vec::new()),
            reports: Reports::new(options.report),
        }
    }

    /// Readers' reports of bad peers: their budgets and the checks they asked for (§7.4).
    pub fn reports(&self) -> &Reports {
        &self.reports
    }

    /// A reader's report (the body of `POST /v1/bad-peer`, from `client`) that a peer served
    /// data that does not verify. Nothing in it is trusted: within the reporter's and the
    /// peer's budgets, a listed (proven, fresh) peer gets an immediate health check, and is
    /// delisted if that fails.
    pub fn report_bad_peer(
        &self,
        client: Option<std::net::IpAddr>,
        body: &[u8],
    ) -> Result<Outcome, ReportError> {
        let now = now_ms();
        let stale = now.saturating_sub(ms(self.options.stale_after));
        let mut listed = None;
        let outcome = self.reports.submit(
            client,
            body,
            |url| {
                let t = lock(&self.peers);
                let ok = t.by_url.get(url).is_some_and(|e| {
                    e.proof == Proof::Proven
                        && e.row.last_seen_ms >= stale
                        && e.row.banned_until_ms <= now
                });
                if ok {
                    listed = Some(url.to_owned());
                }
                ok
            },
            now,
        )?;
        if let Some(url) = listed {
            if let Some(e) = lock(&self.peers).by_url.get_mut(&url) {
                e.row.reports += 1;
                if outcome == Outcome::Scheduled {
                    e.row.reported_ms = now;
                }
            }
        }
        Ok(outcome)
    }

    /// The entry at `url` if it may be checked now (proven and fresh).
    fn checkable(&self, url: &str, now: u64) -> Option<Entry> {
        let stale = now.saturating_sub(ms(self.options.stale_after));
        lock(&self.peers)
            .by_url
            .get(url)
            .filter(|e| e.proof == Proof::Proven && e.row.last_seen_ms >= stale)
            .filter(|e| e.row.banned_until_ms <= now)
            .cloned()
    }

    /// A report-triggered check's outcome: recorded like any check; a bad proof (the
    /// instance verified it against its own head: a lie or a broken store, not the reporter's
    /// word) also keeps the peer off the list, and unchecked, for [`ReportLimits::ban`].
    fn record_reported_check(&self, url: &str, key: [u8; 32], result: Result<(), Failure>) {
        let banned = result.as_ref().is_err_and(|f| f.code == "BAD_PROOF");
        self.record_check(url, key, result);
        if banned {
            let until = now_ms().saturating_add(ms(self.options.report.ban));
            if let Some(e) = lock(&self.peers)
                .by_url
                .get_mut(url)
                .filter(|e| e.key == key)
            {
                e.row.banned_until_ms = until;
            }
        }
    }

    /// Giving browsers these ICE servers (the instance's STUN, configured STUN and TURN
    /// servers): `/v1/bootstrap`, the bootstrap document and the WebRTC peers' polls list them.
    pub fn ice_servers(mut self, servers: Vec<IceServer>) -> Self {
        self.signal = Relay::new(self.options.signal, self.options, servers);
        self
    }

    /// The WebRTC signaling relay and its peers (§7.3).
    pub fn signal(&self) -> &Relay {
        &self.signal
    }

    pub(crate) fn site(&self) -> Option<&Site> {
        self.site.as_ref()
    }

    /// How peers are checked and capped.
    pub fn options(&self) -> &InstanceOptions {
        &self.options
    }

    /// The verifier of signed registrations and reports (its replay cache).
    pub fn verifier(&self) -> &auth::Verifier {
        &self.verifier
    }

    /// Set the communities the bootstrap JSON names (and whose logs peers are checked on).
    pub fn set_communities(&self, communities: Vec<CommunityInfo>) {
        if let Ok(mut c) = self.communities.write() {
            *c = communities;
        }
    }

    /// The communities.
    pub fn communities(&self) -> Vec<CommunityInfo> {
        self.communities
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Whether `addr` counts against the per-address caps.
    fn capped(&self, addr: &SocketAddr) -> bool {
        !(self.options.allow_private_peers && address::classify(addr.ip()).is_some())
    }

    /// Register (or refresh) the gateway at `addr` (resolved and checked: see
    /// [`crate::address::resolve`]) for the node key `key`, which signed the registration. A new
    /// entry is not checked until its gateway answers a challenge with `key`. A key holds one URL:
    /// registering another moves it.
    pub fn register(&self, key: [u8; 32], addr: SocketAddr) -> Result<Registered, RegisterError> {
        let addr = SocketAddr::new(address::unmap(addr.ip()), addr.port());
        self.options.policy().check(addr.ip()).map_err(|refusal| {
            RegisterError::BadUrl(address::UrlError::Refused {
                addr: addr.ip(),
                refusal,
            })
        })?;
        let url = address::canonical_url(addr);
        let now = now_ms();
        let stale = now.saturating_sub(ms(self.options.stale_after));
        let mut t = lock(&self.peers);
        if let Some(e) = t.by_url.get_mut(&url) {
            if e.key == key {
                e.row.last_seen_ms = now;
                return Ok(Registered {
                    url,
                    proven: e.proof == Proof::Proven,
                });
            }
            if e.proof == Proof::Proven && e.row.last_seen_ms >= stale {
                return Err(RegisterError::Taken);
            }
            // Unproven or stale: the new key may have it (it must prove it too).
            t.remove(&url);
        }
        if let Some(old) = t.by_key.get(&key).cloned() {
            t.remove(&old);
        }
        // Room, per address, per network, in all: evict what is stale first, then what is
        // unproven, then what fails its checks; never a fresh, proven, healthy peer.
        if self.capped(&addr) {
            let ip = addr.ip();
            let prefix = address::prefix_of(ip);
            self.make_room(&mut t, now, self.options.max_per_ip, |e| {
                address::unmap(e.addr.ip()) == ip
            })?;
            self.make_room(&mut t, now, self.options.max_per_prefix, |e| {
                address::prefix_of(e.addr.ip()) == prefix
            })?;
        }
        self.make_room(&mut t, now, self.options.max_registered, |_| true)
            .map_err(|_| RegisterError::Full)?;
        t.by_key.insert(key, url.clone());
        t.by_url.insert(
            url.clone(),
            Entry {
                key,
                addr,
                proof: Proof::Pending {
                    failures: 0,
                    next_ms: 0,
                },
                row: Contribution {
                    url: url.clone(),
                    key: hex::encode(key),
                    first_seen_ms: now,
                    last_seen_ms: now,
                    problem: Some("NOT_CHECKED".into()),
                    ..Contribution::default()
                },
            },
        );
        Ok(Registered { url, proven: false })
    }

    /// Evict until fewer than `cap` entries match `within`.
    fn make_room(
        &self,
        t: &mut Table,
        now: u64,
        cap: usize,
        within: impl Fn(&Entry) -> bool,
    ) -> Result<(), RegisterError> {
        let stale = now.saturating_sub(ms(self.options.stale_after));
        loop {
            let matching: Vec<&Entry> = t.by_url.values().filter(|e| within(e)).collect();
            if matching.len() < cap.max(1) {
                return Ok(());
            }
            // (rank, last seen): lower goes first.
            let victim = matching
                .iter()
                .filter_map(|e| {
                    let rank = if e.row.last_seen_ms < stale {
                        0
                    } else if e.proof != Proof::Proven {
                        1
                    } else if !e.row.healthy {
                        2
                    } else {
                        return None;
                    };
                    Some(((rank, e.row.last_seen_ms), e.row.url.clone()))
                })
                .min()
                .map(|(_, url)| url)
                .ok_or(RegisterError::AddressCap)?;
            t.remove(&victim);
        }
    }

    /// A registered, proven peer's report of what its gateway served (its own counters,
    /// trusted as told: the instance cannot see traffic between readers and peers). Only the
    /// key that registered the entry, once proven, can write it.
    pub fn report(
        &self,
        key: [u8; 32],
        bytes_served: u64,
        requests: u64,
        started_ms: u64,
    ) -> Result<(), RegisterError> {
        let mut t = lock(&self.peers);
        let url = t.by_key.get(&key).cloned().ok_or(RegisterError::Unknown)?;
        let e = t.by_url.get_mut(&url).ok_or(RegisterError::Unknown)?;
        if e.proof != Proof::Proven {
            return Err(RegisterError::NotProven);
        }
        e.row.last_seen_ms = now_ms();
        e.row.bytes_served = bytes_served;
        e.row.requests = requests;
        e.row.started_ms = started_ms;
        Ok(())
    }

    /// Up to `limit` peers to give readers, picked at random among those that are proven,
    /// passed their last check and registered lately (a different sample each call, so load
    /// spreads and no spelling or order of URLs can push a peer off the list).
    pub fn healthy_peers(&self, limit: usize) -> Vec<String> {
        let now = now_ms();
        let stale = now.saturating_sub(ms(self.options.stale_after));
        let all: Vec<String> = lock(&self.peers)
            .by_url
            .values()
            .filter(|e| e.proof == Proof::Proven && e.row.healthy && e.row.last_seen_ms >= stale)
            .filter(|e| e.row.banned_until_ms <= now)
            .map(|e| e.row.url.clone())
            .collect();
        let mut rng = rand::thread_rng();
        all.choose_multiple(&mut rng, limit).cloned().collect()
    }

    /// The whole table, by URL, as the operator sees it (with each failure's detail): the
    /// HTTP gateways, then the WebRTC peers (`rtc://KEY`).
    pub fn contributions(&self) -> Vec<Contribution> {
        let mut rows: Vec<Contribution> = lock(&self.peers)
            .by_url
            .values()
            .map(|e| e.row.clone())
            .collect();
        rows.extend(self.signal.contributions());
        rows
    }

    /// The table as anyone may see it: failures as codes only.
    pub fn public_contributions(&self) -> Vec<Contribution> {
        let mut rows = self.contributions();
        for r in &mut rows {
            r.detail = None;
        }
        rows
    }

    /// What the check loop should do now: challenges due and health checks, for fresh entries;
    /// entries not seen for `forget_after` are dropped.
    fn due(&self, now: u64) -> Vec<(Entry, bool)> {
        let stale = now.saturating_sub(ms(self.options.stale_after));
        let forget = now.saturating_sub(ms(self.options.forget_after));
        let mut t = lock(&self.peers);
        let gone: Vec<String> = t
            .by_url
            .values()
            .filter(|e| e.row.last_seen_ms < forget)
            .map(|e| e.row.url.clone())
            .collect();
        for url in gone {
            t.remove(&url);
        }
        t.by_url
            .values()
            .filter(|e| e.row.last_seen_ms >= stale)
            .filter_map(|e| match e.proof {
                Proof::Proven if e.row.banned_until_ms > now => None,
                Proof::Proven => Some((e.clone(), false)),
                Proof::Pending { next_ms, .. } if next_ms <= now => Some((e.clone(), true)),
                Proof::Pending { .. } => None,
            })
            .collect()
    }

    fn record_challenge(&self, url: &str, key: [u8; 32], result: Result<(), Failure>) {
        let now = now_ms();
        let mut t = lock(&self.peers);
        let Some(e) = t.by_url.get_mut(url).filter(|e| e.key == key) else {
            return;
        };
        match result {
            Ok(()) => {
                e.proof = Proof::Proven;
                e.row.proven = true;
                e.row.problem = Some("NOT_CHECKED".into());
                e.row.detail = None;
            }
            Err(f) => {
                let failures = match e.proof {
                    Proof::Pending { failures, .. } => failures.saturating_add(1),
                    Proof::Proven => 1,
                };
                // Back off: one check period, doubling, at most 64 of them.
                let wait = ms(self.options.check_every).saturating_mul(1 << failures.min(6));
                e.proof = Proof::Pending {
                    failures,
                    next_ms: now.saturating_add(wait),
                };
                e.row.problem = Some(f.code.into());
                e.row.detail = Some(f.detail);
            }
        }
        e.row.checked_ms = now;
    }

    fn record_check(&self, url: &str, key: [u8; 32], result: Result<(), Failure>) {
        let now = now_ms();
        let mut t = lock(&self.peers);
        let Some(e) = t.by_url.get_mut(url).filter(|e| e.key == key) else {
            return;
        };
        e.row.record_check(result, now);
    }
}

impl Contribution {
    /// A health check's outcome at `now`: uptime grows while checks keep passing; a failure
    /// keeps its public code and the operator's detail. HTTP mirrors and WebRTC peers alike.
    pub(crate) fn record_check(&mut self, result: Result<(), Failure>, now: u64) {
        match result {
            Ok(()) => {
                if self.healthy && self.checked_ms > 0 {
                    self.uptime_ms += now.saturating_sub(self.checked_ms);
                }
                self.healthy = true;
                self.problem = None;
                self.detail = None;
            }
            Err(f) => {
                self.healthy = false;
                self.problem = Some(f.code.into());
                self.detail = Some(f.detail);
            }
        }
        self.checked_ms = now;
    }
}

/// A mirror's loop: every `every`, register `own_url` with each instance (`POST
/// {instance}/v1/peers`) and report `counters` (`POST {instance}/v1/report`), both signed with
/// `key_pair` (the node key; the mirror's gateway answers the instance's challenge with the same
/// key: [`crate::Config::identity`]). Failures are logged and retried at the next round. Ends
/// with `shutdown`.
pub async fn run_reporter(
    instances: Vec<String>,
    own_url: String,
    counters: Arc<Counters>,
    key_pair: KeyPair,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let started = now_ms();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        for base in &instances {
            let base = base.trim_end_matches('/');
            let reg = serde_json::json!({ "url": own_url });
            let report = serde_json::json!({
                "url": own_url,
                "bytes": counters.bytes(),
                "requests": counters.requests(),
                "startedMs": started,
            });
            let timeout = Duration::from_secs(5);
            let peers = format!("{base}/v1/peers");
            let r = match client::post_json_signed(&peers, &reg, &key_pair, timeout).await {
                Ok(r) if r.status == 200 && json_flag(&r.body, "proven") => {
                    let to = format!("{base}/v1/report");
                    client::post_json_signed(&to, &report, &key_pair, timeout).await
                }
                other => other,
            };
            match r {
                Ok(r) if r.status == 200 => {}
                Ok(r) => tracing::warn!(
                    instance = %base,
                    "registration refused: HTTP {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                ),
                Err(e) => tracing::warn!(instance = %base, "cannot register: {e}"),
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

fn json_flag(body: &[u8], name: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v[name] == true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn k(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn lan() -> Instance {
        Instance::new(None, InstanceOptions::default().allow_private_peers(true))
    }

    fn prove(i: &Instance, url: &str) {
        let key = lock(&i.peers).by_url[url].key;
        i.record_challenge(url, key, Ok(()));
    }

    fn set_seen(i: &Instance, url: &str, at: u64) {
        lock(&i.peers).by_url.get_mut(url).unwrap().row.last_seen_ms = at;
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let strict = Instance::new(None, InstanceOptions::default());
        for a in [
            "127.0.0.1:80",
            "10.0.0.1:80",
            "[::1]:80",
            "[::ffff:192.168.0.1]:80",
        ] {
            let e = strict.register(k(1), sa(a)).unwrap_err();
            assert_eq!(e.code(), "REFUSED_ADDRESS", "{a}");
        }
        assert!(strict.register(k(1), sa("8.8.8.8:80")).is_ok());
        assert_eq!(
            lan().register(k(1), sa("127.0.0.1:80")).unwrap().url,
            "http://127.0.0.1:80"
        );
        // Never: the unspecified address.
        assert!(lan().register(k(1), sa("0.0.0.0:80")).is_err());
    }

    #[test]
    fn one_entry_per_url_and_per_key() {
        let i = lan();
        let r = i.register(k(1), sa("[::ffff:127.0.0.1]:8080")).unwrap();
        assert_eq!(
            r,
            Registered {
                url: "http://127.0.0.1:8080".into(),
                proven: false
            }
        );
        assert_eq!(i.register(k(1), sa("127.0.0.1:8080")).unwrap().url, r.url);
        assert_eq!(i.contributions().len(), 1);
        // Unproven: another key may take it over (and will have to prove it).
        i.register(k(2), sa("127.0.0.1:8080")).unwrap();
        assert_eq!(i.contributions()[0].key, hex::encode(k(2)));
        // Proven and fresh: it stays with its key.
        prove(&i, &r.url);
        assert_eq!(
            i.register(k(3), sa("127.0.0.1:8080")),
            Err(RegisterError::Taken)
        );
        // Stale: it can be taken.
        set_seen(&i, &r.url, 1);
        assert!(i.register(k(3), sa("127.0.0.1:8080")).is_ok());
        // A key that registers another URL moves.
        i.register(k(3), sa("127.0.0.1:9090")).unwrap();
        let urls: Vec<String> = i.contributions().into_iter().map(|c| c.url).collect();
        assert_eq!(urls, ["http://127.0.0.1:9090"]);
    }

    #[test]
    fn reports_need_the_proven_key() {
        let i = lan();
        assert_eq!(i.report(k(1), 1, 1, 0), Err(RegisterError::Unknown));
        let url = i.register(k(1), sa("127.0.0.1:1")).unwrap().url;
        assert_eq!(i.report(k(1), 1, 1, 0), Err(RegisterError::NotProven));
        prove(&i, &url);
        // Another key cannot write this row.
        assert_eq!(i.report(k(9), 666, 666, 0), Err(RegisterError::Unknown));
        i.report(k(1), 10, 2, 5).unwrap();
        let row = &i.contributions()[0];
        assert_eq!((row.bytes_served, row.requests, row.started_ms), (10, 2, 5));
    }

    #[test]
    fn caps_per_address_and_network_evict_in_order() {
        let i = Instance::new(None, InstanceOptions::default().caps(8, 2, 3));
        i.register(k(1), sa("8.8.8.8:1")).unwrap();
        let b = i.register(k(2), sa("8.8.8.8:2")).unwrap().url;
        prove(&i, "http://8.8.8.8:1");
        prove(&i, &b);
        i.record_check("http://8.8.8.8:1", k(1), Ok(()));
        i.record_check(&b, k(2), Ok(()));
        // Two fresh, proven, healthy peers at 8.8.8.8: a third is refused.
        assert_eq!(
            i.register(k(3), sa("8.8.8.8:3")),
            Err(RegisterError::AddressCap)
        );
        // One fails its check: it makes room.
        i.record_check(&b, k(2), Err(Failure::new("TIMEOUT", "x")));
        i.register(k(3), sa("8.8.8.8:3")).unwrap();
        assert!(i.contributions().iter().all(|c| c.url != b));
        // The /24: one more fits, then unproven ones go first.
        i.register(k(4), sa("8.8.8.9:1")).unwrap();
        i.register(k(5), sa("8.8.8.10:1")).unwrap();
        let urls: Vec<String> = i.contributions().into_iter().map(|c| c.url).collect();
        assert_eq!(urls.len(), 3, "{urls:?}");
        assert!(
            urls.contains(&"http://8.8.8.8:1".to_owned()),
            "the healthy one stays"
        );
        // Other networks are not affected; the table cap holds.
        for n in 0..20u8 {
            let _ = i.register(k(100 + n), sa(&format!("9.9.{n}.1:1")));
        }
        assert_eq!(i.contributions().len(), 8);
        // Stale entries go first, healthy or not.
        let all = i.contributions();
        let oldest = &all[all.len() - 1].url;
        prove(&i, oldest);
        let key = lock(&i.peers).by_url[oldest].key;
        i.record_check(oldest, key, Ok(()));
        set_seen(&i, oldest, 1);
        i.register(k(200), sa("7.7.7.7:1")).unwrap();
        assert!(i.contributions().iter().all(|c| &c.url != oldest));
    }

    #[test]
    fn private_peers_are_not_capped_per_address() {
        let i = Instance::new(
            None,
            InstanceOptions::default()
                .caps(64, 1, 1)
                .allow_private_peers(true),
        );
        for port in 1..=10u8 {
            i.register(k(port), sa(&format!("127.0.0.1:{port}")))
                .unwrap();
        }
        assert_eq!(i.contributions().len(), 10);
    }

    #[test]
    fn readers_get_a_random_sample_of_proven_healthy_fresh_peers() {
        let i = lan();
        for n in 1..=40u8 {
            let url = i
                .register(k(n), sa(&format!("127.0.0.1:{}", 1000 + u16::from(n))))
                .unwrap()
                .url;
            if n <= 30 {
                prove(&i, &url);
                i.record_check(&url, k(n), Ok(()));
            }
        }
        // An unproven peer is never listed, even if a check somehow passed.
        i.record_check("http://127.0.0.1:1040", k(40), Ok(()));
        set_seen(&i, "http://127.0.0.1:1001", 1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let got = i.healthy_peers(8);
            assert_eq!(got.len(), 8);
            assert!(!got.contains(&"http://127.0.0.1:1040".to_owned()));
            assert!(!got.contains(&"http://127.0.0.1:1001".to_owned()), "stale");
            seen.extend(got);
        }
        // Not a sorted prefix: over many calls, most of the 29 listable peers come up.
        assert!(seen.len() > 20, "{}", seen.len());
        assert_eq!(i.healthy_peers(64).len(), 29);
    }

    #[test]
    fn reports_name_listed_peers_only_and_are_counted_on_their_row() {
        let i = lan();
        let url = i.register(k(1), sa("127.0.0.1:7")).unwrap().url;
        let body = |peer: &str| {
            serde_json::to_vec(&serde_json::json!({
                "peer": peer, "log": "cd".repeat(32), "start": 3, "end": 9
            }))
            .unwrap()
        };
        let reader = Some("10.1.1.1".parse().unwrap());
        // Registered but not proven: not a peer any reader was given.
        assert_eq!(
            i.report_bad_peer(reader, &body(&url)),
            Err(ReportError::UnknownPeer)
        );
        prove(&i, &url);
        assert_eq!(
            i.report_bad_peer(reader, &body(&format!("{url}/"))),
            Ok(Outcome::Scheduled)
        );
        assert_eq!(i.report_bad_peer(reader, &body(&url)), Ok(Outcome::Recent));
        let row = &i.contributions()[0];
        assert_eq!(row.reports, 2);
        assert!(row.reported_ms > 0);
        let q = i.reports.take();
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].url.as_str(), q[0].range.clone()),
            (url.as_str(), 3..9)
        );
        assert!(i.checkable(&url, now_ms()).is_some());
        // A failed check it asked for: unhealthy; a bad proof also bans it (not listed, not
        // checked, not reportable) even if a later periodic check would pass.
        i.record_reported_check(&url, k(1), Err(Failure::new("TIMEOUT", "x")));
        assert_eq!(i.contributions()[0].banned_until_ms, 0);
        i.record_check(&url, k(1), Ok(()));
        assert_eq!(i.healthy_peers(8), std::slice::from_ref(&url));
        i.record_reported_check(&url, k(1), Err(Failure::new("BAD_PROOF", "x")));
        i.record_check(&url, k(1), Ok(()));
        assert!(i.healthy_peers(8).is_empty());
        assert!(i.due(now_ms()).is_empty());
        assert!(i.checkable(&url, now_ms()).is_none());
        assert_eq!(
            i.report_bad_peer(Some("10.1.1.3".parse().unwrap()), &body(&url)),
            Err(ReportError::UnknownPeer)
        );
        lock(&i.peers)
            .by_url
            .get_mut(&url)
            .unwrap()
            .row
            .banned_until_ms = 1;
        assert_eq!(i.healthy_peers(8), std::slice::from_ref(&url));
        // A stale peer is not checked for anyone's report.
        set_seen(&i, &url, 1);
        assert!(i.checkable(&url, now_ms()).is_none());
        assert_eq!(
            i.report_bad_peer(Some("10.1.1.2".parse().unwrap()), &body(&url)),
            Err(ReportError::UnknownPeer)
        );
    }

    #[test]
    fn details_stay_out_of_the_public_table() {
        let i = lan();
        let url = i.register(k(1), sa("127.0.0.1:5")).unwrap().url;
        i.record_challenge(
            &url,
            k(1),
            Err(Failure::new(
                "UNREACHABLE",
                "Connection refused (os error 111)",
            )),
        );
        let private = &i.contributions()[0];
        assert_eq!(private.problem.as_deref(), Some("UNREACHABLE"));
        assert!(private.detail.as_deref().unwrap().contains("refused"));
        let public = serde_json::to_string(&i.public_contributions()).unwrap();
        assert!(
            !public.contains("refused") && public.contains("UNREACHABLE"),
            "{public}"
        );
        // A failed challenge backs off: not due again at once.
        assert!(i.due(now_ms()).is_empty());
    }
}
