//! The gateway over real stores: every route through the router, the range proofs against
//! the signed heads (checked with the `log` crate's verifier), limits, a real TCP server, and
//! the golden responses `web/test/` verifies in JavaScript.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use peerhost_gateway::range::{self, TrustedHead};
use peerhost_gateway::{
    Config, Cores, LogSource, RangeError, RangeQuery, ServeOptions, SignedHead, SourceError,
};
use peerhost_ids::{Key, KeyPair};
use peerhost_log::{Manifest, Node, Tree, Verifier};
use peerhost_store::{CreateOptions, Store};
use serde_json::Value;
use tower::ServiceExt;

/// Block `i` of the test logs: a small JSON post, so `web/` can render the golden logs.
fn post(log: &str, i: usize) -> Vec<u8> {
    let body = "lorem ipsum ".repeat(i % 5);
    format!(r#"{{"log":"{log}","n":{i},"title":"post {i}","body":"{body}"}}"#).into_bytes()
}

struct Fixture {
    _dir: tempfile::TempDir,
    cores: Cores,
    keys: BTreeMap<&'static str, Key>,
}

/// Three logs: `default` (v11, seed 11, 21 blocks), `compat` (seed 12, 9 blocks), `forked`
/// (seed 13: 10 blocks, truncated to 6, then 3 more on fork 1).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cores = Cores::new();
    let mut keys = BTreeMap::new();
    for (name, seed, compat, n) in [
        ("default", 11u8, false, 21usize),
        ("compat", 12, true, 9),
        ("forked", 13, false, 10),
    ] {
        let opts = CreateOptions::default()
            .compat(compat)
            .key_pair(KeyPair::from_seed(&[seed; 32]));
        let mut core = store.create(name, opts).unwrap();
        let blocks: Vec<Vec<u8>> = (0..n).map(|i| post(name, i)).collect();
        core.append(&blocks).unwrap();
        keys.insert(name, core.key());
        cores.insert_core(core);
    }
    Fixture {
        _dir: dir,
        cores,
        keys,
    }
}

fn app(f: &Fixture, config: Config) -> axum::Router {
    peerhost_gateway::router(f.cores.clone(), config)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &axum::Router, uri: &str) -> Reply {
    call(app, "GET", uri).await
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn hash32(v: &Value) -> [u8; 32] {
    unhex(v).try_into().unwrap()
}

/// Check a head JSON as a browser would, with the `log` crate: the manifest hashes to the key
/// (or the key is the compat signer), the roots hash to the tree hash, the signature verifies.
fn check_head(head: &Value) -> TrustedHead {
    let key = Key(hash32(&head["key"]));
    let verifier = match &head["manifest"] {
        Value::Null => Verifier::compat(key.0),
        m => {
            let manifest: Manifest = peerhost_encoding::from_slice(&unhex(m)).unwrap();
            Verifier::new(key, manifest).unwrap()
        }
    };
    let roots: Vec<Node> = head["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Node {
            index: r["index"].as_u64().unwrap(),
            size: r["size"].as_u64().unwrap(),
            hash: hash32(&r["hash"]),
        })
        .collect();
    let length = head["length"].as_u64().unwrap();
    let fork = head["fork"].as_u64().unwrap();
    let tree = Tree::from_roots(length, fork, roots, None).unwrap();
    assert_eq!(tree.hash(), hash32(&head["treeHash"]));
    assert_eq!(tree.byte_length(), head["byteLength"].as_u64().unwrap());
    let signature = unhex(&head["signature"]);
    assert!(verifier.verify(&tree, Some(&signature)), "head signature");
    TrustedHead {
        fork,
        length,
        tree_hash: tree.hash(),
    }
}

