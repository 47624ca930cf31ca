//! Holepunching and blind relaying through the tokio driver on a loopback testnet of peerhost
//! nodes (no NAT here: the NAT matrix is `interop-tests/tests/nat_matrix.rs`, in a lab).
//!
//! - two firewalled nodes connect by running the probe and punch rounds (their NATs look
//!   CONSISTENT on loopback: one address per socket), and exchange messages;
//! - a connect with `relay_through` goes through a relay run by `Dht::serve_relay`, both
//!   sides pairing there, and the relay forwards what they say.
//!
//! The fallback to `Config::relays` when a punch fails needs NATs that defeat punching: it runs
//! in the lab (the symmetric↔symmetric cells of the NAT matrix).
//!
//! Timeouts are hang guards only.
#![cfg(feature = "tokio")]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use peerhost_hyperdht::driver::{BindOptions, Connection, Dht};
use peerhost_hyperdht::{Config, ConnectOptions, dht_rpc};
use peerhost_ids::KeyPair;

const GUARD: Duration = Duration::from_secs(60);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn guard<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f).await.expect("hang guard")
}

async fn testnet(size: usize) -> (SocketAddrV4, Vec<Dht>) {
    let mut config = Config::default();
    config.dht = dht_rpc::Config::bootstrapper(SocketAddrV4::new(LO, 0));
    let first = Dht::bind(config, BindOptions::host(LO))
        .await
        .expect("bind");
    let bootstrap = SocketAddrV4::new(LO, first.server_addr().port());
    guard(first.bootstrapped()).await;
    let mut nodes = vec![first];
    for _ in 1..size {
        let mut config = Config::default();
        config.dht.bootstrap = vec![bootstrap];
        config.dht.ephemeral = Some(false);
        config.dht.firewalled = false;
        let dht = Dht::bind(config, BindOptions::host(LO))
            .await
            .expect("bind");
        guard(dht.bootstrapped()).await;
        nodes.push(dht);
    }
    for n in &nodes {
        guard(async {
            while !n.info().await.expect("info").persistent {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    (bootstrap, nodes)
}

async fn node(bootstrap: SocketAddrV4, firewalled: bool, relays: Vec<[u8; 32]>) -> Dht {
    let mut config = Config::default();
    config.dht.bootstrap = vec![bootstrap];
    config.dht.ephemeral = Some(true);
    config.dht.firewalled = firewalled;
    config.dht.quick_firewall = !firewalled;
    // No same-LAN shortcut: on loopback it would win before holepunching starts.
    config.local_connection = false;
    config.share_local_address = false;
    config.relays = relays;
    let dht = Dht::bind(config, BindOptions::host(LO))
        .await
        .expect("bind");
    guard(dht.bootstrapped()).await;
    dht
}

/// Echo every message back reversed.
fn echo(mut conn: Connection) {
    tokio::spawn(async move {
        while let Some(mut m) = conn.recv().await {
            m.reverse();
            if conn.send(m).await.is_err() {
                return;
            }
        }
    });
}

async fn round_trip(conn: &mut Connection) {
    conn.send(b"hello".to_vec()).await.expect("send");
    assert_eq!(guard(conn.recv()).await.expect("reply"), b"olleh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewalled_peers_holepunch() {
    let (bootstrap, _net) = testnet(4).await;
    let server = node(bootstrap, true, Vec::new()).await;
    let key_pair = KeyPair::generate();
    let mut listener = guard(server.listen(&key_pair)).await.expect("listen");
    tokio::spawn(async move {
        while let Some(conn) = listener.accept().await {
            echo(conn);
        }
    });
    let client = node(bootstrap, true, Vec::new()).await;
    let mut conn = guard(client.connect(&KeyPair::generate(), key_pair.public_key()))
        .await
        .expect("holepunched connection");
    // The stream reached the server's own socket, not a relay.
    assert_eq!(conn.remote_address().ip(), std::net::IpAddr::V4(LO));
    round_trip(&mut conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_through_pairs_both_sides() {
    let (bootstrap, _net) = testnet(4).await;
    let relay_node = node(bootstrap, false, Vec::new()).await;
    let relay_keys = KeyPair::generate();
    let relay = guard(relay_node.serve_relay(&relay_keys))
        .await
        .expect("relay");

    let server = node(bootstrap, true, Vec::new()).await;
    let key_pair = KeyPair::generate();
    let mut listener = guard(server.listen(&key_pair)).await.expect("listen");
    tokio::spawn(async move {
        while let Some(conn) = listener.accept().await {
            echo(conn);
        }
    });
    let client = node(bootstrap, true, Vec::new()).await;
    let mut opts = ConnectOptions::default();
    opts.relay_through = Some(relay.public_key());
    let mut conn = guard(client.connect_with(&KeyPair::generate(), key_pair.public_key(), opts))
        .await
        .expect("relayed connection");
    assert_eq!(
        conn.remote_address(),
        relay_node.server_addr(),
        "the stream goes to the relay"
    );
    round_trip(&mut conn).await;
    assert_eq!(relay.stats().matched, 1);
    assert!(relay.relayed().packets > 0, "{:?}", relay.relayed());
}
