//! Live interop of `peerhost-udx` with udx-native 1.21.3 (libudx) over real loopback UDP.
//!
//! The JS side is `udx/peer.js` (see its header for the command protocol); the Rust side is
//! the `peerhost_udx::driver` tokio driver. Checked here:
//! - 10 MiB each way at the same time, SHA-256 on both ends, then a clean close on both sides
//!   (both ENDs acknowledged, no error event in JS);
//! - half-close both ways: one side ends first and keeps reading until the other ends;
//! - DESTROY both ways: the other side fails with `ECONNRESET`;
//! - unreliable stream messages both ways;
//! - socket sharing: non-UDX datagrams (a dht-rpc-looking datagram, a UDX header for an unknown
//!   stream id) reach the application hook on both sides while streams run;
//! - the firewall path HyperDHT uses: a JS stream without a remote connects to the source of
//!   our first packet;
//! - MTU probing: our padded probes are accepted by libudx (our MTU rises above 1200) and
//!   libudx's padded probes are accepted by us (its MTU rises too).
//!
//! Nothing asserts on timing; the limits below only stop a hung run.
//!
//! Run: `cargo test -p peerhost-interop-tests --test udx` (needs Node 20 and `npm ci` in
//! `interop-tests/`).

use std::net::SocketAddr;
use std::time::Duration;

use peerhost_interop_tests::NodePeer;
use peerhost_udx::StreamConfig;
use peerhost_udx::driver::{Socket, Stream};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// Hang guard for one step.
const LIMIT: Duration = Duration::from_secs(120);
const TEN_MIB: usize = 10 << 20;

/// The pattern peer.js writes: byte i = (i*31 + i/1024 + seed) & 0xff.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) + i / 1024 + seed) as u8)
        .collect()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

struct Setup {
    rt: Runtime,
    socket: Socket,
    js: NodePeer,
    js_addr: SocketAddr,
}

