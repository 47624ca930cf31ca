//! `rtc_peer`: a node that serves a store's logs to browsers over WebRTC data channels
//! (`peerhost-webrtc`), for the Chromium tests (`interop-tests/browser/rtc*.js`) and the NAT
//! lab. Phase 1 of issue 11: the test harness carries the offers and answers over this
//! process's stdin and stdout (phase 2 replaces that with the instance's signaling).
//!
//! ```text
//! rtc_peer stun ADDR
//!     a STUN binding server (RFC 8489) on ADDR. → {"event":"ready","stun":ADDR}
//! rtc_peer serve --bind IP:PORT [--stun ADDR]… [--http IP:PORT] [--posts N]
//!                [--bulk BLOCKS] [--block-size BYTES] [--no-birthday] [--birthday N]
//!                [--max-peers N] [--seed S] [--sctp-buffer B] [--window B] [--window-rate B/s] [--max-message B] [--mtu B]
//!                [--tamper]
//!     writes a store in a temporary directory: a log of N JSON posts (default 50) and a
//!     log of BLOCKS blocks of BYTES (default 0 blocks, 65536 bytes); answers offers on
//!     stdin; with --http also serves the same logs over the HTTP gateway. The same --seed
//!     gives the same logs (keys, blocks, signatures) in every process. With --tamper, every
//!     block served in a range over WebRTC has its last byte flipped (heads stay honest): a
//!     peer that answers offers and then lies.
//!     → {"event":"ready","local":…,"public":[…],"http":…,"posts":KEY,"bulk":KEY|null}
//! ```
//!
//! Requests on stdin, one JSON object a line, answered on stdout with the same `tag`:
//! `{"op":"offer","tag":T,"sdp":S}` → `{"tag":T,"answer":SDP,"id":N}` or `{"tag":T,"error":…}`;
//! `{"op":"status","tag":T}` → `{"tag":T,"peers":[…],"public":[…],"rssKb":…,"unclaimed":…}`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerhost_gateway::api::Api;
use peerhost_gateway::range::RangeProof;
use peerhost_gateway::{Config as GatewayConfig, Cores, ServeOptions};
use peerhost_gateway::{LogSource, RangeError, RangeQuery, SignedHead, SourceError};
use peerhost_ids::Key;
use peerhost_ids::KeyPair;
use peerhost_store::{CreateOptions, Store};
use peerhost_webrtc::driver::{Birthday, Config, Server};
use peerhost_webrtc::stun_server::{StunConfig, StunStats, serve_stun};
use serde_json::{Value, json};

/// A source that flips the last byte of every block it serves in a range.
struct Tamper(Cores);

impl LogSource for Tamper {
    fn keys(&self, limit: usize) -> Result<Vec<Key>, SourceError> {
        self.0.keys(limit)
    }
    fn head(&self, key: &Key) -> Result<Option<SignedHead>, SourceError> {
        self.0.head(key)
    }
    fn range(&self, key: &Key, query: &RangeQuery) -> Result<RangeProof, RangeError> {
        let mut proof = self.0.range(key, query)?;
        for b in &mut proof.blocks {
            if let Some(last) = b.last_mut() {
                *last ^= 1;
            }
        }
        Ok(proof)
    }
}
use tokio::io::{AsyncBufReadExt, BufReader};

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
    http: Option<SocketAddr>,
    posts: usize,
    bulk: usize,
    block_size: usize,
    birthday: Option<Birthday>,
    max_peers: usize,
    seed: u8,
    sctp_buffer: Option<usize>,
    window: Option<usize>,
    window_rate: Option<usize>,
    max_message: Option<usize>,
    mtu: Option<usize>,
    tamper: bool,
}

