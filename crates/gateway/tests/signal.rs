//! WebRTC signaling through the instance over real TCP on loopback (`protocol/gateway.md`
//! §7.3): a peer's signed long-poll, a browser's offer relayed to it and its signed answer
//! relayed back, the health check through the poll (a peer that proves its logs is listed in
//! `/v1/bootstrap` and the bootstrap document; one that stops proving is delisted), and the
//! bounds: unsigned polls, unknown tasks, wrong media types, large bodies, a flood of offers.
//! The peer here is written with the gateway's own client and message types (the real one,
//! `peerhost-webrtc`'s home peer, is tested in that crate with a real WebRTC answer).
//!
//! Timeouts are hang guards only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use peerhost_gateway::api::Api;
use peerhost_gateway::signal::{
    CheckAnswer, CheckResult, IceServer, OfferAnswer, PollRequest, PollResponse, SignalLimits,
    SignedAnswer, Task, sign_answer, verify_answer,
};
use peerhost_gateway::{
    CommunityInfo, Config, Cores, Instance, InstanceOptions, ServeOptions, Site, client,
};
use peerhost_ids::{Key, KeyPair};
use peerhost_store::{CreateOptions, Store};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

const T: Duration = Duration::from_secs(40);
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
            CreateOptions::default().key_pair(KeyPair::from_seed(&[5; 32])),
        )
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..9).map(|i| format!("post {i}").into_bytes()).collect();
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

fn page_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><script id=\"peerhost-data\" type=\"application/json\">null</script>",
    )
    .unwrap();
    dir
}

