//! Readers' reports of a peer caught serving data that does not verify (`POST /v1/bad-peer`,
//! `protocol/gateway.md` §7.4): the page names the peer, the log and the range; the instance
//! trusts none of it, and checks the peer itself, at once, with its own head.
//!
//! - [`Reports`] admits a report: the reporter's budget first (a token bucket per client, an
//!   IPv4 address or an IPv6 /64: a flood costs a lookup and a `429`), then the body, then the
//!   peer (a proven, fresh entry of the table), then the peer's own budget (one
//!   report-triggered check per peer per [`ReportLimits::per_peer`]), then room in the queue
//!   of urgent checks ([`ReportLimits::queued`]);
//! - the instance's check loop ([`crate::instance::run_checks`]) wakes on [`Reports::notified`],
//!   takes the queue ([`Reports::take`]) and runs each check: the usual one (the last block of
//!   every community log at the instance's head) plus the reported range of a community log,
//!   at most [`MAX_REPORTED_BLOCKS`] blocks, proven against the instance's own head;
//! - so however many readers report, a peer gets at most one extra check per `per_peer`, and
//!   the instance at most `queued` extra checks at once: reports cannot make the instance
//!   hammer a peer or itself.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use peerhost_ids::Key;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::limit::ClientId;

/// Bytes of a report's body at most.
pub const MAX_REPORT_BODY: usize = 1024;
/// Blocks of a reported range the instance asks the peer for at most.
pub const MAX_REPORTED_BLOCKS: u64 = 64;

/// How reports are bounded.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ReportLimits {
    /// Reports one client may send in a burst…
    pub burst: u32,
    /// …and then one per this long.
    pub every: Duration,
    /// One report-triggered check per peer per this long (later reports of it are accepted
    /// and change nothing).
    pub per_peer: Duration,
    /// Report-triggered checks waiting at most (then `503 BUSY`).
    pub queued: usize,
    /// Clients whose budget is tracked at most (then the fullest buckets are forgotten; if
    /// none is full, `429`).
    pub max_reporters: usize,
    /// A peer whose report-triggered check found a bad proof is not listed, nor checked, for
    /// this long (else the next periodic check, which asks only for the last blocks, could
    /// list again a peer that lies about others).
    pub ban: Duration,
}

impl Default for ReportLimits {
    fn default() -> Self {
        Self {
            burst: 8,
            every: Duration::from_secs(10),
            per_peer: Duration::from_secs(30),
            queued: 16,
            max_reporters: 4096,
            ban: Duration::from_secs(600),
        }
    }
}

/// A report as the page sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The peer's base URL, as the instance listed it (`http://IP:PORT`).
    pub peer: String,
    /// The log whose data did not verify (64 hex digits).
    pub log: String,
    /// The blocks asked (`start == end`: a head).
    pub start: u64,
    /// End of the range, exclusive.
    pub end: u64,
    /// The verifier's error code (`INVALID_PROOF`, …): for the operator's eyes only.
    #[serde(default)]
    pub code: Option<String>,
}

/// A check a report asked for: the peer, and the reported range of a log, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Urgent {
    pub(crate) url: String,
    pub(crate) log: Key,
    pub(crate) range: Range<u64>,
}

/// What became of an admitted report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A check of the peer is queued.
    Scheduled,
    /// The peer was checked on a report lately: nothing more is done.
    Recent,
}

impl Outcome {
    /// The word of the JSON answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Recent => "recent",
        }
    }
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Not JSON, or a field is missing or malformed.
    #[error("bad report: {0}")]
    Bad(&'static str),
    /// Too many report-triggered checks wait already.
    #[error("too many checks are waiting: try later")]
    Busy,
    /// This client sent too many reports lately.
    #[error("too many reports from this address: try later")]
    TooMany,
    /// The peer is not one the instance lists.
    #[error("no such peer is registered here")]
    UnknownPeer,
}

