use std::collections::BTreeMap;
use std::convert::Infallible;

use super::*;

/// Nodes in memory.
#[derive(Debug, Default, Clone)]
pub(crate) struct MemSource {
    pub(crate) nodes: BTreeMap<u64, Node>,
}

impl MemSource {
    pub(crate) fn put(&mut self, nodes: &[Node]) {
        for n in nodes {
            self.nodes.insert(n.index, *n);
        }
    }
}

impl NodeSource for MemSource {
    type Error = Infallible;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Infallible> {
        Ok(self.nodes.get(&index).copied())
    }
}

fn blocks(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("block {i}").into_bytes()).collect()
}

/// The node at `index` computed straight from the leaves, no tree state involved.
fn naive_node(index: u64, blocks: &[Vec<u8>]) -> Node {
    match flat::children(index) {
        None => Node::leaf(index / 2, &blocks[(index / 2) as usize]),
        Some((l, r)) => Node::parent(index, &naive_node(l, blocks), &naive_node(r, blocks)),
    }
}

fn naive_roots(blocks: &[Vec<u8>]) -> Vec<Node> {
    flat::full_roots(2 * blocks.len() as u64)
        .into_iter()
        .map(|r| naive_node(r, blocks))
        .collect()
}

/// A writer: a signed tree over `n` blocks with all its nodes.
pub(crate) struct Writer {
    pub(crate) tree: Tree,
    pub(crate) src: MemSource,
    pub(crate) blocks: Vec<Vec<u8>>,
    pub(crate) verifier: Verifier,
    pub(crate) key_pair: KeyPair,
}

impl Writer {
    pub(crate) fn new(n: usize) -> Self {
        let key_pair = KeyPair::from_seed(&[1; 32]);
        let verifier =
            Verifier::from_manifest(crate::Manifest::default_signer(key_pair.public_key()));
        let mut w = Self {
            tree: Tree::new(),
            src: MemSource::default(),
            blocks: vec![],
            verifier,
            key_pair,
        };
        w.append(&blocks(n));
        w
    }

    pub(crate) fn append(&mut self, bs: &[Vec<u8>]) {
        let nodes = self.tree.append(bs);
        self.src.put(&nodes);
        self.blocks.extend_from_slice(bs);
        self.tree.sign(&self.verifier, &self.key_pair).unwrap();
    }

    pub(crate) fn answer(&self, req: &Request) -> Data {
        let proof = self.tree.proof(req, &mut self.src.clone()).unwrap();
        let value = proof
            .block
            .as_ref()
            .map(|(i, _)| self.blocks[*i as usize].clone());
        proof.into_data(value, None).unwrap()
    }
}

/// A replica: a tree and the nodes it verified.
#[derive(Debug, Default)]
pub(crate) struct Replica {
    pub(crate) tree: Tree,
    pub(crate) src: MemSource,
}

impl Replica {
    fn apply(
        &mut self,
        data: &Data,
        verifier: &Verifier,
    ) -> Result<Verified, VerifyError<Infallible>> {
        let v = self.tree.verify(data, verifier, &mut self.src)?;
        self.src.put(&v.nodes);
        if let Some(h) = &v.head {
            self.tree = h.clone();
        }
        Ok(v)
    }

    fn upgrade(&mut self, w: &Writer, length: u64) {
        let req = Request {
            id: 1,
            fork: self.tree.fork(),
            upgrade: Some(RequestUpgrade {
                start: self.tree.length(),
                length: length - self.tree.length(),
            }),
            ..Request::default()
        };
        let data = w.answer(&req);
        self.apply(&data, &w.verifier).unwrap();
    }
}

use crate::proof::{RequestBlock, RequestSeek, RequestUpgrade};
use crate::{Data, Request, Verifier, VerifyError};

