//! The daemon's WebRTC home peers (`peerhost mirror KEY --register URL` without `--http`,
//! config `register` without `http`): browsers behind any NAT read the logs we hold over
//! WebRTC data channels, signaled through each instance (`protocol/webrtc.md` §2.1,
//! `protocol/gateway.md` §7.3). No port is opened, no certificate is needed.
//!
//! - one [`HomePeer`] per instance, with the node's key pair (the key the instance lists and
//!   browsers check answers against) and a [`NodeSource`] over the logs we hold (the same
//!   source the HTTP gateway serves);
//! - each keeps its own signed long-poll to its instance and retries with a backoff (1 s
//!   doubling to 30 s) while the instance is away; a watcher turns lasting problems into one
//!   line each in the daemon's problems (instance unreachable, registration refused, no STUN
//!   answer) and says when they clear;
//! - an instance's STUN server (`serve --stun ADDR`, [`start_stun`]) answers binding requests
//!   (RFC 8489, binding only, rate-limited per client) and is listed, with the configured
//!   `--ice-server`s ([`parse_ice_server`]), as the ICE servers of `/v1/bootstrap`;
//! - an instance whose certificate no public CA signed (a private CA, a test's self-signed
//!   one) is trusted through `PEERHOST_EXTRA_CA_CERTS=FILE` ([`EXTRA_CA_ENV`]: PEM
//!   certificates added to the Mozilla roots for the signed long-poll, as Node's
//!   `NODE_EXTRA_CA_CERTS`);
//! - everything stops with the daemon's stop signal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use peerhost_gateway::signal::IceServer;
use peerhost_gateway::{Config as GatewayConfig, Counters};
use peerhost_ids::KeyPair;
use peerhost_webrtc::home::{HomeOptions, HomePeer, PollFailure};
use peerhost_webrtc::stun_server::{StunConfig, StunStats, serve_stun};
use tokio::sync::{mpsc, watch};

use crate::actor::Command;
use crate::error::HttpError;
use crate::http::NodeSource;
use crate::state::{StunStatus, WebrtcStatus};

/// How long the first poll may take while the daemon starts (then it is retried in the
/// background).
const FIRST_POLL: Duration = Duration::from_secs(5);
/// How often the watcher looks at a home peer.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// A STUN server that gave no address this long after the instance named it is reported
/// (the driver gives up on one binding after 23.5 s).
const STUN_GRACE: Duration = Duration::from_secs(30);

/// One running home peer.
#[derive(Debug)]
pub(crate) struct Home {
    pub(crate) instance: String,
    pub(crate) peer: HomePeer,
    pub(crate) counters: Arc<Counters>,
}

impl Home {
    /// Its part of the status.
    pub(crate) async fn status(&self) -> WebrtcStatus {
        let h = self.peer.status();
        let driver = self.peer.server().status().await.unwrap_or_default();
        let open: Vec<_> = driver.peers.iter().filter(|p| p.closed.is_none()).collect();
        WebrtcStatus {
            instance: self.instance.clone(),
            connected: h.connected,
            listed: h.listed,
            problem: h.problem,
            last_error: h.last_error,
            local: self.peer.server().local_addr().to_string(),
            public: driver.public.iter().map(ToString::to_string).collect(),
            ice_servers: h.ice_servers.iter().flat_map(|s| s.urls.clone()).collect(),
            connections: open.len(),
            channels: open.iter().map(|p| p.channels).sum(),
            answered: h.answered,
            refused: h.refused,
            checks: h.checks,
            requests: self.counters.requests(),
            bytes_served: self.counters.bytes(),
        }
    }
}

/// The running STUN server.
#[derive(Debug)]
pub(crate) struct Stun {
    pub(crate) addr: SocketAddr,
    pub(crate) server: IceServer,
    pub(crate) stats: Arc<StunStats>,
}

impl Stun {
    /// Its part of the status.
    pub(crate) fn status(&self) -> StunStatus {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        StunStatus {
            address: self.addr.to_string(),
            url: self.server.urls.first().cloned().unwrap_or_default(),
            received: n(&self.stats.received),
            answered: n(&self.stats.answered),
            dropped: n(&self.stats.dropped),
            limited: n(&self.stats.limited),
        }
    }
}

