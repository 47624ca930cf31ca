//! The index log of a community (`protocol/feeds.md`, "The index log"): a Hyperbee
//! (`peerhost-bee`, the JS `hyperbee` 2.x format) in a log of its own that answers "page N of
//! the posts", "the comments of one post, as a tree", "the blocks of this id" and "what this
//! author wrote" with one range read or lookup each, over O(log n) blocks.
//!
//! - Keys ([`key`]) are a one-byte tag, then fixed-width big-endian numbers and length-prefixed
//!   ids, so that byte order is the order a reader wants.
//! - Values ([`State`]) point at blocks of the posts and comments logs; readers fetch those
//!   blocks and check them against the entry the value claims ([`IndexError::Disagrees`]
//!   otherwise): the logs are the truth, the index a verified hint.
//! - [`catch_up`] brings an index up to its logs, one Hyperbee batch per [`CHUNK`] log entries
//!   with the position (`!posts`, `!comments`) in the same batch, so a crash leaves an index
//!   that lags, never one that points past its logs.
//! - [`View`] reads an index plus what the logs hold past its position (indexed in memory), so
//!   a reader of an index that lags still gets the answer the logs give.
//!
//! Like the rest of this crate it does no I/O of its own: logs are [`Blocks`]; a block not
//! held stops a call with [`IndexError::Missing`], for a sparse reader to fetch and retry.

use std::collections::BTreeMap;

use peerhost_bee::{Bee, Range};

use crate::entry::{Entry, Kind};
use crate::read::{self, AppendBlocks, Blocks, CommentView, PostView, ReadError};

/// Tag of the position keys (`!posts`, `!comments`, `!format`).
pub const TAG_META: u8 = b'!';
/// Tag of an author's posts and comments: `a ‖ author ‖ time ‖ kind ‖ block`.
pub const TAG_AUTHOR: u8 = b'a';
/// Tag of the comments of a post, by thread path: `c ‖ post id ‖ path`.
pub const TAG_THREAD: u8 = b'c';
/// Tag of a comment's id: `k ‖ id` → the comment's `c` key.
pub const TAG_COMMENT: u8 = b'k';
/// Tag of a post's id: `p ‖ id` → its [`State`].
pub const TAG_POST: u8 = b'p';
/// Tag of the live posts by time: `t ‖ published_us ‖ block` → its [`State`].
pub const TAG_TIME: u8 = b't';

/// `!posts`: how many blocks of the posts log the index holds (8 bytes, big-endian).
pub const META_POSTS: &[u8] = b"!posts";
/// `!comments`: how many blocks of the comments log the index holds.
pub const META_COMMENTS: &[u8] = b"!comments";
/// `!format`: [`FORMAT`].
pub const META_FORMAT: &[u8] = b"!format";
/// The value of `!format`.
pub const FORMAT: &[u8] = b"peerhost-index/1";

/// Log entries indexed per Hyperbee batch (one append).
pub const CHUNK: u64 = 1024;
/// Changes (edits, deletes) a [`State`] lists before it lists only the last one.
pub const MAX_CHANGES: usize = 64;
/// Levels of a thread path; a deeper reply is keyed beside its deepest keyed ancestor's
/// children.
pub const MAX_DEPTH: usize = 64;
/// Posts per page.
pub const PAGE: usize = 20;

/// The keys of the index. Numbers are 8-byte big-endian; an id or author is its UTF-8 length
/// as 2 bytes big-endian, then its bytes (ids may hold any byte, even `0x00`).
pub mod key {
    use super::{TAG_AUTHOR, TAG_COMMENT, TAG_POST, TAG_THREAD, TAG_TIME};

    fn with_str(tag: u8, s: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(3 + s.len());
        k.push(tag);
        // Ids are at most 256 bytes and names what an entry holds (< 1 MiB): cut at 65 535.
        let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
        k.extend_from_slice(&(b.len() as u16).to_be_bytes());
        k.extend_from_slice(b);
        k
    }

    /// `t ‖ published_us ‖ block`: a live post, by time.
    pub fn time(published_us: u64, block: u64) -> Vec<u8> {
        let mut k = vec![TAG_TIME];
        k.extend_from_slice(&published_us.to_be_bytes());
        k.extend_from_slice(&block.to_be_bytes());
        k
    }

