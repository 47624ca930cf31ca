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

/// Two clients paired through a relay whose sessions come from their UDX sockets' addresses.
struct Pair {
    relay: RelayServer,
    relay_socket: Socket,
    sa: peerhost_udx::driver::Stream,
    sb: peerhost_udx::driver::Stream,
    relay_ids: [u32; 2],
    _clients: (RelayClient, RelayClient),
    _sockets: (Socket, Socket),
}

async fn paired(limits: peerhost_relay::driver::SpliceLimits) -> Pair {
    let relay_socket = Socket::bind(lo()).await.expect("bind");
    let relay = RelayServer::with_limits(relay_socket.clone(), Config::default(), limits);
    let sock_a = Socket::bind(lo()).await.expect("bind");
    let sock_b = Socket::bind(lo()).await.expect("bind");
    let (a_side, a_relay) = Messages::channel();
    let (b_side, b_relay) = Messages::channel();
    // As hyperdht does: each session is pinned to the address its connection came from.
    relay
        .accept_from(a_relay, Some([1; 32]), sock_a.local_addr())
        .expect("session a");
    relay
        .accept_from(b_relay, Some([2; 32]), sock_b.local_addr())
        .expect("session b");
    let a = RelayClient::start(a_side, Some([1; 32]));
    let b = RelayClient::start(b_side, Some([2; 32]));
    let sa = sock_a
        .create_stream(1000, StreamConfig::default())
        .expect("stream");
    let sb = sock_b
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
    let at = relay_socket.local_addr();
    let (ra, rb) = (ra.expect("a paired"), rb.expect("b paired"));
    sa.connect(ra, at).expect("connect a");
    sb.connect(rb, at).expect("connect b");
    Pair {
        relay,
        relay_socket,
        sa,
        sb,
        relay_ids: [ra, rb],
        _clients: (a, b),
        _sockets: (sock_a, sock_b),
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(GUARD, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hang guard: {what}"));
}

/// Issue 17, item 4: a splice is bounded in bytes, and ends (its pairing freed) when the
/// bound is reached, however fast the pair sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_splice_ends_at_its_byte_bound() {
    let mut limits = peerhost_relay::driver::SpliceLimits::default();
    limits.max_bytes = 200_000;
    limits.rate = u64::MAX;
    limits.burst = u64::MAX;
    let mut p = paired(limits).await;
    p.sb.send_message(&[0]).expect("probe");
    let writer = tokio::spawn(async move {
        let chunk = vec![9u8; 64 * 1024];
        for _ in 0..32 {
            if p.sa.write_all(&chunk).await.is_err() {
                break;
            }
        }
        p.sa
    });
    until("the splice ends", || p.relay.stats().active == 0).await;
    let st = p.relay_socket.relay_stats();
    assert_eq!(st.splices, 0);
    assert!(st.bytes <= 200_000, "{st:?}");
    assert!(st.expired >= 1, "{st:?}");
    writer.abort();
}

/// Issue 17, item 4: over its rate, a splice drops datagrams (the peers' congestion control
/// slows down); the bytes that pass stay near the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_splice_is_held_to_its_rate() {
    let mut limits = peerhost_relay::driver::SpliceLimits::default();
    limits.rate = 200_000;
    limits.burst = 50_000;
    let mut p = paired(limits).await;
    p.sb.send_message(&[0]).expect("probe");
    let start = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![9u8; 64 * 1024];
        loop {
            if p.sa.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = p.relay_socket.relay_stats();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        (st.bytes as f64) < 50_000.0 + 200_000.0 * secs * 1.1,
        "{} bytes in {secs:.1} s: {st:?}",
        st.bytes
    );
    assert!(st.over_rate > 0, "{st:?}");
    writer.abort();
}

