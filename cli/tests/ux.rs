//! What a new user hit (issue 16), end to end with real processes: a block too large to
//! replicate, errors that say why, logs the wrong command would break, progress and quiet
//! output, inspecting a store a daemon holds, and the scripting edges.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cmd, run};
use serde_json::Value;

/// The longest any step here may take before the test calls it a hang.
const GUARD: Duration = Duration::from_secs(60);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `peerhost serve --listen-tcp 127.0.0.1:0 --no-dht` on `storage`; the child and its address.
fn serve(storage: &Path) -> (Child, String) {
    let mut child = cmd(
        storage,
        &["serve", "--listen-tcp", "127.0.0.1:0", "--no-dht"],
    )
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

/// SIGTERM, then wait (bounded) for the exit.
fn stop(child: &mut Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -TERM");
    let deadline = Instant::now() + GUARD;
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "hang guard: graceful stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(storage: &Path) -> Value {
    let b = std::fs::read(storage.join("peerhost-status.json")).expect("status file");
    serde_json::from_slice(&b).expect("status JSON")
}

/// `peerhost log append NAME --lines` with `input` on stdin.
fn append_lines(storage: &Path, name: &str, input: &[u8]) -> Output {
    let mut child = cmd(storage, &["log", "append", name, "--lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn append");
    // The child may refuse before reading everything: a broken pipe is its answer, not ours.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    child.wait_with_output().expect("append output")
}

/// Issue 16 item 2: a block larger than one replication message is refused at `--lines` as
/// at a file; a log that holds one anyway (written before the check, or by another
/// implementation) still serves the blocks before it, and its server does not count what it
/// never sent.
#[test]
fn a_block_too_large_to_replicate_is_refused_and_never_counted() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    run(&w, &["log", "create", "lines"]);
    let mut input = b"one\ntwo\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 16 << 20));
    input.extend_from_slice(b"\nthree\n");
    let out = append_lines(&w, "lines", &input);
    assert!(!out.status.success(), "a 16 MiB line was appended");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 3") && err.contains("15 MiB"), "{err}");
    let info = run(&w, &["log", "info", "lines", "--json"]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["length"], 0, "nothing of the refused batch is written");

    // A log that holds one: written through the store, as the check does not stop.
    let key = {
        let store = peerhost_store::Store::open(&w).unwrap();
        let mut core = store
            .create("big", peerhost_store::CreateOptions::default())
            .unwrap();
        core.append(&[b"a".to_vec(), b"b".to_vec(), vec![7u8; 17 << 20]])
            .unwrap();
        core.key().to_z32()
    };
    let (mut server, addr) = serve(&w);
    let peer = format!("tcp://{addr}");
    let r = dir.path().join("r");
    let at = Instant::now();
    let out = cmd(&r, &["follow", &key, "--peer", &peer, "--end", "2", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "follow --end 2: {}", stderr(&out));
    assert!(at.elapsed() < Duration::from_secs(20), "{:?}", at.elapsed());
    let cat = run(&r, &["log", "cat", &key, "--end", "2", "--lines"]);
    assert_eq!(stdout(&cat), "a\nb\n");
    // The whole log cannot come: the follow fails, and the server sent no block it counts.
    let out = cmd(
        &r,
        &["follow", &key, "--peer", &peer, "--timeout", "4", "-q"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success(), "the whole log came");
    stop(&mut server);
    let st = status(&w);
    let sent = st["session"]["uploaded_bytes"].as_u64().unwrap();
    assert!(sent < 1 << 20, "the server counts {sent} bytes served");
}
