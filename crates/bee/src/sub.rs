//! Sub-bees: a key prefix, as hyperbee's `bee.sub(name)` makes one.
//!
//! A sub-bee is no separate structure: its keys are stored in the same tree as
//! `prefix ‖ key`, with `prefix = parent prefix ‖ name ‖ sep` (`sep` is `0x00` unless chosen).
//! [`Sub`] does the key arithmetic; reads and writes go through the [`Bee`](crate::Bee) or a
//! [`Batch`](crate::Batch) as usual.

use crate::iter::Range;
use crate::tree::Entry;

/// The default separator (hyperbee `SEP = b4a.alloc(1)`).
pub const SEP: u8 = 0x00;

/// A sub-bee's key prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sub {
    prefix: Vec<u8>,
    sep: Vec<u8>,
}

impl Sub {
    /// The sub-bee `name` of the root bee (hyperbee `bee.sub(name)`).
    pub fn new(name: &[u8]) -> Self {
        Self::root().sub(name)
    }

    /// The sub-bee `name` of the root bee with separator `sep` (`bee.sub(name, { sep })`).
    pub fn with_sep(name: &[u8], sep: &[u8]) -> Self {
        Self::root().sub_with_sep(name, sep)
    }

    fn root() -> Self {
        Self {
            prefix: Vec::new(),
            sep: vec![SEP],
        }
    }

    /// The sub-bee `name` of this one.
    pub fn sub(&self, name: &[u8]) -> Self {
        let sep = self.sep.clone();
        self.sub_with_sep(name, &sep)
    }

    /// The sub-bee `name` of this one, separated by `sep`.
    ///
    /// As in hyperbee, `sep` ends this prefix only: the new sub-bee's own sub-bees use this
    /// one's separator (`new Hyperbee(…, { prefix, sep: this.sep })`).
    pub fn sub_with_sep(&self, name: &[u8], sep: &[u8]) -> Self {
        let mut prefix = self.prefix.clone();
        prefix.extend_from_slice(name);
        prefix.extend_from_slice(sep);
        Self {
            prefix,
            sep: self.sep.clone(),
        }
    }

    /// The prefix of every key of this sub-bee.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The key stored in the tree for `key`.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    /// `range` over this sub-bee's keys, as hyperbee's `encRange` turns it into a range of the
    /// tree. With no lower bound it starts after `prefix ‖ 0x00`, with no upper bound it stops
    /// before the prefix with its last byte plus one (so, as in JS, a full walk of a sub-bee
    /// skips the keys `""` and `"\0"`).
    pub fn range(&self, range: Range) -> Range {
        let enc = |k: Option<Vec<u8>>| k.map(|k| self.key(&k));
        let mut r = Range {
            gt: enc(range.gt),
            gte: enc(range.gte),
            lt: enc(range.lt),
            lte: enc(range.lte),
            ..range
        };
        if r.gt.is_none() && r.gte.is_none() {
            r.gt = Some(self.key(&[SEP]));
        }
        if r.lt.is_none() && r.lte.is_none() {
            // > function bump (key) { key[key.length - 1]++ }  (a Uint8Array: 0xff wraps to 0)
            let mut end = self.prefix.clone();
            if let Some(last) = end.last_mut() {
                *last = last.wrapping_add(1);
            }
            r.lt = Some(end);
        }
        r
    }

    /// An entry of the tree as an entry of this sub-bee (the prefix taken off its key), or
    /// `None` if its key is not under the prefix.
    pub fn strip(&self, mut entry: Entry) -> Option<Entry> {
        if !entry.key.starts_with(&self.prefix) {
            return None;
        }
        entry.key.drain(..self.prefix.len());
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let s = Sub::new(b"posts");
        assert_eq!(s.key(b"1"), b"posts\x001");
        let t = s.sub_with_sep(b"by-time", b"/");
        assert_eq!(t.key(b"x"), b"posts\x00by-time/x");
        // The grandchild uses the root's separator, not "/".
        assert_eq!(t.sub(b"y").key(b""), b"posts\x00by-time/y\x00");
        let r = s.range(Range::all());
        assert_eq!(r.gt.as_deref(), Some(&b"posts\x00\x00"[..]));
        assert_eq!(r.lt.as_deref(), Some(&b"posts\x01"[..]));
        let r = s.range(Range::all().gte(b"a".to_vec()));
        assert_eq!(r.gte.as_deref(), Some(&b"posts\x00a"[..]));
        assert_eq!(r.gt, None);
    }
}
