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
    // The whole log cannot come: the follow fails, saying which block, its size, the limit
    // and what to do, and the server sent no block it counts.
    let out = cmd(
        &r,
        &["follow", &key, "--peer", &peer, "--timeout", "4", "-q"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success(), "the whole log came");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    for part in [
        format!("error: block 2 of {key} is {} bytes", 17 << 20),
        // replication::MAX_BLOCK_LEN: 2^24 - 1 - 17 - 128 KiB.
        "(16646126 bytes)".to_owned(),
        "no peer can send it".to_owned(),
        "`--end 2`".to_owned(),
    ] {
        assert!(err.contains(&part), "{part:?} missing: {err}");
    }
    stop(&mut server);
    let st = status(&w);
    let sent = st["session"]["uploaded_bytes"].as_u64().unwrap();
    assert!(sent < 1 << 20, "the server counts {sent} bytes served");
}

/// Issue 16 item 1, the second case: `follow --sync` in the middle of a long download stops
/// at SIGINT with an error (it ignored the signal and exited 0), and keeps what it verified.
#[test]
fn sigint_stops_a_follow_sync_in_the_middle_of_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = stdout(&run(&w, &["log", "create", "big"]))
        .trim()
        .to_owned();
    // 16 MiB in 1024 blocks, served at 1 MB/s: a download of some 16 s.
    let line = format!("{}\n", "b".repeat(16 << 10));
    assert!(
        append_lines(&w, "big", line.repeat(1024).as_bytes())
            .status
            .success()
    );
    std::fs::write(w.join("peerhost.toml"), "upload_limit = \"1 MB\"\n").unwrap();
    let (mut server, addr) = serve(&w);
    let r = dir.path().join("r");
    let mut child = cmd(
        &r,
        &["follow", &key, "--peer", &format!("tcp://{addr}"), "--sync"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn follow");
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the download ended");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -INT");
    let at = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(at.elapsed() < Duration::from_secs(5), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "exit 0 after SIGINT: {err}");
    assert!(err.contains("error: interrupted"), "{err}");
    stop(&mut server);
    let info: Value =
        serde_json::from_slice(&run(&r, &["log", "info", &key, "--json"]).stdout).unwrap();
    let held = info["held"].as_u64().unwrap();
    assert!(held > 0 && held < 1024, "{held} blocks held");
}

/// The lines of `child`'s stderr, read on a thread (a read blocks), as a channel.
fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Issue 16 item 5: a peer that refuses the connection is named with the cause and what to
/// do, not reported as a peer lacking the block.
#[test]
fn a_refused_peer_is_named_not_taken_for_a_missing_block() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = stdout(&run(&w, &["log", "create", "x"])).trim().to_owned();
    let r = dir.path().join("r");
    // Port 1 on loopback: refused.
    let out = cmd(
        &r,
        &[
            "follow",
            &key,
            "--peer",
            "tcp://127.0.0.1:1",
            "--timeout",
            "3",
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{err}");
    for part in ["tcp://127.0.0.1:1", "connection refused", "peerhost serve"] {
        assert!(last.contains(part), "{part:?} missing: {err}");
    }
    assert!(!err.contains("no peer found"), "{err}");
    // The warning names it once, not at every retry.
    assert_eq!(
        err.matches("cannot connect to tcp://127.0.0.1:1").count(),
        1,
        "{err}"
    );
}

/// Issue 16 item 5: offline (no bootstrap node answers), `serve` says it is not on the DHT.
#[test]
fn serve_offline_says_it_is_not_on_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    // A bootstrap node on loopback where nothing listens: nothing answers, nothing leaves.
    let mut server = cmd(
        &w,
        &["serve", "--bootstrap", "127.0.0.1:1", "--no-announce"],
    )
    .env("PEERHOST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn serve");
    let lines = stderr_lines(&mut server);
    let deadline = Instant::now() + GUARD;
    let said = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains("the DHT") => break l,
            Ok(_) => {}
            Err(e) => panic!("serve said nothing of the DHT: {e}"),
        }
    };
    stop(&mut server);
    assert!(said.contains("not on the DHT"), "{said}");
    assert!(said.contains("WARN"), "{said}");
}

