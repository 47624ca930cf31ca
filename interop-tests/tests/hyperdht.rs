//! Live interop of `peerhost-hyperdht` with hyperdht 6.34.0 on a loopback testnet mixing JS
//! and Rust nodes (real UDP on 127.0.0.1; the flooder uses 127.0.0.2).
//!
//! The JS side is `hyperdht/peer.js` (see its header for its commands). Scenarios:
//! - storage on JS nodes: immutable and mutable put/get and announce/lookup, Rust → JS and
//!   JS → Rust;
//! - storage on Rust nodes: JS clients put, get, announce, unannounce and look up through a
//!   testnet whose only storage nodes are peerhost nodes;
//! - Rust clients connect to JS servers whose node is `firewalled: false` and whose node is
//!   left at the default, from a reachable and from a firewalled Rust node, and exchange
//!   messages over the secret-stream;
//! - JS clients connect to Rust servers, both node kinds;
//! - a flood of malformed and unknown-command datagrams while JS keeps getting answers.
//!
//! Run: `cargo test -p peerhost-interop-tests --test hyperdht` (needs Node 20 and `npm ci` in
//! `interop-tests/`). Timeouts are hang guards only.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_hyperdht::{AnnounceOptions, Config, crypto, dht_rpc};
use peerhost_ids::KeyPair;
use peerhost_interop_tests::NodePeer;
use serde_json::{Value, json};

const GUARD: Duration = Duration::from_secs(90);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn guard<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f).await.expect("hang guard")
}

/// `hyperdht/peer.js` with request ids.
struct Js {
    peer: NodePeer,
    next: u64,
}

impl Js {
    fn spawn() -> Self {
        Self {
            peer: NodePeer::spawn("hyperdht/peer.js", &[]),
            next: 0,
        }
    }

    fn try_call(&mut self, mut cmd: Value) -> Value {
        self.next += 1;
        let id = self.next;
        cmd["id"] = json!(id);
        self.peer.send(cmd);
        tokio::task::block_in_place(|| {
            self.peer.wait_for(GUARD, |v| {
                v["id"] == json!(id) && (v["event"] == "result" || v["event"] == "error")
            })
        })
    }

    fn call(&mut self, cmd: Value) -> Value {
        let v = self.try_call(cmd.clone());
        assert_eq!(v["event"], "result", "JS failed {cmd}: {v}");
        v
    }
}

impl Drop for Js {
    fn drop(&mut self) {
        self.peer.send(json!({"cmd": "exit"}));
    }
}

