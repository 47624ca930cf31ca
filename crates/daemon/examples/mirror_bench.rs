//! The Rust side of `scripts/bench-node.sh`: a node mirroring many small logs over one
//! connection, then idle, then serving a follower. The JS counterpart is
//! `interop-tests/community/bench-mirror.js` (corestore 7), against the same source.
//!
//! ```text
//! mirror_bench prepare DIR LOGS BLOCKS SIZE   a store of LOGS logs of BLOCKS blocks; keys → DIR/keys.txt
//! mirror_bench serve DIR                      serve DIR over TCP; prints the port
//! mirror_bench mirror PORT KEYS DIR           mirror every key over one connection, then idle,
//!                                             then serve a follower (prints its port); one JSON
//!                                             line per phase: mirrored, idle, served
//! mirror_bench follow PORT KEYS DIR           download every key from PORT (the follower)
//! ```
//!
//! Numbers: wall time, this process's peak RSS (`VmHWM`), RSS now (`VmRSS`), CPU time
//! (`utime + stime` of `/proc/self/stat`).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_node::{Config, Node};
use peerhost_store::{CreateOptions, Durability, Options, Store};
use tokio::net::TcpListener;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU milliseconds used by this process (user + system).
fn cpu_ms() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks * 10 // USER_HZ = 100 on Linux
}

fn store(dir: &Path) -> Result<Store> {
    // The store's caches as the daemon has them (shared by all logs since store format 2),
    // unless `NODE_CACHE` sets the tree nodes cached, all logs together.
    let mut options = Options::default().durability(Durability::Process);
    if let Some(n) = std::env::var("NODE_CACHE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options = options.node_cache(n);
    }
    Ok(Store::open_with(dir, options)?)
}

fn keys(path: &str) -> Result<Vec<Key>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| Key::parse(l.trim()).ok())
        .collect())
}

fn prepare(dir: &str, logs: usize, blocks: usize, size: usize) -> Result<()> {
    let s = store(Path::new(dir))?;
    let mut out = String::new();
    for l in 0..logs {
        let mut core = s.create(&format!("log{l}"), CreateOptions::default())?;
        let data: Vec<Vec<u8>> = (0..blocks)
            .map(|i| vec![((l + i) & 255) as u8; size])
            .collect();
        core.append(&data)?;
        out.push_str(&core.key().to_hex());
        out.push('\n');
    }
    std::fs::write(Path::new(dir).join("keys.txt"), out)?;
    Ok(())
}

async fn listen(node: &Node) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let n = node.clone();
    tokio::spawn(async move { n.listen_tcp(l).await });
    Ok(addr)
}

async fn serve(dir: &str) -> Result<()> {
    let s = store(Path::new(dir))?;
    let node = Node::new(KeyPair::generate(), Config::default());
    let now = Instant::now();
    for k in s.keys()? {
        let core = s.open_core(&k.to_hex())?;
        node.with(|r| r.add_core(core, false, now));
    }
    let addr = listen(&node).await?;
    println!("{}", addr.port());
    std::future::pending::<()>().await;
    Ok(())
}

/// Add every key as an active replica downloading everything; wait until all are complete.
async fn download_all(node: &Node, s: &Store, keys: &[Key], port: u16) -> Result<()> {
    let now = Instant::now();
    let mut dkeys = Vec::new();
    for k in keys {
        let core = s.create_replica(*k, None, None)?;
        dkeys.push(node.with(|r| {
            let d = r.add_core(core, true, now);
            r.set_live(&d, true, now);
            d
        }));
    }
    node.connect_tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    // Learn every head, then ask for every block.
    let mut pending: Vec<(DiscoveryKey, bool)> = dkeys.into_iter().map(|d| (d, false)).collect();
    loop {
        let changed = node.changed();
        node.with(|r| {
            let now = Instant::now();
            pending.retain_mut(|(d, asked)| {
                if !*asked && r.is_synced(d) {
                    *asked = r.download(d, 0, None, now).is_ok();
                }
                let complete =
                    *asked && r.core(d).is_some_and(|c| c.length() > 0) && r.is_complete(d);
                !complete
            });
        });
        if pending.is_empty() {
            return Ok(());
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
    }
}

async fn mirror(port: u16, keys_path: &str, dir: &str) -> Result<()> {
    let keys = keys(keys_path)?;
    let s = store(Path::new(dir))?;
    let node = Node::new(KeyPair::generate(), Config::default());
    let (t0, c0) = (Instant::now(), cpu_ms());
    download_all(&node, &s, &keys, port).await?;
    println!(
        "{}",
        serde_json::json!({
            "event": "mirrored", "logs": keys.len(),
            "ms": t0.elapsed().as_millis() as u64, "cpu_ms": cpu_ms() - c0,
            "peak_rss": status_kb("VmHWM:") * 1024, "rss": status_kb("VmRSS:") * 1024,
        })
    );
    let c1 = cpu_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "{}",
        serde_json::json!({
            "event": "idle", "rss": status_kb("VmRSS:") * 1024, "cpu_ms": cpu_ms() - c1,
        })
    );
    let addr = listen(&node).await?;
    println!(
        "{}",
        serde_json::json!({"event": "listening", "port": addr.port()})
    );
    // The script says when the follower is done (a line on stdin).
    let c2 = cpu_ms();
    let t2 = Instant::now();
    tokio::task::spawn_blocking(|| {
        let mut l = String::new();
        let _ = std::io::stdin().lock().read_line(&mut l);
    })
    .await?;
    let served: u64 = node.log_stats().values().map(|s| s.uploaded_bytes).sum();
    println!(
        "{}",
        serde_json::json!({
            "event": "served", "bytes": served, "ms": t2.elapsed().as_millis() as u64,
            "cpu_ms": cpu_ms() - c2, "peak_rss": status_kb("VmHWM:") * 1024,
            "rss": status_kb("VmRSS:") * 1024,
        })
    );
    Ok(())
}

async fn follow(port: u16, keys_path: &str, dir: &str) -> Result<()> {
    let keys = keys(keys_path)?;
    let s = store(Path::new(dir))?;
    let node = Node::new(KeyPair::generate(), Config::default());
    let t0 = Instant::now();
    download_all(&node, &s, &keys, port).await?;
    println!(
        "{}",
        serde_json::json!({"event": "followed", "ms": t0.elapsed().as_millis() as u64})
    );
    Ok(())
}

fn main() -> Result<()> {
    // RUST_LOG=debug (say) shows what the node does, on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match arg(0) {
        "prepare" => prepare(arg(1), arg(2).parse()?, arg(3).parse()?, arg(4).parse()?),
        "serve" => rt.block_on(serve(arg(1))),
        "mirror" => rt.block_on(mirror(arg(1).parse()?, arg(2), arg(3))),
        "follow" => rt.block_on(follow(arg(1).parse()?, arg(2), arg(3))),
        _ => Err("usage: mirror_bench prepare|serve|mirror|follow …".into()),
    }
}
