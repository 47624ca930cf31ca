//! Idempotent import: given posts or comments as their source has them now, the entries that
//! bring a log up to date — new items, edits of changed ones, deletions, restorations — and
//! nothing for items already there unchanged.
//!
//! What the log already holds is learned by reading it ([`Seen::scan`]): the log is the only
//! record, so an import that stopped half-way (or a log copied to another machine) needs no
//! side file to be repaired. Memory is about 70 bytes per id (a 16-byte hash of the id and
//! 8-byte digests of its fields and votes), not the content.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::entry::{Comment, Delete, Edit, Entry, Kind, Post, Reason, Votes};
use crate::read::{Blocks, Notes, ReadError, entry_at};

type IdHash = [u8; 16];
type FieldDigest = [u8; 8];

fn id_hash(id: &str) -> IdHash {
    let d = Sha256::digest(id.as_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn digest(s: &str) -> FieldDigest {
    let d = Sha256::digest(s.as_bytes());
    let mut out = [0; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// What the log says about one id: its fields' digests (title, body, link, votes) and whether
/// it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    fields: [FieldDigest; 4],
    deleted: bool,
}

const TITLE: usize = 0;
const BODY: usize = 1;
const LINK: usize = 2;
const VOTES: usize = 3;

/// Votes as a digestible string ("" when absent: the source did not count them).
fn votes_text(v: Option<&Votes>) -> String {
    v.map_or_else(String::new, |v| format!("{} {}", v.up, v.down))
}

fn post_fields(p: &Post) -> [FieldDigest; 4] {
    [
        digest(&p.title),
        digest(&p.body),
        digest(&p.link),
        digest(&votes_text(p.votes.as_ref())),
    ]
}

fn comment_fields(c: &Comment) -> [FieldDigest; 4] {
    [
        digest(""),
        digest(&c.body),
        digest(""),
        digest(&votes_text(c.votes.as_ref())),
    ]
}

/// The ids a posts or comments log holds, and the state of each.
#[derive(Debug, Default)]
pub struct Seen {
    ids: HashMap<IdHash, State>,
}

impl Seen {
    /// Read the whole log.
    pub fn scan<B: Blocks>(log: &mut B) -> Result<(Self, Notes), ReadError> {
        let mut seen = Self::default();
        let mut notes = Notes::default();
        for index in 0..log.length() {
            if let Some(kind) = entry_at(log, index, &mut notes)? {
                seen.apply(&kind);
            }
        }
        Ok((seen, notes))
    }

    /// Ids known (deleted ones included).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is known.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` is known, and if so whether it is deleted.
    pub fn deleted(&self, id: &str) -> Option<bool> {
        self.ids.get(&id_hash(id)).map(|s| s.deleted)
    }

    /// Take an entry of the log into account (the same rules as the readers: a Post or Comment
    /// sets the state, an Edit changes a live one, a Delete marks one deleted).
    pub fn apply(&mut self, kind: &Kind) {
        match kind {
            Kind::Post(p) => {
                self.ids.insert(
                    id_hash(&p.id),
                    State {
                        fields: post_fields(p),
                        deleted: false,
                    },
                );
            }
            Kind::Comment(c) => {
                self.ids.insert(
                    id_hash(&c.id),
                    State {
                        fields: comment_fields(c),
                        deleted: false,
                    },
                );
            }
            Kind::Edit(e) => {
                if let Some(s) = self.ids.get_mut(&id_hash(&e.target)) {
                    if !s.deleted {
                        for (i, v) in [(TITLE, &e.title), (BODY, &e.body), (LINK, &e.link)] {
                            if let Some(v) = v {
                                s.fields[i] = digest(v);
                            }
                        }
                        if e.votes.is_some() {
                            s.fields[VOTES] = digest(&votes_text(e.votes.as_ref()));
                        }
                    }
                }
            }
            Kind::Delete(d) => {
                self.ids
                    .entry(id_hash(&d.target))
                    .and_modify(|s| s.deleted = true)
                    .or_insert(State {
                        fields: [digest(""); 4],
                        deleted: true,
                    });
            }
            Kind::Descriptor(_) | Kind::AssetIndex(_) | Kind::Chunk(_) => {}
        }
    }
}

/// A post or comment as its source has it now.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Item {
    /// A [`Kind::Post`] or [`Kind::Comment`].
    pub kind: Kind,
    /// Deleted or removed at the source, and why.
    pub gone: Option<Reason>,
}

impl Item {
    /// A post.
    pub fn post(post: Post, gone: Option<Reason>) -> Self {
        Self {
            kind: Kind::Post(post),
            gone,
        }
    }

    /// A comment.
    pub fn comment(comment: Comment, gone: Option<Reason>) -> Self {
        Self {
            kind: Kind::Comment(comment),
            gone,
        }
    }

    fn id(&self) -> &str {
        match &self.kind {
            Kind::Post(p) => &p.id,
            Kind::Comment(c) => &c.id,
            _ => "",
        }
    }

    fn published_us(&self) -> u64 {
        match &self.kind {
            Kind::Post(p) => p.published_us,
            Kind::Comment(c) => c.published_us,
            _ => 0,
        }
    }

    fn updated_us(&self) -> u64 {
        match &self.kind {
            Kind::Post(p) => p.updated_us,
            Kind::Comment(c) => c.updated_us,
            _ => 0,
        }
    }
}

/// What [`plan`] decided, by item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// New items (a Post or Comment entry).
    pub new: u64,
    /// Changed items (an Edit).
    pub edited: u64,
    /// Items gone at the source (a Delete; for a comment never seen, a placeholder Comment
    /// without content first, so replies keep their place).
    pub deleted: u64,
    /// Items back at the source after a deletion (a Post or Comment again).
    pub restored: u64,
    /// Items already in the log as they are.
    pub unchanged: u64,
}

/// The entries to append so the log matches `items`, and `seen` updated with them.
///
/// New items are appended oldest first (by published time, ties in input order), so the log
/// reads in time order and "newest = last"; edits, deletions and restorations follow. `now_us`
/// is the time of a deletion or edit whose time the source does not say.
pub fn plan(seen: &mut Seen, items: Vec<Item>, now_us: u64) -> (Vec<Entry>, Stats) {
    let mut stats = Stats::default();
    let mut fresh: Vec<(u64, Vec<Kind>)> = Vec::new();
    let mut changes: Vec<(u64, Kind)> = Vec::new();
    let when = |item: &Item| match item.updated_us() {
        0 => now_us,
        t => t,
    };
    for item in items {
        let id = item.id().to_owned();
        let state = seen.ids.get(&id_hash(&id)).copied();
        let mut kinds = Vec::new();
        let mut change = None;
        match (state, item.gone) {
            (None, None) => {
                stats.new += 1;
                kinds.push(item.kind.clone());
            }
            (None, Some(reason)) => {
                stats.deleted += 1;
                if let Kind::Comment(c) = &item.kind {
                    kinds.push(Kind::Comment(Comment {
                        id: c.id.clone(),
                        post: c.post.clone(),
                        parent: c.parent.clone(),
                        published_us: c.published_us,
                        ..Default::default()
                    }));
                }
                kinds.push(delete(&id, reason, when(&item)));
            }
            (Some(s), None) if s.deleted => {
                stats.restored += 1;
                change = Some(item.kind.clone());
            }
            (Some(s), Some(reason)) if !s.deleted => {
                stats.deleted += 1;
                change = Some(delete(&id, reason, when(&item)));
            }
            (Some(_), Some(_)) => stats.unchanged += 1,
            (Some(s), None) => {
                let (now, values, votes) = match &item.kind {
                    Kind::Post(p) => (post_fields(p), [&*p.title, &p.body, &p.link], p.votes),
                    Kind::Comment(c) => (comment_fields(c), ["", &c.body, ""], c.votes),
                    _ => continue,
                };
                let pick = |i: usize| (now[i] != s.fields[i]).then(|| values[i].to_owned());
                // Votes the source no longer counts keep the last count: an edit cannot
                // remove them.
                let votes = votes.filter(|_| now[VOTES] != s.fields[VOTES]);
                let content = [pick(TITLE), pick(BODY), pick(LINK)];
                let edit = Edit {
                    target: id.clone(),
                    // Only votes changed: the source does not date that; now.
                    time_us: if content.iter().all(Option::is_none) {
                        now_us
                    } else {
                        when(&item)
                    },
                    title: content[0].clone(),
                    body: content[1].clone(),
                    link: content[2].clone(),
                    votes,
                };
                if edit.title.is_none()
                    && edit.body.is_none()
                    && edit.link.is_none()
                    && edit.votes.is_none()
                {
                    stats.unchanged += 1;
                } else {
                    stats.edited += 1;
                    change = Some(Kind::Edit(edit));
                }
            }
        }
        for k in &kinds {
            seen.apply(k);
        }
        if let Some(k) = &change {
            seen.apply(k);
        }
        if !kinds.is_empty() {
            fresh.push((item.published_us(), kinds));
        }
        if let Some(k) = change {
            changes.push((when(&item), k));
        }
    }
    // Stable sorts: ties keep the input order.
    fresh.sort_by_key(|(t, _)| *t);
    changes.sort_by_key(|(t, _)| *t);
    let entries = fresh
        .into_iter()
        .flat_map(|(_, kinds)| kinds)
        .chain(changes.into_iter().map(|(_, k)| k))
        .map(Entry::new)
        .collect();
    (entries, stats)
}

fn delete(target: &str, reason: Reason, time_us: u64) -> Kind {
    Kind::Delete(Delete {
        target: target.to_owned(),
        time_us,
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{comments, latest_posts};

    fn post(id: &str, title: &str, t: u64) -> Post {
        Post {
            id: id.into(),
            title: title.into(),
            published_us: t,
            ..Default::default()
        }
    }

    fn append(log: &mut Vec<Vec<u8>>, entries: &[Entry]) {
        log.extend(entries.iter().map(|e| e.encode().unwrap()));
    }

    #[test]
    fn posts_new_unchanged_edited_deleted_restored() {
        let mut log = Vec::new();
        let items = vec![
            Item::post(post("b", "B", 2), None),
            Item::post(post("a", "A", 1), None),
            Item::post(post("gone", "G", 3), Some(Reason::Moderator)),
        ];
        let (mut seen, _) = Seen::scan(&mut log).unwrap();
        let (entries, stats) = plan(&mut seen, items.clone(), 100);
        assert_eq!((stats.new, stats.deleted), (2, 1));
        let kinds: Vec<&str> = entries.iter().map(Entry::kind_name).collect();
        assert_eq!(kinds, ["post", "post", "delete"]);
        append(&mut log, &entries);
        let (posts, _) = latest_posts(&mut log, 10).unwrap();
        let ids: Vec<&str> = posts.iter().map(|p| p.post.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "oldest appended first");

        // The same again: nothing to do, whether `seen` is kept or read again.
        let (entries, stats) = plan(&mut seen, items.clone(), 100);
        assert!(entries.is_empty());
        assert_eq!(stats.unchanged, 3);
        let (mut seen, _) = Seen::scan(&mut log).unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.deleted("gone"), Some(true));
        assert!(plan(&mut seen, items, 100).0.is_empty());

        // a edited, b deleted, gone restored.
        let mut a = post("a", "A2", 1);
        a.updated_us = 50;
        let items = vec![
            Item::post(a, None),
            Item::post(post("b", "B", 2), Some(Reason::Author)),
            Item::post(post("gone", "G", 3), None),
        ];
        let (entries, stats) = plan(&mut seen, items.clone(), 100);
        assert_eq!((stats.edited, stats.deleted, stats.restored), (1, 1, 1));
        match entries[0].kind() {
            Some(Kind::Edit(e)) => {
                assert_eq!(e.target, "a");
                assert_eq!(e.title.as_deref(), Some("A2"));
                assert_eq!((e.body.as_ref(), e.link.as_ref()), (None, None));
                assert_eq!(e.time_us, 50);
            }
            other => panic!("{other:?}"),
        }
        append(&mut log, &entries);
        let (posts, _) = latest_posts(&mut log, 10).unwrap();
        let titles: Vec<&str> = posts.iter().map(|p| p.post.title.as_str()).collect();
        assert_eq!(titles, ["G", "A2"]);
        let (mut seen, _) = Seen::scan(&mut log).unwrap();
        assert!(plan(&mut seen, items, 100).0.is_empty());
    }

    #[test]
    fn a_deleted_comment_never_seen_leaves_a_placeholder() {
        let mut log = Vec::new();
        let c = |id: &str, parent: &str, body: &str, t: u64| Comment {
            id: id.into(),
            post: "p".into(),
            parent: parent.into(),
            body: body.into(),
            published_us: t,
            ..Default::default()
        };
        let items = vec![
            Item::comment(c("2", "1", "reply", 2), None),
            Item::comment(c("1", "", "", 1), Some(Reason::Author)),
        ];
        let (mut seen, _) = Seen::scan(&mut log).unwrap();
        let (entries, _) = plan(&mut seen, items, 7);
        let kinds: Vec<&str> = entries.iter().map(Entry::kind_name).collect();
        assert_eq!(kinds, ["comment", "delete", "comment"]);
        append(&mut log, &entries);
        let (views, _) = comments(&mut log).unwrap();
        assert_eq!(views[0].deleted, Some(Reason::Author));
        assert_eq!(views[1].comment.parent, "1");
    }

    #[test]
    fn votes_come_with_the_item_and_change_by_an_edit_of_only_votes() {
        let mut log = Vec::new();
        let voted = |title: &str, up, down| Post {
            votes: Some(Votes { up, down }),
            ..post("v", title, 1)
        };
        let (mut seen, _) = Seen::scan(&mut log).unwrap();
        let (entries, _) = plan(&mut seen, vec![Item::post(voted("V", 54, 8), None)], 10);
        append(&mut log, &entries);
        let (posts, _) = latest_posts(&mut log, 10).unwrap();
        assert_eq!(posts[0].post.votes, Some(Votes { up: 54, down: 8 }));

        // The same counts: nothing; new counts: an Edit with only them, dated now, which is
        // not an edit of the content.
        let (mut seen, _) = Seen::scan(&mut log).unwrap();
        assert!(
            plan(&mut seen, vec![Item::post(voted("V", 54, 8), None)], 20)
                .0
                .is_empty()
        );
        let (entries, stats) = plan(&mut seen, vec![Item::post(voted("V", 60, 9), None)], 30);
        assert_eq!(stats.edited, 1);
        match entries[0].kind() {
            Some(Kind::Edit(e)) => {
                assert_eq!(e.votes, Some(Votes { up: 60, down: 9 }));
                assert_eq!(
                    (e.title.as_ref(), e.body.as_ref(), e.link.as_ref()),
                    (None, None, None)
                );
                assert_eq!(e.time_us, 30);
            }
            other => panic!("{other:?}"),
        }
        append(&mut log, &entries);
        let (posts, _) = latest_posts(&mut log, 10).unwrap();
        assert_eq!(posts[0].post.votes, Some(Votes { up: 60, down: 9 }));
        assert_eq!(
            posts[0].edited_us, 0,
            "new counts are not an edit of the content"
        );

        // Read again from the log, the counts are known: nothing to do. A source that stops
        // counting keeps the last counts (an edit cannot remove them).
        let (mut seen, _) = Seen::scan(&mut log).unwrap();
        assert!(
            plan(&mut seen, vec![Item::post(voted("V", 60, 9), None)], 40)
                .0
                .is_empty()
        );
        assert!(
            plan(&mut seen, vec![Item::post(post("v", "V", 1), None)], 40)
                .0
                .is_empty()
        );

        // A comment's counts, through the comments reader.
        let mut clog = Vec::new();
        let c = Comment {
            id: "c".into(),
            post: "v".into(),
            body: "hi".into(),
            votes: Some(Votes { up: 3, down: 1 }),
            ..Default::default()
        };
        let (mut seen, _) = Seen::scan(&mut clog).unwrap();
        let (entries, _) = plan(&mut seen, vec![Item::comment(c.clone(), None)], 5);
        append(&mut clog, &entries);
        let c2 = Comment {
            votes: Some(Votes { up: 4, down: 1 }),
            ..c
        };
        let (entries, _) = plan(&mut seen, vec![Item::comment(c2, None)], 6);
        append(&mut clog, &entries);
        let (views, _) = comments(&mut clog).unwrap();
        assert_eq!(views[0].comment.votes, Some(Votes { up: 4, down: 1 }));
        assert_eq!(
            (views[0].comment.body.as_str(), views[0].edited_us),
            ("hi", 0)
        );
    }
}
