//! Opening many logs at once, as a mirror of many communities starts: the peerhost side of
//! `scripts/bench-open.sh` (the JS side is `interop-tests/bench/open.js`). Prints one JSON line.
//!
//! ```text
//! open_bench make DIR [--logs N] [--blocks B] [--size BYTES]
//! open_bench open DIR [--node-cache NODES] [--page-cache PAGES]
//! ```
//!
//! `make` writes N replicas (what a mirror holds: no secret key), each of B blocks of BYTES
//! bytes with a signed head, through the store's two-step commit (the replicator's path)
//! without a network: the tree is built and signed in memory. `open` is meant to run in a
//! fresh process: it opens the store, lists the logs, opens every one of them and keeps them
//! all open (as the daemon does), then reads the last block of each; it reports the times, the
//! process's RSS at each step, its open file descriptors, and the store's files and disk use.

use std::path::Path;
use std::time::Instant;

use peerhost_ids::{Key, KeyPair};
use peerhost_log::{Manifest, Tree, Verifier};
use peerhost_store::{BlockWrite, Changes, Core, Durability, Options, Store};

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss() -> u64 {
    status_kb("VmRSS:") * 1024
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Files and directories under `dir` (not counting `dir`), and their allocated bytes.
fn tally(dir: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut files, mut dirs, mut bytes) = (0, 0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0, 0);
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        bytes += m.blocks() * 512;
        if m.is_dir() {
            dirs += 1;
            let (f, d, b) = tally(&e.path());
            files += f;
            dirs += d;
            bytes += b;
        } else {
            files += 1;
        }
    }
    (files, dirs, bytes)
}

fn flag(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
}

fn seed(i: u64) -> [u8; 32] {
    let mut s = [0x5a; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    s
}

fn make(dir: &Path, logs: u64, blocks: u64, size: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open_with(dir, Options::default().durability(Durability::Process))?;
    let t0 = Instant::now();
    for i in 0..logs {
        let kp = KeyPair::from_seed(&seed(i));
        let manifest = Manifest::default_signer(kp.public_key());
        let verifier = Verifier::from_manifest(manifest.clone());
        let values: Vec<Vec<u8>> = (0..blocks)
            .map(|b| {
                let mut v = format!("log {i} block {b} ").into_bytes();
                v.resize(size as usize, b'.');
                v
            })
            .collect();
        let mut tree = Tree::new();
        let nodes = tree.append(&values);
        tree.sign(&verifier, &kp)?;
        let mut core = store.create_replica(Key(manifest.hash()), Some(&manifest), None)?;
        let mut changes = Changes::default();
        changes.nodes = nodes;
        let mut offset = 0;
        for (b, value) in values.into_iter().enumerate() {
            let len = value.len() as u64;
            changes.blocks.push(BlockWrite {
                index: b as u64,
                offset,
                value,
            });
            offset += len;
        }
        changes.head = Some(tree);
        let commit = core.begin_commit(changes)?;
        commit.run();
        core.finish_commit()?;
    }
    let (files, dirs, disk) = tally(dir);
    println!(
        "{{\"event\":\"made\",\"logs\":{logs},\"blocks\":{blocks},\"size\":{size},\"ms\":{},\
         \"files\":{files},\"dirs\":{dirs},\"disk\":{disk}}}",
        t0.elapsed().as_millis()
    );
    Ok(())
}

fn open(dir: &Path, args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let rss_start = rss();
    let t0 = Instant::now();
    let mut options = Options::default().durability(Durability::Process);
    if args.iter().any(|a| a == "--node-cache") {
        options = options.node_cache(flag(args, "--node-cache", 0) as usize);
    }
    if args.iter().any(|a| a == "--page-cache") {
        options = options.page_cache(flag(args, "--page-cache", 0) as usize);
    }
    let store = Store::open_with(dir, options)?;
    let store_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let keys = store.keys()?;
    let keys_ms = t1.elapsed().as_secs_f64() * 1e3;
    let rss_store = rss();
    let t2 = Instant::now();
    let mut cores: Vec<Core> = Vec::with_capacity(keys.len());
    for k in &keys {
        cores.push(store.open_core(&k.to_hex())?);
    }
    let open_ms = t2.elapsed().as_secs_f64() * 1e3;
    let rss_open = rss();
    let fds = open_fds();
    let t3 = Instant::now();
    let mut read = 0u64;
    for c in &mut cores {
        let last = c.length().saturating_sub(1);
        if let Some(v) = c.get(last)? {
            read += v.len() as u64;
        }
    }
    let read_ms = t3.elapsed().as_secs_f64() * 1e3;
    let rss_read = rss();
    let (files, dirs, disk) = tally(dir);
    let n = cores.len();
    println!(
        "{{\"event\":\"opened\",\"impl\":\"peerhost\",\"logs\":{n},\"store_ms\":{store_ms:.1},\
         \"keys_ms\":{keys_ms:.1},\"open_ms\":{open_ms:.1},\"read_ms\":{read_ms:.1},\
         \"read_bytes\":{read},\"rss_start\":{rss_start},\"rss_store\":{rss_store},\
         \"rss_open\":{rss_open},\"rss_read\":{rss_read},\"fds\":{fds},\"files\":{files},\
         \"dirs\":{dirs},\"disk\":{disk},\"core_size\":{}}}",
        size_of::<Core>()
    );
    drop(cores);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: open_bench make DIR [--logs N] [--blocks B] [--size BYTES] | \
                 open DIR [--node-cache NODES] [--page-cache PAGES]";
    let (Some(cmd), Some(dir)) = (args.first(), args.get(1)) else {
        return Err(usage.into());
    };
    let dir = Path::new(dir);
    match cmd.as_str() {
        "make" => make(
            dir,
            flag(&args, "--logs", 40_000),
            flag(&args, "--blocks", 20),
            flag(&args, "--size", 1024),
        ),
        "open" => open(dir, &args),
        _ => Err(usage.into()),
    }
}
