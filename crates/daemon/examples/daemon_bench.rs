//! Many communities on one mirror (issue 15): the Rust side of `scripts/bench-daemon.sh`. The
//! JS counterpart is `interop-tests/bench/daemon.js` (corestore 7 + hyperswarm 4).
//!
//! ```text
//! daemon_bench testnet NODES              a bootstrap node (the swarm's `Bootstrapper`) and
//!                                         NODES - 1 persistent nodes on 127.0.0.1; prints
//!                                         {"bootstrap": "HOST:PORT"}, runs until killed
//! daemon_bench prepare DIR COMMUNITIES POSTS
//!                                         a mirror's store in DIR: COMMUNITIES communities of
//!                                         4 logs (descriptor, POSTS posts, empty comments and
//!                                         assets), written as replicas (no secret key, as
//!                                         replication writes them), each community in the
//!                                         state file's mirrors; every log's topic (discovery
//!                                         key, hex) one a line in DIR.topics
//! daemon_bench run DIR BOOTSTRAP SETTLE_S a daemon on DIR mirroring all of them on the
//!                                         testnet; JSON lines: "ready" (Daemon::start
//!                                         returned), "announced" (the swarm's own count of
//!                                         announced topics reached every log), "idle" (SETTLE_S
//!                                         later: RSS, descriptors, files); then serves until
//!                                         killed (NET=off: without the DHT)
//! daemon_bench store DIR                  the store's share of the memory: opens DIR and every
//!                                         log in it, prints the heap they hold
//! daemon_bench lookup BOOTSTRAP TOPICS SAMPLE PUBKEY
//!                                         a fresh DHT node looks up SAMPLE topics spread evenly
//!                                         over the file TOPICS, 16 at a time; prints how many
//!                                         list PUBKEY (hex) among their peers
//! ```
//!
//! Times are from the process's start (`ready_ms`) or from the daemon's start returning.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use peerhost_daemon::{Daemon, DhtOptions, FileConfig, Network, Options};
use peerhost_feed::{Descriptor, Entry, Post};
use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_ids::{Key, KeyPair};
use peerhost_log::{Manifest, Tree, Verifier};
use peerhost_store::{BlockWrite, Changes, Durability, Options as StoreOptions, Store};
use peerhost_swarm::{BootstrapOptions, Bootstrapper};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The system allocator, counting the bytes allocated and not freed (the "heap" of the JSON
/// lines: RSS minus the allocator's own slack, code and stacks).
struct Counting;

static HEAP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated beside it.
#[allow(unsafe_code)] // a measuring allocator, in this benchmark only
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
        HEAP.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn heap() -> usize {
    HEAP.load(std::sync::atomic::Ordering::Relaxed)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Files and directories under `dir` (not counting `dir`).
fn tally(dir: &Path) -> (u64, u64) {
    let (mut files, mut dirs) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let (f, d) = tally(&e.path());
                files += f;
                dirs += d + 1;
            } else {
                files += 1;
            }
        }
    }
    (files, dirs)
}

fn bootstrap_list(s: &str) -> Result<Vec<SocketAddrV4>> {
    Ok(s.split(',')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?)
}

