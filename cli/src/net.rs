//! `peerhost serve`, `follow` and `mirror`: replicate logs with Holepunch peers (JS hypercore 11 /
//! corestore 7, or another peerhost) over an encrypted TCP stream.
//!
//! The work is `peerhost-node`'s; here the commands become a runtime, a store, a node, and a
//! progress bar.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_node::replication::Event;
use peerhost_node::{Config, Node};
use peerhost_store::{Core, Durability, Options, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long `follow` waits for a peer to show the log before giving up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// `peerhost serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to accept TCP connections on (port 0: any free port); the bound address is
    /// printed on stdout.
    #[arg(long, value_name = "ADDR")]
    listen_tcp: SocketAddr,
}

/// `peerhost follow`.
#[derive(Debug, Args)]
pub(crate) struct FollowArgs {
    /// The log's key (z-base32, hex or pear://).
    key: String,
    /// A peer to replicate with: tcp://HOST:PORT (repeat for several; requests are spread).
    #[arg(long = "peer", value_name = "tcp://HOST:PORT", required = true)]
    peers: Vec<String>,
    /// First block to download.
    #[arg(long, conflicts_with = "last")]
    start: Option<u64>,
    /// End (exclusive) [default: the log's length when first synced].
    #[arg(long, conflicts_with = "last")]
    end: Option<u64>,
    /// Download only the last N blocks.
    #[arg(long, value_name = "N")]
    last: Option<u64>,
    /// Keep running: follow the log as it grows, fetching new blocks (from START on).
    #[arg(long)]
    live: bool,
    /// Local name to give the log if it is new here.
    #[arg(long)]
    name: Option<String>,
    /// fsync every downloaded block (default: survive a killed process, not a power cut — a
    /// replica can always re-sync).
    #[arg(long)]
    sync: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// When done, print one JSON line on stdout: blocks, bytes, milliseconds since start and
    /// this process's peak RSS (for `interop-tests/replication/bench.sh`).
    #[arg(long)]
    stats: bool,
}

/// `peerhost mirror`.
#[derive(Debug, Args)]
pub(crate) struct MirrorArgs {
    /// The log's key (z-base32, hex or pear://).
    key: String,
    /// A peer to replicate with: tcp://HOST:PORT (repeat for several; reconnects when lost).
    #[arg(long = "peer", value_name = "tcp://HOST:PORT", required = true)]
    peers: Vec<String>,
    /// Also accept connections (and serve every local log) on this address.
    #[arg(long, value_name = "ADDR")]
    listen_tcp: Option<SocketAddr>,
    /// fsync every downloaded block.
    #[arg(long)]
    sync: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEERHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn parse_peer(s: &str) -> anyhow::Result<SocketAddr> {
    let Some(rest) = s.strip_prefix("tcp://") else {
        bail!("peer {s:?}: expected tcp://HOST:PORT");
    };
    use std::net::ToSocketAddrs;
    rest.to_socket_addrs()
        .with_context(|| format!("peer {s:?}: cannot resolve"))?
        .next()
        .with_context(|| format!("peer {s:?}: no address"))
}

fn open_store(dir: &Path, sync: bool) -> anyhow::Result<Store> {
    let durability = if sync {
        Durability::Sync
    } else {
        Durability::Process
    };
    Store::open_with(dir, Options::default().durability(durability))
        .with_context(|| format!("cannot open the store {}", dir.display()))
}

/// The log `key` from the store, created as an empty replica if new.
fn open_replica(store: &Store, key: &str, name: Option<&str>) -> anyhow::Result<Core> {
    let key = Key::parse(key).map_err(|e| anyhow::anyhow!("{key:?} is not a log key: {e}"))?;
    if store.contains(&key) {
        return Ok(store.open_core(&key.to_hex())?);
    }
    Ok(store.create_replica(key, None, name)?)
}

/// `peerhost serve`: every local log, to whoever opens it.
pub(crate) fn serve(dir: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let store = open_store(dir, true)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let node = Node::new(KeyPair::generate(), Config::default());
        let n = add_all(&node, &store, None)?;
        let listener = TcpListener::bind(args.listen_tcp)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen_tcp))?;
        let addr = listener.local_addr()?;
        println!("{addr}");
        tracing::info!(%addr, logs = n, "serving");
        node.listen_tcp(listener).await?;
        Ok(())
    })
}

