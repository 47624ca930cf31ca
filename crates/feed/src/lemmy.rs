//! Lemmy 0.19 (API v3) JSON → entries: the responses of `GET /api/v3/post/list`,
//! `GET /api/v3/comment/list` and `GET /api/v3/community`, as the instance sends them.
//!
//! The mapping (`protocol/feeds.md`, "Lemmy import"):
//!
//! | Lemmy | entry |
//! |---|---|
//! | `post.id` | `Post.id` = `lemmy:<instance>/post/<id>` |
//! | `creator.name`, `.display_name`, `.actor_id` | `Author.name`, `.display_name`, `.url` |
//! | `post.name` | `Post.title` |
//! | `post.body` (markdown) | `Post.body` |
//! | `post.url` | `Post.link` |
//! | `post.published`, `post.updated` | `Post.published_us`, `Post.updated_us` |
//! | `post.ap_id` | `Post.origin` |
//! | `post.nsfw` | `Post.nsfw` |
//! | `comment.id`, `comment.post_id` | `Comment.id` = `lemmy:<instance>/comment/<id>`, `Comment.post` |
//! | `comment.path` `0.….<parent>.<id>` | `Comment.parent` (none for `0.<id>`) |
//! | `comment.content` | `Comment.body` |
//! | `removed` / `deleted` | a `Delete` (reason moderator / author) |
//! | `community.name`, `.title`, `.description`, `.actor_id` | `Descriptor.name`, `.title`, `.description`, `.origin` |
//!
//! Ids use the numbers of the instance the JSON comes from (`<instance>` is its host), because
//! a comment names its post and its parent by those numbers; the global ActivityPub id of each
//! item is kept in `origin`. Options left out of the JSON are empty fields; fields added during
//! 0.19.x and every field not in the table are ignored; an item that lacks a field the table
//! needs is skipped with a warning, the others are imported.

use serde::Deserialize;
use serde_json::Value;

use crate::entry::{Author, Comment, Descriptor, Post, Reason, Votes};
use crate::import::Item;
use crate::time::parse_rfc3339;

/// The JSON is not a Lemmy response this importer knows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LemmyError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not one of the responses we import.
    #[error(
        "not a Lemmy API response this imports (expected the JSON of /api/v3/post/list, \
         /api/v3/comment/list or /api/v3/community)"
    )]
    UnknownShape,
}

#[derive(Debug, Deserialize)]
struct LPostView {
    post: LPost,
    creator: LPerson,
    #[serde(default)]
    counts: Option<LCounts>,
}

/// The vote part of Lemmy's `PostAggregates` / `CommentAggregates` (`score` is
/// `upvotes - downvotes` there, so it is not kept).
#[derive(Debug, Deserialize)]
struct LCounts {
    upvotes: i64,
    downvotes: i64,
}

impl LCounts {
    fn votes(&self) -> Votes {
        // Lemmy's counts are i64 and never negative; a negative one is read as 0.
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Votes {
            up: count(self.upvotes),
            down: count(self.downvotes),
        }
    }
}

#[derive(Debug, Deserialize)]
struct LPost {
    id: i64,
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    removed: bool,
    published: String,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    nsfw: bool,
    ap_id: String,
    #[serde(default)]
    local: bool,
}

#[derive(Debug, Deserialize)]
struct LPerson {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    actor_id: String,
}

#[derive(Debug, Deserialize)]
struct LCommentView {
    comment: LComment,
    creator: LPerson,
    #[serde(default)]
    counts: Option<LCounts>,
}

#[derive(Debug, Deserialize)]
struct LComment {
    id: i64,
    post_id: i64,
    content: String,
    #[serde(default)]
    removed: bool,
    published: String,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    deleted: bool,
    ap_id: String,
    #[serde(default)]
    local: bool,
    path: String,
}

#[derive(Debug, Deserialize)]
struct LCommunityResponse {
    community_view: LCommunityView,
    #[serde(default)]
    site: Option<LSite>,
}

#[derive(Debug, Deserialize)]
struct LCommunityView {
    community: LCommunity,
}

#[derive(Debug, Deserialize)]
struct LCommunity {
    name: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    actor_id: String,
    #[serde(default)]
    local: bool,
}

#[derive(Debug, Deserialize)]
struct LSite {
    actor_id: String,
}

#[derive(Debug)]
enum Inner {
    Posts(Vec<Result<LPostView, String>>),
    Comments(Vec<Result<LCommentView, String>>),
    Community(Box<LCommunityResponse>),
}

/// A parsed Lemmy API response.
#[derive(Debug)]
pub struct Document {
    inner: Inner,
}