#[test]
fn append_matches_naive_roots_and_js() {
    let mut t = Tree::new();
    let mut src = MemSource::default();
    let bs = blocks(13);
    for k in 0..bs.len() {
        let nodes = t.append(&bs[k..k + 1]);
        src.put(&nodes);
        assert_eq!(t.length(), k as u64 + 1);
        assert_eq!(t.roots(), &naive_roots(&bs[..=k])[..]);
        assert_eq!(
            t.byte_length(),
            bs[..=k].iter().map(|b| b.len() as u64).sum::<u64>()
        );
    }
    // Every stored node is the naive one.
    for (i, n) in &src.nodes {
        assert_eq!(*n, naive_node(*i, &bs));
    }
    // hypercore 11.39.5, a fresh core with these 13 blocks: core.treeHash() hex.
    assert_eq!(hex::encode(t.hash()), JS_TREE_HASH_13);
    // Opening from storage gives the same head.
    let opened = Tree::open(13, 0, None, &mut src).unwrap();
    assert_eq!(opened.roots(), t.roots());
    assert_eq!(opened.byte_length(), t.byte_length());
    let again = Tree::from_roots(13, 0, t.roots().to_vec(), None).unwrap();
    assert_eq!(again.hash(), t.hash());
    assert!(Tree::from_roots(12, 0, t.roots().to_vec(), None).is_err());
}
const JS_TREE_HASH_13: &str = "5c3ab5f82f4d3456c613774a8e3f4c9150eff054bcb2670472f78b7843609319";

