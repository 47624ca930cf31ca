//! `nat_peer`: the peerhost side of the NAT lab (`tests/nat_matrix.rs`), the twin of
//! `netlab/js-node.js`'s `server` and `client` roles. Every role but `relay` is the daemon as
//! users run it (`peerhost serve`, `mirror`, `follow`: one swarm, the node's connection driver),
//! set up through its options. JSON lines on stdout; the first is `{"event":"ready",…}`.
//!
//! ```text
//! nat_peer server BOOTSTRAP SEED BLOCKS RELAY_KEY
//!     a daemon serving a log of BLOCKS blocks under the key pair from SEED, falling back to
//!     the blind relay RELAY_KEY; announces the log's discovery key.
//!     → {"event":"ready","key":…,"publicKey":…} once announced
//! nat_peer relay BOOTSTRAP SEED
//!     a blind relay (`Dht::serve_relay`, what `peerhost relay` runs) on RELAY_HOST:49738,
//!     not firewalled. → {"event":"ready","publicKey":…}
//! nat_peer client BOOTSTRAP SERVER_KEY CORE_KEY BLOCKS RELAY_KEY
//!     a daemon following every block of CORE_KEY (`peerhost follow`): it looks the log's
//!     discovery key up, dials SERVER_KEY (holepunching as needed, through the blind relay
//!     RELAY_KEY when that fails), downloads and checks every block.
//!     → {"event":"done","connectMs":…,"totalMs":…,"path":"direct"|"relayed"|"lan","blocks":N}
//!
//! With no relay configured anywhere:
//! nat_peer daemon-relay BOOTSTRAP
//!     a daemon holding no logs that offers a blind relay (`offer_relay`) and announces it.
//!     → {"event":"ready","relay":…}
//! nat_peer daemon-serve BOOTSTRAP BLOCKS
//!     a daemon serving one log of BLOCKS blocks. → {"event":"ready","key":…}
//! nat_peer daemon-mirror BOOTSTRAP KEY BLOCKS
//!     a daemon mirroring KEY until it holds BLOCKS blocks, finding its peers and any relay
//!     on the DHT. → {"event":"done","ms":…,"blocks":N,"relays":R,"peers":[address…]}
//! ```
//!
//! BOOTSTRAP is `HOST:PORT[,HOST:PORT…]`. Block `i` is the same text `js-node.js` writes.
//! Relayed connections are told apart by their remote address being the relay host
//! (`RELAY_HOST`, default 198.51.100.20).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use peerhost_daemon::{
    Daemon, DhtOptions, FileConfig, Followed, Network, Options as DaemonOptions, Range,
};
use peerhost_hyperdht::Config;
use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_ids::{Key, KeyPair};
use peerhost_store::{CreateOptions, Durability, Options, Store};
use serde_json::{Value, json};

/// How long a run may take at most (a hang guard).
const GUARD: Duration = Duration::from_secs(150);

fn out(v: Value) {
    println!("{v}");
}

fn fail(msg: impl std::fmt::Display) -> ! {
    out(json!({"event": "failed", "error": msg.to_string()}));
    std::process::exit(1)
}

fn block(i: u64) -> Vec<u8> {
    let head = format!("peerhost-netlab-block-{i:06}:");
    let mut b = head.into_bytes();
    b.resize(1024, b'x');
    b
}

fn bootstrap(s: &str) -> Vec<SocketAddrV4> {
    s.split(',')
        .map(|a| {
            a.parse()
                .unwrap_or_else(|e| fail(format!("bad bootstrap {a}: {e}")))
        })
        .collect()
}

fn key32(s: &str) -> [u8; 32] {
    let v = hex::decode(s).unwrap_or_else(|e| fail(format!("bad hex {s}: {e}")));
    v.try_into().unwrap_or_else(|_| fail("expected 32 bytes"))
}

fn relay_host() -> Ipv4Addr {
    std::env::var("RELAY_HOST")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(Ipv4Addr::new(198, 51, 100, 20))
}

/// How a connection to `address` (a status label: `dht:IP:PORT`) went: through the relay
/// host, to a LAN address, or directly.
fn path_of(address: &str) -> &'static str {
    let ip = address
        .trim_start_matches("dht:")
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip());
    match ip {
        Ok(std::net::IpAddr::V4(ip)) if ip == relay_host() => "relayed",
        Ok(std::net::IpAddr::V4(ip)) if ip.is_private() => "lan",
        _ => "direct",
    }
}

