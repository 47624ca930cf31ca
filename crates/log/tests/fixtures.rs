//! The log against vectors produced by the real JS packages (`fixtures/hypercore-*/`, written by
//! `interop-tests/fixtures/generate.js`; the format is in `fixtures/README.md`).
//!
//! - `manifests.json`: every manifest decodes (or fails) as in JS, re-encodes and hashes alike;
//! - `crypto.json`: leaf/parent/tree hashes, default manifests and keys;
//! - `cores.json`: for each core we rebuild the writer from its blocks and check every head
//!   (tree hash, roots, signable, and our signature equal to JS's byte for byte); for every
//!   proof we decode and re-encode the request and the `data` reply, build the same reply
//!   ourselves from the writer at that head (byte for byte), and replay the replies into
//!   replicas that start with only the key, as JS did, reorgs included.

use std::collections::BTreeMap;
use std::path::PathBuf;

use peerhost_encoding::{from_prefix, to_vec};
use peerhost_ids::{Key, KeyPair, verify_signature};
use peerhost_log::manifest::{Manifest, Prologue, Signer};
use peerhost_log::proof::{
    Data, DataBlock, DataHash, DataSeek, DataUpgrade, Request, RequestBlock, RequestSeek,
    RequestUpgrade,
};
use peerhost_log::signature::MultiSignature;
use peerhost_log::{Node, Reorg, Tree, Truncation, Verifier, hash};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("no fixtures at {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hypercore-"))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .unwrap_or_else(|| panic!("no fixtures/hypercore-* directory in {}", root.display()))
}

fn load(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("not a hex string: {v}")),
    )
    .unwrap()
}

fn fixed<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().unwrap()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn opt<T>(v: &Value, f: impl FnOnce(&Value) -> T) -> Option<T> {
    if v.is_null() { None } else { Some(f(v)) }
}

fn node(v: &Value) -> Node {
    Node {
        index: num(&v["index"]),
        size: num(&v["size"]),
        hash: fixed(&v["hash"]),
    }
}

fn nodes(v: &Value) -> Vec<Node> {
    v.as_array().unwrap().iter().map(node).collect()
}

fn manifest_from_json(d: &Value) -> Manifest {
    assert_eq!(d["hash"], "blake2b");
    Manifest {
        version: num(&d["version"]),
        allow_patch: d["allowPatch"].as_bool().unwrap(),
        quorum: num(&d["quorum"]),
        signers: d["signers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["signature"], "ed25519");
                Signer {
                    namespace: fixed(&s["namespace"]),
                    public_key: fixed(&s["publicKey"]),
                    ..Signer::ed25519([0; 32])
                }
            })
            .collect(),
        prologue: opt(&d["prologue"], |p| Prologue {
            hash: fixed(&p["hash"]),
            length: num(&p["length"]),
        }),
        linked: opt(&d["linked"], |l| {
            l.as_array().unwrap().iter().map(fixed).collect()
        }),
        user_data: opt(&d["userData"], bytes),
        ..Manifest::default_signer([0; 32])
    }
}

fn request_from_json(r: &Value) -> Request {
    let block = |b: &Value| RequestBlock {
        index: num(&b["index"]),
        nodes: num(&b["nodes"]),
    };
    Request {
        id: num(&r["id"]),
        fork: num(&r["fork"]),
        block: opt(&r["block"], block),
        hash: opt(&r["hash"], block),
        seek: opt(&r["seek"], |s| RequestSeek {
            bytes: num(&s["bytes"]),
            padding: num(&s["padding"]),
        }),
        upgrade: opt(&r["upgrade"], |u| RequestUpgrade {
            start: num(&u["start"]),
            length: num(&u["length"]),
        }),
        manifest: r["manifest"].as_bool().unwrap(),
        priority: num(&r["priority"]),
    }
}

fn data_from_json(d: &Value) -> Data {
    Data {
        request: num(&d["request"]),
        fork: num(&d["fork"]),
        block: opt(&d["block"], |b| DataBlock {
            index: num(&b["index"]),
            value: bytes(&b["value"]),
            nodes: nodes(&b["nodes"]),
        }),
        hash: opt(&d["hash"], |h| DataHash {
            index: num(&h["index"]),
            nodes: nodes(&h["nodes"]),
        }),
        seek: opt(&d["seek"], |s| DataSeek {
            bytes: num(&s["bytes"]),
            nodes: nodes(&s["nodes"]),
        }),
        upgrade: opt(&d["upgrade"], |u| DataUpgrade {
            start: num(&u["start"]),
            length: num(&u["length"]),
            nodes: nodes(&u["nodes"]),
            additional_nodes: nodes(&u["additionalNodes"]),
            signature: opt(&u["signature"], bytes),
        }),
        manifest: opt(&d["manifest"], |m| from_prefix(&bytes(m)).unwrap()),
    }
}

