//! A scripted hostile peer against a peerhost node over loopback TCP.
//!
//! The hostile peer is built from our own layers (`SecretStream`, `Mux`, the replication
//! messages, a real log in a store of its own), so it can be honest up to the point where it
//! cheats. Each case checks that the node ends the connection with a clear error (the line the
//! node logs: `connection ended: <error>`, with the JS error code where there is one), stores
//! nothing of what the peer sent, and does not panic; the flood case checks that memory stays
//! bounded when the peer never reads.
//!
//! Run: `cargo test -p peerhost-interop-tests --test replication_hostile`.

mod replication_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use peerhost_encoding::to_vec;
use peerhost_ids::{Key, KeyPair};
use peerhost_log::Request;
use peerhost_node::{Config, ConnectionError};
use peerhost_noise::{Event as StreamEvent, SecretStream};
use peerhost_protomux::{ChannelHandle, Event as MuxEvent, Mux};
use peerhost_replication::capability;
use peerhost_replication::messages::{ALIAS, Handshake, Message, PROTOCOL, Range, Sync};
use peerhost_store::{Core, CreateOptions, Durability, Options, Store};
use replication_support::{LIMIT, Rust, block};

/// The hostile side: a blocking secret stream + mux over TCP, and a real log.
struct Hostile {
    tcp: TcpStream,
    stream: SecretStream,
    mux: Mux,
    hash: [u8; 64],
    channel: Option<ChannelHandle>,
    inbox: std::collections::VecDeque<Message>,
    core: Core,
    _store: Store,
    _dir: tempfile::TempDir,
}

/// A log of `n` blocks in a fresh store, and a listener for the node to connect to.
fn log(n: u64) -> (Core, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(
        dir.path(),
        Options::default().durability(Durability::Process),
    )
    .expect("store");
    let mut core = store
        .create(
            "h",
            CreateOptions::default().key_pair(KeyPair::from_seed(&[9; 32])),
        )
        .expect("create");
    let blocks: Vec<Vec<u8>> = (0..n).map(|i| block(i, 16)).collect();
    core.append(&blocks).expect("append");
    (core, store, dir)
}

impl Hostile {
    /// Accept the node's connection and run the secret-stream handshake as the responder.
    fn accept(listener: &TcpListener, core: Core, store: Store, dir: tempfile::TempDir) -> Self {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stream = SecretStream::new(
            false,
            KeyPair::generate(),
            peerhost_noise::Config::default(),
            Instant::now(),
        );
        let mut mux = Mux::default();
        mux.pair(PROTOCOL, None);
        mux.pair(ALIAS, None);
        let mut h = Self {
            tcp,
            stream,
            mux,
            hash: [0; 64],
            channel: None,
            inbox: std::collections::VecDeque::new(),
            core,
            _store: store,
            _dir: dir,
        };
        let deadline = Instant::now() + LIMIT;
        while h.hash == [0; 64] {
            assert!(Instant::now() < deadline, "handshake stalled");
            h.io();
            while let Some(ev) = h.stream.poll_event() {
                match ev {
                    StreamEvent::Handshake { handshake_hash, .. } => h.hash = handshake_hash,
                    StreamEvent::Message(m) => {
                        let _ = h.mux.handle_input(&m);
                    }
                    _ => {}
                }
            }
        }
        h
    }