/// Our LAN address: the source address the kernel picks towards the bootstrap node (a
/// connected UDP socket sends nothing). Offered to peers for the same-LAN shortcut.
fn lan_address(towards: SocketAddrV4) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(towards).ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// A store in a temporary directory with one log of `blocks` blocks, closed again (the
/// daemon opens it); the directory and the log's key.
fn store_with_log(blocks: u64) -> (tempfile::TempDir, Key) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let store = Store::open_with(
        dir.path(),
        Options::default().durability(Durability::Process),
    )
    .unwrap_or_else(|e| fail(format!("store: {e}")));
    let mut core = store
        .create("netlab", CreateOptions::default())
        .unwrap_or_else(|e| fail(format!("create: {e}")));
    let all: Vec<Vec<u8>> = (0..blocks).map(block).collect();
    core.append(&all)
        .unwrap_or_else(|e| fail(format!("append: {e}")));
    (dir, core.key())
}

/// The daemon's options as the lab peers use them.
#[derive(Default)]
struct Setup {
    key_pair: Option<KeyPair>,
    relays: Vec<[u8; 32]>,
    offer_relay: bool,
}

async fn daemon(dir: &Path, boot: &str, setup: Setup) -> Daemon {
    let nodes = bootstrap(boot);
    let lan = nodes.first().and_then(|b| lan_address(*b));
    let dht = DhtOptions::new(nodes.into_iter().map(Into::into).collect())
        .with_local_addresses(lan.into_iter().collect())
        .with_relays(setup.relays)
        .with_offer_relay(setup.offer_relay);
    let mut opts = DaemonOptions::new(dir, FileConfig::default())
        .with_network(Network::Dht(dht))
        .with_write_files(false);
    if let Some(kp) = setup.key_pair {
        opts = opts.with_key_pair(kp);
    }
    Daemon::start(opts)
        .await
        .unwrap_or_else(|e| fail(format!("daemon: {e}")))
}