/// Issue 16 item 4: `log append` into a community's logs is refused, naming the commands
/// that write them; nothing is appended.
#[test]
fn log_append_into_a_community_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    run(&s, &["community", "create", "c"]);
    for (log, says) in [
        ("c.posts", "posts log of community c: `peerhost post`"),
        ("c.comments", "comments log of community c"),
        (
            "c.assets",
            "assets log of community c: `peerhost assets publish`",
        ),
        ("c", "a community's descriptor log"),
    ] {
        let before: Value =
            serde_json::from_slice(&run(&s, &["log", "info", log, "--json"]).stdout).unwrap();
        let out = append_lines(&s, log, b"x\n");
        assert!(!out.status.success(), "{log}: appended");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{log}: {err}");
        let after: Value =
            serde_json::from_slice(&run(&s, &["log", "info", log, "--json"]).stdout).unwrap();
        assert_eq!(before["length"], after["length"], "{log}");
    }
    // A plain log of the same store still takes raw blocks.
    run(&s, &["log", "create", "c.notes"]);
    let out = append_lines(&s, "c.notes", b"x\n");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Wait (bounded) for a line of `lines` containing `needle`; every line read is kept in `seen`.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + GUARD;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                let found = l.contains(needle);
                seen.push(l);
                if found {
                    return;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}):\n{}", seen.join("\n")),
        }
    }
}

/// Issue 16 item 3: `mirror` of a plain log finds once that it is not a community, and does
/// not re-read it as a descriptor log (warning of "malformed blocks") at every growth.
#[test]
fn mirror_of_a_plain_log_says_once_that_it_is_not_a_community() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = stdout(&run(&w, &["log", "create", "plain"]))
        .trim()
        .to_owned();
    let lines: String = (0..300).map(|i| format!("line {i}\n")).collect();
    assert!(append_lines(&w, "plain", lines.as_bytes()).status.success());
    let (mut server, addr) = serve(&w);
    let m = dir.path().join("m");
    let mut mirror = cmd(&m, &["mirror", &key, "--peer", &format!("tcp://{addr}")])
        .env("PEERHOST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mirror");
    let rx = stderr_lines(&mut mirror);
    let mut seen = Vec::new();
    wait_line(&rx, "complete: 300 blocks", &mut seen);
    // It grows (through the serving daemon's control socket), twice.
    for (more, total) in [(100, 400), (100, 500)] {
        let lines: String = (0..more).map(|i| format!("more {i}\n")).collect();
        let out = append_lines(&w, "plain", lines.as_bytes());
        assert!(out.status.success(), "{}", stderr(&out));
        wait_line(&rx, &format!("complete: {total} blocks"), &mut seen);
    }
    stop(&mut mirror);
    stop(&mut server);
    seen.extend(rx.iter());
    let all = seen.join("\n");
    assert!(!all.contains("malformed"), "{all}");
    assert_eq!(all.matches("is not a community").count(), 1, "{all}");
}

/// Issue 16 item 6: `follow` draws its progress only on a terminal, and `-q` leaves stderr to
/// warnings and errors (no INFO lines, no summary).
#[test]
fn follow_progress_only_on_a_terminal_and_quiet_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = stdout(&run(&w, &["log", "create", "x"])).trim().to_owned();
    let lines: String = (0..50).map(|i| format!("line {i}\n")).collect();
    assert!(append_lines(&w, "x", lines.as_bytes()).status.success());
    let (mut server, addr) = serve(&w);
    let peer = format!("tcp://{addr}");
    let follow = |storage: &Path, quiet: bool| {
        let mut c = cmd(storage, &["follow", &key, "--peer", &peer]);
        if quiet {
            c.arg("-q");
        }
        c.env_remove("PEERHOST_LOG").output().unwrap()
    };
    // Not a terminal: the summary and INFO lines, no bar.
    let out = follow(&dir.path().join("a"), false);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("stored and verified"), "{err}");
    assert!(err.contains("INFO"), "{err}");
    assert!(
        !err.contains("finding peers") && !err.contains("/s"),
        "{err}"
    );
    // -q: nothing at all.
    let out = follow(&dir.path().join("b"), true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    stop(&mut server);

    // A terminal (script(1) gives it one): the bar, with bytes and rate, while it waits.
    let c = dir.path().join("c");
    let tty = on_a_terminal(&format!(
        "follow {key} --peer tcp://127.0.0.1:1 --timeout 2 --storage {}",
        c.display()
    ));
    assert!(tty.contains("finding peers"), "{tty}");
    assert!(tty.contains("B/s"), "{tty}");
}

