//! What a community's instance serves beyond the log endpoints (`protocol/gateway.md` §7):
//! the bootstrap page and its script ([`Site`]), the bootstrap JSON (the community's keys and
//! the healthy peers), the table of registered peers ([`Instance`]) with their health and what
//! they report having served; and the two loops around it: [`run_checks`] (the instance checks
//! every registered peer) and [`run_reporter`] (a mirror registers and reports to an instance).
//!
//! Ownership and flow:
//! - [`Instance`] is shared (`Arc`) between the router (registrations, reports, listings),
//!   the check loop (health) and the node (the communities it publishes, the status file);
//! - a mirror's [`run_reporter`] POSTs `{url}` to `/v1/peers` and `{url, bytes, requests,
//!   startedMs}` to `/v1/report` every few seconds; the instance keeps at most
//!   [`MAX_REGISTERED`] peers;
//! - [`run_checks`] asks every registered peer, every few seconds, for the last block of each
//!   community log at the instance's own head and verifies the range proof against it: a peer
//!   is listed only while that works and it keeps registering.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peerhost_ids::Key;
use serde::{Deserialize, Serialize};

use crate::client;
use crate::range::{self, TrustedHead};
use crate::site::Site;
use crate::source::{LogSource, SignedHead};

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

    fn keys(&self) -> impl Iterator<Item = Key> + '_ {
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
    /// The peer's gateway base URL.
    pub url: String,
    /// Whether its last health check passed.
    pub healthy: bool,
    /// Why the last check failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
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
}

/// How an [`Instance`] checks and lists peers.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct InstanceOptions {
    /// How often every registered peer is checked.
    pub check_every: Duration,
    /// A peer that has not registered or reported for this long is no longer listed.
    pub stale_after: Duration,
    /// Time allowed for one check request.
    pub check_timeout: Duration,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        Self {
            check_every: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
            check_timeout: Duration::from_secs(5),
        }
    }
}

impl InstanceOptions {
    /// Checking every `every`.
    pub fn check_every(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }
}

/// The instance's side: its page, its communities, the peers registered with it.
#[derive(Debug)]
pub struct Instance {
    site: Option<Site>,
    options: InstanceOptions,
    communities: RwLock<Vec<CommunityInfo>>,
    peers: Mutex<BTreeMap<String, Contribution>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a registration or report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Not `http://HOST:PORT` (no path, at most 200 characters).
    #[error("url must be http://HOST:PORT (no path), at most 200 characters")]
    BadUrl,
    /// The table is full of healthy peers.
    #[error("the peer table is full")]
    Full,
    /// A report for a URL that is not registered.
    #[error("not registered: POST /v1/peers first")]
    Unknown,
}

