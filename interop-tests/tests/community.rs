//! Communities between peerhost daemons and the real JS stack, on a local HyperDHT:
//! - end to end: an instance publishes 1000 posts and a 5 MB web app; two peerhost mirrors and
//!   a JS hyperswarm 4 + corestore 7 mirror (`community/mirror.js`) copy it; the instance goes
//!   offline; a new follower gets the latest 50 posts and every file of the app from the
//!   mirrors, verified; with the peerhost mirrors gone too, another follower gets them from
//!   the JS mirror alone (found under the community topic it announces as a plain log's);
//! - the format: a JS reader with plain hypercore 11 (no corestore, no peerhost code) reads
//!   the posts log over TCP and decodes the blocks with protobufjs and `protocol/feed.proto`.
//!
//! Run: `cargo test -p peerhost-interop-tests --test community` (Node 20, `npm ci`).
//! Timeouts are hang guards only.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use peerhost_daemon::{
    Community, Daemon, DhtOptions, FileConfig, Followed, Network, Options, Part, Range,
};
use peerhost_feed::{Descriptor, Entry, Post, assets};
use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_ids::Key;
use peerhost_interop_tests::{NodePeer, describe, node};
use peerhost_store::{CreateOptions, Store};
use peerhost_swarm::{BootstrapOptions, Bootstrapper};
use serde_json::Value;

const GUARD: Duration = Duration::from_secs(180);

struct Made {
    key: Key,
    parts: [Key; 3],
    files: Vec<(String, Vec<u8>)>,
}

/// A community in `dir`: `posts` posts, and a web app of `files`.
fn make_community(dir: &Path, posts: u64, files: Vec<(String, Vec<u8>)>) -> Made {
    let store = Store::open(dir).unwrap();
    let mut p = store.create("c.posts", CreateOptions::default()).unwrap();
    let c = store
        .create("c.comments", CreateOptions::default())
        .unwrap();
    let mut a = store.create("c.assets", CreateOptions::default()).unwrap();
    let mut d = store.create("c", CreateOptions::default()).unwrap();
    let blocks: Vec<Vec<u8>> = (0..posts)
        .map(|i| {
            Entry::from(Post {
                id: peerhost_feed::new_id(&p.key().0, i),
                title: format!("post {i}"),
                body: format!("body of post {i}"),
                published_us: 1_700_000_000_000_000 + i,
                ..Default::default()
            })
            .encode()
            .unwrap()
        })
        .collect();
    for chunk in blocks.chunks(500) {
        p.append(chunk).unwrap();
    }
    let mut index = Vec::new();
    for (path, bytes) in &files {
        let content = assets::append_content(&mut a, &bytes[..], |_| {}).unwrap();
        index.push(content.asset(path, assets::content_type(path)));
    }
    index.sort_by(|x, y| x.path.cmp(&y.path));
    a.append(&[assets::index_entry(index, 1).encode().unwrap()])
        .unwrap();
    let desc = Entry::from(Descriptor {
        name: "c".into(),
        title: "A community".into(),
        posts: p.key().0.to_vec(),
        comments: c.key().0.to_vec(),
        assets: a.key().0.to_vec(),
        ..Default::default()
    });
    d.append(&[desc.encode().unwrap()]).unwrap();
    Made {
        key: d.key(),
        parts: [p.key(), c.key(), a.key()],
        files,
    }
}

/// A loopback HyperDHT: a bootstrap node and three persistent nodes (the JS mirror joins it
/// too); dropping it stops them.
struct Testnet {
    boot: Bootstrapper,
    _nodes: Vec<Dht>,
}

impl Testnet {
    async fn start() -> Self {
        let lo = Ipv4Addr::LOCALHOST;
        let boot = Bootstrapper::bind(BootstrapOptions::new(lo, 0).with_bind(lo))
            .await
            .unwrap();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut config = peerhost_hyperdht::Config::default();
            config.dht.bootstrap = vec![boot.addr()];
            config.dht.ephemeral = Some(false);
            config.dht.firewalled = false;
            let dht = Dht::bind(config, BindOptions::host(lo)).await.unwrap();
            dht.bootstrapped().await;
            nodes.push(dht);
        }
        Self {
            boot,
            _nodes: nodes,
        }
    }
}

