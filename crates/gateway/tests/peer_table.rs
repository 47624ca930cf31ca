//! The instance's peer table over real TCP on loopback (`protocol/gateway.md` §7): signed
//! registrations and reports, the key challenge before any health check, one entry for every
//! spelling of an address, no requests to refused ranges, no cross-origin POSTs, and the
//! reporter loop a mirror runs. Every server here listens on 127.0.0.1; refusals of other
//! ranges are tested by classification (`address.rs`), never by connecting.
//!
//! Timeouts are hang guards only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerhost_gateway::{
    CommunityInfo, Config, Cores, Counters, Instance, InstanceOptions, ServeOptions, auth, client,
};
use peerhost_ids::{Key, KeyPair};
use peerhost_store::{CreateOptions, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const T: Duration = Duration::from_secs(5);
const GUARD: Duration = Duration::from_secs(30);

struct Log {
    _dir: tempfile::TempDir,
    cores: Cores,
    key: Key,
}

fn log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut core = store
        .create(
            "posts",
            CreateOptions::default().key_pair(KeyPair::from_seed(&[3; 32])),
        )
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..5).map(|i| format!("post {i}").into_bytes()).collect();
    core.append(&blocks).unwrap();
    let key = core.key();
    let cores = Cores::new();
    cores.insert_core(core);
    Log {
        _dir: dir,
        cores,
        key,
    }
}

/// A gateway on 127.0.0.1:0 until the returned sender is dropped.
async fn serve(cores: Cores, config: Config) -> (String, watch::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, mut rx) = watch::channel(());
    tokio::spawn(peerhost_gateway::serve(
        listener,
        cores,
        config,
        ServeOptions::default(),
        async move {
            let _ = rx.changed().await;
        },
    ));
    (url, tx)
}

/// An instance publishing `log`'s key, checking every 100 ms.
async fn start_instance(
    log: &Log,
    options: InstanceOptions,
) -> (String, Arc<Instance>, watch::Sender<()>) {
    let instance = Arc::new(Instance::new(
        None,
        options.check_every(Duration::from_millis(100)),
    ));
    instance.set_communities(vec![CommunityInfo::new(
        log.key,
        "c".into(),
        "C".into(),
        Some(log.key),
        None,
        None,
    )]);
    let (url, stop) = serve(
        log.cores.clone(),
        Config::default().instance(instance.clone()),
    )
    .await;
    let mut rx = stop.subscribe();
    tokio::spawn(peerhost_gateway::run_checks(
        instance.clone(),
        Arc::new(log.cores.clone()),
        async move {
            let _ = rx.changed().await;
        },
    ));
    (url, instance, stop)
}