    /// The time of a `t` key and the block it names.
    pub fn parse_time(k: &[u8]) -> Option<(u64, u64)> {
        if k.len() != 17 || k[0] != TAG_TIME {
            return None;
        }
        let n = |r: std::ops::Range<usize>| k[r].try_into().ok().map(u64::from_be_bytes);
        Some((n(1..9)?, n(9..17)?))
    }

    /// `p ‖ id`: a post by id.
    pub fn post(id: &str) -> Vec<u8> {
        with_str(TAG_POST, id)
    }

    /// `k ‖ id`: a comment by id.
    pub fn comment(id: &str) -> Vec<u8> {
        with_str(TAG_COMMENT, id)
    }

    /// `c ‖ post id`: the prefix of one post's comments.
    pub fn thread(post: &str) -> Vec<u8> {
        with_str(TAG_THREAD, post)
    }

    /// `a ‖ author`: the prefix of one author's posts and comments.
    pub fn author(name: &str) -> Vec<u8> {
        with_str(TAG_AUTHOR, name)
    }

    /// `a ‖ author ‖ time ‖ kind ‖ block`, `kind` `p` (posts log) or `c` (comments log).
    pub fn authored(name: &str, time_us: u64, kind: u8, block: u64) -> Vec<u8> {
        let mut k = author(name);
        k.extend_from_slice(&time_us.to_be_bytes());
        k.push(kind);
        k.extend_from_slice(&block.to_be_bytes());
        k
    }
}

/// What an index value says about a post or comment: the block of its current `Post`
/// (`Comment`) entry and the `Edit`s and `Delete`s of it since, in log order.
///
/// Encoded as `flags ‖ block ‖ change…` (flags one byte: bit 0 deleted, bit 1 truncated;
/// numbers 8 bytes big-endian). Deleted: the last change is a `Delete`. Truncated: there were
/// more than [`MAX_CHANGES`]; only the last is listed, and a reader reads every block after
/// `block` up to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct State {
    /// The block of the `Post` / `Comment` entry.
    pub block: u64,
    /// Blocks of its edits and deletions since, oldest first.
    pub changes: Vec<u64>,
    /// Whether it is deleted.
    pub deleted: bool,
    /// Whether `changes` holds only the last of them.
    pub truncated: bool,
}

impl State {
    fn new(block: u64) -> Self {
        Self {
            block,
            ..Self::default()
        }
    }

    fn change(&mut self, block: u64) {
        self.changes.push(block);
        if self.truncated || self.changes.len() > MAX_CHANGES {
            self.truncated = true;
            self.changes = vec![block];
        }
    }

    /// The value's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + 8 * self.changes.len());
        v.push(u8::from(self.deleted) | u8::from(self.truncated) << 1);
        v.extend_from_slice(&self.block.to_be_bytes());
        for c in &self.changes {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v
    }

    /// A value's state; `None` if it is not one (unknown flags, a bad length, changes not
    /// after the block and in order).
    pub fn decode(v: &[u8]) -> Option<Self> {
        let (&flags, rest) = v.split_first()?;
        if flags > 3 || rest.len() < 8 || rest.len() % 8 != 0 {
            return None;
        }
        if rest.len() / 8 - 1 > MAX_CHANGES {
            return None;
        }
        let mut nums = rest
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()));
        let block = nums.next()?;
        let changes: Vec<u64> = nums.collect();
        let ordered = changes
            .iter()
            .try_fold(block, |prev, &c| (c > prev).then_some(c))
            .is_some();
        let deleted = flags & 1 == 1;
        let truncated = flags & 2 == 2;
        if !ordered || changes.len() > MAX_CHANGES || (deleted || truncated) && changes.is_empty() {
            return None;
        }
        Some(Self {
            block,
            changes,
            deleted,
            truncated,
        })
    }
}

/// Which log a block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Which {
    /// The index log.
    Index,
    /// The posts log.
    Posts,
    /// The comments log.
    Comments,
}

impl Which {
    /// `index`, `posts`, `comments`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Posts => "posts",
            Self::Comments => "comments",
        }
    }
}

