//! Properties of the entry codec and the readers: every entry we can write reads back as
//! itself; no input makes a decoder or reader panic.

use peerhost_feed::read::{asset_index, comments, descriptor, latest_posts};
use peerhost_feed::{
    Asset, AssetIndex, Author, Chunk, Comment, Delete, Descriptor, Edit, Entry, Kind, Post, Votes,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,32}"
}

fn id() -> impl Strategy<Value = String> {
    "[a-z]{1,8}:[a-z0-9./-]{1,40}"
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 32)]
}

fn author() -> impl Strategy<Value = Option<Author>> {
    proptest::option::of(
        (text(), text(), text()).prop_map(|(name, display_name, url)| Author {
            name,
            display_name,
            url,
        }),
    )
}

fn votes() -> impl Strategy<Value = Option<Votes>> {
    proptest::option::of(any::<(u64, u64)>().prop_map(|(up, down)| Votes { up, down }))
}

fn asset() -> impl Strategy<Value = Asset> {
    (
        "[a-z0-9_]{1,8}(/[a-z0-9_]{1,6}(\\.[a-z]{1,4})?){0,3}",
        text(),
        0u64..1 << 40,
        proptest::collection::vec(any::<u8>(), 32),
        0u64..1 << 40,
        1u64..1 << 20,
    )
        .prop_map(|(path, content_type, size, sha256, start, blocks)| Asset {
            path,
            content_type,
            size: size + 1,
            sha256,
            start,
            blocks,
        })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (
            text(),
            text(),
            text(),
            key(),
            key(),
            key(),
            any::<u64>(),
            text(),
            key(),
        )
            .prop_map(
                |(name, title, description, posts, comments, assets, time_us, origin, index)| {
                    Kind::Descriptor(Descriptor {
                        name,
                        title,
                        description,
                        posts,
                        comments,
                        assets,
                        time_us,
                        origin,
                        index,
                    })
                }
            ),
        (
            id(),
            author(),
            text(),
            text(),
            text(),
            any::<(u64, u64)>(),
            text(),
            any::<bool>(),
            votes()
        )
            .prop_map(
                |(id, author, title, body, link, (p, u), origin, nsfw, votes)| {
                    Kind::Post(Post {
                        id,
                        author,
                        title,
                        body,
                        link,
                        published_us: p,
                        updated_us: u,
                        origin,
                        nsfw,
                        votes,
                    })
                }
            ),
        (
            id(),
            id(),
            prop_oneof![Just(String::new()), id()],
            author(),
            text(),
            any::<u64>()
        )
            .prop_map(|(id, post, parent, author, body, t)| {
                Kind::Comment(Comment {
                    id,
                    post,
                    parent,
                    author,
                    body,
                    published_us: t,
                    ..Default::default()
                })
            }),
        (
            id(),
            any::<u64>(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            votes()
        )
            .prop_map(|(target, time_us, title, body, link, votes)| {
                Kind::Edit(Edit {
                    target,
                    time_us,
                    title,
                    body,
                    link,
                    votes,
                })
            }),
        (id(), any::<u64>(), 0i32..5).prop_map(|(target, time_us, reason)| {
            Kind::Delete(Delete {
                target,
                time_us,
                reason,
            })
        }),
        (proptest::collection::vec(asset(), 0..6), any::<u64>()).prop_map(|(files, time_us)| {
            let mut files = files;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            files.dedup_by(|a, b| a.path == b.path);
            Kind::AssetIndex(AssetIndex { files, time_us })
        }),
        proptest::collection::vec(any::<u8>(), 0..2048)
            .prop_map(|data| Kind::Chunk(Chunk { data })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_entry_round_trips(kind in kind()) {
        let entry = Entry::new(kind);
        let bytes = entry.encode().unwrap();
        let back = Entry::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &entry);
        prop_assert!(back.unknown().is_empty());
        // Canonical: encoding again gives the same bytes.
        prop_assert_eq!(back.encode().unwrap(), bytes);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        peerhost_feed::fuzz::entry(&bytes);
    }

    #[test]
    fn mutated_entries_never_panic(kind in kind(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = Entry::new(kind).encode().unwrap();
        for (at, x) in flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
        }
        // Decodes to an entry that round-trips, or to a typed error.
        peerhost_feed::fuzz::entry(&bytes);
    }

    #[test]
    fn readers_never_panic_on_any_log(
        log in proptest::collection::vec(
            prop_oneof![
                kind().prop_map(|k| Entry::new(k).encode().unwrap()),
                proptest::collection::vec(any::<u8>(), 0..64),
            ],
            0..24,
        ),
        n in 0usize..30,
    ) {
        let mut log = log;
        let len = log.len() as u64;
        let (posts, notes) = latest_posts(&mut log, n).unwrap();
        prop_assert!(posts.len() <= n);
        prop_assert!(notes.skipped_total <= len);
        // Newest first.
        prop_assert!(posts.windows(2).all(|w| w[0].index > w[1].index));
        let _ = comments(&mut log).unwrap();
        let _ = descriptor(&mut log).unwrap();
        if let (Some((at, index)), _) = asset_index(&mut log).unwrap() {
            prop_assert!(index.files.iter().all(|f| f.start + f.blocks <= at));
        }
    }

    #[test]
    fn lemmy_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        peerhost_feed::fuzz::lemmy(&bytes);
    }
}
