//! The community index build benchmark, peerhost side (the JS side is
//! `interop-tests/bee/index-bench.js`, the runner `interop-tests/bee/index-bench.sh`).
//!
//! ```text
//! cargo run --release -p peerhost-feed --example index_bench -- [--posts N] [--comments M]
//!     [--ops FILE]
//! ```
//!
//! Makes a community's posts and comments logs in memory (`--posts` posts by 100 authors, one
//! minute apart; `--comments` comments on random posts, two in three answering the post's
//! previous comment), then times `index::catch_up` into a signed log in a store (`process`
//! durability): reading the entries, computing the keys, and writing the Hyperbee, 1024 log
//! entries per batch. Prints one JSON line. With `--ops`, also writes each batch's puts and
//! deletes (one JSON array per line, `[keyhex, valuehex|null]`), which the JS side replays
//! into a Hyperbee: the same tree operations, so the same blocks.

use std::io::Write as _;
use std::time::Instant;

use peerhost_feed::index::{self, View};
use peerhost_feed::{Author, Comment, Entry, Post};
use peerhost_store::{CreateOptions, Durability, Options, Store};

fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^= x >> 16;
    x
}

fn arg(name: &str, dflt: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(dflt, |v| v.parse().expect("a number"))
}

fn main() {
    let posts_n = arg("--posts", 10_000);
    let comments_n = arg("--comments", 100_000);
    let args: Vec<String> = std::env::args().collect();
    let ops = args
        .iter()
        .position(|a| a == "--ops")
        .and_then(|i| args.get(i + 1).cloned());
    let author = |i: u64| {
        Some(Author {
            name: format!("user{}", i % 100),
            ..Author::default()
        })
    };
    let mut posts: Vec<Vec<u8>> = (0..posts_n)
        .map(|i| {
            Entry::from(Post {
                id: format!("lemmy:example.test/post/{i}"),
                title: format!("Post {i}"),
                published_us: 1_700_000_000_000_000 + i * 60_000_000,
                author: author(i),
                ..Post::default()
            })
            .encode()
            .expect("post")
        })
        .collect();
    let mut last: Vec<Option<u64>> = vec![None; posts_n as usize];
    let mut comments: Vec<Vec<u8>> = (0..comments_n)
        .map(|i| {
            let p = u64::from(fmix32(i as u32)) % posts_n;
            let parent = match last[p as usize] {
                Some(c) if i % 3 != 0 => format!("lemmy:example.test/comment/{c}"),
                _ => String::new(),
            };
            last[p as usize] = Some(i);
            Entry::from(Comment {
                id: format!("lemmy:example.test/comment/{i}"),
                post: format!("lemmy:example.test/post/{p}"),
                parent,
                body: format!("comment {i}"),
                published_us: 1_800_000_000_000_000 + i,
                author: author(i),
                ..Comment::default()
            })
            .encode()
            .expect("comment")
        })
        .collect();

    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(
        tmp.path(),
        Options::default().durability(Durability::Process),
    )
    .expect("store");
    let mut core = store
        .create("index", CreateOptions::default())
        .expect("create");
    let t = Instant::now();
    let caught =
        index::catch_up(&mut core, &mut posts, &mut comments, |_, _| {}).expect("catch up");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let entries = posts_n + comments_n;
    println!(
        "{{\"impl\":\"peerhost\",\"entries\":{entries},\"ms\":{ms:.1},\"batches\":{},\"blocks\":{},\"bytes\":{}}}",
        caught.batches,
        core.length(),
        core.byte_length()
    );
    if let Some(path) = ops {
        // The same build again in memory, writing each batch's operations out.
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("ops file"));
        let mut log: Vec<Vec<u8>> = Vec::new();
        let mut view = View::new(&mut log);
        loop {
            let n = view
                .absorb(&mut posts, &mut comments, index::CHUNK)
                .expect("absorb");
            let batch: Vec<serde_json::Value> = view
                .pending()
                .map(|(k, v)| serde_json::json!([hex::encode(k), v.map(hex::encode)]))
                .collect();
            if !batch.is_empty() {
                writeln!(out, "{}", serde_json::Value::Array(batch)).expect("write");
            }
            view.flush().expect("flush");
            if n == 0 {
                break;
            }
        }
        out.flush().expect("flush");
    }
}
