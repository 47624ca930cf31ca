//! Hyperbee between peerhost (`peerhost-bee` over a log of the in-process node) and the real
//! hyperbee 2.27.3 on hypercore 11.39.5 (`bee/peer.js`), live over loopback TCP, both ways:
//!
//! 1. peerhost writes a bee into a local log and serves it; a JS Hyperbee replicates it and
//!    answers lookups and walks (sparse first: it fetches only what they touch; then whole
//!    walks forward and back). Its answers equal ours, and both equal the model.
//! 2. JS writes a bee and serves it; peerhost replicates it sparsely, the sans-IO way: each
//!    lookup that stops on a block not held ([`Error::Missing`]) asks the node for that block
//!    (and the walk's upcoming ones) and tries again. Its answers equal JS's and the model's,
//!    from a small part of the log.
//!
//! Run: `cargo test -p peerhost-interop-tests --test bee` (Node 20, `npm ci` in
//! `interop-tests/`).

mod replication_support;

use std::collections::BTreeMap;
use std::time::Instant;

use peerhost_bee::{AppendBlocks, Bee, Blocks, Entry, Error, Range};
use peerhost_ids::DiscoveryKey;
use peerhost_interop_tests::NodePeer;
use peerhost_store::{CoreError, CreateOptions};
use replication_support::{LIMIT, Rust};
use serde_json::{Value, json};

const N: u64 = 3000;

/// `bee/peer.js` with request/response helpers.
struct JsBee {
    peer: NodePeer,
    next: u64,
}

impl JsBee {
    fn spawn() -> Self {
        let mut peer = NodePeer::spawn("bee/peer.js", &[]);
        peer.wait_for(LIMIT, |v| v["event"] == "ready");
        Self { peer, next: 0 }
    }

