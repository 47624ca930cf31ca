//! The tokio driver over real loopback UDP, Rust to Rust. No timing assertions: only that
//! bytes, ends, messages and shared-socket datagrams arrive.
#![cfg(feature = "tokio")]

use std::time::Duration;

use peerhost_udx::driver::Socket;
use peerhost_udx::{Firewall, StreamConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

async fn pair() -> (Socket, Socket) {
    let a = Socket::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let b = Socket::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_then_clean_close() {
    let (a, b) = pair().await;
    let sa = a.create_stream(1, StreamConfig::default()).unwrap();
    let sb = b.create_stream(2, StreamConfig::default()).unwrap();
    sa.connect(2, b.local_addr()).unwrap();
    sb.connect(1, a.local_addr()).unwrap();

    let payload_a = data(3 << 20);
    let payload_b = data(1 << 20);
    let (mut ra, mut wa) = tokio::io::split(sa);
    let (mut rb, mut wb) = tokio::io::split(sb);
    let pa = payload_a.clone();
    let pb = payload_b.clone();
    let write_a = tokio::spawn(async move {
        wa.write_all(&pa).await.unwrap();
        wa.shutdown().await.unwrap();
        wa
    });
    let write_b = tokio::spawn(async move {
        wb.write_all(&pb).await.unwrap();
        wb.shutdown().await.unwrap();
        wb
    });
    let read_a = tokio::spawn(async move {
        let mut v = Vec::new();
        ra.read_to_end(&mut v).await.unwrap();
        (ra, v)
    });
    let read_b = tokio::spawn(async move {
        let mut v = Vec::new();
        rb.read_to_end(&mut v).await.unwrap();
        (rb, v)
    });
    let (ra, got_a) = read_a.await.unwrap();
    let (rb, got_b) = read_b.await.unwrap();
    assert_eq!(Sha256::digest(&got_b), Sha256::digest(&payload_a));
    assert_eq!(Sha256::digest(&got_a), Sha256::digest(&payload_b));
    let wa = write_a.await.unwrap();
    let wb = write_b.await.unwrap();
    let sa = ra.unsplit(wa);
    let sb = rb.unsplit(wb);
    sa.closed().await.unwrap();
    sb.closed().await.unwrap();
}

#[tokio::test]
async fn messages_destroy_and_shared_socket() {
    let (a, b) = pair().await;
    let sa = a.create_stream(10, StreamConfig::default()).unwrap();
    // b learns a's address from the first packet, as HyperDHT's firewall does.
    let sb = b
        .create_stream(
            20,
            StreamConfig::default().firewall(Firewall::Connect { remote_id: 10 }),
        )
        .unwrap();
    sa.connect(20, b.local_addr()).unwrap();
    sa.send_message(b"ping").unwrap();
    assert_eq!(sb.recv_message().await.unwrap(), b"ping");
    assert_eq!(sb.connected().await.unwrap(), a.local_addr());
    sb.send_message(b"pong").unwrap();
    assert_eq!(sa.recv_message().await.unwrap(), b"pong");

    // A dht-rpc-looking datagram on the same sockets reaches the application hook.
    a.send_datagram(&[0x03, 0x04, 0x16, 0xd6], b.local_addr())
        .await
        .unwrap();
    let (d, from) = b.recv_datagram().await.unwrap();
    assert_eq!(d, [0x03, 0x04, 0x16, 0xd6]);
    assert_eq!(from, a.local_addr());
    b.send_datagram(&[0x13, 0x00], a.local_addr())
        .await
        .unwrap();
    assert_eq!(a.recv_datagram().await.unwrap().0, [0x13, 0x00]);

    sa.destroy();
    let err = tokio::time::timeout(Duration::from_secs(10), sb.closed())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), "ECONNRESET");
    sa.closed().await.unwrap();
}
