//! The community model in one place: which logs a community is made of ([`Part`]), a
//! community as read from its descriptor ([`Community`]), creating one in a store
//! ([`create`], feature `store`), updating its descriptor while keeping the fields this
//! version does not know ([`updated_descriptor`]), and the view of a post that commands print
//! as JSON ([`PostJson`], [`CommentJson`]).
//!
//! The format is `protocol/feeds.md`; the CLI, the daemon and the demo all use this module.

use peerhost_ids::Key;
use serde::Serialize;

use crate::read::{CommentView, PostView};
use crate::time::format_rfc3339;
use crate::{Author, Descriptor, Entry, Kind, Votes};

/// The longest community name: its logs are `NAME`, `NAME.posts`, `NAME.comments` and
/// `NAME.assets`, and a log name has at most 64 bytes.
pub const MAX_NAME: usize = 64 - ".comments".len();

/// Which log of a community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// The descriptor log (its key is the community key).
    Descriptor,
    /// Posts.
    Posts,
    /// Comments.
    Comments,
    /// The web app.
    Assets,
    /// The index (a Hyperbee over the posts and comments logs; `protocol/feeds.md`).
    Index,
}

impl Part {
    /// The logs a descriptor names (every part but the descriptor log).
    pub const NAMED: [Self; 4] = [Self::Posts, Self::Comments, Self::Assets, Self::Index];

    /// The name used in status and messages: `descriptor`, `posts`, `comments`, `assets`,
    /// `index`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Descriptor => "descriptor",
            Self::Posts => "posts",
            Self::Comments => "comments",
            Self::Assets => "assets",
            Self::Index => "index",
        }
    }

    /// The key `d` gives this part (`None` for the descriptor log, or a key that is not 32
    /// bytes).
    pub fn key_in(self, d: &Descriptor) -> Option<Key> {
        let bytes = match self {
            Self::Descriptor => return None,
            Self::Posts => &d.posts,
            Self::Comments => &d.comments,
            Self::Assets => &d.assets,
            Self::Index => &d.index,
        };
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Key)
    }

    /// The local name of this part's log in a community named `name`.
    pub fn log_name(self, name: &str) -> String {
        match self {
            Self::Descriptor => name.to_owned(),
            p => format!("{name}.{}", p.name()),
        }
    }
}

/// A community as read from its descriptor log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Community {
    /// The community key (the descriptor log's).
    pub key: Key,
    /// Its latest descriptor.
    pub descriptor: Descriptor,
}

impl Community {
    /// The community `key` as `descriptor` describes it.
    pub fn new(key: Key, descriptor: Descriptor) -> Self {
        Self { key, descriptor }
    }

    /// The key of one of its logs.
    pub fn part(&self, part: Part) -> Option<Key> {
        if part == Part::Descriptor {
            return Some(self.key);
        }
        part.key_in(&self.descriptor)
    }
}

/// Why a community cannot be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The name is too long or holds a `.`.
    #[error(
        "community name {0:?} must be at most {MAX_NAME} characters without `.` (letters, digits, \
         `_`, `-`)"
    )]
    Name(String),
    /// One of its logs' names is taken.
    #[error("a log named {name} already exists ({key}): choose another community name")]
    Taken {
        /// The log name.
        name: String,
        /// The key of the log that has it (z-base32).
        key: String,
    },
    /// An entry does not encode (a field over its limit).
    #[error(transparent)]
    Entry(#[from] crate::EntryError),
    /// The store failed.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Store(#[from] peerhost_store::Error),
    /// A log failed.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Core(#[from] peerhost_store::CoreError),
    /// The index could not be written.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
}

/// Check a new community's name.
pub fn check_name(name: &str) -> Result<(), CreateError> {
    if name.is_empty() || name.len() > MAX_NAME || name.contains('.') {
        return Err(CreateError::Name(name.to_owned()));
    }
    Ok(())
}