impl ReportError {
    /// The HTTP status and code.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Bad(_) => (400, "BAD_REPORT"),
            Self::Busy => (503, "BUSY"),
            Self::TooMany => (429, "TOO_MANY_REQUESTS"),
            Self::UnknownPeer => (404, "UNKNOWN_PEER"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    reporters: HashMap<ClientId, Bucket>,
    /// When each peer was last checked on a report.
    checked: HashMap<String, u64>,
    queue: VecDeque<Urgent>,
    /// Reports admitted, and checks they scheduled, since start.
    admitted: u64,
    scheduled: u64,
}

/// The reports an instance received: budgets, and the queue of checks they asked for.
#[derive(Debug, Default)]
pub struct Reports {
    limits: ReportLimits,
    state: Mutex<State>,
    notify: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Parse and bound a report's body.
fn parse(body: &[u8]) -> Result<(Report, Key), ReportError> {
    let r: Report = serde_json::from_slice(body).map_err(|_| ReportError::Bad("not JSON"))?;
    if r.peer.len() > 200 || !(r.peer.starts_with("http://") || r.peer.starts_with("https://")) {
        return Err(ReportError::Bad("peer is not an http:// URL"));
    }
    if r.log.len() != 64 || !r.log.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReportError::Bad("log is not 64 hex digits"));
    }
    let log = Key::parse(&r.log).map_err(|_| ReportError::Bad("log is not a key"))?;
    if r.end < r.start {
        return Err(ReportError::Bad("end is before start"));
    }
    Ok((r, log))
}

impl Reports {
    /// Reports bounded by `limits`.
    pub fn new(limits: ReportLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The limits.
    pub fn limits(&self) -> &ReportLimits {
        &self.limits
    }

    /// Take one report from `client` at `now` (ms): its budget, then the body, then whether
    /// `known(peer URL)` (a proven, fresh entry of the table), then the peer's budget and the
    /// queue. A scheduled check wakes the check loop.
    pub(crate) fn submit(
        &self,
        client: Option<IpAddr>,
        body: &[u8],
        known: impl FnOnce(&str) -> bool,
        now: u64,
    ) -> Result<Outcome, ReportError> {
        let client = client.map_or_else(ClientId::unknown, ClientId::of);
        let mut s = lock(&self.state);
        self.spend(&mut s, client, now)?;
        let (report, log) = parse(body)?;
        let url = report.peer.trim_end_matches('/').to_owned();
        if !known(&url) {
            return Err(ReportError::UnknownPeer);
        }
        s.admitted += 1;
        let per_peer = ms(self.limits.per_peer);
        if s.checked
            .get(&url)
            .is_some_and(|&at| now.saturating_sub(at) < per_peer)
        {
            return Ok(Outcome::Recent);
        }
        if s.queue.len() >= self.limits.queued {
            return Err(ReportError::Busy);
        }
        // Forget peers whose budget has refilled (the map stays as small as the recent ones).
        s.checked.retain(|_, at| now.saturating_sub(*at) < per_peer);
        s.checked.insert(url.clone(), now);
        let end = report
            .end
            .min(report.start.saturating_add(MAX_REPORTED_BLOCKS));
        s.queue.push_back(Urgent {
            url,
            log,
            range: report.start..end,
        });
        s.scheduled += 1;
        drop(s);
        self.notify.notify_one();
        Ok(Outcome::Scheduled)
    }

    /// One token of `client`'s bucket.
    fn spend(&self, s: &mut State, client: ClientId, now: u64) -> Result<(), ReportError> {
        let burst = f64::from(self.limits.burst.max(1));
        let rate = 1000.0 / ms(self.limits.every).max(1) as f64; // tokens per second
        let refill =
            |b: &Bucket| (b.tokens + now.saturating_sub(b.at_ms) as f64 / 1000.0 * rate).min(burst);
        if !s.reporters.contains_key(&client) && s.reporters.len() >= self.limits.max_reporters {
            s.reporters.retain(|_, b| refill(b) < burst);
            if s.reporters.len() >= self.limits.max_reporters {
                return Err(ReportError::TooMany);
            }
        }
        let b = s.reporters.entry(client).or_insert(Bucket {
            tokens: burst,
            at_ms: now,
        });
        b.tokens = refill(b);
        b.at_ms = now;
        if b.tokens < 1.0 {
            return Err(ReportError::TooMany);
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// The checks reports asked for, oldest first; the queue is then empty.
    pub(crate) fn take(&self) -> Vec<Urgent> {
        lock(&self.state).queue.drain(..).collect()
    }

    /// Until a report schedules a check (at once if one did since the last wait).
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Reports admitted (a listed peer, within the reporter's budget) since start.
    pub fn admitted(&self) -> u64 {
        lock(&self.state).admitted
    }

    /// Checks reports scheduled since start.
    pub fn scheduled(&self) -> u64 {
        lock(&self.state).scheduled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(peer: &str, start: u64, end: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "peer": peer, "log": "ab".repeat(32), "start": start, "end": end, "code": "INVALID_PROOF"
        }))
        .unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_report_schedules_one_check_per_peer_per_period() {
        let r = Reports::new(ReportLimits::default());
        let b = body("http://1.2.3.4:80/", 10, 500);
        assert_eq!(
            r.submit(ip("9.9.9.1"), &b, |_| true, 1000),
            Ok(Outcome::Scheduled)
        );
        // Other readers report the same peer: no second check within `per_peer`.
        for n in 2..=6 {
            let who = ip(&format!("9.9.9.{n}"));
            assert_eq!(r.submit(who, &b, |_| true, 2000), Ok(Outcome::Recent));
        }
        let q = r.take();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].url, "http://1.2.3.4:80");
        assert_eq!(q[0].range, 10..10 + MAX_REPORTED_BLOCKS, "the range is cut");
        assert!(r.take().is_empty());
        // After the period, a report checks it again.
        assert_eq!(
            r.submit(ip("9.9.9.7"), &b, |_| true, 31_001),
            Ok(Outcome::Scheduled)
        );
        assert_eq!((r.admitted(), r.scheduled()), (7, 2));
    }

    #[test]
    fn a_flood_from_one_client_gets_429_after_its_burst() {
        let r = Reports::new(ReportLimits::default());
        let mut ok = 0;
        for i in 0..1000u16 {
            let b = body(&format!("http://1.2.3.4:{i}"), 0, 1);
            match r.submit(ip("2001:db8::1"), &b, |_| true, 5000) {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e, ReportError::TooMany),
            }
        }
        assert_eq!(ok, 8, "the burst");
        assert_eq!(r.take().len(), 8);
        // The same /64 is the same client; 10 s later, one more.
        let b = body("http://1.2.3.4:9999", 0, 1);
        assert_eq!(
            r.submit(ip("2001:db8::2"), &b, |_| true, 5001),
            Err(ReportError::TooMany)
        );
        assert!(r.submit(ip("2001:db8::3"), &b, |_| true, 15_100).is_ok());
        // Garbage and unknown peers spend the budget too.
        let r = Reports::new(ReportLimits::default());
        for _ in 0..8 {
            assert!(r.submit(ip("5.5.5.5"), b"{", |_| true, 0).is_err());
        }
        assert_eq!(
            r.submit(ip("5.5.5.5"), &b, |_| true, 0),
            Err(ReportError::TooMany)
        );
    }

