//! Our protomux against the real protomux 3.12.1, live.
//!
//! Without secret-stream, the two meet over a loopback TCP socket carrying one message per
//! frame with a uint24le length prefix. The JS side (`protomux/peer.js`) runs `new
//! Protomux(framed)` and takes commands as JSON lines; this file drives both sides step by step
//! and checks what each side sees, and the exact bytes JS writes where the format matters.
//!
//! `frames_match_js` replays the scenarios of `protomux/frames.js` (protomux over a stream that
//! records its writes) on our mux and compares every frame and every error.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use peerhost_interop_tests::{describe, node, spawn_node};
use peerhost_protomux::frame::{BatchEncoder, Open, encode_entry};
use peerhost_protomux::{ChannelHandle, Error, Event, Mux};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Byte i of a body of length n with seed k is (i * 31 + n + k) & 255 (as in peer.js).
fn body(n: usize, k: u64) -> Vec<u8> {
    (0..n)
        .map(|i| ((i as u64 * 31 + n as u64 + k) & 255) as u8)
        .collect()
}

/// Our mux on one end of the socket, the JS peer on the other.
struct Harness {
    mux: Mux,
    sock: TcpStream,
    frames: Receiver<Option<Vec<u8>>>,
    /// Every frame JS sent us, in order.
    received: Vec<Vec<u8>>,
    /// Every frame we sent, in order.
    sent: Vec<Vec<u8>>,
    rust_events: VecDeque<Event>,
    /// The error `handle_input` returned, if any.
    error: Option<Error>,
    eof: bool,
    /// Whether the driver honours `is_paused` (stops reading).
    honour_pause: bool,
    was_paused: bool,
    child: Child,
    stdin: ChildStdin,
    js: Receiver<Value>,
    js_events: VecDeque<Value>,
    js_log: Vec<Value>,
}

impl Harness {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let mut child = spawn_node("protomux/peer.js", &[&port]);
        let (sock, _) = listener.accept().unwrap();
        sock.set_nodelay(true).unwrap();