/// Wait until the daemon announced a topic.
async fn announced(d: &Daemon) {
    let deadline = Instant::now() + GUARD;
    while d.status(true).await.dht.is_none_or(|s| s.announced == 0) {
        if Instant::now() > deadline {
            fail("never announced");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn relay(boot: &str, seed: &str) {
    let mut config = Config::default();
    config.dht.bootstrap = bootstrap(boot);
    // The relay host has a public address: say so (as js-node.js's relay does).
    config.dht.firewalled = false;
    let dht = Dht::bind(config, BindOptions::host(relay_host()).with_port(49738))
        .await
        .unwrap_or_else(|e| fail(format!("bind: {e}")));
    dht.bootstrapped().await;
    let service = dht
        .serve_relay(&KeyPair::from_seed(&key32(seed)))
        .await
        .unwrap_or_else(|e| fail(format!("relay: {e}")));
    out(json!({"event": "ready", "publicKey": hex::encode(service.public_key())}));
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = service.stats();
        let r = service.relayed();
        out(
            json!({"event": "stats", "matched": s.matched, "active": s.active,
                   "packets": r.packets, "bytes": r.bytes}),
        );
    }
}

async fn server(boot: &str, seed: &str, blocks: u64, relay_key: &str) {
    let (dir, key) = store_with_log(blocks);
    let key_pair = KeyPair::from_seed(&key32(seed));
    let setup = Setup {
        key_pair: Some(key_pair.clone()),
        relays: vec![key32(relay_key)],
        ..Setup::default()
    };
    let d = daemon(dir.path(), boot, setup).await;
    announced(&d).await;
    out(json!({
        "event": "ready",
        "key": key.to_hex(),
        "publicKey": hex::encode(key_pair.public_key()),
    }));
    std::future::pending::<()>().await;
}

async fn client(boot: &str, server_key: &str, core_key: &str, blocks: u64, relay_key: &str) {
    let started = Instant::now();
    let server_key = key32(server_key);
    let key = Key::parse(core_key).unwrap_or_else(|e| fail(format!("core key: {e}")));
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let setup = Setup {
        relays: vec![key32(relay_key)],
        ..Setup::default()
    };
    let d = daemon(dir.path(), boot, setup).await;
    // The time to the connection to the server, and its path, as `follow` runs.
    let node = d.node().clone();
    let connected = tokio::spawn(async move {
        loop {
            let peer = node
                .peers()
                .into_iter()
                .find(|p| p.remote_public_key == server_key);
            if let Some(p) = peer {
                return (started.elapsed().as_millis(), p.label);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let followed = d
        .follow(key, Range::default(), GUARD)
        .await
        .unwrap_or_else(|e| fail(format!("follow: {e}")));
    let Followed::Log { length, .. } = followed else {
        fail("followed as a community")
    };
    let (connect_ms, address) = connected.await.unwrap_or_else(|e| fail(e));
    if length != blocks || d.held(&key) != blocks {
        fail(format!("held {} of {blocks} blocks", d.held(&key)));
    }
    let dkey = key.discovery_key();
    let checked = d.node().with(|r| {
        let core = r.core_mut(&dkey)?;
        for i in 0..blocks {
            if core.get(i).ok()?? != block(i) {
                return None;
            }
        }
        core.verify().ok()
    });
    if checked.is_none() {
        fail("a block differs or the log does not verify");
    }
    let at_end = d
        .node()
        .peers()
        .into_iter()
        .find(|p| p.remote_public_key == server_key)
        .map_or("gone", |p| path_of(&p.label));
    out(json!({
        "event": "done",
        "connectMs": connect_ms,
        "totalMs": started.elapsed().as_millis(),
        "path": path_of(&address),
        "pathAtEnd": at_end,
        "blocks": blocks,
    }));
    std::process::exit(0);
}

async fn daemon_relay(boot: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let setup = Setup {
        offer_relay: true,
        ..Setup::default()
    };
    let d = daemon(dir.path(), boot, setup).await;
    let deadline = Instant::now() + GUARD;
    let relay = loop {
        if let Some(k) = d.status(true).await.dht.and_then(|s| s.offered_relay) {
            break k;
        }
        if Instant::now() > deadline {
            fail("the relay never started");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    out(json!({"event": "ready", "relay": relay}));
    std::future::pending::<()>().await;
}

async fn daemon_serve(boot: &str, blocks: u64) {
    let (dir, key) = store_with_log(blocks);
    let _d = daemon(dir.path(), boot, Setup::default()).await;
    out(json!({"event": "ready", "key": hex::encode(key.0)}));
    std::future::pending::<()>().await;
}

async fn daemon_mirror(boot: &str, key: &str, blocks: u64) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let started = Instant::now();
    let d = daemon(dir.path(), boot, Setup::default()).await;
    let key = Key(key32(key));
    d.mirror(key, false).await.unwrap_or_else(|e| fail(e));
    while d.held(&key) < blocks {
        if started.elapsed() > GUARD {
            fail(format!("held {} of {blocks} blocks", d.held(&key)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = d.status(true).await;
    out(json!({
        "event": "done",
        "ms": started.elapsed().as_millis() as u64,
        "blocks": d.held(&key),
        "relays": st.dht.map_or(0, |s| s.relays),
        "peers": st.peers.iter().map(|p| p.address.clone()).collect::<Vec<_>>(),
    }));
    std::process::exit(0);
}
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e));
    let a = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| fail("missing argument"))
    };
    match args.first().map(String::as_str) {
        Some("server") => rt.block_on(server(a(1), a(2), a(3).parse().unwrap_or(64), a(4))),
        Some("relay") => rt.block_on(relay(a(1), a(2))),
        Some("client") => rt.block_on(client(a(1), a(2), a(3), a(4).parse().unwrap_or(64), a(5))),
        Some("daemon-relay") => rt.block_on(daemon_relay(a(1))),
        Some("daemon-serve") => rt.block_on(daemon_serve(a(1), a(2).parse().unwrap_or(64))),
        Some("daemon-mirror") => rt.block_on(daemon_mirror(a(1), a(2), a(3).parse().unwrap_or(64))),
        _ => {
            eprintln!(
                "usage: nat_peer server BOOTSTRAP SEED BLOCKS RELAY_KEY | client BOOTSTRAP SERVER_KEY CORE_KEY BLOCKS RELAY_KEY"
            );
            std::process::exit(2);
        }
    }
}