fn hex_decode(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return Err(format!("not 32 bytes of hex: {s}").into());
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A bootstrap node and `nodes - 1` persistent, unfirewalled nodes (like `peerhost demo`'s,
/// with more nodes), each persistent before the address is printed.
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

fn key_pair(community: u64, part: u8) -> KeyPair {
    let mut s = [0x6b; 32];
    s[..8].copy_from_slice(&community.to_le_bytes());
    s[8] = part;
    KeyPair::from_seed(&s)
}

/// Write one replica of `blocks` signed by `kp` into `store`; its key.
fn replica(store: &Store, kp: &KeyPair, blocks: Vec<Vec<u8>>) -> Result<Key> {
    let manifest = Manifest::default_signer(kp.public_key());
    let key = Key(manifest.hash());
    let mut core = store.create_replica(key, Some(&manifest), None)?;
    if blocks.is_empty() {
        return Ok(key);
    }
    let verifier = Verifier::from_manifest(manifest);
    let mut tree = Tree::new();
    let nodes = tree.append(&blocks);
    tree.sign(&verifier, kp)?;
    let mut changes = Changes::default();
    changes.nodes = nodes;
    let mut offset = 0;
    for (index, value) in blocks.into_iter().enumerate() {
        let len = value.len() as u64;
        changes.blocks.push(BlockWrite {
            index: index as u64,
            offset,
            value,
        });
        offset += len;
    }
    changes.head = Some(tree);
    let commit = core.begin_commit(changes)?;
    commit.run();
    core.finish_commit()?;
    Ok(key)
}

fn prepare(dir: &str, communities: u64, posts: u64) -> Result<()> {
    let t0 = Instant::now();
    let store = Store::open_with(dir, StoreOptions::default().durability(Durability::Process))?;
    let mut topics = String::new();
    let mut mirrors = Vec::new();
    for c in 0..communities {
        let kp = key_pair(c, 1);
        let posts_key = replica(
            &store,
            &kp,
            (0..posts)
                .map(|i| {
                    Entry::from(Post {
                        id: peerhost_feed::new_id(&kp.public_key(), i),
                        title: format!("Post {i} of community {c}"),
                        body: format!("A short post, number {i}, in community {c}."),
                        published_us: 1_700_000_000_000_000 + i,
                        ..Default::default()
                    })
                    .encode()
                })
                .collect::<std::result::Result<_, _>>()?,
        )?;
        let comments = replica(&store, &key_pair(c, 2), Vec::new())?;
        let assets = replica(&store, &key_pair(c, 3), Vec::new())?;
        let desc = Entry::from(Descriptor {
            name: format!("c{c}"),
            title: format!("Community {c}"),
            description: "A benchmark community.".into(),
            posts: posts_key.0.to_vec(),
            comments: comments.0.to_vec(),
            assets: assets.0.to_vec(),
            time_us: 1_700_000_000_000_000,
            origin: String::new(),
            // No index log: four logs per community, as measured in BENCHMARKS.md.
            index: Vec::new(),
        })
        .encode()?;
        let key = replica(&store, &key_pair(c, 0), vec![desc])?;
        for k in [key, posts_key, comments, assets] {
            topics.push_str(&hex(&k.discovery_key().0));
            topics.push('\n');
        }
        mirrors.push(key.to_hex());
    }
    let mut state = peerhost_daemon::state::State::default();
    state.mirrors = mirrors;
    state.save(Path::new(dir))?;
    std::fs::write(format!("{dir}.topics"), topics)?;
    println!(
        "{}",
        json!({ "event": "prepared", "communities": communities, "logs": communities * 4,
                "ms": t0.elapsed().as_millis() as u64 })
    );
    Ok(())
}

async fn run(dir: &str, bootstrap: &str, settle: u64, process_start: Instant) -> Result<()> {
    let nodes = bootstrap_list(bootstrap)?
        .into_iter()
        .map(Into::into)
        .collect();
    let kp = KeyPair::generate();
    let logs = std::fs::read_to_string(format!("{dir}.topics"))?
        .lines()
        .count();
    // NET=off: no DHT at all (to tell the swarm's share of the memory from the rest).
    let network = if std::env::var("NET").is_ok_and(|v| v == "off") {
        Network::Off
    } else {
        Network::Dht(DhtOptions::new(nodes).with_host(HOST))
    };
    let opts = Options::new(dir, FileConfig::default())
        .with_network(network)
        .with_announce(true)
        .with_key_pair(kp.clone());
    let t0 = Instant::now();
    let daemon = Daemon::start(opts).await?;
    let started = Instant::now();
    println!(
        "{}",
        json!({ "event": "ready", "ms": process_start.elapsed().as_millis() as u64,
                "start_ms": (started - t0).as_millis() as u64,
                "rss": status_kb("VmRSS:") * 1024, "heap": heap(), "fds": open_fds(),
                "public_key": hex(&kp.public_key()) })
    );
    // The swarm's own count: topics whose last refresh announced (`peerhost status`'s).
    let mut last = 0;
    while daemon.dht_addr().is_some() {
        // The swarm's count alone: the full status reads every log held (40,000 here).
        let announced = daemon.dht_status().await.map_or(0, |d| d.announced);
        if announced >= logs {
            break;
        }
        if announced / 5000 != last / 5000 {
            eprintln!(
                "{{\"event\":\"progress\",\"announced\":{announced},\"ms\":{}}}",
                started.elapsed().as_millis()
            );
        }
        last = announced;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    println!(
        "{}",
        json!({ "event": "announced", "topics": logs,
                "ms": started.elapsed().as_millis() as u64,
                "rss": status_kb("VmRSS:") * 1024, "peak_rss": status_kb("VmHWM:") * 1024 })
    );
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let (files, dirs) = tally(Path::new(dir));
    println!(
        "{}",
        json!({ "event": "idle", "rss": status_kb("VmRSS:") * 1024, "heap": heap(),
                "peak_rss": status_kb("VmHWM:") * 1024, "fds": open_fds(),
                "files": files, "dirs": dirs, "logs": logs,
                "announced": daemon.dht_status().await.map_or(0, |d| d.announced) })
    );
    std::future::pending::<()>().await;
    Ok(())
}

async fn lookup(bootstrap: &str, topics: &str, sample: usize, pubkey: &str) -> Result<()> {
    let want = hex_decode(pubkey)?;
    let all: Vec<[u8; 32]> = std::fs::read_to_string(topics)?
        .lines()
        .map(hex_decode)
        .collect::<Result<_>>()?;
    let step = (all.len() / sample.max(1)).max(1);
    let picked: Vec<[u8; 32]> = all.iter().step_by(step).take(sample).copied().collect();
    let mut config = peerhost_hyperdht::Config::default();
    config.dht.bootstrap = bootstrap_list(bootstrap)?;
    let dht = Dht::bind(config, BindOptions::host(HOST)).await?;
    dht.bootstrapped().await;
    let t0 = Instant::now();
    let mut found = 0;
    for chunk in picked.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for topic in chunk {
            let (dht, topic) = (dht.clone(), *topic);
            set.spawn(async move { dht.lookup(topic).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(replies)) = r {
                if replies
                    .iter()
                    .any(|r| r.peers.iter().any(|p| p.public_key == want))
                {
                    found += 1;
                }
            }
        }
    }
    println!(
        "{}",
        json!({ "event": "lookup", "sampled": picked.len(), "found": found,
                "ms": t0.elapsed().as_millis() as u64 })
    );
    Ok(())
}

/// The store's share: open `dir`, open every log and keep them open; the heap then.
fn store_heap(dir: &str) -> Result<()> {
    let t0 = Instant::now();
    let before = heap();
    let store = Store::open(dir)?;
    let keys = store.keys()?;
    let cores: Vec<_> = keys
        .iter()
        .map(|k| store.open_core(&k.to_hex()))
        .collect::<std::result::Result<_, _>>()?;
    println!(
        "{}",
        json!({ "event": "store", "logs": cores.len(), "heap": heap() - before,
                "rss": status_kb("VmRSS:") * 1024, "ms": t0.elapsed().as_millis() as u64 })
    );
    Ok(())
}

fn arg(args: &[String], i: usize) -> Result<&str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {i}; see the example's doc").into())
}

fn main() -> Result<()> {
    let process_start = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match arg(&args, 0)? {
        "testnet" => rt.block_on(testnet(arg(&args, 1)?.parse()?)),
        "prepare" => prepare(
            arg(&args, 1)?,
            arg(&args, 2)?.parse()?,
            arg(&args, 3)?.parse()?,
        ),
        "run" => rt.block_on(run(
            arg(&args, 1)?,
            arg(&args, 2)?,
            arg(&args, 3)?.parse()?,
            process_start,
        )),
        "lookup" => rt.block_on(lookup(
            arg(&args, 1)?,
            arg(&args, 2)?,
            arg(&args, 3)?.parse()?,
            arg(&args, 4)?,
        )),
        "store" => store_heap(arg(&args, 1)?),
        other => Err(format!("unknown mode {other}").into()),
    }
}
