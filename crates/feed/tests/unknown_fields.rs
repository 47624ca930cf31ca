//! Fields from a later version of `feed.proto` survive decode → change → encode.
//!
//! The `Future*` messages below are `feed.proto` as a later version might have it: new fields
//! at every level (scalars, packed repeated, messages, in a repeated message), and a new entry
//! kind. Blocks written with them are decoded by this version's [`Entry`], changed, encoded,
//! and decoded again with the future types: everything this version did not know is there.

use peerhost_feed::{Entry, Kind};
use proptest::prelude::*;
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct FutureEntry {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(oneof = "future_entry::Kind", tags = "3, 7, 40")]
    kind: Option<future_entry::Kind>,
    /// A new top-level field.
    #[prost(string, tag = "30")]
    hint: String,
}

mod future_entry {
    #[derive(Clone, PartialEq, prost::Oneof)]
    #[allow(clippy::large_enum_variant)]
    pub(crate) enum Kind {
        #[prost(message, tag = "3")]
        Post(super::FuturePost),
        #[prost(message, tag = "7")]
        AssetIndex(super::FutureAssetIndex),
        /// A new kind.
        #[prost(message, tag = "40")]
        Poll(super::FuturePoll),
    }
}

#[derive(Clone, PartialEq, Message)]
struct FuturePost {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, optional, tag = "2")]
    author: Option<FutureAuthor>,
    #[prost(string, tag = "3")]
    title: String,
    #[prost(string, tag = "4")]
    body: String,
    #[prost(string, tag = "5")]
    link: String,
    #[prost(uint64, tag = "6")]
    published_us: u64,
    #[prost(uint64, tag = "7")]
    updated_us: u64,
    #[prost(string, tag = "8")]
    origin: String,
    #[prost(bool, tag = "9")]
    nsfw: bool,
    // New in the future:
    #[prost(string, tag = "20")]
    flair: String,
    #[prost(uint32, repeated, tag = "21")]
    tags: Vec<u32>,
    #[prost(message, optional, tag = "22")]
    badge: Option<FutureBadge>,
    #[prost(sint64, tag = "23")]
    score: i64,
    #[prost(fixed32, tag = "24")]
    rating: u32,
    #[prost(double, tag = "25")]
    weight: f64,
}

#[derive(Clone, PartialEq, Message)]
struct FutureAuthor {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    display_name: String,
    #[prost(string, tag = "3")]
    url: String,
    #[prost(string, tag = "4")]
    pronouns: String,
}

#[derive(Clone, PartialEq, Message)]
struct FutureBadge {
    #[prost(string, tag = "1")]
    label: String,
}

#[derive(Clone, PartialEq, Message)]
struct FutureAssetIndex {
    #[prost(message, repeated, tag = "1")]
    files: Vec<FutureAsset>,
    #[prost(uint64, tag = "2")]
    time_us: u64,
    #[prost(string, tag = "3")]
    root: String,
}

#[derive(Clone, PartialEq, Message)]
struct FutureAsset {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(string, tag = "2")]
    content_type: String,
    #[prost(uint64, tag = "3")]
    size: u64,
    #[prost(bytes = "vec", tag = "4")]
    sha256: Vec<u8>,
    #[prost(uint64, tag = "5")]
    start: u64,
    #[prost(uint64, tag = "6")]
    blocks: u64,
    #[prost(bytes = "vec", tag = "7")]
    brotli_sha256: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct FuturePoll {
    #[prost(string, tag = "1")]
    question: String,
    #[prost(string, repeated, tag = "2")]
    options: Vec<String>,
}

fn future_post() -> FuturePost {
    FuturePost {
        id: "ph:1".into(),
        author: Some(FutureAuthor {
            name: "ferris".into(),
            display_name: "Ferris 🦀".into(),
            url: "https://h/u/ferris".into(),
            pronouns: "it/its".into(),
        }),
        title: "Hello".into(),
        body: "body".into(),
        link: "https://example.org/".into(),
        published_us: 1_700_000_000_000_000,
        updated_us: 0,
        origin: String::new(),
        nsfw: false,
        flair: "announcement".into(),
        tags: vec![1, 300, 70_000],
        badge: Some(FutureBadge {
            label: "pinned".into(),
        }),
        score: -42,
        rating: 7,
        weight: 0.5,
    }
}

fn entry_of(kind: future_entry::Kind, hint: &str) -> FutureEntry {
    FutureEntry {
        version: 1,
        kind: Some(kind),
        hint: hint.into(),
    }
}

/// Decode with this version, change the title, encode, decode with the future types.
fn retitle(bytes: &[u8], title: &str) -> FutureEntry {
    let mut entry = Entry::decode(bytes).unwrap();
    match entry.kind_mut() {
        Some(Kind::Post(p)) => p.title = title.into(),
        other => panic!("{other:?}"),
    }
    FutureEntry::decode(&entry.encode().unwrap()[..]).unwrap()
}

#[test]
fn a_future_post_keeps_its_new_fields_through_an_edit() {
    let future = entry_of(future_entry::Kind::Post(future_post()), "hint");
    let bytes = future.encode_to_vec();

    let entry = Entry::decode(&bytes).unwrap();
    // This version sees the fields it knows…
    let Some(Kind::Post(p)) = entry.kind() else {
        panic!("{entry:?}");
    };
    assert_eq!((p.id.as_str(), p.title.as_str()), ("ph:1", "Hello"));
    assert_eq!(p.author.as_ref().unwrap().display_name, "Ferris 🦀");
    // …and keeps the others.
    assert_eq!(entry.unknown().numbers(), [30]);
    assert!(!entry.unknown().is_empty());

    // Unchanged, the bytes come back identical (prost writes fields in number order and the
    // unknown ones of this test are all after the known ones).
    assert_eq!(entry.encode().unwrap(), bytes);

    let mut expected = future.clone();
    if let Some(future_entry::Kind::Post(p)) = &mut expected.kind {
        p.title = "Hello, edited".into();
    }
    assert_eq!(retitle(&bytes, "Hello, edited"), expected);
}

