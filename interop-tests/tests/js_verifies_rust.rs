//! JS verifies Rust: logs written by peerhost (their manifest, signatures and proofs made by
//! our writer for the requests a replica would send) are handed to the real hypercore 11
//! package through `verify-log.js`, which replays every proof through hypercore's own
//! verification path into an empty replica that knows only the key. The same documents with
//! one byte flipped must be rejected.

use std::path::Path;

use peerhost_encoding::{from_prefix, to_vec};
use peerhost_ids::KeyPair;
use peerhost_interop_tests::{describe, node};
use peerhost_log::Data;
use peerhost_log::proof::{Request, RequestBlock, RequestSeek, RequestUpgrade};
use peerhost_store::{Core, CreateOptions, Durability, Options, Store};
use serde_json::{Value, json};

/// A writer and the proofs it served, in the shape of a `fixtures/…/cores.json` entry.
struct Doc {
    proofs: Vec<Value>,
    heads: Vec<Value>,
    next_id: u64,
}

impl Doc {
    fn head(&mut self, writer: &mut Core) {
        let info = writer.info().unwrap();
        let sig = writer
            .tree()
            .signature()
            .map(hex::encode)
            .unwrap_or_default();
        self.heads.push(json!({
            "length": info.length, "fork": info.fork,
            "treeHash": hex::encode(info.tree_hash), "signature": sig,
        }));
    }

    /// Ask `writer` for `request` as replica `peer` would, apply the reply to our own replica
    /// (so the next request's `nodes` are what a real requester would send), record both.
    fn serve(&mut self, writer: &mut Core, replica: &mut Core, peer: &str, mut request: Request) {
        self.next_id += 1;
        request.id = self.next_id;
        let data = writer
            .proof(&request)
            .unwrap()
            .expect("the writer can answer");
        if data.fork != replica.fork() {
            // Mid-reorg states are JS internals: record the messages only.
            self.record(peer, &request, &data, None);
            reorg(writer, replica, &data, self, peer);
        } else {
            let before = json!({"length": replica.length(), "fork": replica.fork()});
            replica.apply(&data).unwrap();
            let after = json!({"length": replica.length(), "fork": replica.fork()});
            self.record(peer, &request, &data, Some((before, after)));
        }
    }

    fn record(
        &mut self,
        peer: &str,
        request: &Request,
        data: &Data,
        states: Option<(Value, Value)>,
    ) {
        let mut entry = json!({
            "peer": peer,
            "requestEncoded": hex::encode(to_vec(request)),
            "data": hex::encode(to_vec(data)),
        });
        if let Some((before, after)) = states {
            entry["before"] = before;
            entry["after"] = after;
        }
        self.proofs.push(entry);
    }
}

/// Follow the writer onto its new fork the way hypercore does: the upgrade from 0, then hash
/// proofs of the diverging subtree until the shared length is known.
fn reorg(writer: &mut Core, replica: &mut Core, first: &Data, doc: &mut Doc, peer: &str) {
    let mut reorg = replica.verify_reorg(first).unwrap();
    while let Some(want) = reorg.want() {
        doc.next_id += 1;
        let request = Request {
            id: doc.next_id,
            fork: first.fork,
            hash: Some(RequestBlock {
                index: 2 * want.start,
                nodes: want.nodes,
            }),
            ..Request::default()
        };
        let data = writer.proof(&request).unwrap().expect("hash proof");
        replica.update_reorg(&mut reorg, &data).unwrap();
        doc.record(peer, &request, &data, None);
    }
    replica.apply_reorg(reorg).unwrap();
}

