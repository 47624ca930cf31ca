//! The Lemmy import on the sample responses in `tests/data/` (copies of shared/lemmy): the
//! mapping field by field, then whole imports into in-memory logs, twice, then with changes.

use peerhost_feed::import::{Item, Seen, plan};
use peerhost_feed::lemmy::Document;
use peerhost_feed::read::{comments, latest_posts};
use peerhost_feed::time::parse_rfc3339;
use peerhost_feed::{Author, Descriptor, Entry, Kind, Reason, Votes};
use serde_json::Value;

const POSTS: &[u8] = include_bytes!("data/posts.json");
const COMMENTS: &[u8] = include_bytes!("data/comments.json");
const COMMUNITY: &[u8] = include_bytes!("data/community.json");
const HOST: &str = "example-lemmy.test";

fn us(s: &str) -> u64 {
    parse_rfc3339(s).unwrap()
}

fn find<'a>(items: &'a [Item], id: &str) -> &'a Item {
    items
        .iter()
        .find(|i| match &i.kind {
            Kind::Post(p) => p.id == id,
            Kind::Comment(c) => c.id == id,
            _ => false,
        })
        .unwrap_or_else(|| panic!("{id} not mapped"))
}

#[test]
fn instance_is_inferred_from_local_items() {
    for json in [POSTS, COMMENTS, COMMUNITY] {
        assert_eq!(
            Document::parse(json).unwrap().instance().as_deref(),
            Some(HOST)
        );
    }
}

#[test]
fn posts_field_by_field() {
    let doc = Document::parse(POSTS).unwrap();
    assert_eq!(doc.what(), "posts");
    let batch = doc.batch(HOST);
    assert!(batch.warnings.is_empty(), "{:?}", batch.warnings);
    assert_eq!(batch.posts.len(), 30);
    assert!(batch.comments.is_empty() && batch.community.is_none());
    assert!(batch.posts.iter().all(|i| i.gone.is_none()));

    // A local text post with markdown and a display name with an emoji.
    let item = find(&batch.posts, "lemmy:example-lemmy.test/post/48840");
    let Kind::Post(p) = &item.kind else { panic!() };
    assert_eq!(p.title, "Weekly 'what are you building' thread — week 41");
    assert_eq!(
        p.body,
        "Share what you're working on this week, big or small.\n\n*Previous threads are linked in the sidebar.*"
    );
    assert_eq!(p.link, "");
    assert_eq!(
        p.author,
        Some(Author {
            name: "ferris_crab".into(),
            display_name: "Ferris 🦀".into(),
            url: "https://example-lemmy.test/u/ferris_crab".into(),
        })
    );
    assert_eq!(p.published_us, us("2026-10-06T07:36:06.551719Z"));
    assert_eq!(p.updated_us, 0);
    assert_eq!(p.origin, "https://example-lemmy.test/post/48840");
    assert!(!p.nsfw);
    // counts: score 161 = 167 up − 6 down.
    assert_eq!(p.votes, Some(Votes { up: 167, down: 6 }));
    assert!(
        batch
            .posts
            .iter()
            .all(|i| matches!(&i.kind, Kind::Post(p) if p.votes.is_some()))
    );

    // An edited post: `updated` is kept.
    let Kind::Post(p) = &find(&batch.posts, "lemmy:example-lemmy.test/post/48736").kind else {
        panic!()
    };
    assert_eq!(p.title, "Community rules & FAQ — read before posting");
    assert!(p.body.starts_with("## Rules\n\n1. Be civil."));
    assert_eq!(p.published_us, us("2026-10-02T18:02:21.496839Z"));
    assert_eq!(p.updated_us, us("2026-10-03T23:23:29.671651Z"));

    // A link post federated from Mbin: no body, second-precision time, remote author without
    // a display name; the id uses this instance's number, the origin the remote id.
    let Kind::Post(p) = &find(&batch.posts, "lemmy:example-lemmy.test/post/49066").kind else {
        panic!()
    };
    assert_eq!(
        p.title,
        "Comparing async runtimes for high-fanout networking"
    );
    assert_eq!(p.body, "");
    assert_eq!(
        p.link,
        "https://blog.example.org/notes/2024-comparing-async-runtimes-for-high-fanout-network"
    );
    assert_eq!(p.published_us, us("2026-10-17T09:01:28Z"));
    assert_eq!(p.published_us % 1_000_000, 0);
    let a = p.author.as_ref().unwrap();
    assert_eq!(
        (a.name.as_str(), a.display_name.as_str(), a.url.as_str()),
        (
            "swarm_sam",
            "",
            "https://mbin.remote-three.test/u/swarm_sam"
        )
    );
    assert_eq!(
        p.origin,
        "https://mbin.remote-three.test/m/rust_p2p@example-lemmy.test/t/89343"
    );
}