#[test]
fn manifests_match_js() {
    let doc = load("manifests.json");
    let list = doc["manifests"].as_array().unwrap();
    assert!(list.len() >= 30);
    for m in list {
        let name = m["name"].as_str().unwrap();
        let encoded = bytes(&m["encoded"]);
        let decoded = from_prefix::<Manifest>(&encoded);
        if m["error"].as_bool().unwrap() {
            assert!(
                decoded.is_err(),
                "{name}: JS rejects it, we decoded {decoded:?}"
            );
            continue;
        }
        let decoded = decoded.unwrap_or_else(|e| panic!("{name}: JS accepts it, we fail: {e}"));
        assert_eq!(decoded, manifest_from_json(&m["decoded"]), "{name}");
        let canonical = m["canonical"].as_bool().unwrap();
        let expected = if canonical {
            encoded.clone()
        } else {
            bytes(&m["reencoded"])
        };
        assert_eq!(
            hex::encode(to_vec(&decoded)),
            hex::encode(expected),
            "{name}"
        );
        assert_eq!(
            hex::encode(decoded.hash()),
            m["hash"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            decoded.validate().is_ok(),
            m["semanticValid"].as_bool().unwrap(),
            "{name}: {:?}",
            decoded.validate()
        );
    }
}

#[test]
fn crypto_matches_js() {
    let doc = load("crypto.json");
    for l in doc["hashes"]["leaves"].as_array().unwrap() {
        assert_eq!(
            hash::leaf(&bytes(&l["data"])),
            fixed::<32>(&l["hash"]),
            "{}",
            l["name"]
        );
    }
    for p in doc["hashes"]["parents"].as_array().unwrap() {
        let (l, r) = (node(&p["left"]), node(&p["right"]));
        let n = Node::parent(num(&p["index"]), &l, &r);
        assert_eq!(n.size, num(&p["size"]), "{}", p["name"]);
        assert_eq!(n.hash, fixed::<32>(&p["hash"]), "{}", p["name"]);
        assert_eq!(hash::parent(&r, &l), n.hash, "{}: order", p["name"]);
    }
    for t in doc["hashes"]["trees"].as_array().unwrap() {
        assert_eq!(
            hash::tree(&nodes(&t["roots"])),
            fixed::<32>(&t["hash"]),
            "{}",
            t["name"]
        );
    }
    for k in doc["keyPairs"].as_array().unwrap() {
        let kp = KeyPair::from_seed(&fixed(&k["seed"]));
        assert_eq!(kp.public_key(), fixed::<32>(&k["publicKey"]));
        let m = Manifest::default_signer(kp.public_key());
        assert_eq!(to_vec(&m), bytes(&k["defaultManifest"]));
        assert_eq!(m.hash(), fixed::<32>(&k["defaultKey"]));
        assert_eq!(
            Verifier::from_manifest(m).key(),
            Key(fixed(&k["defaultKey"]))
        );
    }
}

/// A writer (or replica) head with the nodes it stores.
#[derive(Debug, Clone, Default)]
struct State {
    tree: Tree,
    nodes: BTreeMap<u64, Node>,
}

impl State {
    fn put(&mut self, nodes: &[Node]) {
        for n in nodes {
            self.nodes.insert(n.index, *n);
        }
    }

    fn cut(&mut self, t: &Truncation) {
        self.nodes
            .retain(|i, _| !t.nodes.contains(i) && !t.parents.contains(i));
    }
}

/// A JS-like replica: starts with the key only, learns the manifest from the wire.
#[derive(Debug, Default)]
struct Replica {
    state: State,
    manifest: Option<Manifest>,
    reorg: Option<Reorg>,
    blocks: BTreeMap<u64, Vec<u8>>,
}

struct Core {
    name: String,
    compat: bool,
    key: Key,
    key_pair: KeyPair,
    verifier: Verifier,
    manifest: Option<Manifest>,
    /// Block contents per fork: the final blocks, plus every value a proof carried.
    blocks: BTreeMap<(u64, u64), Vec<u8>>,
    final_fork: u64,
}

impl Core {
    fn block(&self, fork: u64, index: u64) -> Vec<u8> {
        // Blocks below a truncation point are shared by the forks, so the final blocks stand
        // in for those no fork-specific proof carried (the head checks catch a wrong guess).
        self.blocks
            .get(&(fork, index))
            .or_else(|| self.blocks.get(&(self.final_fork, index)))
            .unwrap_or_else(|| panic!("{}: no content for block {index} at fork {fork}", self.name))
            .clone()
    }
}

fn open_core(c: &Value) -> Core {
    let name = c["name"].as_str().unwrap().to_owned();
    let compat = c["compat"].as_bool().unwrap();
    let key = Key(fixed(&c["key"]));
    let key_pair = KeyPair::from_seed(&fixed(&c["seed"]));
    assert_eq!(
        key_pair.secret_key().to_vec(),
        bytes(&c["secretKey"]),
        "{name}"
    );
    assert_eq!(
        key.discovery_key().0,
        fixed::<32>(&c["discoveryKey"]),
        "{name}"
    );
    let (verifier, manifest) = if compat {
        assert_eq!(
            key.0,
            key_pair.public_key(),
            "{name}: compat key is the public key"
        );
        assert!(c["manifest"].is_null());
        (Verifier::compat(key.0), None)
    } else {
        let m: Manifest = from_prefix(&bytes(&c["manifest"])).unwrap();
        assert_eq!(m.hash(), fixed::<32>(&c["manifestHash"]), "{name}");
        assert_eq!(m, Manifest::default_signer(key_pair.public_key()), "{name}");
        (Verifier::new(key, m.clone()).unwrap(), Some(m))
    };
    assert_eq!(verifier.key(), key);
    let final_fork = num(&c["fork"]);
    let mut blocks = BTreeMap::new();
    for (i, b) in c["blocks"].as_array().unwrap().iter().enumerate() {
        blocks.insert((final_fork, i as u64), bytes(b));
    }
    for p in c["proofs"].as_array().unwrap() {
        if let Some(b) = p["decoded"]["block"].as_object() {
            let index = num(&b["index"]);
            blocks.insert((num(&p["atFork"]), index), bytes(&b["value"]));
        }
    }
    Core {
        name,
        compat,
        key,
        key_pair,
        verifier,
        manifest,
        blocks,
        final_fork,
    }
}

/// Replay the writer's history: every head, checked against JS. Returns the writer at each.
fn writer_heads(core: &Core, c: &Value) -> BTreeMap<(u64, u64), State> {
    let mut out = BTreeMap::new();
    let mut w = State::default();
    for h in c["heads"].as_array().unwrap() {
        let (length, fork) = (num(&h["length"]), num(&h["fork"]));
        let what = format!("{} head {length}@{fork}", core.name);
        if fork != w.tree.fork() {
            let cut = w.tree.truncate(length, fork, &mut w.nodes).unwrap();
            w.cut(&cut);
        } else {
            let new: Vec<Vec<u8>> = (w.tree.length()..length)
                .map(|i| core.block(fork, i))
                .collect();
            let appended = w.tree.append(&new);
            w.put(&appended);
        }
        assert_eq!(w.tree.length(), length, "{what}");
        assert_eq!(w.tree.byte_length(), num(&h["byteLength"]), "{what}");
        assert_eq!(w.tree.roots(), &nodes(&h["roots"])[..], "{what}: roots");
        assert_eq!(
            hex::encode(w.tree.hash()),
            h["treeHash"].as_str().unwrap(),
            "{what}"
        );
        let signable = if core.compat {
            w.tree.signable_compat().to_vec()
        } else {
            w.tree.signable(&core.verifier.manifest_hash()).to_vec()
        };
        assert_eq!(
            hex::encode(&signable),
            h["signable"].as_str().unwrap(),
            "{what}"
        );
        // JS's signature verifies under our rules ...
        let js_sig = bytes(&h["signature"]);
        assert!(
            core.verifier.verify(&w.tree, Some(&js_sig)),
            "{what}: JS signature"
        );
        let raw: [u8; 64] = fixed(&h["rawSignature"]);
        assert!(
            verify_signature(&core.key_pair.public_key(), &signable, &raw),
            "{what}"
        );
        if !core.compat {
            assert_eq!(
                to_vec(&MultiSignature::single(raw)),
                js_sig,
                "{what}: multisig"
            );
        }
        // ... and ours is the same bytes (Ed25519 is deterministic).
        w.tree.sign(&core.verifier, &core.key_pair).unwrap();
        assert_eq!(
            hex::encode(w.tree.signature().unwrap()),
            hex::encode(&js_sig),
            "{what}: our signature"
        );
        out.insert((length, fork), w.clone());
    }
    out
}

/// Apply one reply to a replica the way JS's replicator does; returns the verified block.
fn apply(core: &Core, r: &mut Replica, data: &Data, what: &str) {
    let offered = data.manifest.as_ref();
    // > if we got a manifest AND its strictly a non compat one, lets store it
    if let (Some(m), None, false) = (offered, &r.manifest, core.compat) {
        if m.hash() == core.key.0 {
            r.manifest = Some(m.clone());
        }
    }
    let verifier = Verifier::resolve(core.key, r.manifest.as_ref(), offered)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut verified_block = None;
    if data.fork > r.state.tree.fork() || r.reorg.is_some() {
        // The reorg path (replicator.js `_onreorgdata`).
        if data.upgrade.is_some() {
            let reorg = r
                .state
                .tree
                .verify_reorg(data, &verifier, &mut r.state.nodes)
                .unwrap_or_else(|e| panic!("{what}: reorg refused: {e} ({})", e.code()));
            r.reorg = Some(reorg);
        } else {
            let reorg = r.reorg.as_mut().expect("hash round without a reorg");
            reorg
                .update(data, &mut r.state.nodes)
                .unwrap_or_else(|e| panic!("{what}: reorg round refused: {e}"));
        }
        if r.reorg.as_ref().is_some_and(Reorg::finished) {
            let (head, nodes, ancestors) = r.reorg.take().unwrap().into_parts();
            let cut = Truncation::between(ancestors, r.state.tree.length());
            r.state.cut(&cut);
            r.blocks.retain(|i, _| *i < ancestors);
            r.state.put(&nodes);
            r.state.tree = head;
        }
    } else {
        let v = r
            .state
            .tree
            .verify(data, &verifier, &mut r.state.nodes)
            .unwrap_or_else(|e| panic!("{what}: refused: {e} ({})", e.code()));
        r.state.put(&v.nodes);
        if let Some(h) = v.head {
            r.state.tree = h;
        }
        verified_block = v.block;
    }
    if let Some(b) = verified_block {
        assert_eq!(
            b.value,
            core.block(r.state.tree.fork(), b.index),
            "{what}: block value"
        );
        r.blocks.insert(b.index, b.value);
    }
}

fn check_core(c: &Value) {
    let core = open_core(c);
    let heads = writer_heads(&core, c);
    let mut replicas: BTreeMap<String, Replica> = BTreeMap::new();
    let proofs = c["proofs"].as_array().unwrap();
    assert!(!proofs.is_empty());
    for p in proofs {
        let what = format!("{} / {} / {}", core.name, p["peer"], p["name"]);
        // The request: decodes to what JS built, re-encodes to the same bytes.
        let req_bytes = bytes(&p["requestEncoded"]);
        let req: Request = from_prefix(&req_bytes).unwrap();
        assert_eq!(req, request_from_json(&p["request"]), "{what}: request");
        assert_eq!(to_vec(&req), req_bytes, "{what}: request bytes");
        // The reply: decodes to what JS decoded, re-encodes to the same bytes.
        let data_bytes = bytes(&p["data"]);
        let data: Data = from_prefix(&data_bytes).unwrap();
        assert_eq!(data, data_from_json(&p["decoded"]), "{what}: data");
        assert_eq!(
            hex::encode(to_vec(&data)),
            hex::encode(&data_bytes),
            "{what}: data bytes"
        );

        // Our writer at that head answers with the same bytes.
        let at = (num(&p["atLength"]), num(&p["atFork"]));
        let mut w = heads
            .get(&at)
            .unwrap_or_else(|| panic!("{what}: no head {at:?}"))
            .clone();
        let proof = w
            .tree
            .proof(&req, &mut w.nodes)
            .unwrap_or_else(|e| panic!("{what}: our proof failed: {e}"));
        let value = proof.block.as_ref().map(|(i, _)| core.block(at.1, *i));
        let manifest = if req.manifest && !core.compat {
            core.manifest.clone()
        } else {
            None
        };
        let ours = proof.into_data(value, manifest).unwrap();
        assert_eq!(
            hex::encode(to_vec(&ours)),
            hex::encode(&data_bytes),
            "{what}: our reply differs\nours: {ours:#?}\nJS:   {data:#?}"
        );

        // A replica in the requester's state accepts it, ending where JS's did.
        let r = replicas
            .entry(p["peer"].as_str().unwrap().to_owned())
            .or_default();
        let before = (num(&p["before"]["length"]), num(&p["before"]["fork"]));
        assert_eq!(
            (r.state.tree.length(), r.state.tree.fork()),
            before,
            "{what}: before"
        );
        apply(&core, r, &data, &what);
        let after = (num(&p["after"]["length"]), num(&p["after"]["fork"]));
        assert_eq!(
            (r.state.tree.length(), r.state.tree.fork()),
            after,
            "{what}: after"
        );
        if r.reorg.is_none() && r.state.tree.length() > 0 {
            let head = &heads[&(r.state.tree.length(), r.state.tree.fork())];
            assert_eq!(
                r.state.tree.hash(),
                head.tree.hash(),
                "{what}: replica head"
            );
        }
    }
}

#[test]
fn cores_match_js() {
    let doc = load("cores.json");
    let cores = doc["cores"].as_array().unwrap();
    let names: Vec<&str> = cores.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "compat", "forked"]);
    for c in cores {
        check_core(c);
    }
}
