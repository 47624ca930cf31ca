//! Swarms of peerhost nodes only, on a loopback testnet (real UDP on 127.0.0.1) whose
//! bootstrap node is a [`Bootstrapper`]: discovery, connections, the duplicate rule, leave,
//! bans, the peer limit and explicit peers, end to end through the tokio driver. The JS
//! interop runs live in `interop-tests/tests/swarm.rs`. Timeouts are hang guards only.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_hyperdht::{Config as DhtConfig, crypto};
use peerhost_ids::KeyPair;
use peerhost_swarm::{
    BootstrapOptions, Bootstrapper, Config, JoinOptions, Messages, PeerInfo, Swarm,
};
use tokio::sync::mpsc;

const GUARD: Duration = Duration::from_secs(60);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn guard<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f).await.expect("hang guard")
}

/// Poll `cond` until it holds (a hang guard bounds the wait).
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let r = tokio::time::timeout(GUARD, async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "hang guard: {what}");
}

/// A bootstrap node and two persistent nodes.
async fn testnet() -> (Bootstrapper, Vec<Dht>) {
    let boot = Bootstrapper::bind(BootstrapOptions::new(LO, 0).with_bind(LO))
        .await
        .unwrap();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = DhtConfig::default();
        config.dht.bootstrap = vec![boot.addr()];
        config.dht.ephemeral = Some(false);
        config.dht.firewalled = false;
        let dht = Dht::bind(config, BindOptions::host(LO)).await.unwrap();
        guard(dht.bootstrapped()).await;
        nodes.push(dht);
    }
    (boot, nodes)
}

/// One connection as a test peer sees it.
#[derive(Clone)]
struct Record {
    remote: [u8; 32],
    hash: [u8; 64],
    initiator: bool,
    info: PeerInfo,
    alive: Arc<AtomicBool>,
    pongs: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Weak: a kept sender would keep our side of the connection open.
    sender: mpsc::WeakSender<Vec<u8>>,
}

/// A swarm whose every connection answers "ping…" with "pong…" and records the pongs.
struct Peer {
    swarm: Swarm,
    conns: Arc<Mutex<Vec<Record>>>,
    count: Arc<AtomicUsize>,
}

impl Peer {
    async fn start(boot: SocketAddrV4, seed: u8, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(KeyPair::from_seed(&[seed; 32]))
            .with_bootstrap(vec![boot.into()])
            .with_bind(BindOptions::host(LO));
        config.seed = Some(u64::from(seed));
        tweak(&mut config);
        let (swarm, mut incoming) = Swarm::new(config).await.unwrap();
        guard(swarm.dht().bootstrapped()).await;
        let conns: Arc<Mutex<Vec<Record>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let (c2, n2) = (conns.clone(), count.clone());
        tokio::spawn(async move {
            while let Some((conn, info)) = incoming.next().await {
                let conn = conn.into_messages();
                n2.fetch_add(1, Ordering::SeqCst);
                let record = Record {
                    remote: conn.remote_public_key(),
                    hash: conn.handshake_hash(),
                    initiator: conn.is_initiator(),
                    info,
                    alive: Arc::new(AtomicBool::new(true)),
                    pongs: Arc::default(),
                    sender: conn.sender().downgrade(),
                };
                c2.lock().unwrap().push(record.clone());
                tokio::spawn(serve(conn, record));
            }
        });
        Self {
            swarm,
            conns,
            count,
        }
    }

    fn key(&self) -> [u8; 32] {
        self.swarm.public_key()
    }

    fn alive(&self) -> Vec<Record> {
        let conns = self.conns.lock().unwrap();
        conns
            .iter()
            .filter(|r| r.alive.load(Ordering::SeqCst))
            .cloned()
            .collect()
    }

    async fn open(&self) -> usize {
        self.swarm.status().await.unwrap().connections
    }