    /// Write what is queued, read what is there (without blocking long). Returns false at EOF
    /// or on a transport error (the node closed the connection).
    fn io(&mut self) -> bool {
        while let Some(f) = self.mux.poll_transmit() {
            let _ = self.stream.send(Instant::now(), &f);
        }
        while let Some(t) = self.stream.poll_transmit() {
            if self.tcp.write_all(&t).is_err() {
                return false;
            }
        }
        let mut buf = [0u8; 65536];
        match self.tcp.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                let _ = self.stream.handle_input(Instant::now(), &buf[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(_) => false,
        }
    }

    /// Messages the node sent, decoded (mux events handled: its open is answered with
    /// `cap`, or the right capability).
    fn messages(&mut self, cap: Option<[u8; 32]>) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(ev) = self.stream.poll_event() {
            if let StreamEvent::Message(m) = ev {
                let _ = self.mux.handle_input(&m);
            }
        }
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::RemoteOpen { id, .. } => {
                    let capability =
                        cap.unwrap_or_else(|| capability(false, &self.core.key(), &self.hash));
                    let hs = to_vec(&Handshake {
                        seeks: true,
                        capability,
                    });
                    let ch = self.mux.open(PROTOCOL, id.as_deref(), &hs).expect("open");
                    self.channel = Some(ch);
                }
                MuxEvent::Message {
                    message_type,
                    payload,
                    ..
                } => {
                    if let Ok(m) = Message::decode(message_type, &payload) {
                        out.push(m);
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn send(&mut self, m: &Message) {
        let ch = self.channel.expect("channel open");
        self.mux
            .send(ch, m.message_type(), &m.encode())
            .expect("send");
    }

    fn sync(&mut self) {
        let s = Sync {
            fork: self.core.fork(),
            length: self.core.length(),
            can_upgrade: true,
            uploading: true,
            has_manifest: true,
            ..Sync::default()
        };
        self.send(&Message::Sync(s));
        let r = Range {
            drop: false,
            start: 0,
            length: self.core.length(),
        };
        self.send(&Message::Range(r));
    }

    /// Run until the node sends a request matching `pred` (returns it) or closes (`None`).
    fn until_request(&mut self, pred: impl Fn(&Request) -> bool) -> Option<Request> {
        let deadline = Instant::now() + LIMIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "the node neither asked nor closed"
            );
            while let Some(m) = self.inbox.pop_front() {
                if let Message::Request(r) = m {
                    if pred(&r) {
                        return Some(r);
                    }
                }
            }
            if !self.io() {
                return None;
            }
            let new = self.messages(None);
            self.inbox.extend(new);
        }
    }

    /// Answer honestly.
    fn answer(&mut self, req: &Request) {
        let data = self.core.proof(req).expect("proof").expect("we have it");
        self.send(&Message::Data(data));
    }

    /// Keep the connection going until the node closes it.
    fn until_closed(&mut self) {
        let deadline = Instant::now() + LIMIT;
        while self.io() {
            let _ = self.messages(None);
            assert!(
                Instant::now() < deadline,
                "the node did not close the connection"
            );
        }
    }
}

/// The node follows the hostile peer's log; `script` plays the peer. Returns the node and the
/// connection's result.
fn run(
    n: u64,
    config: Config,
    script: impl FnOnce(&mut Hostile),
) -> (
    Rust,
    peerhost_ids::DiscoveryKey,
    Result<(), ConnectionError>,
) {
    let (core, store, dir) = log(n);
    let key: Key = core.key();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let rust = Rust::with_config(config);
    let dkey = rust.replica(&key.to_hex());
    rust.with(|r| r.download(&dkey, 0, None, Instant::now()))
        .expect("download");
    let handle = rust.connect(port);
    let mut h = Hostile::accept(&listener, core, store, dir);
    script(&mut h);
    h.until_closed();
    let result = rust
        .rt
        .block_on(async { tokio::time::timeout(LIMIT, handle).await })
        .expect("the connection task ended")
        .expect("the connection task did not panic");
    (rust, dkey, result)
}

fn expect_error(result: &Result<(), ConnectionError>, text: &str, code: Option<&str>) {
    let e = result
        .as_ref()
        .expect_err("the node must end the connection");
    let line = format!("connection ended: {e}");
    eprintln!("node: {line} (code {:?})", e.code());
    assert!(line.contains(text), "{line:?} should mention {text:?}");
    assert_eq!(e.code(), code, "{line}");
}

fn stored_nothing(rust: &Rust, dkey: &peerhost_ids::DiscoveryKey) {
    rust.with(|r| {
        let core = r.core_mut(dkey).expect("core");
        assert_eq!(core.length(), 0, "no head was stored");
        assert_eq!(core.next_present(0, u64::MAX).expect("read"), None);
    });
}

#[test]
fn bad_signature() {
    let (rust, dkey, result) = run(10, Config::default(), |h| {
        let _ = h.messages(None);
        h.io();
        let _ = h.messages(None);
        h.sync();
        let req = h
            .until_request(|r| r.upgrade.is_some())
            .expect("upgrade request");
        let mut data = h.core.proof(&req).expect("proof").expect("data");
        let up = data.upgrade.as_mut().expect("upgrade");
        if let Some(sig) = up.signature.as_mut() {
            let last = sig.len() - 1;
            sig[last] ^= 1;
        }
        h.send(&Message::Data(data));
    });
    expect_error(&result, "invalid data from peer", Some("INVALID_SIGNATURE"));
    stored_nothing(&rust, &dkey);
}

#[test]
fn bad_proof() {
    let (rust, dkey, result) = run(10, Config::default(), |h| {
        h.io();
        let _ = h.messages(None);
        h.sync();
        let req = h
            .until_request(|r| r.upgrade.is_some())
            .expect("upgrade request");
        h.answer(&req);
        // Now a block request: answer with other bytes for the block.
        let req = h
            .until_request(|r| r.block.is_some())
            .expect("block request");
        let mut data = h.core.proof(&req).expect("proof").expect("data");
        data.block.as_mut().expect("block").value[5] ^= 0xff;
        h.send(&Message::Data(data));
    });
    expect_error(&result, "invalid data from peer", Some("INVALID_CHECKSUM"));
    rust.with(|r| {
        let core = r.core_mut(&dkey).expect("core");
        assert_eq!(
            core.next_present(0, 10).expect("read"),
            None,
            "no block stored"
        );
    });
}

#[test]
fn wrong_capability() {
    let (rust, dkey, result) = run(10, Config::default(), |h| {
        let deadline = Instant::now() + LIMIT;
        while h.channel.is_none() && Instant::now() < deadline {
            h.io();
            let _ = h.messages(Some([7; 32]));
        }
    });
    expect_error(
        &result,
        "invalid replication capability",
        Some("INVALID_CAPABILITY"),
    );
    stored_nothing(&rust, &dkey);
}

#[test]
fn unknown_message_type() {
    let (rust, dkey, result) = run(10, Config::default(), |h| {
        let deadline = Instant::now() + LIMIT;
        while h.channel.is_none() && Instant::now() < deadline {
            h.io();
            let _ = h.messages(None);
        }
        let ch = h.channel.expect("channel");
        h.mux.send(ch, 42, b"what is this").expect("send");
    });
    expect_error(&result, "unknown message type 42", None);
    stored_nothing(&rust, &dkey);
}

#[test]
fn oversized_message() {
    let (rust, dkey, result) = run(10, Config::default(), |h| {
        let deadline = Instant::now() + LIMIT;
        while h.channel.is_none() && Instant::now() < deadline {
            h.io();
            let _ = h.messages(None);
        }
        let ch = h.channel.expect("channel");
        // A sync padded to 1 MiB (JS would ignore the trailing bytes; no honest sync is
        // longer than 40 bytes).
        let mut payload = to_vec(&Sync::default());
        payload.resize(1 << 20, 0);
        h.mux.send(ch, 0, &payload).expect("send");
    });
    expect_error(
        &result,
        "sync message of 1048576 bytes exceeds the limit",
        None,
    );
    stored_nothing(&rust, &dkey);
}

#[test]
fn oversized_frame() {
    // The node accepts frames up to 1 MiB; the peer announces one of 16 MiB - 1 and then
    // streams junk. The node must refuse on the length prefix, without buffering it.
    let config = Config::default().with_max_frame_len(1 << 20);
    let (rust, dkey, result) = run(10, config, |h| {
        // Let the header frames cross first.
        for _ in 0..5 {
            h.io();
        }
        let _ = h.tcp.write_all(&[0xff, 0xff, 0xff]);
        let junk = vec![0x55u8; 1 << 16];
        for _ in 0..64 {
            if h.tcp.write_all(&junk).is_err() {
                break;
            }
        }
    });
    expect_error(&result, "exceeds the limit of 1048576", None);
    stored_nothing(&rust, &dkey);
}

#[test]
fn garbage_after_handshake() {
    let (rust, dkey, result) = run(10, Config::default(), |h| {
        for _ in 0..5 {
            h.io();
        }
        // A well-framed message that is not a secretstream ciphertext.
        let mut frame = vec![100, 0, 0];
        frame.extend((0..100u32).map(|i| (i * 37 % 251) as u8));
        let _ = h.tcp.write_all(&frame);
    });
    expect_error(&result, "failed to decrypt", None);
    stored_nothing(&rust, &dkey);
}

#[test]
fn truncate_without_valid_signature() {
    let (rust, dkey, result) = run(10, Config::default(), |h| {
        h.io();
        let _ = h.messages(None);
        h.sync();
        // Serve the whole log honestly first: the upgrade, then every block.
        let mut blocks = std::collections::BTreeSet::new();
        while blocks.len() < 10 {
            let Some(req) = h.until_request(|_| true) else {
                return;
            };
            if let Some(b) = req.block {
                blocks.insert(b.index);
            }
            h.answer(&req);
        }
        // Let the last answers arrive before the node hears of the new fork.
        for _ in 0..5 {
            h.io();
        }
        // Then claim a truncation to 8 on fork 1, with a bad signature on the new head.
        h.core.truncate(8).expect("truncate");
        h.sync();
        let req = h
            .until_request(|r| r.fork == 1 && r.upgrade.is_some())
            .expect("fork proof request");
        let mut data = h.core.proof(&req).expect("proof").expect("data");
        if let Some(sig) = data.upgrade.as_mut().and_then(|u| u.signature.as_mut()) {
            sig[10] ^= 1;
        }
        h.send(&Message::Data(data));
    });
    expect_error(&result, "invalid data from peer", Some("INVALID_SIGNATURE"));
    rust.with(|r| {
        let core = r.core_mut(&dkey).expect("core");
        assert_eq!(
            (core.length(), core.fork()),
            (10, 0),
            "the truncation was not applied"
        );
        for i in 0..10 {
            assert_eq!(core.get(i).expect("read"), Some(block(i, 16)));
        }
        core.verify().expect("the log still verifies");
    });
}

/// Resident set size of this process, from /proc (Linux).
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn request_flood_without_reading_stays_bounded() {
    // The peer asks for the same 64 KiB block 200 000 times and never reads an answer: the
    // node stops reading from it (backpressure) and holds a bounded amount for it.
    let (core, store, dir) = {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(
            dir.path(),
            Options::default().durability(Durability::Process),
        )
        .expect("store");
        (None::<Core>, store, dir)
    };
    let _ = core;
    let rust = Rust::new();
    let (key, dkey) = rust.writer("big", false, 4, 65536);
    let port = rust.listen();
    let before = rss();
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // Play the initiator without reading more than the handshake needs.
    let mut stream = SecretStream::new(
        true,
        KeyPair::generate(),
        peerhost_noise::Config::default(),
        Instant::now(),
    );
    let mut tcp_w = tcp.try_clone().expect("clone");
    let mut tcp_r = tcp;
    let mut hash = None;
    let deadline = Instant::now() + LIMIT;
    while hash.is_none() {
        assert!(Instant::now() < deadline, "handshake stalled");
        while let Some(t) = stream.poll_transmit() {
            tcp_w.write_all(&t).expect("write");
        }
        let mut buf = [0u8; 4096];
        if let Ok(n) = tcp_r.read(&mut buf) {
            let _ = stream.handle_input(Instant::now(), &buf[..n]);
        }
        while let Some(ev) = stream.poll_event() {
            if let StreamEvent::Handshake { handshake_hash, .. } = ev {
                hash = Some(handshake_hash);
            }
        }
    }
    let hash = hash.expect("hash");
    let mut mux = Mux::default();
    let hs = to_vec(&Handshake {
        seeks: true,
        capability: capability(true, &key, &hash),
    });
    let ch = mux.open(PROTOCOL, Some(&dkey.0), &hs).expect("open");
    let req = Request {
        block: Some(peerhost_log::proof::RequestBlock { index: 0, nodes: 0 }),
        ..Request::default()
    };
    let flood_deadline = Instant::now() + Duration::from_secs(20);
    tcp_w
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut sent = 0u64;
    'flood: for i in 0..200_000u64 {
        let mut r = req.clone();
        r.id = i + 1;
        mux.send(ch, 1, &to_vec(&r)).expect("send");
        while let Some(f) = mux.poll_transmit() {
            let _ = stream.send(Instant::now(), &f);
        }
        while let Some(t) = stream.poll_transmit() {
            if tcp_w.write_all(&t).is_err() || Instant::now() > flood_deadline {
                // The node stopped reading (or closed): the flood cannot go on.
                break 'flood;
            }
        }
        sent += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    let grown = rss().saturating_sub(before);
    eprintln!(
        "sent {sent} requests for a 64 KiB block without reading; node memory grew {} KiB",
        grown / 1024
    );
    // 200 000 answers would be 12.5 GiB; the node holds at most a bounded queue.
    assert!(grown < 256 << 20, "memory grew by {grown} bytes");
    drop(store);
    drop(dir);
}