#[tokio::test]
async fn heads_verify_against_their_keys() {
    let f = fixture();
    let app = app(&f, Config::default());
    let list = get(&app, "/v1/logs").await;
    assert_eq!(list.status, StatusCode::OK);
    let logs = list.json();
    assert_eq!(logs["logs"].as_array().unwrap().len(), 3);
    assert_eq!(logs["truncated"], false);
    for (name, key) in &f.keys {
        // Hex and z-base32 both name the log.
        for id in [key.to_hex(), key.to_z32()] {
            let res = get(&app, &format!("/v1/logs/{id}/head")).await;
            assert_eq!(res.status, StatusCode::OK, "{name}");
            assert_eq!(res.header(header::CACHE_CONTROL), "public, max-age=5");
            assert_eq!(res.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
            let head = res.json();
            check_head(&head);
            let sig_len = head["signature"].as_str().unwrap().len() / 2;
            if *name == "compat" {
                assert_eq!(head["manifest"], Value::Null);
                assert_eq!(sig_len, 64);
            } else {
                assert_eq!(head["manifest"].as_str().unwrap().len(), 140);
                assert_eq!(sig_len, 68);
            }
        }
    }
}

#[tokio::test]
async fn ranges_verify_and_are_immutable_when_addressed() {
    let f = fixture();
    let app = app(&f, Config::default());
    let key = f.keys["default"].to_hex();
    let head = check_head(&get(&app, &format!("/v1/logs/{key}/head")).await.json());
    for (s, e) in [(0, 1), (0, 21), (5, 6), (3, 17), (20, 21), (16, 20)] {
        let url = format!("/v1/logs/{key}/blocks?start={s}&end={e}&length=21&fork=0");
        let res = get(&app, &url).await;
        assert_eq!(res.status, StatusCode::OK, "{url}");
        assert_eq!(
            res.header(header::CACHE_CONTROL),
            peerhost_gateway::IMMUTABLE
        );
        assert_eq!(
            res.header(header::CONTENT_TYPE),
            peerhost_gateway::RANGE_PROOF_TYPE
        );
        let proof = range::verify(&res.body, &head, s..e).unwrap();
        let want: Vec<Vec<u8>> = (s..e).map(|i| post("default", i as usize)).collect();
        assert_eq!(proof.blocks, want);
        assert_eq!(
            proof.nodes.len(),
            range::proof_indices(s, e, 21).len(),
            "minimal"
        );
    }
    // Without length and fork: the current head, not cacheable for long.
    let res = get(&app, &format!("/v1/logs/{key}/blocks?start=2&end=4")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(header::CACHE_CONTROL), "no-cache");
    range::verify(&res.body, &head, 2..4).unwrap();
    // HEAD works too, without a body.
    let res = call(
        &app,
        "HEAD",
        &format!("/v1/logs/{key}/blocks?start=2&end=4"),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.is_empty());
}

#[tokio::test]
async fn sets_verify_serve_prefixes_and_are_immutable_when_addressed() {
    use peerhost_gateway::set::{self, Runs};
    let f = fixture();
    let app = app(&f, Config::default());
    let key = f.keys["default"].to_hex();
    let head = check_head(&get(&app, &format!("/v1/logs/{key}/head")).await.json());
    for picks in [
        vec![0],
        vec![20],
        vec![1, 4, 5, 9, 17],
        (0..21).collect::<Vec<u64>>(),
    ] {
        let runs = Runs::from_indices(picks.clone()).unwrap();
        let url = format!(
            "/v1/logs/{key}/set?runs={}&length=21&fork=0",
            runs.to_query()
        );
        let res = get(&app, &url).await;
        assert_eq!(res.status, StatusCode::OK, "{url}");
        assert_eq!(
            res.header(header::CACHE_CONTROL),
            peerhost_gateway::IMMUTABLE
        );
        assert_eq!(
            res.header(header::CONTENT_TYPE),
            peerhost_gateway::api::SET_PROOF_TYPE
        );
        let proof = set::verify(&res.body, &head, &runs).unwrap();
        let got: Vec<(u64, Vec<u8>)> = proof.indexed().map(|(i, b)| (i, b.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> = picks
            .iter()
            .map(|&i| (i, post("default", i as usize)))
            .collect();
        assert_eq!(got, want);
        // Kept: the same bytes again.
        assert_eq!(get(&app, &url).await.body, res.body);
    }
    // Without length and fork: the current head, no-cache.
    let runs = Runs::from_indices([2, 7]).unwrap();
    let res = get(
        &app,
        &format!("/v1/logs/{key}/set?runs={}", runs.to_query()),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(header::CACHE_CONTROL), "no-cache");
    set::verify(&res.body, &head, &runs).unwrap();
    // Caps: a prefix, the last run cut short.
    let capped =
        peerhost_gateway::router(f.cores.clone(), Config::default().range_caps(3, 1 << 20));
    let runs = Runs::from_indices([1, 4, 5, 6, 9]).unwrap();
    let res = get(
        &capped,
        &format!(
            "/v1/logs/{key}/set?runs={}&length=21&fork=0",
            runs.to_query()
        ),
    )
    .await;
    let p = set::verify(&res.body, &head, &runs).unwrap();
    assert_eq!(p.runs.as_slice(), [(1, 2), (4, 6)]);
    // Errors: past the length, a malformed or missing runs, another fork.
    for (q, status) in [
        (
            format!(
                "runs={}&length=21&fork=0",
                Runs::from_indices([21]).unwrap().to_query()
            ),
            400,
        ),
        (
            format!("runs={}", Runs::from_indices([30]).unwrap().to_query()),
            416,
        ),
        ("runs=Bg!".to_owned(), 400),
        ("length=21".to_owned(), 400),
        (format!("runs={}&length=21&fork=1", runs.to_query()), 409),
    ] {
        let res = get(&app, &format!("/v1/logs/{key}/set?{q}")).await;
        assert_eq!(res.status.as_u16(), status, "{q}");
        assert_eq!(res.header(header::CACHE_CONTROL), "no-store");
    }
    // A source that does not serve sets: 404, so clients fall back to ranges.
    let gated = Gated {
        open: Arc::new(AtomicBool::new(true)),
        entered: Arc::new(AtomicUsize::new(0)),
        inner: f.cores.clone(),
    };
    let plain = peerhost_gateway::router(gated, Config::default());
    let res = get(
        &plain,
        &format!(
            "/v1/logs/{key}/set?runs={}&length=21&fork=0",
            runs.to_query()
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn older_heads_stay_provable_after_appends() {
    let f = fixture();
    let app = app(&f, Config::default());
    let key = f.keys["default"];
    let old = check_head(&get(&app, &format!("/v1/logs/{key}/head")).await.json());
    let core = f.cores.get(&key).unwrap();
    core.lock()
        .unwrap()
        .append(&[b"later 1".to_vec(), b"later 2".to_vec()])
        .unwrap();
    let new = check_head(&get(&app, &format!("/v1/logs/{key}/head")).await.json());
    assert_eq!(new.length, 23);
    let url = format!("/v1/logs/{key}/blocks?start=7&end=21&length=21&fork=0");
    let res = get(&app, &url).await;
    range::verify(&res.body, &old, 7..21).unwrap();
    assert!(range::verify(&res.body, &new, 7..21).is_err());
    let res = get(&app, &format!("/v1/logs/{key}/blocks?start=20&end=23")).await;
    let p = range::verify(&res.body, &new, 20..23).unwrap();
    assert_eq!(p.blocks[2], b"later 2");
}

#[tokio::test]
async fn range_caps_serve_a_prefix() {
    let f = fixture();
    let key = f.keys["default"].to_hex();
    let app = app(&f, Config::default().range_caps(4, 1 << 20));
    let head = check_head(&get(&app, &format!("/v1/logs/{key}/head")).await.json());
    let res = get(&app, &format!("/v1/logs/{key}/blocks?start=3&end=21")).await;
    let p = range::verify(&res.body, &head, 3..21).unwrap();
    assert_eq!((p.start, p.end()), (3, 7));
    // A byte cap below one block still serves one block.
    let app = app_with_bytes(&f, 1);
    let res = get(&app, &format!("/v1/logs/{key}/blocks?start=3&end=21")).await;
    let p = range::verify(&res.body, &head, 3..21).unwrap();
    assert_eq!(p.blocks.len(), 1);
}

async fn get_encoded(app: &axum::Router, uri: &str, accept: &str) -> Reply {
    let req = Request::builder()
        .uri(uri)
        .header(header::ACCEPT_ENCODING, accept)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// The body as sent, decoded by its `Content-Encoding`.
fn decoded(r: &Reply) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match r
        .headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap())
    {
        None => out.clone_from(&r.body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(&r.body[..], 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

/// Immutable ranges of text go compressed when the client takes it (br before gzip), decode
/// to the very bytes sent uncompressed, and say `Vary: Accept-Encoding`; kept answers are
/// the same bytes on every request; a range URL of a fork the log left answers 409 even
/// when it was kept.
#[tokio::test]
async fn immutable_ranges_are_kept_and_compressed_by_accept_encoding() {
    let f = fixture();
    let app = app(&f, Config::default());
    let key = f.keys["default"].to_hex();
    let url = format!("/v1/logs/{key}/blocks?start=0&end=21&length=21&fork=0");
    let plain = get(&app, &url).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header(header::VARY), "Accept-Encoding");
    assert!(plain.headers.get(header::CONTENT_ENCODING).is_none());
    for (accept, want) in [
        ("gzip", Some("gzip")),
        ("gzip, deflate, br, zstd", Some("br")),
        ("br;q=0, gzip;q=0.5", Some("gzip")),
        ("*", Some("br")),
        ("identity", None),
        ("br;q=0, gzip;q=0", None),
    ] {
        for round in 0..2 {
            let r = get_encoded(&app, &url, accept).await;
            assert_eq!(r.status, StatusCode::OK);
            let got = r
                .headers
                .get(header::CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap());
            assert_eq!(got, want, "{accept} (round {round})");
            assert_eq!(r.header(header::VARY), "Accept-Encoding");
            assert_eq!(r.header(header::CACHE_CONTROL), peerhost_gateway::IMMUTABLE);
            assert_eq!(decoded(&r), plain.body, "{accept}");
            if want.is_some() {
                assert!(
                    r.body.len() * 10 < plain.body.len() * 6,
                    "{accept}: {}",
                    r.body.len()
                );
            }
        }
    }
    // Following the head: never compressed, never kept (no Vary).
    let r = get_encoded(&app, &format!("/v1/logs/{key}/blocks?start=0&end=21"), "br").await;
    assert_eq!(r.body, plain.body);
    assert!(r.headers.get(header::CONTENT_ENCODING).is_none());
    assert!(r.headers.get(header::VARY).is_none());
    assert_eq!(r.header(header::CACHE_CONTROL), "no-cache");

    // A kept range of fork 0, then the log forks: its URL answers 409.
    let forked = f.keys["forked"];
    let url = format!(
        "/v1/logs/{}/blocks?start=0&end=4&length=10&fork=0",
        forked.to_hex()
    );
    assert_eq!(get(&app, &url).await.status, StatusCode::OK);
    let head_url = format!("/v1/logs/{}/head", forked.to_hex());
    assert_eq!(get(&app, &head_url).await.json()["length"], 10);
    {
        let core = f.cores.get(&forked).unwrap();
        let mut core = core.lock().unwrap();
        core.truncate(6).unwrap();
        core.append(&[post("forked", 100)]).unwrap();
    }
    let r = get_encoded(&app, &url, "br").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "FORK_MISMATCH");
    // Heads follow the log.
    let head = get(&app, &head_url).await.json();
    assert_eq!(
        (head["fork"].as_u64(), head["length"].as_u64()),
        (Some(1), Some(7))
    );
}

fn app_with_bytes(f: &Fixture, bytes: u64) -> axum::Router {
    app(f, Config::default().range_caps(1024, bytes))
}

#[tokio::test]
async fn errors_are_json_with_status_and_no_store() {
    let f = fixture();
    let app = app(&f, Config::default());
    let key = f.keys["forked"];
    // Truncate and grow on fork 1.
    {
        let core = f.cores.get(&key).unwrap();
        let mut core = core.lock().unwrap();
        core.truncate(6).unwrap();
        core.append(&[post("forked", 100)]).unwrap();
    }
    let k = key.to_hex();
    let unknown = Key([7; 32]).to_hex();
    for (uri, status, code) in [
        (
            format!("/v1/logs/{k}/blocks?start=0&end=2&length=7&fork=0"),
            409,
            "FORK_MISMATCH",
        ),
        (
            format!("/v1/logs/{k}/blocks?start=0&end=2&length=10&fork=1"),
            416,
            "LENGTH_UNAVAILABLE",
        ),
        (
            format!("/v1/logs/{k}/blocks?start=6&end=9"),
            416,
            "LENGTH_UNAVAILABLE",
        ),
        (
            format!("/v1/logs/{k}/blocks?start=2&end=2"),
            400,
            "BAD_REQUEST",
        ),
        (format!("/v1/logs/{k}/blocks?start=2"), 400, "BAD_REQUEST"),
        (
            format!("/v1/logs/{k}/blocks?start=2&end=6&length=5&fork=1"),
            400,
            "BAD_RANGE",
        ),
        (
            format!("/v1/logs/{k}/blocks?start=0&end=1&length=281474976710657"),
            400,
            "BAD_REQUEST",
        ),
        (
            format!("/v1/logs/{unknown}/blocks?start=0&end=1"),
            404,
            "UNKNOWN_LOG",
        ),
        (format!("/v1/logs/{unknown}/head"), 404, "UNKNOWN_LOG"),
        ("/v1/logs/nonsense/head".to_owned(), 400, "BAD_REQUEST"),
        ("/v2/whatever".to_owned(), 404, "NOT_FOUND"),
    ] {
        let res = get(&app, &uri).await;
        assert_eq!(res.status.as_u16(), status, "{uri}");
        assert_eq!(res.json()["error"], code, "{uri}");
        assert_eq!(res.header(header::CACHE_CONTROL), "no-store", "{uri}");
        assert_eq!(
            res.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "*",
            "{uri}"
        );
    }
    let res = get(
        &app,
        &format!("/v1/logs/{k}/blocks?start=0&end=2&length=7&fork=0"),
    )
    .await;
    assert_eq!(res.json()["fork"], 1);
    let res = get(&app, &format!("/v1/logs/{k}/blocks?start=6&end=9")).await;
    assert_eq!(res.json()["length"], 7);
    // The new fork serves and verifies.
    let head = check_head(&get(&app, &format!("/v1/logs/{k}/head")).await.json());
    assert_eq!((head.length, head.fork), (7, 1));
    let res = get(
        &app,
        &format!("/v1/logs/{k}/blocks?start=5&end=7&length=7&fork=1"),
    )
    .await;
    let p = range::verify(&res.body, &head, 5..7).unwrap();
    assert_eq!(p.blocks[1], post("forked", 100));
}

#[tokio::test]
async fn cors_preflight_and_peers() {
    let f = fixture();
    let config = Config::default().peers(vec!["https://a.example".into(); 100]);
    let app = app(&f, config);
    let res = call(&app, "OPTIONS", "/v1/logs").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(res.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert_eq!(
        res.header(header::ACCESS_CONTROL_ALLOW_METHODS),
        "GET, HEAD, OPTIONS"
    );
    let res = get(&app, "/v1/peers").await;
    assert_eq!(
        res.json()["peers"].as_array().unwrap().len(),
        peerhost_gateway::MAX_PEERS
    );
}

/// A source whose `head` blocks until the gate opens, counting the calls that entered.
struct Gated {
    open: Arc<AtomicBool>,
    entered: Arc<AtomicUsize>,
    inner: Cores,
}

impl LogSource for Gated {
    fn keys(&self, limit: usize) -> Result<Vec<Key>, SourceError> {
        self.inner.keys(limit)
    }
    fn head(&self, key: &Key) -> Result<Option<SignedHead>, SourceError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        while !self.open.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.inner.head(key)
    }
    fn range(&self, key: &Key, query: &RangeQuery) -> Result<range::RangeProof, RangeError> {
        self.inner.range(key, query)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_concurrency_is_bounded() {
    let f = fixture();
    let open = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicUsize::new(0));
    let source = Gated {
        open: open.clone(),
        entered: entered.clone(),
        inner: f.cores.clone(),
    };
    let app = peerhost_gateway::router(source, Config::default().per_client(2));
    let uri = format!("/v1/logs/{}/head", f.keys["default"].to_hex());
    let request = |ip: [u8; 4]| {
        let mut req = Request::get(&uri).body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::from((ip, 1234))));
        req
    };
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(app.clone().oneshot(request([10, 0, 0, 1]))))
        .collect();
    while entered.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let third = app.clone().oneshot(request([10, 0, 0, 1])).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()[header::RETRY_AFTER], "1");
    // Another client is admitted (it waits on the gate like the others).
    let other = tokio::spawn(app.clone().oneshot(request([10, 0, 0, 2])));
    while entered.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    open.store(true, Ordering::SeqCst);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(other.await.unwrap().unwrap().status(), StatusCode::OK);
    let again = app.clone().oneshot(request([10, 0, 0, 1])).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

/// A request for `uri` on a TCP connection to `addr` from the loopback address `from`, with
/// `X-Forwarded-For: xff` (none when empty); the connection, to read the answer from.
async fn request_from(
    from: [u8; 4],
    addr: std::net::SocketAddr,
    uri: &str,
    xff: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let xff = if xff.is_empty() {
        String::new()
    } else {
        format!("x-forwarded-for: {xff}\r\n")
    };
    let req = format!("GET {uri} HTTP/1.1\r\nhost: x\r\n{xff}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// The status line's code of the answer on `s` (read to its end).
async fn status_of(mut s: tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

/// Issue 11: behind a trusted reverse proxy (127.0.0.1 here) each client named by
/// `X-Forwarded-For` has its own per-client budget, keyed by the right-most untrusted entry;
/// from an untrusted peer (127.0.0.2) the header is ignored, whatever it says. Real TCP
/// connections, loopback only: the forwarded addresses are only keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_forward_clients_and_spoofed_headers_are_ignored() {
    let f = fixture();
    let open = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicUsize::new(0));
    let source = Gated {
        open: open.clone(),
        entered: entered.clone(),
        inner: f.cores.clone(),
    };
    let trusted = peerhost_gateway::TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    let config = Config::default().per_client(1).trusted_proxies(trusted);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(peerhost_gateway::serve(
        listener,
        source,
        config,
        ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let uri = format!("/v1/logs/{}/head", f.keys["default"].to_hex());
    let wait_entered = async |n: usize| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while entered.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} requests never entered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    const PROXY: [u8; 4] = [127, 0, 0, 1];
    const STRANGER: [u8; 4] = [127, 0, 0, 2];
    // Two readers through the proxy: one request in flight each.
    let a = request_from(PROXY, addr, &uri, "203.0.113.1").await;
    wait_entered(1).await;
    let b = request_from(PROXY, addr, &uri, "203.0.113.2").await;
    wait_entered(2).await;
    // The first reader again, with a forged entry to the left: still the first reader.
    let again = request_from(PROXY, addr, &uri, "198.51.100.7, 203.0.113.1").await;
    assert_eq!(status_of(again).await, 429);
    // A trusted hop at the right (a second proxy of ours) is skipped.
    let hops = request_from(PROXY, addr, &uri, "203.0.113.1, 127.0.0.1").await;
    assert_eq!(status_of(hops).await, 429);
    // An untrusted peer is its own address, whatever header it sends.
    let c = request_from(STRANGER, addr, &uri, "203.0.113.3").await;
    wait_entered(3).await;
    let spoofed = request_from(STRANGER, addr, &uri, "203.0.113.4").await;
    assert_eq!(status_of(spoofed).await, 429);
    let spoofed = request_from(STRANGER, addr, &uri, "").await;
    assert_eq!(status_of(spoofed).await, 429);
    // The proxy without a header is a client of its own.
    let own = request_from(PROXY, addr, &uri, "").await;
    wait_entered(4).await;
    assert_eq!(entered.load(Ordering::SeqCst), 4);
    open.store(true, Ordering::SeqCst);
    for s in [a, b, c, own] {
        assert_eq!(status_of(s).await, 200);
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Without trusted proxies (the default) the header counts for nothing: two "readers" behind
/// one address share its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_the_header_is_ignored() {
    let f = fixture();
    let open = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicUsize::new(0));
    let source = Gated {
        open: open.clone(),
        entered: entered.clone(),
        inner: f.cores.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(peerhost_gateway::serve(
        listener,
        source,
        Config::default().per_client(1),
        ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let uri = format!("/v1/logs/{}/head", f.keys["default"].to_hex());
    let a = request_from([127, 0, 0, 1], addr, &uri, "203.0.113.1").await;
    while entered.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = request_from([127, 0, 0, 1], addr, &uri, "203.0.113.2").await;
    assert_eq!(status_of(b).await, 429);
    open.store(true, Ordering::SeqCst);
    assert_eq!(status_of(a).await, 200);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_tcp_and_closes_idle_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let f = fixture();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions::default().idle_timeout(Duration::from_millis(300));
    let server = tokio::spawn(peerhost_gateway::serve(
        listener,
        f.cores.clone(),
        Config::default(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let key = f.keys["compat"].to_hex();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/logs/{key}/blocks?start=0&end=9&length=9&fork=0 HTTP/1.1\r\nhost: x\r\n\
         connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("access-control-allow-origin: *"));
    assert!(text.contains(peerhost_gateway::IMMUTABLE));
    // A silent connection is closed after the idle timeout.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("idle connection closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A gateway on a loopback port over the fixture's logs, until the sender is dropped.
async fn spawn_server(
    f: &Fixture,
    options: ServeOptions,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(peerhost_gateway::serve(
        listener,
        f.cores.clone(),
        Config::default(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop, server)
}

/// Whether a std stream (non-blocking) was closed by the server: EOF or reset, not "would
/// block".
fn closed(mut s: &std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A request head trickled a byte a second, well inside the idle timeout, is cut off by the
/// head deadline counted from its first byte; a client that waits before sending its head
/// whole is answered. (Virtual time: the counts are exact, no wall-clock race.)
#[tokio::test(start_paused = true)]
async fn trickled_request_heads_meet_the_head_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let f = fixture();
    let options = ServeOptions::default()
        .idle_timeout(Duration::from_secs(3))
        .header_timeout(Duration::from_secs(5));
    let (addr, stop, server) = spawn_server(&f, options).await;
    let head = b"GET /v1/logs HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sent = 0;
    let mut buf = [0u8; 256];
    let answer = loop {
        if s.write_all(&head[sent..=sent]).await.is_err() {
            break Vec::new();
        }
        sent += 1;
        tokio::select! {
            r = s.read(&mut buf) => break buf[..r.unwrap_or(0)].to_vec(),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        assert!(sent < head.len(), "the whole head went through");
    };
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // Bytes at 0 s, 1 s, ... 5 s: the deadline falls at 5 s after the first.
    assert!((5..=6).contains(&sent), "closed after {sent} bytes");

    // Waiting (below the idle timeout), then the whole head: answered.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.write_all(head).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    drop(stop);
    server.await.unwrap().unwrap();
}

/// A full gateway closes one idle or half-open connection for each new client instead of
/// making it wait; connections of a client over its cap are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_sheds_half_open_connections_for_new_clients() {
    use std::io::{Read, Write};

    let f = fixture();
    let options = ServeOptions::default()
        .max_connections(4)
        .max_connections_per_ip(2);
    let (addr, stop, server) = spawn_server(&f, options).await;
    let attacker = |from: [u8; 4]| {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind((std::net::Ipv4Addr::from(from), 0).into())
            .unwrap();
        async move {
            let s = sock.connect(addr).await.unwrap();
            let mut s = s.into_std().unwrap();
            s.set_nonblocking(false).unwrap();
            s.write_all(b"GET /v1/logs HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            s.set_nonblocking(true).unwrap();
            s
        }
    };
    // Two clients fill the gateway with half-open requests; the third connection of the
    // first is over its cap of 2 and closed.
    let mut held = Vec::new();
    for from in [
        [127, 0, 3, 1],
        [127, 0, 3, 1],
        [127, 0, 3, 2],
        [127, 0, 3, 2],
    ] {
        held.push(attacker(from).await);
    }
    let mut over = attacker([127, 0, 3, 1]).await;
    over.set_nonblocking(false).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        over.read(&mut buf).unwrap_or(0),
        0,
        "over the per-client cap"
    );

    // Each new client is answered, and one held connection closed for it (the probes stay
    // open, idle since their answers: younger than the half-open ones).
    let mut probes = Vec::new();
    for probe in 1..=3usize {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        let from = std::net::Ipv4Addr::new(127, 0, 4, probe as u8);
        sock.bind((from, 0).into()).unwrap();
        let s = sock.connect(addr).await.unwrap().into_std().unwrap();
        let (answered, s) = tokio::task::spawn_blocking(move || {
            let mut s = s;
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /v1/logs HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            // Read the head and its content-length of body.
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .split("content-length:")
                        .nth(1)
                        .and_then(|v| v.split("\r\n").next())
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if out.len() >= end + 4 + len {
                        break;
                    }
                }
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
            (out.starts_with(b"HTTP/1.1 200"), s)
        })
        .await
        .unwrap();
        assert!(answered, "probe {probe} answered");
        probes.push(s);
        let shut = held.iter().filter(|s| closed(s)).count();
        assert_eq!(shut, probe, "after probe {probe}");
    }
    assert!(probes.iter().all(|s| {
        s.set_nonblocking(true).unwrap();
        !closed(s)
    }));
    drop(held);
    drop(stop);
    server.await.unwrap().unwrap();
}

/// `web/test/golden/gateway.json`: heads and range responses of the three test logs, as this
/// gateway serves them, for the JavaScript verifier's tests. Deterministic (fixed seeds,
/// deterministic Ed25519). `PEERHOST_WRITE_GOLDEN=1` rewrites the file; otherwise it must match.
#[tokio::test]
async fn golden_responses_for_web() {
    let f = fixture();
    let app = app(&f, Config::default().range_caps(16, 1 << 20));
    let mut logs = Vec::new();
    for name in ["default", "compat", "forked"] {
        let key = f.keys[name];
        let k = key.to_hex();
        let mut heads = vec![get(&app, &format!("/v1/logs/{k}/head")).await.json()];
        let core = f.cores.get(&key).unwrap();
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        {
            let mut core = core.lock().unwrap();
            match name {
                "forked" => {
                    core.truncate(6).unwrap();
                    let more: Vec<Vec<u8>> = (100..103).map(|i| post(name, i)).collect();
                    core.append(&more).unwrap();
                }
                _ => {
                    core.append(&[post(name, 1000)]).unwrap();
                }
            }
            for i in 0..core.length() {
                blocks.push(core.get(i).unwrap().unwrap());
            }
        }
        heads.push(get(&app, &format!("/v1/logs/{k}/head")).await.json());
        let mut ranges = Vec::new();
        for head in &heads {
            let trusted = check_head(head);
            let (length, fork) = (trusted.length, trusted.fork);
            let mut asks: Vec<(u64, u64)> = vec![(0, 1), (0, length), (length - 1, length)];
            if length > 4 {
                asks.push((2, length - 1));
                asks.push((length / 2, length / 2 + 1));
            }
            for (s, e) in asks {
                let url =
                    format!("/v1/logs/{k}/blocks?start={s}&end={e}&length={length}&fork={fork}");
                let res = get(&app, &url).await;
                let mut entry = serde_json::json!({
                    "url": url, "start": s, "end": e, "length": length, "fork": fork,
                    "status": res.status.as_u16(),
                });
                if res.status == StatusCode::OK {
                    let p = range::verify(&res.body, &trusted, s..e).unwrap();
                    entry["servedEnd"] = p.end().into();
                    entry["body"] = hex::encode(&res.body).into();
                } else {
                    entry["error"] = res.json();
                }
                ranges.push(entry);
            }
        }
        logs.push(serde_json::json!({
            "name": name,
            "key": k,
            "heads": heads,
            "blocks": blocks.iter().map(hex::encode).collect::<Vec<_>>(),
            "ranges": ranges,
        }));
    }
    let doc = serde_json::json!({
        "generator": "cargo test -p peerhost-gateway --test http golden_responses_for_web \
                      (PEERHOST_WRITE_GOLDEN=1 rewrites)",
        "format": "protocol/gateway.md",
        "maxBlocks": 16,
        "logs": logs,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web/test/golden/gateway.json");
    if std::env::var_os("PEERHOST_WRITE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "{} is stale: rerun with PEERHOST_WRITE_GOLDEN=1",
        path.display()
    );
}

/// An instance's page: precompressed variants by `Accept-Encoding`, `/` is `index.html`, the
/// bootstrap JSON, body bytes counted; a plain gateway has none of these routes.
#[tokio::test]
async fn instance_page_bootstrap_and_counters() {
    use peerhost_gateway::{CommunityInfo, Counters, Instance, InstanceOptions, Site};
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>hi").unwrap();
    std::fs::write(dir.path().join("app.js"), "let a = 1").unwrap();
    std::fs::write(dir.path().join("app.js.br"), "BR").unwrap();
    std::fs::write(dir.path().join("app.js.gz"), "GZ").unwrap();
    let site = Site::load(dir.path()).unwrap();
    let instance = Arc::new(Instance::new(Some(site), InstanceOptions::default()));
    let key = f.keys["default"];
    instance.set_communities(vec![CommunityInfo::new(
        key,
        "c".into(),
        "C".into(),
        Some(key),
        None,
        None,
    )]);
    let counters = Arc::new(Counters::default());
    let app = app(
        &f,
        Config::default()
            .counters(counters.clone())
            .instance(instance.clone()),
    );
    let res = get(&app, "/").await;
    assert_eq!(
        (res.status, res.body.as_slice()),
        (StatusCode::OK, &b"<p>hi"[..])
    );
    assert_eq!(res.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    let with = |enc: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .uri("/app.js")
                .header(header::ACCEPT_ENCODING, enc)
                .body(Body::empty())
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            let e = res
                .headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap().to_owned());
            let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
            (e, body)
        }
    };
    assert_eq!(
        with("gzip, deflate, br").await,
        (Some("br".into()), b"BR".to_vec())
    );
    assert_eq!(
        with("gzip, br;q=0").await,
        (Some("gzip".into()), b"GZ".to_vec())
    );
    assert_eq!(with("identity").await, (None, b"let a = 1".to_vec()));
    assert_eq!(get(&app, "/missing.js").await.status, StatusCode::NOT_FOUND);
    let boot = get(&app, "/v1/bootstrap").await.json();
    assert_eq!(boot["communities"][0]["posts"], key.to_hex());
    assert_eq!(boot["peers"], serde_json::json!([]));
    // Registration (the whole flow over TCP is in tests/peer_table.rs): not a form, not
    // unsigned, and not a loopback URL on an instance that only checks public addresses.
    let post = |content_type: &'static str, auth: Option<String>, body: &'static str| {
        let app = app.clone();
        async move {
            let mut req = Request::builder()
                .method("POST")
                .uri("/v1/peers")
                .header(header::HOST, "instance.test")
                .header(header::CONTENT_TYPE, content_type);
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let res = app
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let cors = res
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_some();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (v["error"].as_str().unwrap_or("").to_owned(), cors)
        }
    };
    let sign = |body: &str| {
        let req = peerhost_gateway::auth::Request {
            origin: "http://instance.test",
            method: "POST",
            path: "/v1/peers",
            body: body.as_bytes(),
        };
        let kp = KeyPair::generate();
        peerhost_gateway::auth::Credentials::sign(&kp, &req, peerhost_gateway::auth::now_ms())
            .header_value()
    };
    let loopback = r#"{"url":"http://127.0.0.1:9"}"#;
    assert_eq!(
        post(
            "application/x-www-form-urlencoded",
            Some(sign(loopback)),
            loopback
        )
        .await,
        ("UNSUPPORTED_MEDIA_TYPE".into(), false)
    );
    assert_eq!(
        post("text/plain", None, loopback).await,
        ("UNSUPPORTED_MEDIA_TYPE".into(), false)
    );
    assert_eq!(
        post("application/json", None, loopback).await,
        ("UNSIGNED".into(), false)
    );
    assert_eq!(
        post("application/json", Some(sign("{}")), loopback).await,
        ("BAD_SIGNATURE".into(), false)
    );
    assert_eq!(
        post(
            "application/json; charset=utf-8",
            Some(sign(loopback)),
            loopback
        )
        .await,
        ("REFUSED_ADDRESS".into(), false)
    );
    let ftp = r#"{"url":"ftp://x"}"#;
    assert_eq!(
        post("application/json", Some(sign(ftp)), ftp).await,
        ("BAD_URL".into(), false)
    );
    assert_eq!(
        get(&app, "/v1/peers").await.json()["peers"],
        serde_json::json!([])
    );
    assert_eq!(
        get(&app, "/v1/contributions").await.json()["peers"],
        serde_json::json!([])
    );
    assert!(counters.requests() >= 9 && counters.bytes() > 0);

    // A plain gateway: none of it.
    let plain = self::app(&f, Config::default());
    for path in ["/", "/app.js", "/v1/bootstrap", "/v1/contributions"] {
        assert_eq!(
            get(&plain, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}