fn addrs(v: &Value) -> Vec<SocketAddrV4> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            SocketAddrV4::new(
                a["host"].as_str().unwrap().parse().unwrap(),
                u16::try_from(a["port"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect()
}

fn js_addr(a: SocketAddrV4) -> Value {
    json!({"host": a.ip().to_string(), "port": a.port()})
}

fn seed(b: u8) -> String {
    hex::encode([b; 32])
}

fn kp(b: u8) -> KeyPair {
    KeyPair::from_seed(&[b; 32])
}

/// A Rust node bootstrapped into `bootstrap`.
async fn rust_node(bootstrap: &[SocketAddrV4], firewalled: bool, persistent: bool) -> Dht {
    let mut config = Config::default();
    config.dht.bootstrap = bootstrap.to_vec();
    config.dht.firewalled = firewalled;
    config.dht.ephemeral = Some(!persistent);
    // Firewalled nodes stay firewalled: on loopback the quick firewall check would prove them
    // reachable within the bootstrap, and these tests want both kinds.
    config.dht.quick_firewall = !firewalled;
    let dht = Dht::bind(config, BindOptions::host(LO)).await.unwrap();
    guard(dht.bootstrapped()).await;
    if persistent {
        wait_persistent(&dht).await;
    }
    if !firewalled {
        // Reachable once the NAT sampler agrees on our address (a few replies in).
        guard(async {
            while dht.info().await.unwrap().remote_address.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    dht
}

async fn wait_persistent(dht: &Dht) {
    guard(async {
        while !dht.info().await.unwrap().persistent {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// A testnet of peerhost nodes only: a bootstrapper and `size - 1` persistent nodes.
async fn rust_testnet(size: usize) -> (Vec<SocketAddrV4>, Vec<Dht>) {
    let mut config = Config::default();
    config.dht = dht_rpc::Config::bootstrapper(SocketAddrV4::new(LO, 0));
    let first = Dht::bind(config, BindOptions::host(LO)).await.unwrap();
    let bootstrap = vec![SocketAddrV4::new(LO, first.server_addr().port())];
    guard(first.bootstrapped()).await;
    let mut nodes = vec![first];
    for _ in 1..size {
        nodes.push(rust_node(&bootstrap, false, true).await);
    }
    (bootstrap, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_on_js_nodes_both_ways() {
    let mut js = Js::spawn();
    let net = js.call(json!({"cmd": "testnet", "size": 6}));
    let bootstrap = addrs(&net["bootstrap"]);
    js.call(json!({"cmd": "node", "name": "c", "bootstrap": net["bootstrap"]}));
    let rust = rust_node(&bootstrap, true, false).await;

    // Immutable: Rust puts, JS gets; JS puts, Rust gets.
    let put = guard(rust.immutable_put(b"from rust".to_vec()))
        .await
        .unwrap();
    assert!(put.stored > 0);
    let got = js.call(json!({"cmd": "immutableGet", "node": "c", "hash": hex::encode(put.hash)}));
    assert_eq!(got["value"], hex::encode(b"from rust"));
    let put =
        js.call(json!({"cmd": "immutablePut", "node": "c", "value": hex::encode(b"from js")}));
    let hash: [u8; 32] = hex::decode(put["hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(hash, crypto::hash(b"from js"));
    let got = guard(rust.immutable_get(hash)).await.unwrap().unwrap();
    assert_eq!(got.value, b"from js");

    // Mutable: Rust signs, JS verifies; JS signs, Rust verifies.
    guard(rust.mutable_put(&kp(5), b"rust v1".to_vec(), 1))
        .await
        .unwrap();
    let got = js.call(
        json!({"cmd": "mutableGet", "node": "c", "publicKey": hex::encode(kp(5).public_key())}),
    );
    assert_eq!(
        (got["value"].as_str(), got["seq"].as_u64()),
        (Some(hex::encode(b"rust v1").as_str()), Some(1))
    );
    js.call(json!({"cmd": "mutablePut", "node": "c", "seed": seed(6), "value": hex::encode(b"js v3"), "seq": 3}));
    let got = guard(rust.mutable_get(kp(6).public_key(), 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.seq, got.value.as_slice()), (3, &b"js v3"[..]));

    // Announce / lookup both ways, with relay addresses.
    let relay = SocketAddrV4::new(LO, 1111);
    let topic = crypto::hash(b"rust topic");
    guard(rust.announce(topic, &kp(7), vec![relay], AnnounceOptions::default()))
        .await
        .unwrap();
    let found = js.call(json!({"cmd": "lookup", "node": "c", "topic": hex::encode(topic)}));
    let peers = found["peers"].as_array().unwrap();
    assert!(
        peers
            .iter()
            .any(|p| p["publicKey"] == hex::encode(kp(7).public_key())
                && addrs(&p["relayAddresses"]) == vec![relay])
    );
    let topic = crypto::hash(b"js topic");
    js.call(
        json!({"cmd": "announce", "node": "c", "topic": hex::encode(topic), "seed": seed(8),
        "relayAddresses": [js_addr(relay)]}),
    );
    let found = guard(rust.lookup(topic)).await.unwrap();
    assert!(
        found
            .iter()
            .flat_map(|r| &r.peers)
            .any(|p| p.public_key == kp(8).public_key() && p.relay_addresses == vec![relay])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_on_rust_nodes_serves_js() {
    let (bootstrap, nodes) = rust_testnet(5).await;
    let mut js = Js::spawn();
    let b: Vec<Value> = bootstrap.iter().map(|a| js_addr(*a)).collect();
    js.call(json!({"cmd": "node", "name": "a", "bootstrap": b}));
    js.call(json!({"cmd": "node", "name": "b", "bootstrap": b}));
    let rust = rust_node(&bootstrap, true, false).await;
    let rust_addrs: Vec<u16> = nodes.iter().map(|n| n.server_addr().port()).collect();

    // JS → JS through Rust storage nodes.
    let put =
        js.call(json!({"cmd": "immutablePut", "node": "a", "value": hex::encode(b"kept by rust")}));
    let got = js.call(json!({"cmd": "immutableGet", "node": "b", "hash": put["hash"]}));
    assert_eq!(got["value"], hex::encode(b"kept by rust"));
    assert!(rust_addrs.contains(&u16::try_from(got["from"]["port"].as_u64().unwrap()).unwrap()));
    let hash: [u8; 32] = hex::decode(put["hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        guard(rust.immutable_get(hash))
            .await
            .unwrap()
            .unwrap()
            .value,
        b"kept by rust"
    );

    js.call(json!({"cmd": "mutablePut", "node": "a", "seed": seed(9), "value": hex::encode(b"m1"), "seq": 1}));
    js.call(json!({"cmd": "mutablePut", "node": "a", "seed": seed(9), "value": hex::encode(b"m2"), "seq": 2}));
    let got = js.call(
        json!({"cmd": "mutableGet", "node": "b", "publicKey": hex::encode(kp(9).public_key())}),
    );
    assert_eq!(
        (got["value"].as_str(), got["seq"].as_u64()),
        (Some(hex::encode(b"m2").as_str()), Some(2))
    );
    // A Rust put, a JS get; then a lower seq from Rust is refused by the Rust nodes.
    guard(rust.mutable_put(&kp(10), b"r5".to_vec(), 5))
        .await
        .unwrap();
    let got = js.call(
        json!({"cmd": "mutableGet", "node": "b", "publicKey": hex::encode(kp(10).public_key())}),
    );
    assert_eq!(got["seq"], 5);
    assert_eq!(
        guard(rust.mutable_put(&kp(10), b"r4".to_vec(), 4)).await,
        Err(peerhost_hyperdht::Error::SeqTooLow)
    );

    // Announce, lookup, unannounce: Rust nodes check the JS signatures.
    let topic = crypto::hash(b"topic on rust nodes");
    js.call(json!({"cmd": "announce", "node": "a", "topic": hex::encode(topic), "seed": seed(11)}));
    let found = js.call(json!({"cmd": "lookup", "node": "b", "topic": hex::encode(topic)}));
    assert!(
        found["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["publicKey"] == hex::encode(kp(11).public_key()))
    );
    guard(rust.announce(topic, &kp(12), vec![], AnnounceOptions::default()))
        .await
        .unwrap();
    let found = js.call(json!({"cmd": "lookup", "node": "b", "topic": hex::encode(topic)}));
    let keys: Vec<&str> = found["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["publicKey"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&hex::encode(kp(12).public_key()).as_str()));
    js.call(
        json!({"cmd": "unannounce", "node": "a", "topic": hex::encode(topic), "seed": seed(11)}),
    );
    let found = js.call(json!({"cmd": "lookup", "node": "b", "topic": hex::encode(topic)}));
    assert!(
        found["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["publicKey"] != hex::encode(kp(11).public_key()))
    );

    let mut stored = 0;
    for n in &nodes {
        stored += guard(n.info()).await.unwrap().stored;
    }
    assert!(stored > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_connect_to_js_servers() {
    let mut js = Js::spawn();
    let net = js.call(json!({"cmd": "testnet", "size": 5}));
    let bootstrap = addrs(&net["bootstrap"]);
    // One server node explicitly unfirewalled, one left at the default.
    let open = js.call(json!({"cmd": "node", "name": "open", "bootstrap": net["bootstrap"], "opts": {"firewalled": false}}));
    let default = js.call(json!({"cmd": "node", "name": "default", "bootstrap": net["bootstrap"]}));
    assert_eq!(
        (
            open["firewalled"].as_bool(),
            default["firewalled"].as_bool()
        ),
        (Some(false), Some(true))
    );
    let servers = [("open", 0x21u8), ("default", 0x22u8)];
    for (node, s) in servers {
        js.call(json!({"cmd": "listen", "node": node, "seed": seed(s)}));
    }
    // A reachable Rust client and one left firewalled (same host: the LAN shortcut).
    let open_client = rust_node(&bootstrap, false, false).await;
    let fw_client = rust_node(&bootstrap, true, false).await;
    // The open client tells servers it is reachable (they connect to it); the firewalled one
    // is not, so against the default JS server only the same-LAN shortcut works.
    assert!(
        guard(open_client.info())
            .await
            .unwrap()
            .remote_address
            .is_some()
    );
    assert!(
        guard(fw_client.info())
            .await
            .unwrap()
            .remote_address
            .is_none()
    );
    for (name, client) in [
        ("open client", &open_client),
        ("firewalled client", &fw_client),
    ] {
        for (node, s) in servers {
            let me = KeyPair::generate();
            let mut conn = guard(client.connect(&me, kp(s).public_key()))
                .await
                .unwrap_or_else(|e| panic!("{name} → JS {node} server: {e}"));
            assert_eq!(conn.remote_public_key(), kp(s).public_key());
            for msg in [
                b"hello js".to_vec(),
                (0..60_000u32).map(|i| i as u8).collect(),
            ] {
                conn.send(msg.clone()).await.unwrap();
                let mut want = msg;
                want.reverse();
                assert_eq!(guard(conn.recv()).await.unwrap(), want, "{name} → {node}");
            }
            // The JS server saw our key.
            let key = hex::encode(me.public_key());
            tokio::task::block_in_place(|| {
                js.peer.wait_for(GUARD, |v| {
                    v["event"] == "connection" && v["remotePublicKey"] == key
                })
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_clients_connect_to_rust_servers() {
    let mut js = Js::spawn();
    let net = js.call(json!({"cmd": "testnet", "size": 5}));
    let bootstrap = addrs(&net["bootstrap"]);
    js.call(json!({"cmd": "node", "name": "jc", "bootstrap": net["bootstrap"]}));
    js.call(json!({"cmd": "node", "name": "jo", "bootstrap": net["bootstrap"], "opts": {"firewalled": false}}));

    let mut servers = Vec::new();
    for (firewalled, s) in [(false, 0x31u8), (true, 0x32u8)] {
        let node = rust_node(&bootstrap, firewalled, false).await;
        let info = guard(node.info()).await.unwrap();
        assert_eq!(info.remote_address.is_none(), firewalled);
        let mut server = guard(node.listen(&kp(s))).await.unwrap();
        tokio::spawn(async move {
            while let Some(mut conn) = server.accept().await {
                tokio::spawn(async move {
                    while let Some(mut m) = conn.recv().await {
                        m.reverse();
                        if conn.send(m).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        servers.push((node, s));
    }
    for client in ["jc", "jo"] {
        for (_, s) in &servers {
            let messages = [hex::encode(b"hello rust"), hex::encode(vec![7u8; 50_000])];
            let r = js.call(json!({"cmd": "connect", "node": client, "seed": seed(0x40),
                "publicKey": hex::encode(kp(*s).public_key()), "messages": messages}));
            assert_eq!(r["remotePublicKey"], hex::encode(kp(*s).public_key()));
            let replies: Vec<Vec<u8>> = r["replies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
                .collect();
            // Secret-stream may coalesce or split writes; compare the byte streams.
            let got: Vec<u8> = replies.concat();
            let mut want = Vec::new();
            for m in &messages {
                let mut b = hex::decode(m).unwrap();
                b.reverse();
                want.extend(b);
            }
            assert_eq!(got.len(), want.len(), "{client} → rust server {s:#x}");
            assert_eq!(got, want);
        }
    }
    drop(servers);
}

/// Datagrams no node should act on: garbage, truncated frames, unknown commands, and
/// HyperDHT commands with values that do not decode.
fn hostile_datagrams(to: SocketAddrV4) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let to_bytes = dht_rpc::encode_addr(to);
    let request = |flags: u8, command: u8, extra: &[u8]| {
        let mut d = vec![0x03, flags, 0x34, 0x12];
        d.extend_from_slice(&to_bytes);
        d.push(command);
        d.extend_from_slice(extra);
        d
    };
    let target = [0xab; 32];
    let with_target_value = |command: u8, value: &[u8]| {
        let mut extra = target.to_vec();
        extra.push(u8::try_from(value.len()).unwrap());
        extra.extend_from_slice(value);
        request(8 | 16, command, &extra)
    };
    for command in 0..=12u8 {
        out.push(with_target_value(command, &[0xff; 40]));
        out.push(with_target_value(command, &[0x05, 0x01]));
        out.push(with_target_value(command, &[]));
    }
    out.push(request(0, 200, &[]));
    out.push(request(4, 99, &[])); // unknown internal command
    out.push(vec![0x03]);
    out.push(vec![0x13, 0x00]);
    out.push(vec![0xff, 0x01, 0, 0, 1, 2, 3, 4]);
    out.push(vec![0x00]);
    out.push((0..=255u8).collect());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_malformed_and_unknown_commands_leaves_node_up() {
    let mut js = Js::spawn();
    let net = js.call(json!({"cmd": "testnet", "size": 4}));
    let bootstrap = addrs(&net["bootstrap"]);
    let rust = rust_node(&bootstrap, false, true).await;
    let target = SocketAddrV4::new(LO, rust.server_addr().port());
    js.call(json!({"cmd": "node", "name": "c", "bootstrap": net["bootstrap"]}));

    // An unknown command gets an error reply (UNKNOWN_COMMAND = 1), not silence.
    let r = js.call(
        json!({"cmd": "request", "node": "c", "to": js_addr(target), "command": 77,
        "target": hex::encode([1u8; 32])}),
    );
    assert_eq!(r["error"], 1, "{r}");

    // The flood: from 127.0.0.2, bounded in count and rate (~10k datagrams over ~3 s).
    let datagrams = hostile_datagrams(target);
    let flooder = std::thread::spawn(move || {
        let sock = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).unwrap();
        let start = Instant::now();
        let mut sent = 0u32;
        for round in 0..250u32 {
            for d in &datagrams {
                let _ = sock.send_to(d, target);
                sent += 1;
            }
            // ~80 rounds per second.
            let due = start + Duration::from_millis(u64::from(round) * 12);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        sent
    });
    // Good requests keep being answered meanwhile (IMMUTABLE_GET of nothing: an empty reply).
    let mut answered = 0;
    for _ in 0..5 {
        let r = js.call(
            json!({"cmd": "request", "node": "c", "to": js_addr(target), "command": 9,
            "target": hex::encode([2u8; 32])}),
        );
        if r["error"] == 0 {
            answered += 1;
        }
    }
    let sent = tokio::task::block_in_place(|| flooder.join().unwrap());
    assert!(sent > 5000);
    assert_eq!(answered, 5);

    // Still up and serving: a Rust put lands on the mixed testnet and JS reads it.
    let info = guard(rust.info()).await.unwrap();
    assert!(info.persistent);
    assert!(
        info.dht_stats.malformed + info.dht_stats.rate_limited + info.stats.unknown_commands > 0
    );
    let put = guard(rust.immutable_put(b"after the flood".to_vec()))
        .await
        .unwrap();
    let got = js.call(json!({"cmd": "immutableGet", "node": "c", "hash": hex::encode(put.hash)}));
    assert_eq!(got["value"], hex::encode(b"after the flood"));
    let r = js.call(
        json!({"cmd": "request", "node": "c", "to": js_addr(target), "command": 9,
        "target": hex::encode(put.hash)}),
    );
    assert_eq!(r["error"], 0);
}
