//! `peerhost mirror KEY --register URL` without `--http`: a WebRTC home peer, end to end with
//! real processes on loopback (no DHT):
//! - the instance (`serve --http --stun`, a TURN server in its config) lists its STUN server
//!   and the configured one as ICE servers; the mirror learns its address from that STUN;
//! - the instance (`serve --http`) health-checks the mirror over its signed long-poll and
//!   lists its node key in `/v1/bootstrap` (`rtcPeers`);
//! - a str0m "browser" (`peerhost_webrtc::client::Browser`) offers through the instance's
//!   `POST /v1/signal`, checks the answer's signature against that key, connects, and reads
//!   the latest posts from the mirror over the data channel, verified against the head;
//! - the mirror's status shows its registration and what it served, the instance's shows the
//!   peer; a stopped mirror is delisted;
//! - an instance that refuses the registration, and one that is not there, are one clear line
//!   each in the mirror's problems;
//! - `serve --tls-cert --tls-key` serves the gateway over HTTPS (what an https:// page needs).
//!
//! Timeouts are hang guards only.

use std::path::Path;

use peerhost_gateway::{TrustedHead, client, range};
use peerhost_webrtc::client::Browser;
use serde_json::{Value, json};

mod common;
#[path = "common/serving.rs"]
mod serving;
use common::{cmd, run};
use serving::{Daemon, T, get_json, hex32, rt, status, wait};

/// A community of `posts` posts in `w`; its key.
fn community(w: &Path, posts: usize) -> String {
    let key = String::from_utf8(run(w, &["community", "create", "c"]).stdout).unwrap();
    for i in 0..posts {
        run(
            w,
            &["post", "c", "--title", &format!("post {i}"), "--body", "b"],
        );
    }
    key.trim().to_owned()
}

