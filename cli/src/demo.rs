//! `peerhost demo`: a walk through a signed log in a temporary store, with no network.
//!
//! It shows what the log layer guarantees today: appends signed like hypercore 11, a head anyone
//! can verify from the key alone, a proof that a single block belongs to the log, a truncate that
//! starts a new fork, and corruption on disk being caught. (The networked demo — an instance,
//! mirrors and a follower on a local DHT — comes with the community node.)

use anyhow::Context;
use peerhost_log::proof::{Request, RequestBlock, RequestUpgrade};
use peerhost_store::{CreateOptions, Store};

pub(crate) fn run() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("peerhost-demo-")
        .tempdir()?;
    println!("store: {} (temporary)", dir.path().display());
    let store = Store::open(dir.path().join("writer")).context("cannot open the demo store")?;

    let mut posts = store.create("posts", CreateOptions::default())?;
    println!("\n1. created the v11 log \"posts\"");
    println!("   key           {}", posts.key());
    println!("   discovery key {}", posts.discovery_key());

    let blocks: Vec<Vec<u8>> = (1..=1000)
        .map(|i| format!("{{\"id\":{i},\"title\":\"post number {i}\"}}").into_bytes())
        .collect();
    posts.append(&blocks)?;
    let info = posts.info()?;
    println!("\n2. appended {} posts in one signed batch", info.length);
    println!("   byte length   {}", info.byte_length);
    println!("   tree hash     {}", hex::encode(info.tree_hash));
    println!(
        "   signature     {}",
        if info.signature_verifies {
            "verifies"
        } else {
            "DOES NOT VERIFY"
        }
    );

    // What a reader who holds nothing asks for: block 123 plus the signed head.
    let request = Request {
        fork: posts.fork(),
        block: Some(RequestBlock {
            index: 123,
            nodes: 0,
        }),
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: posts.length(),
        }),
        // The reader knows only the key (a hash of the manifest), so it asks for the manifest.
        manifest: true,
        ..Request::default()
    };
    let proof = posts
        .proof(&request)?
        .context("the writer holds every block")?;
    let wire = peerhost_encoding::to_vec(&proof);
    let block_nodes = proof.block.as_ref().map_or(0, |b| b.nodes.len());
    println!(
        "\n3. a proof that block 123 belongs to the log: {} bytes on the wire",
        wire.len()
    );
    println!(
        "   ({block_nodes} sibling hashes up to a signed root; a reader re-hashes them and checks the signature)"
    );

    // A reader's own store: it starts from the key alone and learns the manifest from the proof.
    let reader_store =
        Store::open(dir.path().join("reader")).context("cannot open the reader store")?;
    let mut replica = reader_store.create_replica(posts.key(), None, Some("posts"))?;
    replica.apply(&proof)?;
    let got = replica
        .get(123)?
        .context("the replica stored the verified block")?;
    println!(
        "   a fresh replica verified it: {}",
        String::from_utf8_lossy(&got)
    );
    drop(replica);

    posts.truncate(900)?;
    posts.append(&[b"{\"id\":901,\"title\":\"an edited history\"}".to_vec()])?;
    println!(
        "\n4. truncated to 900 and appended again: fork {} now, length {}",
        posts.fork(),
        posts.length()
    );

    let report = posts.verify()?;
    println!(
        "\n5. verify: {} blocks and {} parent nodes re-hashed against the signed root",
        report.blocks, report.parents
    );
    println!("\ndone: `peerhost log --help` for the commands that do this on your own store");
    Ok(())
}