        // One reader thread per input: socket frames, JS stdout lines. Bounded channels.
        let (ftx, frames) = sync_channel(1024);
        let mut rd = sock.try_clone().unwrap();
        std::thread::spawn(move || {
            loop {
                let mut head = [0u8; 3];
                if rd.read_exact(&mut head).is_err() {
                    let _ = ftx.send(None);
                    return;
                }
                let n = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
                let mut msg = vec![0; n];
                if rd.read_exact(&mut msg).is_err() || ftx.send(Some(msg)).is_err() {
                    let _ = ftx.send(None);
                    return;
                }
            }
        });
        let (jtx, js) = sync_channel(1024);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({ "ev": "garbage", "line": line }));
                if jtx.send(v).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut h = Self {
            mux: Mux::default(),
            sock,
            frames,
            received: Vec::new(),
            sent: Vec::new(),
            rust_events: VecDeque::new(),
            error: None,
            eof: false,
            honour_pause: true,
            was_paused: false,
            child,
            stdin,
            js,
            js_events: VecDeque::new(),
            js_log: Vec::new(),
        };
        h.js_expect("ready");
        h
    }

    fn js(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Write what the mux queued, read what arrived (for up to `wait`), gather JS events.
    fn pump(&mut self, wait: Duration) {
        while let Some(f) = self.mux.poll_transmit() {
            self.write_frame(&f);
        }
        while let Ok(v) = self.js.try_recv() {
            self.js_log.push(v.clone());
            self.js_events.push_back(v);
        }
        if self.eof || (self.honour_pause && self.mux.is_paused()) {
            self.was_paused |= self.mux.is_paused();
            std::thread::sleep(wait);
            return;
        }
        match self.frames.recv_timeout(wait) {
            Ok(Some(f)) => {
                self.received.push(f.clone());
                if let Err(e) = self.mux.handle_input(&f) {
                    self.error.get_or_insert(e);
                }
                while let Some(e) = self.mux.poll_event() {
                    self.rust_events.push_back(e);
                }
                while let Some(f) = self.mux.poll_transmit() {
                    self.write_frame(&f);
                }
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => self.eof = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        while let Some(e) = self.mux.poll_event() {
            self.rust_events.push_back(e);
        }
    }

    fn write_frame(&mut self, f: &[u8]) {
        let n = u32::try_from(f.len()).unwrap();
        assert!(n < 1 << 24);
        let mut buf = n.to_le_bytes()[..3].to_vec();
        buf.extend_from_slice(f);
        self.sent.push(f.to_vec());
        // The JS side may have hung up already (hostile tests); that is checked elsewhere.
        let _ = self.sock.write_all(&buf);
    }

    fn context(&self) -> String {
        format!(
            "rust events left: {:?}\nrust error: {:?}\njs log: {:#?}",
            self.rust_events, self.error, self.js_log
        )
    }

    /// The next event of our mux (in order).
    fn rust_next(&mut self) -> Event {
        let start = Instant::now();
        loop {
            if let Some(e) = self.rust_events.pop_front() {
                return e;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "no rust event\n{}",
                self.context()
            );
            self.pump(Duration::from_millis(20));
        }
    }

    /// The next JS event (in order), which must be of kind `ev`.
    fn js_expect(&mut self, ev: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.js_events.pop_front() {
                assert_eq!(v["ev"], ev, "unexpected JS event\n{}", self.context());
                return v;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "no JS event {ev}\n{}",
                self.context()
            );
            self.pump(Duration::from_millis(20));
        }
    }

    /// Let both sides run until JS has executed every command sent so far and the wire is
    /// quiet for a moment.
    fn settle(&mut self) {
        self.js(json!({ "op": "sync", "tag": 0 }));
        self.js_expect_skipping("sync");
        for _ in 0..10 {
            self.pump(Duration::from_millis(20));
        }
    }

    /// The first JS event of kind `ev`, leaving the others in order for later checks.
    fn js_expect_skipping(&mut self, ev: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some(at) = self.js_events.iter().position(|v| v["ev"] == ev) {
                return self.js_events.remove(at).unwrap();
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "no JS event {ev}\n{}",
                self.context()
            );
            self.pump(Duration::from_millis(20));
        }
    }

    fn assert_quiet(&mut self) {
        self.settle();
        assert!(
            self.rust_events.is_empty() && self.js_events.is_empty() && self.error.is_none(),
            "expected nothing more\n{}",
            self.context()
        );
    }

    /// A channel opened by JS (`name`) and accepted by us.
    fn js_opened(&mut self, name: &str, protocol: &str, id: Option<&[u8]>) -> ChannelHandle {
        self.mux.pair(protocol, id);
        self.js(json!({
            "op": "open", "name": name, "protocol": protocol,
            "id": id.map(hex::encode), "handshake": hex::encode(name),
        }));
        match self.rust_next() {
            Event::RemoteOpen {
                protocol: p,
                id: i,
                handshake,
            } => {
                assert_eq!((p.as_str(), i.as_deref()), (protocol, id));
                assert_eq!(handshake, name.as_bytes());
            }
            e => panic!("expected RemoteOpen, got {e:?}"),
        }
        let ch = self.mux.open(protocol, id, b"rust").unwrap();
        assert!(matches!(self.rust_next(), Event::ChannelOpened { channel, .. } if channel == ch));
        let v = self.js_expect("open");
        assert_eq!(
            (v["name"].as_str(), v["handshake"].as_str()),
            (Some(name), Some("72757374"))
        );
        ch
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SIZES: &[usize] = &[0, 1, 252, 253, 65_536, 1_000_000];

#[test]
fn js_opens_first_and_we_accept() {
    let mut h = Harness::new();
    h.mux.pair("peerhost/test", None);
    h.js(json!({
        "op": "open", "name": "a", "protocol": "peerhost/test",
        "id": "0102", "handshake": "4a53",
    }));
    assert_eq!(
        h.rust_next(),
        Event::RemoteOpen {
            protocol: "peerhost/test".into(),
            id: Some(vec![1, 2]),
            handshake: b"JS".to_vec()
        }
    );
    // JS's first frame is its open, byte for byte.
    let open = Open {
        local_id: 1,
        protocol: "peerhost/test".into(),
        id: Some(&[1, 2]),
        handshake: b"JS",
    };
    assert_eq!(h.received, [open.encode()]);

    let ch = h.mux.open("peerhost/test", Some(&[1, 2]), b"RS").unwrap();
    assert!(
        matches!(h.rust_next(), Event::ChannelOpened { channel, handshake, .. }
        if channel == ch && handshake == b"JS")
    );
    let v = h.js_expect("open");
    assert_eq!(v["handshake"], "5253");

    // Messages of every type and several sizes, both ways.
    for (ty, n) in SIZES.iter().enumerate() {
        h.js(json!({ "op": "send", "name": "a", "type": ty, "len": n }));
        h.mux.send(ch, ty as u64, &body(*n, ty as u64)).unwrap();
    }
    for (ty, n) in SIZES.iter().enumerate() {
        assert_eq!(
            h.rust_next(),
            Event::Message {
                channel: ch,
                message_type: ty as u64,
                payload: body(*n, ty as u64)
            }
        );
        let v = h.js_expect("message");
        assert_eq!(
            (v["type"].as_u64(), v["len"].as_u64()),
            (Some(ty as u64), Some(*n as u64))
        );
        assert_eq!(v["ok"], true, "{v}");
    }

    // JS closes.
    h.js(json!({ "op": "close", "name": "a" }));
    assert_eq!(h.js_expect("close")["remote"], false);
    assert_eq!(
        h.rust_next(),
        Event::ChannelClosed {
            channel: ch,
            remote: true
        }
    );
    assert!(h.mux.is_idle());
    h.assert_quiet();
}

#[test]
fn we_open_first_and_js_pairs() {
    let mut h = Harness::new();
    h.js(json!({
        "op": "pair", "protocol": "peerhost/test", "id": null,
        "mode": "accept", "name": "b", "handshake": "4a53",
    }));
    h.settle();
    let ch = h.mux.open("peerhost/test", Some(&[7]), b"RS").unwrap();
    // Sent before JS answered: JS buffers it until its channel exists.
    h.mux.send(ch, 3, b"early").unwrap();
    assert_eq!(h.js_expect("notify")["id"], "07");
    assert_eq!(h.js_expect("open")["handshake"], "5253");
    let v = h.js_expect("message");
    assert_eq!(
        (v["type"].as_u64(), v["hex"].as_str()),
        (Some(3), Some("6561726c79"))
    );
    assert!(
        matches!(h.rust_next(), Event::ChannelOpened { channel, handshake, .. }
        if channel == ch && handshake == b"JS")
    );

    for (ty, n) in SIZES.iter().enumerate() {
        h.js(json!({ "op": "send", "name": "b", "type": ty, "len": n }));
        h.mux.send(ch, ty as u64, &body(*n, ty as u64)).unwrap();
    }
    for (ty, n) in SIZES.iter().enumerate() {
        assert_eq!(
            h.rust_next(),
            Event::Message {
                channel: ch,
                message_type: ty as u64,
                payload: body(*n, ty as u64)
            }
        );
        assert_eq!(h.js_expect("message")["ok"], true);
    }

    // We close.
    assert!(h.mux.close(ch));
    assert_eq!(
        h.rust_next(),
        Event::ChannelClosed {
            channel: ch,
            remote: false
        }
    );
    assert_eq!(h.js_expect("close")["remote"], true);
    h.assert_quiet();
    assert!(h.mux.is_idle());
}

#[test]
fn crossing_opens_pair() {
    let mut h = Harness::new();
    // Both open before either has read the other's open.
    h.js(json!({ "op": "open", "name": "x", "protocol": "cross", "id": null, "handshake": "01" }));
    let ch = h.mux.open("cross", None, b"\x02").unwrap();
    h.pump(Duration::ZERO);
    assert!(
        matches!(h.rust_next(), Event::ChannelOpened { channel, handshake, .. }
        if channel == ch && handshake == [1])
    );
    assert_eq!(h.js_expect("open")["handshake"], "02");
    h.mux.send(ch, 1, b"r").unwrap();
    h.js(json!({ "op": "send", "name": "x", "type": 2, "hex": "6a" }));
    assert_eq!(h.js_expect("message")["hex"], "72");
    assert_eq!(
        h.rust_next(),
        Event::Message {
            channel: ch,
            message_type: 2,
            payload: b"j".to_vec()
        }
    );
    h.assert_quiet();
}

#[test]
fn js_batch_reaches_us_as_one_frame() {
    let mut h = Harness::new();
    let c1 = h.js_opened("c1", "batch", Some(b"1"));
    let c2 = h.js_opened("c2", "batch", Some(b"2"));
    h.mux.pair("batch", None);
    h.settle();
    let before = h.received.len();

    h.js(json!({ "op": "cork" }));
    h.js(json!({ "op": "send", "name": "c1", "type": 1, "hex": "aa" }));
    h.js(json!({ "op": "send", "name": "c2", "type": 2, "hex": "bb" }));
    h.js(json!({ "op": "open", "name": "c3", "protocol": "batch", "id": "33", "handshake": "" }));
    h.js(json!({ "op": "send", "name": "c3", "type": 0, "hex": "cc" }));
    h.js(json!({ "op": "send", "name": "c1", "type": 3, "hex": "dd" }));
    h.js(json!({ "op": "uncork" }));
    let msg = |channel, message_type, payload: u8| Event::Message {
        channel,
        message_type,
        payload: vec![payload],
    };
    assert_eq!(h.rust_next(), msg(c1, 1, 0xaa));
    h.settle();

    // Exactly one frame, the batch our encoder builds for the same calls.
    let open3 = Open {
        local_id: 3,
        protocol: "batch".into(),
        id: Some(b"3"),
        handshake: b"",
    }
    .encode();
    let mut b = BatchEncoder::new(peerhost_protomux::MAX_BATCH);
    b.push(1, encode_entry(1, &[0xaa]));
    b.push(2, encode_entry(2, &[0xbb]));
    b.push(0, open3[1..].to_vec());
    b.push(3, encode_entry(0, &[0xcc]));
    b.push(1, encode_entry(3, &[0xdd]));
    assert_eq!(h.received[before..], [b.finish().unwrap()]);

    assert_eq!(h.rust_next(), msg(c2, 2, 0xbb));
    assert!(matches!(h.rust_next(), Event::RemoteOpen { .. }));
    assert_eq!(h.rust_next(), msg(c1, 3, 0xdd));
    // c3's message waited for our answer.
    let c3 = h.mux.open("batch", Some(b"3"), b"").unwrap();
    assert!(matches!(h.rust_next(), Event::ChannelOpened { channel, .. } if channel == c3));
    assert_eq!(h.rust_next(), msg(c3, 0, 0xcc));
    assert_eq!(h.js_expect("open")["name"], "c3");
    h.assert_quiet();
}

#[test]
fn our_batch_reaches_js() {
    let mut h = Harness::new();
    let c1 = h.js_opened("c1", "batch", None);
    h.js(json!({
        "op": "pair", "protocol": "batch", "id": "62", "mode": "accept", "name": "c2",
    }));
    h.settle();

    h.mux.cork();
    h.mux.send(c1, 4, b"one").unwrap();
    let c2 = h.mux.open("batch", Some(b"b"), b"hs").unwrap();
    h.mux.send(c2, 5, b"two").unwrap();
    h.mux.send(c2, 6, b"three").unwrap();
    h.mux.send(c1, 7, &body(70_000, 7)).unwrap();
    h.mux.uncork();
    let frames: Vec<_> = std::iter::from_fn(|| h.mux.poll_transmit()).collect();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0][..2], [0, 0]);
    h.write_frame(&frames[0]);

    let v = h.js_expect("message");
    assert_eq!(
        (v["name"].as_str(), v["hex"].as_str()),
        (Some("c1"), Some("6f6e65"))
    );
    assert_eq!(h.js_expect("notify")["id"], "62");
    // JS answers the open in the batch only after its notify callback resolves, so c2's
    // messages are buffered, and c1's last message is delivered first.
    let v = h.js_expect("message");
    assert_eq!(
        (v["name"].as_str(), v["ok"].as_bool()),
        (Some("c1"), Some(true))
    );
    assert_eq!(h.js_expect("open")["handshake"], "6873");
    for (ty, hex) in [(5, "74776f"), (6, "7468726565")] {
        let v = h.js_expect("message");
        assert_eq!(
            (v["name"].as_str(), v["type"].as_u64()),
            (Some("c2"), Some(ty))
        );
        assert_eq!(v["hex"], hex);
    }
    assert!(matches!(h.rust_next(), Event::ChannelOpened { channel, .. } if channel == c2));
    h.assert_quiet();
}

