//! The vectors of `fixtures/bee/` (written by the real hyperbee, see its README): for every
//! scenario, our writer given the same operations appends the same blocks, byte for byte, and
//! our reader, over JS's blocks, gives the same answers to the same lookups and walks.

use std::path::PathBuf;

use peerhost_bee::{Batch, Bee, Blocks, Config, Entry, Metadata, Range, Sub};
use serde_json::Value;

fn doc() -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/bee");
    let sub = std::fs::read_dir(&dir)
        .expect("fixtures/bee: run `node interop-tests/fixtures/generate.js fixtures`")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a fixtures/bee/hyperbee-<version> directory");
    let text = std::fs::read_to_string(sub.join("scenarios.json")).expect("scenarios.json");
    serde_json::from_str(&text).expect("json")
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn opt_hex(s: &str) -> Option<Vec<u8>> {
    (s != "-").then(|| unhex(s))
}

/// The cas rules of the generator.
fn cas_rule(name: &str) -> Option<impl FnMut(&Entry, &Entry) -> bool> {
    let rule = name.to_string();
    (name != "-").then_some(move |prev: &Entry, next: &Entry| match rule.as_str() {
        "never" => false,
        "always" => true,
        "greater" => {
            next.value.clone().unwrap_or_default() > prev.value.clone().unwrap_or_default()
        }
        "prev-even" => prev.seq % 2 == 0,
        r => panic!("unknown cas rule {r}"),
    })
}

fn sub_of(path: &Value) -> Sub {
    let mut s: Option<Sub> = None;
    for p in path.as_array().expect("path") {
        let name = unhex(p["name"].as_str().expect("name"));
        let sep = p["sep"].as_str().map(unhex);
        s = Some(match (s, sep) {
            (None, None) => Sub::new(&name),
            (None, Some(sep)) => Sub::with_sep(&name, &sep),
            (Some(s), None) => s.sub(&name),
            (Some(s), Some(sep)) => s.sub_with_sep(&name, &sep),
        });
    }
    s.expect("a non-empty path")
}

/// Run one op string on a batch.
fn run<B: Blocks>(b: &mut Batch<'_, B>, op: &str, sub: Option<&Sub>) {
    let parts: Vec<&str> = op.split(' ').collect();
    let key = unhex(parts[1]);
    let key = sub.map_or(key.clone(), |s| s.key(&key));
    match parts[0] {
        "put" => {
            let value = opt_hex(parts[2]);
            let mut cas = cas_rule(parts[3]);
            let cas = cas
                .as_mut()
                .map(|c| c as &mut dyn FnMut(&Entry, &Entry) -> bool);
            b.put_with(&key, value.as_deref(), cas).expect("put");
        }
        "del" => {
            let mut cas = cas_rule(parts[2]);
            let cas = cas
                .as_mut()
                .map(|c| c as &mut dyn FnMut(&Entry, &Entry) -> bool);
            b.del_with(&key, cas).expect("del");
        }
        o => panic!("unknown op {o}"),
    }
}

fn range_of(r: &Value) -> Range {
    let k = |name: &str| r[name].as_str().map(unhex);
    Range {
        gt: k("gt"),
        gte: k("gte"),
        lt: k("lt"),
        lte: k("lte"),
        reverse: r["reverse"].as_bool().unwrap_or(false),
        limit: r["limit"].as_u64(),
    }
}

fn entry_string(e: &Entry) -> String {
    format!(
        "{} {} {}",
        e.seq,
        hex::encode(&e.key),
        e.value.as_ref().map_or("-".to_string(), hex::encode)
    )
}

fn config_of(sc: &Value) -> Config {
    let o = &sc["options"];
    let mut c =
        Config::default().with_always_duplicate(o["alwaysDuplicate"].as_bool().unwrap_or(true));
    if o["metadata"].is_object() {
        c = c.with_metadata(Metadata {
            content_feed: o["metadata"]["contentFeed"].as_str().map(unhex),
            user_data: o["metadata"]["userData"].as_str().map(unhex),
        });
    }
    c
}

#[test]
fn writer_appends_the_blocks_js_appends() {
    let doc = doc();
    let scenarios = doc["scenarios"].as_array().expect("scenarios");
    assert!(scenarios.len() >= 10);
    for sc in scenarios {
        let name = sc["name"].as_str().expect("name");
        let subs: Vec<Sub> = sc["subs"]
            .as_array()
            .map(|a| a.iter().map(|s| sub_of(&s["path"])).collect())
            .unwrap_or_default();
        let mut bee = Bee::with_config(Vec::<Vec<u8>>::new(), config_of(sc));
        let lengths = sc["lengths"].as_array().expect("lengths");
        for (i, op) in sc["ops"].as_array().expect("ops").iter().enumerate() {
            let mut b = bee.batch();
            if let Some(list) = op["batch"].as_array() {
                for o in list {
                    run(&mut b, o.as_str().expect("op"), None);
                }
            } else if let Some(s) = op["sub"].as_u64() {
                run(
                    &mut b,
                    op["op"].as_str().expect("op"),
                    Some(&subs[s as usize]),
                );
            } else {
                run(&mut b, op.as_str().expect("op"), None);
            }
            b.flush().expect("flush");
            assert_eq!(
                bee.log().len() as u64,
                lengths[i].as_u64().expect("length"),
                "{name}: length after op {i} ({op})"
            );
        }
        let want = sc["blocks"].as_array().expect("blocks");
        assert_eq!(bee.log().len(), want.len(), "{name}: block count");
        for (seq, (ours, theirs)) in bee.log().iter().zip(want).enumerate() {
            assert_eq!(
                hex::encode(ours),
                theirs.as_str().expect("hex"),
                "{name}: block {seq} differs"
            );
        }
    }
}

