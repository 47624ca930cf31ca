//! Model tests: random puts, deletes, batches, lookups and walks against a `BTreeMap`, with the
//! B-tree's shape checked after every write and every past version re-read.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::messages::Pointer;
use crate::{Bee, Config, Entry, Range};

type Model = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Keys over a small alphabet so that prefixes, `0x00` and `0xff` meet often.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0x00u8, 0x61, 0x62, 0xff]), 0..4)
}

fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..6).prop_map(Some),
        1 => Just(None),
    ]
}

#[derive(Clone, Debug)]
enum Write {
    Put(Vec<u8>, Option<Vec<u8>>),
    Del(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Op {
    One(Write),
    Batch(Vec<Write>),
    Get(Vec<u8>),
    Walk(Range),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (key(), value()).prop_map(|(k, v)| Write::Put(k, v)),
        1 => key().prop_map(Write::Del),
    ]
}

fn range() -> impl Strategy<Value = Range> {
    let bound = || prop::option::weighted(0.4, key());
    (
        bound(),
        bound(),
        bound(),
        bound(),
        any::<bool>(),
        prop::option::weighted(0.3, 0u64..6),
    )
        .prop_map(|(gt, gte, lt, lte, reverse, limit)| Range {
            gt,
            gte,
            lt,
            lte,
            reverse,
            limit,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => write().prop_map(Op::One),
        2 => prop::collection::vec(write(), 0..40).prop_map(Op::Batch),
        2 => key().prop_map(Op::Get),
        1 => range().prop_map(Op::Walk),
    ]
}

fn apply(model: &mut Model, w: &Write) {
    match w {
        Write::Put(k, v) => {
            model.insert(k.clone(), v.clone());
        }
        Write::Del(k) => {
            model.remove(k);
        }
    }
}

fn expect_range(model: &Model, r: &Range) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut all: Vec<_> = model
        .iter()
        .filter(|(k, _)| r.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if r.reverse {
        all.reverse();
    }
    if let Some(l) = r.limit {
        all.truncate(l as usize);
    }
    all
}

fn pairs(entries: Vec<Entry>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    entries.into_iter().map(|e| (e.key, e.value)).collect()
}

/// Walk the whole tree at the latest version: keys strictly increasing in order, every leaf at
/// the same depth, every node but the root with 4 to 8 keys, the root with at most 8.
fn check_shape(bee: &mut Bee<Vec<Vec<u8>>>) -> Result<usize, String> {
    let Some(root) = bee.root(bee.version()).map_err(|e| e.to_string())? else {
        return Ok(0);
    };
    let mut keys = Vec::new();
    let mut leaf_depth = None;
    fn visit(
        bee: &mut Bee<Vec<Vec<u8>>>,
        p: Pointer,
        depth: usize,
        is_root: bool,
        keys: &mut Vec<Vec<u8>>,
        leaf_depth: &mut Option<usize>,
    ) -> Result<(), String> {
        let node = bee.node(p).map_err(|e| e.to_string())?;
        let n = node.keys().len();
        if n > 8 || (!is_root && n < 4) {
            return Err(format!("node {p:?} has {n} keys"));
        }
        let children = node.children().to_vec();
        let node_keys = node.keys().to_vec();
        if children.is_empty() {
            match leaf_depth {
                Some(d) if *d != depth => return Err(format!("leaf {p:?} at depth {depth}")),
                _ => *leaf_depth = Some(depth),
            }
        }
        for i in 0..=n {
            if let Some(&c) = children.get(i) {
                visit(bee, c, depth + 1, false, keys, leaf_depth)?;
            }
            if let Some(&k) = node_keys.get(i) {
                let e = bee.entry_at(k).map_err(|e| e.to_string())?;
                keys.push(e.key);
            }
        }
        Ok(())
    }
    visit(
        bee,
        Pointer {
            seq: root.seq,
            offset: 0,
        },
        0,
        true,
        &mut keys,
        &mut leaf_depth,
    )?;
    if !keys.windows(2).all(|w| w[0] < w[1]) {
        return Err("keys out of order".into());
    }
    Ok(keys.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_btreemap(ops in prop::collection::vec(op(), 1..120), dup in any::<bool>()) {
        let config = Config::default().with_always_duplicate(dup);
        let mut bee = Bee::with_config(Vec::<Vec<u8>>::new(), config);
        let mut model = Model::new();
        let mut history: Vec<(u64, Model)> = Vec::new();
        for op in &ops {
            match op {
                Op::One(w) => {
                    let before = bee.log().len();
                    let wrote = match w {
                        Write::Put(k, v) => {
                            let mut b = bee.batch();
                            let r = b.put_with(k, v.as_deref(), None).unwrap();
                            b.flush().unwrap();
                            r
                        }
                        Write::Del(k) => bee.del(k).unwrap(),
                    };
                    // A delete of an absent key and (without alwaysDuplicate) a put of the same
                    // value write no node.
                    let expect_write = match w {
                        Write::Put(k, v) => dup || model.get(k) != Some(v),
                        Write::Del(k) => model.contains_key(k),
                    };
                    prop_assert_eq!(wrote.is_some(), expect_write, "{:?}", w);
                    if let Some(seq) = wrote {
                        prop_assert_eq!(seq as usize, bee.log().len() - 1);
                    } else {
                        prop_assert!(bee.log().len() - before <= 1, "only a header");
                    }
                    apply(&mut model, w);
                }
                Op::Batch(ws) => {
                    let mut b = bee.batch();
                    for w in ws {
                        match w {
                            Write::Put(k, v) => b.put_with(k, v.as_deref(), None).unwrap(),
                            Write::Del(k) => b.del(k).unwrap(),
                        };
                    }
                    b.flush().unwrap();
                    for w in ws {
                        apply(&mut model, w);
                    }
                }
                Op::Get(k) => {
                    let got = bee.get(k).unwrap().map(|e| e.value);
                    prop_assert_eq!(got, model.get(k).cloned());
                }
                Op::Walk(r) => {
                    prop_assert_eq!(pairs(bee.range(r.clone()).unwrap()), expect_range(&model, r));
                }
            }
            let n = check_shape(&mut bee).map_err(TestCaseError::fail)?;
            prop_assert_eq!(n, model.len());
            history.push((bee.version(), model.clone()));
        }
        // Every past version still reads as it was.
        for (version, m) in &history {
            for k in m.keys().take(20) {
                let got = bee.get_at(*version, k).unwrap().map(|e| e.value);
                prop_assert_eq!(got, m.get(k).cloned());
            }
            let mut it = bee.iter_at(*version, Range::all());
            let mut walked = Vec::new();
            while let Some(e) = it.next(&mut bee).unwrap() {
                walked.push((e.key, e.value));
            }
            prop_assert_eq!(walked, expect_range(m, &Range::all()));
        }
    }
}

#[test]
fn hostile_pointers_are_refused_not_followed() {
    use crate::messages::{Header, Level, Node, YoloIndex};
    let node = |keys: Vec<u64>, children: Vec<Pointer>, key: &[u8]| {
        Node {
            index: YoloIndex {
                levels: vec![Level { keys, children }],
            }
            .encode(),
            key: key.to_vec(),
            value: Some(b"v".to_vec()),
        }
        .encode()
    };
    // A node that is its own child: the walk stops at the depth bound.
    let cyc = node(
        vec![1],
        vec![Pointer { seq: 1, offset: 0 }, Pointer { seq: 1, offset: 0 }],
        b"m",
    );
    let mut bee = Bee::new(vec![Header::new(None).encode(), cyc]);
    assert!(matches!(bee.get(b"a"), Err(crate::Error::Corrupt { .. })));
    assert!(matches!(
        bee.range(Range::all()),
        Err(crate::Error::Corrupt { .. })
    ));
    assert!(matches!(
        bee.put(b"a", b"1"),
        Err(crate::Error::Corrupt { .. })
    ));
    // A pointer forward in the log.
    let fwd = node(vec![5], vec![], b"m");
    let mut bee = Bee::new(vec![Header::new(None).encode(), fwd]);
    assert!(matches!(bee.get(b"a"), Err(crate::Error::Corrupt { .. })));
    // A key pointing at the header.
    let hdr = node(vec![0], vec![], b"m");
    let mut bee = Bee::new(vec![Header::new(None).encode(), hdr]);
    assert!(matches!(
        bee.get(b"a"),
        Err(crate::Error::Decode { seq: 0, .. })
    ));
    // Children that do not match the keys.
    let odd = node(vec![1], vec![Pointer { seq: 1, offset: 0 }], b"m");
    let mut bee = Bee::new(vec![Header::new(None).encode(), odd]);
    assert!(matches!(bee.get(b"a"), Err(crate::Error::Corrupt { .. })));
    // A batch that failed is not used again.
    let mut b = bee.batch();
    assert!(b.put(b"a", b"1").is_err());
    assert!(matches!(b.put(b"b", b"1"), Err(crate::Error::Poisoned)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A real log with bytes flipped: every lookup, walk and write ends in an answer or an
    /// error (the fuzz target's check, on inputs close to real trees).
    #[test]
    fn damaged_logs_never_panic(
        keys in prop::collection::vec(key(), 1..80),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bee = Bee::new(Vec::<Vec<u8>>::new());
        let mut b = bee.batch();
        for (i, k) in keys.iter().enumerate() {
            if i % 7 == 3 {
                b.del(k).unwrap();
            } else {
                b.put(k, &[i as u8]).unwrap();
            }
        }
        b.flush().unwrap();
        let mut log = bee.into_log();
        for (block, byte, x) in flips {
            let n = log.len();
            let blk = &mut log[block.index(n)];
            if !blk.is_empty() {
                let j = byte.index(blk.len());
                blk[j] ^= x | 1;
            }
        }
        let mut data = Vec::new();
        for blk in &log[1..] {
            data.push(blk.len().min(255) as u8);
            data.extend_from_slice(&blk[..blk.len().min(255)]);
        }
        crate::fuzz::tree(&data);
        let mut bee = Bee::new(log);
        for k in &keys {
            let _ = bee.get(k);
        }
        let _ = bee.range(Range::all().reverse());
        let _ = bee.put(b"a", b"b");
    }
}

#[test]
fn fuzz_entry_points_take_any_bytes() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..400 {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        crate::fuzz::node(&data);
        crate::fuzz::tree(&data);
    }
}
