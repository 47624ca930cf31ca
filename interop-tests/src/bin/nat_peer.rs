//! `nat_peer`: the peerhost side of the NAT lab (`tests/nat_matrix.rs`), the twin of
//! `netlab/js-node.js`'s `server` and `client` roles. JSON lines on stdout; the first is
//! `{"event":"ready",…}`.
//!
//! ```text
//! nat_peer server BOOTSTRAP SEED BLOCKS RELAY_KEY
//!     writes a log of BLOCKS blocks, listens on the key pair from SEED, announces the log's
//!     discovery key, replicates with whoever connects.
//!     → {"event":"ready","key":…,"publicKey":…}; then {"event":"connection",…} per connection
//! nat_peer relay BOOTSTRAP SEED
//!     a blind relay (`Dht::serve_relay`) on RELAY_HOST:49738, not firewalled.
//!     → {"event":"ready","publicKey":…}
//! nat_peer client BOOTSTRAP SERVER_KEY CORE_KEY BLOCKS RELAY_KEY
//!     looks the log's discovery key up, connects to SERVER_KEY (holepunching as needed,
//!     through the blind relay RELAY_KEY when that fails), downloads and checks every block.
//!     → {"event":"done","connectMs":…,"totalMs":…,"path":"direct"|"relayed","blocks":N}
//!
//! The daemon as users run it (`peerhost serve`, `mirror`), with no relay configured:
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
use std::time::{Duration, Instant};

use peerhost_hyperdht::driver::{BindOptions, Connection, Dht};
use peerhost_hyperdht::{AnnounceOptions, Config, ConnectOptions};
use peerhost_ids::{Key, KeyPair};
use peerhost_node::Node;
use peerhost_store::{CreateOptions, Durability, Options, Store};
use serde_json::{Value, json};

/// How long the client waits for the whole run (a hang guard).
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

fn path_of(conn: &Connection) -> &'static str {
    match conn.remote_address().ip() {
        std::net::IpAddr::V4(ip) if ip == relay_host() => "relayed",
        std::net::IpAddr::V4(ip) if ip.is_private() => "lan",
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

async fn dht(boot: &str, relay: Option<[u8; 32]>) -> Dht {
    let mut config = Config::default();
    config.dht.bootstrap = bootstrap(boot);
    // The fallback relay when holepunching fails (hyperswarm's relayThrough list).
    config.relays = relay.into_iter().collect();
    config.local_addresses = config
        .dht
        .bootstrap
        .first()
        .and_then(|b| lan_address(*b))
        .into_iter()
        .collect();
    let dht = Dht::bind(config, BindOptions::default())
        .await
        .unwrap_or_else(|e| fail(format!("bind: {e}")));
    dht.bootstrapped().await;
    dht
}

fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let store = Store::open_with(
        dir.path(),
        Options::default().durability(Durability::Process),
    )
    .unwrap_or_else(|e| fail(format!("store: {e}")));
    (store, dir)
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
    let (store, _dir) = store();
    let mut core = store
        .create("netlab", CreateOptions::default())
        .unwrap_or_else(|e| fail(format!("create: {e}")));
    let batch: Vec<Vec<u8>> = (0..blocks).map(block).collect();
    core.append(&batch)
        .unwrap_or_else(|e| fail(format!("append: {e}")));
    let key = core.key();
    let node = Node::new(KeyPair::generate(), peerhost_node::Config::default());
    let dkey = node.with(|r| r.add_core(core, false, Instant::now()));

    let dht = dht(boot, Some(key32(relay_key))).await;
    let key_pair = KeyPair::from_seed(&key32(seed));
    let mut listener = dht
        .listen(&key_pair)
        .await
        .unwrap_or_else(|e| fail(format!("listen: {e}")));
    let relays = listener.relay_addresses().await;
    dht.announce(dkey.0, &key_pair, relays, AnnounceOptions::default())
        .await
        .unwrap_or_else(|e| fail(format!("announce: {e}")));
    let info = dht.info().await;
    out(json!({
        "event": "ready",
        "key": key.to_hex(),
        "publicKey": hex::encode(key_pair.public_key()),
        "firewalled": info.as_ref().map(|i| i.firewalled),
    }));
    while let Some(conn) = listener.accept().await {
        out(json!({
            "event": "connection",
            "path": path_of(&conn),
            "remote": conn.remote_address().to_string(),
        }));
        let node = node.clone();
        tokio::spawn(async move {
            let _ = node.run_dht_connection(conn, "client".into()).await;
        });
    }
}