#[test]
fn rejects_both_ways() {
    let mut h = Harness::new();

    // JS opens a protocol nobody here listens to: we reject at once; JS closes it unopened.
    h.js(json!({ "op": "open", "name": "u", "protocol": "nobody/here", "id": null }));
    assert_eq!(h.js_expect("close")["remote"], true);
    assert!(h.rust_events.is_empty());

    // We open a protocol JS has no pair for: JS rejects.
    let ch = h.mux.open("nobody/there", None, b"").unwrap();
    assert_eq!(
        h.rust_next(),
        Event::Rejected {
            channel: ch,
            protocol: "nobody/there".into(),
            id: None
        }
    );

    // JS pairs but its notify declines: rejected after the callback.
    h.js(json!({ "op": "pair", "protocol": "maybe", "id": null, "mode": "reject" }));
    h.settle();
    let ch = h.mux.open("maybe", Some(b"m"), b"").unwrap();
    h.js_expect("notify");
    assert!(matches!(h.rust_next(), Event::Rejected { channel, .. } if channel == ch));

    // We pair, then our app declines.
    h.mux.pair("maybe2", None);
    h.js(json!({ "op": "open", "name": "m2", "protocol": "maybe2", "id": null }));
    assert!(matches!(h.rust_next(), Event::RemoteOpen { .. }));
    assert_eq!(h.mux.reject("maybe2", None), 1);
    assert_eq!(h.js_expect("close")["remote"], true);

    // Two unknown opens in one JS batch: we answer with one batch of two rejects.
    h.settle();
    let before = h.sent.len();
    h.js(json!({ "op": "cork" }));
    h.js(json!({ "op": "open", "name": "u1", "protocol": "nobody/1", "id": null }));
    h.js(json!({ "op": "open", "name": "u2", "protocol": "nobody/2", "id": null }));
    h.js(json!({ "op": "uncork" }));
    let v1 = h.js_expect("close");
    let v2 = h.js_expect("close");
    assert_eq!(
        (v1["name"].as_str(), v2["name"].as_str()),
        (Some("u1"), Some("u2"))
    );
    assert_eq!(h.sent.len(), before + 1);
    let reply = &h.sent[before];
    assert_eq!(
        reply[..4],
        [0, 0, 0, 2],
        "a batch of control entries: {reply:02x?}"
    );
    assert_eq!(reply.len(), 9, "two rejects: {reply:02x?}");
    h.assert_quiet();
    assert!(h.mux.is_idle());
}