/// Issue 16 item 6: on a terminal, a download in progress shows its blocks, bytes, rate and
/// peers (the whole download of a 267 MB log showed only "finding peers…").
#[test]
fn follow_progress_on_a_terminal_shows_blocks_bytes_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = stdout(&run(&w, &["log", "create", "x"])).trim().to_owned();
    // 4 MiB in 256 blocks, served at 1 MB/s: some 4 s of progress.
    let line = format!("{}\n", "p".repeat(16 << 10));
    assert!(
        append_lines(&w, "x", line.repeat(256).as_bytes())
            .status
            .success()
    );
    std::fs::write(w.join("peerhost.toml"), "upload_limit = \"1 MB\"\n").unwrap();
    let (mut server, addr) = serve(&w);
    let r = dir.path().join("r");
    let tty = on_a_terminal(&format!(
        "follow {key} --peer tcp://{addr} --storage {}",
        r.display()
    ));
    stop(&mut server);
    assert!(tty.contains("blocks from 1 peer"), "{tty}");
    assert!(tty.contains("MiB at "), "{tty}");
    assert!(tty.contains("/s"), "{tty}");
    assert!(tty.contains("stored and verified"), "{tty}");
}

/// Issue 16 item 7: a sparse replica says how many blocks it holds, `log list` shows the
/// logs followed (they have no name), `feed --last 0` is refused.
#[test]
fn sparse_replicas_and_followed_logs_are_shown_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = stdout(&run(&w, &["log", "create", "x"])).trim().to_owned();
    let lines: String = (0..50).map(|i| format!("line {i}\n")).collect();
    assert!(append_lines(&w, "x", lines.as_bytes()).status.success());
    let (mut server, addr) = serve(&w);
    let r = dir.path().join("r");
    let peer = format!("tcp://{addr}");
    run(
        &r,
        &[
            "follow", &key, "--peer", &peer, "--start", "10", "--end", "13",
        ],
    );
    stop(&mut server);
    let info = stdout(&run(&r, &["log", "info", &key]));
    assert!(info.contains("length:           50 (3 held here"), "{info}");
    let info: Value =
        serde_json::from_slice(&run(&r, &["log", "info", &key, "--json"]).stdout).unwrap();
    assert_eq!(info["held"], 3);
    let list = stdout(&run(&r, &["log", "list"]));
    assert!(list.contains(&key) && list.contains("followed"), "{list}");
    let list: Value = serde_json::from_slice(&run(&r, &["log", "list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["key"], key.as_str());
    assert_eq!(list[0]["name"], Value::Null);
    assert_eq!(list[0]["length"], 50);

    let s = dir.path().join("s");
    run(&s, &["community", "create", "c"]);
    let out = cmd(&s, &["feed", "c", "--last", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("no posts yet"), "{}", stdout(&out));
}

/// A store `s` in a fresh directory with log `a` of seven one-line blocks `0`..`6`.
fn seven_blocks(dir: &Path) -> std::path::PathBuf {
    let s = dir.join("s");
    run(&s, &["log", "create", "a"]);
    let input: String = (0..7).map(|i| format!("{i}\n")).collect();
    assert!(append_lines(&s, "a", input.as_bytes()).status.success());
    s
}

/// Issue 16 item 8, the scripting edges, one test each: `--storage` before the subcommand.
#[test]
fn scripting_storage_before_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    let out = Command::new(env!("CARGO_BIN_EXE_peerhost"))
        .arg("--storage")
        .arg(&s)
        .args(["log", "create", "a"])
        .env("PEERHOST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&run(&s, &["log", "list"]));
    assert!(list.contains("  a  length 0"), "{list}");
}

/// Issue 16 item 8: `log cat` ranges past the end or reversed fail with one line and print
/// nothing (they stopped short, or printed nothing, with exit 0).
#[test]
fn scripting_log_cat_ranges_past_the_end_or_reversed() {
    let dir = tempfile::tempdir().unwrap();
    let s = seven_blocks(dir.path());
    for range in [
        ["--start", "5", "--end", "100"],
        ["--start", "9", "--end", "3"],
    ] {
        let mut args = vec!["log", "cat", "a"];
        args.extend(range);
        let out = cmd(&s, &args).output().unwrap();
        assert!(!out.status.success(), "{range:?}: exit 0");
        assert_eq!(stdout(&out), "", "{range:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    assert_eq!(
        stdout(&run(&s, &["log", "cat", "a", "--start", "5", "--lines"])),
        "5\n6\n"
    );
}

/// Issue 16 item 8: `log list --json` and `log verify --json`.
#[test]
fn scripting_log_list_and_verify_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = seven_blocks(dir.path());
    let list: Value = serde_json::from_slice(&run(&s, &["log", "list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[0]["length"], 7);
    let v: Value =
        serde_json::from_slice(&run(&s, &["log", "verify", "a", "--json"]).stdout).unwrap();
    assert_eq!(
        (v["blocks"].as_u64(), v["length"].as_u64()),
        (Some(7), Some(7))
    );
}

/// Issue 16 item 8: `post --body-file`, from a file and from stdin.
#[test]
fn scripting_post_body_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    run(&s, &["community", "create", "c"]);
    let body = dir.path().join("body.md");
    std::fs::write(&body, "a long body\nfrom a file\n").unwrap();
    run(
        &s,
        &[
            "post",
            "c",
            "--title",
            "one",
            "--body-file",
            body.to_str().unwrap(),
        ],
    );
    let mut child = cmd(&s, &["post", "c", "--title", "two", "--body-file", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let feed: Value = serde_json::from_slice(&run(&s, &["feed", "c", "--json"]).stdout).unwrap();
    assert_eq!(feed[0]["body"], "from stdin");
    assert_eq!(feed[1]["body"], "a long body\nfrom a file\n");
}

/// `peerhost serve` on `s` (status rewritten every 100 ms), SIGKILLed after half a second; its
/// stderr (INFO lines).
fn serve_then_sigkill(s: &Path) -> String {
    std::fs::write(s.join("peerhost.toml"), "status_interval_ms = 100\n").unwrap();
    let mut server = cmd(s, &["serve", "--no-dht", "--listen-tcp", "127.0.0.1:0"])
        .env("PEERHOST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.kill().unwrap();
    stderr(&server.wait_with_output().unwrap())
}

/// Issue 16 item 8: after the daemon was SIGKILLed, `status --json` agrees with the text view
/// (`"running": false`).
#[test]
fn scripting_status_json_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let s = seven_blocks(dir.path());
    serve_then_sigkill(&s);
    let text = stdout(&run(&s, &["status"]));
    assert!(text.contains("it was killed"), "{text}");
    let json: Value = serde_json::from_slice(&run(&s, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["running"], false, "{json}");
}

/// Issue 16 item 8: log lines written to a file (not a terminal) carry no ANSI colours, with
/// or without NO_COLOR.
#[test]
fn scripting_log_lines_to_a_file_have_no_colours() {
    let dir = tempfile::tempdir().unwrap();
    let s = seven_blocks(dir.path());
    let log = serve_then_sigkill(&s);
    assert!(log.contains("INFO"), "{log:?}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

/// Issue 16 item 8: the README names every key of `peerhost.toml` (the fields of the daemon's
/// `FileConfig`, which refuses unknown keys) and `PEERHOST_LOG`.
#[test]
fn scripting_readme_names_every_config_key_and_peerhost_log() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let config = std::fs::read_to_string(root.join("crates/daemon/src/config.rs")).unwrap();
    let fields = config
        .split("pub struct FileConfig {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("FileConfig in config.rs");
    let keys: Vec<&str> = fields
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(keys.len() >= 20, "{keys:?}");
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("\n{k} = ")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys the README does not show: {missing:?}"
    );
    assert!(readme.contains("PEERHOST_LOG="), "PEERHOST_LOG");
}

/// Issue 16 item 7: while a daemon holds the store, `log info`, `list`, `create` and `verify`
/// go through its control socket.
#[test]
fn log_info_and_list_while_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = stdout(&run(&w, &["log", "create", "x"])).trim().to_owned();
    let lines: String = (0..5).map(|i| format!("line {i}\n")).collect();
    assert!(append_lines(&w, "x", lines.as_bytes()).status.success());
    let offline: Value =
        serde_json::from_slice(&run(&w, &["log", "info", "x", "--json"]).stdout).unwrap();
    let (mut server, addr) = serve(&w);
    let online: Value =
        serde_json::from_slice(&run(&w, &["log", "info", "x", "--json"]).stdout).unwrap();
    assert_eq!(online, offline);
    assert_eq!(online["held"], 5);
    let list: Value = serde_json::from_slice(&run(&w, &["log", "list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["key"], key.as_str());
    assert_eq!(list[0]["name"], "x");
    assert_eq!(list[0]["length"], 5);
    let out = run(&w, &["log", "verify", "x"]);
    assert!(stdout(&out).starts_with("ok: 5 blocks"), "{}", stdout(&out));
    // A log created through the daemon is served at once.
    let y = stdout(&run(&w, &["log", "create", "y"])).trim().to_owned();
    assert!(append_lines(&w, "y", b"one\ntwo\n").status.success());
    let r = dir.path().join("r");
    run(&r, &["follow", &y, "--peer", &format!("tcp://{addr}")]);
    assert_eq!(
        stdout(&run(&r, &["log", "cat", &y, "--lines"])),
        "one\ntwo\n"
    );
    stop(&mut server);
}

/// Issue 16 item 7: `log verify` while the daemon serves goes through it, in steps that leave
/// the log to it: a writer's appends through the daemon finish while the verify runs, the
/// length at its start is what is checked, `--json` keeps its shape, a terminal shows the
/// progress (nothing else does). A block corrupted while the daemon was stopped is named by
/// its index once it runs again.
#[test]
fn log_verify_while_the_daemon_serves_and_a_writer_appends() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    run(&w, &["log", "create", "x"]);
    // 32 MiB in 4096 blocks of 8 KiB: long enough to re-hash that appends meet it.
    const BLOCKS: u64 = 4096;
    const SIZE: u64 = 8192;
    let line = format!("{}\n", "v".repeat(SIZE as usize));
    assert!(
        append_lines(&w, "x", line.repeat(BLOCKS as usize).as_bytes())
            .status
            .success()
    );
    let (mut server, _addr) = serve(&w);

    // A writer appends through the daemon, one block a call, until the verify ended.
    let running = Arc::new(AtomicBool::new(true));
    let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let writer = {
        let (w, running, done) = (w.clone(), running.clone(), done.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let out = append_lines(&w, "x", b"appended\n");
                assert!(out.status.success(), "{}", stderr(&out));
                done.lock().unwrap().push(Instant::now());
            }
        })
    };
    while done.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let out = run(&w, &["log", "verify", "x", "--json"]);
    let ended = Instant::now();
    running.store(false, Ordering::Relaxed);
    writer.join().unwrap();
    let during = done
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t > started && **t < ended)
        .count();
    eprintln!(
        "verify took {:?}; {during} appends finished meanwhile",
        ended - started
    );
    assert!(during >= 2, "{during} appends during {:?}", ended - started);
    // Not a terminal: no progress, only the JSON, in its shape.
    assert_eq!(stderr(&out), "");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["blocks", "length", "parents", "signed"]);
    let length = v["length"].as_u64().unwrap();
    assert!(length > BLOCKS, "{v}");
    assert_eq!(v["blocks"].as_u64(), Some(length), "{v}");
    assert_eq!(v["signed"], true);
    let info: Value =
        serde_json::from_slice(&run(&w, &["log", "info", "x", "--json"]).stdout).unwrap();
    assert!(info["length"].as_u64().unwrap() > length, "{info} {v}");

    // A terminal (script(1)): the progress, in blocks, bytes and rate, then the result.
    let tty = on_a_terminal(&format!("log verify x --storage {}", w.display()));
    assert!(tty.contains("verifying x"), "{tty}");
    assert!(tty.contains("blocks"), "{tty}");
    assert!(tty.contains("ok: "), "{tty}");

    // A block damaged on disk while the daemon is stopped is named once it runs again.
    stop(&mut server);
    let data = w
        .join("logs")
        .join(format!("{}.data", info["discoveryKey"].as_str().unwrap()));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[(1000 * SIZE + 17) as usize] ^= 0x20;
    std::fs::write(&data, bytes).unwrap();
    let (mut server, _addr) = serve(&w);
    let out = cmd(&w, &["log", "verify", "x"]).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("block 1000"), "{err}");
    assert!(
        std::fs::metadata(w.join("control.sock")).is_ok(),
        "the daemon runs"
    );
    stop(&mut server);
}

/// What `peerhost ARGS` prints on a terminal: script(1) gives it one (ARGS as a shell line).
fn on_a_terminal(args: &str) -> String {
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_peerhost"));
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("PEERHOST_LOG", "error")
        .output()
        .expect("script(1)");
    stdout(&out)
}