#[test]
fn comments_field_by_field() {
    let batch = Document::parse(COMMENTS).unwrap().batch(HOST);
    assert!(batch.warnings.is_empty(), "{:?}", batch.warnings);
    assert_eq!(batch.comments.len(), 60);

    // Top level ("0.<id>"): no parent.
    let item = find(&batch.comments, "lemmy:example-lemmy.test/comment/187300");
    let Kind::Comment(c) = &item.kind else {
        panic!()
    };
    assert_eq!(c.post, "lemmy:example-lemmy.test/post/48291");
    assert_eq!(c.parent, "");
    assert_eq!(c.body, "Thanks! Bookmarked.");
    assert_eq!(c.author.as_ref().unwrap().name, "relay_rafa");
    assert_eq!(c.published_us, us("2026-09-21T22:12:25.121832Z"));
    assert_eq!(c.origin, "https://example-lemmy.test/comment/187300");
    assert_eq!(c.votes, Some(Votes { up: 33, down: 8 }));
    assert!(item.gone.is_none());

    // Third level, edited, display name in Japanese.
    let item = find(&batch.comments, "lemmy:example-lemmy.test/comment/188479");
    let Kind::Comment(c) = &item.kind else {
        panic!()
    };
    assert_eq!(c.parent, "lemmy:example-lemmy.test/comment/188371");
    assert_eq!(c.post, "lemmy:example-lemmy.test/post/49005");
    assert_eq!(
        c.body,
        "This matches what we saw, thanks for writing it up.\n\nEdit: typo."
    );
    assert_eq!(c.author.as_ref().unwrap().display_name, "ゆき");
    assert_eq!(c.updated_us, us("2026-10-13T20:47:36.176214Z"));

    // Removed by a moderator / deleted by the author.
    let removed = find(&batch.comments, "lemmy:example-lemmy.test/comment/188486");
    assert_eq!(removed.gone, Some(Reason::Moderator));
    let deleted = find(&batch.comments, "lemmy:example-lemmy.test/comment/188496");
    assert_eq!(deleted.gone, Some(Reason::Author));
    let gone: Vec<_> = batch.comments.iter().filter(|i| i.gone.is_some()).collect();
    assert_eq!(gone.len(), 7);

    // Every parent is a comment of the same post in this sample.
    for item in &batch.comments {
        let Kind::Comment(c) = &item.kind else {
            panic!()
        };
        if !c.parent.is_empty() {
            let Kind::Comment(p) = &find(&batch.comments, &c.parent).kind else {
                panic!()
            };
            assert_eq!(p.post, c.post, "{}", c.id);
        }
    }
}

#[test]
fn community_updates_the_descriptor() {
    let batch = Document::parse(COMMUNITY).unwrap().batch(HOST);
    let info = batch.community.unwrap();
    assert_eq!(info.name, "rust_p2p");
    assert_eq!(info.title, "Rust P2P networking");
    assert_eq!(
        info.description,
        "Peer-to-peer networking in **Rust**: transports, NAT traversal, DHTs, gossip.\n\n\
         - Rules: see the pinned post\n- Weekly thread every Monday\n\
         - Matrix: `#rust_p2p:matrix.example.org`"
    );
    assert_eq!(info.origin, "https://example-lemmy.test/c/rust_p2p");
    let mut d = Descriptor {
        name: "rp".into(),
        posts: vec![1; 32],
        ..Default::default()
    };
    assert!(info.apply(&mut d));
    assert_eq!(d.title, "Rust P2P networking");
    assert_eq!(d.posts, vec![1; 32]);
    assert!(!info.apply(&mut d), "applying twice changes nothing");
}

fn import(log: &mut Vec<Vec<u8>>, items: Vec<Item>) -> peerhost_feed::import::Stats {
    let (mut seen, notes) = Seen::scan(log).unwrap();
    assert_eq!(notes.skipped_total, 0);
    let (entries, stats) = plan(&mut seen, items, 1_800_000_000_000_000);
    log.extend(entries.iter().map(|e| e.encode().unwrap()));
    stats
}

