//! The HTTP gateway benchmark's server side and load tools (`scripts/bench-gateway.sh` drives
//! it and runs nginx and wrk next to it).
//!
//! ```text
//! gateway_bench prepare DIR BLOCKS [LEMMY_DIR]  a store in DIR/store: log "posts" of BLOCKS
//!                                               generated ~1 KiB Lemmy-like posts (feed
//!                                               entries); with LEMMY_DIR, logs "lemmy-posts" and
//!                                               "lemmy-comments" imported from its JSON
//! gateway_bench serve DIR                       serve DIR/store on 127.0.0.1 (a free port,
//!                                               printed as {"port":N}); on EOF of stdin print
//!                                               the gateway's counters and exit; env
//!                                               CACHE_BYTES=0 keeps no answers (as before
//!                                               the cache), COMPRESS=0 sends none compressed
//! gateway_bench halfopen ADDR CLIENTS PER PROBES
//!                                               CLIENTS loopback source addresses (127.0.1.x)
//!                                               each try to hold PER connections with a
//!                                               request head trickled a byte every 200 ms
//!                                               (reconnecting when closed); meanwhile PROBES
//!                                               fresh clients (127.0.2.x) GET /v1/logs one after
//!                                               another; prints each probe's time
//! ```
//!
//! Keys are fixed (seeded) so URLs are the same from run to run.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use peerhost_feed::{Author, Entry, Kind, Post};
use peerhost_gateway::{Config, Cores, Counters, ServeOptions};
use peerhost_ids::KeyPair;
use peerhost_store::{CreateOptions, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str, Error> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| "missing argument (see the header of gateway_bench.rs)".into())
    };
    match arg(0)? {
        "prepare" => prepare(
            Path::new(arg(1)?),
            arg(2)?.parse()?,
            args.get(3).map(Path::new),
        ),
        "serve" => serve(Path::new(arg(1)?)),
        "halfopen" => halfopen(
            arg(1)?.parse()?,
            arg(2)?.parse()?,
            arg(3)?.parse()?,
            arg(4)?.parse()?,
        ),
        other => Err(format!("unknown command {other}").into()),
    }
}

/// A small seeded generator (xorshift64*): the same posts every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The words of the Lemmy sample's titles, bodies and comments, with repeats (so drawing one
/// at random follows their frequencies), or a fixed list without the sample.
fn vocabulary(lemmy: Option<&Path>) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(dir) = lemmy {
        for file in ["posts.json", "comments.json"] {
            let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let mut strings = Vec::new();
            collect_text(&v, &mut strings);
            for s in strings {
                words.extend(s.split_whitespace().map(str::to_owned));
            }
        }
    }
    if words.len() < 100 {
        words = "the a peer log block reader mirror runs serves posts comment thread rust \
                 network home uplink browser verifies head range proof signed append only \
                 community site load carries of to and in is it that for on with as this"
            .split(' ')
            .map(str::to_owned)
            .collect();
    }
    words
}

/// The text fields people wrote: post names and bodies, comment contents.
fn collect_text(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("name" | "body" | "content", serde_json::Value::String(s))
                        if s.contains(' ') =>
                    {
                        out.push(s.clone());
                    }
                    _ => collect_text(v, out),
                }
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| collect_text(v, out)),
        _ => {}
    }
}

fn sentence(rng: &mut Rng, words: &[String], n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&words[rng.below(words.len())]);
    }
    s.push('.');
    s
}

/// Post `i`: a Lemmy-shaped feed entry of about `size` bytes.
fn post(rng: &mut Rng, words: &[String], i: u64, size: usize) -> Result<Vec<u8>, Error> {
    let mut body = String::new();
    loop {
        let n = 6 + rng.below(14);
        let next = sentence(rng, words, n);
        if body.len() + next.len() + 190 > size && !body.is_empty() {
            break;
        }
        if !body.is_empty() {
            body.push_str(if rng.below(4) == 0 { "\n\n" } else { " " });
        }
        body.push_str(&next);
    }
    let user = rng.below(200);
    let title_words = 4 + rng.below(8);
    let id = 48_000 + i;
    let post = Post {
        id: format!("lemmy:example-lemmy.test/post/{id}"),
        author: Some(Author {
            name: format!("user_{user}"),
            display_name: format!("User {user}"),
            url: format!("https://example-lemmy.test/u/user_{user}"),
        }),
        title: sentence(rng, words, title_words),
        body,
        link: String::new(),
        published_us: 1_790_000_000_000_000 + i * 61_000_000,
        updated_us: 0,
        origin: format!("https://example-lemmy.test/post/{id}"),
        nsfw: false,
        votes: None,
    };
    Ok(Entry::new(Kind::Post(post)).encode()?)
}

