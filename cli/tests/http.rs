//! `peerhost serve --http` and `mirror --http --register` end to end (real processes on
//! loopback, no DHT):
//! - heads and ranges over HTTP from the daemon's own cores, verified with
//!   `peerhost_gateway::range::verify`; a flipped byte does not verify;
//! - an instance with a bootstrap page: a mirror registers, passes the health check, is
//!   listed in `/v1/peers` and the bootstrap JSON, reports what it served (`/v1/contributions`,
//!   `peerhost status`), and is dropped from the list once it stops answering.
//!
//! Timeouts are hang guards only.

use std::process::Stdio;
use std::time::Duration;

use peerhost_gateway::{TrustedHead, client, range};
use serde_json::Value;

mod common;
#[path = "common/serving.rs"]
mod serving;
use common::{cmd, run};
use serving::{Daemon, T, get, get_json, hex32, rt, status, wait};

impl Daemon {
    fn url(&self) -> String {
        let u = self.lines.last().expect("the HTTP line").clone();
        assert!(u.starts_with("http://127.0.0.1:"), "{u}");
        u
    }
}

#[test]
fn serve_http_heads_and_range_proofs_verify() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = String::from_utf8(run(&w, &["log", "create", "notes"]).stdout).unwrap();
    let key = key.trim();
    let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let mut a = cmd(&w, &["log", "append", "notes", "--lines"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut a.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    assert!(a.wait().unwrap().success());

    let d = Daemon::start(cmd(&w, &["serve", "--no-dht", "--http", "127.0.0.1:0"]), 1);
    let base = d.url();
    let rt = rt();
    let hex_key = hex::encode(peerhost_ids::Key::parse(key).unwrap().0);
    let logs = get_json(&rt, &format!("{base}/v1/logs"));
    assert_eq!(logs["logs"], serde_json::json!([hex_key]));

    let head = get_json(&rt, &format!("{base}/v1/logs/{key}/head"));
    assert_eq!(head["length"], 100);
    assert_eq!(head["key"], hex_key.as_str());
    assert!(head["signature"].is_string() && head["manifest"].is_string());
    let trusted = TrustedHead {
        fork: head["fork"].as_u64().unwrap(),
        length: 100,
        tree_hash: hex32(&head["treeHash"]),
    };

    // A range, in one response, against the head; immutable when addressed by the head.
    let url = format!("{base}/v1/logs/{hex_key}/blocks?start=10&end=50&length=100&fork=0");
    let r = get(&rt, &url);
    assert_eq!(r.status, 200);
    let proof = range::verify(&r.body, &trusted, 10..50).expect("the range verifies");
    assert_eq!(proof.end(), 50);
    for (i, b) in proof.blocks.iter().enumerate() {
        assert_eq!(b, format!("line {}", 10 + i).as_bytes());
    }
    // One block by index.
    let r = get(
        &rt,
        &format!("{base}/v1/logs/{hex_key}/blocks?start=99&end=100&length=100&fork=0"),
    );
    let one = range::verify(&r.body, &trusted, 99..100).unwrap();
    assert_eq!(one.blocks, vec![b"line 99".to_vec()]);
    // Any flipped byte of a block is caught.
    let mut bad = r.body.clone();
    let last = bad.len() - 2;
    bad[last] ^= 1;
    assert!(range::verify(&bad, &trusted, 99..100).is_err());
    // Past the head: 416 with our length.
    let r = get(
        &rt,
        &format!("{base}/v1/logs/{hex_key}/blocks?start=0&end=101"),
    );
    assert_eq!(r.status, 416);
    // Not an instance: no registration here.
    let r = rt
        .block_on(client::post_json(
            &format!("{base}/v1/peers"),
            &serde_json::json!({"url": "http://127.0.0.1:9"}),
            T,
        ))
        .unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn an_instance_checks_lists_and_counts_its_mirrors() {
    let dir = tempfile::tempdir().unwrap();
    let (w, m) = (dir.path().join("w"), dir.path().join("m"));
    let key = String::from_utf8(run(&w, &["community", "create", "c"]).stdout).unwrap();
    let key = key.trim().to_owned();
    for i in 0..5 {
        run(
            &w,
            &["post", "c", "--title", &format!("post {i}"), "--body", "b"],
        );
    }
    let page = dir.path().join("page");
    std::fs::create_dir_all(&page).unwrap();
    std::fs::write(page.join("index.html"), "<!doctype html><p>page").unwrap();
    std::fs::write(page.join("app.js"), "console.log(1)").unwrap();
    std::fs::write(w.join("peerhost.toml"), "status_interval_ms = 200\n").unwrap();
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("peerhost.toml"), "status_interval_ms = 200\n").unwrap();

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
                "--bootstrap-page",
                page.to_str().unwrap(),
                "--http-interval",
                "1",
                "--allow-private-peers",
            ],
        ),
        2,
    );
    let base = instance.url();
    let tcp = format!("tcp://{}", instance.lines[0]);
    let rt = rt();

    // The page and the bootstrap JSON.
    let r = get(&rt, &format!("{base}/"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"<!doctype html><p>page"[..])
    );
    assert_eq!(get(&rt, &format!("{base}/app.js")).status, 200);
    assert_eq!(get(&rt, &format!("{base}/nope.js")).status, 404);
    let boot = get_json(&rt, &format!("{base}/v1/bootstrap"));
    let c = &boot["communities"][0];
    assert_eq!(
        c["key"],
        hex::encode(peerhost_ids::Key::parse(&key).unwrap().0)
    );
    assert!(c["posts"].is_string() && c["assets"].is_string());
    assert_eq!(boot["peers"], serde_json::json!([]));
    // The instance read only the descriptor log as one: no warning about its posts log.
    wait("the instance's status", || status(&w).is_some());
    let errors = status(&w).unwrap()["errors"].to_string();
    assert!(!errors.contains("skipped"), "{errors}");

    // Bad registrations: a URL with a path, and one where nothing answers (never listed).
    // Registrations are signed with the registering node's key (`peerhost_gateway::auth`).
    let kp = peerhost_ids::KeyPair::generate();
    let post = |path: &str, body: Value| {
        rt.block_on(client::post_json_signed(
            &format!("{base}{path}"),
            &body,
            &kp,
            T,
        ))
        .unwrap()
    };
    // Unsigned: refused.
    let unsigned = rt
        .block_on(client::post_json(
            &format!("{base}/v1/peers"),
            &serde_json::json!({"url": "http://127.0.0.1:9"}),
            T,
        ))
        .unwrap();
    assert_eq!(unsigned.status, 401);
    assert_eq!(
        post("/v1/peers", serde_json::json!({"url": "http://x:1/a"})).status,
        400
    );
    assert_eq!(
        post(
            "/v1/peers",
            serde_json::json!({"url": "http://127.0.0.1:9"})
        )
        .status,
        200
    );

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
                "--http",
                "127.0.0.1:0",
                "--register",
                &base,
                "--http-interval",
                "1",
            ],
        ),
        1,
    );
    let murl = mirror.url();
    wait("the mirror is listed", || {
        get_json(&rt, &format!("{base}/v1/peers"))["peers"] == serde_json::json!([murl])
    });
    let boot = get_json(&rt, &format!("{base}/v1/bootstrap"));
    assert_eq!(boot["peers"], serde_json::json!([murl]));

    // A reader takes the posts from the mirror; the mirror reports it; the instance shows it.
    let posts = c["posts"].as_str().unwrap();
    let r = get(
        &rt,
        &format!("{murl}/v1/logs/{posts}/blocks?start=0&end=5&length=5&fork=0"),
    );
    assert_eq!(r.status, 200);
    let served = r.body.len() as u64;
    wait("the mirror's report arrives", || {
        let t = get_json(&rt, &format!("{base}/v1/contributions"));
        t["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["url"] == murl.as_str() && p["bytesServed"].as_u64() >= Some(served))
    });
    let t = get_json(&rt, &format!("{base}/v1/contributions"));
    let dead = t["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == "http://127.0.0.1:9")
        .unwrap();
    assert_eq!(dead["healthy"], false);
    // The public table says why in a code; the OS error is for `peerhost status` only.
    assert_eq!(dead["problem"], "UNREACHABLE");
    assert!(dead.get("detail").is_none(), "{dead}");
    wait("the status file has the table", || {
        status(&w).is_some_and(|s| {
            s["http"]["contributions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["bytesServed"].as_u64() >= Some(served)))
        })
    });
    let text = String::from_utf8(run(&w, &["status"]).stdout).unwrap();
    assert!(
        text.contains("contributions (2 peers registered)"),
        "{text}"
    );
    assert!(text.contains(&murl), "{text}");
    assert!(text.contains("UNREACHABLE: challenge: "), "{text}");
    // The mirror's own status file is rewritten on its own clock (200 ms here), so it may lag
    // the report the instance already has: wait for it rather than read it once.
    wait("the mirror's status counts what it served", || {
        status(&m).is_some_and(|s| s["http"]["bytes_served"].as_u64() >= Some(served))
    });

    // The mirror stops: it is no longer listed.
    drop(mirror);
    wait("the dead mirror is dropped", || {
        get_json(&rt, &format!("{base}/v1/peers"))["peers"] == serde_json::json!([])
    });
}

/// Issue 17: without `--allow-private-peers` an instance refuses peer URLs on loopback (every
/// spelling), private networks and the like, and never connects to them; registrations must be
/// signed JSON.
#[test]
fn an_instance_refuses_private_peers_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    run(&w, &["community", "create", "c"]);
    let instance = Daemon::start(cmd(&w, &["serve", "--no-dht", "--http", "127.0.0.1:0"]), 1);
    let base = instance.url();
    let rt = rt();
    // Something listening on loopback that must never be contacted.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let port = trap.local_addr().unwrap().port();
    let kp = peerhost_ids::KeyPair::generate();
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.1:{port}"),
        format!("http://2130706433:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
    ] {
        let r = rt
            .block_on(client::post_json_signed(
                &format!("{base}/v1/peers"),
                &serde_json::json!({ "url": url }),
                &kp,
                T,
            ))
            .unwrap();
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 400, "{url}: {body}");
        assert!(body.contains("REFUSED_ADDRESS"), "{url}: {body}");
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(trap.accept().is_err(), "the instance connected to loopback");
    let t = get_json(&rt, &format!("{base}/v1/contributions"));
    assert_eq!(t["peers"], serde_json::json!([]));
}

/// Issue 17 item 7: what a registered peer's gateway answers reaches the operator's terminal
/// through `peerhost status` escaped (it printed up to 200 bytes of it raw): a fake gateway
/// answers the instance's key challenge with a 500 whose body holds OSC 52, CSI, CR and an RLO.
#[test]
fn a_peers_answer_reaches_status_escaped() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    run(&w, &["community", "create", "c"]);
    std::fs::write(w.join("peerhost.toml"), "status_interval_ms = 100\n").unwrap();
    let instance = Daemon::start(
        cmd(
            &w,
            &[
                "serve",
                "--no-dht",
                "--http",
                "127.0.0.1:0",
                "--allow-private-peers",
            ],
        ),
        1,
    );
    let base = instance.url();
    // The fake gateway: every request gets the same hostile 500.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let evil = "pwn\u{1b}]52;c;aGk=\u{7}\u{1b}[2J\rX\u{202e}olleh";
        for s in fake.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 500 Oops\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{evil}",
                evil.len()
            );
        }
    });
    let rt = rt();
    let kp = peerhost_ids::KeyPair::generate();
    let r = rt
        .block_on(client::post_json_signed(
            &format!("{base}/v1/peers"),
            &serde_json::json!({ "url": format!("http://127.0.0.1:{port}") }),
            &kp,
            T,
        ))
        .unwrap();
    assert!(
        r.status < 300,
        "{}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let mut text = String::new();
    // The answer's start, raw or escaped (a bare "pwn" can be part of a z32 log key).
    wait("the failed challenge in the status", || {
        text = String::from_utf8_lossy(&run(&w, &["status"]).stdout).into_owned();
        text.contains("pwn\u{1b}") || text.contains("pwn\\u{1b}")
    });
    let is_safe =
        |c: char| c == '\n' || !(c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c));
    assert!(
        text.chars().all(is_safe),
        "status printed a control: {text:?}"
    );
    assert!(text.contains("pwn\\u{1b}]52;c;aGk="), "{text}");
}

