//! Flat-tree math, as the `flat-tree` npm package (1.13.0) computes it.
//!
//! A flat tree lays a binary tree out in one array: leaf `i` sits at index `2 * i` (depth 0),
//! the parent of two siblings sits between them, and a node at depth `d` and offset `o` sits at
//! `(2 * o + 1) * 2^d - 1`:
//!
//! ```text
//! depth 2:             3
//! depth 1:       1           5
//! depth 0:    0     2     4     6
//! ```
//!
//! Every function here is pure arithmetic. Indices are `u64`; the functions are exact for every
//! index below 2^62, far above anything a hypercore can hold (lengths decoded from the wire stop
//! at 2^53 - 1). Callers that take indices from the network bound them first.

/// Depth of the node at `index` (0 for leaves): the number of trailing one bits.
pub const fn depth(index: u64) -> u32 {
    index.trailing_ones()
}

/// Offset of the node at `index` within its depth (leaf `i` has offset `i`).
pub const fn offset(index: u64) -> u64 {
    match index.checked_shr(depth(index) + 1) {
        Some(o) => o,
        None => 0,
    }
}

/// The index of the node at `depth` and `offset`.
pub const fn index(depth: u32, offset: u64) -> u64 {
    // Wrapping: exact in the documented domain, and no panic outside it.
    (offset.wrapping_mul(2).wrapping_add(1))
        .wrapping_shl(depth)
        .wrapping_sub(1)
}

/// The parent of `index`.
pub const fn parent(i: u64) -> u64 {
    index(depth(i) + 1, offset(i) >> 1)
}

/// The sibling of `index` (the other child of its parent).
pub const fn sibling(i: u64) -> u64 {
    index(depth(i), offset(i) ^ 1)
}

/// The left child of `index`, or `None` for a leaf.
pub const fn left_child(i: u64) -> Option<u64> {
    match depth(i) {
        0 => None,
        d => Some(index(d - 1, offset(i) * 2)),
    }
}

/// The right child of `index`, or `None` for a leaf.
pub const fn right_child(i: u64) -> Option<u64> {
    match depth(i) {
        0 => None,
        d => Some(index(d - 1, offset(i) * 2 + 1)),
    }
}

/// Both children of `index`, or `None` for a leaf.
pub const fn children(index: u64) -> Option<(u64, u64)> {
    match (left_child(index), right_child(index)) {
        (Some(l), Some(r)) => Some((l, r)),
        _ => None,
    }
}

/// The leftmost leaf index under `index` (`index` itself for a leaf).
pub const fn left_span(index: u64) -> u64 {
    let d = depth(index);
    if d == 0 {
        index
    } else {
        offset(index).wrapping_shl(d + 1)
    }
}

/// The rightmost leaf index under `index` (`index` itself for a leaf).
pub const fn right_span(index: u64) -> u64 {
    let d = depth(index);
    if d == 0 {
        index
    } else {
        (offset(index).wrapping_add(1))
            .wrapping_shl(d + 1)
            .wrapping_sub(2)
    }
}

/// `(left_span(index), right_span(index))`.
pub const fn spans(index: u64) -> (u64, u64) {
    (left_span(index), right_span(index))
}

/// Number of nodes in the subtree rooted at `index` (including itself).
pub const fn count(index: u64) -> u64 {
    2u64.wrapping_shl(depth(index)).wrapping_sub(1)
}

/// Number of leaves under `index`.
pub const fn count_leaves(index: u64) -> u64 {
    1u64.wrapping_shl(depth(index))
}

/// The next leaf to the right of the subtree at `index` (flat-tree `nextLeaf`).
pub const fn next_leaf(index: u64) -> u64 {
    right_span(index).wrapping_add(2)
}

/// The roots of the complete subtrees covering the leaves left of `head`, largest first
/// (flat-tree `fullRoots`). `head` is a leaf index, usually `2 * length`.
///
/// JS throws for an odd `head`; here an odd `head` is rounded down to the leaf before it.
pub fn full_roots(head: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut leaves = head / 2;
    let mut offset = 0u64;
    while leaves > 0 {
        // The largest power of two that fits is the next root's leaf count.
        let factor = 1u64 << (63 - leaves.leading_zeros());
        out.push(offset + factor - 1);
        offset += 2 * factor;
        leaves -= factor;
    }
    out
}

/// A cursor over a flat tree, flat-tree's `iterator`. The proof algorithms of hypercore are
/// written against it, so keeping its exact moves keeps our proofs identical to JS ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iterator {
    index: u64,
    offset: u64,
    factor: u64,
}

impl Iterator {
    /// A cursor at `index`.
    pub const fn new(index: u64) -> Self {
        let mut it = Self {
            index: 0,
            offset: 0,
            factor: 0,
        };
        it.seek(index);
        it
    }