/// Add every log of the store except `skip`, passively; returns how many.
fn add_all(node: &Node, store: &Store, skip: Option<&Key>) -> anyhow::Result<usize> {
    let mut n = 0;
    for key in store.keys()? {
        if Some(&key) == skip {
            continue;
        }
        let core = store.open_core(&key.to_hex())?;
        let now = Instant::now();
        node.with(|r| r.add_core(core, false, now));
        n += 1;
    }
    Ok(n)
}

fn progress(quiet: bool, total: u64) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} blocks {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Wait until `done` holds, or every connection has ended (then fail with the first error).
async fn wait_until(
    node: &Node,
    conns: &[JoinHandle<Result<(), peerhost_node::ConnectionError>>],
    limit: Option<Duration>,
    what: &str,
    mut done: impl FnMut(&Node) -> bool,
) -> anyhow::Result<()> {
    let deadline = limit.map(|l| Instant::now() + l);
    loop {
        let changed = node.changed();
        if done(node) {
            return Ok(());
        }
        if conns.iter().all(JoinHandle::is_finished) {
            bail!("every peer connection ended before {what} (see the log above)");
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            bail!("no peer offered the log within {limit:?} ({what})");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
    }
}

/// `peerhost follow`.
pub(crate) fn follow(dir: &Path, args: FollowArgs) -> anyhow::Result<()> {
    let store = open_store(dir, args.sync)?;
    let peers = args
        .peers
        .iter()
        .map(|p| parse_peer(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let core = open_replica(&store, &args.key, args.name.as_deref())?;
    let key = core.key();
    let started = Instant::now();
    let rt = runtime()?;
    rt.block_on(async move {
        let node = Node::new(KeyPair::generate(), Config::default());
        let now = Instant::now();
        let dkey = node.with(|r| r.add_core(core, true, now));
        let conns: Vec<_> = peers.iter().map(|a| node.connect_tcp(*a)).collect();
        wait_until(&node, &conns, Some(SYNC_TIMEOUT), "the log's head was known", |n| {
            n.with(|r| r.is_synced(&dkey))
        })
        .await?;
        let length = node.with(|r| r.core(&dkey).map_or(0, Core::length));
        let (start, end) = match args.last {
            Some(n) => (length.saturating_sub(n), Some(length)),
            None => (
                args.start.unwrap_or(0),
                args.end.or((!args.live).then_some(length)),
            ),
        };
        let now = Instant::now();
        node.with(|r| {
            r.set_live(&dkey, args.live, now);
            r.download(&dkey, start, end, now)
        })?;
        let total = end.unwrap_or(length).saturating_sub(start);
        let bar = progress(args.quiet, total);
        let mut events = node.subscribe();
        let have = count_present(&node, &dkey, start, end.unwrap_or(length));
        bar.set_position(have);
        let result = if args.live {
            follow_live(&node, &dkey, start, &bar, &mut events, &conns).await
        } else {
            let watch = watch_progress(&bar, &mut events, dkey, start, end);
            let wait = wait_until(&node, &conns, None, "the download finished", |n| {
                n.with(|r| r.is_complete(&dkey))
            });
            tokio::select! {
                r = wait => r,
                () = watch => Ok(()),
            }
        };
        bar.finish_and_clear();
        result?;
        let (length, fork) = node.with(|r| {
            r.core(&dkey)
                .map_or((0, 0), |c| (c.length(), c.fork()))
        });
        let got = count_present(&node, &dkey, start, end.unwrap_or(length));
        if args.stats {
            let bytes = node.with(|r| r.core(&dkey).map_or(0, Core::byte_length));
            println!(
                "{}",
                serde_json::json!({
                    "blocks": got,
                    "bytes": bytes,
                    "ms": started.elapsed().as_millis() as u64,
                    "peak_rss": peak_rss(),
                })
            );
        }
        eprintln!(
            "log {}: blocks {start}..{} stored and verified ({got} present), length {length}, fork {fork}",
            key.to_z32(),
            end.unwrap_or(length)
        );
        Ok(())
    })
}

/// This process's peak resident set size in bytes (Linux `VmHWM`; 0 elsewhere).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn count_present(node: &Node, dkey: &DiscoveryKey, start: u64, end: u64) -> u64 {
    node.with(|r| {
        let Some(core) = r.core_mut(dkey) else {
            return 0;
        };
        let mut n = 0;
        let mut i = start;
        while let Ok(Some(s)) = core.next_present(i, end) {
            let e = core.next_missing(s, end).ok().flatten().unwrap_or(end);
            n += e - s;
            i = e;
        }
        n
    })
}

/// Move the bar on downloads of `dkey` in `start..end`; never returns.
async fn watch_progress(
    bar: &ProgressBar,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    dkey: DiscoveryKey,
    start: u64,
    end: Option<u64>,
) {
    loop {
        match events.recv().await {
            Ok(Event::Downloaded {
                discovery_key,
                index,
                ..
            }) if discovery_key == dkey && index >= start && end.is_none_or(|e| index < e) => {
                bar.inc(1);
            }
            Ok(Event::Head {
                discovery_key,
                length,
                ..
            }) if discovery_key == dkey && end.is_none() => {
                bar.set_length(length.saturating_sub(start));
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// `follow --live`: run until every connection ends, printing each new head.
async fn follow_live(
    node: &Node,
    dkey: &DiscoveryKey,
    start: u64,
    bar: &ProgressBar,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    conns: &[JoinHandle<Result<(), peerhost_node::ConnectionError>>],
) -> anyhow::Result<()> {
    let watch = watch_progress(bar, events, *dkey, start, None);
    let wait = wait_until(node, conns, None, "the log was followed", |_| false);
    tokio::select! {
        r = wait => r,
        () = watch => Ok(()),
    }
}

/// `peerhost mirror`: everything, kept live, reconnecting to lost peers.
pub(crate) fn mirror(dir: &Path, args: MirrorArgs) -> anyhow::Result<()> {
    let store = open_store(dir, args.sync)?;
    let peers = args
        .peers
        .iter()
        .map(|p| parse_peer(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let core = open_replica(&store, &args.key, None)?;
    let key = core.key();
    let rt = runtime()?;
    rt.block_on(async move {
        let node = Node::new(KeyPair::generate(), Config::default());
        let now = Instant::now();
        let dkey = node.with(|r| r.add_core(core, true, now));
        node.with(|r| {
            r.set_live(&dkey, true, now);
            r.download(&dkey, 0, None, now)
        })?;
        if let Some(addr) = args.listen_tcp {
            add_all(&node, &store, Some(&key))?;
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!("{}", listener.local_addr()?);
            let n = node.clone();
            tokio::spawn(async move { n.listen_tcp(listener).await });
        }
        for addr in peers {
            let node = node.clone();
            tokio::spawn(async move {
                loop {
                    let _ = node.connect_tcp(addr).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    tracing::info!(peer = %addr, "reconnecting");
                }
            });
        }
        let length = node.with(|r| r.core(&dkey).map_or(0, Core::length));
        let bar = progress(args.quiet, length);
        bar.set_position(count_present(&node, &dkey, 0, length));
        let mut events = node.subscribe();
        watch_progress(&bar, &mut events, dkey, 0, None).await;
        Ok(())
    })
}
