//! Reading a community from its logs: the latest descriptor, the latest posts, the comments,
//! the asset index. Over any [`Blocks`] (a store's `Core`, a `Vec` in tests, later a sparse
//! network reader): these functions only ask for blocks by index.
//!
//! A block that is not a valid entry, or an entry that does not belong in that log, is skipped
//! and reported in [`Notes`] (the caller prints the warnings); reading goes on. A block that
//! is not held locally is skipped and reported too.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::entry::{
    AssetIndex, Comment, Descriptor, Edit, Entry, EntryError, Kind, Post, Reason, kind_name,
};

/// A log's blocks by index, and a log this side writes: the Hyperbee crate's traits, so that
/// one log type serves both the readers here and the community's index (`crate::index`). A
/// store's `Core`, a `Vec` (sparse: `Vec<Option<_>>`) and `&mut` of either implement them.
pub use peerhost_bee::{AppendBlocks, Blocks};

/// A log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Reading block `index` failed.
    #[error("cannot read block {index}")]
    Read {
        /// The block.
        index: u64,
        /// What the log said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Appending failed.
    #[error("cannot append to the log")]
    Append {
        /// What the log said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub(crate) fn read<B: Blocks>(log: &mut B, index: u64) -> Result<Option<Vec<u8>>, ReadError> {
    log.block(index).map_err(|e| ReadError::Read {
        index,
        source: Box::new(e),
    })
}

pub(crate) fn append<B: AppendBlocks>(log: &mut B, blocks: &[Vec<u8>]) -> Result<u64, ReadError> {
    log.append_blocks(blocks).map_err(|e| ReadError::Append {
        source: Box::new(e),
    })
}

/// Why a block was skipped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Skip {
    /// Not a valid entry.
    Malformed(EntryError),
    /// A valid entry of a kind that does not belong in this log (e.g. a comment in the posts
    /// log).
    Misplaced(&'static str),
    /// A valid entry that contradicts the log (e.g. an asset index pointing past itself).
    Inconsistent(String),
}

/// A block a reader skipped.
#[derive(Debug)]
pub struct Skipped {
    /// Its index.
    pub index: u64,
    /// Why.
    pub reason: Skip,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Skip::Malformed(e) => write!(f, "block {}: {e}", self.index),
            Skip::Misplaced(kind) => {
                write!(
                    f,
                    "block {}: a {kind} entry does not belong here",
                    self.index
                )
            }
            Skip::Inconsistent(why) => write!(f, "block {}: {why}", self.index),
        }
    }
}

/// What a reader met on the way besides what it returns: bounded, whatever the log holds.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Notes {
    /// The first [`Notes::KEEP`] skipped blocks.
    pub skipped: Vec<Skipped>,
    /// All skipped blocks, kept or not.
    pub skipped_total: u64,
    /// Blocks not held locally (the first [`Notes::KEEP`]).
    pub missing: Vec<u64>,
    /// All blocks not held locally.
    pub missing_total: u64,
    /// Entries of kinds this version does not know (skipped without a warning).
    pub unknown_kinds: u64,
}

impl Notes {
    /// How many skipped and missing blocks are kept for display.
    pub const KEEP: usize = 64;

    fn skip(&mut self, index: u64, reason: Skip) {
        self.skipped_total += 1;
        if self.skipped.len() < Self::KEEP {
            self.skipped.push(Skipped { index, reason });
        }
    }

    fn missing(&mut self, index: u64) {
        self.missing_total += 1;
        if self.missing.len() < Self::KEEP {
            self.missing.push(index);
        }
    }

    /// Add `other`'s notes (another log read for the same answer).
    pub fn merge(&mut self, other: Self) {
        self.skipped_total += other.skipped_total;
        self.missing_total += other.missing_total;
        self.unknown_kinds += other.unknown_kinds;
        for s in other.skipped {
            if self.skipped.len() < Self::KEEP {
                self.skipped.push(s);
            }
        }
        for m in other.missing {
            if self.missing.len() < Self::KEEP {
                self.missing.push(m);
            }
        }
    }
}

/// Read block `index` as an entry of a known kind, noting anything else.
pub(crate) fn entry_at<B: Blocks>(
    log: &mut B,
    index: u64,
    notes: &mut Notes,
) -> Result<Option<Kind>, ReadError> {
    let Some(block) = read(log, index)? else {
        notes.missing(index);
        return Ok(None);
    };
    match Entry::decode(&block) {
        Ok(entry) => match entry.into_kind() {
            Some(kind) => Ok(Some(kind)),
            None => {
                notes.unknown_kinds += 1;
                Ok(None)
            }
        },
        Err(e) => {
            notes.skip(index, Skip::Malformed(e));
            Ok(None)
        }
    }
}

