//! Two and three nodes over real loopback TCP (secret stream + protomux + replication, no JS):
//! a full download, live appends, and a reader spreading its requests over two sources.

use std::time::{Duration, Instant};

use peerhost_ids::{DiscoveryKey, KeyPair};
use peerhost_node::{Config, Node};
use peerhost_store::{CreateOptions, Durability, Options, Store};
use tokio::net::TcpListener;

fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(
        dir.path(),
        Options::default().durability(Durability::Process),
    )
    .unwrap();
    (s, dir)
}

async fn listen(node: &Node) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = node.clone();
    tokio::spawn(async move { n.listen_tcp(l).await });
    addr
}

async fn until(
    node: &Node,
    mut f: impl FnMut(&mut peerhost_node::replication::Replicator) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let changed = node.changed();
        if node.with(&mut f) {
            return;
        }
        assert!(Instant::now() < deadline, "hang guard");
        let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
    }
}

fn complete(node: &Node, dkey: &DiscoveryKey, length: u64) -> bool {
    node.with(|r| r.core(dkey).is_some_and(|c| c.length() == length) && r.is_complete(dkey))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_live_and_two_sources() {
    let now = Instant::now();
    // Writer.
    let (ws, _wd) = store();
    let mut core = ws.create("w", CreateOptions::default()).unwrap();
    let blocks: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_le_bytes().repeat(64)).collect();
    core.append(&blocks).unwrap();
    let key = core.key();
    let writer = Node::new(KeyPair::generate(), Config::default());
    let dkey = writer.with(|r| r.add_core(core, false, now));
    let waddr = listen(&writer).await;

    // A full, live mirror of it, which also serves.
    let (ms, _md) = store();
    let mirror = Node::new(KeyPair::generate(), Config::default());
    mirror.with(|r| {
        r.add_core(ms.create_replica(key, None, None).unwrap(), true, now);
        r.set_live(&dkey, true, now);
        r.download(&dkey, 0, None, now).unwrap();
    });
    let maddr = listen(&mirror).await;
    mirror.connect_tcp(waddr);
    until(&mirror, |r| r.is_synced(&dkey)).await;
    until(&mirror, |r| {
        r.is_complete(&dkey) && r.core(&dkey).unwrap().length() == 500
    })
    .await;

    // Live: the writer appends, the mirror follows.
    writer
        .with(|r| r.append(&dkey, &[b"501".to_vec()], Instant::now()))
        .unwrap();
    until(&mirror, |r| {
        r.core(&dkey).is_some_and(|c| c.length() == 501) && r.is_complete(&dkey)
    })
    .await;
    assert!(complete(&mirror, &dkey, 501));

    // A reader with both as sources: both upload to it.
    let (rs, _rd) = store();
    let reader = Node::new(KeyPair::generate(), Config::default());
    reader.with(|r| {
        r.add_core(rs.create_replica(key, None, None).unwrap(), true, now);
    });
    let mut uploads = [writer.subscribe(), mirror.subscribe()];
    reader.connect_tcp(waddr);
    reader.connect_tcp(maddr);
    until(&reader, |r| r.peer_count(&dkey) == 2 && r.is_synced(&dkey)).await;
    reader
        .with(|r| r.download(&dkey, 0, None, Instant::now()))
        .unwrap();
    until(&reader, |r| r.is_complete(&dkey)).await;
    let mut counts = [0; 2];
    for (i, rx) in uploads.iter_mut().enumerate() {
        while let Ok(e) = rx.try_recv() {
            if matches!(e, peerhost_node::replication::Event::Uploaded { .. }) {
                counts[i] += 1;
            }
        }
    }
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "uploads (writer, mirror): {counts:?}"
    );
    reader.with(|r| r.core_mut(&dkey).unwrap().verify().unwrap());
}