/// An instance over `log`, checking every 100 ms, with short signaling waits.
async fn start_instance(log: &Log, limits: SignalLimits) -> (String, watch::Sender<()>) {
    let page = page_dir();
    let site = Site::load(page.path()).unwrap();
    let instance = Arc::new(
        Instance::new(
            Some(site),
            InstanceOptions::default()
                .allow_private_peers(true)
                .check_every(Duration::from_millis(100))
                .signal_limits(limits),
        )
        .ice_servers(vec![IceServer::stun("127.0.0.1:3478")]),
    );
    instance.set_communities(vec![CommunityInfo::new(
        log.key,
        "c".into(),
        "C".into(),
        Some(log.key),
        None,
        None,
    )]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = watch::channel(());
    let (mut a, mut b) = (rx.clone(), rx);
    tokio::spawn(peerhost_gateway::serve(
        listener,
        log.cores.clone(),
        Config::default().instance(instance.clone()),
        ServeOptions::default(),
        async move {
            let _ = a.changed().await;
        },
    ));
    tokio::spawn(peerhost_gateway::run_checks(
        instance,
        Arc::new(log.cores.clone()),
        async move {
            let _ = b.changed().await;
        },
    ));
    (url, tx)
}

fn limits() -> SignalLimits {
    let mut l = SignalLimits::default();
    l.poll_wait = Duration::from_millis(1500);
    l.answer_timeout = Duration::from_secs(3);
    l.check_timeout = Duration::from_secs(2);
    l
}

/// A WebRTC peer as the protocol wants it, without WebRTC: it answers offers with a fixed
/// SDP (signed), and checks from `cores` (honestly while `honest` is set).
fn fake_peer(
    base: String,
    kp: KeyPair,
    cores: Cores,
    honest: Arc<AtomicBool>,
) -> watch::Sender<()> {
    let (tx, mut rx) = watch::channel(());
    tokio::spawn(async move {
        let api = Api::new(cores, Config::default());
        loop {
            let body = serde_json::to_vec(&PollRequest::new(7, 1, 42, true)).unwrap();
            let poll_url = format!("{base}/v1/signal/poll");
            let poll =
                client::send_signed("POST", &poll_url, Some(("application/json", &body)), &kp, T);
            let r = tokio::select! {
                r = poll => r,
                _ = rx.changed() => return,
            };
            let Ok(r) = r else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let got = PollResponse::parse(&r.body).unwrap();
            assert_eq!(got.ice_servers, vec![IceServer::stun("127.0.0.1:3478")]);
            for task in got.tasks {
                let (id, body) = match task {
                    Task::Offer { id, sdp } => {
                        let answer = format!("answer to {} bytes", sdp.len());
                        let signature = sign_answer(&kp, &sdp, &answer);
                        (
                            id,
                            OfferAnswer::Answer {
                                sdp: answer,
                                signature,
                            }
                            .to_json(),
                        )
                    }
                    Task::Check { id, paths } => {
                        let mut results = Vec::new();
                        for p in paths {
                            let a = api.get(&p).await;
                            let mut body = a.body.to_vec();
                            if !honest.load(Ordering::Relaxed) {
                                if let Some(last) = body.last_mut() {
                                    *last ^= 1;
                                }
                            }
                            results.push(CheckResult {
                                status: a.status,
                                body,
                            });
                        }
                        (id, CheckAnswer::sign(&kp, &id, results).to_json())
                    }
                    Task::Candidate { .. } => continue,
                };
                let url = format!("{base}/v1/signal/answer/{}", hex::encode(id));
                let r = client::post_json(&url, &body, T).await.unwrap();
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            }
        }
    });
    tx
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

async fn offer(base: &str, peer: &[u8; 32], sdp: &str) -> client::Response {
    client::post_json(
        &format!("{base}/v1/signal"),
        &json!({ "peer": hex::encode(peer), "sdp": sdp }),
        T,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_behind_a_poll_answers_is_checked_listed_and_delisted() {
    let log = log();
    let (base, _stop) = start_instance(&log, limits()).await;
    let kp = KeyPair::generate();
    let key = kp.public_key();
    let honest = Arc::new(AtomicBool::new(true));
    let _peer = fake_peer(base.clone(), kp.clone(), log.cores.clone(), honest.clone());

    // Checked through its poll, then listed by key, with the ICE servers.
    let hex_key = hex::encode(key);
    wait("listed", async || {
        get_json(&format!("{base}/v1/bootstrap")).await["rtcPeers"] == json!([hex_key])
    })
    .await;
    let b = get_json(&format!("{base}/v1/bootstrap")).await;
    assert_eq!(
        b["iceServers"],
        json!([{ "urls": ["stun:127.0.0.1:3478"] }])
    );
    let page = client::get(&format!("{base}/"), T).await.unwrap();
    let page = String::from_utf8(page.body).unwrap();
    assert!(page.contains(&hex_key), "{page}");
    assert!(page.contains("stun:127.0.0.1:3478"), "{page}");
    let c = get_json(&format!("{base}/v1/contributions")).await;
    let row = &c["peers"][0];
    assert_eq!(row["url"], json!(format!("rtc://{hex_key}")));
    assert_eq!(row["transport"], "webrtc");
    assert_eq!(row["healthy"], true);
    assert_eq!(
        (row["bytesServed"].clone(), row["startedMs"].clone()),
        (json!(7), json!(42))
    );

    // A browser's offer reaches it; the signed answer comes back.
    let r = offer(&base, &key, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let a = SignedAnswer::parse(&r.body).unwrap();
    assert_eq!(a.peer, key);
    assert!(verify_answer(
        &key,
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n",
        &a.sdp,
        &a.signature
    ));
    // An unknown key.
    let r = offer(&base, &[9; 32], "v=0").await;
    assert_eq!(r.status, 404);

    // It stops proving (its checks are answered with a flipped byte): delisted.
    honest.store(false, Ordering::Relaxed);
    wait("delisted", async || {
        get_json(&format!("{base}/v1/bootstrap")).await["rtcPeers"] == json!([])
    })
    .await;
    let c = get_json(&format!("{base}/v1/contributions")).await;
    assert_eq!(c["peers"][0]["problem"], "BAD_PROOF");
    // And listed again once it proves again.
    honest.store(true, Ordering::Relaxed);
    wait("listed again", async || {
        get_json(&format!("{base}/v1/bootstrap")).await["rtcPeers"] == json!([hex::encode(key)])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_goes_quiet_is_delisted() {
    let log = log();
    let (base, _stop) = start_instance(&log, limits()).await;
    let kp = KeyPair::generate();
    let peer = fake_peer(
        base.clone(),
        kp.clone(),
        log.cores.clone(),
        Arc::new(AtomicBool::new(true)),
    );
    wait("listed", async || {
        get_json(&format!("{base}/v1/bootstrap")).await["rtcPeers"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    drop(peer);
    let t0 = Instant::now();
    wait("delisted", async || {
        get_json(&format!("{base}/v1/bootstrap")).await["rtcPeers"] == json!([])
    })
    .await;
    let c = get_json(&format!("{base}/v1/contributions")).await;
    assert_eq!(c["peers"][0]["problem"], "TIMEOUT");
    // Within a check period and a check timeout.
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Offers to it now time out (it is alive for a while yet) or find nobody.
    let r = offer(&base, &kp.public_key(), "v=0").await;
    assert!(r.status == 504 || r.status == 404, "{}", r.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_is_bounded() {
    let log = log();
    let mut l = limits();
    l.answer_timeout = Duration::from_secs(4);
    l.per_peer = 4;
    let (base, _stop) = start_instance(&log, l).await;
    // Unsigned polls, other media types, unknown tasks, oversized bodies.
    let r = client::post_json(&format!("{base}/v1/signal/poll"), &json!({}), T)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = client::send_signed(
        "POST",
        &format!("{base}/v1/signal"),
        Some(("text/plain", b"{}")),
        &KeyPair::generate(),
        T,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 415);
    let r = client::post_json(
        &format!("{base}/v1/signal/answer/{}", "00".repeat(16)),
        &json!({"error": "x"}),
        T,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let r = client::post_json(&format!("{base}/v1/signal/answer/zz"), &json!({}), T)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let huge = "a".repeat(64 * 1024);
    let r = offer(&base, &[1; 32], &huge).await;
    assert_eq!(r.status, 413);
    let r = offer(&base, &[1; 32], "v=0").await;
    assert_eq!(r.status, 404, "an unknown peer");

    // A peer that never answers, and a flood of offers from one client: four wait (the
    // per-peer cap), the rest are refused at once, nothing piles up.
    let kp = KeyPair::generate();
    let body = serde_json::to_vec(&PollRequest::new(0, 0, 0, false)).unwrap();
    let r = client::send_signed(
        "POST",
        &format!("{base}/v1/signal/poll"),
        Some(("application/json", &body)),
        &kp,
        T,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let key = kp.public_key();
    let t0 = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for i in 0..200 {
        let base = base.clone();
        all.spawn(async move {
            // 0: the listener closed the connection at accept (64 per client at once).
            client::post_json(
                &format!("{base}/v1/signal"),
                &json!({ "peer": hex::encode(key), "sdp": format!("v=0 {i}") }),
                T,
            )
            .await
            .map_or(0, |r| r.status)
        });
    }
    let mut by_status = std::collections::BTreeMap::new();
    while let Some(s) = all.join_next().await {
        *by_status.entry(s.unwrap()).or_insert(0) += 1;
    }
    // The per-client budget (16 at once, 8 waiting) and the per-peer cap (4) hold; the
    // gateway's own per-client cap of requests in flight (8) refuses the rest with 429, the
    // listener's cap of connections per client (64) closes some at accept.
    let waited = by_status.get(&504).copied().unwrap_or(0);
    assert!(waited <= 4, "{by_status:?}");
    assert!(waited >= 1, "{by_status:?}");
    assert_eq!(
        waited
            + [0, 429, 503]
                .iter()
                .map(|s| by_status.get(s).copied().unwrap_or(0))
                .sum::<i32>(),
        200,
        "{by_status:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
