//! `rtc_peer`: the WebRTC side of the browser tests (`interop-tests/browser/rtc*.js`) and the
//! NAT lab: a home peer serving a store's logs to browsers over WebRTC data channels
//! (`peerhost-webrtc`), signaled through an instance (`HomePeer`: the signed long-poll), and
//! that instance (the gateway with its signaling relay and health checks, a STUN server, the
//! bootstrap page). The daemon runs both too (`peerhost serve --stun --tls-cert`, `peerhost
//! mirror --register` without `--http`); this binary adds the knobs the lab turns.
//!
//! ```text
//! rtc_peer cert DIR NAME…
//!     a self-signed certificate for NAMEs (host names or IP addresses): DIR/cert.pem and
//!     DIR/key.pem. → {"event":"ready","cert":…,"key":…}
//! rtc_peer stun ADDR
//!     a STUN binding server (RFC 8489) on ADDR. → {"event":"ready","stun":ADDR}
//! rtc_peer instance --http IP:PORT [--stun IP:PORT] [--ice URL]… [--page DIR]
//!                   [--store DIR --community-json FILE | --posts N [--bulk B] [--seed S]]
//!                   [--check-every MS] [--check-timeout MS] [--poll-wait MS]
//!                   [--signal-rate N] [--signal-burst N] [--per-client N] [--per-peer N]
//!                   [--tls-cert PEM --tls-key PEM]
//!     the instance: the gateway (log routes, bootstrap page, /v1/bootstrap, signaling,
//!     WebRTC health checks) on --http over the logs of --store (a copy of a community's
//!     store, described by `peerhost community info NAME --json` in FILE) or generated ones
//!     (as `serve` generates them); with --stun, a STUN server there too, listed as the ICE
//!     server (with any --ice URLs). The --signal-*/--per-* flags change the relay's offer
//!     limits (`SignalLimits`: offers per second and burst per client, waiting per client and
//!     per peer; the defaults otherwise). With --tls-cert/--tls-key the gateway speaks
//!     https:// (the page is then a secure context, as on a real instance).
//!     → {"event":"ready","url":…,"stun":…,"posts":KEY,"bulk":KEY|null}
//! rtc_peer serve --instance URL [--bind IP:PORT] [--stun ADDR]… [--store DIR]
//!                [--posts N] [--bulk BLOCKS] [--block-size BYTES] [--seed S] [--key-seed K]
//!                [--http IP:PORT] [--no-birthday] [--birthday N] [--max-peers N]
//!                [--sctp-buffer B] [--window B] [--window-rate B/s] [--max-message B] [--mtu B]
//!                [--tamper]
//!                [--trust PEM]
//!     a home peer of the instance at URL: the logs of --store (a copy: the store is opened
//!     here), or a generated store (a log of N JSON posts, default 50, and a log of BLOCKS
//!     blocks of BYTES, default 0 × 65536; the same --seed gives the same logs in every
//!     process). --key-seed K: the node key from seed K (default random). With --http also
//!     an HTTP gateway. With --tamper every block served in a range (to browsers and to the
//!     instance's checks) has its last byte flipped. --trust PEM: trust that certificate
//!     (the test instance's self-signed one) for the https:// long-poll.
//!     → {"event":"ready","key":HEX,"local":…,"public":[…],"http":…,"posts":KEY,"bulk":KEY|null}
//! ```
//!
//! Requests on stdin, one JSON object a line, answered on stdout with the same `tag`:
//! serve: `{"op":"status","tag":T}` → `{"tag":T,"peers":[…],"public":[…],"rssKb":…,
//! "unclaimed":…,"home":{…}}`; `{"op":"lie","tag":T,"on":bool}` → starts (stops) tampering.
//! instance: `{"op":"contributions","tag":T}` → `{"tag":T,"rows":[…]}` (with details).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerhost_gateway::range::RangeProof;
use peerhost_gateway::signal::{IceServer, SignalLimits};
use peerhost_gateway::{
    CommunityInfo, Config as GatewayConfig, Cores, Instance, InstanceOptions, ServeOptions, Site,
};
use peerhost_gateway::{LogSource, RangeError, RangeQuery, SignedHead, SourceError};
use peerhost_ids::{Key, KeyPair};
use peerhost_store::{CreateOptions, Store};
use peerhost_webrtc::driver::{Birthday, Config};
use peerhost_webrtc::home::{HomeOptions, HomePeer};
use peerhost_webrtc::stun_server::{StunConfig, StunStats, serve_stun};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

