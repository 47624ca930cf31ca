//! The one printer of a community's posts, shared by `peerhost feed` and `peerhost follow` of a
//! community: text for a person, every string a stranger wrote escaped through [`crate::term`],
//! or JSON for programs.

use std::collections::BTreeMap;
use std::io::Write;

use peerhost_feed::community::PostJson;
use peerhost_feed::read::{CommentView, PostView};
use peerhost_feed::time::format_rfc3339;
use peerhost_feed::{Author, Descriptor};
use peerhost_ids::Key;

use crate::term::safe;

/// Comments by the id of the post they belong to.
pub(crate) type CommentsByPost<'a> = BTreeMap<&'a str, Vec<&'a CommentView>>;

/// How a post's or comment's author is shown: `display name (name)`, or the community's name
/// for one written by the community itself.
pub(crate) fn author_name(a: Option<&Author>, community: &str) -> String {
    match a {
        Some(a) if !a.display_name.is_empty() => format!("{} ({})", a.display_name, a.name),
        Some(a) => a.name.clone(),
        None => community.to_owned(),
    }
}

/// Print `posts` of the community `key` described by `d`: its title, then per post the time,
/// title, author, link, whether it was edited, its first three non-empty lines (at most 100
/// characters each) and, with `comments`, how many it has. As JSON: an array of [`PostJson`]
/// (with `comments` nested when given).
pub(crate) fn print_posts(
    out: &mut impl Write,
    d: &Descriptor,
    key: &Key,
    posts: &[PostView],
    comments: Option<&CommentsByPost<'_>>,
    json: bool,
) -> anyhow::Result<()> {
    let comments_of = |p: &PostView| {
        comments
            .and_then(|c| c.get(p.post.id.as_str()))
            .map_or(&[][..], |v| &v[..])
    };
    if json {
        let v: Vec<PostJson> = posts
            .iter()
            .map(|p| match comments {
                Some(_) => PostJson::of(p).with_comments(comments_of(p)),
                None => PostJson::of(p),
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(out, "{} ({})", safe(&d.title), key.to_z32())?;
    if posts.is_empty() {
        writeln!(out, "no posts yet")?;
    }
    for v in posts {
        let p = &v.post;
        writeln!(out)?;
        writeln!(
            out,
            "{}  {}",
            format_rfc3339(p.published_us),
            safe(&p.title)
        )?;
        let mut meta = match &p.votes {
            Some(votes) => {
                let score = i128::from(votes.up) - i128::from(votes.down);
                let s = if score.abs() == 1 { "" } else { "s" };
                format!("  {score} point{s} · by ")
            }
            None => "  by ".to_owned(),
        };
        meta.push_str(&format!(
            "{}",
            safe(&author_name(p.author.as_ref(), &d.name))
        ));
        if !p.link.is_empty() {
            meta.push_str(&format!(" · {}", safe(&p.link)));
        }
        if v.edited_us > 0 || p.updated_us > 0 {
            meta.push_str(" · edited");
        }
        writeln!(out, "{meta}")?;
        for line in p.body.lines().filter(|l| !l.trim().is_empty()).take(3) {
            let line: String = line.chars().take(100).collect();
            writeln!(out, "  | {}", safe(&line))?;
        }
        if comments.is_some() {
            writeln!(out, "  {} comments", comments_of(v).len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerhost_feed::{Edit, Entry, Post, read};

    /// The posts `entries` make, read back as `feed` reads them (newest first).
    fn views(entries: Vec<Entry>) -> Vec<PostView> {
        let mut log: Vec<Vec<u8>> = entries.iter().map(|e| e.encode().unwrap()).collect();
        read::latest_posts(&mut log, 10).unwrap().0
    }

    fn post(title: &str, body: &str, author: Option<Author>) -> Entry {
        Post {
            id: "p1".into(),
            title: title.into(),
            body: body.into(),
            author,
            published_us: 1_767_225_600_000_000,
            ..Post::default()
        }
        .into()
    }

    fn text(d: &Descriptor, posts: &[PostView], comments: Option<&CommentsByPost<'_>>) -> String {
        let mut out = Vec::new();
        print_posts(&mut out, d, &Key([7; 32]), posts, comments, false).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strangers_text_is_escaped_everywhere_it_is_printed() {
        let d = Descriptor {
            name: "c\u{1b}[2J".into(),
            title: "T\u{202e}".into(),
            ..Descriptor::default()
        };
        let mut p = Post {
            id: "p1".into(),
            title: "a\u{1b}]52;c;x\u{7}".into(),
            body: "o\rne\r\n\n two\u{9b}\nthree\nfour".into(),
            link: "https://e.org/\u{1b}".into(),
            ..Post::default()
        };
        p.published_us = 1;
        let t = text(&d, &views(vec![p.into()]), None);
        assert!(!t.chars().any(|c| c != '\n' && c.is_control()), "{t:?}");
        assert!(!t.contains('\u{202e}'), "{t:?}");
        assert!(t.starts_with("T\\u{202e} ("), "{t}");
        assert!(t.contains("a\\u{1b}]52;c;x\\u{7}\n"), "{t}");
        assert!(
            t.contains("  by c\\u{1b}[2J · https://e.org/\\u{1b}\n"),
            "{t}"
        );
        // Three non-empty lines of the body, no fourth; no comment count unless asked.
        assert!(
            t.contains("  | o\\u{d}ne\n  |  two\\u{9b}\n  | three\n"),
            "{t}"
        );
        assert!(!t.contains("four") && !t.contains("comments"), "{t}");
    }

    #[test]
    fn authors_edits_and_comment_counts() {
        let d = Descriptor {
            name: "c".into(),
            title: "C".into(),
            ..Descriptor::default()
        };
        assert_eq!(text(&d, &[], None).lines().nth(1), Some("no posts yet"));
        let author = Author {
            name: "ferris".into(),
            display_name: "Ferris".into(),
            ..Author::default()
        };
        let edit = Edit {
            target: "p1".into(),
            title: Some("Hi again".into()),
            time_us: 5,
            ..Edit::default()
        };
        let posts = views(vec![post("Hi", "", Some(author)), edit.into()]);
        let none = CommentsByPost::new();
        let t = text(&d, &posts, Some(&none));
        assert!(
            t.contains("  Hi again\n  by Ferris (ferris) · edited\n  0 comments\n"),
            "{t}"
        );
        // Written by the community itself: its name.
        let t = text(&d, &views(vec![post("Hi", "", None)]), None);
        assert!(t.contains("  Hi\n  by c\n"), "{t}");
    }
}
