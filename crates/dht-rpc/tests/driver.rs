//! The tokio driver over real loopback UDP, and over a custom [`Transport`] (the hook a UDX
//! socket uses). Limits are hang guards, not timing assertions.
#![cfg(feature = "tokio")]

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use peerhost_dht_rpc::driver::{BindOptions, Dht, Transport};
use peerhost_dht_rpc::{
    Commit, Config, NodeId, QueryParams, RequestOptions, RequestParams, messages,
};
use tokio::sync::{Mutex, mpsc};

const LIMIT: Duration = Duration::from_secs(60);

async fn guard<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("hang guard")
}

fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

/// A bootstrapper whose sockets are bound first, so its public address is exactly its server
/// socket's (no race for a "free" port).
async fn bootstrapper() -> (Dht, SocketAddrV4) {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let public = loopback(server.local_addr().expect("addr").port());
    let mut c = Config::bootstrapper(public);
    c.handle_user_commands = true;
    let dht = Dht::with_transport(c, server, client).expect("start");
    (dht, public)
}

fn echo(dht: &Dht) {
    let mut rx = dht.take_requests().expect("requests");
    tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            let _ = match inc.req.command {
                42 => {
                    let mut v = inc.req.value.clone().unwrap_or_default();
                    v.reverse();
                    inc.reply(Some(&v)).await
                }
                43 => inc.reply(None).await,
                _ => inc.error(messages::UNKNOWN_COMMAND).await,
            };
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_nodes_join_query_and_answer() {
    let (boot, public) = bootstrapper().await;
    echo(&boot);
    let mut joiners = Vec::new();
    for _ in 0..4 {
        let mut c = Config::with_bootstrap(vec![public]);
        c.ephemeral = Some(false);
        c.handle_user_commands = true;
        let dht = Dht::bind(c, BindOptions::host(Ipv4Addr::LOCALHOST))
            .await
            .expect("bind");
        echo(&dht);
        guard(dht.bootstrapped()).await;
        let info = dht.info().await.expect("info");
        let ours = loopback(dht.server_addr().port());
        assert!(!info.firewalled, "{info:?}");
        assert_eq!(info.id, Some(NodeId::from_addr(ours)));
        joiners.push(dht);
    }
    let found = guard(joiners[0].find_node([1; 32]))
        .await
        .expect("find_node");
    assert_eq!(found.closest_replies.len(), 4, "{found:?}");

    let r = guard(joiners[1].request(
        public,
        RequestParams {
            command: 42,
            value: Some(b"xyz".to_vec()),
            ..Default::default()
        },
        RequestOptions::default(),
    ))
    .await
    .expect("reply");
    assert_eq!(r.value.as_deref(), Some(&b"zyx"[..]));
    assert_eq!(r.from_id, Some(NodeId::from_addr(public)));

    let mut p = QueryParams::new([9; 32], 43);
    p.commit = Commit::Auto;
    let res = guard(joiners[2].query(p)).await.expect("commit");
    assert_eq!(res.commits.len(), res.closest_replies.len());
    assert_eq!(res.commits.len(), 4);

    let mut stream = joiners[3].query_stream(QueryParams::new([5; 32], 42)).await;
    let mut replies = 0;
    while let Some(r) = guard(stream.next_reply()).await {
        assert_eq!(r.error, 0);
        replies += 1;
    }
    assert!(replies >= 4);
    assert!(guard(stream.finish()).await.is_ok());

    // A dead destination times out after its retries.
    let dead = loopback(1);
    let r = guard(joiners[0].request(
        dead,
        RequestParams::default(),
        RequestOptions {
            retries: 0,
            timeout: Duration::from_millis(50),
            ..RequestOptions::default()
        },
    ))
    .await;
    assert_eq!(r, Err(peerhost_dht_rpc::RequestError::Timeout));

    for d in joiners {
        d.destroy().await;
    }
    boot.destroy().await;
}

type Datagram = (Vec<u8>, SocketAddr);
/// Every in-memory socket by address.
type Net = Arc<std::sync::Mutex<Vec<(SocketAddr, mpsc::Sender<Datagram>)>>>;

/// An in-memory "socket": what a UDX socket's non-UDX datagram channel looks like.
struct ChannelSocket {
    addr: SocketAddr,
    rx: Mutex<mpsc::Receiver<Datagram>>,
    net: Net,
}

impl Transport for ChannelSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (data, from) = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok((n, from))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<()> {
        let tx = self
            .net
            .lock()
            .expect("net")
            .iter()
            .find(|(a, _)| *a == target)
            .map(|(_, tx)| tx.clone());
        if let Some(tx) = tx {
            let _ = tx.try_send((buf.to_vec(), self.addr));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_transport_carries_the_protocol() {
    let net: Net = Arc::default();
    let socket = |port: u16| {
        let addr = SocketAddr::V4(loopback(port));
        let (tx, rx) = mpsc::channel(256);
        net.lock().expect("net").push((addr, tx));
        ChannelSocket {
            addr,
            rx: Mutex::new(rx),
            net: net.clone(),
        }
    };
    let mut c = Config::bootstrapper(loopback(7000));
    c.handle_user_commands = true;
    let a = Dht::with_transport(c, socket(7000), socket(7001)).expect("a");
    echo(&a);
    let mut c = Config::with_bootstrap(vec![loopback(7000)]);
    c.ephemeral = Some(false);
    let b = Dht::with_transport(c, socket(8000), socket(8001)).expect("b");
    guard(b.bootstrapped()).await;
    let info = b.info().await.expect("info");
    assert_eq!(info.id, Some(NodeId::from_addr(loopback(8000))), "{info:?}");
    let r = guard(b.request(
        loopback(7000),
        RequestParams {
            command: 42,
            value: Some(vec![1, 2]),
            ..Default::default()
        },
        RequestOptions::default(),
    ))
    .await
    .expect("reply");
    assert_eq!(r.value, Some(vec![2, 1]));
    // b's requests carried its id: a knows it.
    let info = a.info().await.expect("info");
    assert!(info.nodes.contains(&loopback(8000)), "{info:?}");
}
