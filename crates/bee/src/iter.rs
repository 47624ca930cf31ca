//! Range iteration: hyperbee's `RangeIterator`, resumable.
//!
//! An [`Iter`] holds its place (a stack of nodes with a position in each) and borrows the
//! [`Bee`] only for the length of one [`Iter::next`] call. A block that is not held stops the
//! call with [`Error::Missing`] before anything moves, so after fetching it the same call
//! continues from the same place.
//!
//! Position `i` in a node interleaves children and keys: even `i` is child `i / 2`, odd `i` is
//! key `(i - 1) / 2` (hyperbee's encoding of its iterator stack).

use std::cmp::Ordering;

use crate::blocks::Blocks;
use crate::error::Error;
use crate::tree::{Bee, Entry, MAX_DEPTH, NodeView, Search, too_deep};

/// Which keys to visit, in which order, how many.
///
/// As in hyperbee: with both `gt` and `gte` set, `gt` wins (and `lt` over `lte`); no bound
/// means no limit on that side; `limit: Some(0)` yields nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// Keys greater than this.
    pub gt: Option<Vec<u8>>,
    /// Keys greater than or equal to this.
    pub gte: Option<Vec<u8>>,
    /// Keys less than this.
    pub lt: Option<Vec<u8>>,
    /// Keys less than or equal to this.
    pub lte: Option<Vec<u8>>,
    /// Largest key first.
    pub reverse: bool,
    /// At most this many entries.
    pub limit: Option<u64>,
}

impl Range {
    /// Every key.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Self {
            gte: Some(prefix.to_vec()),
            lt: prefix_end(prefix),
            ..Self::default()
        }
    }

    /// Keys greater than `key`.
    pub fn gt(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.gt = Some(key.into());
        self
    }

    /// Keys greater than or equal to `key`.
    pub fn gte(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.gte = Some(key.into());
        self
    }

    /// Keys less than `key`.
    pub fn lt(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.lt = Some(key.into());
        self
    }

    /// Keys less than or equal to `key`.
    pub fn lte(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.lte = Some(key.into());
        self
    }

    /// Largest key first.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// At most `n` entries.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether `key` is inside the bounds (limit and order aside).
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match (&self.gt, &self.gte) {
            (Some(g), _) => key > g.as_slice(),
            (None, Some(g)) => key >= g.as_slice(),
            (None, None) => true,
        };
        let below = match (&self.lt, &self.lte) {
            (Some(l), _) => key < l.as_slice(),
            (None, Some(l)) => key <= l.as_slice(),
            (None, None) => true,
        };
        above && below
    }
}

/// The least key greater than every key starting with `prefix`, if there is one.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[derive(Clone, Debug)]
struct Frame {
    node: NodeView,
    /// The next position to visit (see the module doc); -1 once a reverse walk passed child 0.
    i: i64,
}

/// A walk over a [`Range`] of one version of the tree.
#[derive(Clone, Debug)]
pub struct Iter {
    version: u64,
    g_key: Option<Vec<u8>>,
    g_incl: bool,
    l_key: Option<Vec<u8>>,
    l_incl: bool,
    reverse: bool,
    limit: Option<u64>,
    stack: Vec<Frame>,
    opened: bool,
    done: bool,
}

impl<B: Blocks> Bee<B> {
    /// Walk `range` of the tree as it is now.
    pub fn iter(&self, range: Range) -> Iter {
        Iter::new(self.version(), range)
    }

    /// Walk `range` of the tree at `version` (a past log length).
    pub fn iter_at(&self, version: u64, range: Range) -> Iter {
        Iter::new(version, range)
    }

    /// Every entry of `range` now, collected (a lookup over blocks held here; see [`Iter`] to
    /// resume after fetching).
    pub fn range(&mut self, range: Range) -> Result<Vec<Entry>, Error> {
        let mut it = self.iter(range);
        let mut out = Vec::new();
        while let Some(e) = it.next(self)? {
            out.push(e);
        }
        Ok(out)
    }

    /// The first entry of `range` (hyperbee's `peek`).
    pub fn peek(&mut self, range: Range) -> Result<Option<Entry>, Error> {
        self.iter(range.limit(1)).next(self)
    }
}

impl Iter {
    fn new(version: u64, r: Range) -> Self {
        // > this._gIncl = !opts.gt; this._gKey = opts.gt || opts.gte || null
        // (iterators/range.js)
        let g_incl = r.gt.is_none();
        let l_incl = r.lt.is_none();
        Self {
            version,
            g_key: r.gt.or(r.gte),
            g_incl,
            l_key: r.lt.or(r.lte),
            l_incl,
            reverse: r.reverse,
            limit: r.limit,
            stack: Vec::new(),
            opened: false,
            done: false,
        }
    }