/// Whether `log` is a community's descriptor log: its block 0 is a [`Descriptor`] entry, as
/// `community create` writes it. A community's other logs (posts, comments, assets) and plain
/// logs are not, nor is an empty log or one whose block 0 is not held here or not an entry.
pub fn is_descriptor_log<B: Blocks>(log: &mut B) -> Result<bool, ReadError> {
    if log.length() == 0 {
        return Ok(false);
    }
    let first = read(log, 0)?.and_then(|b| Entry::decode(&b).ok());
    Ok(first.is_some_and(|e| matches!(e.kind(), Some(Kind::Descriptor(_)))))
}

/// The latest descriptor of a descriptor log: the last valid one, with its index, as an
/// [`Entry`] (change it and append it to update the community: unknown fields are kept).
///
/// Block 0 of a descriptor log is a descriptor: if it is an entry of another kind, this is not
/// a descriptor log (a posts log, say) and the answer is `None` without reading further.
pub fn descriptor<B: Blocks>(log: &mut B) -> Result<(Option<(u64, Entry)>, Notes), ReadError> {
    let mut notes = Notes::default();
    if log.length() > 0 {
        if let Some(block) = read(log, 0)? {
            if let Ok(first) = Entry::decode(&block) {
                if let Some(kind) = first.kind().filter(|k| !matches!(k, Kind::Descriptor(_))) {
                    notes.skip(0, Skip::Misplaced(kind_name(kind)));
                    return Ok((None, notes));
                }
            }
        }
    }
    for index in (0..log.length()).rev() {
        let Some(block) = read(log, index)? else {
            notes.missing(index);
            continue;
        };
        match Entry::decode(&block) {
            Ok(entry) => match entry.kind() {
                Some(Kind::Descriptor(_)) => return Ok((Some((index, entry)), notes)),
                Some(other) => notes.skip(index, Skip::Misplaced(kind_name(other))),
                None => notes.unknown_kinds += 1,
            },
            Err(e) => notes.skip(index, Skip::Malformed(e)),
        }
    }
    Ok((None, notes))
}

/// The descriptor inside an [`Entry`] returned by [`descriptor`].
pub fn as_descriptor(entry: &Entry) -> Option<&Descriptor> {
    match entry.kind() {
        Some(Kind::Descriptor(d)) => Some(d),
        _ => None,
    }
}

/// A post as it stands now: the last `Post` entry for its id with the `Edit`s after it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PostView {
    /// Index of its `Post` entry in the posts log.
    pub index: u64,
    /// The post, edits applied.
    pub post: Post,
    /// Time of the last edit applied (0: none).
    pub edited_us: u64,
}

/// A comment as it stands now.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CommentView {
    /// Index of its `Comment` entry in the comments log.
    pub index: u64,
    /// The comment, edits applied; body empty if deleted.
    pub comment: Comment,
    /// Time of the last edit applied (0: none).
    pub edited_us: u64,
    /// Why it is gone, if it is (it stays in the list to keep the thread's shape).
    pub deleted: Option<Reason>,
}

/// Apply an edit to a post's fields; whether it changed the content (title, body or link), as
/// opposed to only its votes.
pub(crate) fn edit_post(post: &mut Post, edit: &Edit) -> bool {
    if let Some(t) = &edit.title {
        post.title.clone_from(t);
    }
    if let Some(b) = &edit.body {
        post.body.clone_from(b);
    }
    if let Some(l) = &edit.link {
        post.link.clone_from(l);
    }
    if edit.votes.is_some() {
        post.votes.clone_from(&edit.votes);
    }
    edit.title.is_some() || edit.body.is_some() || edit.link.is_some()
}

/// Apply an edit to a comment (its body and votes; title and link do not apply); whether it
/// changed the body.
pub(crate) fn edit_comment(comment: &mut Comment, edit: &Edit) -> bool {
    if let Some(b) = &edit.body {
        comment.body.clone_from(b);
    }
    if edit.votes.is_some() {
        comment.votes.clone_from(&edit.votes);
    }
    edit.body.is_some()
}