mod tls;

/// The logs, honest or (while `lie` is set) with the last byte of every block served in a
/// range flipped: a peer that answers offers, then serves tampered blocks, or stops proving.
#[derive(Clone)]
struct Switch {
    cores: Cores,
    lie: Arc<AtomicBool>,
}

impl LogSource for Switch {
    fn keys(&self, limit: usize) -> Result<Vec<Key>, SourceError> {
        self.cores.keys(limit)
    }
    fn head(&self, key: &Key) -> Result<Option<SignedHead>, SourceError> {
        self.cores.head(key)
    }
    fn range(&self, key: &Key, query: &RangeQuery) -> Result<RangeProof, RangeError> {
        let mut proof = self.cores.range(key, query)?;
        if self.lie.load(Ordering::Relaxed) {
            for b in &mut proof.blocks {
                if let Some(last) = b.last_mut() {
                    *last ^= 1;
                }
            }
        }
        Ok(proof)
    }
}

fn fail(msg: impl std::fmt::Display) -> ! {
    println!("{}", json!({"event": "failed", "error": msg.to_string()}));
    std::process::exit(1)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Post `i`: JSON the test page decodes and checks.
fn post(i: usize) -> Vec<u8> {
    let body = "Every block of this post reached your browser over a WebRTC data channel, checked against the signed head. ".repeat(1 + i % 3);
    json!({"title": format!("Post {i}: notes on hypercore, part {i}"), "body": body, "n": i})
        .to_string()
        .into_bytes()
}

/// Bulk block `i`: `size` bytes of a cheap pseudo-random stream (incompressible enough).
fn bulk(i: usize, size: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Args {
    bind: SocketAddr,
    stun: Vec<SocketAddr>,
    ice: Vec<String>,
    http: Option<SocketAddr>,
    instance: Option<String>,
    store: Option<PathBuf>,
    community_json: Option<PathBuf>,
    page: Option<PathBuf>,
    posts: usize,
    bulk: usize,
    block_size: usize,
    birthday: Option<Birthday>,
    max_peers: usize,
    seed: u8,
    key_seed: Option<u8>,
    sctp_buffer: Option<usize>,
    window: Option<usize>,
    window_rate: Option<usize>,
    mtu: Option<usize>,
    max_message: Option<usize>,
    tamper: bool,
    check_every: u64,
    check_timeout: u64,
    poll_wait: u64,
    signal_rate: Option<u32>,
    signal_burst: Option<u32>,
    per_client: Option<usize>,
    per_peer: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trust: Option<PathBuf>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args {
        bind: "0.0.0.0:0".parse().unwrap_or_else(|_| fail("bad default")),
        stun: vec![],
        ice: vec![],
        http: None,
        instance: None,
        store: None,
        community_json: None,
        page: None,
        posts: 50,
        bulk: 0,
        block_size: 65_536,
        birthday: Some(Birthday::default()),
        max_peers: 256,
        seed: 7,
        key_seed: None,
        sctp_buffer: None,
        window: None,
        window_rate: None,
        mtu: None,
        max_message: None,
        tamper: false,
        check_every: 1000,
        check_timeout: 5000,
        poll_wait: 25_000,
        signal_rate: None,
        signal_burst: None,
        per_client: None,
        per_peer: None,
        tls_cert: None,
        tls_key: None,
        trust: None,
    };
    let mut bound = false;
    let addr = |v: Option<String>| -> SocketAddr {
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail("expected IP:PORT"))
    };
    let num = |v: Option<String>| -> usize {
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail("expected a number"))
    };
    let text = |v: Option<String>| -> String { v.unwrap_or_else(|| fail("expected a value")) };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bind" => {
                a.bind = addr(it.next());
                bound = true;
            }
            "--stun" => a.stun.push(addr(it.next())),
            "--ice" => a.ice.push(text(it.next())),
            "--http" => a.http = Some(addr(it.next())),
            "--instance" => a.instance = Some(text(it.next())),
            "--store" => a.store = Some(text(it.next()).into()),
            "--community-json" => a.community_json = Some(text(it.next()).into()),
            "--page" => a.page = Some(text(it.next()).into()),
            "--posts" => a.posts = num(it.next()),
            "--bulk" => a.bulk = num(it.next()),
            "--block-size" => a.block_size = num(it.next()),
            "--no-birthday" => a.birthday = None,
            "--birthday" => {
                a.birthday = Some(Birthday {
                    count: num(it.next()) as u32,
                    ..Birthday::default()
                })
            }
            "--max-peers" => a.max_peers = num(it.next()),
            "--seed" => a.seed = num(it.next()) as u8,
            "--key-seed" => a.key_seed = Some(num(it.next()) as u8),
            "--sctp-buffer" => a.sctp_buffer = Some(num(it.next())),
            "--window" => a.window = Some(num(it.next())),
            "--window-rate" => a.window_rate = Some(num(it.next())),
            "--mtu" => a.mtu = Some(num(it.next())),
            "--max-message" => a.max_message = Some(num(it.next())),
            "--tamper" => a.tamper = true,
            "--check-every" => a.check_every = num(it.next()) as u64,
            "--check-timeout" => a.check_timeout = num(it.next()) as u64,
            "--poll-wait" => a.poll_wait = num(it.next()) as u64,
            "--signal-rate" => a.signal_rate = Some(num(it.next()) as u32),
            "--signal-burst" => a.signal_burst = Some(num(it.next()) as u32),
            "--per-client" => a.per_client = Some(num(it.next())),
            "--per-peer" => a.per_peer = Some(num(it.next())),
            "--tls-cert" => a.tls_cert = Some(text(it.next()).into()),
            "--tls-key" => a.tls_key = Some(text(it.next()).into()),
            "--trust" => a.trust = Some(text(it.next()).into()),
            other => fail(format!("unknown flag {other}")),
        }
    }
    if !bound {
        // No --bind: the home peer finds the interface towards the instance itself.
        a.bind = "0.0.0.0:0".parse().unwrap_or_else(|_| fail("bad default"));
    }
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("stun") => {
            let addr: SocketAddr = args
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| fail("usage: rtc_peer stun ADDR"));
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .unwrap_or_else(|e| fail(format!("bind {addr}: {e}")));
            let local = socket.local_addr().unwrap_or(addr);
            println!("{}", json!({"event": "ready", "stun": local.to_string()}));
            stun_forever(socket).await;
        }
        Some("cert") => {
            let dir: PathBuf = args
                .next()
                .unwrap_or_else(|| fail("usage: rtc_peer cert DIR NAME…"))
                .into();
            let names: Vec<String> = args.collect();
            tls::write_cert(&dir, names).unwrap_or_else(|e| fail(e));
            say(&json!({
                "event": "ready",
                "cert": dir.join("cert.pem"),
                "key": dir.join("key.pem"),
            }));
        }
        Some("serve") => serve(parse(args)).await,
        Some("instance") => instance(parse(args)).await,
        _ => fail(
            "usage: rtc_peer stun ADDR | rtc_peer serve --instance URL … | rtc_peer instance --http IP:PORT …",
        ),
    }
}