#[test]
fn reader_answers_as_js_over_js_blocks() {
    let doc = doc();
    for sc in doc["scenarios"].as_array().expect("scenarios") {
        let name = sc["name"].as_str().expect("name");
        let blocks: Vec<Vec<u8>> = sc["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .map(|b| unhex(b.as_str().expect("hex")))
            .collect();
        let subs: Vec<Sub> = sc["subs"]
            .as_array()
            .map(|a| a.iter().map(|s| sub_of(&s["path"])).collect())
            .unwrap_or_default();
        let mut bee = Bee::new(blocks);
        let header = bee.header().expect("header").expect("a header");
        assert!(header.is_hyperbee());
        let mut asked = 0;
        for q in sc["questions"].as_array().expect("questions") {
            let version = q["version"].as_u64().unwrap_or(bee.version());
            let sub = q["sub"].as_u64().map(|i| &subs[i as usize]);
            if let Some(k) = q["get"].as_str() {
                let key = unhex(k);
                let got = match sub {
                    Some(s) => bee
                        .get_at(version, &s.key(&key))
                        .expect("get")
                        .and_then(|e| s.strip(e)),
                    None => bee.get_at(version, &key).expect("get"),
                };
                let got = got.as_ref().map(entry_string);
                assert_eq!(
                    got.as_deref(),
                    q["result"].as_str(),
                    "{name}: get {k} at {version}"
                );
            } else {
                let mut range = range_of(&q["range"]);
                if let Some(s) = sub {
                    range = s.range(range);
                }
                let mut it = bee.iter_at(version, range);
                let mut seqs = Vec::new();
                while let Some(e) = it.next(&mut bee).expect("walk") {
                    if let Some(s) = sub {
                        assert!(
                            s.strip(e.clone()).is_some(),
                            "{name}: {e:?} outside the sub"
                        );
                    }
                    seqs.push(e.seq.to_string());
                }
                assert_eq!(
                    seqs.join(" "),
                    q["result"].as_str().expect("result"),
                    "{name}: range {} at {version}",
                    q["range"]
                );
            }
            asked += 1;
        }
        assert!(asked > 50, "{name}: only {asked} questions");
    }
}

#[test]
fn sparse_reader_asks_for_the_blocks_it_needs() {
    // The `random` scenario's log, with no block held at first: every lookup stops with the
    // block it needs; fetching exactly those gives JS's answer, touching O(log n) blocks.
    let doc = doc();
    let sc = doc["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .find(|s| s["name"] == "random")
        .expect("random");
    let full: Vec<Vec<u8>> = sc["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| unhex(b.as_str().expect("hex")))
        .collect();
    let n = full.len();
    let mut bee = Bee::new(vec![None::<Vec<u8>>; n]);
    let mut fetched = 0;
    for q in sc["questions"].as_array().expect("questions") {
        if q["version"].as_u64().is_some() {
            continue;
        }
        let Some(k) = q["get"].as_str() else { continue };
        let key = unhex(k);
        let got = loop {
            match bee.get(&key) {
                Ok(e) => break e,
                Err(peerhost_bee::Error::Missing { seq }) => {
                    bee.log_mut()[seq as usize] = Some(full[seq as usize].clone());
                    fetched += 1;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(
            got.as_ref().map(entry_string).as_deref(),
            q["result"].as_str()
        );
    }
    assert!(fetched < n / 2, "fetched {fetched} of {n} blocks");

    // A walk resumes after each missing block, from where it stopped.
    let mut bee = Bee::new(vec![None::<Vec<u8>>; n]);
    let mut it = bee.iter(Range::all().reverse().limit(20));
    let mut seqs = Vec::new();
    loop {
        match it.next(&mut bee) {
            Ok(Some(e)) => seqs.push(e.seq),
            Ok(None) => break,
            Err(peerhost_bee::Error::Missing { seq }) => {
                bee.log_mut()[seq as usize] = Some(full[seq as usize].clone());
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut all = Bee::new(full);
    let want: Vec<u64> = all
        .range(Range::all().reverse().limit(20))
        .expect("range")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, want);
}
