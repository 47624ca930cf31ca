//! Live interop of `peerhost-relay` with blind-relay 1.6.1 on loopback, both directions, and
//! the proof that a relay cannot read what it carries.
//!
//! The relay's control connections are TCP with a Noise XX secret stream (the JS side is
//! `relay/peer.js`); relayed streams are UDX, udx-native on the JS side and `peerhost-udx`
//! on ours. Over hyperdht the control connection is a DHT connection instead; blind-relay does
//! not care which.
//!
//! - `rust_relay_pairs_js_clients_and_sees_only_ciphertext`: our relay pairs two JS clients,
//!   which replicate a 200-block hypercore through it over a secret stream; everything the
//!   relay forwarded is captured and must not contain any block's plaintext.
//! - `js_relay_pairs_rust_clients`: the JS relay pairs two of our clients, whose UDX streams
//!   then carry 256 KiB each way through it.
//!
//! Run: `cargo test -p peerhost-interop-tests --test blind_relay` (Node 20, `npm ci`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerhost_ids::KeyPair;
use peerhost_interop_tests::NodePeer;
use peerhost_noise::{Config as SsConfig, Event as SsEvent, SecretStream};
use peerhost_relay::driver::{Messages, RelayClient, RelayServer};
use peerhost_relay::server::Config;
use peerhost_udx::StreamConfig;
use peerhost_udx::driver::Socket;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GUARD: Duration = Duration::from_secs(60);