    /// Current index.
    pub const fn index(&self) -> u64 {
        self.index
    }

    /// Current offset within the current depth.
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// `2^(depth + 1)`: twice the number of leaves under the current node.
    pub const fn factor(&self) -> u64 {
        self.factor
    }

    /// Move to `index`.
    pub const fn seek(&mut self, index: u64) {
        self.index = index;
        if index & 1 == 1 {
            self.offset = offset(index);
            self.factor = 2u64.wrapping_shl(depth(index));
        } else {
            self.offset = index / 2;
            self.factor = 2;
        }
    }

    /// Whether the current node is a left child.
    pub const fn is_left(&self) -> bool {
        self.offset & 1 == 0
    }

    /// Whether the current node is a right child.
    pub const fn is_right(&self) -> bool {
        !self.is_left()
    }

    /// Whether the subtree at the current node contains `index`.
    pub const fn contains(&self, index: u64) -> bool {
        let half = self.factor / 2;
        if index > self.index {
            index < self.index + half
        } else if index < self.index {
            index + half > self.index
        } else {
            true
        }
    }

    /// Move one node left at the same depth (stays put at offset 0).
    pub const fn prev(&mut self) -> u64 {
        if self.offset == 0 {
            return self.index;
        }
        self.offset -= 1;
        self.index -= self.factor;
        self.index
    }

    /// Move one node right at the same depth.
    pub const fn next(&mut self) -> u64 {
        self.offset += 1;
        self.index += self.factor;
        self.index
    }

    /// Move to the sibling.
    pub const fn sibling(&mut self) -> u64 {
        if self.is_left() {
            self.next()
        } else {
            self.prev()
        }
    }

    /// Move to the parent.
    pub const fn parent(&mut self) -> u64 {
        if self.offset & 1 == 1 {
            self.index -= self.factor / 2;
            self.offset = (self.offset - 1) / 2;
        } else {
            self.index += self.factor / 2;
            self.offset /= 2;
        }
        self.factor *= 2;
        self.index
    }

    /// Move to the leftmost leaf under the current node.
    pub const fn left_span(&mut self) -> u64 {
        self.index = self.index + 1 - self.factor / 2;
        self.offset = self.index / 2;
        self.factor = 2;
        self.index
    }

    /// Move to the rightmost leaf under the current node.
    pub const fn right_span(&mut self) -> u64 {
        self.index = self.index + self.factor / 2 - 1;
        self.offset = self.index / 2;
        self.factor = 2;
        self.index
    }

    /// The rightmost leaf under the current node, without moving.
    pub const fn peek_right_span(&self) -> u64 {
        self.index + self.factor / 2 - 1
    }

    /// The leftmost leaf under the current node, without moving.
    pub const fn peek_left_span(&self) -> u64 {
        self.index + 1 - self.factor / 2
    }

    /// Move to the left child (stays put on a leaf).
    pub const fn left_child(&mut self) -> u64 {
        if self.factor == 2 {
            return self.index;
        }
        self.factor /= 2;
        self.index -= self.factor / 2;
        self.offset *= 2;
        self.index
    }

    /// Move to the right child (stays put on a leaf).
    pub const fn right_child(&mut self) -> u64 {
        if self.factor == 2 {
            return self.index;
        }
        self.factor /= 2;
        self.index += self.factor / 2;
        self.offset = 2 * self.offset + 1;
        self.index
    }

    /// Move to the first leaf right of the current subtree.
    pub const fn next_tree(&mut self) -> u64 {
        self.index = self.index + self.factor / 2 + 1;
        self.offset = self.index / 2;
        self.factor = 2;
        self.index
    }

    /// Number of nodes under the current node (including it).
    pub const fn count(&self) -> u64 {
        if self.index & 1 == 0 {
            1
        } else {
            self.factor - 1
        }
    }

    /// Number of leaves under the current node.
    pub const fn count_leaves(&self) -> u64 {
        self.factor / 2
    }