/// Issue 17, item 4: a splice nobody uses any more is freed after its idle time (the peers
/// died without a word), and with it the sessions' share of the caps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_splice_is_freed() {
    let mut limits = peerhost_relay::driver::SpliceLimits::default();
    limits.idle = Duration::from_millis(500);
    let p = paired(limits).await;
    p.sa.send_message(&[0]).expect("probe");
    p.sb.send_message(&[1]).expect("probe");
    assert_eq!(p.relay.stats().active, 1);
    // The peers stop sending (their streams stay open: no DESTROY, no unpair).
    until("the idle splice is freed", || p.relay.stats().active == 0).await;
    assert_eq!(p.relay_socket.relay_stats().splices, 0);
}

/// Issue 17, item 4: a relay stream talks only to the address of the session that asked for
/// it. A stranger's packet to a relay id, sent before the real peer spoke (what a spoofed
/// source would do), does not make the relay send the other side's traffic to the stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stream_only_takes_its_sessions_address() {
    let p = paired(peerhost_relay::driver::SpliceLimits::default()).await;
    let stranger = tokio::net::UdpSocket::bind(lo()).await.expect("bind");
    let before = p.relay_socket.relay_stats();
    // A UDX header (magic, version 1) addressed to a's relay id, from a socket that is not
    // a's session: the relay reads only the id, and must drop these.
    let mut pkt = vec![0u8; 20];
    pkt[0] = 0xff;
    pkt[1] = 1;
    pkt[4..8].copy_from_slice(&p.relay_ids[0].to_le_bytes());
    for _ in 0..10 {
        stranger
            .send_to(&pkt, p.relay_socket.local_addr())
            .await
            .expect("send");
    }
    until("the stranger's packets are seen", || {
        p.relay_socket.relay_stats().dropped >= before.dropped + 10
    })
    .await;
    // Now b speaks: its packets go to a's socket, none to the stranger.
    for _ in 0..5 {
        p.sb.send_message(b"for a only").expect("send");
    }
    until("b's packets are forwarded", || {
        p.relay_socket.relay_stats().packets > before.packets
    })
    .await;
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(500), stranger.recv_from(&mut buf)).await;
    assert!(got.is_err(), "the relay sent the stranger {got:?}");
}

/// Issue 17, item 4: a splice ends at its total lifetime even while both peers keep sending
/// (the idle bound never fires), over real sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_splice_ends_at_its_lifetime() {
    let mut limits = peerhost_relay::driver::SpliceLimits::default();
    limits.lifetime = Duration::from_millis(1500);
    let started = std::time::Instant::now();
    let Pair {
        relay,
        relay_socket,
        sa,
        sb,
        _clients,
        _sockets,
        ..
    } = paired(limits).await;
    assert_eq!(relay.stats().active, 1);
    let chatter = tokio::spawn(async move {
        loop {
            let _ = sa.send_message(b"still here");
            let _ = sb.send_message(b"me too");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let forwarded = relay_socket.relay_stats().packets;
    until("the busy splice ends", || relay.stats().active == 0).await;
    chatter.abort();
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "ended after {:?}, before its lifetime",
        started.elapsed()
    );
    assert!(
        relay_socket.relay_stats().packets > forwarded,
        "the peers' traffic was forwarded until then"
    );
    assert_eq!(relay_socket.relay_stats().splices, 0);
}

/// Issue 17, item 4: one address holding its quota of sessions gets no more, and a pair from
/// two other loopback addresses is still spliced and carries bytes (over real UDX sockets;
/// the sessions are pinned to their sockets' addresses, as hyperdht pins them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_address_does_not_lock_out_another_pair() {
    let relay_socket = Socket::bind(lo()).await.expect("bind");
    let mut config = Config::default();
    config.max_sessions_per_ip = 4;
    let relay = RelayServer::new(relay_socket.clone(), config);
    let greedy = Socket::bind(lo()).await.expect("bind");
    let mut held = Vec::new();
    for i in 0..4u8 {
        let (side, at_relay) = Messages::channel();
        relay
            .accept_from(at_relay, Some([10 + i; 32]), greedy.local_addr())
            .expect("a session within the cap");
        held.push(RelayClient::start(side, Some([10 + i; 32])));
    }
    let (_side, at_relay) = Messages::channel();
    assert!(
        relay
            .accept_from(at_relay, Some([20; 32]), greedy.local_addr())
            .is_none(),
        "a fifth session from one address was accepted"
    );

    let (got, _) = carry_between_other_addresses(&relay, &relay_socket, b"through the relay").await;
    assert_eq!(got, b"through the relay");
    drop(held);
}