/// The latest `n` posts of a posts log, newest (highest index) first, edits applied, deleted
/// ones left out.
///
/// It reads backwards from the end and stops at the `n`-th post: every edit and deletion of a
/// post comes after it in the log, so it has been seen by then. The cost is `n` plus the edits,
/// deletions and skipped blocks among the last entries, not the length of the log.
pub fn latest_posts<B: Blocks>(log: &mut B, n: usize) -> Result<(Vec<PostView>, Notes), ReadError> {
    let mut notes = Notes::default();
    let mut out = Vec::new();
    // Edits seen so far (newest first), deletions, and posts already shown: by id.
    let mut edits: HashMap<String, Vec<Edit>> = HashMap::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut index = log.length();
    while index > 0 && out.len() < n {
        index -= 1;
        let Some(kind) = entry_at(log, index, &mut notes)? else {
            continue;
        };
        match kind {
            Kind::Post(mut post) => {
                // Only the last Post of an id counts; what came before it is replaced.
                if !done.insert(post.id.clone()) || deleted.contains(&post.id) {
                    continue;
                }
                let mut edited_us = 0;
                for e in edits.remove(&post.id).unwrap_or_default().iter().rev() {
                    if edit_post(&mut post, e) {
                        edited_us = e.time_us;
                    }
                }
                out.push(PostView {
                    index,
                    post,
                    edited_us,
                });
            }
            Kind::Edit(e) => {
                if !done.contains(&e.target) && !deleted.contains(&e.target) {
                    edits.entry(e.target.clone()).or_default().push(e);
                }
            }
            Kind::Delete(d) => {
                if !done.contains(&d.target) {
                    edits.remove(&d.target);
                    deleted.insert(d.target);
                }
            }
            other => notes.skip(index, Skip::Misplaced(kind_name(&other))),
        }
    }
    Ok((out, notes))
}

/// Every comment of a comments log in log order, edits applied, deleted ones kept as
/// placeholders (so replies keep their place in the thread). Reads the whole log.
pub fn comments<B: Blocks>(log: &mut B) -> Result<(Vec<CommentView>, Notes), ReadError> {
    let mut notes = Notes::default();
    let mut views: Vec<CommentView> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for index in 0..log.length() {
        let Some(kind) = entry_at(log, index, &mut notes)? else {
            continue;
        };
        match kind {
            Kind::Comment(comment) => {
                let view = CommentView {
                    index,
                    comment,
                    edited_us: 0,
                    deleted: None,
                };
                // A later Comment with the same id replaces the earlier one (and undeletes).
                match by_id.get(&view.comment.id) {
                    Some(&i) => views[i] = view,
                    None => {
                        by_id.insert(view.comment.id.clone(), views.len());
                        views.push(view);
                    }
                }
            }
            Kind::Edit(e) => {
                if let Some(v) = by_id.get(&e.target).map(|&i| &mut views[i]) {
                    if v.deleted.is_none() && edit_comment(&mut v.comment, &e) {
                        v.edited_us = e.time_us;
                    }
                }
            }
            Kind::Delete(d) => {
                if let Some(v) = by_id.get(&d.target).map(|&i| &mut views[i]) {
                    v.deleted = Some(d.reason());
                    v.comment.body.clear();
                }
            }
            other => notes.skip(index, Skip::Misplaced(kind_name(&other))),
        }
    }
    views.sort_by_key(|v| v.index);
    Ok((views, notes))
}