    /// Ping over the live connection to `remote` and wait for the pong.
    async fn ping(&self, remote: [u8; 32], text: &[u8]) {
        let r = self
            .alive()
            .into_iter()
            .find(|r| r.remote == remote)
            .expect("a live connection");
        let mut msg = b"ping".to_vec();
        msg.extend_from_slice(text);
        r.sender.upgrade().unwrap().send(msg).await.unwrap();
        let mut want = b"pong".to_vec();
        want.extend_from_slice(text);
        until("pong", async || r.pongs.lock().unwrap().contains(&want)).await;
    }
}

async fn serve(mut conn: Messages, record: Record) {
    while let Some(m) = conn.recv().await {
        if let Some(rest) = m.strip_prefix(b"ping") {
            let mut reply = b"pong".to_vec();
            reply.extend_from_slice(rest);
            if conn.send(reply).await.is_err() {
                break;
            }
        } else if m.starts_with(b"pong") {
            record.pongs.lock().unwrap().push(m);
        }
    }
    record.alive.store(false, Ordering::SeqCst);
}

fn topic(name: &str) -> [u8; 32] {
    crypto::hash(name.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_finds_server_and_they_talk() {
    let (boot, _nodes) = testnet().await;
    let server = Peer::start(boot.addr(), 1, |_| {}).await;
    let client = Peer::start(boot.addr(), 2, |_| {}).await;
    let t = topic("rust server, rust client");

    let d = guard(server.swarm.join(t, JoinOptions::server()))
        .await
        .unwrap();
    assert!(guard(d.flushed()).await, "announced");
    guard(client.swarm.join(t, JoinOptions::client()))
        .await
        .unwrap();
    assert!(guard(client.swarm.flush()).await);
    assert_eq!(client.open().await, 1);

    until("both sides have it", async || {
        server.alive().len() == 1 && client.alive().len() == 1
    })
    .await;
    let c = &client.alive()[0];
    let s = &server.alive()[0];
    assert_eq!((c.remote, s.remote), (server.key(), client.key()));
    assert_eq!(c.hash, s.hash);
    assert!(c.initiator && !s.initiator);
    assert!(c.info.client && !s.info.client);
    assert_eq!(c.info.topics, [t]);
    guard(client.ping(server.key(), b" from the client")).await;
    guard(server.ping(client.key(), b" from the server")).await;
    let big = vec![7u8; 100_000];
    guard(client.ping(server.key(), &big)).await;

    guard(client.swarm.destroy()).await;
    until("server notices", async || server.alive().is_empty()).await;
    until("server forgets", async || server.open().await == 0).await;
}

/// Both join as server and client: whoever dials first, both end with the same single
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_server_and_client_end_with_one_connection() {
    let (boot, _nodes) = testnet().await;
    let a = Peer::start(boot.addr(), 3, |_| {}).await;
    let b = Peer::start(boot.addr(), 4, |_| {}).await;
    let t = topic("both ways");
    let da = guard(a.swarm.join(t, JoinOptions::both())).await.unwrap();
    let db = guard(b.swarm.join(t, JoinOptions::both())).await.unwrap();
    guard(da.flushed()).await;
    guard(db.flushed()).await;
    // Each now finds the other's record (the first lookups may have run before the other's
    // announce landed).
    guard(da.refresh(JoinOptions::both())).await.unwrap();
    guard(db.refresh(JoinOptions::both())).await.unwrap();
    guard(a.swarm.flush()).await;
    guard(b.swarm.flush()).await;
    one_shared_connection(&a, &b).await;
}

/// Both dial each other at once (explicit peers): the duplicate rule keeps the larger key's
/// dial on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_keep_the_larger_keys() {
    let (boot, _nodes) = testnet().await;
    let a = Peer::start(boot.addr(), 7, |_| {}).await;
    let b = Peer::start(boot.addr(), 8, |_| {}).await;
    guard(a.swarm.listen()).await.unwrap();
    guard(b.swarm.listen()).await.unwrap();
    let (ka, kb) = (a.key(), b.key());
    let (ja, jb) = tokio::join!(a.swarm.join_peer(kb), b.swarm.join_peer(ka));
    ja.unwrap();
    jb.unwrap();
    one_shared_connection(&a, &b).await;
    let (sa, sb) = (
        a.swarm.status().await.unwrap(),
        b.swarm.status().await.unwrap(),
    );
    if sa.stats.client_attempted > 0 && sb.stats.client_attempted > 0 {
        let larger_is_a = ka > kb;
        assert_eq!(a.alive()[0].initiator, larger_is_a, "the larger key's dial");
    }
}

/// Wait until `a` and `b` each have exactly one live connection, the same one, and it works.
async fn one_shared_connection(a: &Peer, b: &Peer) {
    until("one connection each", async || {
        a.alive().len() == 1 && b.alive().len() == 1 && a.open().await == 1 && b.open().await == 1
    })
    .await;
    let (ra, rb) = (&a.alive()[0], &b.alive()[0]);
    assert_eq!(ra.hash, rb.hash, "the same connection");
    assert_ne!(ra.initiator, rb.initiator);
    guard(a.ping(b.key(), b" a")).await;
    guard(b.ping(a.key(), b" b")).await;
    let (sa, sb) = (
        a.swarm.status().await.unwrap(),
        b.swarm.status().await.unwrap(),
    );
    assert_eq!((sa.connecting, sb.connecting), (0, 0));
    assert_eq!((sa.connections, sb.connections), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_unannounces_and_bans_hold() {
    let (boot, _nodes) = testnet().await;
    let server = Peer::start(boot.addr(), 5, |_| {}).await;
    let client = Peer::start(boot.addr(), 6, |_| {}).await;
    let t = topic("leave and ban");
    let d = guard(server.swarm.join(t, JoinOptions::server()))
        .await
        .unwrap();
    guard(d.flushed()).await;
    let found = guard(client.swarm.dht().lookup(t)).await.unwrap();
    assert!(
        found
            .iter()
            .flat_map(|r| &r.peers)
            .any(|p| p.public_key == server.key())
    );

    guard(client.swarm.join(t, JoinOptions::client()))
        .await
        .unwrap();
    guard(client.swarm.flush()).await;
    assert_eq!(client.open().await, 1);
    until("handed over", async || client.alive().len() == 1).await;

    // Ban: the connection ends and is not retried, even on rediscovery.
    guard(client.swarm.ban(server.key())).await.unwrap();
    until("closed", async || {
        client.alive().is_empty() && client.open().await == 0
    })
    .await;
    assert!(client.swarm.peer(server.key()).await.unwrap().banned);
    let d = guard(client.swarm.join(t, JoinOptions::client()))
        .await
        .unwrap();
    guard(d.refresh(JoinOptions::client())).await.unwrap();
    guard(client.swarm.flush()).await;
    assert_eq!(client.open().await, 0);
    assert_eq!(client.count.load(Ordering::SeqCst), 1);

    // The server's handshake-time ban refuses the client's dials.
    guard(client.swarm.unban(server.key())).await.unwrap();
    guard(server.swarm.ban(client.key())).await.unwrap();
    until("server dropped it", async || server.alive().is_empty()).await;
    guard(d.refresh(JoinOptions::client())).await.unwrap();
    guard(client.swarm.flush()).await;
    assert_eq!(client.open().await, 0);
    let st = client.swarm.status().await.unwrap();
    assert!(st.stats.client_attempted >= 2, "{st:?}");
    assert_eq!(st.stats.client_opened, 1);

    // Leave: the record is gone from the DHT.
    guard(server.swarm.leave(t)).await.unwrap();
    let found = guard(client.swarm.dht().lookup(t)).await.unwrap();
    assert!(
        !found
            .iter()
            .flat_map(|r| &r.peers)
            .any(|p| p.public_key == server.key()),
        "unannounced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_limit_stops_dialling() {
    let (boot, _nodes) = testnet().await;
    let t = topic("limit");
    let mut servers = Vec::new();
    for seed in 10..13 {
        let s = Peer::start(boot.addr(), seed, |_| {}).await;
        let d = guard(s.swarm.join(t, JoinOptions::server())).await.unwrap();
        guard(d.flushed()).await;
        servers.push(s);
    }
    let client = Peer::start(boot.addr(), 20, |c| c.max_peers = 2).await;
    guard(client.swarm.join(t, JoinOptions::client()))
        .await
        .unwrap();
    assert!(guard(client.swarm.flush()).await);
    let st = client.swarm.status().await.unwrap();
    assert_eq!(
        (st.connections, st.connecting, st.queued),
        (2, 0, 1),
        "{st:?}"
    );
    until("both handed over", async || {
        client.count.load(Ordering::SeqCst) == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_peer_connects_without_a_topic() {
    let (boot, _nodes) = testnet().await;
    let server = Peer::start(boot.addr(), 30, |_| {}).await;
    let client = Peer::start(boot.addr(), 31, |_| {}).await;
    guard(server.swarm.listen()).await.unwrap();
    guard(client.swarm.join_peer(server.key())).await.unwrap();
    until("connected", async || client.alive().len() == 1).await;
    assert!(client.alive()[0].info.explicit);
    guard(client.ping(server.key(), b" explicit")).await;
}

/// Ours: a client that joined before anyone announced finds the server once it does, through
/// the empty-lookup retry (JS would wait for the next refresh, 10 minutes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_lookup_is_retried_until_the_server_announces() {
    let (boot, _nodes) = testnet().await;
    let retry = peerhost_swarm::EmptyLookupRetry::new(
        Duration::from_millis(100),
        Duration::from_millis(400),
    );
    let client = Peer::start(boot.addr(), 21, |c| c.empty_lookup_retry = Some(retry)).await;
    let server = Peer::start(boot.addr(), 22, |_| {}).await;
    let t = topic("the client came first");
    let d = guard(client.swarm.join(t, JoinOptions::client()))
        .await
        .unwrap();
    assert!(guard(d.flushed()).await);
    assert_eq!(client.open().await, 0, "nobody announced yet");
    let s = guard(server.swarm.join(t, JoinOptions::server()))
        .await
        .unwrap();
    assert!(guard(s.flushed()).await);
    until("the retried lookup finds the server", async || {
        client.alive().len() == 1
    })
    .await;
    assert_eq!(client.alive()[0].remote, server.key());
    let st = guard(client.swarm.status()).await.unwrap();
    assert_eq!((st.client_topics, st.announced_topics), (1, 0));
    let st = guard(server.swarm.status()).await.unwrap();
    assert_eq!((st.client_topics, st.announced_topics), (0, 1));
}

/// Ours: the topic cap, and refreshes beyond `max_refreshes` wait their turn (every topic
/// still gets announced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_capped_and_refreshes_queued() {
    let (boot, _nodes) = testnet().await;
    let peer = Peer::start(boot.addr(), 23, |c| {
        c.max_topics = 6;
        c.max_refreshes = 2;
    })
    .await;
    let mut sessions = Vec::new();
    for i in 0..6 {
        let opts = JoinOptions::server().with_priority(i == 5);
        let d = guard(peer.swarm.join(topic(&format!("capped {i}")), opts))
            .await
            .unwrap();
        sessions.push(d);
    }
    let e = guard(
        peer.swarm
            .join(topic("one too many"), JoinOptions::server()),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, peerhost_swarm::Error::TooManyTopics), "{e}");
    // Joining a topic already joined is no new topic.
    guard(peer.swarm.join(topic("capped 0"), JoinOptions::client()))
        .await
        .unwrap();
    assert!(guard(peer.swarm.flush()).await);
    let st = guard(peer.swarm.status()).await.unwrap();
    assert_eq!((st.topics, st.announced_topics), (6, 6));
    // Another swarm finds every one of them.
    let other = Peer::start(boot.addr(), 24, |_| {}).await;
    for i in 0..6 {
        let found = guard(other.swarm.dht().lookup(topic(&format!("capped {i}"))))
            .await
            .unwrap();
        assert!(
            found
                .iter()
                .any(|r| r.peers.iter().any(|p| p.public_key == peer.key())),
            "topic {i} announced"
        );
    }
}
