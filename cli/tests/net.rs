//! `peerhost serve`, `follow` and `mirror` end to end over loopback TCP (peerhost on both sides).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_peerhost");

fn peerhost(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run peerhost")
}

/// `peerhost serve` on a free port; returns the child and the bound address it printed.
fn serve(storage: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--storage", storage, "--listen-tcp", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    (child, line.trim().to_string())
}

#[test]
fn serve_follow_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let w = w.to_str().unwrap();
    let out = peerhost(&["log", "create", "notes", "--storage", w]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let lines: String = (0..300).map(|i| format!("line {i}\n")).collect();
    let mut append = Command::new(BIN)
        .args(["log", "append", "notes", "--lines", "--storage", w])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    append
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(append.wait().unwrap().success());
    let (mut server, addr) = serve(w);
    let peer = format!("tcp://{addr}");

    // follow: everything, with stats.
    let r = dir.path().join("r");
    let r = r.to_str().unwrap();
    let out = peerhost(&[
        "follow",
        &key,
        "--peer",
        &peer,
        "--storage",
        r,
        "-q",
        "--stats",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["blocks"], 300);
    let out = peerhost(&["log", "verify", &key, "--storage", r]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = peerhost(&[
        "log",
        "cat",
        &key,
        "--storage",
        r,
        "--start",
        "299",
        "--lines",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line 299\n");

    // follow --last 5 and a sparse range.
    let s = dir.path().join("s");
    let s = s.to_str().unwrap();
    let out = peerhost(&[
        "follow",
        &key,
        "--peer",
        &peer,
        "--storage",
        s,
        "-q",
        "--last",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = peerhost(&[
        "follow",
        &key,
        "--peer",
        &peer,
        "--storage",
        s,
        "-q",
        "--start",
        "10",
        "--end",
        "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = peerhost(&[
        "log",
        "cat",
        &key,
        "--storage",
        s,
        "--start",
        "10",
        "--end",
        "20",
        "--lines",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("line 10\n"));
    let out = peerhost(&[
        "log",
        "cat",
        &key,
        "--storage",
        s,
        "--start",
        "0",
        "--end",
        "1",
    ]);
    assert!(!out.status.success(), "block 0 was not downloaded");

    // mirror until it has everything, then stop it and look.
    let m = dir.path().join("m");
    let m = m.to_str().unwrap();
    let mut mirror = Command::new(BIN)
        .args(["mirror", &key, "--peer", &peer, "--storage", m, "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        // The mirror holds the store's lock; a copy of its files can be read.
        let copy = dir.path().join("copy");
        let _ = std::fs::remove_dir_all(&copy);
        let ok = Command::new("cp")
            .args(["-r", m, copy.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        let _ = std::fs::remove_file(copy.join("LOCK"));
        if ok {
            let out = peerhost(&[
                "log",
                "info",
                &key,
                "--storage",
                copy.to_str().unwrap(),
                "--json",
            ]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                if v["contiguousLength"] == 300 {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "the mirror did not catch up");
    }
    mirror.kill().unwrap();
    let _ = mirror.wait();
    server.kill().unwrap();
    let _ = server.wait();
}

/// Issue 16 item 1: Ctrl-C (and SIGTERM) stop a `follow` that is still waiting for a peer, at
/// once and with an error, instead of 58 s later when its timeout ends.
#[test]
fn a_signal_stops_a_follow_that_waits() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let out = peerhost(&["log", "create", "x", "--storage", a.to_str().unwrap()]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    for signal in ["-INT", "-TERM"] {
        // Port 1 on loopback: refused, so the follow keeps reconnecting.
        let mut child = Command::new(BIN)
            .args(["follow", &key, "--peer", "tcp://127.0.0.1:1", "--storage"])
            .arg(&b)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn follow");
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "follow ended by itself"
        );
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill {signal}");
        let at = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                at.elapsed() < Duration::from_secs(10),
                "{signal}: still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            !status.success(),
            "{signal}: exit 0 after an interrupted follow"
        );
        assert!(stderr.contains("error: interrupted"), "{signal}: {stderr}");
    }
}
