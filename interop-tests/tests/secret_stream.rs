//! Live interop of `peerhost-noise` with @hyperswarm/secret-stream 6.9.2, noise-handshake 4.2.0
//! and hyperdht 6.34.0's `NoiseWrap`, over real loopback TCP, in both directions.
//!
//! The JS side is `secret-stream/peer.js` (see its header for the exchange); the Rust side is
//! [`SecretStream`] under the small blocking driver below. Every run checks that both sides
//! agree on the handshake hash and each other's static keys, that messages of 1 B, 1000 B,
//! 64 KiB, 1 MiB and the 16 MiB - 18 B maximum arrive intact both ways, and that keep-alives
//! flow both ways (JS's from its `setKeepAlive` timer, ours from `Config::keep_alive`).
//!
//! Run: `cargo test -p peerhost-interop-tests --test secret_stream` (needs Node 20 and
//! `npm ci` in `interop-tests/`).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use peerhost_ids::KeyPair;
use peerhost_ids::hash::blake2b256_keyed;
use peerhost_interop_tests::{node, repo_root, spawn_node};
use peerhost_noise::{Config, Event, Handshake, Pattern, SecretStream, stream_id};
use serde_json::Value;

/// The messages each side sends, as in peer.js; 0 is a keep-alive on the wire.
const SIZES: [usize; 6] = [1, 1000, 0, 65535, 1 << 20, peerhost_noise::MAX_MESSAGE_LEN];

/// hyperdht `NS.PEER_HANDSHAKE` (PROTOCOL-NOTES "Constants"), the IK prologue.
const NS_PEER_HANDSHAKE: &str = "14d6d4b49214ab1033ed204976caa258bae9e1e8543b9ad1fd996a910b0c4e3a";
/// hyperdht `NS.PEER_HOLEPUNCH`.
const NS_PEER_HOLEPUNCH: &str = "f1191cd5e67b10b54a507033280ed1ff0e12278268d5679c8f93d417210d168b";
/// A client `noisePayload`: addresses4 = [192.168.1.5:5000], udx id 0x12345678, secretStream.
const CLIENT_PAYLOAD: &str = "011a000001c0a8010588130100fe785634120001";

const JS_SEED: [u8; 32] = [0x4a; 32];
const RUST_SEED: [u8; 32] = [0x52; 32];

/// `body(n, k)` of common.js.
fn body(n: usize, k: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + n + k) & 255) as u8).collect()
}

fn config() -> Config {
    Config::default()
        .with_keep_alive(Duration::from_millis(100))
        .with_timeout(Duration::from_secs(30))
}

/// A running peer.js with its line protocol.
struct Js {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    seen: Vec<Value>,
}

impl Js {
    fn spawn(args: &[&str]) -> Self {
        let mut child = spawn_node("secret-stream/peer.js", args);
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
            seen: vec![],
        }
    }

    /// Read lines until the event `name` (panics on an `error` event or EOF).
    fn expect(&mut self, name: &str) -> Value {
        loop {
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("read peer.js stdout");
            assert!(
                n > 0,
                "peer.js exited before {name:?}; saw {:#?}",
                self.seen
            );
            let v: Value = serde_json::from_str(&line).expect("peer.js prints JSON lines");
            self.seen.push(v.clone());
            assert_ne!(v["event"], "error", "peer.js failed: {v}");
            if v["event"] == name {
                return v;
            }
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write peer.js stdin");
        stdin.flush().expect("flush");
    }

    /// Wait for a clean exit and return every event printed.
    fn finish(mut self) -> Vec<Value> {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout
            .read_to_string(&mut rest)
            .expect("read peer.js stdout");
        for line in rest.lines() {
            self.seen
                .push(serde_json::from_str(line).expect("JSON line"));
        }
        let status = self.child.wait().expect("wait for peer.js");
        assert!(
            status.success(),
            "peer.js: {status}; events {:#?}",
            self.seen
        );
        self.seen
    }

    fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
        events
            .iter()
            .find(|v| v["event"] == name)
            .unwrap_or_else(|| panic!("no {name:?} event in {events:#?}"))
    }
}

/// What the Rust side saw.
#[derive(Debug)]
struct Seen {
    messages: usize,
    keep_alives: usize,
    handshakes: usize,
    ended: bool,
}