/// Run a secret stream over `tcp` and expose it as whole messages. Returns once the
/// handshake completed, with the remote's public key.
async fn secret_messages(
    tcp: TcpStream,
    is_initiator: bool,
    key_pair: KeyPair,
) -> (Messages, [u8; 32]) {
    let (app, inner) = Messages::channel();
    let (key_tx, key_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Messages {
            tx: to_app,
            rx: mut from_app,
        } = inner;
        let mut ss = SecretStream::new(is_initiator, key_pair, SsConfig::default(), Instant::now());
        let (mut rd, mut wr) = tcp.into_split();
        let mut buf = vec![0u8; 65536];
        let mut key_tx = Some(key_tx);
        let mut open = false;
        loop {
            while let Some(t) = ss.poll_transmit() {
                if wr.write_all(&t).await.is_err() {
                    return;
                }
            }
            while let Some(ev) = ss.poll_event() {
                match ev {
                    SsEvent::Handshake {
                        remote_public_key, ..
                    } => {
                        open = true;
                        if let Some(k) = key_tx.take() {
                            let _ = k.send(remote_public_key);
                        }
                    }
                    SsEvent::Message(m) => {
                        let sent = to_app.send(m).await;
                        if sent.is_err() {
                            return;
                        }
                    }
                    SsEvent::End => return,
                    _ => {}
                }
            }
            tokio::select! {
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if ss.handle_input(Instant::now(), &buf[..n]).is_err() {
                            return;
                        }
                    }
                },
                m = from_app.recv(), if open => match m {
                    Some(m) => {
                        if ss.send(Instant::now(), &m).is_err() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    });
    let key = tokio::time::timeout(GUARD, key_rx)
        .await
        .expect("hang guard")
        .expect("secret stream handshake");
    (app, key)
}

fn wait(peer: &mut NodePeer, event: &str) -> Value {
    let event = event.to_owned();
    tokio::task::block_in_place(|| {
        peer.wait_for(GUARD, |v| v["event"] == *event || v["event"] == "failed")
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Block `i` of `relay/peer.js`.
fn block(i: usize) -> Vec<u8> {
    let head = format!("relay-plaintext-block-{i:05}:");
    let mut body = String::new();
    let mut j = 0;
    while body.len() < 2048 - head.len() {
        body.push(char::from(b'a' + ((i + j) % 26) as u8));
        j += 1;
    }
    format!("{head}{body}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_relay_pairs_js_clients_and_sees_only_ciphertext() {
    const BLOCKS: usize = 200;
    let socket = Socket::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind udx");
    socket.start_relay_capture(64 << 20);
    let relay = RelayServer::new(socket.clone(), Config::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let tcp_port = listener.local_addr().expect("addr").port();
    let acceptor = {
        let relay = relay.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let relay = relay.clone();
                tokio::spawn(async move {
                    let (msgs, remote) = secret_messages(tcp, false, KeyPair::generate()).await;
                    // hyperdht relays name the channel by the peer's key, as clients do.
                    let _ = relay.accept(msgs, Some(remote)).await;
                });
            }
        })
    };

    let udp_port = socket.local_addr().port().to_string();
    let mut js = NodePeer::spawn(
        "relay/peer.js",
        &[
            "clients",
            &tcp_port.to_string(),
            &udp_port,
            &BLOCKS.to_string(),
        ],
    );
    let done = wait(&mut js, "done");
    assert_eq!(done["event"], "done", "JS clients: {done}");
    assert_eq!(done["blocks"], BLOCKS);

    let stats = relay.stats();
    assert_eq!((stats.requested, stats.matched), (2, 1), "{stats:?}");
    let forwarded = socket.relay_stats();
    let captured = socket.take_relay_capture();
    assert!(
        captured.len() > BLOCKS * 2048,
        "the blocks did not go through the relay: {forwarded:?}"
    );
    for i in 0..BLOCKS {
        let b = block(i);
        assert!(
            !contains(&captured, &b[..27]),
            "block {i}'s header is visible"
        );
        assert!(
            !contains(&captured, &b[1000..1032]),
            "block {i}'s body is visible"
        );
    }
    // The check can see plaintext when it is there.
    assert!(contains(&block(3), &block(3)[1000..1032]));
    println!(
        "relay forwarded {} datagrams, {} bytes; no block plaintext among them",
        forwarded.packets, forwarded.bytes
    );
    acceptor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_relay_pairs_rust_clients() {
    let mut js = NodePeer::spawn("relay/peer.js", &["relay"]);
    let ready = wait(&mut js, "ready");
    let tcp = ready["tcp"].as_u64().expect("tcp port");
    let udp = ready["udp"].as_u64().expect("udp port");
    let relay_udp: SocketAddr = format!("127.0.0.1:{udp}").parse().expect("addr");

    let token = [0x5a; 32];
    let mut sides = Vec::new();
    for (is_initiator, local_id) in [(true, 1000u32), (false, 2000u32)] {
        let stream = TcpStream::connect(("127.0.0.1", tcp as u16))
            .await
            .expect("connect relay");
        let key_pair = KeyPair::generate();
        let public_key = key_pair.public_key();
        let (msgs, _) = secret_messages(stream, true, key_pair).await;
        // hyperdht clients name the channel by their own public key, which is what the relay
        // sees as the remote key of their connection.
        let client = RelayClient::start(msgs, Some(public_key));
        let socket = Socket::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let stream = socket
            .create_stream(local_id, StreamConfig::default())
            .expect("stream");
        sides.push((client, socket, stream, is_initiator, local_id));
    }
    let (b, a) = (sides.pop().expect("b"), sides.pop().expect("a"));
    let (ra, rb) = tokio::time::timeout(GUARD, async {
        tokio::join!(
            a.0.pair(a.3, token, a.4, GUARD),
            b.0.pair(b.3, token, b.4, GUARD)
        )
    })
    .await
    .expect("hang guard");
    let (ra, rb) = (ra.expect("a paired"), rb.expect("b paired"));
    let pairs = [wait(&mut js, "pair")];
    assert_eq!(pairs[0]["event"], "pair");

    let (_ca, _sock_a, mut sa, ..) = a;
    let (_cb, _sock_b, mut sb, ..) = b;
    sa.connect(ra, relay_udp).expect("connect a");
    sb.connect(rb, relay_udp).expect("connect b");
    // The JS relay stream learns each peer from its first packet (libudx's firewall hook).
    sa.send_message(&[0]).expect("probe a");
    sb.send_message(&[0]).expect("probe b");

    let a_data: Vec<u8> = (0..262_144u32).map(|i| (i % 253) as u8).collect();
    let b_data: Vec<u8> = (0..262_144u32).map(|i| (i % 241) as u8).collect();
    let (ad, bd) = (a_data.clone(), b_data.clone());
    let ta = tokio::spawn(async move {
        sa.write_all(&ad).await.expect("write a");
        sa.shutdown().await.expect("end a");
        let mut got = Vec::new();
        sa.read_to_end(&mut got).await.expect("read a");
        got
    });
    let tb = tokio::spawn(async move {
        sb.write_all(&bd).await.expect("write b");
        sb.shutdown().await.expect("end b");
        let mut got = Vec::new();
        sb.read_to_end(&mut got).await.expect("read b");
        got
    });
    let (got_a, got_b) = tokio::time::timeout(GUARD, async { tokio::join!(ta, tb) })
        .await
        .expect("hang guard");
    assert!(
        got_a.expect("task a") == b_data,
        "a got other bytes than b sent"
    );
    assert!(
        got_b.expect("task b") == a_data,
        "b got other bytes than a sent"
    );
}