/// An index operation could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A block is not held here: fetch it (verified) and call again.
    #[error("block {index} of the {} log is not held here", log.name())]
    Missing {
        /// Which log.
        log: Which,
        /// The block.
        index: u64,
    },
    /// The index says something its logs do not (a value pointing at the wrong entry, a key
    /// or value that is not of this format, a position past the logs).
    #[error("the index disagrees with the logs: {0}")]
    Disagrees(String),
    /// The index log is not a Hyperbee, or its tree is damaged.
    #[error("the index log: {0}")]
    Bee(peerhost_bee::Error),
    /// A log failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl From<peerhost_bee::Error> for IndexError {
    fn from(e: peerhost_bee::Error) -> Self {
        match e {
            peerhost_bee::Error::Missing { seq } => Self::Missing {
                log: Which::Index,
                index: seq,
            },
            e => Self::Bee(e),
        }
    }
}

fn disagrees(what: impl Into<String>) -> IndexError {
    IndexError::Disagrees(what.into())
}

/// Block `index` of `log` as an entry kind (`None`: not an entry, or of an unknown kind).
fn entry<B: Blocks>(log: &mut B, which: Which, index: u64) -> Result<Option<Kind>, IndexError> {
    let block = read::read(log, index)?.ok_or(IndexError::Missing { log: which, index })?;
    Ok(Entry::decode(&block).ok().and_then(Entry::into_kind))
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A key and its value about to be written (`None`: deleted).
type Pending = (Vec<u8>, Option<Vec<u8>>);

fn be(v: &[u8]) -> Option<u64> {
    v.try_into().ok().map(u64::from_be_bytes)
}

/// An index as of its log's length, plus changes not yet written (`overlay`): what a batch
/// is about to write, or what a reader indexed in memory from the logs past the index's
/// position.
#[derive(Debug)]
pub struct View<I: Blocks> {
    bee: Bee<I>,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<I: Blocks> View<I> {
    /// The index in `log` (an empty log is an empty index).
    pub fn new(log: I) -> Self {
        Self {
            bee: Bee::new(log),
            overlay: BTreeMap::new(),
        }
    }

    /// The index log.
    pub fn log(&self) -> &I {
        self.bee.log()
    }

    /// The index log, mutably.
    pub fn log_mut(&mut self) -> &mut I {
        self.bee.log_mut()
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        Ok(self.bee.get(key)?.and_then(|e| e.value))
    }

    /// The changes not written yet, in the order [`View::flush`] writes them (a key and its
    /// new value; `None`: deleted). For tools that replay an index build elsewhere.
    pub fn pending(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.overlay
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, Some(value));
    }

    fn del(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, None);
    }

    /// The first `limit` entries whose key starts with `prefix`, in key order (or reversed).
    pub fn prefix(
        &mut self,
        prefix: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KeyValue>, IndexError> {
        let range = Range::prefix(prefix);
        let pending: Vec<Pending> = self
            .overlay
            .iter()
            .filter(|(k, _)| range.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Each pending deletion may hide one stored entry: read that many more.
        let extra = pending.iter().filter(|(_, v)| v.is_none()).count();
        let mut r = range.limit(u64::try_from(limit.saturating_add(extra)).unwrap_or(u64::MAX));
        if reverse {
            r = r.reverse();
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .bee
            .range(r)?
            .into_iter()
            .map(|e| (e.key, e.value.unwrap_or_default()))
            .collect();
        let stored_edge = merged.keys().next_back().cloned();
        let stored_first = merged.keys().next().cloned();
        let complete = merged.len() < limit.saturating_add(extra);
        for (k, v) in pending {
            // Past the last stored entry read, a pending put may be out of order with stored
            // entries not read: only merge it if the stored read was complete or it is inside.
            let inside = complete
                || if reverse {
                    stored_first.as_ref().is_some_and(|f| &k >= f)
                } else {
                    stored_edge.as_ref().is_some_and(|l| &k <= l)
                };
            match v {
                Some(v) if inside => {
                    merged.insert(k, v);
                }
                Some(_) => {}
                None => {
                    merged.remove(&k);
                }
            }
        }
        let out: Vec<_> = if reverse {
            merged.into_iter().rev().take(limit).collect()
        } else {
            merged.into_iter().take(limit).collect()
        };
        Ok(out)
    }

    /// How many blocks of the posts and comments logs the index (with its overlay) holds.
    pub fn position(&mut self) -> Result<(u64, u64), IndexError> {
        let mut pos = [0; 2];
        for (i, k) in [META_POSTS, META_COMMENTS].into_iter().enumerate() {
            if let Some(v) = self.get(k)? {
                pos[i] = be(&v).ok_or_else(|| disagrees("a position that is not 8 bytes"))?;
            }
        }
        Ok((pos[0], pos[1]))
    }

    fn state(&mut self, key: &[u8]) -> Result<Option<State>, IndexError> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => State::decode(&v)
                .map(Some)
                .ok_or_else(|| disagrees("a value that is not a post or comment state")),
        }
    }

    /// Index block `index` of the posts log (reading earlier posts it changes).
    fn add_post<P: Blocks>(&mut self, posts: &mut P, index: u64) -> Result<(), IndexError> {
        let Some(kind) = entry(posts, Which::Posts, index)? else {
            return Ok(());
        };
        match kind {
            Kind::Post(p) => {
                let pk = key::post(&p.id);
                if let Some(old) = self.state(&pk)? {
                    self.unlist_post(posts, old.block)?;
                }
                let state = State::new(index).encode();
                self.put(key::time(p.published_us, index), state.clone());
                if let Some(a) = p.author.as_ref().filter(|a| !a.name.is_empty()) {
                    self.put(key::authored(&a.name, p.published_us, b'p', index), vec![]);
                }
                self.put(pk, state);
            }
            Kind::Edit(e) => {
                let pk = key::post(&e.target);
                let Some(mut state) = self.state(&pk)?.filter(|s| !s.deleted) else {
                    return Ok(());
                };
                state.change(index);
                let Some(Kind::Post(p)) = entry(posts, Which::Posts, state.block)? else {
                    return Err(disagrees("a post id naming a block that is not a post"));
                };
                self.put(key::time(p.published_us, state.block), state.encode());
                self.put(pk, state.encode());
            }
            Kind::Delete(d) => {
                let pk = key::post(&d.target);
                let Some(mut state) = self.state(&pk)? else {
                    return Ok(());
                };
                if !state.deleted {
                    self.unlist_post(posts, state.block)?;
                }
                state.change(index);
                state.deleted = true;
                self.put(pk, state.encode());
            }
            _ => {}
        }
        Ok(())
    }

    /// Remove the post at `block` from the time and author keys.
    fn unlist_post<P: Blocks>(&mut self, posts: &mut P, block: u64) -> Result<(), IndexError> {
        let Some(Kind::Post(p)) = entry(posts, Which::Posts, block)? else {
            return Err(disagrees("a post id naming a block that is not a post"));
        };
        self.del(key::time(p.published_us, block));
        if let Some(a) = p.author.as_ref().filter(|a| !a.name.is_empty()) {
            self.del(key::authored(&a.name, p.published_us, b'p', block));
        }
        Ok(())
    }

    /// Index block `index` of the comments log.
    fn add_comment<C: Blocks>(&mut self, comments: &mut C, index: u64) -> Result<(), IndexError> {
        let Some(kind) = entry(comments, Which::Comments, index)? else {
            return Ok(());
        };
        let (target, change) = match kind {
            Kind::Comment(c) => {
                let ck = key::comment(&c.id);
                let prefix = key::thread(&c.post);
                let seen = self.get(&ck)?;
                if let Some(tk) = &seen {
                    // Its old entry leaves the author keys (and its post's thread if it moved).
                    if let Some(old) = self.state(tk)? {
                        self.unlist_comment(comments, old.block)?;
                    }
                    if !tk.starts_with(&prefix) {
                        self.del(tk.clone());
                    }
                }
                let thread_key = match seen.filter(|tk| tk.starts_with(&prefix)) {
                    // Seen before in this thread: it keeps its place.
                    Some(tk) => tk,
                    None => {
                        let mut tk = match c.parent.is_empty() {
                            true => None,
                            false => self.get(&key::comment(&c.parent))?,
                        }
                        .filter(|p| p.starts_with(&prefix) && (p.len() - prefix.len()) % 8 == 0)
                        .unwrap_or_else(|| prefix.clone());
                        let depth = (tk.len() - prefix.len()) / 8;
                        if depth >= MAX_DEPTH {
                            tk.truncate(tk.len() - 8 * (depth - MAX_DEPTH + 1));
                        }
                        tk.extend_from_slice(&index.to_be_bytes());
                        self.put(ck, tk.clone());
                        tk
                    }
                };
                if let Some(a) = c.author.as_ref().filter(|a| !a.name.is_empty()) {
                    self.put(key::authored(&a.name, c.published_us, b'c', index), vec![]);
                }
                self.put(thread_key, State::new(index).encode());
                return Ok(());
            }
            Kind::Edit(e) => (e.target, false),
            Kind::Delete(d) => (d.target, true),
            _ => return Ok(()),
        };
        let Some(tk) = self.get(&key::comment(&target))? else {
            return Ok(());
        };
        let Some(mut state) = self.state(&tk)? else {
            return Err(disagrees("a comment id naming no thread entry"));
        };
        if state.deleted && !change {
            return Ok(());
        }
        if change && !state.deleted {
            self.unlist_comment(comments, state.block)?;
        }
        state.change(index);
        state.deleted |= change;
        self.put(tk, state.encode());
        Ok(())
    }

    fn unlist_comment<C: Blocks>(
        &mut self,
        comments: &mut C,
        block: u64,
    ) -> Result<(), IndexError> {
        let Some(Kind::Comment(c)) = entry(comments, Which::Comments, block)? else {
            return Err(disagrees(
                "a comment id naming a block that is not a comment",
            ));
        };
        if let Some(a) = c.author.as_ref().filter(|a| !a.name.is_empty()) {
            self.del(key::authored(&a.name, c.published_us, b'c', block));
        }
        Ok(())
    }

    /// Index what the logs hold past the position, at most `max` blocks (posts first), into
    /// the overlay; the number of blocks indexed.
    pub fn absorb<P: Blocks, C: Blocks>(
        &mut self,
        posts: &mut P,
        comments: &mut C,
        max: u64,
    ) -> Result<u64, IndexError> {
        let n = self.absorb_posts(posts, max)?;
        Ok(n + self.absorb_comments(comments, max - n)?)
    }

    /// [`View::absorb`] of the posts log alone (enough for pages and posts by id).
    pub fn absorb_posts<P: Blocks>(&mut self, posts: &mut P, max: u64) -> Result<u64, IndexError> {
        let (p, _) = self.position()?;
        let end = self.end(p, posts.length(), max, "posts")?;
        for i in p..end {
            self.add_post(posts, i)?;
        }
        self.mark(META_POSTS, p, end);
        Ok(end - p)
    }

    /// [`View::absorb`] of the comments log alone.
    pub fn absorb_comments<C: Blocks>(
        &mut self,
        comments: &mut C,
        max: u64,
    ) -> Result<u64, IndexError> {
        let (_, c) = self.position()?;
        let end = self.end(c, comments.length(), max, "comments")?;
        for i in c..end {
            self.add_comment(comments, i)?;
        }
        self.mark(META_COMMENTS, c, end);
        Ok(end - c)
    }

    fn end(&self, at: u64, length: u64, max: u64, what: &str) -> Result<u64, IndexError> {
        if at > length {
            return Err(disagrees(format!(
                "it holds {at} blocks of the {what} log, which has {length}"
            )));
        }
        Ok(length.min(at.saturating_add(max)))
    }

    /// Record the new position (and, on an empty index, the format).
    fn mark(&mut self, key: &[u8], from: u64, to: u64) {
        let empty = self.bee.log().length() == 0;
        if to > from || empty {
            self.put(key.to_vec(), to.to_be_bytes().to_vec());
        }
        if empty {
            self.put(META_FORMAT.to_vec(), FORMAT.to_vec());
        }
    }
}

impl<I: AppendBlocks> View<I> {
    /// Write the overlay as one Hyperbee batch (one append), in key order.
    pub fn flush(&mut self) -> Result<(), IndexError> {
        let ops = std::mem::take(&mut self.overlay);
        let mut b = self.bee.batch();
        for (k, v) in &ops {
            match v {
                Some(v) => b.put(k, v)?,
                None => b.del(k)?,
            };
        }
        b.flush()?;
        Ok(())
    }
}

/// What [`catch_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caught {
    /// Log blocks indexed.
    pub blocks: u64,
    /// Hyperbee batches appended.
    pub batches: u64,
}