#[test]
fn import_twice_then_with_changes() {
    let mut posts_log = Vec::new();
    let mut comments_log = Vec::new();
    let posts = Document::parse(POSTS).unwrap().batch(HOST).posts;
    let comment_items = Document::parse(COMMENTS).unwrap().batch(HOST).comments;

    let s = import(&mut posts_log, posts.clone());
    assert_eq!((s.new, s.unchanged), (30, 0));
    let s = import(&mut comments_log, comment_items.clone());
    assert_eq!((s.new, s.deleted), (53, 7));
    // 53 comments, and 7 placeholders each followed by its deletion.
    assert_eq!(comments_log.len(), 53 + 14);

    // Newest first, by published time.
    let (latest, notes) = latest_posts(&mut posts_log, 5).unwrap();
    assert_eq!(notes.skipped_total, 0);
    assert_eq!(latest[0].post.id, "lemmy:example-lemmy.test/post/49066");
    assert!(
        latest
            .windows(2)
            .all(|w| w[0].post.published_us >= w[1].post.published_us)
    );

    let (views, _) = comments(&mut comments_log).unwrap();
    assert_eq!(views.len(), 60);
    assert_eq!(views.iter().filter(|v| v.deleted.is_some()).count(), 7);
    // Parents come before their replies.
    for (i, v) in views.iter().enumerate() {
        if !v.comment.parent.is_empty() {
            let p = views
                .iter()
                .position(|p| p.comment.id == v.comment.parent)
                .unwrap();
            assert!(p < i, "{}", v.comment.id);
        }
    }

    // Again: nothing appended.
    let (p_len, c_len) = (posts_log.len(), comments_log.len());
    let s = import(&mut posts_log, posts);
    assert_eq!((s.new, s.unchanged), (0, 30));
    let s = import(&mut comments_log, comment_items);
    assert_eq!((s.new, s.deleted, s.unchanged), (0, 0, 60));
    assert_eq!((posts_log.len(), comments_log.len()), (p_len, c_len));

    // The instance changed: one post edited (title and body), one removed.
    let mut v: Value = serde_json::from_slice(POSTS).unwrap();
    for pv in v["posts"].as_array_mut().unwrap() {
        let post = &mut pv["post"];
        if post["id"] == 48840 {
            post["name"] = "Weekly thread — week 41 (edited)".into();
            post["body"] = "New body".into();
            post["updated"] = "2026-10-20T10:00:00Z".into();
        }
        if post["id"] == 48750 {
            post["removed"] = true.into();
        }
    }
    let changed = Document::parse(&serde_json::to_vec(&v).unwrap())
        .unwrap()
        .batch(HOST)
        .posts;
    let s = import(&mut posts_log, changed.clone());
    assert_eq!((s.new, s.edited, s.deleted, s.unchanged), (0, 1, 1, 28));
    let tail: Vec<Entry> = posts_log[p_len..]
        .iter()
        .map(|b| Entry::decode(b).unwrap())
        .collect();
    assert_eq!(tail.len(), 2);
    let e = tail
        .iter()
        .find_map(|e| match e.kind() {
            Some(Kind::Edit(x)) => Some(x.clone()),
            _ => None,
        })
        .expect("an edit");
    assert_eq!(e.target, "lemmy:example-lemmy.test/post/48840");
    assert_eq!(e.title.as_deref(), Some("Weekly thread — week 41 (edited)"));
    assert_eq!(e.body.as_deref(), Some("New body"));
    assert_eq!(e.link, None);
    assert_eq!(e.time_us, us("2026-10-20T10:00:00Z"));

    let (all, _) = latest_posts(&mut posts_log, 100).unwrap();
    assert_eq!(all.len(), 29);
    let edited = all
        .iter()
        .find(|p| p.post.id == "lemmy:example-lemmy.test/post/48840")
        .unwrap();
    assert_eq!(edited.post.title, "Weekly thread — week 41 (edited)");
    assert_eq!(edited.edited_us, us("2026-10-20T10:00:00Z"));
    assert!(!all.iter().any(|p| p.post.id.ends_with("/post/48750")));

    // And that is idempotent too.
    let s = import(&mut posts_log, changed);
    assert_eq!((s.edited, s.deleted, s.unchanged), (0, 0, 30));
}
