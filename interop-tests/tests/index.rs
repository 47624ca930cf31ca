//! A community's index log (issue 13, acceptance 1) between a running peerhost daemon and the
//! real hyperbee 2.27.3 on hypercore 11.39.5 (`bee/peer.js`), live over loopback TCP: a
//! community with 400 posts (edited, deleted) and threaded comments is indexed by
//! `feed::index`, the daemon serves it, and a JS Hyperbee replicates the index log sparsely and
//! lists the same entries we list — the newest page of posts, one thread, the position keys,
//! and then every entry, forward and back.
//!
//! Run: `cargo test -p peerhost-interop-tests --test index` (Node 20, `npm ci` in
//! `interop-tests/`).

use std::time::Duration;

use peerhost_daemon::{Daemon, FileConfig, Followed, Options, Range};
use peerhost_feed::index::{self, View, key};
use peerhost_feed::{Author, Comment, Delete, Edit, Entry, Post, community};
use peerhost_interop_tests::NodePeer;
use peerhost_store::Store;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

fn block(e: impl Into<Entry>) -> Vec<u8> {
    e.into().encode().unwrap()
}

/// `bee/peer.js`, one command at a time.
struct JsBee {
    peer: NodePeer,
    next: u64,
}

impl JsBee {
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

fn range(prefix: &[u8], reverse: bool, limit: Option<u64>) -> Value {
    let mut end = prefix.to_vec();
    // The least key above every key starting with `prefix` (no prefix here ends in 0xff).
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    json!({"gte": hex::encode(prefix), "lt": (!prefix.is_empty()).then(|| hex::encode(&end)),
           "reverse": reverse, "limit": limit})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_hyperbee_lists_our_index_as_we_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, index_key, length) = make(tmp.path());
    check_js_lists_the_same(tmp.path(), index_key, length).await;
}

/// A community with 400 posts (edits, deletes) and 200 threaded comments, indexed: its key,
/// its index log's key and length.
fn make(dir: &std::path::Path) -> (peerhost_ids::Key, peerhost_ids::Key, u64) {
    {
        let store = Store::open(dir).unwrap();
        let mut c = community::create(&store, "ix", None, String::new(), 1).unwrap();
        let mut posts = Vec::new();
        for i in 0..400u64 {
            posts.push(block(Post {
                id: format!("p{i}"),
                title: format!("post {i}"),
                published_us: 1_000 + i,
                author: Some(Author {
                    name: format!("u{}", i % 5),
                    ..Author::default()
                }),
                ..Post::default()
            }));
            if i % 9 == 4 {
                posts.push(block(Edit {
                    target: format!("p{}", i - 1),
                    time_us: 5_000 + i,
                    title: Some(format!("post {} (edited)", i - 1)),
                    ..Edit::default()
                }));
            }
            if i % 40 == 20 {
                posts.push(block(Delete {
                    target: format!("p{}", i - 5),
                    time_us: 5_000 + i,
                    reason: 1,
                }));
            }
        }
        c.posts.append(&posts).unwrap();
        let comments: Vec<Vec<u8>> = (0..200u64)
            .map(|i| {
                block(Comment {
                    id: format!("c{i}"),
                    post: format!("p{}", 399 - i % 4),
                    parent: if i % 3 == 0 {
                        String::new()
                    } else {
                        format!("c{}", i - 1)
                    },
                    body: format!("comment {i}"),
                    published_us: 2_000 + i,
                    ..Comment::default()
                })
            })
            .collect();
        c.comments.append(&comments).unwrap();
        index::catch_up(&mut c.index, &mut c.posts, &mut c.comments, |_, _| {}).unwrap();
        (c.key, c.index.key(), c.index.length())
    }
}