fn setup() -> Setup {
    let rt = runtime();
    let socket = rt
        .block_on(Socket::bind("127.0.0.1:0".parse().expect("addr")))
        .expect("bind");
    let mut js = NodePeer::spawn("udx/peer.js", &[]);
    let ready = js.wait_for(LIMIT, |v| v["event"] == "ready");
    let port = ready["port"].as_u64().expect("port") as u16;
    Setup {
        rt,
        socket,
        js,
        js_addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

impl Setup {
    /// A connected pair: our stream `ours` <-> JS stream `theirs`.
    fn stream(&mut self, ours: u32, theirs: u32) -> Stream {
        let s = self
            .socket
            .create_stream(ours, StreamConfig::default())
            .expect("create");
        s.connect(theirs, self.js_addr).expect("connect");
        self.js.send(json!({
            "cmd": "stream", "id": theirs, "remoteId": ours, "port": self.socket.local_addr().port()
        }));
        self.js
            .wait_for(LIMIT, |v| v["event"] == "stream" && v["id"] == theirs);
        s
    }

    fn event(&mut self, name: &str, id: u32) -> Value {
        self.js
            .wait_for(LIMIT, |v| v["event"] == name && v["id"] == id)
    }

    fn no_js_errors(&self) {
        let errors: Vec<&Value> = self
            .js
            .seen
            .iter()
            .filter(|v| v["event"] == "error")
            .collect();
        assert!(errors.is_empty(), "JS errors: {errors:?}");
    }
}

async fn read_all(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut v = Vec::new();
    stream.read_to_end(&mut v).await.expect("read");
    v
}

#[test]
fn ten_mib_each_way_at_once_then_clean_close() {
    let mut s = setup();
    let stream = s.stream(1, 2);
    let ours = pattern(TEN_MIB, 1);
    let ours_sha = sha(&ours);
    s.js.send(json!({"cmd": "write", "id": 2, "len": TEN_MIB, "seed": 2, "end": true}));
    let task = s.rt.spawn(async move {
        let (mut r, mut w) = tokio::io::split(stream);
        let writer = tokio::spawn(async move {
            w.write_all(&ours).await.expect("write");
            w.shutdown().await.expect("END acknowledged");
            w
        });
        let got = read_all(&mut r).await;
        let w = writer.await.expect("writer");
        let stream = r.unsplit(w);
        let closed = tokio::time::timeout(LIMIT, stream.closed()).await;
        (got, stream.info(), closed)
    });
    let written = s.event("written", 2);
    let end = s.event("end", 2);
    assert_eq!(end["received"], TEN_MIB, "JS received {end}");
    assert_eq!(end["sha256"], ours_sha, "JS got different bytes");
    let (got, info, closed) = s.rt.block_on(task).expect("task");
    assert_eq!(got.len(), TEN_MIB);
    assert_eq!(sha(&got), written["sha256"], "we got different bytes");
    assert_eq!(sha(&got), sha(&pattern(TEN_MIB, 2)));
    assert_eq!(closed.expect("closed in time"), Ok(()));
    let close = s.event("close", 2);
    s.no_js_errors();
    // MTU probing both ways: our padded probes were acked by libudx, and libudx's padded
    // probes were acked by us.
    let info = info.expect("info");
    assert!(info.mtu > 1200, "our mtu {info:?}");
    assert!(close["mtu"].as_u64().expect("mtu") > 1200, "JS mtu {close}");
}

#[test]
fn rust_ends_first_and_keeps_reading() {
    let mut s = setup();
    let stream = s.stream(3, 4);
    let ours = pattern(TEN_MIB, 3);
    let ours_sha = sha(&ours);
    let (r, mut w) = tokio::io::split(stream);
    s.rt.block_on(async {
        w.write_all(&ours).await.expect("write");
        w.shutdown().await.expect("END acknowledged");
    });
    let end = s.event("end", 4);
    assert_eq!(end["sha256"], ours_sha);
    // Our side is half-closed: still open for reading.
    let stream = r.unsplit(w);
    assert!(stream.info().is_some());
    s.js.send(json!({"cmd": "write", "id": 4, "len": 1000, "seed": 4, "end": true}));
    let (got, closed) = s.rt.block_on(async {
        let mut stream = stream;
        let got = read_all(&mut stream).await;
        let closed = tokio::time::timeout(LIMIT, stream.closed()).await;
        (got, closed)
    });
    assert_eq!(got, pattern(1000, 4));
    assert_eq!(closed.expect("closed in time"), Ok(()));
    s.event("close", 4);
    s.no_js_errors();
}

#[test]
fn js_ends_first_and_keeps_reading() {
    let mut s = setup();
    let mut stream = s.stream(5, 6);
    s.js.send(json!({"cmd": "write", "id": 6, "len": TEN_MIB, "seed": 6, "end": true}));
    let got = s.rt.block_on(read_all(&mut stream));
    assert_eq!(sha(&got), sha(&pattern(TEN_MIB, 6)));
    // JS ended; its stream still reads what we send, then closes when our END is acked.
    let ours = pattern(TEN_MIB, 5);
    let ours_sha = sha(&ours);
    let closed = s.rt.block_on(async {
        stream.write_all(&ours).await.expect("write");
        stream.shutdown().await.expect("END acknowledged");
        tokio::time::timeout(LIMIT, stream.closed()).await
    });
    assert_eq!(closed.expect("closed in time"), Ok(()));
    let end = s.event("end", 6);
    assert_eq!(end["sha256"], ours_sha);
    s.event("close", 6);
    s.no_js_errors();
}

#[test]
fn destroy_resets_the_other_side_both_ways() {
    let mut s = setup();
    // We destroy: JS gets ECONNRESET.
    let mut a = s.stream(7, 8);
    s.js.send(json!({"cmd": "write", "id": 8, "len": 5000, "seed": 8, "end": false}));
    let mut buf = vec![0u8; 5000];
    s.rt.block_on(a.read_exact(&mut buf)).expect("read");
    assert_eq!(buf, pattern(5000, 8));
    a.destroy();
    let err = s.event("error", 8);
    assert_eq!(err["code"], "ECONNRESET");
    s.event("close", 8);
    assert_eq!(s.rt.block_on(a.closed()), Ok(()));

    // JS destroys: we get ECONNRESET, from reads and from `closed`.
    let mut b = s.stream(9, 10);
    s.rt.block_on(b.write_all(b"hello")).expect("write");
    s.js.send(json!({"cmd": "destroy", "id": 10}));
    let closed =
        s.rt.block_on(async { tokio::time::timeout(LIMIT, b.closed()).await })
            .expect("closed in time");
    assert_eq!(closed.map_err(|e| e.code()), Err("ECONNRESET"));
    let read = s.rt.block_on(b.read(&mut buf));
    assert_eq!(
        read.expect_err("reset").kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[test]
fn messages_and_socket_sharing() {
    let mut s = setup();
    let stream = s.stream(11, 12);
    // Stream messages both ways (udx MESSAGE packets, `stream.send` / `on('message')`).
    stream.send_message(b"from rust").expect("send");
    let m = s.event("message", 12);
    assert_eq!(m["data"], hex::encode(b"from rust"));
    s.js.send(json!({"cmd": "send", "id": 12, "data": hex::encode(b"from js")}));
    let got =
        s.rt.block_on(async { tokio::time::timeout(LIMIT, stream.recv_message()).await })
            .expect("message in time");
    assert_eq!(got.as_deref(), Some(&b"from js"[..]));

    // Non-UDX datagrams on the sockets the streams use reach the application on both sides:
    // a dht-rpc response header, a 1-byte holepunch probe, and a UDX header for an unknown id.
    let mut unknown = vec![0xff, 0x01, 0x01, 0x00];
    unknown.extend_from_slice(&999u32.to_le_bytes());
    unknown.extend_from_slice(&[0; 12]);
    unknown.extend_from_slice(b"x");
    let ours: [Vec<u8>; 3] = [vec![0x13, 0x00, 0x01, 0x02], vec![0x00], unknown.clone()];
    for d in &ours {
        s.rt.block_on(s.socket.send_datagram(d, s.js_addr))
            .expect("send datagram");
    }
    for d in &ours {
        let hexd = hex::encode(d);
        let ev = s.js.wait_for(LIMIT, |v| {
            v["event"] == "dgram" && v["data"] == hexd.as_str()
        });
        assert_eq!(ev["port"], s.socket.local_addr().port());
    }
    let port = s.socket.local_addr().port();
    for d in [&[0x03u8, 0x04, 0x16, 0xd6][..], &unknown[..]] {
        s.js.send(json!({"cmd": "dgram", "port": port, "data": hex::encode(d)}));
        let (got, from) =
            s.rt.block_on(async { tokio::time::timeout(LIMIT, s.socket.recv_datagram()).await })
                .expect("datagram in time")
                .expect("socket open");
        assert_eq!(got, d);
        assert_eq!(from, s.js_addr);
    }

    // The stream still works after all that.
    let mut stream = stream;
    s.rt.block_on(async {
        stream.write_all(b"still here").await.expect("write");
        stream.shutdown().await.expect("end");
    });
    let end = s.event("end", 12);
    assert_eq!(end["sha256"], sha(b"still here"));
    s.no_js_errors();
}

#[test]
fn js_firewall_connects_to_our_first_packet() {
    let mut s = setup();
    // A JS stream with no remote: its firewall connects it to the first packet's source,
    // the way HyperDHT binds raw streams.
    s.js.send(json!({"cmd": "stream", "id": 14, "remoteId": 13}));
    s.event("stream", 14);
    let mut stream = s
        .socket
        .create_stream(13, StreamConfig::default())
        .expect("create");
    stream.connect(14, s.js_addr).expect("connect");
    s.rt.block_on(async {
        stream.write_all(b"knock knock").await.expect("write");
        stream.shutdown().await.expect("end");
    });
    let connected = s.event("connected", 14);
    assert_eq!(connected["port"], s.socket.local_addr().port());
    let end = s.event("end", 14);
    assert_eq!(end["sha256"], sha(b"knock knock"));
    s.js.send(json!({"cmd": "end", "id": 14}));
    let (got, closed) = s.rt.block_on(async {
        let got = read_all(&mut stream).await;
        (got, tokio::time::timeout(LIMIT, stream.closed()).await)
    });
    assert!(got.is_empty());
    assert_eq!(closed.expect("closed in time"), Ok(()));
    s.event("close", 14);
    s.no_js_errors();
}