/// Bind the STUN server at `addr` and answer until `stop`. Its URL for browsers names the
/// bound address, or, bound to a wildcard, the host of `public_url`.
pub(crate) async fn start_stun(
    addr: SocketAddr,
    public_url: Option<&str>,
    stop: &watch::Sender<bool>,
) -> Result<Stun, HttpError> {
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|source| HttpError::Stun { addr, source })?;
    let bound = socket
        .local_addr()
        .map_err(|source| HttpError::Stun { addr, source })?;
    let host = if bound.ip().is_unspecified() {
        public_url
            .and_then(url_host)
            .ok_or(HttpError::StunHost(addr))?
    } else if bound.is_ipv6() {
        format!("[{}]", bound.ip())
    } else {
        bound.ip().to_string()
    };
    let stats = Arc::new(StunStats::default());
    let mut rx = stop.subscribe();
    let s = stats.clone();
    tokio::spawn(async move {
        let shutdown = async move { crate::stopped(&mut rx).await };
        if let Err(e) = serve_stun(socket, StunConfig::default(), s, shutdown).await {
            tracing::warn!("the STUN server stopped: {e}");
        }
    });
    let server = IceServer::stun(format!("{host}:{}", bound.port()));
    tracing::info!(%bound, url = %server.urls[0], "STUN server");
    Ok(Stun {
        addr: bound,
        server,
        stats,
    })
}

/// The host of `http(s)://HOST[:PORT][/…]` (brackets kept for IPv6).
fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Parse an ICE server as given on the command line or in the config file:
/// `stun:HOST[:PORT]`, `stuns:…`, `turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]`,
/// `turns:…` (TURN needs its credentials).
pub(crate) fn parse_ice_server(text: &str) -> Result<IceServer, HttpError> {
    let bad = |reason: &str| HttpError::IceServer {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    if text.len() > 512 || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(
            "at most 512 characters, no spaces or control characters",
        ));
    }
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| bad("expected stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT"))?;
    let turn = match scheme {
        "stun" | "stuns" => false,
        "turn" | "turns" => true,
        _ => {
            return Err(bad("the scheme is stun:, stuns:, turn: or turns: (no //)"));
        }
    };
    let (userinfo, hostpart) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let host = hostpart.split('?').next().unwrap_or_default();
    if host.is_empty() || host.starts_with('/') {
        return Err(bad("no host (e.g. stun:stun.example:3478)"));
    }
    match (turn, userinfo) {
        (false, None) => Ok(IceServer::stun(hostpart)),
        (false, Some(_)) => Err(bad("a STUN server takes no credentials")),
        (true, Some(u)) => {
            let (user, password) = u
                .split_once(':')
                .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                .ok_or_else(|| bad("TURN credentials are USER:PASSWORD@"))?;
            Ok(IceServer::turn(
                format!("{scheme}:{hostpart}"),
                user.to_owned(),
                password.to_owned(),
            ))
        }
        (true, None) => Err(bad(
            "a TURN server needs credentials: turn:USER:PASSWORD@HOST:PORT",
        )),
    }
}

/// The environment variable naming a PEM file of certificates to trust, besides the Mozilla
/// roots, for `https://` instances (a private CA, a test instance's self-signed certificate).
pub(crate) const EXTRA_CA_ENV: &str = "PEERHOST_EXTRA_CA_CERTS";

/// Trust the certificates of [`EXTRA_CA_ENV`], if it names a file; an unreadable file is an
/// error (a home peer that silently could not reach its instance would be worse).
fn trust_extra_roots() -> Result<usize, HttpError> {
    let Some(path) = std::env::var_os(EXTRA_CA_ENV).filter(|p| !p.is_empty()) else {
        return Ok(0);
    };
    let certs =
        peerhost_gateway::tls::certs(std::path::Path::new(&path)).map_err(HttpError::ExtraCa)?;
    let der: Vec<Vec<u8>> = certs.iter().map(|c| c.as_ref().to_vec()).collect();
    peerhost_gateway::client::add_root_certificates(&der);
    tracing::info!(file = ?path, certificates = der.len(), "trusting extra CA certificates");
    Ok(der.len())
}