/// A community just created in a store: its four logs, open for writing.
#[cfg(feature = "store")]
#[derive(Debug)]
#[non_exhaustive]
pub struct Created {
    /// The community key.
    pub key: Key,
    /// Its descriptor log (one block: the first descriptor).
    pub descriptor: peerhost_store::Core,
    /// Its posts log (empty).
    pub posts: peerhost_store::Core,
    /// Its comments log (empty).
    pub comments: peerhost_store::Core,
    /// Its assets log (empty).
    pub assets: peerhost_store::Core,
    /// Its index log (the Hyperbee header and the index's position: nothing indexed yet).
    pub index: peerhost_store::Core,
}

/// Create the community `name` in `store`: the logs `NAME.posts`, `NAME.comments`,
/// `NAME.assets`, `NAME.index` and `NAME` (the descriptor log), and its first descriptor,
/// dated `time_us`.
/// Fails before creating anything if a name is taken.
#[cfg(feature = "store")]
pub fn create(
    store: &peerhost_store::Store,
    name: &str,
    title: Option<String>,
    description: String,
    time_us: u64,
) -> Result<Created, CreateError> {
    use peerhost_store::CreateOptions;
    check_name(name)?;
    for part in [
        Part::Descriptor,
        Part::Posts,
        Part::Comments,
        Part::Assets,
        Part::Index,
    ] {
        let log = part.log_name(name);
        if let Some(key) = store.name_key(&log)? {
            return Err(CreateError::Taken {
                name: log,
                key: key.to_z32(),
            });
        }
    }
    let open = |p: Part| store.create(&p.log_name(name), CreateOptions::default());
    let posts = open(Part::Posts)?;
    let comments = open(Part::Comments)?;
    let assets = open(Part::Assets)?;
    let mut index = open(Part::Index)?;
    let (mut p, mut c) = (Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new());
    crate::index::catch_up(&mut index, &mut p, &mut c, |_, _| {})?;
    let mut descriptor = open(Part::Descriptor)?;
    let entry = Entry::from(Descriptor {
        name: name.to_owned(),
        title: title.unwrap_or_else(|| name.to_owned()),
        description,
        posts: posts.key().0.to_vec(),
        comments: comments.key().0.to_vec(),
        assets: assets.key().0.to_vec(),
        index: index.key().0.to_vec(),
        time_us,
        origin: String::new(),
    });
    descriptor.append(&[entry.encode()?])?;
    Ok(Created {
        key: descriptor.key(),
        descriptor,
        posts,
        comments,
        assets,
        index,
    })
}

/// The descriptor entry that follows `current` after `change` (dated `time_us`), keeping
/// every field of `current` this version does not know; `None` if `current` is not a
/// descriptor or `change` changed nothing.
pub fn updated_descriptor(
    current: &Entry,
    time_us: u64,
    change: impl FnOnce(&mut Descriptor) -> bool,
) -> Option<Entry> {
    let mut entry = current.clone();
    let Some(Kind::Descriptor(d)) = entry.kind_mut() else {
        return None;
    };
    if !change(d) {
        return None;
    }
    d.time_us = time_us;
    Some(entry)
}

/// An author as commands print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuthorJson {
    /// The author's name.
    pub name: String,
    /// The name shown.
    #[serde(rename = "displayName")]
    pub display_name: String,
    /// Their profile.
    pub url: String,
}

impl AuthorJson {
    fn of(a: Option<&Author>) -> Option<Self> {
        a.map(|a| Self {
            name: a.name.clone(),
            display_name: a.display_name.clone(),
            url: a.url.clone(),
        })
    }
}

/// Votes as commands print them: up, down and the score (`up - down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VotesJson {
    /// Upvotes.
    pub up: u64,
    /// Downvotes.
    pub down: u64,
    /// `up - down`.
    pub score: i128,
}

impl VotesJson {
    /// The view of `v`.
    pub fn of(v: &Votes) -> Self {
        Self {
            up: v.up,
            down: v.down,
            score: i128::from(v.up) - i128::from(v.down),
        }
    }
}

/// RFC 3339, or nothing for 0 (unknown).
fn time(us: u64) -> Option<String> {
    (us > 0).then(|| format_rfc3339(us))
}

