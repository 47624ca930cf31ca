//! A minimal Merkle tree over `CoreStorage`, for tests of the storage engine on its own (the
//! `log` crate's tree is what production code uses). Hashes follow hypercore-crypto: leaf
//! `BLAKE2b(0 ‖ u64le len ‖ data)`, parent `BLAKE2b(1 ‖ u64le size ‖ left ‖ right)`, tree
//! `BLAKE2b(2 ‖ (hash ‖ u64le index ‖ u64le size)*)`.
#![allow(dead_code, unreachable_pub)]

use peerhost_ids::Key;
use peerhost_ids::hash::blake2b256;
use peerhost_store::{CoreStorage, Error, Head, NewLog, Node, Store, leaf_hash};

/// Create an empty log with a correct empty-tree hash.
pub fn create(store: &Store, key: Key, name: Option<&str>) -> CoreStorage {
    let head = Head {
        tree_hash: tree_hash(&[]),
        ..Head::default()
    };
    let mut new = NewLog::new(key).head(head);
    if let Some(n) = name {
        new = new.name(n);
    }
    store.create_storage(new).expect("create")
}

pub fn parent(index: u64, a: &Node, b: &Node) -> Node {
    let size = a.size + b.size;
    Node {
        index,
        size,
        hash: blake2b256(&[&[1], &size.to_le_bytes(), &a.hash, &b.hash]),
    }
}

pub fn tree_hash(roots: &[Node]) -> [u8; 32] {
    let mut parts: Vec<Vec<u8>> = vec![vec![2]];
    for r in roots {
        let mut p = r.hash.to_vec();
        p.extend(r.index.to_le_bytes());
        p.extend(r.size.to_le_bytes());
        parts.push(p);
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    blake2b256(&refs)
}

fn depth(i: u64) -> u32 {
    (!i).trailing_zeros()
}

/// flat-tree `fullRoots(2 * length)`.
pub fn full_roots(length: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut first = 0u64;
    for bit in (0..63).rev() {
        let leaves = 1u64 << bit;
        if length & leaves != 0 {
            out.push(((first >> bit) << (bit + 1)) | (leaves - 1));
            first += leaves;
        }
    }
    out
}

/// Append `blocks` in one transaction (unsigned head).
pub fn append(s: &mut CoreStorage, blocks: &[Vec<u8>]) -> Result<u64, Error> {
    let mut roots = s.roots()?;
    let head = s.head().clone();
    let mut tx = s.transaction();
    let (mut length, mut byte_length) = (head.length, head.byte_length);
    for b in blocks {
        let leaf = Node {
            index: 2 * length,
            size: b.len() as u64,
            hash: leaf_hash(b),
        };
        tx.put_block(length, byte_length, b)?;
        tx.put_node(leaf)?;
        roots.push(leaf);
        while roots.len() >= 2 {
            let n = roots.len();
            if depth(roots[n - 1].index) != depth(roots[n - 2].index) {
                break;
            }
            let right = roots.pop().expect("two roots");
            let left = roots.pop().expect("two roots");
            let p = parent((left.index + right.index) / 2, &left, &right);
            tx.put_node(p)?;
            roots.push(p);
        }
        length += 1;
        byte_length += b.len() as u64;
    }
    tx.set_head(Head {
        fork: head.fork,
        length,
        byte_length,
        tree_hash: tree_hash(&roots),
        signature: Vec::new(),
    });
    tx.commit()?;
    Ok(length)
}

/// What a sparse replica does on learning a longer signed head: store only the new roots and
/// the head, none of the blocks.
pub fn upgrade(s: &mut CoreStorage, blocks: &[Vec<u8>]) -> Result<u64, Error> {
    let mut roots = s.roots()?;
    let head = s.head().clone();
    let (mut length, mut byte_length) = (head.length, head.byte_length);
    for b in blocks {
        roots.push(Node {
            index: 2 * length,
            size: b.len() as u64,
            hash: leaf_hash(b),
        });
        while roots.len() >= 2 {
            let n = roots.len();
            if depth(roots[n - 1].index) != depth(roots[n - 2].index) {
                break;
            }
            let right = roots.pop().expect("two roots");
            let left = roots.pop().expect("two roots");
            roots.push(parent((left.index + right.index) / 2, &left, &right));
        }
        length += 1;
        byte_length += b.len() as u64;
    }
    let mut tx = s.transaction();
    for r in &roots {
        tx.put_node(*r)?;
    }
    tx.set_head(Head {
        fork: head.fork,
        length,
        byte_length,
        tree_hash: tree_hash(&roots),
        signature: Vec::new(),
    });
    tx.commit()?;
    Ok(length)
}

/// Truncate to `length` (fork + 1). Returns false (and does nothing) when a sparse replica lacks
/// the roots of that prefix.
pub fn truncate(s: &mut CoreStorage, length: u64) -> Result<bool, Error> {
    let mut roots = Vec::new();
    for i in full_roots(length) {
        match s.node(i)? {
            Some(r) => roots.push(r),
            None => return Ok(false),
        }
    }
    let head = s.head().clone();
    s.truncate(Head {
        fork: head.fork + 1,
        length,
        byte_length: roots.iter().map(|r| r.size).sum(),
        tree_hash: tree_hash(&roots),
        signature: Vec::new(),
    })?;
    Ok(true)
}

/// Check everything a reader relies on: roots hash to the head's tree hash, every parent of
/// stored children is their hash, every stored block matches its leaf (via `block`), and the
/// blocks equal `model` (`None` = cleared).
pub fn check(s: &mut CoreStorage, model: &[Option<Vec<u8>>]) {
    let head = s.head().clone();
    assert_eq!(head.length, model.len() as u64, "length");
    let roots = s.roots().expect("roots");
    assert_eq!(tree_hash(&roots), head.tree_hash, "tree hash");
    assert_eq!(roots.iter().map(|r| r.size).sum::<u64>(), head.byte_length);
    for (i, want) in model.iter().enumerate() {
        let got = s.block(i as u64).expect("block reads");
        assert_eq!(got.as_ref(), want.as_ref(), "block {i}");
    }
    // Every parent in the tree recomputes from its children.
    for i in (1..2 * head.length).step_by(2) {
        let Some(p) = s.node(i).expect("node") else {
            continue;
        };
        let d = depth(i);
        let half = 1u64 << (d - 1);
        let (l, r) = (i - half, i + half);
        // A sparse replica may hold a parent without its children.
        if let (Some(left), Some(right)) = (s.node(l).expect("node"), s.node(r).expect("node")) {
            assert_eq!(parent(i, &left, &right), p, "parent {i}");
        }
    }
    // Nothing past the length is visible.
    assert_eq!(s.node(2 * head.length).expect("node"), None);
    assert_eq!(s.block(head.length).expect("block"), None);
}

/// The deterministic content of block `i` in crash tests: 1 to 300 bytes derived from `i`.
pub fn block_content(i: u64) -> Vec<u8> {
    let seed = blake2b256(&[&i.to_le_bytes()]);
    let len = 1 + (u64::from(seed[0]) * 300 / 256) as usize;
    seed.iter().cycle().take(len).copied().collect()
}