/// One raw HTTP/1.1 exchange with `addr` (what a browser on another site, or an attacker,
/// sends); the whole answer as text.
fn raw_http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Issue 17 items 1 and 3 (CSRF): the POSTs any website a visitor opens can send without a
/// preflight (a form, a text/plain fetch) register and report nothing and get no CORS header;
/// an unsigned JSON registration is refused too. Runs against the binary as a black box.
#[test]
fn cross_site_posts_register_and_report_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    run(&w, &["community", "create", "c"]);
    let instance = Daemon::start(cmd(&w, &["serve", "--no-dht", "--http", "127.0.0.1:0"]), 1);
    let base = instance.url();
    let host = base.trim_start_matches("http://").to_owned();
    let post = |path: &str, ty: &str, body: &str| {
        raw_http(
            &host,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\n\
                 Content-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let url = "http://127.0.0.1:9";
    for (path, ty, body) in [
        (
            "/v1/peers",
            "application/x-www-form-urlencoded",
            "url=http%3A%2F%2F127.0.0.1%3A9".to_owned(),
        ),
        ("/v1/peers", "text/plain", format!(r#"{{"url":"{url}"}}"#)),
        (
            "/v1/report",
            "text/plain",
            format!(r#"{{"url":"{url}","bytes":1000000,"requests":5}}"#),
        ),
        // What a page may send after a preflight: JSON, but unsigned.
        (
            "/v1/peers",
            "application/json",
            format!(r#"{{"url":"{url}"}}"#),
        ),
    ] {
        let res = post(path, ty, &body);
        let status = res.split(' ').nth(1).unwrap_or_default().to_owned();
        assert!(
            status.starts_with('4'),
            "{path} {ty}: accepted ({status}): {res}"
        );
        assert!(
            !res.to_ascii_lowercase()
                .contains("access-control-allow-origin"),
            "{path} {ty}: a CORS header: {res}"
        );
    }
    let rt = rt();
    assert_eq!(
        get_json(&rt, &format!("{base}/v1/peers"))["peers"],
        serde_json::json!([])
    );
    let t = get_json(&rt, &format!("{base}/v1/contributions"));
    assert_eq!(t["peers"], serde_json::json!([]), "{t}");
}

/// Issue 12: any gateway answers a file of an app log it holds by its SHA-256
/// (`GET /v1/blob/{sha256}`, `protocol/gateway.md` §3.4): the instance from the app it
/// published, a mirror once it replicated the app log; immutable, compressed on demand;
/// unknown hashes `404`, other spellings `400`.
#[test]
fn blob_route_serves_the_runtime_by_hash() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let (w, m) = (dir.path().join("w"), dir.path().join("m"));
    let key = String::from_utf8(run(&w, &["community", "create", "c"]).stdout).unwrap();
    let key = key.trim().to_owned();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let runtime = "export const start = () => 'the runtime';\n".repeat(200);
    std::fs::write(app.join("peerhost-runtime.js"), &runtime).unwrap();
    std::fs::write(app.join("index.html"), "<!doctype html><p>app").unwrap();
    run(&w, &["assets", "publish", "c", app.to_str().unwrap()]);
    let pin = hex::encode(sha2::Sha256::digest(runtime.as_bytes()));

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
            ],
        ),
        2,
    );
    let base = instance.url();
    let tcp = format!("tcp://{}", instance.lines[0]);
    let rt = rt();
    let r = get(&rt, &format!("{base}/v1/blob/{pin}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, runtime.as_bytes());
    let r = get(&rt, &format!("{base}/v1/blob/{}", "ab".repeat(32)));
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("UNKNOWN_BLOB"));
    assert_eq!(
        get(&rt, &format!("{base}/v1/blob/{}", pin.to_uppercase())).status,
        400
    );
    let addr = base.trim_start_matches("http://");
    let raw = raw_http(
        addr,
        &format!(
            "GET /v1/blob/{pin} HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: br\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .to_ascii_lowercase();
    assert!(raw.starts_with("http/1.1 200"), "{raw}");
    assert!(
        raw.contains("cache-control: public, max-age=31536000, immutable"),
        "{raw}"
    );
    assert!(raw.contains("content-encoding: br"), "{raw}");
    assert!(raw.contains("access-control-allow-origin: *"), "{raw}");

    // A mirror serves it once it holds the app log.
    std::fs::create_dir_all(&m).unwrap();
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
                "--http",
                "127.0.0.1:0",
            ],
        ),
        1,
    );
    let murl = mirror.url();
    wait("the mirror serves the runtime by hash", || {
        get(&rt, &format!("{murl}/v1/blob/{pin}")).status == 200
    });
    assert_eq!(
        get(&rt, &format!("{murl}/v1/blob/{pin}")).body,
        runtime.as_bytes()
    );
}
