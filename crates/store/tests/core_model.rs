//! Model test of `Core`: random appends, truncations, clears and reopens of a signed v11 log
//! against a `Vec<Option<Vec<u8>>>`; after every step the log must equal the model and pass a
//! full `verify()`. A replica follows the writer through proofs and must agree with it.

use peerhost_ids::KeyPair;
use peerhost_log::Request;
use peerhost_log::proof::{RequestBlock, RequestUpgrade};
use peerhost_store::{Core, CoreError, CreateOptions, Durability, Options, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Truncate(u64),
    Clear(u64, u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let block = proptest::collection::vec(any::<u8>(), 0..50);
    prop_oneof![
        5 => proptest::collection::vec(block, 1..10).prop_map(Op::Append),
        1 => any::<u64>().prop_map(Op::Truncate),
        1 => (any::<u64>(), 0u64..6).prop_map(|(a, n)| Op::Clear(a, n)),
        2 => Just(Op::Reopen),
    ]
}

fn check(core: &mut Core, model: &[Option<Vec<u8>>]) -> Result<(), TestCaseError> {
    prop_assert_eq!(core.length(), model.len() as u64);
    for (i, want) in model.iter().enumerate() {
        let got = core.get(i as u64).unwrap();
        prop_assert_eq!(got.as_ref(), want.as_ref(), "block {}", i);
    }
    let report = core.verify().unwrap();
    prop_assert_eq!(
        report.blocks,
        model.iter().filter(|b| b.is_some()).count() as u64
    );
    prop_assert_eq!(report.signed, !model.is_empty() || core.fork() > 0);
    prop_assert!(model.is_empty() || core.signature_verifies());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn core_matches_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().durability(Durability::Process).node_cache(8).page_cache(2);
        let mut store = Store::open_with(dir.path(), options.clone()).unwrap();
        let kp = KeyPair::from_seed(&[9; 32]);
        let mut core = store.create("model", CreateOptions::default().key_pair(kp)).unwrap();
        let mut model: Vec<Option<Vec<u8>>> = Vec::new();
        for op in ops {
            match op {
                Op::Append(blocks) => {
                    let len = core.append(&blocks).unwrap();
                    model.extend(blocks.into_iter().map(Some));
                    prop_assert_eq!(len, model.len() as u64);
                }
                Op::Truncate(to) => {
                    let to = to % (model.len() as u64 + 1);
                    let fork = core.fork();
                    core.truncate(to).unwrap();
                    model.truncate(to as usize);
                    prop_assert_eq!(core.fork(), fork + 1);
                }
                Op::Clear(start, n) => {
                    let start = if model.is_empty() { 0 } else { start % model.len() as u64 };
                    core.clear(start, start + n).unwrap();
                    let end = (start + n).min(model.len() as u64) as usize;
                    for b in &mut model[start as usize..end] {
                        *b = None;
                    }
                }
                Op::Reopen => {
                    drop(core);
                    drop(store);
                    store = Store::open_with(dir.path(), options.clone()).unwrap();
                    core = store.open_core("model").unwrap();
                }
            }
            check(&mut core, &model)?;
        }
    }

    #[test]
    fn a_replica_follows_appends(batches in proptest::collection::vec(1u64..20, 1..6), picks in proptest::collection::vec(any::<u64>(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().durability(Durability::Process);
        let ws = Store::open_with(dir.path().join("writer"), options.clone()).unwrap();
        let rs = Store::open_with(dir.path().join("replica"), options).unwrap();
        let mut writer = ws.create("w", CreateOptions::default()).unwrap();
        let mut replica = rs.create_replica(writer.key(), None, Some("r")).unwrap();
        let mut next = 0u64;
        for (round, n) in batches.into_iter().enumerate() {
            let blocks: Vec<Vec<u8>> = (next..next + n).map(|i| i.to_le_bytes().repeat(3)).collect();
            next = writer.append(&blocks).unwrap();
            let up = Request {
                id: 1,
                fork: writer.fork(),
                upgrade: Some(RequestUpgrade { start: replica.length(), length: writer.length() - replica.length() }),
                manifest: round == 0,
                ..Request::default()
            };
            let data = writer.proof(&up).unwrap().unwrap();
            prop_assert!(replica.apply(&data).unwrap());
            prop_assert_eq!(replica.tree().hash(), writer.tree().hash());
            for &p in &picks {
                let i = p % replica.length();
                let nodes = replica.missing_nodes(2 * i).unwrap();
                let req = Request { id: 2, fork: writer.fork(), block: Some(RequestBlock { index: i, nodes }), ..Request::default() };
                let data = writer.proof(&req).unwrap().unwrap();
                replica.apply(&data).unwrap();
                prop_assert_eq!(replica.get(i).unwrap(), writer.get(i).unwrap());
            }
            replica.verify().unwrap();
        }
    }
}

#[test]
fn a_proof_for_another_fork_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("writer")).unwrap();
    let rs = Store::open(dir.path().join("replica")).unwrap();
    let mut writer = store.create("w", CreateOptions::default()).unwrap();
    writer
        .append(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
        .unwrap();
    let mut replica = rs.create_replica(writer.key(), None, None).unwrap();
    let up = Request {
        id: 1,
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 3,
        }),
        manifest: true,
        ..Request::default()
    };
    replica.apply(&writer.proof(&up).unwrap().unwrap()).unwrap();
    writer.truncate(1).unwrap();
    writer.append(&[b"B".to_vec()]).unwrap();
    let up = Request {
        id: 2,
        fork: 1,
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 2,
        }),
        ..Request::default()
    };
    let data = writer.proof(&up).unwrap().unwrap();
    let e = replica.apply(&data).unwrap_err();
    assert_eq!(e.code(), Some("INVALID_OPERATION"), "{e}");
    assert!(matches!(e, CoreError::Verify { .. }));
    assert_eq!(replica.length(), 3);
}