    /// The version this walk reads.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The next entry, or `None` at the end. On [`Error::Missing`] nothing moved: fetch the
    /// block and call again.
    pub fn next<B: Blocks>(&mut self, bee: &mut Bee<B>) -> Result<Option<Entry>, Error> {
        bee.sync();
        if !self.opened {
            self.open(bee)?;
        }
        if self.done {
            return Ok(None);
        }
        let (end, incl) = if self.reverse {
            (self.g_key.as_deref(), self.g_incl)
        } else {
            (self.l_key.as_deref(), self.l_incl)
        };
        loop {
            if self.limit == Some(0) {
                self.done = true;
                return Ok(None);
            }
            let depth = self.stack.len();
            let Some(top) = self.stack.last_mut() else {
                self.done = true;
                return Ok(None);
            };
            let is_key = top.i & 1 == 1;
            let nkeys = top.node.keys().len();
            // > const n = this._reverse ? (top.i < 0 ? top.node.keys.length : top.i-- >> 1)
            // >   : top.i++ >> 1
            let (n, next_i) = if !self.reverse {
                (top.i >> 1, top.i + 1)
            } else if top.i < 0 {
                (nkeys as i64, top.i)
            } else {
                (top.i >> 1, top.i - 1)
            };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if !is_key {
                if top.node.children().is_empty() {
                    top.i = next_i;
                    continue;
                }
                if depth >= MAX_DEPTH {
                    return Err(too_deep(top.node.seq));
                }
                let child = bee.child(&top.node, n)?;
                top.i = next_i;
                let i = if self.reverse {
                    (child.keys().len() as i64) << 1
                } else {
                    0
                };
                self.stack.push(Frame { node: child, i });
                continue;
            }
            if n >= nkeys {
                self.stack.pop();
                continue;
            }
            let seq = top.node.keys()[n];
            let block = bee.block(seq)?;
            top.i = next_i;
            if let Some(end) = end {
                let c = block.key().cmp(end);
                let past = match c {
                    Ordering::Equal => !incl,
                    _ if self.reverse => c == Ordering::Less,
                    _ => c == Ordering::Greater,
                };
                if past {
                    self.done = true;
                    return Ok(None);
                }
            }
            if let Some(l) = &mut self.limit {
                *l -= 1;
            }
            return Ok(Some(Entry::of(seq, &block)));
        }
    }

    /// Up to `max` blocks the next calls will read, nearest first, from what is decoded
    /// already: a reader fetching sparsely can ask for them together instead of one
    /// [`Error::Missing`] at a time (hyperbee preloads the same way).
    pub fn upcoming(&self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for f in self.stack.iter().rev() {
            let keys = f.node.keys();
            let children = f.node.children();
            let len = (keys.len() as i64) << 1;
            let mut i = f.i;
            while (0..=len).contains(&i) && out.len() < max {
                let n = (i >> 1) as usize;
                if i & 1 == 1 {
                    if let Some(&k) = keys.get(n) {
                        out.push(k);
                    }
                } else if let Some(c) = children.get(n) {
                    out.push(c.seq);
                }
                i += if self.reverse { -1 } else { 1 };
            }
            if out.len() >= max {
                break;
            }
        }
        out.dedup();
        out
    }

    /// Find the first position: hyperbee's `RangeIterator._open`. The stack is only replaced
    /// once the whole descent succeeded.
    fn open<B: Blocks>(&mut self, bee: &mut Bee<B>) -> Result<(), Error> {
        let mut stack = Vec::new();
        let Some(mut node) = bee.root(self.version)? else {
            self.opened = true;
            return Ok(());
        };
        let (start, incl) = if self.reverse {
            (self.l_key.as_deref(), self.l_incl)
        } else {
            (self.g_key.as_deref(), self.g_incl)
        };
        let first = |node: &NodeView, reverse: bool| {
            if reverse {
                (node.keys().len() as i64) << 1
            } else {
                0
            }
        };
        let Some(start) = start else {
            let i = first(&node, self.reverse);
            self.stack = vec![Frame { node, i }];
            self.opened = true;
            return Ok(());
        };
        for _ in 0..MAX_DEPTH {
            match bee.search(&node, start)? {
                Search::Found { index, .. } => {
                    let mid = index as i64;
                    let i = if incl {
                        mid * 2 + 1
                    } else {
                        mid * 2 + if self.reverse { 0 } else { 2 }
                    };
                    stack.push(Frame { node, i });
                    self.stack = stack;
                    self.opened = true;
                    return Ok(());
                }
                Search::At(at) => {
                    let i = 2 * at as i64 + if self.reverse { -1 } else { 1 };
                    let len = (node.keys().len() as i64) << 1;
                    let leaf = node.children().is_empty();
                    let next = if leaf {
                        None
                    } else {
                        Some(bee.child(&node, at)?)
                    };
                    if (0..=len).contains(&i) {
                        stack.push(Frame { node, i });
                    }
                    match next {
                        None => {
                            self.stack = stack;
                            self.opened = true;
                            return Ok(());
                        }
                        Some(n) => node = n,
                    }
                }
            }
        }
        Err(too_deep(node.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
        let r = Range::prefix(b"p/");
        assert!(r.contains(b"p/"));
        assert!(r.contains(b"p/\xff\xff"));
        assert!(!r.contains(b"p0"));
        assert!(!r.contains(b"p"));
    }

    #[test]
    fn gt_wins_over_gte() {
        let r = Range::all().gte(b"a".to_vec()).gt(b"b".to_vec());
        assert!(!r.contains(b"b"));
        let it = Iter::new(5, r);
        assert!(!it.g_incl);
        assert_eq!(it.g_key.as_deref(), Some(&b"b"[..]));
    }
}