    #[test]
    fn many_clients_fill_the_queue_then_busy() {
        let r = Reports::new(ReportLimits::default());
        for i in 0..16u8 {
            let b = body(&format!("http://1.2.3.{i}:80"), 0, 1);
            assert_eq!(
                r.submit(ip(&format!("8.8.{i}.1")), &b, |_| true, 0),
                Ok(Outcome::Scheduled)
            );
        }
        let b = body("http://1.2.3.99:80", 0, 1);
        assert_eq!(
            r.submit(ip("8.8.99.1"), &b, |_| true, 0),
            Err(ReportError::Busy)
        );
        r.take();
        assert_eq!(
            r.submit(ip("8.8.99.1"), &b, |_| true, 0),
            Ok(Outcome::Scheduled)
        );
    }

    #[test]
    fn bad_reports_and_unknown_peers_are_refused() {
        let r = Reports::new(ReportLimits {
            burst: 100,
            ..ReportLimits::default()
        });
        let c = ip("7.7.7.7");
        for (b, why) in [
            (b"not json".to_vec(), "not JSON"),
            (body("ftp://x", 0, 1), "peer is not an http:// URL"),
            (
                body(&format!("http://{}", "a".repeat(200)), 0, 1),
                "peer is not an http:// URL",
            ),
            (body("http://1.1.1.1:1", 5, 4), "end is before start"),
            (
                br#"{"peer":"http://1.1.1.1:1","log":"zz","start":0,"end":1}"#.to_vec(),
                "log is not 64 hex digits",
            ),
        ] {
            assert_eq!(r.submit(c, &b, |_| true, 0), Err(ReportError::Bad(why)));
        }
        let b = body("http://1.1.1.1:1", 0, 1);
        assert_eq!(r.submit(c, &b, |_| false, 0), Err(ReportError::UnknownPeer));
        assert_eq!(r.admitted(), 0);
        assert!(r.take().is_empty());
    }
}