async fn register(base: &str, url: &str, kp: &KeyPair) -> (u16, Value) {
    let r = client::post_json_signed(&format!("{base}/v1/peers"), &json!({ "url": url }), kp, T)
        .await
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn get_json(url: &str) -> Value {
    let r = client::get(url, T).await.unwrap();
    assert_eq!(r.status, 200, "{url}");
    serde_json::from_slice(&r.body).unwrap()
}

async fn wait(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + GUARD;
    while !f().await {
        assert!(Instant::now() < deadline, "hang guard: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw HTTP exchange (what a browser or an attacker sends), the whole answer as text.
async fn raw(base: &str, request: &str) -> String {
    let mut s = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP server that records the request line of every connection and answers 404.
async fn recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            log.lock()
                .unwrap()
                .push(text.lines().next().unwrap_or("").to_owned());
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_proves_its_key_then_is_checked_listed_and_reports() {
    let log = log();
    let (base, instance, _i) =
        start_instance(&log, InstanceOptions::default().allow_private_peers(true)).await;
    let mirror_kp = KeyPair::generate();
    let (murl, _m) = serve(
        log.cores.clone(),
        Config::default().identity(mirror_kp.clone()),
    )
    .await;
    let port = murl.rsplit(':').next().unwrap();

    // Every spelling of the mirror's address is one entry.
    for spelling in [
        format!("http://127.1:{port}"),
        format!("http://0x7f000001:{port}"),
        format!("http://2130706433:0{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        murl.clone(),
    ] {
        let (status, body) = register(&base, &spelling, &mirror_kp).await;
        assert_eq!(status, 200, "{spelling}: {body}");
        assert_eq!(body["url"], murl.as_str(), "{spelling}");
    }
    assert_eq!(instance.contributions().len(), 1);

    // A report before the key is proven is refused; once it is, the row is the mirror's.
    wait("the mirror is listed", async || {
        get_json(&format!("{base}/v1/peers")).await["peers"] == json!([murl])
    })
    .await;
    let row = &get_json(&format!("{base}/v1/contributions")).await["peers"][0];
    assert_eq!(row["key"], hex::encode(mirror_kp.public_key()));
    assert_eq!(
        (row["proven"].as_bool(), row["healthy"].as_bool()),
        (Some(true), Some(true))
    );

    let report = json!({"bytes": 1234, "requests": 7, "startedMs": 1});
    let r = client::post_json_signed(&format!("{base}/v1/report"), &report, &mirror_kp, T)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Another key cannot overwrite it, nor can an unsigned POST.
    let forged = json!({"url": murl, "bytes": 1, "requests": 1, "startedMs": 1});
    let r = client::post_json_signed(
        &format!("{base}/v1/report"),
        &forged,
        &KeyPair::generate(),
        T,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let r = client::post_json(&format!("{base}/v1/report"), &forged, T)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let row = &get_json(&format!("{base}/v1/contributions")).await["peers"][0];
    assert_eq!(
        (row["bytesServed"].as_u64(), row["requests"].as_u64()),
        (Some(1234), Some(7))
    );

    // Another key cannot take over the proven URL either.
    let (status, body) = register(&base, &murl, &KeyPair::generate()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("URL_TAKEN")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_is_the_challenge_and_a_wrong_key_is_never_checked() {
    let log = log();
    let (base, instance, _i) =
        start_instance(&log, InstanceOptions::default().allow_private_peers(true)).await;

    // A service that is not a peerhost gateway: it sees one challenge (then backed-off
    // retries), never a request for blocks.
    let (rec, seen) = recorder().await;
    let (status, _) = register(&base, &rec, &KeyPair::generate()).await;
    assert_eq!(status, 200);
    wait("the challenge arrives", async || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("GET /v1/identity?challenge=")),
        "{lines:?}"
    );
    // Backoff: not one challenge per check period (6 periods passed).
    assert!(lines.len() <= 4, "{lines:?}");

    // An honest gateway registered by someone else's key: the gateway answers with its own
    // key, so the registration never becomes a listed, checked peer.
    let honest = KeyPair::generate();
    let (hurl, _h) = serve(log.cores.clone(), Config::default().identity(honest)).await;
    let (status, _) = register(&base, &hurl, &KeyPair::generate()).await;
    assert_eq!(status, 200);
    wait("the challenge fails", async || {
        instance
            .contributions()
            .iter()
            .any(|c| c.url == hurl && c.problem.as_deref() == Some("CHALLENGE_FAILED"))
    })
    .await;
    let rows = get_json(&format!("{base}/v1/contributions")).await;
    for row in rows["peers"].as_array().unwrap() {
        assert_eq!(row["proven"], false, "{row}");
        assert_eq!(row["healthy"], false, "{row}");
        // Codes only in public: no OS error text, no bytes of what a service answered.
        assert!(row.get("detail").is_none(), "{row}");
    }
    assert_eq!(
        get_json(&format!("{base}/v1/peers")).await["peers"],
        json!([])
    );
    // The operator's view has the detail.
    assert!(instance.contributions().iter().any(|c| {
        c.detail
            .as_deref()
            .is_some_and(|d| d.contains("another key"))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_loopback_is_refused_and_never_contacted() {
    let log = log();
    let (base, instance, _i) = start_instance(&log, InstanceOptions::default()).await;
    let (rec, seen) = recorder().await;
    let port = rec.rsplit(':').next().unwrap();
    for spelling in [
        rec.clone(),
        format!("http://127.1:{port}"),
        format!("http://0x7f000001:{port}"),
        format!("http://2130706433:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://[::1]:{port}"),
        format!("http://0.0.0.0:{port}"),
    ] {
        let (status, body) = register(&base, &spelling, &KeyPair::generate()).await;
        assert_eq!(status, 400, "{spelling}: {body}");
        assert_eq!(body["error"], "REFUSED_ADDRESS", "{spelling}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(seen.lock().unwrap().is_empty());
    assert!(instance.contributions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_posts_fail_and_signed_ones_do_not_replay() {
    let log = log();
    let (base, instance, _i) =
        start_instance(&log, InstanceOptions::default().allow_private_peers(true)).await;
    let host = base.trim_start_matches("http://");
    // A form any website can submit: refused before anything is read, no CORS header.
    let form = "url=http%3A%2F%2F127.0.0.1%3A9";
    let res = raw(
        &base,
        &format!(
            "POST /v1/peers HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 415"), "{res}");
    assert!(
        !res.to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{res}"
    );
    // A no-preflight fetch (text/plain): the same.
    let res = raw(
        &base,
        &format!(
            "POST /v1/report HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        ),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 415"), "{res}");
    // The preflight a JSON POST needs is not granted for POST.
    let res = raw(
        &base,
        &format!(
            "OPTIONS /v1/peers HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type, authorization\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    let allowed = res
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("access-control-allow-methods")
        })
        .unwrap_or_default()
        .to_owned();
    assert!(!allowed.contains("POST"), "{res}");

    // What a page may send after a preflight, or any script: JSON, but unsigned. Refused,
    // nothing registered (issue 17 item 1: a registration needs the mirror's key).
    let r = client::post_json(
        &format!("{base}/v1/peers"),
        &json!({"url": "http://127.0.0.1:9"}),
        T,
    )
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 401, "{said}");
    assert!(said.contains("UNSIGNED"), "{said}");
    assert!(instance.contributions().is_empty());

    // A signed registration replayed verbatim is refused.
    let kp = KeyPair::generate();
    let body = format!(r#"{{"url":"http://127.0.0.1:{}"}}"#, 9);
    let req = auth::Request {
        origin: &base,
        method: "POST",
        path: "/v1/peers",
        body: body.as_bytes(),
    };
    let header = auth::Credentials::sign(&kp, &req, auth::now_ms()).header_value();
    let signed = format!(
        "POST /v1/peers HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Authorization: {header}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert!(raw(&base, &signed).await.starts_with("HTTP/1.1 200"));
    let again = raw(&base, &signed).await;
    assert!(
        again.starts_with("HTTP/1.1 401") && again.contains("REPLAYED"),
        "{again}"
    );
    // Replayed to another instance (another Host): the signature does not hold.
    let (base2, _, _i2) =
        start_instance(&log, InstanceOptions::default().allow_private_peers(true)).await;
    let other = signed.replace(host, base2.trim_start_matches("http://"));
    let res = raw(&base2, &other).await;
    assert!(res.contains("BAD_SIGNATURE"), "{res}");
    assert_eq!(instance.contributions().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporter_registers_proves_and_reports() {
    let log = log();
    let (base, _instance, _i) =
        start_instance(&log, InstanceOptions::default().allow_private_peers(true)).await;
    let kp = KeyPair::generate();
    let counters = Arc::new(Counters::default());
    let (murl, _m) = serve(
        log.cores.clone(),
        Config::default()
            .identity(kp.clone())
            .counters(counters.clone()),
    )
    .await;
    counters.add(4242);
    let (tx, mut rx) = watch::channel(());
    tokio::spawn(peerhost_gateway::run_reporter(
        vec![base.clone()],
        murl.clone(),
        counters.clone(),
        kp.clone(),
        Duration::from_millis(100),
        async move {
            let _ = rx.changed().await;
        },
    ));
    wait("the report arrives", async || {
        let t = get_json(&format!("{base}/v1/contributions")).await;
        t["peers"][0]["bytesServed"].as_u64() >= Some(4242) && t["peers"][0]["healthy"] == true
    })
    .await;
    drop(tx);
    let _: SocketAddr = murl.trim_start_matches("http://").parse().unwrap();
}

/// A gateway that answers the instance's challenges with `kp` and forwards the log routes to
/// `upstream`, flipping the last byte of every range answer whose request starts at block
/// `bad_start` (so the periodic check, which asks for the last block, passes).
async fn liar(upstream: String, kp: KeyPair, bad_start: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let origin = url.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (upstream, kp, origin) = (upstream.clone(), kp.clone(), origin.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, body) = if let Some(c) = path.strip_prefix("/v1/identity?challenge=") {
                    let c: [u8; 32] = hex::decode(c).unwrap().try_into().unwrap();
                    let sig = auth::answer_challenge(&kp, &origin, &c);
                    let v =
                        json!({"key": hex::encode(kp.public_key()), "signature": hex::encode(sig)});
                    (200, serde_json::to_vec(&v).unwrap())
                } else {
                    let r = client::get(&format!("{upstream}{path}"), T).await.unwrap();
                    let mut body = r.body.to_vec();
                    if r.status == 200 && path.contains(&format!("start={bad_start}&")) {
                        let last = body.len() - 1;
                        body[last] ^= 0x20;
                    }
                    (r.status, body)
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    url
}

/// A reader's report (§7.4): unsigned JSON, as a page sends it.
async fn bad_peer(base: &str, peer: &str, log: &Key, start: u64, end: u64) -> (u16, Value) {
    let body = json!({"peer": peer, "log": log.to_hex(), "start": start, "end": end, "code": "INVALID_PROOF"});
    let r = client::post_json(&format!("{base}/v1/bad-peer"), &body, T)
        .await
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn row(base: &str, url: &str) -> Value {
    let all = get_json(&format!("{base}/v1/contributions")).await;
    all["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == url)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_makes_the_instance_check_the_reported_range_at_once() {
    let log = log();
    // Periodic checks every 100 ms would pass both peers: only the reported range tells.
    let (base, _instance, _i) =
        start_instance(&log, InstanceOptions::default().allow_private_peers(true)).await;
    let (upstream, _u) = serve(log.cores.clone(), Config::default()).await;
    let (liar_kp, honest_kp) = (KeyPair::generate(), KeyPair::generate());
    let bad = liar(upstream.clone(), liar_kp.clone(), 1).await;
    let (good, _g) = serve(
        log.cores.clone(),
        Config::default().identity(honest_kp.clone()),
    )
    .await;
    assert_eq!(register(&base, &bad, &liar_kp).await.0, 200);
    assert_eq!(register(&base, &good, &honest_kp).await.0, 200);
    wait("both peers are listed", async || {
        let mut peers: Vec<String> =
            serde_json::from_value(get_json(&format!("{base}/v1/peers")).await["peers"].clone())
                .unwrap();
        peers.sort();
        let mut want = vec![bad.clone(), good.clone()];
        want.sort();
        peers == want
    })
    .await;
    // The liar passes periodic checks: it lies about block 1 only.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(row(&base, &bad).await["healthy"], true);

    // A report about the honest peer changes nothing: the instance checks, it passes.
    let (status, v) = bad_peer(&base, &good, &log.key, 1, 3).await;
    assert_eq!((status, v["check"].as_str()), (202, Some("scheduled")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = row(&base, &good).await;
    assert_eq!(
        (r["healthy"].as_bool(), r["reports"].as_u64()),
        (Some(true), Some(1))
    );

    // A report about the liar, with the range it lied about: delisted at once.
    let t0 = Instant::now();
    let (status, v) = bad_peer(&base, &format!("{bad}/"), &log.key, 1, 3).await;
    assert_eq!((status, v["check"].as_str()), (202, Some("scheduled")));
    wait("the liar is delisted", async || {
        row(&base, &bad).await["healthy"] == false
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let r = row(&base, &bad).await;
    assert_eq!(r["problem"], "BAD_PROOF");
    assert_eq!(
        get_json(&format!("{base}/v1/peers")).await["peers"],
        json!([good])
    );
    // It stays off the list through many periodic checks (every 100 ms here, which ask for
    // the last block only and would pass): banned for ReportLimits::ban.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = row(&base, &bad).await;
    assert_eq!(r["problem"], "BAD_PROOF", "{r}");
    assert!(
        r["bannedUntilMs"].as_u64().unwrap() > auth::now_ms() + 500_000,
        "{r}"
    );
    assert_eq!(
        get_json(&format!("{base}/v1/peers")).await["peers"],
        json!([good])
    );
    // A banned or unregistered peer is no one's to report: 404, no check.
    let (status, v) = bad_peer(&base, &bad, &log.key, 1, 3).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("UNKNOWN_PEER")));
    let (status, v) = bad_peer(&base, "http://127.0.0.1:9", &log.key, 1, 3).await;
    assert_eq!((status, v["error"].as_str()), (404, Some("UNKNOWN_PEER")));
    // The honest peer again within 30 s: accepted, no second check.
    let (status, v) = bad_peer(&base, &good, &log.key, 0, 1).await;
    assert_eq!((status, v["check"].as_str()), (202, Some("recent")));
    let all = get_json(&format!("{base}/v1/contributions")).await;
    assert_eq!(all["reports"], json!({"admitted": 3, "scheduled": 2}));
}

/// Issue 17 item 1: readers get a random sample of the healthy peers, not the first 64 in URL
/// order (which let fake entries with low-sorting URLs hide the real mirrors). 70 real
/// gateways on loopback prove their keys and pass their checks; `GET /v1/peers` names 64 of
/// them per request, and over 10 requests more than 64 distinct ones come up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_get_a_random_sample_of_the_healthy_peers() {
    const MIRRORS: usize = 70;
    let log = log();
    let (base, _instance, _i) =
        start_instance(&log, InstanceOptions::default().allow_private_peers(true)).await;
    let mut mirrors = Vec::new();
    for _ in 0..MIRRORS {
        let kp = KeyPair::generate();
        let (url, stop) = serve(log.cores.clone(), Config::default().identity(kp.clone())).await;
        let (status, body) = register(&base, &url, &kp).await;
        assert_eq!(status, 200, "{body}");
        mirrors.push((url, stop));
    }
    wait("every mirror is proven and healthy", async || {
        let t = get_json(&format!("{base}/v1/contributions")).await;
        t["peers"]
            .as_array()
            .is_some_and(|rows| rows.iter().filter(|r| r["healthy"] == true).count() == MIRRORS)
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let peers = get_json(&format!("{base}/v1/peers")).await["peers"].clone();
        let peers: Vec<String> = serde_json::from_value(peers).unwrap();
        assert_eq!(peers.len(), peerhost_gateway::MAX_PEERS);
        seen.extend(peers);
    }
    assert!(
        seen.len() > peerhost_gateway::MAX_PEERS,
        "always the same {}: {seen:?}",
        seen.len()
    );
    assert!(seen.iter().all(|u| mirrors.iter().any(|(m, _)| m == u)));
}

/// Issue 17 item 1: stale entries are evicted healthy or not. A table full of proven, healthy
/// peers that stopped registering (here: 4 real gateways, a table of 4, stale after 3 s) used
/// to answer every new mirror `503 FULL` for good; now the stalest makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_full_of_stale_healthy_peers_makes_room() {
    const STALE: Duration = Duration::from_secs(3);
    let log = log();
    let (base, instance, _i) = start_instance(
        &log,
        InstanceOptions::default()
            .allow_private_peers(true)
            .caps(4, 4, 4)
            .lifetimes(STALE, Duration::from_secs(600)),
    )
    .await;
    let mut mirrors = Vec::new();
    for _ in 0..5 {
        let kp = KeyPair::generate();
        let (url, stop) = serve(log.cores.clone(), Config::default().identity(kp.clone())).await;
        mirrors.push((url, kp, stop));
    }
    for (url, kp, _) in &mirrors[..4] {
        let (status, body) = register(&base, url, kp).await;
        assert_eq!(status, 200, "{body}");
    }
    wait("the 4 are proven and healthy", async || {
        let rows = instance.contributions();
        rows.len() == 4 && rows.iter().all(|c| c.proven && c.healthy)
    })
    .await;
    // Nobody registers again: they go stale, still marked healthy by their last check.
    tokio::time::sleep(STALE + Duration::from_millis(500)).await;
    assert!(instance.contributions().iter().all(|c| c.healthy));
    let (url, kp, _) = &mirrors[4];
    let (status, body) = register(&base, url, kp).await;
    assert_eq!(status, 200, "a new mirror is refused: {body}");
    let rows = instance.contributions();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().any(|c| &c.url == url));
}