async fn stun_forever(socket: tokio::net::UdpSocket) {
    let stats = Arc::new(StunStats::default());
    // Generous for the lab: every browser and peer shares few addresses.
    let config = StunConfig {
        rate: 200,
        burst: 400,
        ..StunConfig::default()
    };
    if let Err(e) = serve_stun(socket, config, stats, std::future::pending()).await {
        fail(e);
    }
}

/// The logs: a copy of a store (every log in it), or generated ones (posts, bulk).
struct Logs {
    _dir: Option<tempfile::TempDir>,
    cores: Cores,
    posts: Option<String>,
    bulk: Option<String>,
}

fn logs(a: &Args) -> Logs {
    let cores = Cores::new();
    if let Some(dir) = &a.store {
        let store = Store::open(dir).unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())));
        for key in store.keys().unwrap_or_else(|e| fail(e)) {
            let core = store.open_core(&key.to_hex()).unwrap_or_else(|e| fail(e));
            cores.insert_core(core);
        }
        // The store stays open (and locked) as long as the process runs.
        std::mem::forget(store);
        return Logs {
            _dir: None,
            cores,
            posts: None,
            bulk: None,
        };
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let store = Store::open(dir.path()).unwrap_or_else(|e| fail(e));
    let mut posts = store
        .create(
            "posts",
            CreateOptions::default().key_pair(KeyPair::from_seed(&[a.seed; 32])),
        )
        .unwrap_or_else(|e| fail(e));
    let blocks: Vec<Vec<u8>> = (1..=a.posts).map(post).collect();
    posts.append(&blocks).unwrap_or_else(|e| fail(e));
    let posts_key = posts.key().to_hex();
    cores.insert_core(posts);
    let mut bulk_key = None;
    if a.bulk > 0 {
        let mut core = store
            .create(
                "bulk",
                CreateOptions::default().key_pair(KeyPair::from_seed(&[a.seed ^ 0xff; 32])),
            )
            .unwrap_or_else(|e| fail(e));
        for start in (0..a.bulk).step_by(64) {
            let batch: Vec<Vec<u8>> = (start..(start + 64).min(a.bulk))
                .map(|i| bulk(i, a.block_size))
                .collect();
            core.append(&batch).unwrap_or_else(|e| fail(e));
        }
        bulk_key = Some(core.key().to_hex());
        cores.insert_core(core);
    }
    Logs {
        _dir: Some(dir),
        cores,
        posts: Some(posts_key),
        bulk: bulk_key,
    }
}

