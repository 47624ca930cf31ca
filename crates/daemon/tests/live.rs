//! Two daemons over loopback TCP (no DHT): a writer publishing a community, and a reader that
//! follows it live or mirrors it. Real sockets, real stores in temporary directories.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use peerhost_daemon::{
    Community, Daemon, FileConfig, Followed, LivePost, Options, Part, Range, TrackError,
};
use peerhost_feed::community;
use peerhost_feed::{Entry, Post};
use peerhost_ids::Key;
use peerhost_store::Store;

const TIMEOUT: Duration = Duration::from_secs(20);

fn post(log: &Key, index: u64, title: &str) -> Vec<u8> {
    Entry::from(Post {
        id: peerhost_feed::new_id(&log.0, index),
        title: title.into(),
        published_us: 1_700_000_000_000_000 + index,
        ..Post::default()
    })
    .encode()
    .unwrap()
}

/// A writer daemon on loopback TCP holding the community "town" with `posts` posts.
async fn writer(dir: &std::path::Path, posts: u64) -> (Daemon, Community) {
    let created = {
        let store = Store::open(dir).unwrap();
        let mut c = community::create(&store, "town", None, String::new(), 1).unwrap();
        let key = c.posts.key();
        let blocks: Vec<Vec<u8>> = (0..posts)
            .map(|i| post(&key, i, &format!("p{i}")))
            .collect();
        if !blocks.is_empty() {
            c.posts.append(&blocks).unwrap();
        }
        let descriptor = peerhost_feed::read::descriptor(&mut c.descriptor)
            .unwrap()
            .0
            .and_then(|(_, e)| peerhost_feed::read::as_descriptor(&e).cloned())
            .unwrap();
        Community::new(c.key, descriptor)
    };
    let opts = Options::new(dir, FileConfig::default())
        .with_listen_tcp(Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .with_write_files(false);
    (Daemon::start(opts).await.unwrap(), created)
}

async fn reader(dir: &std::path::Path, peer: SocketAddr) -> Daemon {
    let d = Daemon::start(Options::new(dir, FileConfig::default()).with_write_files(false))
        .await
        .unwrap();
    d.add_tcp_peer(peer);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_live_streams_each_new_post_once_in_order() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (w, c) = writer(a.path(), 3).await;
    let r = reader(b.path(), w.tcp_addr().unwrap()).await;
    let Followed::Community {
        community, posts, ..
    } = r.follow(c.key, Range::last(2), TIMEOUT).await.unwrap()
    else {
        panic!("not followed as a community")
    };
    let titles: Vec<&str> = posts.iter().map(|p| p.post.title.as_str()).collect();
    assert_eq!(titles, ["p2", "p1"]);
    let mut live = r.follow_live(&community).unwrap();
    let posts_key = c.part(Part::Posts).unwrap();
    // Two posts and a block that is no entry, appended through the writer's replicator.
    w.append(&posts_key, &[post(&posts_key, 3, "p3")]).unwrap();
    w.append(
        &posts_key,
        &[b"not an entry".to_vec(), post(&posts_key, 5, "p5")],
    )
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let item = tokio::time::timeout(TIMEOUT, live.next())
            .await
            .expect("a new post in time")
            .expect("the daemon runs");
        got.push(match item {
            LivePost::Post { index, post } => format!("{index}:{}", post.title),
            LivePost::Skipped { index, .. } => format!("{index}:skipped"),
            _ => "other".into(),
        });
    }
    assert_eq!(got, ["3:p3", "4:skipped", "5:p5"]);
    // Nothing more, and the stream ends when the daemon stops.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), live.next())
            .await
            .is_err()
    );
    r.shutdown(Duration::from_millis(200)).await;
    assert!(live.next().await.is_none());
    w.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_finds_the_parts_and_follows_the_descriptor_as_it_grows() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (w, c) = writer(a.path(), 4).await;
    let r = reader(b.path(), w.tcp_addr().unwrap()).await;
    r.mirror(c.key, false).await.unwrap();
    let posts_key = c.part(Part::Posts).unwrap();
    // The actor reads the descriptor when it arrives and mirrors the logs it names.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !(r.is_complete(&posts_key) && r.length(&posts_key) == 4) {
        assert!(tokio::time::Instant::now() < deadline, "posts not mirrored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = r.status(true).await;
    let roles: Vec<(Option<&str>, &str)> = status
        .logs
        .iter()
        .map(|l| (l.part.as_deref(), l.role.as_str()))
        .collect();
    for part in ["descriptor", "posts", "comments", "assets"] {
        assert!(
            roles.contains(&(Some(part), "mirror")),
            "{part} not mirrored: {roles:?}"
        );
    }
    // Live: a new post reaches the mirror without asking.
    w.append(&posts_key, &[post(&posts_key, 4, "p4")]).unwrap();
    while r.length_changed(&posts_key, 4).await != Some(5) {}
    while !r.is_complete(&posts_key) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new post not mirrored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.shutdown(Duration::from_millis(200)).await;
    assert!(matches!(
        r.mirror(Key([9; 32]), false).await,
        Err(TrackError::Closed)
    ));
    w.shutdown(Duration::from_millis(200)).await;
}