/// Bring the index in `index` up to the posts and comments logs: [`CHUNK`] log blocks per
/// Hyperbee batch, each batch with the new position, so that a crash between two leaves an
/// index that lags. `progress(done, total)` after each batch.
pub fn catch_up<I: AppendBlocks, P: Blocks, C: Blocks>(
    index: I,
    posts: &mut P,
    comments: &mut C,
    mut progress: impl FnMut(u64, u64),
) -> Result<Caught, IndexError> {
    let mut view = View::new(index);
    let (p, c) = view.position()?;
    let total = (posts.length() + comments.length()).saturating_sub(p + c);
    let mut caught = Caught::default();
    loop {
        let n = view.absorb(posts, comments, CHUNK)?;
        if n == 0 && view.overlay.is_empty() {
            return Ok(caught);
        }
        view.flush()?;
        caught.blocks += n;
        caught.batches += 1;
        progress(caught.blocks, total);
        if n == 0 {
            return Ok(caught);
        }
    }
}

/// The post a state names, checked: its block is a `Post` (with `id`, if given), its changes
/// are `Edit`s and `Delete`s of it; edits applied.
fn resolve_post<P: Blocks>(
    posts: &mut P,
    state: &State,
    id: Option<&str>,
) -> Result<PostView, IndexError> {
    let Some(Kind::Post(mut post)) = entry(posts, Which::Posts, state.block)? else {
        return Err(disagrees(format!(
            "posts block {} is not a post",
            state.block
        )));
    };
    if id.is_some_and(|id| id != post.id) {
        return Err(disagrees(format!(
            "posts block {} is not post {id:?}",
            state.block
        )));
    }
    let mut edited_us = 0;
    let mut deleted = false;
    for (i, kind) in changes(posts, Which::Posts, state, &post.id)? {
        match kind {
            Kind::Edit(e) if !deleted => {
                if read::edit_post(&mut post, &e) {
                    edited_us = e.time_us;
                }
            }
            Kind::Delete(_) => deleted = true,
            Kind::Edit(_) => {}
            _ => return Err(disagrees(format!("posts block {i} is not a change"))),
        }
    }
    if deleted != state.deleted {
        return Err(disagrees(format!("post {:?}: deleted or not", post.id)));
    }
    Ok(PostView {
        index: state.block,
        post,
        edited_us,
    })
}

