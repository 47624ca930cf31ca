//! The readers on real signed logs in a store (`peerhost_store::Core` as `Blocks`): a
//! malformed entry in a signed log is skipped with a note and reading goes on; a reopened
//! store reads the same; an import into a store is idempotent across processes' worth of
//! reopening.

#![cfg(feature = "store")]

use peerhost_feed::import::{Seen, plan};
use peerhost_feed::lemmy::Document;
use peerhost_feed::read::{Skip, latest_posts};
use peerhost_feed::{Entry, EntryError, Post};
use peerhost_store::{CreateOptions, Store};

fn post(id: &str, title: &str) -> Vec<u8> {
    Entry::from(Post {
        id: id.into(),
        title: title.into(),
        ..Default::default()
    })
    .encode()
    .unwrap()
}

#[test]
fn a_malformed_entry_in_a_signed_log_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut core = store.create("c.posts", CreateOptions::default()).unwrap();
    core.append(&[
        post("a", "first"),
        b"\xff\xff not protobuf".to_vec(),
        post("b", "second"),
        Vec::new(),
        // A post without an id: valid protobuf, invalid entry.
        vec![0x08, 0x01, 0x1a, 0x00],
        post("c", "third"),
    ])
    .unwrap();
    assert!(core.signature_verifies());

    let (posts, notes) = latest_posts(&mut core, 10).unwrap();
    let titles: Vec<&str> = posts.iter().map(|p| p.post.title.as_str()).collect();
    assert_eq!(titles, ["third", "second", "first"]);
    let skipped: Vec<u64> = notes.skipped.iter().map(|s| s.index).collect();
    assert_eq!(skipped, [4, 3, 1]);
    assert!(matches!(
        notes.skipped[0].reason,
        Skip::Malformed(EntryError::Invalid { kind: "post", .. })
    ));
    assert!(matches!(
        notes.skipped[1].reason,
        Skip::Malformed(EntryError::NoVersion)
    ));
    assert!(matches!(
        notes.skipped[2].reason,
        Skip::Malformed(EntryError::Protobuf(_))
    ));
}

#[test]
fn import_into_a_store_is_idempotent_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let json = include_bytes!("data/posts.json");
    let items = Document::parse(json)
        .unwrap()
        .batch("example-lemmy.test")
        .posts;
    let key = {
        let store = Store::open(dir.path()).unwrap();
        let mut core = store.create("c.posts", CreateOptions::default()).unwrap();
        let (mut seen, _) = Seen::scan(&mut core).unwrap();
        let (entries, stats) = plan(&mut seen, items.clone(), 0);
        assert_eq!(stats.new, 30);
        let blocks: Vec<Vec<u8>> = entries.iter().map(|e| e.encode().unwrap()).collect();
        core.append(&blocks).unwrap();
        core.key()
    };
    let store = Store::open(dir.path()).unwrap();
    let mut core = store.open_core(&key.to_hex()).unwrap();
    let (mut seen, notes) = Seen::scan(&mut core).unwrap();
    assert_eq!((seen.len(), notes.skipped_total), (30, 0));
    let (entries, stats) = plan(&mut seen, items, 0);
    assert!(entries.is_empty());
    assert_eq!(stats.unchanged, 30);
    let (latest, _) = latest_posts(&mut core, 3).unwrap();
    assert_eq!(latest.len(), 3);
    assert_eq!(latest[0].index, 29);
}