/// The replica side of a fork: follow the writer's truncate-and-rewrite through
/// `verify_reorg` / `update_reorg` / `apply_reorg`.
#[test]
fn a_replica_follows_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Store::open(dir.path().join("writer")).unwrap();
    let rs = Store::open(dir.path().join("replica")).unwrap();
    let mut writer = ws.create("w", CreateOptions::default()).unwrap();
    let old: Vec<Vec<u8>> = (0..11u8).map(|i| vec![i; 5]).collect();
    writer.append(&old).unwrap();
    let mut replica = rs.create_replica(writer.key(), None, Some("r")).unwrap();
    let up = Request {
        id: 1,
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 11,
        }),
        manifest: true,
        ..Request::default()
    };
    replica.apply(&writer.proof(&up).unwrap().unwrap()).unwrap();
    for i in 0..11 {
        let nodes = replica.missing_nodes(2 * i).unwrap();
        let req = Request {
            id: 2,
            block: Some(RequestBlock { index: i, nodes }),
            ..Request::default()
        };
        replica
            .apply(&writer.proof(&req).unwrap().unwrap())
            .unwrap();
    }
    assert_eq!(replica.contiguous_length().unwrap(), 11);

    // The writer rewrites history from block 6 on.
    writer.truncate(6).unwrap();
    writer
        .append(&[b"new 6".to_vec(), b"new 7".to_vec(), b"new 8".to_vec()])
        .unwrap();
    assert_eq!((writer.length(), writer.fork()), (9, 1));

    let fork_proof = Request {
        id: 3,
        fork: 1,
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 9,
        }),
        ..Request::default()
    };
    let data = writer.proof(&fork_proof).unwrap().unwrap();
    let mut reorg = replica.verify_reorg(&data).unwrap();
    let mut rounds = 0;
    while let Some(want) = reorg.want() {
        rounds += 1;
        assert!(rounds < 20, "reorg does not converge");
        let req = Request {
            id: 4,
            fork: 1,
            hash: Some(RequestBlock {
                index: 2 * want.start,
                nodes: want.nodes,
            }),
            ..Request::default()
        };
        replica
            .update_reorg(&mut reorg, &writer.proof(&req).unwrap().unwrap())
            .unwrap();
    }
    assert_eq!(reorg.ancestors(), 6);
    replica.apply_reorg(reorg).unwrap();
    assert_eq!((replica.length(), replica.fork()), (9, 1));
    assert!(replica.signature_verifies());
    assert_eq!(replica.tree().hash(), writer.tree().hash());
    for i in 0..6 {
        assert_eq!(replica.get(i).unwrap().unwrap(), old[i as usize]);
    }
    for i in 6..11 {
        assert_eq!(replica.get(i).unwrap(), None, "block {i} of the old fork");
    }
    let report = replica.verify().unwrap();
    assert_eq!(report.blocks, 6);
    // The new fork's blocks download normally.
    let nodes = replica.missing_nodes(14).unwrap();
    let req = Request {
        id: 5,
        fork: 1,
        block: Some(RequestBlock { index: 7, nodes }),
        ..Request::default()
    };
    replica
        .apply(&writer.proof(&req).unwrap().unwrap())
        .unwrap();
    assert_eq!(replica.get(7).unwrap().unwrap(), b"new 7");
    drop(replica);
    let mut replica = rs.open_core("r").unwrap();
    assert_eq!((replica.length(), replica.fork()), (9, 1));
    replica.verify().unwrap();
}