/// A community as its Lemmy instance describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommunityInfo {
    /// `community.name`.
    pub name: String,
    /// `community.title`.
    pub title: String,
    /// `community.description` (markdown), empty if none.
    pub description: String,
    /// `community.actor_id`.
    pub origin: String,
}

impl CommunityInfo {
    /// Bring `d` in line; whether anything changed (then append it as a new descriptor).
    pub fn apply(&self, d: &mut Descriptor) -> bool {
        let mut changed = false;
        for (field, value) in [
            (&mut d.name, &self.name),
            (&mut d.title, &self.title),
            (&mut d.description, &self.description),
            (&mut d.origin, &self.origin),
        ] {
            if field != value {
                field.clone_from(value);
                changed = true;
            }
        }
        changed
    }
}

/// What a [`Document`] maps to.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Batch {
    /// Posts, in document order.
    pub posts: Vec<Item>,
    /// Comments, in document order.
    pub comments: Vec<Item>,
    /// The community, for a `/api/v3/community` response.
    pub community: Option<CommunityInfo>,
    /// Items skipped, one line each.
    pub warnings: Vec<String>,
}

fn items<T: serde::de::DeserializeOwned>(list: Vec<Value>) -> Vec<Result<T, String>> {
    list.into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        .collect()
}

impl Document {
    /// Parse the JSON of a `post/list`, `comment/list` or `community` response. One item
    /// that does not parse does not fail the document: [`Document::batch`] reports it.
    pub fn parse(json: &[u8]) -> Result<Self, LemmyError> {
        let mut v: Value = serde_json::from_slice(json)?;
        let Some(obj) = v.as_object_mut() else {
            return Err(LemmyError::UnknownShape);
        };
        let inner = if let Some(Value::Array(list)) = obj.remove("posts") {
            Inner::Posts(items(list))
        } else if let Some(Value::Array(list)) = obj.remove("comments") {
            Inner::Comments(items(list))
        } else if obj.contains_key("community_view") {
            Inner::Community(Box::new(serde_json::from_value(v)?))
        } else {
            return Err(LemmyError::UnknownShape);
        };
        Ok(Self { inner })
    }

    /// `"posts"`, `"comments"` or `"community"`.
    pub fn what(&self) -> &'static str {
        match self.inner {
            Inner::Posts(_) => "posts",
            Inner::Comments(_) => "comments",
            Inner::Community(_) => "community",
        }
    }

    /// The host of the instance that sent this, as far as the document says: that of a local
    /// item's `ap_id` (a local community's `actor_id`, or the site's `actor_id`).
    pub fn instance(&self) -> Option<String> {
        match &self.inner {
            Inner::Posts(list) => list
                .iter()
                .flatten()
                .find(|p| p.post.local)
                .and_then(|p| host(&p.post.ap_id)),
            Inner::Comments(list) => list
                .iter()
                .flatten()
                .find(|c| c.comment.local)
                .and_then(|c| host(&c.comment.ap_id)),
            Inner::Community(r) => r.site.as_ref().and_then(|s| host(&s.actor_id)).or_else(|| {
                let c = &r.community_view.community;
                c.local.then(|| host(&c.actor_id)).flatten()
            }),
        }
    }

    /// Map to entries, ids under `instance` (a host such as `lemmy.example`).
    pub fn batch(&self, instance: &str) -> Batch {
        let mut batch = Batch::default();
        match &self.inner {
            Inner::Posts(list) => {
                for (i, p) in list.iter().enumerate() {
                    match p
                        .as_ref()
                        .map_err(String::clone)
                        .and_then(|p| map_post(p, instance))
                    {
                        Ok(item) => batch.posts.push(item),
                        Err(e) => batch.warnings.push(format!("post #{i} skipped: {e}")),
                    }
                }
            }
            Inner::Comments(list) => {
                for (i, c) in list.iter().enumerate() {
                    match c
                        .as_ref()
                        .map_err(String::clone)
                        .and_then(|c| map_comment(c, instance))
                    {
                        Ok(item) => batch.comments.push(item),
                        Err(e) => batch.warnings.push(format!("comment #{i} skipped: {e}")),
                    }
                }
            }
            Inner::Community(r) => {
                let c = &r.community_view.community;
                batch.community = Some(CommunityInfo {
                    name: c.name.clone(),
                    title: c.title.clone(),
                    description: c.description.clone().unwrap_or_default(),
                    origin: c.actor_id.clone(),
                });
            }
        }
        batch
    }
}

/// `lemmy:<instance>/post/<id>`.
pub fn post_id(instance: &str, id: i64) -> String {
    format!("lemmy:{instance}/post/{id}")
}

/// `lemmy:<instance>/comment/<id>`.
pub fn comment_id(instance: &str, id: i64) -> String {
    format!("lemmy:{instance}/comment/{id}")
}

