//! The daemon end to end (peerhost processes only; the JS peers are in `interop-tests`):
//! - a community served, mirrored and followed through a local HyperDHT, with a malformed
//!   signed entry in its posts log that the follower skips with a warning;
//! - a mirror killed with SIGKILL mid-download resumes without downloading a verified block
//!   again, and a graceful stop (SIGTERM) writes the final status;
//! - a full disk quota: a clear error, downloads stop, serving goes on.
//!
//! Timeouts are hang guards only.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{cmd, run};

const GUARD: Duration = Duration::from_secs(120);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Spawn a long-running command; returns it and the first stdout line if `first_line`.
fn spawn(mut c: Command, first_line: bool) -> (Child, Option<String>) {
    spawn_with(c.stderr(Stdio::null()), first_line)
}

/// [`spawn`], with stderr as the command says.
fn spawn_with(c: &mut Command, first_line: bool) -> (Child, Option<String>) {
    let mut child = c.stdout(Stdio::piped()).spawn().expect("spawn peerhost");
    let mut line = None;
    if first_line {
        let mut l = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut l)
            .expect("first line");
        line = Some(l.trim().to_string());
    }
    (child, line)
}

fn status(storage: &Path) -> Option<Value> {
    let b = std::fs::read(storage.join("peerhost-status.json")).ok()?;
    serde_json::from_slice(&b).ok()
}

