//! Shared by `replication.rs` and `replication_hostile.rs`: a peerhost node in-process (its own
//! tokio runtime, a store in a temporary directory) and the JS peer `replication/peer.js`.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_interop_tests::NodePeer;
use peerhost_node::replication::Replicator;
use peerhost_node::{Config, ConnectionError, Node};
use peerhost_store::{CreateOptions, Durability, Options, Store};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The hang guard for every wait (a bound, not a timing assertion).
pub const LIMIT: Duration = Duration::from_secs(60);

/// `block(i, size)` of peer.js: `size` bytes of `i & 255` with `i` as u32le in front.
pub fn block(i: u64, size: usize) -> Vec<u8> {
    let mut b = vec![(i & 0xff) as u8; size];
    if size >= 4 {
        b[..4].copy_from_slice(&(i as u32).to_le_bytes());
    }
    b
}

/// `block(i, size, salt)` of peer.js: the first byte pattern shifted by `salt` (blocks of
/// another fork).
pub fn salted(i: u64, size: usize, salt: u64) -> Vec<u8> {
    let mut b = vec![((i + salt) & 0xff) as u8; size];
    if size >= 4 {
        b[..4].copy_from_slice(&(i as u32).to_le_bytes());
    }
    b
}

/// `replication/peer.js` with request/response helpers.
pub struct Js {
    peer: NodePeer,
    next: u64,
}

impl Js {
    pub fn spawn(store: bool) -> Self {
        let args: &[&str] = if store { &["--store"] } else { &[] };
        let mut peer = NodePeer::spawn("replication/peer.js", args);
        peer.wait_for(LIMIT, |v| v["event"] == "ready");
        Self { peer, next: 0 }
    }

    /// Run a command and return its result event (panics if it failed).
    pub fn cmd(&mut self, mut cmd: Value) -> Value {
        self.next += 1;
        let id = self.next;
        cmd["id"] = json!(id);
        self.peer.send(cmd.clone());
        let v = self.peer.wait_for(LIMIT, |v| v["id"] == id);
        assert_eq!(v["ok"], true, "JS command {cmd} failed: {v}");
        v
    }

    /// Every event seen so far.
    pub fn seen(&self) -> &[Value] {
        &self.peer.seen
    }

    /// Start a command without waiting; pair with [`Js::result`].
    pub fn start(&mut self, mut cmd: Value) -> u64 {
        self.next += 1;
        let id = self.next;
        cmd["id"] = json!(id);
        self.peer.send(cmd);
        id
    }

    pub fn result(&mut self, id: u64) -> Value {
        let v = self.peer.wait_for(LIMIT, |v| v["id"] == id);
        assert_eq!(v["ok"], true, "JS command {id} failed: {v}");
        v
    }
}

/// A peerhost node in this process.
pub struct Rust {
    pub rt: tokio::runtime::Runtime,
    pub node: Node,
    pub store: Store,
    _dir: tempfile::TempDir,
}

impl Rust {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(
            dir.path(),
            Options::default().durability(Durability::Process),
        )
        .expect("store");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let node = {
            let _guard = rt.enter();
            Node::new(KeyPair::generate(), config)
        };
        Self {
            rt,
            node,
            store,
            _dir: dir,
        }
    }

    /// Add an empty replica of `key`, downloading (its channel is opened on every connection).
    pub fn replica(&self, key: &str) -> DiscoveryKey {
        let key = Key::parse(key).expect("key");
        let core = self.store.create_replica(key, None, None).expect("replica");
        self.node.with(|r| r.add_core(core, true, Instant::now()))
    }

    /// Create a log we write with `blocks` blocks of `block(i, size)`; served passively.
    pub fn writer(
        &self,
        name: &str,
        compat: bool,
        blocks: u64,
        size: usize,
    ) -> (Key, DiscoveryKey) {
        let mut core = self
            .store
            .create(name, CreateOptions::default().compat(compat))
            .expect("create");
        let mut batch = Vec::new();
        for i in 0..blocks {
            batch.push(block(i, size));
            if batch.len() == 1000 {
                core.append(&batch).expect("append");
                batch.clear();
            }
        }
        if !batch.is_empty() {
            core.append(&batch).expect("append");
        }
        let key = core.key();
        let dkey = self.node.with(|r| r.add_core(core, false, Instant::now()));
        (key, dkey)
    }

    pub fn connect(&self, port: u16) -> JoinHandle<Result<(), ConnectionError>> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let _guard = self.rt.enter();
        self.node.connect_tcp(addr)
    }

    /// Listen on a free loopback port; returns it.
    pub fn listen(&self) -> u16 {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let node = self.node.clone();
        self.rt
            .spawn(async move { node.listen_tcp(listener).await });
        port
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Replicator) -> R) -> R {
        self.node.with(f)
    }

    /// Poll `cond` until it holds (panics after [`LIMIT`], a hang guard).
    pub fn wait(&self, what: &str, mut cond: impl FnMut(&mut Replicator) -> bool) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if self.node.with(&mut cond) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait until the log knows its peers' head.
    pub fn synced(&self, dkey: &DiscoveryKey) {
        self.wait("sync", |r| r.is_synced(dkey));
    }

    /// Check blocks `start..end` are stored with the right content, and `absent` are not; then
    /// re-verify the whole log from disk.
    pub fn check(&self, dkey: &DiscoveryKey, start: u64, end: u64, size: usize, absent: &[u64]) {
        self.with(|r| {
            let core = r.core_mut(dkey).expect("core");
            for i in start..end {
                let v = core
                    .get(i)
                    .expect("read")
                    .unwrap_or_else(|| panic!("block {i} missing"));
                assert_eq!(v, block(i, size), "block {i}");
            }
            for &i in absent {
                assert!(!core.has(i).expect("has"), "block {i} should not be here");
            }
            core.verify().expect("the replica verifies");
        });
    }

    pub fn length(&self, dkey: &DiscoveryKey) -> u64 {
        self.with(|r| r.core(dkey).map_or(0, |c| c.length()))
    }
}
