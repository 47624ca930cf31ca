//! The Merkle tree hashes of hypercore-crypto 3.7.0 (`data`, `parent`, `tree`).
//!
//! Each hash starts with a type byte, so a leaf can never be passed off as a parent
//! (the second-preimage attack on plain Merkle trees):
//! - leaf: `BLAKE2b-256(0x00 ‖ u64le(len) ‖ data)`
//! - parent: `BLAKE2b-256(0x01 ‖ u64le(left.size + right.size) ‖ left.hash ‖ right.hash)`
//! - tree: `BLAKE2b-256(0x02 ‖ (root.hash ‖ u64le(root.index) ‖ u64le(root.size))*)`

use peerhost_ids::hash::blake2b256;

use crate::Node;

const LEAF_TYPE: u8 = 0;
const PARENT_TYPE: u8 = 1;
const ROOT_TYPE: u8 = 2;

/// The hash of a block (`crypto.data`).
pub fn leaf(data: &[u8]) -> [u8; 32] {
    blake2b256(&[&[LEAF_TYPE], &(data.len() as u64).to_le_bytes(), data])
}

/// The hash of a parent over two sibling nodes (`crypto.parent`). The node with the lower
/// index is hashed first, whichever order they are passed in, as JS does.
pub fn parent(a: &Node, b: &Node) -> [u8; 32] {
    let (l, r) = if a.index > b.index { (b, a) } else { (a, b) };
    let size = l.size.wrapping_add(r.size);
    blake2b256(&[&[PARENT_TYPE], &size.to_le_bytes(), &l.hash, &r.hash])
}

/// The hash of a tree given its roots (`crypto.tree`): what a signature commits to.
pub fn tree(roots: &[Node]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(1 + roots.len() * 48);
    buf.push(ROOT_TYPE);
    for r in roots {
        buf.extend_from_slice(&r.hash);
        buf.extend_from_slice(&r.index.to_le_bytes());
        buf.extend_from_slice(&r.size.to_le_bytes());
    }
    blake2b256(&[&buf])
}

impl Node {
    /// The leaf node for block `block` holding `data` (flat index `2 * block`).
    pub fn leaf(block: u64, data: &[u8]) -> Self {
        Self {
            index: 2 * block,
            size: data.len() as u64,
            hash: leaf(data),
        }
    }

    /// The parent node at `index` over the siblings `a` and `b` (either order).
    pub fn parent(index: u64, a: &Self, b: &Self) -> Self {
        Self {
            index,
            size: a.size.wrapping_add(b.size),
            hash: parent(a, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hypercore_crypto() {
        // hypercore-crypto 3.7.0:
        //   crypto.data(Buffer.from('a')), crypto.data(Buffer.from('b')),
        //   crypto.parent({index:0,size:1,hash:da}, {index:2,size:1,hash:db}),
        //   crypto.tree([{index:1,size:2,hash:p}])
        let a = Node::leaf(0, b"a");
        let b = Node::leaf(1, b"b");
        assert_eq!(hex::encode(a.hash), JS_LEAF_A);
        assert_eq!(hex::encode(b.hash), JS_LEAF_B);
        let p = Node::parent(1, &b, &a);
        assert_eq!(p.size, 2);
        assert_eq!(hex::encode(p.hash), JS_PARENT);
        assert_eq!(hex::encode(tree(&[p])), JS_TREE);
        assert_eq!(hex::encode(tree(&[])), JS_TREE_EMPTY);
    }

    const JS_LEAF_A: &str = "423177bd3da55c6ac57419beff9c763bab05e12a6d8908b38b7fc14360228d4a";
    const JS_LEAF_B: &str = "520abb1082986713dabf6862ccfe1bb6b87037647d0019b31219493ef186597c";
    const JS_PARENT: &str = "9cac92aaed9e7d11eb629465684582ce39cb496303998de123533b09e16f2f06";
    const JS_TREE: &str = "3424a063fb40dfef317c8ca38fb8c37dfdbccac669582f6f9cddd22bbdf9c044";
    const JS_TREE_EMPTY: &str = "bb30a42c1e62f0afda5f0a4e8a562f7a13a24cea00ee81917b86b89e801314aa";
}