/// The changes of `id` a state lists (or, truncated, every change of it up to the last).
fn changes<B: Blocks>(
    log: &mut B,
    which: Which,
    state: &State,
    id: &str,
) -> Result<Vec<(u64, Kind)>, IndexError> {
    fn target(k: &Kind) -> Option<&str> {
        match k {
            Kind::Edit(e) => Some(e.target.as_str()),
            Kind::Delete(d) => Some(d.target.as_str()),
            _ => None,
        }
    }
    let mut out = Vec::new();
    if state.truncated {
        let last = state.changes.last().copied().unwrap_or(state.block);
        for i in state.block + 1..=last {
            if let Some(k) = entry(log, which, i)? {
                if target(&k) == Some(id) {
                    out.push((i, k));
                }
            }
        }
    } else {
        for &i in &state.changes {
            let k = entry(log, which, i)?;
            match k.filter(|k| target(k) == Some(id)) {
                Some(k) => out.push((i, k)),
                None => {
                    return Err(disagrees(format!(
                        "{} block {i} does not change {id:?}",
                        which.name()
                    )));
                }
            }
        }
    }
    Ok(out)
}

fn resolve_comment<C: Blocks>(
    comments: &mut C,
    state: &State,
    post: &str,
) -> Result<CommentView, IndexError> {
    let Some(Kind::Comment(comment)) = entry(comments, Which::Comments, state.block)? else {
        return Err(disagrees(format!(
            "comments block {} is not a comment",
            state.block
        )));
    };
    if comment.post != post {
        return Err(disagrees(format!(
            "comments block {} is not a comment of post {post:?}",
            state.block
        )));
    }
    let mut view = CommentView {
        index: state.block,
        edited_us: 0,
        deleted: None,
        comment,
    };
    let id = view.comment.id.clone();
    for (i, kind) in changes(comments, Which::Comments, state, &id)? {
        match kind {
            Kind::Edit(e) if view.deleted.is_none() => {
                if read::edit_comment(&mut view.comment, &e) {
                    view.edited_us = e.time_us;
                }
            }
            Kind::Edit(_) => {}
            Kind::Delete(d) => {
                view.deleted = Some(d.reason());
                view.comment.body.clear();
            }
            _ => return Err(disagrees(format!("comments block {i} is not a change"))),
        }
    }
    if view.deleted.is_some() != state.deleted {
        return Err(disagrees(format!("comment {id:?}: deleted or not")));
    }
    Ok(view)
}