/// The current asset index of an assets log (the last valid one whose block ranges all lie
/// before it), with its index.
pub fn asset_index<B: Blocks>(
    log: &mut B,
) -> Result<(Option<(u64, AssetIndex)>, Notes), ReadError> {
    let mut notes = Notes::default();
    for index in (0..log.length()).rev() {
        let Some(kind) = entry_at(log, index, &mut notes)? else {
            continue;
        };
        match kind {
            Kind::AssetIndex(files) => {
                match files.files.iter().find(|a| a.start + a.blocks > index) {
                    Some(a) => notes.skip(
                        index,
                        Skip::Inconsistent(format!(
                            "asset index: {:?} points at blocks {}..{}, not all before it",
                            a.path,
                            a.start,
                            a.start + a.blocks
                        )),
                    ),
                    None => return Ok((Some((index, files)), notes)),
                }
            }
            Kind::Chunk(_) => {}
            other => notes.skip(index, Skip::Misplaced(kind_name(&other))),
        }
    }
    Ok((None, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Delete;

    fn block(kind: impl Into<Entry>) -> Vec<u8> {
        kind.into().encode().unwrap()
    }

    fn post(id: &str, title: &str) -> Vec<u8> {
        block(Post {
            id: id.into(),
            title: title.into(),
            ..Default::default()
        })
    }

    fn edit(target: &str, title: &str, time_us: u64) -> Vec<u8> {
        block(Edit {
            target: target.into(),
            title: Some(title.into()),
            time_us,
            ..Default::default()
        })
    }

    fn delete(target: &str) -> Vec<u8> {
        block(Delete {
            target: target.into(),
            reason: Reason::Author.into(),
            time_us: 9,
        })
    }

    fn titles(v: &[PostView]) -> Vec<&str> {
        v.iter().map(|p| p.post.title.as_str()).collect()
    }

    #[test]
    fn latest_posts_newest_first_with_edits_and_deletions() {
        let mut log = vec![
            post("a", "A"),
            post("b", "B"),
            edit("a", "A2", 5),
            post("c", "C"),
            delete("b"),
            b"garbage".to_vec(),
            edit("a", "A3", 7),
            post("d", "D"),
        ];
        let (posts, notes) = latest_posts(&mut log, 10).unwrap();
        assert_eq!(titles(&posts), ["D", "C", "A3"]);
        assert_eq!(posts[2].edited_us, 7);
        assert_eq!(posts[2].index, 0);
        assert_eq!(notes.skipped_total, 1);
        assert_eq!(notes.skipped[0].index, 5);
        assert!(notes.skipped[0].to_string().starts_with("block 5: "));

        // Only as far back as needed.
        let (posts, notes) = latest_posts(&mut log, 2).unwrap();
        assert_eq!(titles(&posts), ["D", "C"]);
        assert_eq!(notes.skipped_total, 1);
    }

    #[test]
    fn a_later_post_replaces_and_undeletes() {
        let mut log = vec![
            post("a", "A"),
            edit("a", "A2", 1),
            delete("a"),
            post("a", "A again"),
            edit("a", "A again 2", 3),
        ];
        let (posts, _) = latest_posts(&mut log, 10).unwrap();
        assert_eq!(titles(&posts), ["A again 2"]);
        assert_eq!(posts[0].index, 3);
    }

    #[test]
    fn misplaced_and_unknown_kinds() {
        let mut log = vec![
            post("a", "A"),
            block(Comment {
                id: "c".into(),
                post: "a".into(),
                ..Default::default()
            }),
            vec![0x08, 0x01, 0xc2, 0x02, 0x01, b'x'],
        ];
        let (posts, notes) = latest_posts(&mut log, 10).unwrap();
        assert_eq!(titles(&posts), ["A"]);
        assert_eq!(notes.unknown_kinds, 1);
        assert!(matches!(
            notes.skipped[0].reason,
            Skip::Misplaced("comment")
        ));
    }

    #[test]
    fn comments_keep_deleted_placeholders() {
        let c = |id: &str, parent: &str, body: &str| {
            block(Comment {
                id: id.into(),
                post: "p".into(),
                parent: parent.into(),
                body: body.into(),
                ..Default::default()
            })
        };
        let mut log = vec![
            c("1", "", "top"),
            c("2", "1", "reply"),
            block(Edit {
                target: "2".into(),
                body: Some("reply (edited)".into()),
                time_us: 4,
                ..Default::default()
            }),
            delete("1"),
            delete("unknown"),
        ];
        let (views, notes) = comments(&mut log).unwrap();
        assert_eq!(notes.skipped_total, 0);
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].deleted, Some(Reason::Author));
        assert_eq!(views[0].comment.body, "");
        assert_eq!(views[1].comment.body, "reply (edited)");
        assert_eq!(views[1].comment.parent, "1");
        assert_eq!(views[1].edited_us, 4);
    }

    #[test]
    fn descriptor_is_the_last_valid_one() {
        let d = |title: &str| {
            block(Descriptor {
                name: "c".into(),
                title: title.into(),
                ..Default::default()
            })
        };
        let mut not_a_descriptor_log = vec![block(Post {
            id: "p".into(),
            ..Default::default()
        })];
        let (found, notes) = descriptor(&mut not_a_descriptor_log).unwrap();
        assert!(found.is_none());
        assert!(matches!(notes.skipped[0].reason, Skip::Misplaced("post")));
        let mut log = vec![d("one"), d("two"), Vec::new()];
        let (found, notes) = descriptor(&mut log).unwrap();
        let (index, entry) = found.unwrap();
        assert_eq!(index, 1);
        assert_eq!(as_descriptor(&entry).unwrap().title, "two");
        assert_eq!(notes.skipped_total, 1);
        let (found, _) = descriptor(&mut Vec::<Vec<u8>>::new()).unwrap();
        assert!(found.is_none());
    }

    #[test]
    fn only_a_log_starting_with_a_descriptor_is_a_descriptor_log() {
        let d = block(Descriptor {
            name: "c".into(),
            ..Default::default()
        });
        let p = block(Post {
            id: "p".into(),
            ..Default::default()
        });
        assert!(is_descriptor_log(&mut vec![d.clone(), p.clone()]).unwrap());
        assert!(is_descriptor_log(&mut vec![d.clone(), b"\xff\xff".to_vec()]).unwrap());
        for mut log in [
            vec![p.clone(), d.clone()],
            vec![b"plain text".to_vec(), d],
            Vec::new(),
        ] {
            assert!(!is_descriptor_log(&mut log).unwrap());
        }
    }
}