fn wait_status(storage: &Path, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(v) = status(storage) {
            if f(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "hang guard: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every log of the status with this role is complete (and there are `n` of them).
fn complete(v: &Value, role: &str, n: usize) -> bool {
    let logs: Vec<&Value> = v["logs"]
        .as_array()
        .map(|a| a.iter().filter(|l| l["role"] == role).collect())
        .unwrap_or_default();
    logs.len() == n
        && logs.iter().all(|l| {
            l["held"] == l["length"] && (l["length"].as_u64() > Some(0) || l["part"] == "comments")
        })
}

fn sigterm(child: &mut Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -TERM");
    let deadline = Instant::now() + GUARD;
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "hang guard: graceful stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(storage: &Path, text: &str) {
    std::fs::create_dir_all(storage).unwrap();
    std::fs::write(storage.join("peerhost.toml"), text).unwrap();
}

#[test]
fn community_over_the_dht_with_a_malformed_entry() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // One bootstrap node is a whole DHT: it stores the records too.
    let testnet = rt
        .block_on(peerhost_swarm::Bootstrapper::bind(
            peerhost_swarm::BootstrapOptions::new(Ipv4Addr::LOCALHOST, 0)
                .with_bind(Ipv4Addr::LOCALHOST),
        ))
        .unwrap();
    let bootstrap = testnet.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (w, m, f) = (
        dir.path().join("w"),
        dir.path().join("m"),
        dir.path().join("f"),
    );
    let dht = |storage: &Path, args: &[&str]| {
        let mut c = cmd(storage, args);
        c.env("PEERHOST_BOOTSTRAP", &bootstrap);
        c
    };

    // The instance: 30 posts, a signed block that is not an entry, 2 more posts, a web app.
    let key = stdout(&run(&w, &["community", "create", "c"]));
    for i in 0..30 {
        run(&w, &["post", "c", "--title", &format!("post {i}")]);
    }
    // `log append` refuses a community's logs (issue 16): written through the store, as
    // another implementation could.
    {
        let store = peerhost_store::Store::open(&w).unwrap();
        let mut posts = store.open_core("c.posts").unwrap();
        posts.append(&[b"\xff\xff not protobuf".to_vec()]).unwrap();
    }
    run(&w, &["post", "c", "--title", "post 30"]);
    run(&w, &["post", "c", "--title", "post 31"]);
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let js: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(app.join("index.html"), b"<!doctype html><p>hi</p>").unwrap();
    std::fs::write(app.join("app.bin"), &js).unwrap();
    run(&w, &["assets", "publish", "c", app.to_str().unwrap()]);

    let (mut instance, _) = spawn(dht(&w, &["serve"]), false);
    let (mut mirror, _) = spawn(dht(&m, &["mirror", &key, "-q"]), false);
    wait_status(&m, "the mirror completes", |v| complete(v, "mirror", 5)); // descriptor, posts, comments, assets, index

    // The instance goes offline, gracefully: its last status says so.
    sigterm(&mut instance);
    let last = status(&w).unwrap();
    assert_eq!(last["running"], false);
    assert!(last["session"]["uploaded_bytes"].as_u64().unwrap() > 300_000);

    // A follower finds the community with one lookup and reads it from the mirror.
    let out = dht(
        &f,
        &[
            "follow", &key, "--last", "5", "--json", "--asset", "app.bin",
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "follow failed:\n{err}");
    let posts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let titles: Vec<&str> = posts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["post 31", "post 30", "post 29", "post 28", "post 27"]
    );
    assert!(
        err.contains("skipped block 30"),
        "the malformed block is reported:\n{err}"
    );
    assert!(err.contains("app.bin"), "{err}");
    // The asset is in the follower's store, verified: read it back offline.
    let got = run(&f, &["assets", "get", &key, "app.bin"]).stdout;
    assert_eq!(got, js);
    // And so are the posts.
    let out = run(&f, &["feed", &key, "--last", "5", "--json"]);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again.as_array().unwrap().len(), 5);

    // The mirror served it.
    let v = wait_status(&m, "the mirror reports serving", |v| {
        v["session"]["uploaded_bytes"].as_u64() > Some(300_000)
    });
    assert!(v["peers"].as_array().is_some());
    sigterm(&mut mirror);
    drop(testnet);
}

/// A writer with one log of `n` blocks of `size` bytes; returns its key.
fn writer_log(storage: &Path, name: &str, n: usize, size: usize) -> String {
    let key = stdout(&run(storage, &["log", "create", name]));
    let files = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..n {
        let p = files.path().join(i.to_string());
        std::fs::write(&p, vec![(i % 256) as u8; size]).unwrap();
        paths.push(p.to_str().unwrap().to_owned());
    }
    for chunk in paths.chunks(500) {
        let mut args = vec!["log", "append", name];
        args.extend(chunk.iter().map(String::as_str));
        run(storage, &args);
    }
    key
}

fn held(status: &Value, key: &str) -> u64 {
    status["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == key)
        .map_or(0, |l| l["held"].as_u64().unwrap())
}

#[test]
fn sigkill_resumes_without_downloading_again() {
    let dir = tempfile::tempdir().unwrap();
    let (w, m) = (dir.path().join("w"), dir.path().join("m"));
    const N: u64 = 1000;
    let key = writer_log(&w, "big", N as usize, 4096);
    // Slow the writer down so the mirror is caught in the middle.
    config(&w, "upload_limit = \"400 kB\"\n");
    let (mut server, addr) = spawn(
        cmd(&w, &["serve", "--no-dht", "--listen-tcp", "127.0.0.1:0"]),
        true,
    );
    let peer = format!("tcp://{}", addr.unwrap());
    config(&m, "status_interval_ms = 100\n");
    let (mut mirror, _) = spawn(
        cmd(&m, &["mirror", &key, "--peer", &peer, "--no-dht", "-q"]),
        false,
    );
    wait_status(&m, "the mirror is halfway", |v| {
        let h = held(v, &key);
        h > N / 5 && h < N * 3 / 5
    });
    mirror.kill().unwrap(); // SIGKILL
    mirror.wait().unwrap();

    // What survived: a daemon without peers reports it, then stops gracefully.
    let (mut idle, _) = spawn(cmd(&m, &["serve", "--no-dht"]), false);
    let pid = idle.id();
    let v = wait_status(&m, "the idle daemon reports", |v| {
        v["pid"] == pid && v["logs"].as_array().is_some_and(|l| !l.is_empty())
    });
    let before = held(&v, &key);
    assert!(before > 0 && before < N, "held after the kill: {before}");
    sigterm(&mut idle);
    assert_eq!(status(&m).unwrap()["running"], false);

    // The restart mirrors only what is missing (the mirror is recorded in the state file:
    // `serve` alone resumes it).
    let (mut resumed, _) = spawn(
        cmd(&m, &["mirror", &key, "--peer", &peer, "--no-dht", "-q"]),
        false,
    );
    let v = wait_status(&m, "the mirror completes", |v| held(v, &key) == N);
    let log = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == key.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        log["session"]["downloaded_blocks"].as_u64().unwrap(),
        N - before,
        "downloaded again: {log}"
    );
    sigterm(&mut resumed);
    let state: Value =
        serde_json::from_slice(&std::fs::read(m.join("peerhost-state.json")).unwrap()).unwrap();
    assert_eq!(state["mirrors"].as_array().unwrap().len(), 1);
    let out = run(&m, &["log", "verify", &key]);
    assert!(out.status.success());
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_full_quota_stops_downloads_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (w, m, f) = (
        dir.path().join("w"),
        dir.path().join("m"),
        dir.path().join("f"),
    );
    let small = writer_log(&w, "small", 20, 1000);
    let big = writer_log(&w, "big", 200, 16384);
    let (mut server, addr) = spawn(
        cmd(&w, &["serve", "--no-dht", "--listen-tcp", "127.0.0.1:0"]),
        true,
    );
    let peer = format!("tcp://{}", addr.unwrap());

    // First the small log, in full.
    config(&m, "status_interval_ms = 100\nquota = \"1 MB\"\n");
    let (mut mirror, _) = spawn(
        cmd(
            &m,
            &[
                "mirror",
                &small,
                "--peer",
                &peer,
                "--no-dht",
                "-q",
                "--listen-tcp",
                "127.0.0.1:0",
            ],
        ),
        true,
    );
    wait_status(&m, "the small log is mirrored", |v| held(v, &small) == 20);
    sigterm(&mut mirror);

    // Then the big one (3.3 MB) does not fit: a clear error, the downloads stop.
    let (mut mirror, maddr) = spawn_with(
        cmd(
            &m,
            &[
                "mirror",
                &big,
                "--peer",
                &peer,
                "--no-dht",
                "--listen-tcp",
                "127.0.0.1:0",
            ],
        )
        .stderr(Stdio::piped()),
        true,
    );
    let v = wait_status(&m, "the quota is full", |v| v["quota"]["full"] == true);
    let errors = v["errors"].to_string();
    assert!(errors.contains("disk quota is full"), "{errors}");
    let used = v["quota"]["used"].as_u64().unwrap();
    // The budget stops downloads at once: at most the requests in flight land after it.
    assert!(used < 1_000_000 + 48 * 17_000, "used {used}");
    let got = held(&v, &big);
    assert!(got < 200, "held {got}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        held(&status(&m).unwrap(), &big),
        held(&wait_status(&m, "fresh", |_| true), &big)
    );

    // Serving goes on: a follower gets the small log from this mirror alone.
    let _ = server.kill();
    let _ = server.wait();
    let mpeer = format!("tcp://{}", maddr.unwrap());
    let out = run(&f, &["follow", &small, "--peer", &mpeer, "-q"]);
    assert!(out.status.success());
    let out = run(&f, &["log", "verify", &small]);
    assert!(out.status.success());
    sigterm(&mut mirror);
    let mut out = String::new();
    use std::io::Read;
    mirror
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        out.contains("disk quota is full"),
        "the mirror says why: {out}"
    );
}