/// Page `page` (1 = the newest) of `per` live posts, newest (`published_us`, then block) first.
pub fn page<I: Blocks, P: Blocks>(
    view: &mut View<I>,
    posts: &mut P,
    page: usize,
    per: usize,
) -> Result<Vec<PostView>, IndexError> {
    let skip = page.saturating_sub(1).saturating_mul(per);
    let entries = view.prefix(&[TAG_TIME], true, skip.saturating_add(per))?;
    let mut out = Vec::new();
    for (k, v) in entries.into_iter().skip(skip) {
        let (time, block) = key::parse_time(&k).ok_or_else(|| disagrees("a bad time key"))?;
        let state = State::decode(&v).ok_or_else(|| disagrees("a bad post state"))?;
        let view = resolve_post(posts, &state, None)?;
        if state.block != block || view.post.published_us != time || state.deleted {
            return Err(disagrees(format!("time key of posts block {block}")));
        }
        out.push(view);
    }
    Ok(out)
}

/// Post `id` as it stands and its comments in thread order (a comment after its parent,
/// siblings oldest first; deleted ones as placeholders); `None` if there is no such post or it
/// is deleted.
pub fn thread<I: Blocks, P: Blocks, C: Blocks>(
    view: &mut View<I>,
    posts: &mut P,
    comments: &mut C,
    id: &str,
) -> Result<Option<(PostView, Vec<CommentView>)>, IndexError> {
    let Some(v) = view.get(&key::post(id))? else {
        return Ok(None);
    };
    let state = State::decode(&v).ok_or_else(|| disagrees("a bad post state"))?;
    let post = resolve_post(posts, &state, Some(id))?;
    if state.deleted {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (_, v) in view.prefix(&key::thread(id), false, usize::MAX)? {
        let state = State::decode(&v).ok_or_else(|| disagrees("a bad comment state"))?;
        out.push(resolve_comment(comments, &state, id)?);
    }
    Ok(Some((post, out)))
}

/// Page `page` of `per` posts from the posts log alone (no index): every post read, in the
/// order [`page`] gives.
pub fn page_scan<P: Blocks>(
    posts: &mut P,
    page: usize,
    per: usize,
) -> Result<(Vec<PostView>, read::Notes), ReadError> {
    let (mut all, notes) = read::latest_posts(posts, usize::MAX)?;
    all.sort_by_key(|p| std::cmp::Reverse((p.post.published_us, p.index)));
    let skip = page.saturating_sub(1).saturating_mul(per);
    Ok((all.into_iter().skip(skip).take(per).collect(), notes))
}

/// Post `id` and its comments from the logs alone (no index): the posts log and the whole
/// comments log read, comments in the order [`thread`] gives.
#[allow(clippy::type_complexity)]
pub fn thread_scan<P: Blocks, C: Blocks>(
    posts: &mut P,
    comments: &mut C,
    id: &str,
) -> Result<(Option<(PostView, Vec<CommentView>)>, read::Notes), ReadError> {
    let (all, mut notes) = read::latest_posts(posts, usize::MAX)?;
    let Some(post) = all.into_iter().find(|p| p.post.id == id) else {
        return Ok((None, notes));
    };
    let (cs, n) = read::comments(comments)?;
    notes.merge(n);
    Ok((Some((post, thread_order(cs, id))), notes))
}

/// Comments of post `id` in thread order: depth first, siblings by their first block;
/// a comment whose parent is unknown (or not earlier) is a top-level one.
pub fn thread_order(all: Vec<CommentView>, id: &str) -> Vec<CommentView> {
    // The path of each comment, as the index keys it: its ancestors' first blocks, then its
    // own. `read::comments` lists a replaced comment at its last block; the index keeps the
    // first, so remember both.
    let mine: Vec<CommentView> = all.into_iter().filter(|c| c.comment.post == id).collect();
    let mut paths: std::collections::HashMap<String, Vec<u64>> = Default::default();
    let mut keyed = Vec::new();
    for c in mine {
        let mut path = match c.comment.parent.as_str() {
            "" => Vec::new(),
            p => paths.get(p).cloned().unwrap_or_default(),
        };
        if path.len() >= MAX_DEPTH {
            path.truncate(MAX_DEPTH - 1);
        }
        path.push(c.index);
        paths.insert(c.comment.id.clone(), path.clone());
        keyed.push((path, c));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests;