    /// From a leaf, grow to the largest complete subtree that starts here and ends before the
    /// leaf index `head`; `false` once the cursor is at or past `head` (flat-tree `fullRoot`).
    /// `for (ite = iterator(0); ite.fullRoot(head); ite.nextTree())` visits the full roots.
    pub const fn full_root(&mut self, head: u64) -> bool {
        if head <= self.index || self.index & 1 == 1 {
            return false;
        }
        // > while (index > this.index + this.factor + this.factor / 2)
        while head > self.index + self.factor + self.factor / 2 {
            self.index += self.factor / 2;
            self.factor *= 2;
            self.offset /= 2;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_flat_tree_package() {
        // Values from flat-tree 1.13.0 (node -e "const f = require('flat-tree'); ...").
        assert_eq!(index(0, 0), 0);
        assert_eq!(index(0, 1), 2);
        assert_eq!(index(1, 0), 1);
        assert_eq!(index(1, 1), 5);
        assert_eq!(index(3, 1), 23);
        assert_eq!(depth(0), 0);
        assert_eq!(depth(1), 1);
        assert_eq!(depth(3), 2);
        assert_eq!(depth(23), 3);
        assert_eq!(offset(0), 0);
        assert_eq!(offset(1), 0);
        assert_eq!(offset(5), 1);
        assert_eq!(offset(23), 1);
        assert_eq!(parent(0), 1);
        assert_eq!(parent(2), 1);
        assert_eq!(parent(1), 3);
        assert_eq!(parent(5), 3);
        assert_eq!(parent(9), 11);
        assert_eq!(sibling(0), 2);
        assert_eq!(sibling(2), 0);
        assert_eq!(sibling(1), 5);
        assert_eq!(sibling(5), 1);
        assert_eq!(children(0), None);
        assert_eq!(children(1), Some((0, 2)));
        assert_eq!(children(3), Some((1, 5)));
        assert_eq!(children(9), Some((8, 10)));
        assert_eq!(left_span(0), 0);
        assert_eq!(left_span(1), 0);
        assert_eq!(left_span(3), 0);
        assert_eq!(left_span(23), 16);
        assert_eq!(left_span(27), 24);
        assert_eq!(right_span(0), 0);
        assert_eq!(right_span(1), 2);
        assert_eq!(right_span(3), 6);
        assert_eq!(right_span(23), 30);
        assert_eq!(right_span(27), 30);
        assert_eq!(spans(7), (0, 14));
        assert_eq!(count(0), 1);
        assert_eq!(count(1), 3);
        assert_eq!(count(3), 7);
        assert_eq!(count(5), 3);
        assert_eq!(count(23), 15);
        assert_eq!(count_leaves(23), 8);
        assert_eq!(next_leaf(1), 4);
        assert_eq!(next_leaf(4), 6);
        assert_eq!(full_roots(0), Vec::<u64>::new());
        assert_eq!(full_roots(2), vec![0]);
        assert_eq!(full_roots(8), vec![3]);
        assert_eq!(full_roots(20), vec![7, 17]);
        assert_eq!(full_roots(18), vec![7, 16]);
        assert_eq!(full_roots(16), vec![7]);
        assert_eq!(full_roots(30), vec![7, 19, 25, 28]);
    }

    #[test]
    fn iterator_moves_like_flat_tree() {
        let mut it = Iterator::new(0);
        assert_eq!((it.index(), it.offset(), it.factor()), (0, 0, 2));
        assert_eq!(it.parent(), 1);
        assert_eq!(it.parent(), 3);
        assert_eq!(it.parent(), 7);
        assert_eq!(it.right_child(), 11);
        assert_eq!(it.left_child(), 9);
        assert_eq!(it.next(), 13);
        assert_eq!(it.prev(), 9);
        assert_eq!(it.sibling(), 13);
        assert_eq!(it.sibling(), 9);
        assert!(it.contains(8) && it.contains(10) && it.contains(9));
        assert!(!it.contains(7) && !it.contains(11));
        assert_eq!(it.left_span(), 8);
        assert_eq!(it.prev(), 6);
        assert_eq!(it.next_tree(), 8);
        let mut it = Iterator::new(23);
        assert_eq!(it.peek_left_span(), 16);
        assert_eq!(it.peek_right_span(), 30);
        assert_eq!(it.count_leaves(), 8);
        assert_eq!(it.right_span(), 30);
    }

    #[test]
    fn iterator_full_roots_match_full_roots() {
        for head in (0..200).step_by(2) {
            let mut seen = vec![];
            let mut it = Iterator::new(0);
            while it.full_root(head) {
                seen.push(it.index());
                it.next_tree();
            }
            assert_eq!(seen, full_roots(head), "head {head}");
        }
    }

    #[test]
    fn never_panics_at_the_top() {
        for i in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
            let _ = (
                depth(i),
                offset(i),
                parent(i),
                sibling(i),
                children(i),
                spans(i),
            );
            let _ = (count(i), count_leaves(i), next_leaf(i), full_roots(i).len());
        }
    }

    proptest::proptest! {
        #[test]
        fn structure_is_consistent(i in 0u64..1 << 40) {
            let p = parent(i);
            let (l, r) = children(p).unwrap();
            proptest::prop_assert!(l == i || r == i);
            proptest::prop_assert_eq!(sibling(sibling(i)), i);
            proptest::prop_assert_eq!(index(depth(i), offset(i)), i);
            proptest::prop_assert_eq!(right_span(i) - left_span(i), 2 * (count_leaves(i) - 1));
            let mut it = Iterator::new(i);
            proptest::prop_assert_eq!(it.parent(), p);
            proptest::prop_assert_eq!(it.factor(), 2 << depth(p));
        }
    }
}