    fn cmd(&mut self, mut cmd: Value) -> Value {
        self.next += 1;
        let id = self.next;
        cmd["id"] = json!(id);
        self.peer.send(cmd.clone());
        let v = self.peer.wait_for(LIMIT * 3, |v| v["id"] == id);
        assert_eq!(v["ok"], true, "JS command {cmd} failed: {v}");
        v
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("post/{i:06}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!("value of post {i};")
        .repeat((i % 4 + 1) as usize)
        .into_bytes()
}

/// The workload of `bee/peer.js`, written with our encoder.
fn workload<B: AppendBlocks>(bee: &mut Bee<B>, n: u64) {
    let half = n / 2;
    for start in (0..half).step_by(100) {
        let mut b = bee.batch();
        for i in start..(start + 100).min(half) {
            b.put(&key(i), &value(i)).unwrap();
        }
        b.flush().unwrap();
    }
    for i in half..n {
        bee.put(&key(i), &value(i)).unwrap();
    }
    for i in (3..n).step_by(7) {
        bee.del(&key(i)).unwrap();
    }
}

fn model(n: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    (0..n)
        .filter(|i| i % 7 != 3)
        .map(|i| (key(i), value(i)))
        .collect()
}

fn gets() -> Vec<Vec<u8>> {
    let mut g: Vec<Vec<u8>> = [0, 3, 10, 17, 1499, 1500, 2222, N - 1, N]
        .iter()
        .map(|&i| key(i))
        .collect();
    g.push(b"a".to_vec());
    g.push(Vec::new());
    g
}

fn sparse_ranges() -> Vec<Range> {
    vec![
        Range::all().gte(key(1000)).lt(key(1050)),
        Range::all().reverse().limit(25),
        Range::all().gt(key(N - 10)),
        Range::all().lte(key(5)).reverse(),
        Range::all().limit(10),
        Range::prefix(b"post/00123"),
    ]
}

fn full_ranges() -> Vec<Range> {
    vec![Range::all(), Range::all().reverse()]
}

fn range_json(r: &Range) -> Value {
    let h = |k: &Option<Vec<u8>>| k.as_ref().map(hex::encode);
    json!({"gt": h(&r.gt), "gte": h(&r.gte), "lt": h(&r.lt), "lte": h(&r.lte),
           "reverse": r.reverse, "limit": r.limit})
}

fn entry_string(e: &Entry) -> String {
    format!(
        "{} {} {}",
        e.seq,
        hex::encode(&e.key),
        e.value.as_ref().map_or("-".to_string(), hex::encode)
    )
}

/// What the model says a walk yields (keys, in order).
fn model_walk(m: &BTreeMap<Vec<u8>, Vec<u8>>, r: &Range) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = m.keys().filter(|k| r.contains(k)).cloned().collect();
    if r.reverse {
        keys.reverse();
    }
    keys.truncate(r.limit.map_or(usize::MAX, |l| l as usize));
    keys
}

/// Our answers over `bee`, checked against the model: (gets, walks as seq strings).
fn our_answers<B: Blocks>(
    bee: &mut Bee<B>,
    ranges: &[Range],
    mut fetch: impl FnMut(&mut Bee<B>, &[u64]),
) -> (Vec<Option<String>>, Vec<String>) {
    let m = model(N);
    let mut got = Vec::new();
    for k in gets() {
        let e = loop {
            match bee.get(&k) {
                Ok(e) => break e,
                Err(Error::Missing { seq }) => fetch(bee, &[seq]),
                Err(e) => panic!("get: {e}"),
            }
        };
        assert_eq!(e.as_ref().and_then(|e| e.value.clone()).as_ref(), m.get(&k));
        got.push(e.as_ref().map(entry_string));
    }
    let mut walks = Vec::new();
    for r in ranges {
        let mut it = bee.iter(r.clone());
        let mut entries = Vec::new();
        loop {
            match it.next(bee) {
                Ok(Some(e)) => entries.push(e),
                Ok(None) => break,
                Err(Error::Missing { seq }) => {
                    // Ask for the walk's next blocks with it: one round trip for many.
                    let mut want = vec![seq];
                    want.extend(it.upcoming(64));
                    fetch(bee, &want);
                }
                Err(e) => panic!("walk: {e}"),
            }
        }
        let keys: Vec<Vec<u8>> = entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, model_walk(&m, r), "walk {r:?}");
        for e in &entries {
            assert_eq!(e.value.as_ref(), m.get(&e.key));
        }
        walks.push(
            entries
                .iter()
                .map(|e| e.seq.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    (got, walks)
}

fn js_answers(js: &mut JsBee, name: &str, length: u64, ranges: &[Range]) -> Value {
    let gets: Vec<String> = gets().iter().map(hex::encode).collect();
    let ranges: Vec<Value> = ranges.iter().map(range_json).collect();
    js.cmd(json!({"cmd": "query", "name": name, "length": length, "gets": gets, "ranges": ranges}))
}

fn assert_same(js: &Value, ours: &(Vec<Option<String>>, Vec<String>)) {
    let js_gets: Vec<Option<String>> = js["gets"]
        .as_array()
        .expect("gets")
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(js_gets, ours.0, "lookups differ");
    let js_walks: Vec<String> = js["ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .map(|v| v.as_str().expect("walk").to_string())
        .collect();
    assert_eq!(js_walks, ours.1, "walks differ");
}

#[test]
fn js_hyperbee_reads_a_bee_we_wrote() {
    let rust = Rust::new();
    let mut core = rust
        .store
        .create("index", CreateOptions::default())
        .expect("create");
    let mut bee = Bee::new(&mut core);
    workload(&mut bee, N);
    let sparse = our_answers(&mut bee, &sparse_ranges(), |_, s| panic!("{s:?} missing"));
    let full = our_answers(&mut bee, &full_ranges(), |_, s| panic!("{s:?} missing"));
    let length = core.length();
    let key = core.key().to_hex();
    rust.with(|r| r.add_core(core, false, Instant::now()));
    let port = rust.listen();

    let mut js = JsBee::spawn();
    js.cmd(json!({"cmd": "open", "name": "r", "key": key}));
    js.cmd(json!({"cmd": "connect", "port": port}));
    let a = js_answers(&mut js, "r", length, &sparse_ranges());
    assert_eq!(a["length"], length);
    assert_same(&a, &sparse);
    // Sparse: the lookups and short walks fetched a small part of the log.
    let held = a["held"].as_u64().expect("held");
    eprintln!("JS fetched {held} of {length} blocks for the sparse lookups");
    assert!(held < length / 4, "JS fetched {held} of {length} blocks");
    let a = js_answers(&mut js, "r", length, &full_ranges());
    assert_same(&a, &full);
    js.cmd(json!({"cmd": "close"}));
}

/// A log held by the in-process node: what the sparse reader sees.
struct Replica<'a> {
    rust: &'a Rust,
    dkey: DiscoveryKey,
}

impl Blocks for Replica<'_> {
    type Error = CoreError;

    fn length(&self) -> u64 {
        self.rust.length(&self.dkey)
    }

    fn block(&mut self, seq: u64) -> Result<Option<Vec<u8>>, CoreError> {
        let dkey = self.dkey;
        self.rust
            .with(|r| r.core_mut(&dkey).expect("replica").get(seq))
    }
}

#[test]
fn we_read_a_bee_js_wrote_fetching_only_what_lookups_touch() {
    let mut js = JsBee::spawn();
    let created = js.cmd(json!({"cmd": "create", "name": "w", "n": N}));
    let key = created["key"].as_str().expect("key").to_string();
    let length = created["length"].as_u64().expect("length");
    let port = js.cmd(json!({"cmd": "listen"}))["port"]
        .as_u64()
        .expect("port") as u16;

    let rust = Rust::new();
    let dkey = rust.replica(&key);
    let _conn = rust.connect(port);
    rust.wait("the head", |r| {
        r.core(&dkey).is_some_and(|c| c.length() == length)
    });

    let fetched = std::cell::Cell::new(0u64);
    let mut fetch = |bee: &mut Bee<Replica<'_>>, want: &[u64]| {
        let missing: Vec<u64> = want
            .iter()
            .copied()
            .filter(|&s| !rust.with(|r| r.core_mut(&dkey).expect("replica").has(s).expect("has")))
            .collect();
        assert!(
            !missing.is_empty(),
            "asked for blocks already held: {want:?}"
        );
        rust.with(|r| {
            for &s in &missing {
                r.download(&dkey, s, Some(s + 1), Instant::now())
                    .expect("download");
            }
        });
        fetched.set(fetched.get() + missing.len() as u64);
        rust.wait("the blocks", |r| {
            let core = r.core_mut(&dkey).expect("replica");
            missing.iter().all(|&s| core.has(s).expect("has"))
        });
        let _ = bee;
    };
    let mut bee = Bee::new(Replica { rust: &rust, dkey });
    let sparse = our_answers(&mut bee, &sparse_ranges(), &mut fetch);
    let js_sparse = js_answers(&mut js, "w", length, &sparse_ranges());
    assert_same(&js_sparse, &sparse);
    let sparse_fetched = fetched.get();
    assert!(
        sparse_fetched < length / 4,
        "fetched {sparse_fetched} of {length} blocks for sparse lookups"
    );
    // Every block fetched was verified by the replicator: the replica re-verifies from disk.
    rust.with(|r| {
        r.core_mut(&dkey)
            .expect("replica")
            .verify()
            .expect("verify")
    });

    let full = our_answers(&mut bee, &full_ranges(), &mut fetch);
    assert_same(&js_answers(&mut js, "w", length, &full_ranges()), &full);
    eprintln!("sparse lookups fetched {sparse_fetched} of {length} blocks");
    js.cmd(json!({"cmd": "close"}));
}