/// Issue 17, item 4 (the attack in small): two greedy sessions pair with each other
/// until their caps refuse more splices; a pair from other loopback addresses is still spliced
/// and carries bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_sessions_cannot_take_every_splice() {
    let relay_socket = Socket::bind(lo()).await.expect("bind");
    let mut config = Config::default();
    config.max_active_per_session = 3;
    let relay = RelayServer::new(relay_socket.clone(), config);
    let greedy = Socket::bind(lo()).await.expect("bind");
    let (g1_side, g1_relay) = Messages::channel();
    let (g2_side, g2_relay) = Messages::channel();
    relay
        .accept_from(g1_relay, Some([11; 32]), greedy.local_addr())
        .expect("session g1");
    relay
        .accept_from(g2_relay, Some([12; 32]), greedy.local_addr())
        .expect("session g2");
    let g1 = RelayClient::start(g1_side, Some([11; 32]));
    let g2 = RelayClient::start(g2_side, Some([12; 32]));
    let mut splices = 0;
    for i in 0..6u8 {
        let token = [100 + i; 32];
        let id = 10 + 2 * u32::from(i);
        let (r1, r2) = tokio::join!(
            // Refused pairings are ignored, not answered: they end at this timeout.
            g1.pair(true, token, id, Duration::from_secs(2)),
            g2.pair(false, token, id + 1, Duration::from_secs(2))
        );
        if r1.is_ok() && r2.is_ok() {
            splices += 1;
        }
    }
    assert_eq!(splices, 3, "the greedy sessions got {splices} splices");
    assert_eq!(relay.stats().active, 3);

    let (got, active) = carry_between_other_addresses(&relay, &relay_socket, b"still served").await;
    assert_eq!(got, b"still served");
    assert_eq!(active, 4);
}

/// A legitimate pair from 127.0.0.2 and 127.0.0.3 (other hosts than every other session of
/// these tests) pairs through `relay` and sends `bytes` one way; returns what arrived and the
/// relay's active splices while the pair still held its own.
async fn carry_between_other_addresses(
    relay: &RelayServer,
    relay_socket: &Socket,
    bytes: &[u8],
) -> (Vec<u8>, usize) {
    let sock_a = Socket::bind("127.0.0.2:0".parse().expect("addr"))
        .await
        .expect("bind 127.0.0.2");
    let sock_b = Socket::bind("127.0.0.3:0".parse().expect("addr"))
        .await
        .expect("bind 127.0.0.3");
    let (a_side, a_relay) = Messages::channel();
    let (b_side, b_relay) = Messages::channel();
    relay
        .accept_from(a_relay, Some([1; 32]), sock_a.local_addr())
        .expect("session a");
    relay
        .accept_from(b_relay, Some([2; 32]), sock_b.local_addr())
        .expect("session b");
    let a = RelayClient::start(a_side, Some([1; 32]));
    let b = RelayClient::start(b_side, Some([2; 32]));
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
    let at = relay_socket.local_addr();
    sa.connect(ra.expect("a paired"), at).expect("connect a");
    sb.connect(rb.expect("b paired"), at).expect("connect b");
    sb.send_message(&[0]).expect("probe b");
    sa.write_all(bytes).await.expect("write");
    sa.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    tokio::time::timeout(GUARD, sb.read_to_end(&mut got))
        .await
        .expect("hang guard")
        .expect("read");
    (got, relay.stats().active)
}
