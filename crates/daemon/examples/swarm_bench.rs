//! The Rust side of `interop-tests/swarm/bench.sh`: finding peers on a loopback HyperDHT
//! testnet and replicating over UDX, with the daemon that `peerhost serve` / `follow` run. The
//! JS counterpart is `interop-tests/swarm/bench.js`: same modes, same JSON lines.
//!
//! ```text
//! swarm_bench testnet NODES                  a testnet of NODES nodes (the swarm's
//!                                            `Bootstrapper`, the rest persistent) on
//!                                            127.0.0.1; prints
//!                                            {"bootstrap": "HOST:PORT"}, runs until killed
//! swarm_bench prepare DIR BLOCKS SIZE        a store in DIR with one log of BLOCKS blocks of
//!                                            SIZE bytes; prints {"key"}
//! swarm_bench writer DIR BOOTSTRAP           a daemon serving DIR on the DHT (announcing every
//!                                            log); prints {"key", "topic"} once announced
//! swarm_bench lookup BOOTSTRAP TOPIC N       a fresh DHT node, bootstrapped, looks TOPIC up N
//!                                            times one after another; prints
//!                                            {"ms": [...], "first_ms": [...], "peers",
//!                                            "replies"} (replies: the last lookup's answers
//!                                            that held records)
//! swarm_bench reader BOOTSTRAP KEY TRIES [all]
//!                                            TRIES times: a fresh daemon (its DHT node
//!                                            bootstrapped and listening first) follows KEY:
//!                                            block 0 (and the last block, which `follow` reads
//!                                            to tell a community from a plain log), or every
//!                                            block with `all`; one line per try with the times
//!                                            from the follow call: {"connection_ms",
//!                                            "channel_ms", "first_block_ms", "done_ms",
//!                                            "blocks", "bytes", "peak_rss"}
//! ```
//!
//! `first_ms` of a lookup is `null`: `Dht::lookup` returns when the query ends.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use peerhost_daemon::{Daemon, DhtOptions, FileConfig, Network, Options, Range};
use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_ids::{Key, KeyPair};
use peerhost_node::replication::Event;
use peerhost_store::{CreateOptions, Durability, Options as StoreOptions, Store};
use peerhost_swarm::{BootstrapOptions, Bootstrapper};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn bootstrap_list(s: &str) -> Result<Vec<SocketAddrV4>> {
    Ok(s.split(',')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// A bootstrap node (the swarm's `Bootstrapper`) and `nodes - 1` persistent, unfirewalled
/// nodes, each persistent before the address is printed.
async fn testnet(nodes: usize) -> Result<()> {
    let boot = Bootstrapper::bind(BootstrapOptions::new(HOST, 0).with_bind(HOST)).await?;
    let mut dhts = vec![boot.dht().clone()];
    for _ in 1..nodes {
        let mut config = peerhost_hyperdht::Config::default();
        config.dht.bootstrap = vec![boot.addr()];
        config.dht.ephemeral = Some(false);
        config.dht.firewalled = false;
        let dht = Dht::bind(config, BindOptions::host(HOST)).await?;
        dht.bootstrapped().await;
        dhts.push(dht);
    }
    for d in &dhts {
        while !d.info().await.is_some_and(|i| i.persistent) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!("{}", json!({ "bootstrap": boot.addr().to_string() }));
    std::future::pending::<()>().await;
    Ok(())
}

fn prepare(dir: &str, blocks: u64, size: usize) -> Result<()> {
    let store = Store::open_with(dir, StoreOptions::default().durability(Durability::Process))?;
    let mut core = store.create("bench", CreateOptions::default())?;
    let mut i = 0;
    while i < blocks {
        let batch: Vec<Vec<u8>> = (i..blocks.min(i + 100))
            .map(|j| {
                let mut b = vec![(j & 255) as u8; size];
                b[..4].copy_from_slice(&(j as u32).to_le_bytes());
                b
            })
            .collect();
        core.append(&batch)?;
        i += batch.len() as u64;
    }
    println!("{}", json!({ "key": core.key().to_hex() }));
    Ok(())
}

fn dht_options(bootstrap: &str) -> Result<Network> {
    let nodes = bootstrap_list(bootstrap)?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Network::Dht(DhtOptions::new(nodes).with_host(HOST)))
}

async fn writer(dir: &str, bootstrap: &str) -> Result<()> {
    let key = Store::open(dir)?
        .keys()?
        .into_iter()
        .next()
        .ok_or("no log")?;
    let opts = Options::new(dir, FileConfig::default())
        .with_network(dht_options(bootstrap)?)
        .with_announce(true)
        .with_write_files(false)
        .with_key_pair(KeyPair::generate());
    let daemon = Daemon::start(opts).await?;
    while daemon
        .status(true)
        .await
        .dht
        .is_none_or(|d| d.announced == 0)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{}",
        json!({ "key": key.to_hex(), "topic": key.discovery_key().to_hex() })
    );
    std::future::pending::<()>().await;
    Ok(())
}

async fn lookup(bootstrap: &str, topic: &str, n: usize) -> Result<()> {
    let mut config = peerhost_hyperdht::Config::default();
    config.dht.bootstrap = bootstrap_list(bootstrap)?;
    let dht = Dht::bind(config, BindOptions::host(HOST)).await?;
    dht.bootstrapped().await;
    let topic: [u8; 32] = hex_decode(topic)?;
    let mut times = Vec::new();
    let (mut peers, mut replies) = (0, 0);
    for _ in 0..n {
        let start = Instant::now();
        let found = dht.lookup(topic).await?;
        times.push(ms(start));
        replies = found.len();
        let mut keys: Vec<[u8; 32]> = found
            .iter()
            .flat_map(|r| r.peers.iter().map(|p| p.public_key))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        peers = keys.len();
    }
    let first: Vec<Option<f64>> = vec![None; times.len()];
    println!(
        "{}",
        json!({ "ms": times, "first_ms": first, "peers": peers, "replies": replies })
    );
    Ok(())
}

fn hex_decode(s: &str) -> Result<[u8; 32]> {
    let mut out = [0; 32];
    if s.len() != 64 {
        return Err("a topic is 64 hex digits".into());
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

async fn reader_try(bootstrap: &str, key: Key, all: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = Options::new(dir.path(), FileConfig::default())
        .with_network(dht_options(bootstrap)?)
        .with_announce(false)
        .with_write_files(false)
        .with_key_pair(KeyPair::generate());
    let daemon = Daemon::start(opts).await?;
    // Bootstrapped and listening.
    while daemon
        .status(true)
        .await
        .dht
        .is_none_or(|d| d.nodes == 0 || !d.listening)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let node = daemon.node().clone();
    let mut events = node.subscribe();
    let start = Instant::now();
    // Watch for the first connection, channel and verified block while `follow` runs.
    let watch = tokio::spawn(async move {
        let (mut conn, mut channel, mut block) = (None, None, None);
        while block.is_none() {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(Event::ChannelOpened { .. }) if channel.is_none() => channel = Some(ms(start)),
                    Ok(Event::Downloaded { .. }) => block = Some(ms(start)),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    _ => {}
                },
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
            if conn.is_none() && !node.peers().is_empty() {
                conn = Some(ms(start));
            }
        }
        (conn, channel, block)
    });
    let range = if all {
        Range::default()
    } else {
        Range::between(Some(0), Some(1))
    };
    daemon
        .follow(key, range, Duration::from_secs(120))
        .await
        .map_err(|e| format!("follow: {e}"))?;
    let done = ms(start);
    let (conn, channel, block) = watch.await?;
    let stats = daemon.node().log_stats();
    let s = stats.get(&key.discovery_key()).copied().unwrap_or_default();
    println!(
        "{}",
        json!({
            "connection_ms": conn,
            "channel_ms": channel,
            "first_block_ms": block,
            "done_ms": done,
            "blocks": s.downloaded_blocks,
            "bytes": s.downloaded_bytes,
            "peak_rss": peak_rss(),
        })
    );
    daemon.shutdown(Duration::from_millis(200)).await;
    Ok(())
}

async fn reader(bootstrap: &str, key: &str, tries: usize, all: bool) -> Result<()> {
    let key = Key::parse(key)?;
    for _ in 0..tries {
        reader_try(bootstrap, key, all).await?;
    }
    Ok(())
}

fn usage() -> Box<dyn std::error::Error> {
    "usage: swarm_bench testnet|prepare|writer|lookup|reader … (see the file's docs)".into()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> Result<T> {
    args.get(i).and_then(|a| a.parse().ok()).ok_or_else(usage)
}

fn main() -> Result<()> {
    // Log lines on stderr when asked (`PEERHOST_LOG=debug`).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("PEERHOST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mode = args.first().map(String::as_str).unwrap_or("");
    rt.block_on(async {
        match mode {
            "testnet" => testnet(arg(&args, 1)?).await,
            "prepare" => prepare(&arg::<String>(&args, 1)?, arg(&args, 2)?, arg(&args, 3)?),
            "writer" => writer(&arg::<String>(&args, 1)?, &arg::<String>(&args, 2)?).await,
            "lookup" => {
                let (b, t): (String, String) = (arg(&args, 1)?, arg(&args, 2)?);
                lookup(&b, &t, arg(&args, 3)?).await
            }
            "reader" => {
                let (b, k): (String, String) = (arg(&args, 1)?, arg(&args, 2)?);
                let all = args.get(4).is_some_and(|a| a == "all");
                reader(&b, &k, arg(&args, 3)?, all).await
            }
            _ => Err(usage()),
        }
    })?;
    // Daemons and DHT tasks may still run; leave without waiting for them.
    std::process::exit(0)
}
