//! Model test of the storage engine: random appends, truncations, clears, aborted transactions
//! and reopens against a `Vec<Option<Vec<u8>>>` (datrs `tests/model.rs` style).

mod common;

use std::fs;
use std::os::unix::fs::FileExt;

use peerhost_ids::Key;
use peerhost_store::{Durability, Error, NewLog, Node, Options, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    /// A sparse replica learning a longer head: roots only, no blocks.
    Upgrade(Vec<Vec<u8>>),
    Truncate(u64),
    Clear(u64, u64),
    Abort(Vec<Vec<u8>>),
    /// An append whose every write landed except the header's: a kill just before the commit.
    CrashBeforeCommit(Vec<Vec<u8>>),
    /// A truncation whose header landed but none of the erasing after it.
    CrashAfterTruncate(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let block = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        4 => proptest::collection::vec(block.clone(), 1..12).prop_map(Op::Append),
        1 => proptest::collection::vec(block.clone(), 1..12).prop_map(Op::Upgrade),
        1 => any::<u64>().prop_map(Op::Truncate),
        1 => (any::<u64>(), 0u64..8).prop_map(|(a, n)| Op::Clear(a, n)),
        1 => proptest::collection::vec(block.clone(), 1..6).prop_map(Op::Abort),
        1 => proptest::collection::vec(block, 1..6).prop_map(Op::CrashBeforeCommit),
        1 => any::<u64>().prop_map(Op::CrashAfterTruncate),
        2 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in proptest::collection::vec(op(), 1..30), sync: bool) {
        let dir = tempfile::tempdir().unwrap();
        let durability = if sync { Durability::Sync } else { Durability::Process };
        // Tiny caches so evictions happen all the time.
        let options = Options::default().durability(durability).node_cache(4).page_cache(2);
        let key = Key([3; 32]);
        let mut store = Store::open_with(dir.path(), options.clone()).unwrap();
        let mut s = common::create(&store, key, Some("model"));
        let mut model: Vec<Option<Vec<u8>>> = Vec::new();
        for op in ops {
            match op {
                Op::Append(blocks) => {
                    let len = common::append(&mut s, &blocks).unwrap();
                    model.extend(blocks.into_iter().map(Some));
                    prop_assert_eq!(len, model.len() as u64);
                }
                Op::Upgrade(blocks) => {
                    let len = common::upgrade(&mut s, &blocks).unwrap();
                    model.extend(blocks.iter().map(|_| None));
                    prop_assert_eq!(len, model.len() as u64);
                }
                Op::Truncate(to) => {
                    let to = if model.is_empty() { 0 } else { to % (model.len() as u64 + 1) };
                    let fork = s.head().fork;
                    if common::truncate(&mut s, to).unwrap() {
                        model.truncate(to as usize);
                        prop_assert_eq!(s.head().fork, fork + 1);
                    }
                }
                Op::Clear(start, n) => {
                    let start = if model.is_empty() { 0 } else { start % model.len() as u64 };
                    s.clear(start, start + n).unwrap();
                    let end = (start + n).min(model.len() as u64);
                    for b in &mut model[start as usize..end as usize] {
                        *b = None;
                    }
                }
                Op::Abort(blocks) => {
                    // Write blocks and nodes past the head, then drop the transaction.
                    let head = s.head().clone();
                    let mut tx = s.transaction();
                    let mut at = head.byte_length;
                    for (i, b) in blocks.iter().enumerate() {
                        let index = head.length + i as u64;
                        tx.put_block(index, at, b).unwrap();
                        tx.put_node(Node { index: 2 * index, size: b.len() as u64, hash: [9; 32] }).unwrap();
                        tx.put_node(Node { index: 2 * index + 1, size: 1, hash: [8; 32] }).unwrap();
                        at += b.len() as u64;
                    }
                    drop(tx);
                }
                Op::CrashBeforeCommit(blocks) => {
                    let dir = s.dir().to_owned();
                    let header = fs::read(dir.join("header")).unwrap();
                    common::append(&mut s, &blocks).unwrap();
                    drop(s);
                    drop(store);
                    fs::write(dir.join("header"), header).unwrap();
                    store = Store::open_with(dir.parent().unwrap().parent().unwrap(), options.clone()).unwrap();
                    s = store.open_storage(&key, None).unwrap();
                }
                Op::CrashAfterTruncate(to) => {
                    let to = if model.is_empty() { 0 } else { to % (model.len() as u64 + 1) };
                    let dir = s.dir().to_owned();
                    let saved: Vec<(&str, Vec<u8>)> = ["tree", "bitfield", "data"]
                        .into_iter()
                        .map(|f| (f, fs::read(dir.join(f)).unwrap()))
                        .collect();
                    if common::truncate(&mut s, to).unwrap() {
                        model.truncate(to as usize);
                    }
                    drop(s);
                    drop(store);
                    for (f, bytes) in saved {
                        fs::write(dir.join(f), bytes).unwrap();
                    }
                    store = Store::open_with(dir.parent().unwrap().parent().unwrap(), options.clone()).unwrap();
                    s = store.open_storage(&key, None).unwrap();
                }
                Op::Reopen => {
                    drop(s);
                    drop(store);
                    store = Store::open_with(dir.path(), options.clone()).unwrap();
                    let (k, name) = store.resolve("model").unwrap();
                    s = store.open_storage(&k, name.as_deref()).unwrap();
                }
            }
            common::check(&mut s, &model);
        }
    }
}