async fn daemon(dir: &Path, testnet: &Testnet, announce: bool) -> Daemon {
    let dht = DhtOptions::new(vec![testnet.boot.addr().into()]).with_host(Ipv4Addr::LOCALHOST);
    let opts = Options::new(dir, FileConfig::default())
        .with_network(Network::Dht(dht))
        .with_announce(announce);
    Daemon::start(opts).await.unwrap()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + GUARD;
    while !f() {
        assert!(Instant::now() < deadline, "hang guard: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mirrored(d: &Daemon, m: &Made) -> bool {
    std::iter::once(&m.key)
        .chain(m.parts.iter())
        .enumerate()
        .all(|(i, k)| i == 2 || d.is_complete(k))
}

/// Follow `m` from scratch in `dir`: the latest 50 posts and every file of the app.
async fn follow_all(dir: &Path, testnet: &Testnet, m: &Made) -> (Community, Vec<String>) {
    let f = daemon(dir, testnet, false).await;
    let Followed::Community {
        community, posts, ..
    } = f.follow(m.key, Range::last(50), GUARD).await.unwrap()
    else {
        panic!("not followed as a community");
    };
    let titles: Vec<String> = posts.iter().map(|p| p.post.title.clone()).collect();
    for (path, bytes) in &m.files {
        let mut got = Vec::new();
        let asset = f
            .fetch_asset(&community, path, &mut got, GUARD)
            .await
            .unwrap();
        assert_eq!(asset.size, bytes.len() as u64);
        assert!(got == *bytes, "{path} differs");
    }
    // Sparse: only the posts asked for (plus nothing before the window) are held.
    let posts_key = community.part(Part::Posts).unwrap();
    assert_eq!(f.held(&posts_key), 50);
    f.shutdown(Duration::from_millis(200)).await;
    (*community, titles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_with_a_js_mirror() {
    let testnet = Testnet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n);
    // 5 MB of app: an index and a few files of different sizes.
    let mut files = vec![(
        "index.html".to_string(),
        b"<!doctype html><p>app</p>".to_vec(),
    )];
    for (i, size) in [2_000_000usize, 1_500_000, 1_000_000, 500_000]
        .iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..*size).map(|j| ((j * 7 + i * 13) % 251) as u8).collect();
        files.push((format!("assets/file{i}.bin"), bytes));
    }
    let m = make_community(&dir("instance"), 1000, files);
    let instance = daemon(&dir("instance"), &testnet, true).await;

    let mirrors = [
        daemon(&dir("mirror-a"), &testnet, true).await,
        daemon(&dir("mirror-b"), &testnet, true).await,
    ];
    for d in &mirrors {
        d.mirror(m.key, true).await.unwrap();
    }
    let boot = testnet.boot.addr().to_string();
    let keys: Vec<String> = std::iter::once(m.key)
        .chain(m.parts)
        .map(|k| k.to_hex())
        .collect();
    let mut args = vec![boot.as_str()];
    args.extend(keys.iter().map(String::as_str));
    let mut js = NodePeer::spawn("community/mirror.js", &args);
    js.wait_for(GUARD, |v| v["event"] == "ready");
    until("the peerhost mirrors complete", || {
        mirrors.iter().all(|d| mirrored(d, &m))
    })
    .await;
    let synced = tokio::task::block_in_place(|| js.wait_for(GUARD, |v| v["event"] == "synced"));
    assert_eq!(synced["lengths"][1], 1000, "{synced}");

    let served_by_instance: u64 = instance
        .node()
        .log_stats()
        .values()
        .map(|s| s.uploaded_bytes)
        .sum();
    assert!(served_by_instance > 5_000_000);
    instance.shutdown(Duration::from_millis(500)).await;
    drop(instance);

    // A new follower, the instance offline.
    let (community, titles) = follow_all(&dir("follower-1"), &testnet, &m).await;
    assert_eq!(community.descriptor.title, "A community");
    let want: Vec<String> = (950..1000).rev().map(|i| format!("post {i}")).collect();
    assert_eq!(titles, want);

    // The peerhost mirrors go too: the JS mirror alone serves the next follower.
    for d in &mirrors {
        d.shutdown(Duration::from_millis(500)).await;
    }
    drop(mirrors);
    let (_, titles) = follow_all(&dir("follower-2"), &testnet, &m).await;
    assert_eq!(titles, want);
    js.send(serde_json::json!("exit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_reads_the_posts_log_with_hypercore_and_protobufjs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = make_community(tmp.path(), 30, vec![("index.html".into(), b"hi".to_vec())]);
    let opts = Options::new(tmp.path(), FileConfig::default())
        .with_listen_tcp(Some("127.0.0.1:0".parse().unwrap()));
    let d = Daemon::start(opts).await.unwrap();
    // A malformed signed block at the end: JS reports a decode error for it, as we skip it.
    d.append(&m.parts[0], &[b"\xff\xffgarbage".to_vec()])
        .unwrap();
    let port = d.tcp_addr().unwrap().port().to_string();
    let posts_hex = m.parts[0].to_hex();
    let out =
        tokio::task::block_in_place(|| node("community/read-posts.js", &[&port, &posts_hex, "11"]));
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["length"], 31);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 11);
    for (i, e) in entries[..10].iter().enumerate() {
        let n = 20 + i as u64;
        assert_eq!(e["index"], n);
        assert_eq!(e["version"], 1);
        assert_eq!(e["kind"], "post");
        assert_eq!(e["title"], format!("post {n}"));
        assert_eq!(e["body"], format!("body of post {n}"));
        assert_eq!(e["id"], peerhost_feed::new_id(&m.parts[0].0, n));
        assert_eq!(e["publishedUs"], (1_700_000_000_000_000u64 + n).to_string());
    }
    assert!(entries[10]["error"].is_string(), "{}", entries[10]);
    d.shutdown(Duration::from_millis(200)).await;
}
