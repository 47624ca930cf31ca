//! The driver end to end on loopback: a [`RelayServer`] splicing two [`RelayClient`]s' UDX
//! streams (control connections in memory), bytes both ways through the relay, then unpair.

use std::net::SocketAddr;
use std::time::Duration;

use peerhost_relay::driver::{Messages, RelayClient, RelayServer};
use peerhost_relay::server::Config;
use peerhost_udx::StreamConfig;
use peerhost_udx::driver::Socket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GUARD: Duration = Duration::from_secs(20);

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_talk_through_the_relay() {
    let relay_socket = Socket::bind(lo()).await.expect("bind");
    let relay = RelayServer::new(relay_socket.clone(), Config::default());
    let (a_side, a_relay) = Messages::channel();
    let (b_side, b_relay) = Messages::channel();
    let _sa = relay.accept(a_relay, Some([1; 32]));
    let _sb = relay.accept(b_relay, Some([2; 32]));
    let a = RelayClient::start(a_side, Some([1; 32]));
    let b = RelayClient::start(b_side, Some([2; 32]));

    let sock_a = Socket::bind(lo()).await.expect("bind");
    let sock_b = Socket::bind(lo()).await.expect("bind");
    let mut sa = sock_a
        .create_stream(1000, StreamConfig::default())
        .expect("stream");
    let mut sb = sock_b
        .create_stream(2000, StreamConfig::default())
        .expect("stream");
    let token = [7u8; 32];
    let (ra, rb) = tokio::time::timeout(GUARD, async {
        tokio::join!(
            a.pair(true, token, 1000, GUARD),
            b.pair(false, token, 2000, GUARD)
        )
    })
    .await
    .expect("hang guard");
    let (ra, rb) = (ra.expect("a paired"), rb.expect("b paired"));
    assert_ne!(ra, rb);
    assert_eq!(relay.stats().active, 1);
    let at = relay_socket.local_addr();
    sa.connect(ra, at).expect("connect a");
    sb.connect(rb, at).expect("connect b");
    // Each relay stream learns its peer from the peer's first packet.
    sa.send_message(&[0]).expect("probe a");
    sb.send_message(&[0]).expect("probe b");

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        sa.write_all(&data).await.expect("write");
        sa.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        sa.read_to_end(&mut back).await.expect("read back");
        back
    });
    let mut got = Vec::new();
    tokio::time::timeout(GUARD, sb.read_to_end(&mut got))
        .await
        .expect("hang guard")
        .expect("read");
    assert_eq!(got.len(), expect.len());
    assert!(got == expect, "relayed bytes differ");
    sb.write_all(b"thanks").await.expect("write back");
    sb.shutdown().await.expect("shutdown b");
    let back = tokio::time::timeout(GUARD, writer)
        .await
        .expect("hang guard")
        .expect("writer task");
    assert_eq!(back, b"thanks");
    let st = relay_socket.relay_stats();
    assert!(st.bytes as usize > expect.len(), "{st:?}");
    assert_eq!(st.splices, 1);

    a.unpair(token);
    tokio::time::timeout(GUARD, async {
        while relay_socket.relay_stats().splices != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("splice removed after unpair");
    assert_eq!(relay.stats().active, 0);
}

#[tokio::test]
async fn a_pairing_nobody_joins_times_out() {
    let relay_socket = Socket::bind(lo()).await.expect("bind");
    let relay = RelayServer::new(relay_socket, Config::default());
    let (a_side, a_relay) = Messages::channel();
    let _sa = relay.accept(a_relay, None);
    let a = RelayClient::start(a_side, None);
    let r = a.pair(true, [1; 32], 5, Duration::from_millis(200)).await;
    assert_eq!(r, Err(peerhost_relay::PairError::TimedOut));
}

#[tokio::test]
async fn a_session_ending_frees_its_pairings() {
    let relay_socket = Socket::bind(lo()).await.expect("bind");
    let relay = RelayServer::new(relay_socket, Config::default());
    let (a_side, a_relay) = Messages::channel();
    let task = relay.accept(a_relay, None);
    let a = RelayClient::start(a_side, None);
    let pending = tokio::spawn({
        let a = a.clone();
        async move { a.pair(true, [1; 32], 5, GUARD).await }
    });
    tokio::time::timeout(GUARD, async {
        while relay.stats().pending != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("pending");
    drop(a);
    pending.abort();
    // The relay's session ends when the client's connection does (all its handles gone).
    let _ = tokio::time::timeout(GUARD, task)
        .await
        .expect("session ends");
    assert_eq!(relay.stats().pending, 0);
    assert_eq!(relay.stats().active_sessions, 0);
}