/// `http://HOST:PORT` with nothing after it (one trailing `/` is dropped).
pub fn normalize_peer_url(url: &str) -> Option<String> {
    let url = url.strip_suffix('/').unwrap_or(url);
    if url.len() > 200 {
        return None;
    }
    let (authority, path) = client::split_url(url).ok()?;
    let port = authority.rsplit_once(':')?.1;
    (path == "/" && !url.ends_with('/') && port.parse::<u16>().is_ok_and(|p| p > 0))
        .then(|| url.to_owned())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Instance {
    /// An instance serving `site` (if any) at `/`.
    pub fn new(site: Option<Site>, options: InstanceOptions) -> Self {
        Self {
            site,
            options,
            communities: RwLock::new(Vec::new()),
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn site(&self) -> Option<&Site> {
        self.site.as_ref()
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

    /// Register (or refresh) a peer's gateway.
    pub fn register(&self, url: &str) -> Result<String, RegisterError> {
        let url = normalize_peer_url(url).ok_or(RegisterError::BadUrl)?;
        let now = now_ms();
        let mut peers = lock(&self.peers);
        if let Some(p) = peers.get_mut(&url) {
            p.last_seen_ms = now;
            return Ok(url);
        }
        if peers.len() >= MAX_REGISTERED {
            // Make room: the unhealthy peer seen longest ago.
            let victim = peers
                .values()
                .filter(|p| !p.healthy)
                .min_by_key(|p| p.last_seen_ms)
                .map(|p| p.url.clone())
                .ok_or(RegisterError::Full)?;
            peers.remove(&victim);
        }
        peers.insert(
            url.clone(),
            Contribution {
                url: url.clone(),
                first_seen_ms: now,
                last_seen_ms: now,
                problem: Some("not checked yet".into()),
                ..Contribution::default()
            },
        );
        Ok(url)
    }

    /// A registered peer's report of what its gateway served (its own counters, trusted as
    /// told: the instance cannot see traffic between readers and peers).
    pub fn report(
        &self,
        url: &str,
        bytes_served: u64,
        requests: u64,
        started_ms: u64,
    ) -> Result<(), RegisterError> {
        let url = normalize_peer_url(url).ok_or(RegisterError::BadUrl)?;
        let mut peers = lock(&self.peers);
        let p = peers.get_mut(&url).ok_or(RegisterError::Unknown)?;
        p.last_seen_ms = now_ms();
        p.bytes_served = bytes_served;
        p.requests = requests;
        p.started_ms = started_ms;
        Ok(())
    }

    /// The peers to give readers: those whose last check passed and that registered lately.
    pub fn healthy_peers(&self, limit: usize) -> Vec<String> {
        let stale = now_ms().saturating_sub(self.stale_ms());
        lock(&self.peers)
            .values()
            .filter(|p| p.healthy && p.last_seen_ms >= stale)
            .take(limit)
            .map(|p| p.url.clone())
            .collect()
    }

    fn stale_ms(&self) -> u64 {
        u64::try_from(self.options.stale_after.as_millis()).unwrap_or(u64::MAX)
    }

    /// The whole table, by URL.
    pub fn contributions(&self) -> Vec<Contribution> {
        lock(&self.peers).values().cloned().collect()
    }

    fn record_check(&self, url: &str, result: Result<(), String>) {
        let now = now_ms();
        let mut peers = lock(&self.peers);
        let Some(p) = peers.get_mut(url) else { return };
        match result {
            Ok(()) => {
                if p.healthy && p.checked_ms > 0 {
                    p.uptime_ms += now.saturating_sub(p.checked_ms);
                }
                p.healthy = true;
                p.problem = None;
            }
            Err(e) => {
                p.healthy = false;
                p.problem = Some(e);
            }
        }
        p.checked_ms = now;
    }
}

/// Check one peer: for every community log the instance holds with at least one block, the
/// peer must serve the last block with a proof against the instance's own head.
async fn check_peer<S: LogSource>(
    source: &Arc<S>,
    url: &str,
    keys: &[Key],
    timeout: Duration,
) -> Result<(), String> {
    for key in keys {
        let s = source.clone();
        let k = *key;
        let head: Option<SignedHead> = tokio::task::spawn_blocking(move || s.head(&k))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some(head) = head.filter(|h| h.length > 0) else {
            continue;
        };
        let (l, f) = (head.length, head.fork);
        let at = format!(
            "{url}/v1/logs/{}/blocks?start={}&end={l}&length={l}&fork={f}",
            key.to_hex(),
            l - 1
        );
        let res = client::get(&at, timeout)
            .await
            .map_err(|e| format!("log {}: {e}", key.to_hex()))?;
        if res.status != 200 {
            return Err(format!(
                "log {}: HTTP {} {}",
                key.to_hex(),
                res.status,
                String::from_utf8_lossy(&res.body[..res.body.len().min(200)])
            ));
        }
        let trusted = TrustedHead {
            fork: f,
            length: l,
            tree_hash: head.tree_hash,
        };
        range::verify(&res.body, &trusted, l - 1..l)
            .map_err(|e| format!("log {}: bad proof: {e}", key.to_hex()))?;
    }
    Ok(())
}

/// The instance's check loop: every `check_every`, check every registered peer (at most
/// [`CHECKS_IN_FLIGHT`] at once). Ends with `shutdown`.
pub async fn run_checks<S: LogSource>(
    instance: Arc<Instance>,
    source: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let urls: Vec<String> = lock(&instance.peers).keys().cloned().collect();
        let keys: Vec<Key> = instance
            .communities()
            .iter()
            .flat_map(|c| c.keys().collect::<Vec<_>>())
            .collect();
        // Up to CHECKS_IN_FLIGHT peers at once: a table of unreachable peers costs one
        // timeout per batch, not one per peer.
        let keys: Arc<[Key]> = keys.into();
        let mut running = tokio::task::JoinSet::new();
        let mut urls = urls.into_iter();
        loop {
            while running.len() < CHECKS_IN_FLIGHT {
                let Some(url) = urls.next() else { break };
                let (source, keys) = (source.clone(), keys.clone());
                let timeout = instance.options.check_timeout;
                running.spawn(async move {
                    let result = check_peer(&source, &url, &keys, timeout).await;
                    (url, result)
                });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            if let Ok((url, result)) = done {
                if let Err(e) = &result {
                    tracing::debug!(peer = %url, "health check failed: {e}");
                }
                instance.record_check(&url, result);
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(instance.options.check_every) => {}
        }
    }
}

/// A mirror's loop: every `every`, register `own_url` with each instance (`POST
/// {instance}/v1/peers`) and report `counters` (`POST {instance}/v1/report`). Failures are
/// logged and retried at the next round. Ends with `shutdown`.
pub async fn run_reporter(
    instances: Vec<String>,
    own_url: String,
    counters: Arc<Counters>,
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
            let r = match client::post_json(&format!("{base}/v1/peers"), &reg, timeout).await {
                Ok(r) if r.status == 200 => {
                    client::post_json(&format!("{base}/v1/report"), &report, timeout).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls() {
        assert_eq!(
            normalize_peer_url("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for bad in [
            "http://127.0.0.1",
            "http://h:0",
            "http://h:1/x",
            "https://h:1",
            "http://h:1//",
            "http://h:99999",
        ] {
            assert_eq!(normalize_peer_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn table_is_bounded_and_reports_need_registration() {
        let i = Instance::new(None, InstanceOptions::default());
        assert_eq!(i.report("http://a:1", 1, 1, 0), Err(RegisterError::Unknown));
        for n in 1..=MAX_REGISTERED {
            i.register(&format!("http://h:{n}")).unwrap();
        }
        // Full of unhealthy peers: the stalest is replaced.
        i.register("http://new:1").unwrap();
        assert_eq!(i.contributions().len(), MAX_REGISTERED);
        i.report("http://new:1", 10, 2, 5).unwrap();
        let row = i
            .contributions()
            .into_iter()
            .find(|c| c.url == "http://new:1")
            .unwrap();
        assert_eq!((row.bytes_served, row.requests, row.started_ms), (10, 2, 5));
        assert!(i.healthy_peers(64).is_empty());
        i.record_check("http://new:1", Ok(()));
        assert_eq!(i.healthy_peers(64), vec!["http://new:1".to_owned()]);
        i.record_check("http://new:1", Err("down".into()));
        assert!(i.healthy_peers(64).is_empty());
    }
}