#[test]
fn a_future_asset_index_keeps_per_file_fields() {
    let file = |path: &str, extra: u8| FutureAsset {
        path: path.into(),
        content_type: "text/plain".into(),
        size: 5,
        sha256: vec![extra; 32],
        start: 0,
        blocks: 1,
        brotli_sha256: if extra == 0 {
            Vec::new()
        } else {
            vec![extra; 32]
        },
    };
    let future = entry_of(
        future_entry::Kind::AssetIndex(FutureAssetIndex {
            files: vec![file("a", 1), file("b", 0), file("c", 3)],
            time_us: 9,
            root: "index.html".into(),
        }),
        "",
    );
    let bytes = future.encode_to_vec();
    let mut entry = Entry::decode(&bytes).unwrap();
    match entry.kind_mut() {
        Some(Kind::AssetIndex(i)) => i.time_us = 10,
        other => panic!("{other:?}"),
    }
    let back = FutureEntry::decode(&entry.encode().unwrap()[..]).unwrap();
    let mut expected = future;
    if let Some(future_entry::Kind::AssetIndex(i)) = &mut expected.kind {
        i.time_us = 10;
    }
    assert_eq!(back, expected);
}

#[test]
fn a_future_kind_is_skippable_and_survives() {
    let future = entry_of(
        future_entry::Kind::Poll(FuturePoll {
            question: "Tabs or spaces?".into(),
            options: vec!["tabs".into(), "spaces".into()],
        }),
        "",
    );
    let bytes = future.encode_to_vec();
    let entry = Entry::decode(&bytes).unwrap();
    assert!(entry.kind().is_none());
    assert_eq!(entry.kind_name(), "unknown");
    assert_eq!(entry.unknown().numbers(), [40]);
    assert_eq!(
        FutureEntry::decode(&entry.encode().unwrap()[..]).unwrap(),
        future
    );
}

#[test]
fn fields_in_any_order_and_repeated_singular_messages() {
    // Unknown field first, then the post in two pieces (protobuf merges a singular message
    // field that appears twice): this version must keep all of it.
    let mut bytes = Vec::new();
    let hint = FutureEntry {
        version: 0,
        kind: None,
        hint: "first".into(),
    };
    bytes.extend(hint.encode_to_vec());
    bytes.extend(
        entry_of(
            future_entry::Kind::Post(FuturePost {
                id: "x".into(),
                flair: "f1".into(),
                ..Default::default()
            }),
            "",
        )
        .encode_to_vec(),
    );
    bytes.extend(
        FutureEntry {
            version: 0,
            kind: Some(future_entry::Kind::Post(FuturePost {
                title: "T".into(),
                tags: vec![5],
                ..Default::default()
            })),
            hint: String::new(),
        }
        .encode_to_vec(),
    );
    let original = FutureEntry::decode(&bytes[..]).unwrap();
    let entry = Entry::decode(&bytes).unwrap();
    let again = FutureEntry::decode(&entry.encode().unwrap()[..]).unwrap();
    assert_eq!(again, original);
    // prost merges: `flair` of the second piece is "", so the merged value is "f1"; tags of
    // both pieces are concatenated.
    let Some(future_entry::Kind::Post(p)) = &again.kind else {
        panic!()
    };
    assert_eq!(
        (p.id.as_str(), p.title.as_str(), p.flair.as_str()),
        ("x", "T", "f1")
    );
    assert_eq!(p.tags, [5]);
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

prop_compose! {
    fn arb_future_post()(
        id in "[a-z0-9:/]{1,40}",
        author in proptest::option::of((text(), text(), text(), text())),
        (title, body, link, origin) in (text(), text(), text(), text()),
        (published_us, updated_us, nsfw) in (any::<u64>(), any::<u64>(), any::<bool>()),
        flair in text(),
        tags in proptest::collection::vec(any::<u32>(), 0..5),
        badge in proptest::option::of(text()),
        (score, rating, weight) in (any::<i64>(), any::<u32>(), -1e9f64..1e9),
    ) -> FuturePost {
        FuturePost {
            id,
            author: author.map(|(name, display_name, url, pronouns)| FutureAuthor {
                name, display_name, url, pronouns,
            }),
            title, body, link, published_us, updated_us, origin, nsfw, flair, tags,
            badge: badge.map(|label| FutureBadge { label }),
            score, rating, weight,
        }
    }
}

proptest! {
    #[test]
    fn future_posts_survive_an_edit(post in arb_future_post(), hint in text(), title in text()) {
        let future = entry_of(future_entry::Kind::Post(post), &hint);
        let bytes = future.encode_to_vec();
        let mut expected = future.clone();
        if let Some(future_entry::Kind::Post(p)) = &mut expected.kind {
            p.title.clone_from(&title);
        }
        prop_assert_eq!(retitle(&bytes, &title), expected);
        // And decode(encode(decode(b))) == decode(b).
        let e = Entry::decode(&bytes).unwrap();
        prop_assert_eq!(Entry::decode(&e.encode().unwrap()).unwrap(), e);
    }
}