/// The host (and port) of an `http(s)://` URL, lower-cased.
pub fn host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn time(field: &str, s: &str) -> Result<u64, String> {
    parse_rfc3339(s).ok_or_else(|| format!("{field} {s:?} is not an RFC 3339 time"))
}

fn author(p: &LPerson) -> Author {
    Author {
        name: p.name.clone(),
        display_name: p.display_name.clone().unwrap_or_default(),
        url: p.actor_id.clone(),
    }
}

fn gone(removed: bool, deleted: bool) -> Option<Reason> {
    if removed {
        Some(Reason::Moderator)
    } else if deleted {
        Some(Reason::Author)
    } else {
        None
    }
}

fn map_post(v: &LPostView, instance: &str) -> Result<Item, String> {
    let p = &v.post;
    let post = Post {
        id: post_id(instance, p.id),
        author: Some(author(&v.creator)),
        title: p.name.clone(),
        body: p.body.clone().unwrap_or_default(),
        link: p.url.clone().unwrap_or_default(),
        published_us: time("published", &p.published)?,
        updated_us: p.updated.as_deref().map_or(Ok(0), |u| time("updated", u))?,
        origin: p.ap_id.clone(),
        nsfw: p.nsfw,
        votes: v.counts.as_ref().map(LCounts::votes),
    };
    Ok(Item::post(post, gone(p.removed, p.deleted)))
}

fn map_comment(v: &LCommentView, instance: &str) -> Result<Item, String> {
    let c = &v.comment;
    let segments: Vec<&str> = c.path.split('.').collect();
    let own = c.id.to_string();
    if segments.len() < 2 || segments[0] != "0" || segments.last() != Some(&own.as_str()) {
        return Err(format!(
            "comment {}: path {:?} is not \"0.<ancestors>.{own}\"",
            c.id, c.path
        ));
    }
    let parent = match segments.len() {
        2 => String::new(),
        n => {
            let p: i64 = segments[n - 2]
                .parse()
                .map_err(|_| format!("comment {}: path {:?} has a bad parent", c.id, c.path))?;
            comment_id(instance, p)
        }
    };
    let comment = Comment {
        id: comment_id(instance, c.id),
        post: post_id(instance, c.post_id),
        parent,
        author: Some(author(&v.creator)),
        body: c.content.clone(),
        published_us: time("published", &c.published)?,
        updated_us: c.updated.as_deref().map_or(Ok(0), |u| time("updated", u))?,
        origin: c.ap_id.clone(),
        votes: v.counts.as_ref().map(LCounts::votes),
    };
    Ok(Item::comment(comment, gone(c.removed, c.deleted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            host("https://Example-Lemmy.test/post/1").as_deref(),
            Some("example-lemmy.test")
        );
        assert_eq!(
            host("https://example-lemmy.test/").as_deref(),
            Some("example-lemmy.test")
        );
        assert_eq!(host("http://a:8536?x").as_deref(), Some("a:8536"));
        assert_eq!(host("https://u@h/x").as_deref(), Some("h"));
        assert_eq!(host("ftp://h/x"), None);
        assert_eq!(host("https:///x"), None);
    }

    #[test]
    fn shapes() {
        assert!(matches!(
            Document::parse(b"[]"),
            Err(LemmyError::UnknownShape)
        ));
        assert!(matches!(
            Document::parse(b"{\"x\":1}"),
            Err(LemmyError::UnknownShape)
        ));
        assert!(matches!(Document::parse(b"{"), Err(LemmyError::Json(_))));
        let d = Document::parse(br#"{"posts":[{"post":{}}]}"#).unwrap();
        assert_eq!(d.what(), "posts");
        assert_eq!(d.instance(), None);
        let b = d.batch("h");
        assert!(b.posts.is_empty());
        assert_eq!(b.warnings.len(), 1);
        assert!(
            b.warnings[0].starts_with("post #0 skipped: missing field"),
            "{}",
            b.warnings[0]
        );
    }

    #[test]
    fn bad_paths_are_skipped() {
        let json = |path: &str| {
            format!(
                r#"{{"comments":[{{"comment":{{"id":5,"post_id":1,"content":"x","published":"2026-01-01T00:00:00Z","ap_id":"https://h/comment/5","path":"{path}"}},"creator":{{"name":"n","actor_id":"https://h/u/n"}}}}]}}"#
            )
        };
        for (path, ok) in [
            ("0.5", true),
            ("0.4.5", true),
            ("5", false),
            ("1.5", false),
            ("0.4", false),
            ("0.x.5", false),
        ] {
            let b = Document::parse(json(path).as_bytes()).unwrap().batch("h");
            assert_eq!(b.comments.len(), usize::from(ok), "{path}");
        }
    }
}
