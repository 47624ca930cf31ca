//! A loopback testnet of peerhost nodes only (real UDP on 127.0.0.1): a bootstrapper, a few
//! persistent nodes and clients. Checks every operation end to end through the tokio driver;
//! the JS interop runs live in `interop-tests/tests/hyperdht.rs`.
//!
//! Timeouts are hang guards only: nothing here depends on timing.
#![cfg(feature = "tokio")]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_hyperdht::{AnnounceOptions, Config, ConnectError, Error, crypto, dht_rpc};
use peerhost_ids::KeyPair;

const GUARD: Duration = Duration::from_secs(60);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn guard<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f).await.expect("hang guard")
}

struct Net {
    bootstrap: SocketAddrV4,
    nodes: Vec<Dht>,
}

async fn testnet(size: usize) -> Net {
    let mut config = Config::default();
    config.dht = dht_rpc::Config::bootstrapper(SocketAddrV4::new(LO, 0));
    let first = Dht::bind(config, BindOptions::host(LO)).await.unwrap();
    let bootstrap = SocketAddrV4::new(LO, first.server_addr().port());
    guard(first.bootstrapped()).await;
    let mut nodes = vec![first];
    for _ in 1..size {
        let mut config = Config::default();
        config.dht.bootstrap = vec![bootstrap];
        config.dht.ephemeral = Some(false);
        config.dht.firewalled = false;
        let dht = Dht::bind(config, BindOptions::host(LO)).await.unwrap();
        guard(dht.bootstrapped()).await;
        nodes.push(dht);
    }
    for n in &nodes {
        guard(async {
            while !n.info().await.unwrap().persistent {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    Net { bootstrap, nodes }
}

async fn client(net: &Net, firewalled: bool) -> Dht {
    let mut config = Config::default();
    config.dht.bootstrap = vec![net.bootstrap];
    config.dht.ephemeral = Some(true);
    config.dht.firewalled = firewalled;
    // Keep firewalled clients firewalled (loopback would prove them reachable at once).
    config.dht.quick_firewall = !firewalled;
    let dht = Dht::bind(config, BindOptions::host(LO)).await.unwrap();
    guard(dht.bootstrapped()).await;
    dht
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_round_trips() {
    let net = testnet(5).await;
    let a = client(&net, true).await;
    let b = client(&net, true).await;

    // Immutable.
    let put = guard(a.immutable_put(b"hello immutable".to_vec()))
        .await
        .unwrap();
    assert_eq!(put.hash, crypto::hash(b"hello immutable"));
    assert!(put.stored > 0);
    let got = guard(b.immutable_get(put.hash)).await.unwrap().unwrap();
    assert_eq!(got.value, b"hello immutable");
    assert_eq!(guard(b.immutable_get([9; 32])).await.unwrap(), None);

    // Mutable, with sequence checks.
    let kp = KeyPair::from_seed(&[3; 32]);
    let put = guard(a.mutable_put(&kp, b"v1".to_vec(), 1)).await.unwrap();
    assert!(put.stored > 0);
    let got = guard(b.mutable_get(kp.public_key(), 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.seq, got.value.as_slice()), (1, &b"v1"[..]));
    guard(a.mutable_put(&kp, b"v2".to_vec(), 2)).await.unwrap();
    let got = guard(b.mutable_get(kp.public_key(), 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.seq, got.value.as_slice()), (2, &b"v2"[..]));
    assert_eq!(
        guard(a.mutable_put(&kp, b"other".to_vec(), 2)).await,
        Err(Error::SeqReused)
    );
    assert_eq!(
        guard(a.mutable_put(&kp, b"old".to_vec(), 1)).await,
        Err(Error::SeqTooLow)
    );
    assert_eq!(
        guard(b.mutable_get(kp.public_key(), 3)).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_lookup_unannounce() {
    let net = testnet(5).await;
    let a = client(&net, true).await;
    let b = client(&net, true).await;
    let topic = crypto::hash(b"a topic");
    let kp = KeyPair::from_seed(&[4; 32]);
    let relay = SocketAddrV4::new(LO, 1234);
    let ann = guard(a.announce(topic, &kp, vec![relay], AnnounceOptions::default()))
        .await
        .unwrap();
    assert!(ann.stored > 0);
    let found = guard(b.lookup(topic)).await.unwrap();
    let peers: Vec<_> = found.iter().flat_map(|r| r.peers.iter()).collect();
    assert!(
        peers
            .iter()
            .any(|p| p.public_key == kp.public_key() && p.relay_addresses == vec![relay])
    );

    // The same lookup, streaming: every reply with records also arrives on the channel, and
    // the channel closes when the lookup ends.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let found = guard(b.lookup_with(topic, tx)).await.unwrap();
    let mut streamed = Vec::new();
    while let Some(r) = guard(rx.recv()).await {
        streamed.push(r);
    }
    let with_records: Vec<_> = found.iter().filter(|r| !r.peers.is_empty()).collect();
    assert!(!streamed.is_empty());
    assert_eq!(streamed.len(), with_records.len());
    assert!(
        streamed
            .iter()
            .all(|r| r.peers.iter().any(|p| p.public_key == kp.public_key()))
    );

    guard(a.unannounce(topic, &kp)).await.unwrap();
    let found = guard(b.lookup(topic)).await.unwrap();
    assert!(
        found
            .iter()
            .all(|r| r.peers.iter().all(|p| p.public_key != kp.public_key()))
    );
}

async fn echo_over(server_node: &Dht, client_node: &Dht) {
    let server_kp = KeyPair::generate();
    let mut server = guard(server_node.listen(&server_kp)).await.unwrap();
    let client_kp = KeyPair::generate();
    let accept = tokio::spawn(async move {
        let mut conn = server.accept().await.unwrap();
        while let Some(m) = conn.recv().await {
            let mut m = m;
            m.reverse();
            conn.send(m).await.unwrap();
        }
        conn.remote_public_key()
    });
    let mut conn = guard(client_node.connect(&client_kp, server_kp.public_key()))
        .await
        .unwrap();
    assert_eq!(conn.remote_public_key(), server_kp.public_key());
    for msg in [b"hello".to_vec(), vec![7u8; 100_000], vec![]] {
        conn.send(msg.clone()).await.unwrap();
        if msg.is_empty() {
            continue; // an empty message is a keep-alive on the wire
        }
        let mut want = msg;
        want.reverse();
        assert_eq!(guard(conn.recv()).await.unwrap(), want);
    }
    drop(conn);
    assert_eq!(guard(accept).await.unwrap(), client_kp.public_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_through_relays() {
    let net = testnet(4).await;
    // Firewalled server, reachable client: the server connects to the client.
    let server_node = client(&net, true).await;
    let open_client = client(&net, false).await;
    echo_over(&server_node, &open_client).await;
    // Firewalled both, same host: the LAN shortcut.
    let fw_client = client(&net, true).await;
    echo_over(&server_node, &fw_client).await;
    // A persistent node as server: clients may reach it directly.
    echo_over(&net.nodes[2], &fw_client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_and_missing_peers() {
    let net = testnet(4).await;
    let server_node = client(&net, true).await;
    let c = client(&net, false).await;
    let kp = KeyPair::generate();
    let blocked = KeyPair::generate();
    let blocked_pk = blocked.public_key();
    let _server = guard(
        server_node.listen_with_firewall(&kp, Box::new(move |remote, _, _| *remote == blocked_pk)),
    )
    .await
    .unwrap();
    let err = guard(c.connect(&blocked, kp.public_key()))
        .await
        .unwrap_err();
    assert_eq!(err, ConnectError::PeerConnectionFailed);
    let nobody = KeyPair::generate().public_key();
    let err = guard(c.connect(&blocked, nobody)).await.unwrap_err();
    assert_eq!(err, ConnectError::PeerNotFound);
    // Not a curve point: the Noise handshake cannot even start.
    let err = guard(c.connect(&blocked, [1; 32])).await.unwrap_err();
    assert_eq!(err, ConnectError::HandshakeInvalid);
}

/// Issue 17, item 5, over real sockets: an IMMUTABLE_GET of a stored 1 950-byte value from an
/// address that has not proven it receives gets nothing larger than its request back (JS
/// answers 47 times the request, to whatever source the request claims); once the address
/// answers the node's probe, the value comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_goes_only_to_an_address_that_proved_it_receives() {
    use dht_rpc::messages::{Message, Request, Response};
    use peerhost_hyperdht::constants::Command;
    use std::net::SocketAddr;

    let net = testnet(3).await;
    let a = client(&net, true).await;
    let value = vec![0x42u8; 1950];
    let put = guard(a.immutable_put(value.clone())).await.unwrap();
    assert!(put.stored > 0);

    // A socket that asks every node and answers nothing yet, on a loopback address no node
    // has heard from (proof is kept per host, and 127.0.0.1 proved itself while the testnet
    // bootstrapped).
    let victim = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 9), 0))
        .await
        .unwrap();
    let mut request_len = usize::MAX;
    for (i, n) in net.nodes.iter().enumerate() {
        let SocketAddr::V4(to) = n.server_addr() else {
            panic!("an IPv4 node")
        };
        let get = Message::Request(Request {
            tid: 100 + i as u16,
            to,
            command: Command::ImmutableGet.as_u64(),
            target: Some(put.hash),
            ..Default::default()
        })
        .encode();
        request_len = request_len.min(get.len());
        victim.send_to(&get, to).await.unwrap();
    }
    let mut buf = vec![0u8; 65536];
    // Every datagram from a node is no larger than the request until we answer that node's
    // probe (a PING from its socket); each probe is answered as it comes (a node drops what it
    // held when its probe goes unanswered); then that node's held answer brings the value.
    let mut answered: Vec<SocketAddr> = Vec::new();
    let value_came = guard(async {
        loop {
            let (n, from) = victim.recv_from(&mut buf).await.unwrap();
            let message = Message::decode(&buf[..n]);
            if !answered.contains(&from) {
                assert!(
                    n <= request_len,
                    "{n} bytes from {from} to an address that never answered, for a \
                     {request_len}-byte request"
                );
            }
            match (message, from) {
                (Ok(Message::Request(probe)), SocketAddr::V4(node)) => {
                    let pong = Message::Response(Response {
                        tid: probe.tid,
                        to: node,
                        id: None,
                        token: None,
                        closer_nodes: None,
                        error: 0,
                        value: None,
                    })
                    .encode();
                    victim.send_to(&pong, node).await.unwrap();
                    answered.push(from);
                }
                (Ok(Message::Response(r)), _) if r.value.as_deref() == Some(&value[..]) => {
                    return answered.len();
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(value_came >= 1, "the value came without a probe answered");
}

/// Issue 17, item 5, over real sockets: a node relays handshakes only along routes it knows.
/// A PEER_HANDSHAKE that names a `relayAddress` (FROM_CLIENT) or a `peerAddress` for a
/// handshake the node never relayed (FROM_SERVER) makes it send nothing to that address;
/// the asker still gets its answer (closer nodes, or an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_go_only_along_known_routes() {
    use dht_rpc::messages::{Message, Request};
    use peerhost_hyperdht::constants::{Command, Mode};
    use peerhost_hyperdht::messages::{self, Handshake};
    use std::net::SocketAddr;

    let net = testnet(3).await;
    let SocketAddr::V4(node) = net.nodes[1].server_addr() else {
        panic!("an IPv4 node")
    };
    let asker = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 8), 0))
        .await
        .unwrap();
    let victim = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 9), 0))
        .await
        .unwrap();
    let SocketAddr::V4(victim_addr) = victim.local_addr().unwrap() else {
        panic!("an IPv4 socket")
    };
    let target = crypto::hash(b"a server nobody announced");
    let handshake = |mode, peer_address, relay_address| {
        messages::encode(&Handshake {
            mode,
            noise: vec![0xaa; 1200],
            peer_address,
            relay_address,
        })
    };
    let asks = [
        handshake(Mode::FROM_CLIENT, None, Some(victim_addr)),
        handshake(Mode::FROM_SERVER, Some(victim_addr), None),
    ];
    for (i, value) in asks.into_iter().enumerate() {
        let req = Message::Request(Request {
            tid: 200 + i as u16,
            to: node,
            command: Command::PeerHandshake.as_u64(),
            target: Some(target),
            value: Some(value),
            ..Default::default()
        })
        .encode();
        asker.send_to(&req, node).await.unwrap();
    }
    // The named address gets nothing.
    let mut buf = vec![0u8; 65536];
    let got = tokio::time::timeout(Duration::from_millis(500), victim.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the node sent the named address {:?}", got);
    // The asker heard back for the FROM_CLIENT one (help to route: closer nodes).
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), asker.recv_from(&mut buf))
        .await
        .expect("the asker got no answer")
        .unwrap();
    assert!(
        matches!(Message::decode(&buf[..n]), Ok(Message::Response(r)) if r.tid == 200),
        "the asker's answer"
    );
}