/// A post as commands print it (`peerhost feed --json`, `follow --json`): its latest
/// version, times in RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PostJson {
    /// Its block in the posts log.
    pub index: u64,
    /// Its id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Link.
    pub link: String,
    /// Author.
    pub author: Option<AuthorJson>,
    /// Published.
    pub published: Option<String>,
    /// Last edited (its own update time or a later edit).
    pub updated: Option<String>,
    /// Where it came from (a Lemmy URL for imported posts).
    pub origin: String,
    /// Not safe for work.
    pub nsfw: bool,
    /// Votes, where they were counted (imported posts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub votes: Option<VotesJson>,
    /// Its comments, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<Vec<CommentJson>>,
}

impl PostJson {
    /// The view of `v`, without comments.
    pub fn of(v: &PostView) -> Self {
        let p = &v.post;
        Self {
            index: v.index,
            id: p.id.clone(),
            title: p.title.clone(),
            body: p.body.clone(),
            link: p.link.clone(),
            author: AuthorJson::of(p.author.as_ref()),
            published: time(p.published_us),
            updated: time(p.updated_us.max(v.edited_us)),
            origin: p.origin.clone(),
            nsfw: p.nsfw,
            votes: p.votes.as_ref().map(VotesJson::of),
            comments: None,
        }
    }

    /// With these comments.
    #[must_use]
    pub fn with_comments(mut self, comments: &[&CommentView]) -> Self {
        self.comments = Some(comments.iter().map(|c| CommentJson::of(c)).collect());
        self
    }
}

/// A comment as commands print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CommentJson {
    /// Its block in the comments log.
    pub index: u64,
    /// Its id.
    pub id: String,
    /// The comment it answers (empty: the post).
    pub parent: String,
    /// Body.
    pub body: String,
    /// Author.
    pub author: Option<AuthorJson>,
    /// Published.
    pub published: Option<String>,
    /// Last edited.
    pub updated: Option<String>,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Votes, where they were counted (imported comments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub votes: Option<VotesJson>,
}

impl CommentJson {
    /// The view of `c`.
    pub fn of(c: &CommentView) -> Self {
        Self {
            index: c.index,
            id: c.comment.id.clone(),
            parent: c.comment.parent.clone(),
            body: c.comment.body.clone(),
            author: AuthorJson::of(c.comment.author.as_ref()),
            published: time(c.comment.published_us),
            updated: time(c.comment.updated_us.max(c.edited_us)),
            deleted: c.deleted.is_some(),
            votes: c.comment.votes.as_ref().map(VotesJson::of),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Post;

    #[test]
    fn names_are_checked() {
        assert!(check_name("rust").is_ok());
        assert!(check_name("a.b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME)).is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
        assert_eq!(Part::Comments.log_name("rust"), "rust.comments");
        assert_eq!(Part::Comments.log_name("rust").len(), 4 + ".comments".len());
    }

    #[test]
    fn an_update_keeps_the_descriptor_and_dates_it() {
        let d = Descriptor {
            name: "rust".into(),
            title: "Rust".into(),
            posts: vec![1; 32],
            ..Descriptor::default()
        };
        let e = Entry::from(d);
        assert!(updated_descriptor(&e, 5, |_| false).is_none());
        let u = updated_descriptor(&e, 5, |d| {
            d.title = "Rust!".into();
            true
        })
        .unwrap();
        let Some(Kind::Descriptor(nd)) = u.kind() else {
            panic!("not a descriptor")
        };
        assert_eq!((nd.title.as_str(), nd.time_us), ("Rust!", 5));
        assert_eq!(Part::Posts.key_in(nd), Some(Key([1; 32])));
        assert_eq!(Part::Comments.key_in(nd), None);
        let not = Entry::from(Post::default());
        assert!(updated_descriptor(&not, 5, |_| true).is_none());
    }

    #[test]
    fn a_post_view_serializes_as_commands_print_it() {
        let v = PostView {
            index: 3,
            post: Post {
                id: "ph:1".into(),
                title: "T".into(),
                published_us: 1_000_000,
                ..Post::default()
            },
            edited_us: 0,
        };
        let j = serde_json::to_value(PostJson::of(&v)).unwrap();
        assert_eq!(j["index"], 3);
        assert_eq!(j["published"], format_rfc3339(1_000_000));
        assert_eq!(j["updated"], serde_json::Value::Null);
        assert_eq!(j["author"], serde_json::Value::Null);
        assert!(j.get("comments").is_none());
    }
}