/// Open the store at `root` and the only log in it.
fn reopen(root: &std::path::Path) -> (Store, peerhost_store::CoreStorage) {
    let store = Store::open(root).unwrap();
    let s = store.open_storage(&Key([3; 32]), Some("c")).unwrap();
    (store, s)
}

#[test]
fn a_flipped_byte_in_a_block_is_reported_with_log_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut s) = {
        let store = Store::open(dir.path()).unwrap();
        let s = common::create(&store, Key([3; 32]), Some("c"));
        (store, s)
    };
    let blocks: Vec<Vec<u8>> = (0..20).map(common::block_content).collect();
    common::append(&mut s, &blocks).unwrap();
    let data = s.dir().join("data");
    let offset = s.byte_offset(12).unwrap().unwrap();
    drop(s);
    drop(store);
    let f = fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.write_all_at(&[blocks[12][0] ^ 1], offset).unwrap();
    let (_store, mut s) = reopen(dir.path());
    assert_eq!(s.block(11).unwrap().as_ref(), Some(&blocks[11]));
    let e = s.block(12).unwrap_err();
    assert!(matches!(e, Error::CorruptBlock { index: 12, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"c\"") && msg.contains("block 12") && msg.contains("hash mismatch"));
    assert!(msg.contains("peerhost log verify"), "{msg}");
    // A data file cut short: the last block's bytes are gone.
    f.set_len(offset).unwrap();
    assert!(matches!(
        s.block(19),
        Err(Error::CorruptBlock { index: 19, .. })
    ));
}

#[test]
fn a_damaged_tree_record_is_a_typed_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut s = common::create(&store, Key([3; 32]), Some("c"));
        let blocks: Vec<Vec<u8>> = (0..8).map(common::block_content).collect();
        common::append(&mut s, &blocks).unwrap();
    }
    let tree = dir
        .path()
        .join("cores")
        .join(Key([3; 32]).discovery_key().to_hex())
        .join("tree");
    let f = fs::OpenOptions::new().write(true).open(&tree).unwrap();
    // Record 4 (block 2's leaf): garbage in its hash.
    f.write_all_at(&[0xff; 7], 4 * 64 + 10).unwrap();
    let (_store, mut s) = reopen(dir.path());
    assert!(matches!(
        s.node(4),
        Err(Error::CorruptNode { index: 4, .. })
    ));
    let e = s.block(2).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(e.to_string().contains("tree node 4"), "{e}");
    assert_eq!(s.block(1).unwrap(), Some(common::block_content(1)));
    // The root (index 7) still reads: reads are per record.
    assert!(s.roots().is_ok());
}

#[test]
fn a_damaged_header_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        drop(store.create_storage(NewLog::new(Key([3; 32]))).unwrap());
    }
    let header = dir
        .path()
        .join("cores")
        .join(Key([3; 32]).discovery_key().to_hex())
        .join("header");
    fs::write(&header, vec![0x42; 8192]).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let e = store.open_storage(&Key([3; 32]), None).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(e.to_string().contains("no valid slot"), "{e}");
}

#[test]
fn memory_stays_bounded_on_a_large_log() {
    // 200k blocks through caches of 64 nodes and 2 pages: every read goes to disk, nothing
    // grows with the log.
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .durability(Durability::Process)
        .node_cache(64)
        .page_cache(2);
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut s = common::create(&store, Key([4; 32]), None);
    for chunk in 0..20u64 {
        let blocks: Vec<Vec<u8>> = (0..10_000)
            .map(|i| (chunk * 10_000 + i).to_le_bytes().to_vec())
            .collect();
        common::append(&mut s, &blocks).unwrap();
    }
    assert_eq!(s.head().length, 200_000);
    for i in [0u64, 1, 65_535, 65_536, 123_457, 199_999] {
        assert_eq!(s.block(i).unwrap().unwrap(), i.to_le_bytes());
    }
    s.clear(10, 150_000).unwrap();
    assert_eq!(s.next_present(0, 200_000).unwrap(), Some(0));
    assert_eq!(s.next_present(10, 200_000).unwrap(), Some(150_000));
    assert_eq!(s.next_missing(0, 200_000).unwrap(), Some(10));
}

fn through_source<S: peerhost_store::NodeSource>(s: &mut S, index: u64) -> Option<Node> {
    s.node(index).expect("node source reads")
}

#[test]
fn node_source_reads_the_committed_tree_and_the_pending_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut s = common::create(&store, Key([5; 32]), None);
    let blocks: Vec<Vec<u8>> = (0..3).map(common::block_content).collect();
    common::append(&mut s, &blocks).unwrap();
    let leaf = s.node(2).unwrap().unwrap();
    assert_eq!(through_source(&mut s, 2), Some(leaf));
    assert_eq!(through_source(&mut s, 1).map(|n| n.index), Some(1));
    // Node 3 spans blocks 0..4: not part of a 3-block tree.
    assert_eq!(through_source(&mut s, 3), None);
    let mut tx = s.transaction();
    let pending = Node {
        index: 6,
        size: 1,
        hash: [1; 32],
    };
    tx.put_node(pending).unwrap();
    assert_eq!(through_source(&mut tx, 6), Some(pending));
    assert_eq!(through_source(&mut tx, 2), Some(leaf));
    drop(tx);
    assert_eq!(through_source(&mut s, 6), None);
}