fn parse(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args {
        bind: "127.0.0.1:0"
            .parse()
            .unwrap_or_else(|_| fail("bad default")),
        stun: vec![],
        http: None,
        posts: 50,
        bulk: 0,
        block_size: 65_536,
        birthday: Some(Birthday::default()),
        max_peers: 256,
        seed: 7,
        sctp_buffer: None,
        window: None,
        window_rate: None,
        max_message: None,
        mtu: None,
        tamper: false,
    };
    let addr = |v: Option<String>| -> SocketAddr {
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail("expected IP:PORT"))
    };
    let num = |v: Option<String>| -> usize {
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail("expected a number"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bind" => a.bind = addr(it.next()),
            "--stun" => a.stun.push(addr(it.next())),
            "--http" => a.http = Some(addr(it.next())),
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
            "--sctp-buffer" => a.sctp_buffer = Some(num(it.next())),
            "--window" => a.window = Some(num(it.next())),
            "--window-rate" => a.window_rate = Some(num(it.next())),
            "--max-message" => a.max_message = Some(num(it.next())),
            "--mtu" => a.mtu = Some(num(it.next())),
            "--tamper" => a.tamper = true,
            other => fail(format!("unknown flag {other}")),
        }
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
        Some("serve") => serve(parse(args)).await,
        _ => fail("usage: rtc_peer stun ADDR | rtc_peer serve --bind IP:PORT …"),
    }
}

async fn serve(a: Args) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let store = Store::open(dir.path()).unwrap_or_else(|e| fail(e));
    let cores = Cores::new();
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
    if let Some(n) = a.max_message {
        peer_config.session.max_message = n;
    }
    if let Some(n) = a.mtu {
        peer_config.mtu = n;
    }
    let config = Config {
        peer: peer_config,
        stun_servers: a.stun.clone(),
        birthday: a.birthday.clone(),
        max_peers: a.max_peers,
        ..Config::default()
    };
    let server = if a.tamper {
        Server::bind(
            a.bind,
            Api::new(Tamper(cores.clone()), GatewayConfig::default()),
            config,
        )
        .await
    } else {
        Server::bind(
            a.bind,
            Api::new(cores.clone(), GatewayConfig::default()),
            config,
        )
        .await
    }
    .unwrap_or_else(|e| fail(format!("bind {}: {e}", a.bind)));

    let mut http = None;
    if let Some(h) = a.http {
        let listener = tokio::net::TcpListener::bind(h)
            .await
            .unwrap_or_else(|e| fail(format!("bind {h}: {e}")));
        http = listener.local_addr().ok();
        let cores = cores.clone();
        tokio::spawn(async move {
            let _ = peerhost_gateway::serve(
                listener,
                cores,
                GatewayConfig::default(),
                ServeOptions::default(),
                std::future::pending(),
            )
            .await;
        });
    }

    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let say = {
        let stdout = stdout.clone();
        move |v: Value| {
            if let Ok(mut o) = stdout.lock() {
                let _ = writeln!(o, "{v}");
                let _ = o.flush();
            }
        }
    };
    say(json!({
        "event": "ready",
        "local": server.local_addr().to_string(),
        "public": server.public_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "http": http.map(|h| format!("http://{h}")),
        "posts": posts_key,
        "bulk": bulk_key,
        "postsCount": a.posts,
        "bulkCount": a.bulk,
        "rssKb": rss_kb(),
    }));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(req) = serde_json::from_str::<Value>(&line) else {
            say(json!({"error": "bad JSON line"}));
            continue;
        };
        let tag = req["tag"].clone();
        let server = server.clone();
        let say = say.clone();
        tokio::spawn(async move {
            match req["op"].as_str() {
                Some("offer") => {
                    let sdp = req["sdp"].as_str().unwrap_or_default().to_owned();
                    match server.answer(sdp).await {
                        Ok(a) => say(json!({"tag": tag, "answer": a.sdp, "id": a.id})),
                        Err(e) => say(json!({"tag": tag, "error": e.to_string()})),
                    }
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
                        say(json!({
                            "tag": tag,
                            "peers": peers,
                            "public": s.public.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "unclaimed": s.unclaimed,
                            "rssKb": rss_kb(),
                        }));
                    }
                    Err(e) => say(json!({"tag": tag, "error": e.to_string()})),
                },
                _ => say(json!({"tag": tag, "error": "unknown op"})),
            }
        });
    }
    // stdin closed: the harness is done.
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(dir);
}
