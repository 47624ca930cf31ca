//! Model test of the storage engine: random appends, truncations, clears, aborted transactions
//! and reopens against a `Vec<Option<Vec<u8>>>` (datrs `tests/model.rs` style).

mod common;

use std::fs;
use std::os::unix::fs::FileExt;

use peerhost_ids::Key;

/// The header slots: the first 8 KiB of a log's metadata file (`protocol/store.md`).
const HEADER: usize = 8192;
/// Where tree record `i` of the first chunk is in the metadata file.
fn record_at(i: u64) -> u64 {
    131_072 + 4096 + 32_768 * 16 + 64 * i
}
/// Where block `b`'s index entry (of the first chunk) is in the metadata file.
fn entry_at(b: u64) -> u64 {
    131_072 + 4096 + 16 * b
}
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
                    // Everything of the append lands but the header slot: the first 8 KiB of
                    // the metadata file are put back as they were.
                    let meta = s.path();
                    let header = fs::read(&meta).unwrap()[..HEADER].to_vec();
                    common::append(&mut s, &blocks).unwrap();
                    drop(s);
                    drop(store);
                    fs::OpenOptions::new().write(true).open(&meta).unwrap().write_all_at(&header, 0).unwrap();
                    store = Store::open_with(dir.path(), options.clone()).unwrap();
                    s = store.open_storage(&key, None).unwrap();
                }
                Op::CrashAfterTruncate(to) => {
                    // The truncation's header lands, none of the erasing after it: every byte
                    // but the header slots is put back as it was.
                    let to = if model.is_empty() { 0 } else { to % (model.len() as u64 + 1) };
                    let meta = s.path();
                    let data = meta.with_extension("data");
                    let saved_meta = fs::read(&meta).unwrap();
                    let saved_data = fs::read(&data).ok();
                    if common::truncate(&mut s, to).unwrap() {
                        model.truncate(to as usize);
                    }
                    drop(s);
                    drop(store);
                    let mut now = saved_meta;
                    now[..HEADER].copy_from_slice(&fs::read(&meta).unwrap()[..HEADER]);
                    fs::write(&meta, now).unwrap();
                    if let Some(d) = saved_data {
                        fs::write(&data, d).unwrap();
                    }
                    store = Store::open_with(dir.path(), options.clone()).unwrap();
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
    let data = s.path().with_extension("data");
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
    let meta = dir
        .path()
        .join("logs")
        .join(format!("{}.meta", Key([3; 32]).discovery_key().to_hex()));
    let f = fs::OpenOptions::new().write(true).open(&meta).unwrap();
    // Record 4 (block 2's leaf): garbage in its hash.
    f.write_all_at(&[0xff; 7], record_at(4) + 10).unwrap();
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
    let meta = dir
        .path()
        .join("logs")
        .join(format!("{}.meta", Key([3; 32]).discovery_key().to_hex()));
    let f = fs::OpenOptions::new().write(true).open(&meta).unwrap();
    f.write_all_at(&[0x42; HEADER], 0).unwrap();
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

#[test]
fn a_block_is_found_by_its_index_entry_and_by_the_tree_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options::default().durability(Durability::Process),
    )
    .unwrap();
    let mut s = common::create(&store, Key([6; 32]), Some("c"));
    let blocks: Vec<Vec<u8>> = (0..20).map(common::block_content).collect();
    common::append(&mut s, &blocks).unwrap();
    let meta = s.path();
    drop(s);
    drop(store);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&meta)
        .unwrap();
    let reopen = || {
        let store = Store::open(dir.path()).unwrap();
        let s = store.open_storage(&Key([6; 32]), Some("c")).unwrap();
        (store, s)
    };
    // Block 12's offset is the size of the subtrees left of it: nodes 7 (blocks 0..8) and
    // 19 (blocks 8..12). With both gone, its index entry alone says where it starts.
    let saved: Vec<(u64, Vec<u8>)> = [7u64, 19]
        .iter()
        .map(|&i| {
            let mut r = vec![0; 64];
            f.read_exact_at(&mut r, record_at(i)).unwrap();
            f.write_all_at(&[0; 64], record_at(i)).unwrap();
            (i, r)
        })
        .collect();
    {
        let (_store, mut s) = reopen();
        assert_eq!(s.byte_offset(12).unwrap(), None, "the tree cannot say");
        assert_eq!(s.block(12).unwrap(), Some(blocks[12].clone()));
    }
    // Without the entry (a hole), or with a damaged one, the block cannot be found.
    let mut entry = vec![0; 16];
    f.read_exact_at(&mut entry, entry_at(12)).unwrap();
    for damage in [vec![0u8; 16], {
        let mut e = entry.clone();
        e[3] ^= 0x10;
        e
    }] {
        f.write_all_at(&damage, entry_at(12)).unwrap();
        let (_store, mut s) = reopen();
        let e = s.block(12).unwrap_err();
        assert!(
            e.to_string().contains("a tree node left of it is missing"),
            "{e}"
        );
    }
    // With the tree back, the damaged entry is ignored and the offset comes from the tree.
    for (i, r) in saved {
        f.write_all_at(&r, record_at(i)).unwrap();
    }
    let (_store, mut s) = reopen();
    assert_eq!(s.block(12).unwrap(), Some(blocks[12].clone()));
    assert_eq!(s.block(13).unwrap(), Some(blocks[13].clone()));
}

#[test]
fn thousands_of_open_logs_share_a_few_file_descriptors() {
    let fds = || fs::read_dir("/proc/self/fd").unwrap().count();
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .durability(Durability::Process)
        .open_files(8);
    let store = Store::open_with(dir.path(), options).unwrap();
    let before = fds();
    let mut logs: Vec<_> = (0..300u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            let mut s = common::create(&store, Key(k), None);
            common::append(&mut s, &[common::block_content(u64::from(i))]).unwrap();
            s
        })
        .collect();
    for (i, s) in logs.iter_mut().enumerate() {
        assert_eq!(s.block(0).unwrap(), Some(common::block_content(i as u64)));
    }
    // Other tests of this binary run at the same time and hold their own files: the bound
    // checked is far below one file per log.
    assert!(
        fds() < before + 8 + 40,
        "{} descriptors for 300 logs",
        fds() - before
    );
    drop(logs);
    drop(store);
    // Every log reopens.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.keys().unwrap().len(), 300);
}