/// Our deliberate difference: we close and reopen before JS (delaying in its notify callback)
/// answers. JS would keep our first open pending and answer it later with a channel we had
/// closed; we repeat our close when that answer comes, so JS closes it, and our reuse of the id
/// works. (JS alone would refuse the reuse with 'Invalid open message' and end the stream.)
#[test]
fn close_before_js_answers_then_reuse_the_id() {
    let mut h = Harness::new();
    h.js(json!({
        "op": "pair", "protocol": "slow", "id": null, "mode": "delay", "ms": 500, "name": "s",
    }));
    h.settle();
    let ch = h.mux.open("slow", None, b"").unwrap();
    h.pump(Duration::ZERO);
    assert!(h.mux.close(ch));
    assert!(matches!(
        h.rust_next(),
        Event::ChannelClosed { remote: false, .. }
    ));
    h.js_expect("notify");
    assert_eq!(h.js_expect("open")["name"], "s");
    // Our repeated close reaches JS's late channel.
    let v = h.js_expect("close");
    assert_eq!(
        (v["name"].as_str(), v["remote"].as_bool()),
        (Some("s"), Some(true))
    );
    assert!(h.mux.is_idle());

    // The id is reused, and JS accepts it.
    let ch2 = h.mux.open("slow", None, b"").unwrap();
    assert_eq!(ch2.local_id(), ch.local_id());
    h.js_expect("notify");
    assert_eq!(h.js_expect("open")["name"], "s#2");
    assert!(matches!(h.rust_next(), Event::ChannelOpened { channel, .. } if channel == ch2));
    h.mux.send(ch2, 0, b"ok").unwrap();
    assert_eq!(h.js_expect("message")["hex"], "6f6b");
    h.assert_quiet();
}