fn say(v: &Value) {
    static OUT: Mutex<()> = Mutex::new(());
    let _guard = OUT.lock();
    let mut o = std::io::stdout();
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

/// The community of `peerhost community info NAME --json`.
fn community_of(path: &PathBuf) -> CommunityInfo {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| fail(e));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| fail(e));
    let key = |v: &Value| v.as_str().and_then(|s| Key::parse(s).ok());
    CommunityInfo::new(
        key(&v["key"]).unwrap_or_else(|| fail("no community key")),
        v["name"].as_str().unwrap_or_default().to_owned(),
        v["title"].as_str().unwrap_or_default().to_owned(),
        key(&v["logs"]["posts"]["key"]),
        key(&v["logs"]["comments"]["key"]),
        key(&v["logs"]["assets"]["key"]),
    )
}

async fn instance(a: Args) {
    let logs = logs(&a);
    let http = a
        .http
        .unwrap_or_else(|| fail("instance needs --http IP:PORT"));
    let site = a
        .page
        .as_ref()
        .map(|d| Site::load(d).unwrap_or_else(|e| fail(e)));
    let mut ice: Vec<IceServer> = Vec::new();
    let mut stun_addr = None;
    if let Some(s) = a.stun.first() {
        let socket = tokio::net::UdpSocket::bind(s)
            .await
            .unwrap_or_else(|e| fail(format!("bind {s}: {e}")));
        let local = socket.local_addr().unwrap_or(*s);
        stun_addr = Some(local);
        ice.push(IceServer::stun(local));
        tokio::spawn(stun_forever(socket));
    }
    for url in &a.ice {
        ice.push(IceServer::stun(url.trim_start_matches("stun:")));
    }
    let mut limits = SignalLimits::default();
    limits.poll_wait = Duration::from_millis(a.poll_wait);
    limits.check_timeout = Duration::from_millis(a.check_timeout);
    if let Some(n) = a.signal_rate {
        limits.client_rate = n;
    }
    if let Some(n) = a.signal_burst {
        limits.client_burst = n;
    }
    if let Some(n) = a.per_client {
        limits.per_client = n;
    }
    if let Some(n) = a.per_peer {
        limits.per_peer = n;
    }
    let instance = Arc::new(
        Instance::new(
            site,
            InstanceOptions::default()
                .allow_private_peers(true)
                .check_every(Duration::from_millis(a.check_every))
                .signal_limits(limits),
        )
        .ice_servers(ice),
    );
    let community = match (&a.community_json, &logs.posts) {
        (Some(f), _) => community_of(f),
        (None, Some(posts)) => {
            let k = Key::parse(posts).unwrap_or_else(|e| fail(e));
            let bulk = logs.bulk.as_deref().and_then(|b| Key::parse(b).ok());
            CommunityInfo::new(k, "test".into(), "Test".into(), Some(k), None, bulk)
        }
        (None, None) => fail("instance --store needs --community-json FILE"),
    };
    instance.set_communities(vec![community]);
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .unwrap_or_else(|e| fail(format!("bind {http}: {e}")));
    let local = listener.local_addr().unwrap_or_else(|e| fail(e));
    let cores = logs.cores.clone();
    let config = GatewayConfig::default().instance(instance.clone());
    let url = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            let acceptor = peerhost_gateway::tls::acceptor(cert, key).unwrap_or_else(|e| fail(e));
            tokio::spawn(peerhost_gateway::serve_tls(
                listener,
                acceptor,
                cores.clone(),
                config,
                ServeOptions::default(),
                std::future::pending(),
            ));
            format!("https://{local}")
        }
        (None, None) => {
            tokio::spawn(peerhost_gateway::serve(
                listener,
                cores.clone(),
                config,
                ServeOptions::default(),
                std::future::pending(),
            ));
            format!("http://{local}")
        }
        _ => fail("--tls-cert and --tls-key go together"),
    };
    tokio::spawn(peerhost_gateway::run_checks(
        instance.clone(),
        Arc::new(cores),
        std::future::pending(),
    ));
    say(&json!({
        "event": "ready",
        "url": url,
        "stun": stun_addr.map(|s| s.to_string()),
        "posts": logs.posts,
        "bulk": logs.bulk,
    }));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(req) = serde_json::from_str::<Value>(&line) else {
            say(&json!({"error": "bad JSON line"}));
            continue;
        };
        let tag = req["tag"].clone();
        match req["op"].as_str() {
            Some("contributions") => say(&json!({
                "tag": tag,
                "rows": instance.contributions(),
            })),
            _ => say(&json!({"tag": tag, "error": "unknown op"})),
        }
    }
    drop(logs);
}