/// The titles of `peerhost feed … --json`'s output, newest first.
fn titles(out: &Output) -> Vec<String> {
    let v: Value = serde_json::from_slice(&out.stdout).expect("feed --json");
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect()
}

/// The length and held blocks of the log of part `part` in a daemon's status.
fn part(v: &Value, part: &str) -> (u64, u64) {
    v["logs"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["part"] == part))
        .map_or((0, 0), |l| {
            (
                l["length"].as_u64().unwrap_or(0),
                l["held"].as_u64().unwrap_or(0),
            )
        })
}

#[test]
fn post_import_and_feed_while_the_daemon_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (w, m) = (dir.path().join("w"), dir.path().join("m"));
    let key = stdout(&run(&w, &["community", "create", "news"]));
    run(&w, &["post", "news", "--title", "before"]);
    run(&w, &["log", "create", "notes"]);
    config(&w, "status_interval_ms = 100\n");
    let (mut server, addr) = spawn(
        cmd(&w, &["serve", "--no-dht", "--listen-tcp", "127.0.0.1:0"]),
        true,
    );
    let peer = format!("tcp://{}", addr.unwrap());
    wait_status(&w, "the instance is up", |v| v["running"] == true);
    config(&m, "status_interval_ms = 100\n");
    let (mut mirror, _) = spawn(
        cmd(&m, &["mirror", &key, "--peer", &peer, "--no-dht", "-q"]),
        false,
    );
    wait_status(&m, "the mirror holds the first post", |v| {
        part(v, "posts") == (1, 1)
    });

    // The instance's daemon holds the store: the commands go through its control socket,
    // and its peers hear of the appends at once.
    run(
        &w,
        &["post", "news", "--title", "while serving", "--body", "b"],
    );
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/feed/tests/data");
    let (community, posts) = (data.join("community.json"), data.join("posts.json"));
    let out = run(
        &w,
        &[
            "import",
            "news",
            community.to_str().unwrap(),
            posts.to_str().unwrap(),
        ],
    );
    let said = stdout(&out);
    assert!(said.contains("descriptor updated"), "{said}");
    assert!(said.contains("30 posts: 30 new"), "{said}");
    let out = run(&w, &["feed", "news", "--last", "50", "--json"]);
    let on_instance = titles(&out);
    assert_eq!(on_instance.len(), 32, "{on_instance:?}");
    assert_eq!(on_instance.last().map(String::as_str), Some("before"));
    assert!(on_instance.iter().any(|t| t == "while serving"));
    let n = on_instance.len() as u64;
    wait_status(&m, "the mirror gets the new posts live", |v| {
        part(v, "posts").1 >= n
    });
    // A reader's `feed` while its own daemon (the mirror) runs: read through that daemon.
    let out = run(&m, &["feed", &key, "--last", "50", "--json"]);
    assert_eq!(titles(&out), on_instance);

    // A plain log, appended to and read back through the daemon.
    let block = dir.path().join("block");
    std::fs::write(&block, b"a block appended while serving").unwrap();
    run(&w, &["log", "append", "notes", block.to_str().unwrap()]);
    let out = run(&w, &["log", "cat", "notes"]);
    assert_eq!(out.stdout, b"a block appended while serving");

    // Creating logs needs the store itself: a clear error, and the daemon goes on.
    let out = cmd(&w, &["community", "create", "other"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop `peerhost serve`"), "{err}");
    // A reader cannot append to the mirror's copy.
    let out = cmd(&m, &["post", &key, "--title", "x"]).output().unwrap();
    assert!(!out.status.success());

    sigterm(&mut server);
    assert!(!w.join("control.sock").exists(), "the socket is removed");
    // With the daemon gone, the same commands open the store themselves.
    run(&w, &["post", "news", "--title", "after"]);
    let out = run(&w, &["feed", "news", "--last", "1", "--json"]);
    assert_eq!(titles(&out), ["after"]);
    sigterm(&mut mirror);
}