fn block(i: u64) -> Vec<u8> {
    // Varied sizes, including empty blocks and a few of several KiB.
    let len = match i % 7 {
        0 => 0,
        3 => 5000 + i as usize,
        _ => (i as usize * 37) % 900 + 1,
    };
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

fn build(dir: &Path, compat: bool, fork: bool) -> Value {
    let opts = Options::default().durability(Durability::Process);
    let writer_store = Store::open_with(dir.join("writer"), opts.clone()).unwrap();
    let reader_store = Store::open_with(dir.join("reader"), opts).unwrap();
    let kp = KeyPair::from_seed(&[if compat { 9 } else { 8 }; 32]);
    let mut writer = writer_store
        .create(
            "log",
            CreateOptions::default().compat(compat).key_pair(kp.clone()),
        )
        .unwrap();
    let mut doc = Doc {
        proofs: vec![],
        heads: vec![],
        next_id: 0,
    };

    let first: Vec<Vec<u8>> = (0..21).map(block).collect();
    writer.append(&first).unwrap();
    doc.head(&mut writer);

    // Peer a: upgrade from nothing (with the manifest: it knows only the key) plus a block.
    let mut a = reader_store
        .create_replica(writer.key(), None, Some("a"))
        .unwrap();
    doc.serve(
        &mut writer,
        &mut a,
        "a",
        Request {
            fork: 0,
            block: Some(RequestBlock { index: 5, nodes: 0 }),
            upgrade: Some(RequestUpgrade {
                start: 0,
                length: 21,
            }),
            manifest: !compat,
            ..Request::default()
        },
    );
    // Sampled blocks, each with the `nodes` a real requester computes from what it holds.
    for i in [0u64, 1, 2, 12, 20, 13, 7] {
        let nodes = a.missing_nodes(2 * i).unwrap();
        doc.serve(
            &mut writer,
            &mut a,
            "a",
            Request {
                fork: 0,
                block: Some(RequestBlock { index: i, nodes }),
                ..Request::default()
            },
        );
    }
    // Live append, then an upgrade from 21 with a block of the new range and one seek.
    let more: Vec<Vec<u8>> = (21..37).map(block).collect();
    writer.append(&more).unwrap();
    doc.head(&mut writer);
    doc.serve(
        &mut writer,
        &mut a,
        "a",
        Request {
            fork: 0,
            block: Some(RequestBlock {
                index: 30,
                nodes: 0,
            }),
            upgrade: Some(RequestUpgrade {
                start: 21,
                length: 16,
            }),
            ..Request::default()
        },
    );
    // A seek as hypercore's replicator sends it: the hash of a block in the range that holds
    // the byte, with the seek riding along (lib/replicator.js `_requestSeek`).
    let bytes = writer.byte_length() / 3;
    let mut index = 0;
    let mut end = 0;
    while end + block(index).len() as u64 <= bytes {
        end += block(index).len() as u64;
        index += 1;
    }
    let nodes = a.missing_nodes(2 * index).unwrap();
    doc.serve(
        &mut writer,
        &mut a,
        "a",
        Request {
            fork: 0,
            seek: Some(RequestSeek { bytes, padding: 0 }),
            hash: Some(RequestBlock {
                index: 2 * index,
                nodes,
            }),
            ..Request::default()
        },
    );

    let mut blocks: Vec<Vec<u8>> = (0..37).map(block).collect();
    if fork {
        // Truncate (fork 1) and write a different history: peer a follows through a reorg.
        writer.truncate(30).unwrap();
        let other: Vec<Vec<u8>> = (0..8)
            .map(|i| format!("fork 1 block {i}").into_bytes())
            .collect();
        writer.append(&other).unwrap();
        doc.head(&mut writer);
        blocks.truncate(30);
        blocks.extend(other);
        let len = writer.length();
        doc.serve(
            &mut writer,
            &mut a,
            "a",
            Request {
                fork: 1,
                upgrade: Some(RequestUpgrade {
                    start: 0,
                    length: len,
                }),
                ..Request::default()
            },
        );
        let nodes = a.missing_nodes(2 * 33).unwrap();
        doc.serve(
            &mut writer,
            &mut a,
            "a",
            Request {
                fork: 1,
                block: Some(RequestBlock { index: 33, nodes }),
                ..Request::default()
            },
        );
    }

    let info = writer.info().unwrap();
    json!({
        "name": format!("peerhost-{}{}", if compat { "compat" } else { "default" }, if fork { "-forked" } else { "" }),
        "compat": compat,
        "publicKey": hex::encode(kp.public_key()),
        "key": info.key.to_hex(),
        "discoveryKey": info.discovery_key.to_hex(),
        "manifest": if compat { Value::Null } else {
            Value::String(hex::encode(to_vec(writer.verifier().unwrap().manifest())))
        },
        "length": info.length,
        "fork": info.fork,
        "blocks": blocks.iter().map(hex::encode).collect::<Vec<_>>(),
        "heads": doc.heads,
        "proofs": doc.proofs,
    })
}

fn js_verify(doc: &Value, expect_reject: bool) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    if let Some(keep) = std::env::var_os("PEERHOST_KEEP_DOC") {
        // Debugging aid: keep the last document handed to JS.
        std::fs::copy(&file, keep).unwrap();
    }
    let file = file.to_str().unwrap();
    let args: Vec<&str> = if expect_reject {
        vec![file, "--expect-reject"]
    } else {
        vec![file]
    };
    node("verify-log.js", &args)
}

fn check(compat: bool, fork: bool) {
    let dir = tempfile::tempdir().unwrap();
    let doc = build(dir.path(), compat, fork);
    let out = js_verify(&doc, false);
    assert!(
        out.status.success(),
        "JS rejected our log:\n{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok:"),
        "unexpected verify-log output: {stdout}"
    );

    // Tamper: one byte of one block in the first proof that carries a block value.
    let mut bad = doc.clone();
    let proof = &mut bad["proofs"][1]["data"];
    let mut bytes = hex::decode(proof.as_str().unwrap()).unwrap();
    let last = bytes.len() - 1;
    bytes[last / 2] ^= 0x40;
    *proof = Value::String(hex::encode(bytes));
    let out = js_verify(&bad, true);
    assert!(
        out.status.success(),
        "JS accepted a tampered proof:\n{}",
        describe(&out)
    );

    // Tamper: one bit of the signature in the first upgrade.
    let mut bad = doc;
    let first = &mut bad["proofs"][0]["data"];
    let mut data: Data = from_prefix(&hex::decode(first.as_str().unwrap()).unwrap()).unwrap();
    let upgrade = data.upgrade.as_mut().expect("the first proof upgrades");
    upgrade.signature.as_mut().expect("signed")[10] ^= 1;
    *first = Value::String(hex::encode(to_vec(&data)));
    let out = js_verify(&bad, true);
    assert!(
        out.status.success(),
        "JS accepted a bad signature:\n{}",
        describe(&out)
    );
}

#[test]
fn js_accepts_a_default_v11_log() {
    check(false, false);
}

#[test]
fn js_accepts_a_compat_log() {
    check(true, false);
}

#[test]
fn js_follows_our_fork() {
    check(false, true);
}