/// Benchmark knobs, not settings (BENCHMARKS.md, "WebRTC"): `PEERHOST_RTC_WINDOW` (the send
/// window on a short path, bytes, 4 KiB–1 MiB) and `PEERHOST_RTC_MAX_MESSAGE` (the largest
/// message a channel sends, bytes, 1–256 KiB), so a bench can try other values with one build.
/// Out of range or unset: the defaults (`protocol/webrtc.md` §4).
fn tune_from_env(c: &mut peerhost_webrtc::peer::Config) {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    if let Some(w) = var("PEERHOST_RTC_WINDOW").filter(|w| (4 << 10..=1 << 20).contains(w)) {
        c.window = w;
    }
    if let Some(m) = var("PEERHOST_RTC_MAX_MESSAGE").filter(|m| (1 << 10..=256 << 10).contains(m)) {
        c.session.max_message = m;
    }
}

/// Start a home peer for each instance; each ends when `stop` says so.
pub(crate) async fn start(
    source: &NodeSource,
    key_pair: &KeyPair,
    instances: &[String],
    stop: &watch::Sender<bool>,
    actor: &mpsc::Sender<Command>,
) -> Result<Vec<Arc<Home>>, HttpError> {
    trust_extra_roots()?;
    let mut homes = Vec::with_capacity(instances.len());
    for url in instances {
        let counters = Arc::new(Counters::default());
        let mut options =
            HomeOptions::default().gateway(GatewayConfig::default().counters(counters.clone()));
        options.first_poll_timeout = FIRST_POLL;
        tune_from_env(&mut options.rtc.peer);
        let peer = HomePeer::start(source.clone(), key_pair.clone(), url, options).await?;
        let home = Arc::new(Home {
            instance: url.trim_end_matches('/').to_owned(),
            peer,
            counters,
        });
        tracing::info!(
            instance = %home.instance,
            udp = %home.peer.server().local_addr(),
            "serving browsers over WebRTC, signaled through the instance"
        );
        let (h, rx, actor) = (home.clone(), stop.subscribe(), actor.clone());
        tokio::spawn(watch_home(h, rx, actor));
        homes.push(home);
    }
    Ok(homes)
}

/// What a watcher last reported of its home peer.
#[derive(Debug, Default)]
struct Reported {
    failure: Option<PollFailure>,
    stun_missing: bool,
}

/// Note lasting problems of `home` (once each), and shut it down when the daemon stops.
async fn watch_home(
    home: Arc<Home>,
    mut stop: watch::Receiver<bool>,
    actor: mpsc::Sender<Command>,
) {
    let mut reported = Reported::default();
    let mut stun_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = crate::stopped(&mut stop) => break,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let st = home.peer.status();
        let note = |message: String| {
            let actor = actor.clone();
            async move {
                let _ = actor.send(Command::Note { message }).await;
            }
        };
        match (&st.failure, &reported.failure) {
            (Some(f), Some(r)) if same_kind(f, r) => {}
            (Some(f), _) => {
                note(format!("webrtc: {}; retrying", one_line(f))).await;
                reported.failure = Some(f.clone());
            }
            (None, Some(_)) if st.connected => {
                tracing::info!("webrtc: the instance {} answers again", home.instance);
                reported.failure = None;
            }
            _ => {}
        }
        // STUN: the instance names its servers; our driver must get an address from one.
        let stun: Vec<String> = st.ice_servers.iter().flat_map(|s| s.stun_hosts()).collect();
        if st.connected && !stun.is_empty() {
            let since = *stun_since.get_or_insert_with(Instant::now);
            let public = home
                .peer
                .server()
                .status()
                .await
                .map(|s| s.public)
                .unwrap_or_default();
            if public.is_empty() && since.elapsed() >= STUN_GRACE && !reported.stun_missing {
                note(format!(
                    "webrtc: no STUN answer from {} (the ICE servers of {}): our public address \
                     is unknown, so browsers behind other NATs may not reach us; is outgoing \
                     UDP to it blocked?",
                    stun.join(", "),
                    home.instance
                ))
                .await;
                reported.stun_missing = true;
            } else if !public.is_empty() {
                reported.stun_missing = false;
            }
        } else if st.connected && st.ice_servers.is_empty() && !reported.stun_missing {
            note(format!(
                "webrtc: the instance {} lists no STUN server (it runs without `serve --stun`): \
                 our public address is unknown, so browsers behind other NATs may not reach us",
                home.instance
            ))
            .await;
            reported.stun_missing = true;
        }
    }
    home.peer.shutdown().await;
}

