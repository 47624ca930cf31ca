//! Live replication between peerhost (`peerhost-node`: secret stream, protomux, replicator) and
//! the real hypercore 11.39.5 / corestore 7.12.5 over loopback TCP, in both directions and both
//! secret-stream roles. The JS side is `replication/peer.js`; nothing on it is mocked.
//!
//! 1. JS writer → peerhost reader (default v11 core and compat core): the full log, a sparse
//!    range, the last N blocks, and live appends; every block checked and the replica
//!    re-verified from disk.
//! 2. peerhost writer → JS reader (`download`, `get`, live `update`), JS connecting to us and
//!    us connecting to JS.
//! 3. A corestore peer with 20 cores and peerhost replicate all of them over one connection,
//!    both directions.
//!
//! Run: `cargo test -p peerhost-interop-tests --test replication` (needs Node 20 and `npm ci`
//! in `interop-tests/`).

mod replication_support;

use std::time::{Duration, Instant};

use peerhost_interop_tests::{describe, node};
use replication_support::{Js, Rust, block, salted};
use serde_json::json;

const N: u64 = 100;

#[test]
fn messages_match_js() {
    // The snapshots in crates/replication/src/messages.rs came from this script: re-run it and
    // compare with what we encode today.
    let out = node("replication/messages.js", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let hex_of = |name: &str| {
        lines
            .iter()
            .find(|l| l["name"] == name)
            .and_then(|l| l["hex"].as_str())
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_string()
    };
    use peerhost_replication::messages::{Range, Sync};
    let sync = Sync {
        length: 3,
        can_upgrade: true,
        uploading: true,
        downloading: true,
        has_manifest: true,
        ..Sync::default()
    };
    assert_eq!(
        hex::encode(peerhost_encoding::to_vec(&sync)),
        hex_of("sync")
    );
    let range = Range {
        drop: true,
        start: 5,
        length: 300,
    };
    assert_eq!(
        hex::encode(peerhost_encoding::to_vec(&range)),
        hex_of("range-drop")
    );
    let cap = peerhost_replication::capability(true, &peerhost_ids::Key([1; 32]), &[2; 64]);
    assert_eq!(hex::encode(cap), hex_of("cap-initiator"));
}

fn js_writer_to_rust(compat: bool) {
    let mut js = Js::spawn(false);
    let created = js.cmd(json!({"cmd": "create", "name": "a", "compat": compat, "blocks": N}));
    let key = created["key"].as_str().expect("key").to_string();
    let port = js.cmd(json!({"cmd": "listen"}))["port"]
        .as_u64()
        .expect("port") as u16;

    // Full.
    let full = Rust::new();
    let dkey = full.replica(&key);
    full.connect(port);
    full.synced(&dkey);
    assert_eq!(full.length(&dkey), N);
    full.with(|r| r.download(&dkey, 0, None, Instant::now()))
        .expect("download");
    full.wait("full download", |r| r.is_complete(&dkey));
    full.check(&dkey, 0, N, 16, &[]);

    // A sparse range: only those blocks are stored.
    let sparse = Rust::new();
    let dkey = sparse.replica(&key);
    sparse.connect(port);
    sparse.synced(&dkey);
    sparse
        .with(|r| r.download(&dkey, 10, Some(20), Instant::now()))
        .expect("download");
    sparse.wait("range 10..20", |r| r.is_complete(&dkey));
    sparse.check(&dkey, 10, 20, 16, &[0, 9, 20, 50, N - 1]);

    // The last 5 blocks.
    let last = Rust::new();
    let dkey = last.replica(&key);
    last.connect(port);
    last.synced(&dkey);
    let len = last.length(&dkey);
    last.with(|r| r.download(&dkey, len - 5, Some(len), Instant::now()))
        .expect("download");
    last.wait("last 5", |r| r.is_complete(&dkey));
    last.check(&dkey, N - 5, N, 16, &[0, N - 6]);

    // Live: the full replica follows appends.
    let dkey = full.with(|r| {
        let d = *r.discovery_keys().next().expect("one log");
        r.set_live(&d, true, Instant::now());
        d
    });
    for round in 0..3u64 {
        let t = Instant::now();
        js.cmd(json!({"cmd": "append", "name": "a", "blocks": 2}));
        let target = N + 2 * (round + 1);
        full.wait("live append", |r| {
            r.core(&dkey).is_some_and(|c| c.length() == target) && r.is_complete(&dkey)
        });
        eprintln!(
            "live append {round} ({}compat): both blocks verified and stored {:?} after JS appended",
            if compat { "" } else { "non-" },
            t.elapsed()
        );
    }
    full.check(&dkey, 0, N + 6, 16, &[]);
    assert!(
        !js.seen().iter().any(|v| v["event"] == "verification-error"),
        "JS saw a verification error: {:?}",
        js.seen()
    );
    js.cmd(json!({"cmd": "close"}));
}

#[test]
fn js_writer_to_peerhost_reader_v11() {
    js_writer_to_rust(false);
}

#[test]
fn js_writer_to_peerhost_reader_compat() {
    js_writer_to_rust(true);
}

fn rust_writer_to_js(compat: bool, rust_initiates: bool) {
    let rust = Rust::new();
    let (key, dkey) = rust.writer("w", compat, N, 16);
    let mut js = Js::spawn(false);
    js.cmd(json!({"cmd": "open", "name": "r", "key": key.to_hex()}));
    if rust_initiates {
        let port = js.cmd(json!({"cmd": "listen"}))["port"]
            .as_u64()
            .expect("port") as u16;
        rust.connect(port);
    } else {
        let port = rust.listen();
        js.cmd(json!({"cmd": "connect", "port": port}));
    }
    js.cmd(json!({"cmd": "peers", "name": "r"}));
    let up = js.cmd(json!({"cmd": "update", "name": "r"}));
    assert_eq!(up["length"], N, "{up}");
    js.cmd(json!({"cmd": "download", "name": "r", "start": 0, "end": 50}));
    js.cmd(json!({"cmd": "check", "name": "r", "start": 0, "end": 50}));
    js.cmd(json!({"cmd": "get", "name": "r", "index": N - 1}));
    js.cmd(json!({"cmd": "get", "name": "r", "index": 77}));

    // Live: we append, JS's update sees it and JS gets the new blocks.
    for round in 1..=3u64 {
        let t = Instant::now();
        let wait = js.start(json!({"cmd": "wait", "name": "r", "length": N + round}));
        rust.with(|r| r.append(&dkey, &[block(N + round - 1, 16)], Instant::now()))
            .expect("append");
        js.result(wait);
        js.cmd(json!({"cmd": "get", "name": "r", "index": N + round - 1}));
        eprintln!(
            "live append {round}: JS has the new block {:?} after our append",
            t.elapsed()
        );
    }
    let up = js.cmd(json!({"cmd": "update", "name": "r"}));
    assert_eq!(up["length"], N + 3, "{up}");
    js.cmd(json!({"cmd": "download", "name": "r", "start": 0, "end": N + 3}));
    js.cmd(json!({"cmd": "check", "name": "r", "start": 0, "end": N + 3}));
    assert!(
        !js.seen().iter().any(|v| v["event"] == "verification-error"),
        "JS saw a verification error: {:?}",
        js.seen()
    );
    js.cmd(json!({"cmd": "close"}));
}

#[test]
fn peerhost_writer_to_js_reader_js_initiates() {
    rust_writer_to_js(false, false);
}

#[test]
fn peerhost_writer_to_js_reader_peerhost_initiates() {
    rust_writer_to_js(false, true);
}

#[test]
fn peerhost_compat_writer_to_js_reader() {
    rust_writer_to_js(true, true);
}

#[test]
fn corestore_20_cores_both_directions_over_one_connection() {
    const CORES: usize = 20;
    const BLOCKS: u64 = 30;
    let mut js = Js::spawn(true);
    let rust = Rust::new();

    // JS → us: 20 cores written by the corestore.
    let mut js_keys = Vec::new();
    for i in 0..CORES {
        let v = js
            .cmd(json!({"cmd": "create", "name": format!("js-{i}"), "blocks": BLOCKS + i as u64}));
        js_keys.push(v["key"].as_str().expect("key").to_string());
    }
    let js_dkeys: Vec<_> = js_keys.iter().map(|k| rust.replica(k)).collect();
    // Us → JS: 20 logs we write; JS opens them by key in the same store.
    let mut ours = Vec::new();
    for i in 0..CORES {
        ours.push(rust.writer(&format!("ours-{i}"), false, BLOCKS + i as u64, 16));
    }
    for (i, (key, _)) in ours.iter().enumerate() {
        js.cmd(json!({"cmd": "open", "name": format!("ours-{i}"), "key": key.to_hex()}));
    }

    // One connection.
    let port = js.cmd(json!({"cmd": "listen"}))["port"]
        .as_u64()
        .expect("port") as u16;
    rust.connect(port);

    for d in &js_dkeys {
        rust.synced(d);
        rust.with(|r| r.download(d, 0, None, Instant::now()))
            .expect("download");
    }
    let ids: Vec<u64> = (0..CORES)
        .map(|i| {
            js.start(json!({"cmd": "download", "name": format!("ours-{i}"), "start": 0, "end": BLOCKS + i as u64}))
        })
        .collect();
    for (i, d) in js_dkeys.iter().enumerate() {
        rust.wait("corestore core downloaded", |r| {
            r.is_complete(d) && r.core(d).is_some_and(|c| c.length() == BLOCKS + i as u64)
        });
        rust.check(d, 0, BLOCKS + i as u64, 16, &[]);
    }
    for id in ids {
        js.result(id);
    }
    for i in 0..CORES {
        js.cmd(json!({"cmd": "check", "name": format!("ours-{i}"), "start": 0, "end": BLOCKS + i as u64}));
    }
    // All of it went over the one connection we made.
    let conns = rust.with(|r| {
        js_dkeys
            .iter()
            .map(|d| r.peer_count(d))
            .chain(ours.iter().map(|(_, d)| r.peer_count(d)))
            .collect::<Vec<_>>()
    });
    assert!(conns.iter().all(|&n| n == 1), "peers per log: {conns:?}");
    js.cmd(json!({"cmd": "close"}));
    let _ = Duration::ZERO;
}

#[test]
fn js_truncate_and_fork_is_followed() {
    let mut js = Js::spawn(false);
    let key = js.cmd(json!({"cmd": "create", "name": "a", "blocks": 40}))["key"]
        .as_str()
        .expect("key")
        .to_string();
    let port = js.cmd(json!({"cmd": "listen"}))["port"]
        .as_u64()
        .expect("port") as u16;
    let rust = Rust::new();
    let dkey = rust.replica(&key);
    rust.connect(port);
    rust.synced(&dkey);
    rust.with(|r| {
        r.set_live(&dkey, true, Instant::now());
        r.download(&dkey, 0, None, Instant::now())
    })
    .expect("download");
    rust.wait("first 40 blocks", |r| r.is_complete(&dkey));

    // JS truncates to 30 (fork 1) and appends 5 blocks with other contents.
    let t = js.cmd(json!({"cmd": "truncate", "name": "a", "length": 30}));
    assert_eq!(t["fork"], 1, "{t}");
    js.cmd(json!({"cmd": "append", "name": "a", "blocks": 5, "salt": 7}));
    rust.wait("the reorg onto fork 1", |r| {
        r.core(&dkey)
            .is_some_and(|c| c.fork() == 1 && c.length() == 35)
            && r.is_complete(&dkey)
    });
    rust.with(|r| {
        let core = r.core_mut(&dkey).expect("core");
        for i in 0..35 {
            let want = if i < 30 {
                block(i, 16)
            } else {
                salted(i, 16, 7)
            };
            assert_eq!(core.get(i).expect("read"), Some(want), "block {i}");
        }
        core.verify().expect("verifies");
    });
    js.cmd(json!({"cmd": "close"}));
}

#[test]
fn peerhost_truncate_and_fork_is_followed_by_js() {
    let rust = Rust::new();
    let (key, dkey) = rust.writer("w", false, 40, 16);
    let port = rust.listen();
    let mut js = Js::spawn(false);
    js.cmd(json!({"cmd": "open", "name": "r", "key": key.to_hex()}));
    js.cmd(json!({"cmd": "connect", "port": port}));
    js.cmd(json!({"cmd": "peers", "name": "r"}));
    js.cmd(json!({"cmd": "update", "name": "r"}));
    js.cmd(json!({"cmd": "download", "name": "r", "start": 0, "end": 40}));

    rust.with(|r| {
        r.truncate(&dkey, 30, Instant::now())?;
        let blocks: Vec<Vec<u8>> = (30..35).map(|i| salted(i, 16, 7)).collect();
        r.append(&dkey, &blocks, Instant::now())
    })
    .expect("truncate and append");
    let wait = js.start(json!({"cmd": "wait", "name": "r", "length": 35, "fork": 1}));
    js.result(wait);
    let info = js.cmd(json!({"cmd": "info", "name": "r"}));
    assert_eq!(info["fork"], 1, "{info}");
    js.cmd(json!({"cmd": "get", "name": "r", "index": 29}));
    js.cmd(json!({"cmd": "get", "name": "r", "index": 32, "salt": 7}));
    js.cmd(json!({"cmd": "download", "name": "r", "start": 0, "end": 35}));
    js.cmd(json!({"cmd": "check", "name": "r", "start": 30, "end": 35, "salt": 7}));
    js.cmd(json!({"cmd": "close"}));
}
