//! The few flat-tree functions the store needs to find a block's byte offset and to tell which
//! tree records belong to a log of a given length.
//!
//! These mirror the `flat-tree` npm package (`depth`, `index`, `rightSpan`, `fullRoots`). The log
//! crate owns the full flat-tree module (exact below 2^62, callers bound indices); the store keeps
//! this small copy because its reads take *any* index — a damaged record, a caller's mistake —
//! and here all arithmetic is checked: an overflow means "no such node", never a wrong one. A test
//! checks both agree wherever the log crate's functions are exact.

/// Depth of the node at flat index `i` (leaves are depth 0): its number of trailing one bits.
pub(crate) fn depth(i: u64) -> u32 {
    (!i).trailing_zeros()
}

/// Flat index of the node at `depth` and `offset` (its position among nodes of that depth).
pub(crate) fn index(depth: u32, offset: u64) -> Option<u64> {
    if depth >= 63 {
        return None;
    }
    let shifted = offset.checked_mul(1u64 << (depth + 1))?;
    Some(shifted | ((1u64 << depth) - 1))
}

/// The leaf number (block index) of the right-most leaf under flat index `i`, or `None` when that
/// leaf cannot be represented.
pub(crate) fn right_leaf(i: u64) -> Option<u64> {
    let d = depth(i);
    if d >= 63 {
        return None;
    }
    // Leaves under node i are blocks [offset << d, ((offset + 1) << d) - 1].
    let offset = i >> (d + 1);
    offset
        .checked_add(1)?
        .checked_mul(1u64 << d)?
        .checked_sub(1)
}

/// Whether the node at flat index `i` lies entirely inside a tree of `length` blocks, i.e. is a
/// node of that tree.
pub(crate) fn within(i: u64, length: u64) -> bool {
    right_leaf(i).is_some_and(|r| r < length)
}

/// The flat indices of the roots of a tree of `length` blocks, left to right (flat-tree
/// `fullRoots(2 * length)`). These are also the subtrees left of block `length`, so their sizes
/// sum to the byte offset of block `length`.
pub(crate) fn full_roots(length: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(length.count_ones() as usize);
    // Each set bit of `length`, from the highest, is one perfect subtree of 2^bit leaves.
    let mut first_leaf: u64 = 0;
    for bit in (0..64).rev() {
        let leaves = 1u64 << bit;
        if length & leaves != 0 {
            // The subtree's offset at depth `bit` is first_leaf >> bit (first_leaf is a multiple
            // of 2^bit because the bits above were consumed first). `bit` is at most 63 only when
            // length >= 2^63, which no store reaches (block counts are JS-safe integers).
            if let Some(i) = index(bit, first_leaf >> bit) {
                out.push(i);
            }
            first_leaf += leaves;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_flat_tree_examples() {
        // From the flat-tree README: depth(1) = 1, depth(3) = 2, index(1, 0) = 1, index(2, 1) = 11.
        assert_eq!(depth(0), 0);
        assert_eq!(depth(1), 1);
        assert_eq!(depth(3), 2);
        assert_eq!(depth(11), 2);
        assert_eq!(index(1, 0), Some(1));
        assert_eq!(index(2, 1), Some(11));
        assert_eq!(index(0, 5), Some(10));
    }

    #[test]
    fn full_roots_match_flat_tree() {
        // flat-tree: fullRoots(0) = [], fullRoots(2) = [0], fullRoots(8) = [3],
        // fullRoots(20) = [7, 17], fullRoots(18) = [7, 16].
        assert_eq!(full_roots(0), Vec::<u64>::new());
        assert_eq!(full_roots(1), vec![0]);
        assert_eq!(full_roots(4), vec![3]);
        assert_eq!(full_roots(10), vec![7, 17]);
        assert_eq!(full_roots(9), vec![7, 16]);
        assert_eq!(full_roots(7), vec![3, 9, 12]);
    }

    #[test]
    fn agrees_with_the_log_crate() {
        use peerhost_log::flat as log;
        for i in (0..5000u64).chain([(1 << 40) + 12_345, (1 << 61) - 1, 1 << 61]) {
            assert_eq!(depth(i), log::depth(i), "depth {i}");
            assert_eq!(
                right_leaf(i),
                Some(log::right_span(i) / 2),
                "right span {i}"
            );
        }
        for length in (0..3000u64).chain([(1 << 40) + 7, (1 << 53) - 1]) {
            assert_eq!(
                full_roots(length),
                log::full_roots(2 * length),
                "roots {length}"
            );
        }
    }

    #[test]
    fn right_leaf_and_within() {
        assert_eq!(right_leaf(0), Some(0));
        assert_eq!(right_leaf(1), Some(1));
        assert_eq!(right_leaf(3), Some(3));
        assert_eq!(right_leaf(5), Some(3));
        assert_eq!(right_leaf(7), Some(7));
        assert!(within(4, 3));
        assert!(!within(5, 3));
        assert!(!within(3, 3));
        assert!(within(3, 4));
        assert!(!within(u64::MAX, u64::MAX));
        assert!(!within(u64::MAX >> 1, u64::MAX));
    }
}