/// The blocking test driver: one thread, one socket, the drain contract of [`SecretStream`].
/// Sends every message in [`SIZES`], checks the remote's arrive in order, and returns once the
/// remote ended after we saw all of them and at least two keep-alives.
fn drive(mut tcp: TcpStream, mut stream: SecretStream) -> (SecretStream, Seen) {
    tcp.set_nodelay(true).expect("nodelay");
    let start = Instant::now();
    for (k, &n) in SIZES.iter().enumerate() {
        stream.send(start, &body(n, k)).expect("send");
    }
    let expected: Vec<(usize, usize)> = SIZES
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(k, &n)| (n, k))
        .collect();
    let mut seen = Seen {
        messages: 0,
        keep_alives: 0,
        handshakes: 0,
        ended: false,
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "stalled: {seen:?}"
        );
        while let Some(t) = stream.poll_transmit() {
            tcp.write_all(&t).expect("write");
        }
        while let Some(ev) = stream.poll_event() {
            match ev {
                Event::Handshake { .. } => seen.handshakes += 1,
                Event::KeepAlive => seen.keep_alives += 1,
                Event::Message(m) => {
                    let (n, k) = expected[seen.messages];
                    assert_eq!(m.len(), n, "message {k} length");
                    assert!(m == body(n, k), "message {k} content");
                    seen.messages += 1;
                }
                Event::End => seen.ended = true,
                _ => {}
            }
        }
        if seen.ended && seen.messages == expected.len() && seen.keep_alives >= 2 {
            let _ = tcp.shutdown(Shutdown::Both);
            return (stream, seen);
        }
        let now = Instant::now();
        let wait = stream
            .poll_timeout()
            .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        tcp.set_read_timeout(Some(wait)).expect("read timeout");
        match tcp.read(&mut buf) {
            Ok(0) => stream.handle_eof().expect("clean end"),
            Ok(n) => stream
                .handle_input(Instant::now(), &buf[..n])
                .expect("input"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                stream.handle_timeout(Instant::now()).expect("timers")
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The checks every run shares: keys and hash agree, both sides got everything.
fn check_run(stream: &SecretStream, seen: &Seen, events: &[Value], rust_pk: &[u8; 32]) {
    let hs = Js::event(events, "handshake");
    assert_eq!(hs["remotePublicKey"], hex::encode(rust_pk));
    assert_eq!(
        hs["publicKey"],
        hex::encode(stream.remote_public_key().expect("remote key"))
    );
    assert_eq!(
        hs["handshakeHash"],
        hex::encode(stream.handshake_hash().expect("hash"))
    );
    assert_eq!(hs["isInitiator"], !stream.is_initiator());
    let done = Js::event(events, "done");
    assert_eq!(done["received"], 5, "JS got every message");
    assert!(
        done["emptyFrames"].as_u64() >= Some(2),
        "JS saw our keep-alives"
    );
    assert_eq!(seen.handshakes, 1);
    assert!(seen.keep_alives >= 2, "we saw JS keep-alives: {seen:?}");
    eprintln!(
        "handshake hash {} — JS saw {} empty frames, we saw {} keep-alives",
        hs["handshakeHash"], done["emptyFrames"], seen.keep_alives
    );
}

#[test]
fn rust_initiator_js_responder() {
    let mut js = Js::spawn(&["responder", "listen", "--timeout", "30000"]);
    let port = js.expect("listening")["port"].as_u64().expect("port");
    let tcp = TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    let kp = KeyPair::from_seed(&RUST_SEED);
    let pk = kp.public_key();
    let stream = SecretStream::new(true, kp, config(), Instant::now());
    let (stream, seen) = drive(tcp, stream);
    let events = js.finish();
    check_run(&stream, &seen, &events, &pk);
    assert_eq!(
        stream.remote_public_key(),
        Some(&KeyPair::from_seed(&JS_SEED).public_key())
    );
}

#[test]
fn js_initiator_rust_responder() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let js = Js::spawn(&["initiator", "connect", &port, "--timeout", "30000"]);
    let (tcp, _) = listener.accept().expect("accept");
    let kp = KeyPair::from_seed(&RUST_SEED);
    let pk = kp.public_key();
    let stream = SecretStream::new(false, kp, config(), Instant::now());
    let (stream, seen) = drive(tcp, stream);
    let events = js.finish();
    check_run(&stream, &seen, &events, &pk);
}

/// secret-stream's own `pattern: 'IK'` option (empty prologue, responder key known up front),
/// Rust initiator against a JS responder.
#[test]
fn ik_pattern_inside_secret_stream() {
    let mut js = Js::spawn(&[
        "responder",
        "listen",
        "--timeout",
        "30000",
        "--pattern",
        "IK",
    ]);
    let port = js.expect("listening")["port"].as_u64().expect("port");
    let tcp = TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    let kp = KeyPair::from_seed(&RUST_SEED);
    let pk = kp.public_key();
    let js_pk = KeyPair::from_seed(&JS_SEED).public_key();
    let hs = Handshake::new(Pattern::IK, true, kp, &[], Some(js_pk)).expect("IK");
    let stream = SecretStream::from_noise(hs, config(), Instant::now());
    let (stream, seen) = drive(tcp, stream);
    let events = js.finish();
    check_run(&stream, &seen, &events, &pk);
}

/// Check one side of a live IK run against what JS printed in its `ik` event.
fn check_ik(ours: &peerhost_noise::HandshakeResult, js: &Value, js_pk: &[u8; 32]) {
    assert_eq!(js["hash"], hex::encode(ours.hash()));
    assert_eq!(js["tx"], hex::encode(ours.rx()));
    assert_eq!(js["rx"], hex::encode(ours.tx()));
    assert_eq!(js["remotePublicKey"], hex::encode(ours.public_key()));
    assert_eq!(ours.remote_public_key(), js_pk);
    // > remoteId: NoiseSecretStream.id(this.handshake.hash, !this.isInitiator) — our own id.
    assert_eq!(
        js["remoteId"],
        hex::encode(stream_id(ours.hash(), ours.is_initiator()))
    );
    let ns = hex::decode(NS_PEER_HOLEPUNCH).expect("hex");
    assert_eq!(
        js["holepunchSecret"],
        hex::encode(blake2b256_keyed(ours.hash(), &[&ns]))
    );
}

/// HyperDHT's path with Rust as the client: IK (prologue `NS.PEER_HANDSHAKE`) against
/// hyperdht's `NoiseWrap` over stdin/stdout, then a secret stream started from the result on
/// both sides (`{ handshake }` in JS, [`SecretStream::from_handshake`] here) over TCP.
#[test]
fn ik_rust_client_then_stream_from_handshake() {
    let js_pk = KeyPair::from_seed(&JS_SEED).public_key();
    let mut js = Js::spawn(&["responder", "listen", "--timeout", "30000", "--ik", "-"]);
    let prologue = hex::decode(NS_PEER_HANDSHAKE).expect("hex");
    let kp = KeyPair::from_seed(&RUST_SEED);
    let pk = kp.public_key();
    let mut hs = Handshake::new(Pattern::IK, true, kp, &prologue, Some(js_pk)).expect("IK");
    let payload = hex::decode(CLIENT_PAYLOAD).expect("hex");
    js.send_line(&hex::encode(hs.write_message(&payload).expect("msg1")));
    let m2 = js.expect("ik-message")["message"]
        .as_str()
        .expect("hex")
        .to_owned();
    let their_payload = hs
        .read_message(&hex::decode(m2).expect("hex"))
        .expect("msg2");
    let ik = js.expect("ik");
    assert_eq!(
        ik["remotePayload"], CLIENT_PAYLOAD,
        "JS decoded our noisePayload"
    );
    assert_eq!(ik["remoteUdxId"], 0x1234_5678);
    assert_eq!(ik["payload"], hex::encode(&their_payload));
    let result = hs.into_result().expect("complete");
    check_ik(&result, &ik, &js_pk);

    let port = js.expect("listening")["port"].as_u64().expect("port");
    let tcp = TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    let stream = SecretStream::from_handshake(&result, config(), Instant::now());
    let (stream, seen) = drive(tcp, stream);
    let events = js.finish();
    check_run(&stream, &seen, &events, &pk);
}

/// HyperDHT's path with JS as the client and Rust as the server.
#[test]
fn ik_js_client_then_stream_from_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let kp = KeyPair::from_seed(&RUST_SEED);
    let pk = kp.public_key();
    let js_pk = KeyPair::from_seed(&JS_SEED).public_key();
    let mut js = Js::spawn(&[
        "initiator",
        "connect",
        &port,
        "--timeout",
        "30000",
        "--ik",
        &hex::encode(pk),
    ]);
    let prologue = hex::decode(NS_PEER_HANDSHAKE).expect("hex");
    let mut hs = Handshake::new(Pattern::IK, false, kp, &prologue, None).expect("IK");
    let m1 = js.expect("ik-message")["message"]
        .as_str()
        .expect("hex")
        .to_owned();
    let their_payload = hs
        .read_message(&hex::decode(m1).expect("hex"))
        .expect("msg1");
    assert_eq!(hs.remote_public_key(), Some(js_pk));
    let payload = hex::decode(CLIENT_PAYLOAD).expect("hex");
    js.send_line(&hex::encode(hs.write_message(&payload).expect("msg2")));
    let ik = js.expect("ik");
    assert_eq!(ik["payload"], hex::encode(&their_payload));
    assert_eq!(ik["remotePayload"], CLIENT_PAYLOAD);
    let result = hs.into_result().expect("complete");
    check_ik(&result, &ik, &js_pk);

    let (tcp, _) = listener.accept().expect("accept");
    let stream = SecretStream::from_handshake(&result, config(), Instant::now());
    let (stream, seen) = drive(tcp, stream);
    let events = js.finish();
    check_run(&stream, &seen, &events, &pk);
}

/// The committed vectors (`crates/noise/tests/fixtures/`) are exactly what the pinned JS
/// packages generate today.
#[test]
fn vectors_are_current() {
    let out = node("secret-stream/vectors.js", &[]);
    assert!(
        out.status.success(),
        "{}",
        peerhost_interop_tests::describe(&out)
    );
    let committed = std::fs::read(
        repo_root().join("crates/noise/tests/fixtures/vectors-secret-stream-6.9.2.json"),
    )
    .expect("committed vectors");
    assert!(
        out.stdout == committed,
        "regenerate: cd interop-tests && node secret-stream/vectors.js > \
         ../crates/noise/tests/fixtures/vectors-secret-stream-6.9.2.json"
    );
}