async fn check_js_lists_the_same(dir: &std::path::Path, index_key: peerhost_ids::Key, length: u64) {
    let tmp = dir;

    // Our listings, read back from the store as `peerhost` reads them.
    let queries = [
        range(&[index::TAG_TIME], true, Some(20)),
        range(&key::thread("p399"), false, None),
        range(b"!", false, None),
        range(&key::author("u3"), true, Some(10)),
    ];
    let full = [range(&[], false, None), range(&[], true, None)];
    let gets = [
        key::post("p0"),
        key::post("p15"),
        key::post("p399"),
        key::comment("c7"),
        index::META_POSTS.to_vec(),
        index::META_COMMENTS.to_vec(),
        key::post("nope"),
    ];
    let ours = {
        let store = Store::open(tmp).unwrap();
        let core = store.open_core("ix.index").unwrap();
        let mut view = View::new(core);
        let walks = |view: &mut View<_>, qs: &[Value]| -> Vec<String> {
            qs.iter()
                .map(|q| {
                    let gte = hex::decode(q["gte"].as_str().unwrap()).unwrap();
                    let r = view
                        .prefix(
                            &gte,
                            q["reverse"] == true,
                            q["limit"].as_u64().map_or(usize::MAX, |l| l as usize),
                        )
                        .unwrap();
                    r.iter()
                        .map(|(k, _)| hex::encode(k))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        let sparse = walks(&mut view, &queries);
        let all = walks(&mut view, &full);
        let got: Vec<Option<String>> = gets
            .iter()
            .map(|k| view.get(k).unwrap().map(hex::encode))
            .collect();
        // The newest page is what `feed --page 1` shows: p399 first (p375 was deleted).
        let page =
            index::page(&mut view, &mut store.open_core("ix.posts").unwrap(), 1, 20).unwrap();
        assert_eq!(page[0].post.id, "p399");
        assert!(page.iter().all(|p| p.post.id != "p375"));
        (sparse, all, got)
    };
    assert_eq!(ours.0[0].split(' ').count(), 20);
    assert_eq!(ours.0[1].split(' ').count(), 50);

    let opts = Options::new(tmp, FileConfig::default())
        .with_listen_tcp(Some("127.0.0.1:0".parse().unwrap()));
    let d = Daemon::start(opts).await.unwrap();
    let port = d.tcp_addr().unwrap().port();

    let verdict = tokio::task::block_in_place(|| {
        let mut peer = NodePeer::spawn("bee/peer.js", &[]);
        peer.wait_for(LIMIT, |v| v["event"] == "ready");
        let mut js = JsBee { peer, next: 0 };
        js.cmd(json!({"cmd": "open", "name": "ix", "key": index_key.to_hex()}));
        js.cmd(json!({"cmd": "connect", "port": port}));
        let gets: Vec<String> = gets.iter().map(hex::encode).collect();
        let sparse = js.cmd(json!({"cmd": "query", "name": "ix", "length": length,
                                    "gets": gets, "ranges": queries, "keys": true}));
        let all = js.cmd(json!({"cmd": "query", "name": "ix", "length": length,
                                 "gets": [], "ranges": full, "keys": true}));
        js.cmd(json!({"cmd": "close"}));
        (sparse, all)
    });
    d.shutdown(Duration::from_millis(200)).await;
    let (sparse, all) = verdict;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(sparse["length"], length);
    assert_eq!(strings(&sparse["ranges"]), ours.0, "sparse walks differ");
    let held = sparse["held"].as_u64().unwrap();
    eprintln!("JS held {held} of {length} index blocks after the sparse lookups");
    assert!(held < length / 2, "JS fetched {held} of {length} blocks");
    // A get answers "SEQ KEY VALUE": the value is ours.
    let js_values: Vec<Option<String>> = sparse["gets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().map(|s| s.rsplit(' ').next().unwrap().to_owned()))
        .collect();
    assert_eq!(js_values, ours.2, "lookups differ");
    assert_eq!(strings(&all["ranges"]), ours.1, "full walks differ");
}

/// A follower daemon reads page 2 and a thread of a community it follows through the index,
/// fetching from the writer only the index nodes and the log blocks those need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_a_page_and_a_thread_sparsely() {
    let w = tempfile::tempdir().unwrap();
    let (key, _, _) = make(w.path());
    // What the logs say, read whole on the writer's side.
    let (want_page, want_thread, parts, total) = {
        let store = Store::open(w.path()).unwrap();
        let mut p = store.open_core("ix.posts").unwrap();
        let mut c = store.open_core("ix.comments").unwrap();
        let (page, _) = index::page_scan(&mut p, 2, 20).unwrap();
        let (thread, _) = index::thread_scan(&mut p, &mut c, "p398").unwrap();
        let ix = store.open_core("ix.index").unwrap();
        let parts = [p.key(), c.key(), ix.key()];
        (
            page,
            thread.unwrap(),
            parts,
            p.length() + c.length() + ix.length(),
        )
    };
    let writer = Daemon::start(
        Options::new(w.path(), FileConfig::default())
            .with_listen_tcp(Some("127.0.0.1:0".parse().unwrap())),
    )
    .await
    .unwrap();
    let f = tempfile::tempdir().unwrap();
    let follower = Daemon::start(Options::new(f.path(), FileConfig::default()))
        .await
        .unwrap();
    follower.add_tcp_peer(writer.tcp_addr().unwrap());
    let Followed::Community { community, .. } =
        follower.follow(key, Range::last(1), LIMIT).await.unwrap()
    else {
        panic!("not a community")
    };
    let page = follower
        .read_index(&community, LIMIT, |v, p, _| {
            v.absorb_posts(p, u64::MAX)?;
            index::page(v, p, 2, 20)
        })
        .await
        .unwrap();
    let thread = follower
        .read_index(&community, LIMIT, |v, p, c| {
            v.absorb(p, c, u64::MAX)?;
            index::thread(v, p, c, "p398")
        })
        .await
        .unwrap()
        .unwrap();
    let ids = |v: &[peerhost_feed::read::PostView]| -> Vec<String> {
        v.iter().map(|p| p.post.id.clone()).collect()
    };
    assert_eq!(ids(&page), ids(&want_page));
    assert_eq!(page[0].post.id, "p379");
    let cids = |v: &[peerhost_feed::read::CommentView]| -> Vec<(String, String)> {
        v.iter()
            .map(|c| (c.comment.id.clone(), c.comment.body.clone()))
            .collect()
    };
    assert_eq!(thread.0.post.id, "p398");
    assert_eq!(cids(&thread.1), cids(&want_thread.1));
    assert_eq!(thread.1.len(), 50);
    let held: u64 = parts.iter().map(|k| follower.held(k)).sum();
    eprintln!(
        "the follower holds {held} of the {total} blocks of the posts, comments and index logs"
    );
    assert!(held < total / 2, "held {held} of {total}");
    follower.shutdown(Duration::from_millis(200)).await;
    writer.shutdown(Duration::from_millis(200)).await;
}