async fn serve(a: Args) {
    let logs = logs(&a);
    let lie = Arc::new(AtomicBool::new(a.tamper));
    let source = Switch {
        cores: logs.cores.clone(),
        lie: lie.clone(),
    };
    let mut peer_config = peerhost_webrtc::peer::Config::default();
    if let Some(n) = a.sctp_buffer {
        peer_config.sctp_buffer = n;
    }
    if let Some(n) = a.window {
        peer_config.window = n;
    }
    if let Some(n) = a.window_rate {
        peer_config.window_rate = n;
    }
    if let Some(n) = a.mtu {
        peer_config.mtu = n;
    }
    if let Some(n) = a.max_message {
        peer_config.session.max_message = n;
    }
    let config = Config {
        peer: peer_config,
        stun_servers: a.stun.clone(),
        birthday: a.birthday.clone(),
        max_peers: a.max_peers,
        ..Config::default()
    };
    let instance_url = a
        .instance
        .clone()
        .unwrap_or_else(|| fail("serve needs --instance URL (signaling goes through it)"));
    if let Some(pem) = &a.trust {
        let ders: Vec<Vec<u8>> = peerhost_gateway::tls::certs(pem)
            .unwrap_or_else(|e| fail(e))
            .iter()
            .map(|c| c.to_vec())
            .collect();
        peerhost_gateway::client::add_root_certificates(&ders);
    }
    let key_pair = a
        .key_seed
        .map_or_else(KeyPair::generate, |s| KeyPair::from_seed(&[s; 32]));
    // No range cache: this peer's `lie` tampers in its source, below the gateway's cache, so
    // cached honest answers would hide the lie from the page and the instance's checks (a
    // real liar tampers whatever it sends).
    let mut options = HomeOptions::default()
        .rtc(config)
        .gateway(GatewayConfig::default().cache_bytes(0));
    if !a.bind.ip().is_unspecified() {
        options = options.bind(a.bind);
    }
    let home = HomePeer::start(source.clone(), key_pair, &instance_url, options)
        .await
        .unwrap_or_else(|e| fail(e));
    let server = home.server().clone();

    let mut http = None;
    if let Some(h) = a.http {
        let listener = tokio::net::TcpListener::bind(h)
            .await
            .unwrap_or_else(|e| fail(format!("bind {h}: {e}")));
        http = listener.local_addr().ok();
        tokio::spawn(peerhost_gateway::serve(
            listener,
            source.clone(),
            GatewayConfig::default(),
            ServeOptions::default(),
            std::future::pending(),
        ));
    }
    let public = server.status().await.map(|s| s.public).unwrap_or_default();
    say(&json!({
        "event": "ready",
        "key": hex::encode(home.key()),
        "local": server.local_addr().to_string(),
        "public": public.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "http": http.map(|h| format!("http://{h}")),
        "posts": logs.posts,
        "bulk": logs.bulk,
        "postsCount": a.posts,
        "bulkCount": a.bulk,
        "rssKb": rss_kb(),
    }));

    let home = Arc::new(home);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(req) = serde_json::from_str::<Value>(&line) else {
            say(&json!({"error": "bad JSON line"}));
            continue;
        };
        let tag = req["tag"].clone();
        let (server, home, lie) = (server.clone(), home.clone(), lie.clone());
        tokio::spawn(async move {
            match req["op"].as_str() {
                Some("lie") => {
                    lie.store(req["on"] != false, Ordering::Relaxed);
                    say(&json!({"tag": tag, "ok": true}));
                }
                Some("status") => match server.status().await {
                    Ok(s) => {
                        let peers: Vec<Value> = s
                            .peers
                            .iter()
                            .map(|p| {
                                json!({
                                    "id": p.id,
                                    "connectMs": p.connect_ms,
                                    "remote": p.remote.map(|r| r.to_string()),
                                    "channels": p.channels,
                                    "closed": p.closed,
                                    "probes": p.probes,
                                    "requests": p.stats.requests,
                                    "answered": p.stats.answered,
                                    "bodyBytes": p.stats.body_bytes,
                                    "bytesOut": p.stats.bytes_out,
                                    "bytesIn": p.stats.bytes_in,
                                })
                            })
                            .collect();
                        let h = home.status();
                        say(&json!({
                            "tag": tag,
                            "peers": peers,
                            "public": s.public.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "unclaimed": s.unclaimed,
                            "rssKb": rss_kb(),
                            "home": {
                                "polls": h.polls, "connected": h.connected, "listed": h.listed,
                                "problem": h.problem, "lastError": h.last_error,
                                "answered": h.answered, "refused": h.refused, "checks": h.checks,
                            },
                        }));
                    }
                    Err(e) => say(&json!({"tag": tag, "error": e.to_string()})),
                },
                _ => say(&json!({"tag": tag, "error": "unknown op"})),
            }
        });
    }
    // stdin closed: the harness is done.
    home.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(logs);
}