/// JS opens and closes before we answer: we withdraw the open and reject it (JS frees its id),
/// and JS's next open under the same id is fine.
#[test]
fn js_closes_before_we_answer() {
    let mut h = Harness::new();
    h.mux.pair("withdraw", None);
    h.js(json!({ "op": "open", "name": "w", "protocol": "withdraw", "id": null }));
    h.js(json!({ "op": "close", "name": "w" }));
    assert_eq!(h.js_expect("close")["remote"], false);
    assert!(matches!(h.rust_next(), Event::RemoteOpen { .. }));
    assert!(matches!(h.rust_next(), Event::RemoteOpenCancelled { .. }));
    h.settle();
    // JS reuses local id 1.
    h.js(json!({ "op": "open", "name": "w2", "protocol": "withdraw", "id": null }));
    assert!(matches!(h.rust_next(), Event::RemoteOpen { .. }));
    assert_eq!(h.received.last().unwrap()[..3], [0, 1, 1]);
    let ch = h.mux.open("withdraw", None, b"").unwrap();
    assert!(matches!(h.rust_next(), Event::ChannelOpened { channel, .. } if channel == ch));
    assert_eq!(h.js_expect("open")["name"], "w2");
    h.assert_quiet();
}

#[test]
fn pause_while_an_open_is_unanswered() {
    let mut h = Harness::new();
    h.mux.pair("bp", None);
    h.js(json!({ "op": "open", "name": "bp", "protocol": "bp", "id": null }));
    for i in 0..40 {
        h.js(json!({ "op": "send", "name": "bp", "type": 1, "len": 1000 + i }));
    }
    assert!(matches!(h.rust_next(), Event::RemoteOpen { .. }));
    let start = Instant::now();
    while !h.mux.is_paused() && start.elapsed() < TIMEOUT {
        h.pump(Duration::from_millis(20));
    }
    // Paused: the driver stops reading, so the rest stays on the wire.
    h.settle();
    assert!(
        h.mux.is_paused() && h.was_paused,
        "32 KiB buffered should pause reading"
    );
    assert!(h.received.len() < 1 + 40, "read on while paused");
    let ch = h.mux.open("bp", None, b"").unwrap();
    assert!(!h.mux.is_paused());
    assert!(matches!(h.rust_next(), Event::ChannelOpened { .. }));
    for i in 0..40 {
        assert_eq!(
            h.rust_next(),
            Event::Message {
                channel: ch,
                message_type: 1,
                payload: body(1000 + i, 1)
            }
        );
    }
    h.js_expect("open");
    h.assert_quiet();
}