#[test]
fn append_batch_returns_leaves_and_parents_in_js_order() {
    let mut t = Tree::new();
    let nodes = t.append(&blocks(4));
    let idx: Vec<u64> = nodes.iter().map(|n| n.index).collect();
    // appendRoot pushes the leaf, then each parent it completes.
    assert_eq!(idx, vec![0, 2, 1, 4, 6, 5, 3]);
    assert_eq!(
        t.roots().iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn truncate_loads_roots_and_reports_dead_nodes() {
    let mut w = Writer::new(13);
    let before = w.tree.clone();
    let cut = w.tree.truncate(6, 1, &mut w.src).unwrap();
    assert_eq!(w.tree.length(), 6);
    assert_eq!(w.tree.fork(), 1);
    assert_eq!(w.tree.signature(), None);
    assert_eq!(w.tree.roots(), &naive_roots(&w.blocks[..6])[..]);
    assert_eq!(cut.nodes, 12..26);
    // Parents left of leaf 12 whose span reaches it: 11 (blocks 4..7) and 7 (blocks 0..7).
    assert_eq!(cut.parents, vec![11, 7]);
    // Node 3 (blocks 0..3) is dead too when keeping 1 block, but it is in the range 2..16.
    assert_eq!(Truncation::between(1, 8).parents, vec![1]);
    assert_eq!(Truncation::between(2, 8).parents, vec![3]);
    assert_eq!(Truncation::between(2, 2).parents, Vec::<u64>::new());
    assert!(w.tree.truncate(7, 2, &mut w.src).is_err());
    assert_eq!(before.length(), 13);
    // Truncating to 0 empties the tree.
    let cut = w.tree.truncate(0, 2, &mut w.src).unwrap();
    assert_eq!(w.tree.roots(), &[]);
    assert_eq!(cut.nodes, 0..12);
    assert!(cut.parents.is_empty());
}

#[test]
fn byte_offsets_and_seek() {
    let w = Writer::new(13);
    let mut src = w.src.clone();
    let mut offset = 0;
    for (i, b) in w.blocks.iter().enumerate() {
        assert_eq!(w.tree.byte_offset(i as u64, &mut src).unwrap(), offset);
        assert_eq!(
            w.tree.byte_range(i as u64, &mut src).unwrap(),
            (offset, b.len() as u64)
        );
        for k in 0..b.len() as u64 {
            assert_eq!(
                w.tree.seek(offset + k, 0, &mut src).unwrap(),
                Some(Seek::Found {
                    index: i as u64,
                    offset: k
                }),
                "byte {}",
                offset + k
            );
        }
        offset += b.len() as u64;
    }
    assert_eq!(w.tree.byte_offset(13, &mut src).unwrap(), offset);
    assert_eq!(
        w.tree.seek(offset, 0, &mut src).unwrap(),
        Some(Seek::Found {
            index: 13,
            offset: 0
        })
    );
    assert_eq!(w.tree.seek(offset + 1, 0, &mut src).unwrap(), None);
    // With padding 2 every block counts 2 bytes shorter.
    let unpadded0 = w.blocks[0].len() as u64 - 2;
    assert_eq!(
        w.tree.seek(unpadded0 + 1, 2, &mut src).unwrap(),
        Some(Seek::Found {
            index: 1,
            offset: 1
        })
    );
    // Without the nodes under a root, seek says which blocks to fetch.
    let mut only_roots = MemSource::default();
    only_roots.put(w.tree.roots());
    assert_eq!(
        w.tree.seek(3, 0, &mut only_roots).unwrap(),
        Some(Seek::Missing { start: 0, end: 8 })
    );
}

#[test]
fn missing_nodes_counts_what_a_replica_lacks() {
    let w = Writer::new(8);
    let mut r = Replica::default();
    r.upgrade(&w, 8);
    // The replica holds only the root 7: block 0 lacks 0, 1, 3.
    assert_eq!(r.tree.missing_nodes(0, &mut r.src).unwrap(), 3);
    // flat-tree/hypercore 11.39.5: MerkleTree.maxMissingNodes(0, 8) = 3, (14, 8) = 3.
    assert_eq!(max_missing_nodes(0, 8), 3);
    assert_eq!(max_missing_nodes(14, 8), 3);
    assert_eq!(max_missing_nodes(7, 8), 0);
    assert_eq!(max_missing_nodes(16, 8), 0);
    // A block past the length: unknown, 0.
    assert_eq!(r.tree.missing_nodes(16, &mut r.src).unwrap(), 0);
}

#[test]
fn block_proof_round_trip_and_tampering() {
    let w = Writer::new(10);
    let mut r = Replica::default();
    r.upgrade(&w, 10);
    assert_eq!(r.tree.hash(), w.tree.hash());
    assert_eq!(r.tree.signature(), w.tree.signature());
    for i in 0..10u64 {
        let nodes = r.tree.missing_nodes(2 * i, &mut r.src).unwrap();
        let req = Request {
            id: 2,
            block: Some(RequestBlock { index: i, nodes }),
            ..Request::default()
        };
        let data = w.answer(&req);
        // Tampered value: the hash no longer matches what we store.
        let mut bad = data.clone();
        bad.block.as_mut().unwrap().value.push(1);
        let e = r.tree.verify(&bad, &w.verifier, &mut r.src).unwrap_err();
        assert_eq!(e.code(), "INVALID_CHECKSUM", "{e}");
        let v = r.apply(&data, &w.verifier).unwrap();
        assert_eq!(v.block.unwrap().value, w.blocks[i as usize]);
        assert!(v.head.is_none());
        // Now the replica has the leaf: asking again needs no nodes.
        assert_eq!(r.tree.missing_nodes(2 * i, &mut r.src).unwrap(), 0);
    }
}

#[test]
fn upgrade_with_block_and_additional_nodes() {
    let w = Writer::new(21);
    let mut r = Replica::default();
    r.upgrade(&w, 5);
    assert_eq!(
        r.tree.length(),
        21,
        "additional nodes take the replica to the full length"
    );
    // A replica at 5 (built directly) asking for block 7 and an upgrade to 9.
    let mut r = Replica::default();
    let mut w5 = Writer::new(5);
    r.upgrade(&w5, 5);
    w5.append(&w.blocks[5..]);
    let req = Request {
        id: 3,
        block: Some(RequestBlock { index: 7, nodes: 0 }),
        upgrade: Some(RequestUpgrade {
            start: 5,
            length: 4,
        }),
        ..Request::default()
    };
    let data = w5.answer(&req);
    assert!(!data.upgrade.as_ref().unwrap().additional_nodes.is_empty());
    let v = r.apply(&data, &w5.verifier).unwrap();
    assert_eq!(v.block.unwrap().index, 7);
    assert_eq!(r.tree.length(), 21);
    assert_eq!(r.tree.hash(), w5.tree.hash());
    // A bad signature is refused.
    let mut r2 = Replica::default();
    r2.upgrade(&Writer::new(5), 5);
    let mut bad = w5.answer(&Request {
        upgrade: Some(RequestUpgrade {
            start: 5,
            length: 1,
        }),
        ..Request::default()
    });
    bad.upgrade.as_mut().unwrap().signature.as_mut().unwrap()[10] ^= 1;
    let e = r2.tree.verify(&bad, &w5.verifier, &mut r2.src).unwrap_err();
    assert_eq!(e.code(), "INVALID_SIGNATURE");
    // A missing node is an unexpected-node error.
    let mut bad = w5.answer(&Request {
        upgrade: Some(RequestUpgrade {
            start: 5,
            length: 1,
        }),
        ..Request::default()
    });
    bad.upgrade.as_mut().unwrap().nodes.pop();
    let e = r2.tree.verify(&bad, &w5.verifier, &mut r2.src).unwrap_err();
    assert_eq!(e.code(), "INVALID_OPERATION");
}

#[test]
fn seek_and_hash_proofs() {
    let w = Writer::new(16);
    let mut r = Replica::default();
    r.upgrade(&w, 16);
    let total = w.tree.byte_length();
    for bytes in [0, 1, 7, 8, 30, total / 2, total - 1] {
        let req = Request {
            id: 4,
            seek: Some(RequestSeek { bytes, padding: 0 }),
            ..Request::default()
        };
        let data = w.answer(&req);
        let mut r2 = Replica {
            tree: r.tree.clone(),
            src: r.src.clone(),
        };
        r2.apply(&data, &w.verifier).unwrap();
        // After the seek proof the replica can seek locally (or knows where to look).
        let found = r2.tree.seek(bytes, 0, &mut r2.src).unwrap().unwrap();
        let expect = w.tree.seek(bytes, 0, &mut w.src.clone()).unwrap().unwrap();
        match found {
            Seek::Found { .. } => assert_eq!(found, expect, "bytes {bytes}"),
            Seek::Missing { start, end } => {
                let Seek::Found { index, .. } = expect else {
                    panic!()
                };
                assert!(start <= index && index < end);
            }
        }
    }
    // Hash proof of node 9 (blocks 4, 5).
    let nodes = r.tree.missing_nodes(9, &mut r.src).unwrap();
    let data = w.answer(&Request {
        hash: Some(RequestBlock { index: 9, nodes }),
        ..Request::default()
    });
    assert_eq!(data.hash.as_ref().unwrap().nodes[0].index, 9);
    let v = r.apply(&data, &w.verifier).unwrap();
    assert!(v.nodes.iter().any(|n| n.index == 9));
}

#[test]
fn fork_mismatch_and_reorg() {
    let mut w = Writer::new(10);
    let mut r = Replica::default();
    r.upgrade(&w, 10);
    // Fetch every block so the replica holds the whole tree.
    for i in 0..10 {
        let nodes = r.tree.missing_nodes(2 * i, &mut r.src).unwrap();
        let data = w.answer(&Request {
            block: Some(RequestBlock { index: i, nodes }),
            ..Request::default()
        });
        r.apply(&data, &w.verifier).unwrap();
    }
    // The writer truncates to 6 and appends 6 other blocks on fork 1.
    w.tree.truncate(6, 1, &mut w.src).unwrap();
    w.blocks.truncate(6);
    let other: Vec<Vec<u8>> = (0..6).map(|i| format!("other {i}").into_bytes()).collect();
    w.append(&other);
    let data = w.answer(&Request {
        fork: 1,
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 12,
        }),
        ..Request::default()
    });
    let e = r.tree.verify(&data, &w.verifier, &mut r.src).unwrap_err();
    assert!(matches!(
        e,
        VerifyError::ForkMismatch { ours: 0, theirs: 1 }
    ));
    let mut reorg = r.tree.verify_reorg(&data, &w.verifier, &mut r.src).unwrap();
    assert_eq!(reorg.head().length(), 12);
    assert_eq!(reorg.head().fork(), 1);
    // The roots alone say the trees differ under root 7 (blocks 0..8): narrow it down the way
    // the JS replicator does, with hash proofs of a leaf up to the diverging node.
    assert_eq!(reorg.want().map(|w| (w.start, w.end)), Some((0, 8)));
    let mut rounds = 0;
    while let Some(want) = reorg.want() {
        rounds += 1;
        assert!(rounds < 10);
        // > req.hash = { index: 2 * index, nodes: f.batch.want.nodes }  (replicator.js)
        let data = w.answer(&Request {
            fork: 1,
            hash: Some(RequestBlock {
                index: 2 * want.start,
                nodes: want.nodes,
            }),
            ..Request::default()
        });
        reorg.update(&data, &mut r.src).unwrap();
    }
    assert_eq!(reorg.ancestors(), 6);
    assert!(reorg.finished());
    // Applying it: drop what follows the ancestors, store the new nodes, adopt the head.
    let (head, nodes, ancestors) = reorg.into_parts();
    let cut = Truncation::between(ancestors, r.tree.length());
    r.src
        .nodes
        .retain(|i, _| !cut.nodes.contains(i) && !cut.parents.contains(i));
    r.src.put(&nodes);
    r.tree = head;
    // The replica now follows fork 1: a block of the new fork verifies.
    let nodes = r.tree.missing_nodes(2 * 7, &mut r.src).unwrap();
    let data = w.answer(&Request {
        fork: 1,
        block: Some(RequestBlock { index: 7, nodes }),
        ..Request::default()
    });
    assert_eq!(
        r.apply(&data, &w.verifier).unwrap().block.unwrap().value,
        b"other 1"
    );
}