fn prepare(dir: &Path, blocks: u64, lemmy: Option<&Path>) -> Result<(), Error> {
    let store = Store::open(dir.join("store"))?;
    let words = vocabulary(lemmy);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let opts = CreateOptions::default().key_pair(KeyPair::from_seed(&[41; 32]));
    let mut core = store.create("posts", opts)?;
    let mut batch = Vec::new();
    for i in 0..blocks {
        batch.push(post(&mut rng, &words, i, 1024)?);
        if batch.len() == 1000 {
            core.append(&batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        core.append(&batch)?;
    }
    let mut out = serde_json::json!({ "posts": core.key().to_hex() });
    if let Some(lemmy) = lemmy {
        for (name, file, seed) in [
            ("lemmy-posts", "posts.json", 42u8),
            ("lemmy-comments", "comments.json", 43),
        ] {
            let doc = peerhost_feed::lemmy::Document::parse(&std::fs::read(lemmy.join(file))?)?;
            let batch = doc.batch("example-lemmy.test");
            let items = if name == "lemmy-posts" {
                batch.posts
            } else {
                batch.comments
            };
            let mut seen = peerhost_feed::import::Seen::default();
            let (entries, _) = peerhost_feed::import::plan(&mut seen, items, 1_790_000_000_000_000);
            let blocks = entries
                .iter()
                .map(Entry::encode)
                .collect::<Result<Vec<_>, _>>()?;
            let opts = CreateOptions::default().key_pair(KeyPair::from_seed(&[seed; 32]));
            let mut core = store.create(name, opts)?;
            core.append(&blocks)?;
            out[name] = core.key().to_hex().into();
        }
    }
    println!("{out}");
    Ok(())
}

fn serve(dir: &Path) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Store::open(dir.join("store"))?;
        let cores = Cores::open_all(&store)?;
        let counters = Arc::new(Counters::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{{\"port\":{}}}", listener.local_addr()?.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Stop when our stdin closes (the script holds it open while it measures).
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = stop.send(());
        });
        peerhost_gateway::serve(
            listener,
            cores,
            gateway_config().counters(counters.clone()),
            ServeOptions::default(),
            async move {
                let _ = stopped.await;
            },
        )
        .await?;
        println!(
            "{{\"bytes\":{},\"requests\":{}}}",
            counters.bytes(),
            counters.requests()
        );
        Ok(())
    })
}

/// One attacker connection: a request head that never ends, a byte every 200 ms.
async fn trickle(addr: SocketAddr, from: Ipv4Addr, open: Arc<AtomicUsize>) {
    loop {
        let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
            return;
        };
        if sock.bind(SocketAddr::new(from.into(), 0)).is_err() {
            return;
        }
        let Ok(mut s) = sock.connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        open.fetch_add(1, Ordering::Relaxed);
        let mut ok = s.write_all(b"GET /v1/logs HTTP/1.1\r\nx-a: ").await.is_ok();
        while ok {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ok = s.write_all(b"a").await.is_ok();
            // A closed connection shows as a readable EOF.
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            {
                ok = false;
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn halfopen(addr: SocketAddr, clients: u8, per: usize, probes: u8) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let open = Arc::new(AtomicUsize::new(0));
        for c in 0..clients {
            let from = Ipv4Addr::new(127, 0, 1, c + 1);
            for _ in 0..per {
                tokio::spawn(trickle(addr, from, open.clone()));
            }
        }
        // Let the attackers fill the server.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!(
            "half-open connections held: {}",
            open.load(Ordering::Relaxed)
        );
        let mut times = Vec::new();
        for p in 0..probes {
            let from = Ipv4Addr::new(127, 0, 2, p + 1);
            let t = Instant::now();
            let answered = tokio::time::timeout(Duration::from_secs(10), probe(addr, from))
                .await
                .unwrap_or(false);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            times.push(if answered { Some(ms) } else { None });
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "{}",
            serde_json::json!({
                "held": open.load(Ordering::Relaxed),
                "probes_ms": times,
            })
        );
        Ok(())
    })
}

/// A fresh client's whole request: connect, GET, read the status line.
async fn probe(addr: SocketAddr, from: Ipv4Addr) -> bool {
    let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
        return false;
    };
    if sock.bind(SocketAddr::new(from.into(), 0)).is_err() {
        return false;
    }
    let Ok(mut s) = sock.connect(addr).await else {
        return false;
    };
    if s.write_all(b"GET /v1/logs HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    s.read_exact(&mut buf).await.is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

/// The gateway's defaults, with `CACHE_BYTES` and `COMPRESS` from the environment.
fn gateway_config() -> Config {
    let mut config = Config::default();
    if let Some(bytes) = std::env::var("CACHE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config = config.cache_bytes(bytes);
    }
    if std::env::var("COMPRESS").is_ok_and(|v| v == "0") {
        config.compress = false;
    }
    config
}