#[test]
fn a_mirror_without_http_serves_browsers_over_webrtc() {
    let dir = tempfile::tempdir().unwrap();
    let (w, m) = (dir.path().join("w"), dir.path().join("m"));
    let key = community(&w, 25);
    for d in [&w, &m] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("peerhost.toml"), "status_interval_ms = 200\n").unwrap();
    }
    std::fs::write(
        w.join("peerhost.toml"),
        "status_interval_ms = 200\nice_servers = [\"turn:u:p@127.0.0.1:3478\"]\n",
    )
    .unwrap();
    let instance = Daemon::start(
        cmd(
            &w,
            &[
                "serve",
                "--no-dht",
                "--listen-tcp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--http-interval",
                "1",
                "--allow-private-peers",
                "--stun",
                "127.0.0.1:0",
            ],
        ),
        3,
    );
    let tcp = format!("tcp://{}", instance.lines[0]);
    let base = instance.lines[1].clone();
    let stun = instance.lines[2].clone();
    assert!(stun.starts_with("stun:127.0.0.1:"), "{stun}");
    let rt = rt();
    let boot = get_json(&rt, &format!("{base}/v1/bootstrap"));
    assert_eq!(boot["rtcPeers"], json!([]));
    assert_eq!(
        boot["iceServers"],
        json!([
            {"urls": [stun]},
            {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"},
        ])
    );
    let posts = boot["communities"][0]["posts"].as_str().unwrap().to_owned();

    // The mirror: no --http, so --register makes it a WebRTC home peer. It prints no address.
    let mirror = Daemon::start(
        cmd(
            &m,
            &[
                "mirror",
                &key,
                "--peer",
                &tcp,
                "--no-dht",
                "-q",
                "--register",
                &base,
            ],
        ),
        0,
    );
    wait("the mirror's status", || status(&m).is_some());
    let node_key = status(&m).unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    wait("the instance lists the mirror's node key", || {
        get_json(&rt, &format!("{base}/v1/bootstrap"))["rtcPeers"] == json!([node_key])
    });

    // A browser reads the latest posts from the mirror over WebRTC, through the instance's
    // signaling, and verifies them against the head it got over the same channel.
    let peer = hex32(&json!(node_key));
    let (head, proof) = rt.block_on(async {
        let mut b = Browser::connect(&base, &peer, "127.0.0.1".parse().unwrap(), T)
            .await
            .expect("a WebRTC connection to the mirror");
        let (st, head) = b
            .get(&format!("/v1/logs/{posts}/head"), T)
            .await
            .expect("the head");
        assert_eq!(st, 200);
        let head: Value = serde_json::from_slice(&head).unwrap();
        let path = format!("/v1/logs/{posts}/blocks?start=5&end=25&length=25&fork=0");
        let (st, body) = b.get(&path, T).await.expect("the latest 20 posts");
        assert_eq!(st, 200);
        (head, body)
    });
    assert_eq!(head["length"], 25);
    let trusted = TrustedHead {
        fork: head["fork"].as_u64().unwrap(),
        length: 25,
        tree_hash: hex32(&head["treeHash"]),
    };
    let verified = range::verify(&proof, &trusted, 5..25).expect("the range verifies");
    let titles: Vec<String> = verified
        .blocks
        .iter()
        .map(|b| match peerhost_feed::Entry::decode(b).unwrap().kind() {
            Some(peerhost_feed::Kind::Post(p)) => p.title.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<String> = (5..25).map(|i| format!("post {i}")).collect();
    assert_eq!(titles, want);
    // The head the browser got is the instance's own (the mirror is complete and live).
    let own = get_json(&rt, &format!("{base}/v1/logs/{posts}/head"));
    assert_eq!(head["treeHash"], own["treeHash"]);

    // The mirror's status: registered, listed, and what its channels served.
    wait("the mirror's status shows its WebRTC registration", || {
        status(&m).is_some_and(|s| {
            let r = &s["webrtc"][0];
            r["instance"] == base.as_str()
                && r["connected"] == true
                && r["listed"] == true
                && r["answered"].as_u64() >= Some(1)
                && r["bytes_served"].as_u64() >= Some(proof.len() as u64)
        })
    });
    // It learned its address from the instance's STUN server (on loopback: its own socket).
    let s = status(&m).unwrap();
    let r = &s["webrtc"][0];
    assert_eq!(r["public"], json!([r["local"]]), "{r}");
    assert_eq!(r["ice_servers"][0], stun.as_str());
    let errors = s["errors"].to_string();
    assert!(!errors.contains("webrtc"), "{errors}");
    wait("the instance's STUN server answered", || {
        status(&w).is_some_and(|s| s["stun"]["answered"].as_u64() >= Some(1))
    });
    // The instance's table: the peer by key, healthy.
    wait("the instance's status shows the WebRTC peer", || {
        status(&w).is_some_and(|s| {
            s["http"]["contributions"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["key"] == node_key.as_str()
                        && r["transport"] == "webrtc"
                        && r["healthy"] == true
                })
            })
        })
    });

    // `peerhost status`, in words and as JSON, on both sides.
    let text = String::from_utf8(run(&m, &["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "webrtc: registered with {base}: connected, listed; "
        )),
        "{text}"
    );
    assert!(text.contains("channels open"), "{text}");
    let json: Value = serde_json::from_slice(&run(&m, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["webrtc"][0]["instance"], base.as_str());
    let text = String::from_utf8(run(&w, &["status"]).stdout).unwrap();
    assert!(
        text.contains("webrtc peers (1 polling or known):"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.contains(&node_key))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("healthy") && row.contains("s ago"), "{row}");
    assert!(
        text.contains("contributions (0 peers registered)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("stun:   {}", &stun["stun:".len()..])),
        "{text}"
    );

    // The mirror stops: it is delisted.
    drop(mirror);
    wait("the stopped mirror is delisted", || {
        get_json(&rt, &format!("{base}/v1/bootstrap"))["rtcPeers"] == json!([])
    });
}

#[test]
fn a_refused_or_missing_instance_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let (w, m) = (dir.path().join("w"), dir.path().join("m"));
    let key = community(&w, 1);
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("peerhost.toml"), "status_interval_ms = 200\n").unwrap();
    // An instance that takes no peers on loopback (no --allow-private-peers).
    let instance = Daemon::start(cmd(&w, &["serve", "--no-dht", "--http", "127.0.0.1:0"]), 1);
    let refusing = instance.lines[0].clone();
    // And one that is not there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let missing = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let _mirror = Daemon::start(
        cmd(
            &m,
            &[
                "mirror",
                &key,
                "--no-dht",
                "-q",
                "--register",
                &refusing,
                "--register",
                &missing,
            ],
        ),
        0,
    );
    wait("both problems are in the mirror's status", || {
        status(&m).is_some_and(|s| {
            let e = s["errors"].to_string();
            e.contains(&format!(
                "webrtc: the instance {refusing} refused our registration: HTTP 400 \
                 REFUSED_ADDRESS"
            )) && e.contains("--allow-private-peers")
                && e.contains(&format!("webrtc: cannot reach the instance {missing}: "))
        })
    });
    let s = status(&m).unwrap();
    let regs = s["webrtc"].as_array().unwrap();
    assert_eq!(regs.len(), 2);
    assert!(regs.iter().all(|r| r["connected"] == false), "{regs:?}");
    // Each problem is noted once, not at every retry.
    let errors = s["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn serve_tls_speaks_https() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    community(&w, 1);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_pem.to_str().unwrap(), key_pem.to_str().unwrap());

    // A key that is not one: one line, no start.
    let out = cmd(
        &w,
        &[
            "serve",
            "--no-dht",
            "--http",
            "127.0.0.1:0",
            "--tls-cert",
            c,
            "--tls-key",
            c,
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the TLS key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let instance = Daemon::start(
        cmd(
            &w,
            &[
                "serve",
                "--no-dht",
                "--http",
                "127.0.0.1:0",
                "--tls-cert",
                c,
                "--tls-key",
                k,
            ],
        ),
        1,
    );
    let url = instance.lines[0].clone();
    let port = url
        .strip_prefix("https://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url}"));
    client::add_root_certificates(&[cert.cert.der().to_vec()]);
    let rt = rt();
    let boot = get_json(&rt, &format!("https://localhost:{port}/v1/bootstrap"));
    assert!(boot["communities"][0]["posts"].is_string(), "{boot}");
    // Plain HTTP on the same port gets no answer.
    let plain = rt.block_on(client::get(
        &format!("http://127.0.0.1:{port}/v1/bootstrap"),
        T,
    ));
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status != 200));
}