#[test]
fn clear_nodes_follows_js() {
    let w = Writer::new(8);
    // Clearing block 1 while block 0 is still present: nothing to delete.
    assert!(
        w.tree
            .clear_nodes(1, 2, |s, l| s < 1 && s + l > 0)
            .is_empty()
    );
    // Clearing blocks 0..2 with 2..4 present: leaves 0 and 2 go, their parent 1 stays.
    assert_eq!(w.tree.clear_nodes(0, 2, |s, l| s + l > 2), vec![0, 2]);
    // Clearing everything: climbs to the root, which stays.
    assert_eq!(
        w.tree.clear_nodes(0, 8, |_, _| false),
        vec![0, 2, 1, 5, 3, 11]
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(Vec<usize>),
        Truncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => proptest::collection::vec(0usize..40, 1..9).prop_map(Op::Append),
            1 => any::<u64>().prop_map(Op::Truncate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn append_and_truncate_match_the_naive_model(ops in proptest::collection::vec(op(), 1..12)) {
            let mut t = Tree::new();
            let mut src = MemSource::default();
            let mut model: Vec<Vec<u8>> = vec![];
            let mut counter = 0u8;
            for op in ops {
                match op {
                    Op::Append(sizes) => {
                        let new: Vec<Vec<u8>> = sizes.iter().map(|&s| {
                            counter = counter.wrapping_add(1);
                            vec![counter; s]
                        }).collect();
                        src.put(&t.append(&new));
                        model.extend(new);
                    }
                    Op::Truncate(to) => {
                        let to = to % (model.len() as u64 + 1);
                        let fork = t.fork() + 1;
                        let cut = t.truncate(to, fork, &mut src).unwrap();
                        src.nodes.retain(|i, _| !cut.nodes.contains(i) && !cut.parents.contains(i));
                        model.truncate(to as usize);
                    }
                }
                prop_assert_eq!(t.length(), model.len() as u64);
                prop_assert_eq!(t.roots(), &naive_roots(&model)[..]);
                prop_assert_eq!(t.byte_length(), model.iter().map(|b| b.len() as u64).sum::<u64>());
                // Every node under the roots is stored and right; nothing dead is left.
                for (i, n) in &src.nodes {
                    prop_assert!(flat::right_span(*i) < 2 * t.length(), "dead node {} kept", i);
                    prop_assert_eq!(*n, naive_node(*i, &model));
                }
                for r in t.roots() {
                    let (l, rs) = flat::spans(r.index);
                    for i in l..=rs {
                        prop_assert!(src.nodes.contains_key(&i), "node {} missing", i);
                    }
                }
                let opened = Tree::open(t.length(), t.fork(), None, &mut src).unwrap();
                prop_assert_eq!(opened.hash(), t.hash());
            }
        }

        #[test]
        fn proofs_round_trip(
            n in 1u64..70,
            m_frac in 0u64..=100,
            picks in proptest::collection::vec((0u8..4, any::<u64>(), any::<u64>()), 1..6),
        ) {
            let w = Writer::new(n as usize);
            let m = n * m_frac / 100;
            // A replica holding only the signed head at m (m = 0: nothing at all).
            let mut r = Replica::default();
            if m > 0 {
                r.upgrade(&Writer::new(m as usize), m);
            }
            for (kind, a, b) in picks {
                let len = r.tree.length();
                let req = match kind {
                    // A block: below our length with the nodes we lack, else with an upgrade.
                    0 => {
                        let i = a % n;
                        if i < len {
                            let nodes = r.tree.missing_nodes(2 * i, &mut r.src).unwrap();
                            Request { block: Some(RequestBlock { index: i, nodes }), ..Request::default() }
                        } else {
                            Request {
                                block: Some(RequestBlock { index: i, nodes: 0 }),
                                upgrade: Some(RequestUpgrade { start: len, length: i + 1 - len + b % (n - i) }),
                                ..Request::default()
                            }
                        }
                    }
                    // A plain upgrade to some length.
                    1 if len < n => Request {
                        upgrade: Some(RequestUpgrade { start: len, length: 1 + a % (n - len) }),
                        ..Request::default()
                    },
                    // A hash of a node inside our tree.
                    2 if len > 0 => {
                        let roots = r.tree.roots().to_vec();
                        let root = roots[(a % roots.len() as u64) as usize];
                        let (l, rs) = flat::spans(root.index);
                        let mut index = l + b % (rs - l + 1);
                        // Climb a little to get parents too.
                        let mut ite = Iterator::new(index);
                        for _ in 0..(a % 3) {
                            if ite.parent() <= root.index && ite.contains(index) && flat::right_span(ite.index()) <= rs {
                                index = ite.index();
                            }
                        }
                        let nodes = r.tree.missing_nodes(index, &mut r.src).unwrap();
                        Request { hash: Some(RequestBlock { index, nodes }), ..Request::default() }
                    }
                    // A seek: inside our bytes, or with an upgrade past them.
                    _ => {
                        if len < n && a % 2 == 0 {
                            let to = len + 1 + b % (n - len);
                            let bytes_to: u64 = w.blocks[..to as usize].iter().map(|x| x.len() as u64).sum();
                            Request {
                                seek: Some(RequestSeek { bytes: a % bytes_to, padding: 0 }),
                                upgrade: Some(RequestUpgrade { start: len, length: to - len }),
                                ..Request::default()
                            }
                        } else if r.tree.byte_length() > 0 {
                            Request {
                                seek: Some(RequestSeek { bytes: a % r.tree.byte_length(), padding: 0 }),
                                ..Request::default()
                            }
                        } else {
                            continue;
                        }
                    }
                };
                let data = w.answer(&req);
                // Encoding round trip of what we send.
                let bytes = peerhost_encoding::to_vec(&data);
                prop_assert_eq!(&peerhost_encoding::from_slice::<Data>(&bytes).unwrap(), &data);
                let v = r.apply(&data, &w.verifier);
                let v = match v {
                    Ok(v) => v,
                    Err(e) => return Err(TestCaseError::fail(format!("{req:?} at {len}: {e}"))),
                };
                if let Some(b) = v.block {
                    prop_assert_eq!(&b.value, &w.blocks[b.index as usize]);
                }
                if req.upgrade.is_some() {
                    // Additional nodes always take us to the writer's head.
                    prop_assert_eq!(r.tree.length(), n);
                    prop_assert_eq!(r.tree.hash(), w.tree.hash());
                }
                // Whatever the replica stores is a node of the writer's tree.
                for (i, node) in &r.src.nodes {
                    prop_assert_eq!(*node, naive_node(*i, &w.blocks));
                }
            }
        }

        #[test]
        fn verify_never_panics_on_garbage(
            data in crate::proof::tests::arb_data(),
            n in 0u64..20,
        ) {
            let w = Writer::new(n as usize);
            let mut src = w.src.clone();
            let _ = w.tree.verify(&data, &w.verifier, &mut src);
            let _ = w.tree.verify_reorg(&data, &w.verifier, &mut src);
            let mut forked = data.clone();
            forked.fork = 0;
            let _ = w.tree.verify(&forked, &w.verifier, &mut src);
            let _ = Tree::new().verify(&forked, &w.verifier, &mut MemSource::default());
        }

        #[test]
        fn mutated_proofs_never_panic_and_never_store_wrong_nodes(
            n in 1u64..40,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let w = Writer::new(n as usize);
            let req = Request {
                block: Some(RequestBlock { index: n / 2, nodes: 0 }),
                upgrade: Some(RequestUpgrade { start: 0, length: n }),
                manifest: true,
                ..Request::default()
            };
            let mut bytes = peerhost_encoding::to_vec(&w.answer(&req));
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x | 1;
            }
            if let Ok(data) = peerhost_encoding::from_prefix::<Data>(&bytes) {
                let mut r = Replica::default();
                if let Ok(v) = r.apply(&data, &w.verifier) {
                    // Accepted: then it proves the writer's tree (a flip in a field that does
                    // not matter, like the request id).
                    for node in &v.nodes {
                        prop_assert_eq!(*node, naive_node(node.index, &w.blocks));
                    }
                    if let Some(b) = v.block {
                        prop_assert_eq!(&b.value, &w.blocks[b.index as usize]);
                    }
                }
            }
        }

        #[test]
        fn tree_queries_never_panic(
            n in 0u64..20,
            index in any::<u64>(),
            bytes in any::<u64>(),
            req in crate::proof::tests::arb_request(),
        ) {
            let w = Writer::new(n as usize);
            let mut src = w.src.clone();
            let _ = w.tree.missing_nodes(index, &mut src);
            let _ = max_missing_nodes(index, bytes);
            let _ = w.tree.seek(bytes, index % 50, &mut src);
            let _ = w.tree.byte_offset(index % (n + 2), &mut src);
            let _ = w.tree.proof(&req, &mut src);
            let _ = w.tree.clear_nodes(index % (n + 1), bytes, |_, _| false);
        }
    }
}
