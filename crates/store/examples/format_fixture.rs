//! Write a small store in the current on-disk format, for the format tests
//! (`crates/store/tests/format.rs`): a snapshot of what this version writes, committed under
//! `crates/store/tests/fixtures/format-<N>/`, which every later version must still open (and
//! convert). The content is deterministic (fixed seeds, Ed25519 signatures are deterministic),
//! so the test knows what each log must hold without reading anything but the store.
//!
//! ```sh
//! cargo run -p peerhost-store --example format_fixture -- crates/store/tests/fixtures/format-N
//! ```
//!
//! What it holds (the test checks each):
//! - `posts`: a v11 log we write (seed `[1; 32]`): 40 blocks, truncated to 30 (fork 1), 5 more
//!   appended (length 35), blocks 3..6 cleared;
//! - `old`: a compat log we write (seed `[2; 32]`), 5 blocks;
//! - `mirror`: a sparse replica of a 100-block log (seed `[3; 32]`, written elsewhere) holding
//!   blocks 0, 7, 50..60 and 99;
//! - an unnamed empty replica of the log of seed `[4; 32]`, its manifest not yet known;
//! - the name `dangling`, bound to a key the store does not hold.

use peerhost_ids::{Key, KeyPair};
use peerhost_log::Request;
use peerhost_log::proof::{RequestBlock, RequestUpgrade};
use peerhost_store::{CreateOptions, Durability, Options, Store};

/// The content of block `i` of the log named `log`: empty for every seventh block, so empty
/// blocks (which take no bytes) sit among the others.
fn block(log: &str, i: u64) -> Vec<u8> {
    format!("{log} block {i}; ")
        .repeat((i % 7) as usize)
        .into_bytes()
}

fn blocks(log: &str, range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|i| block(log, i)).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: format_fixture OUT_DIR (a new directory)")?;
    if std::path::Path::new(&out).exists() {
        return Err(format!("{out} exists: pass a new directory").into());
    }
    let options = Options::default().durability(Durability::Sync);
    let store = Store::open_with(&out, options.clone())?;

    let mut posts = store.create(
        "posts",
        CreateOptions::default().key_pair(KeyPair::from_seed(&[1; 32])),
    )?;
    posts.append(&blocks("posts", 0..20))?;
    posts.append(&blocks("posts", 20..40))?;
    posts.truncate(30)?;
    // After the truncation, blocks 30.. are new content (fork 1).
    posts.append(&blocks("posts-fork1", 30..35))?;
    posts.clear(3, 6)?;

    let mut old = store.create(
        "old",
        CreateOptions::default()
            .compat(true)
            .key_pair(KeyPair::from_seed(&[2; 32])),
    )?;
    old.append(&blocks("old", 0..5))?;

    // A writer elsewhere, and its sparse replica here.
    let elsewhere = tempfile::tempdir()?;
    let ws = Store::open_with(elsewhere.path(), options)?;
    let mut writer = ws.create(
        "w",
        CreateOptions::default().key_pair(KeyPair::from_seed(&[3; 32])),
    )?;
    writer.append(&blocks("mirror", 0..100))?;
    let mut mirror = store.create_replica(writer.key(), None, Some("mirror"))?;
    let upgrade = Request {
        id: 1,
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: 100,
        }),
        manifest: true,
        ..Request::default()
    };
    mirror.apply(&writer.proof(&upgrade)?.ok_or("no upgrade proof")?)?;
    for i in [0u64, 7, 99].into_iter().chain(50..60) {
        let nodes = mirror.missing_nodes(2 * i)?;
        let request = Request {
            id: 2,
            block: Some(RequestBlock { index: i, nodes }),
            ..Request::default()
        };
        mirror.apply(&writer.proof(&request)?.ok_or("no block proof")?)?;
    }

    let unknown = peerhost_log::Manifest::default_signer(KeyPair::from_seed(&[4; 32]).public_key());
    drop(store.create_replica(Key(unknown.hash()), None, None)?);
    store.set_name("dangling", &Key([0xdd; 32]))?;

    println!(
        "wrote {out}: posts {} (fork {}), old {}, mirror {} of 100",
        posts.length(),
        posts.fork(),
        old.length(),
        mirror.info()?.contiguous_length
    );
    Ok(())
}