/// Frames that make JS end the connection make us end it too, with the matching error.
#[test]
fn hostile_frames_end_both() {
    let cases: &[(&str, &str, Error)] = &[
        (
            "000100017000",
            "uint must be between 0 and 9007199254740991, use biguint",
            Error::OpenControlChannel,
        ),
        (
            "000102017000",
            "Invalid open message",
            Error::InvalidOpen { remote_id: 2 },
        ),
        (
            "000201",
            "Invalid reject message",
            Error::InvalidReject { local_id: 1 },
        ),
        (
            "0002",
            "Out of bounds",
            Error::Decode(peerhost_encoding::DecodeError::UnexpectedEnd),
        ),
    ];
    for (frame, js_error, rust_error) in cases {
        // We send it to JS.
        let mut h = Harness::new();
        h.write_frame(&hex::decode(frame).unwrap());
        let v = h.js_expect("stream-close");
        assert_eq!(v["error"], *js_error, "{frame}");
        // JS sends it to us.
        let mut h = Harness::new();
        h.js(json!({ "op": "raw", "hex": frame }));
        let start = Instant::now();
        while h.error.is_none() && start.elapsed() < TIMEOUT {
            h.pump(Duration::from_millis(20));
        }
        assert_eq!(h.error.as_ref(), Some(rust_error), "{frame}");
        assert!(h.mux.is_closed());
    }
}