async fn client(boot: &str, server_key: &str, core_key: &str, blocks: u64, relay_key: &str) {
    let started = Instant::now();
    let server_key = key32(server_key);

    let key = Key::parse(core_key).unwrap_or_else(|e| fail(format!("core key: {e}")));
    let (store, _dir) = store();
    let core = store
        .create_replica(key, None, None)
        .unwrap_or_else(|e| fail(format!("replica: {e}")));
    let node = Node::new(KeyPair::generate(), peerhost_node::Config::default());
    let dkey = node.with(|r| r.add_core(core, true, Instant::now()));

    let dht = dht(boot, Some(key32(relay_key))).await;
    // As a hyperswarm client does: find the topic's peers, then connect by key.
    let found = dht
        .lookup(dkey.0)
        .await
        .unwrap_or_else(|e| fail(format!("lookup: {e}")));
    let relay_addresses: Vec<SocketAddrV4> = found
        .iter()
        .flat_map(|r| r.peers.iter())
        .filter(|p| p.public_key == server_key)
        .flat_map(|p| p.relay_addresses.iter().copied())
        .collect();
    let mut opts = ConnectOptions::default();
    opts.relay_addresses = relay_addresses;
    let key_pair = KeyPair::generate();
    let mut errors = Vec::new();
    let conn = loop {
        match dht.connect_with(&key_pair, server_key, opts.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                errors.push(e.code().to_string());
                if errors.len() >= 3 {
                    out(json!({"event": "failed", "error": e.to_string(), "errors": errors}));
                    std::process::exit(1);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let connect_ms = started.elapsed().as_millis();
    let path = path_of(&conn);
    let n2 = node.clone();
    tokio::spawn(async move {
        let _ = n2.run_dht_connection(conn, "server".into()).await;
    });
    if let Err(e) = node.with(|r| r.download(&dkey, 0, None, Instant::now())) {
        fail(format!("download: {e}"));
    }
    loop {
        let have = node.with(|r| {
            let core = r.core_mut(&dkey)?;
            if core.length() < blocks {
                return Some(false);
            }
            Some((0..blocks).all(|i| core.has(i).unwrap_or(false)))
        });
        if have == Some(true) {
            break;
        }
        if started.elapsed() > GUARD {
            fail("download timed out");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let checked = node.with(|r| {
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
    out(json!({
        "event": "done",
        "connectMs": connect_ms,
        "totalMs": started.elapsed().as_millis(),
        "path": path,
        "pathAtEnd": path,
        "blocks": blocks,
        "errors": errors,
    }));
    std::process::exit(0);
}

async fn daemon(
    dir: &std::path::Path,
    boot: &str,
    offer_relay: bool,
) -> peerhost_node::daemon::Daemon {
    use peerhost_node::daemon::{
        Daemon, DhtOptions, FileConfig, Network, Options as DaemonOptions,
    };
    let dht = DhtOptions::new(bootstrap(boot)).with_offer_relay(offer_relay);
    Daemon::start(
        DaemonOptions::new(dir, FileConfig::default())
            .with_network(Network::Dht(dht))
            .with_write_files(false),
    )
    .await
    .unwrap_or_else(|e| fail(format!("daemon: {e}")))
}

async fn daemon_relay(boot: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let d = daemon(dir.path(), boot, true).await;
    let deadline = Instant::now() + GUARD;
    let relay = loop {
        if let Some(k) = d.status(true).dht.and_then(|s| s.offered_relay) {
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
    let (store, dir) = store();
    let mut core = store
        .create("log", CreateOptions::default())
        .unwrap_or_else(|e| fail(e));
    let all: Vec<Vec<u8>> = (0..blocks).map(block).collect();
    core.append(&all).unwrap_or_else(|e| fail(e));
    let key = core.key();
    drop(core);
    drop(store);
    let _d = daemon(dir.path(), boot, false).await;
    out(json!({"event": "ready", "key": hex::encode(key.0)}));
    std::future::pending::<()>().await;
}

async fn daemon_mirror(boot: &str, key: &str, blocks: u64) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let started = Instant::now();
    let d = daemon(dir.path(), boot, false).await;
    let key = Key(key32(key));
    d.mirror(key, false).unwrap_or_else(|e| fail(e));
    while d.held(&key) < blocks {
        if started.elapsed() > GUARD {
            fail(format!("held {} of {blocks} blocks", d.held(&key)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = d.status(true);
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