/// Two failures to report once: the same kind and status (reasons of an unreachable instance
/// vary from one try to the next).
fn same_kind(a: &PollFailure, b: &PollFailure) -> bool {
    match (a, b) {
        (PollFailure::Unreachable { .. }, PollFailure::Unreachable { .. }) => true,
        (
            PollFailure::Refused {
                status: s1,
                code: c1,
                ..
            },
            PollFailure::Refused {
                status: s2,
                code: c2,
                ..
            },
        ) => s1 == s2 && c1 == c2,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// A failure as one line, with what to do.
fn one_line(f: &PollFailure) -> String {
    match f {
        PollFailure::Unreachable { .. } => {
            format!("{f} (is the instance running, and is --register its URL?)")
        }
        PollFailure::Refused { code, .. } => {
            let hint = match code.as_str() {
                "REFUSED_ADDRESS" => {
                    " (it does not accept peers on private or loopback addresses; on a LAN \
                     the instance needs --allow-private-peers)"
                }
                "CLOCK_SKEW" => " (set this machine's clock)",
                "ADDRESS_CAP" | "FULL" => " (it holds as many peers as it takes; retrying)",
                "NOT_FOUND" => " (it is not a peerhost instance with WebRTC signaling)",
                _ => "",
            };
            format!("{f}{hint}")
        }
        PollFailure::BadResponse { .. } => format!("{f} (is --register a peerhost instance?)"),
        _ => f.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_once_per_kind() {
        let un = |r: &str| PollFailure::Unreachable {
            url: "http://i".into(),
            reason: r.into(),
        };
        let refused = |status, code: &str| PollFailure::Refused {
            url: "http://i".into(),
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(same_kind(&un("timed out"), &un("connection refused")));
        assert!(same_kind(
            &refused(400, "REFUSED_ADDRESS"),
            &refused(400, "REFUSED_ADDRESS")
        ));
        assert!(!same_kind(
            &refused(403, "ADDRESS_CAP"),
            &refused(503, "FULL")
        ));
        assert!(!same_kind(&un("x"), &refused(503, "FULL")));
        let line = one_line(&refused(400, "REFUSED_ADDRESS"));
        assert!(
            line.starts_with(
                "the instance http://i refused our registration: HTTP 400 REFUSED_ADDRESS"
            ),
            "{line}"
        );
        assert!(line.contains("--allow-private-peers"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn ice_servers_parse_with_credentials_for_turn_only() {
        let s = parse_ice_server("stun:stun.example:3478").unwrap();
        assert_eq!(s, IceServer::stun("stun.example:3478"));
        let t = parse_ice_server("turn:alice:s3cret@turn.example:3478?transport=udp").unwrap();
        assert_eq!(
            t,
            IceServer::turn(
                "turn:turn.example:3478?transport=udp",
                "alice".into(),
                "s3cret".into()
            )
        );
        let t = parse_ice_server("turns:a:b:c@[2001:db8::1]:5349").unwrap();
        assert_eq!(t.urls, ["turns:[2001:db8::1]:5349"]);
        assert_eq!(
            (t.username.as_deref(), t.credential.as_deref()),
            (Some("a"), Some("b:c"))
        );
        for bad in [
            "stun.example:3478",
            "http://stun.example",
            "stun:",
            "stun://x:1",
            "stun:u:p@x:1",
            "turn:x:1",
            "turn::p@x:1",
            "stun:a b",
        ] {
            let e = parse_ice_server(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("the ICE server {bad:?}: ")), "{e}");
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://i.example").as_deref(), Some("i.example"));
        assert_eq!(
            url_host("http://i.example:8080/x").as_deref(),
            Some("i.example")
        );
        assert_eq!(
            url_host("http://[2001:db8::1]:80").as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(url_host("ftp://x"), None);
        assert_eq!(url_host("http://"), None);
    }
}