/// Frames both sides ignore: the connection keeps working afterwards.
#[test]
fn hostile_frames_ignored_by_both() {
    let frames = [
        "",               // empty message
        "0007",           // unknown control type
        "000305",         // close of a channel that does not exist
        "000300",         // close of channel 0
        "0500aa",         // message for a channel that does not exist
        "000001090000aa", // batch entry longer than the frame
        "0000010005",     // batch: switch to channel 5, nothing after
    ];
    let mut h = Harness::new();
    for f in frames {
        h.write_frame(&hex::decode(f).unwrap());
        h.js(json!({ "op": "raw", "hex": f }));
    }
    h.settle();
    assert!(h.error.is_none() && !h.mux.is_closed());
    // Still working both ways.
    let ch = h.js_opened("alive", "alive", None);
    h.mux.send(ch, 0, b"!").unwrap();
    assert_eq!(h.js_expect("message")["hex"], "21");
    h.assert_quiet();
}

/// Every frame the scripted JS scenarios write, written by our mux in the same scenario.
#[test]
fn frames_match_js() {
    let out = node("protomux/frames.js", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["versions"]["protomux"], "3.12.1");
    let s = &v["scenarios"];
    let frames = |m: &mut Mux| -> Vec<String> {
        std::iter::from_fn(|| m.poll_transmit())
            .map(hex::encode)
            .collect()
    };
    let expect = |name: &str| -> Vec<String> {
        s[name]["out"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect()
    };

    let mut m = Mux::default();
    m.open("hypercore/alpha", Some(&[0xaa; 32]), &[1, 2])
        .unwrap();
    assert_eq!(frames(&mut m), expect("open_hypercore"));

    let mut m = Mux::default();
    for _ in 0..300 {
        m.open_with(peerhost_protomux::OpenOptions::new("a").unique(false))
            .unwrap();
    }
    assert_eq!(frames(&mut m).pop().unwrap(), expect("open_300")[0]);

    let mut m = Mux::default();
    m.handle_input(&hex::decode("000101017000").unwrap())
        .unwrap();
    assert_eq!(frames(&mut m), expect("reject_unknown"));

    let mut m = Mux::default();
    let a = m.open("p", None, b"").unwrap();
    m.close(a);
    assert_eq!(frames(&mut m), expect("close"));

    let mut m = Mux::default();
    let a = m.open("p", None, b"").unwrap();
    m.send(a, 2, b"hi").unwrap();
    assert_eq!(frames(&mut m), expect("message"));

    let mut m = Mux::default();
    m.cork();
    let a = m.open("p", None, b"").unwrap();
    m.send(a, 0, b"x").unwrap();
    let b = m.open("p", Some(b"b"), b"").unwrap();
    m.send(b, 1, b"yz").unwrap();
    m.send(a, 0, b"").unwrap();
    m.uncork();
    assert_eq!(frames(&mut m), expect("batch"));

    let mut m = Mux::default();
    m.handle_input(&hex::decode("000000050101017000050102017100").unwrap())
        .unwrap();
    assert_eq!(frames(&mut m), expect("batch_reply"));

    // 8 MiB split: compare sizes, and the bytes through a digest JS computed.
    let mut m = Mux::default();
    m.cork();
    let a = m.open("p", None, b"").unwrap();
    for i in 0..3u8 {
        m.send(a, 0, &vec![i + 1; 4 * 1024 * 1024]).unwrap();
    }
    m.uncork();
    let big: Vec<Vec<u8>> = std::iter::from_fn(|| m.poll_transmit()).collect();
    let js_big = s["big_batch"]["out"].as_array().unwrap();
    assert_eq!(big.len(), js_big.len());
    for (ours, theirs) in big.iter().zip(js_big) {
        assert_eq!(ours.len() as u64, theirs["len"].as_u64().unwrap());
        assert_eq!(hex::encode(&ours[..64]), theirs["head"].as_str().unwrap());
        assert_eq!(
            hex::encode(&ours[ours.len() - 64..]),
            theirs["tail"].as_str().unwrap()
        );
        // In between: the payload fill bytes, the same in both by construction.
    }

    for (name, frame, err) in [
        (
            "open_remote_zero",
            "000100017000",
            Error::OpenControlChannel,
        ),
        (
            "open_gap",
            "000102017000",
            Error::InvalidOpen { remote_id: 2 },
        ),
        (
            "reject_unknown_id",
            "000201",
            Error::InvalidReject { local_id: 1 },
        ),
    ] {
        assert!(!s[name]["error"].is_null(), "JS accepted {name}");
        let mut m = Mux::default();
        assert_eq!(
            m.handle_input(&hex::decode(frame).unwrap()),
            Err(err),
            "{name}"
        );
    }
}
