//! Crash test of commits outside the lock: a child process replicates a growing log from a
//! writer into a replica on disk — verifying in the replicator, committing with
//! `Commit::run` / `handle_committed` as the node does — and is SIGKILLed at random moments.
//! After each kill the replica must reopen valid (roots hash to the signed head, the signature
//! verifies), hold every block the child reported downloaded (`Event::Downloaded`, emitted only
//! once its commit is done) and a head at least as long as the last reported, and hold nothing
//! wrong.
//!
//! The child is this test binary re-run with `PEERHOST_REPL_CRASH_DIR` set
//! ([`crash_child_replicates`]); it prints `b INDEX` per downloaded block and `h LENGTH` per
//! head, one `write` per line. Block `i` is a function of `i` alone, so a lost, misplaced or
//! torn block cannot go unnoticed.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peerhost_ids::KeyPair;
use peerhost_replication::{Config, ConnectionInfo, Event, Replicator};
use peerhost_store::{CreateOptions, Durability, Options, Store};
use rand::Rng;

const ENV_DIR: &str = "PEERHOST_REPL_CRASH_DIR";
const ENV_MODE: &str = "PEERHOST_REPL_CRASH_MODE";
const KILLS_PER_MODE: usize = 30;

fn options(mode: &str) -> Options {
    let durability = match mode {
        "sync" => Durability::Sync,
        _ => Durability::Process,
    };
    Options::default().durability(durability)
}

/// Block `i`: 64 to about 1.5 KiB of `i`'s bytes.
fn content(i: u64) -> Vec<u8> {
    let len = 64 + (i * 7919 % 1500) as usize;
    i.to_le_bytes().iter().copied().cycle().take(len).collect()
}

/// The child's body. Run directly (no env var) it does nothing and passes.
#[test]
fn crash_child_replicates() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let mode = std::env::var(ENV_MODE).unwrap_or_default();
    let ws = Store::open_with(dir.join("w"), options("process")).expect("writer store");
    let rs = Store::open_with(dir.join("r"), options(&mode)).expect("replica store");
    let now = Instant::now();
    let mut nodes: Vec<Replicator> = (0..2).map(|_| Replicator::new(Config::default())).collect();
    let writer = ws.open_core("w").expect("writer log");
    let dkey = nodes[0].add_core(writer, false, now);
    nodes[1].add_core(rs.open_core("r").expect("replica log"), true, now);
    nodes[1].set_live(&dkey, true, now);
    nodes[1].download(&dkey, 0, None, now).expect("download");
    let info = |is_initiator| ConnectionInfo {
        is_initiator,
        handshake_hash: [6; 64],
        remote_public_key: [0; 32],
    };
    let c0 = nodes[0].add_connection(info(true), now);
    let c1 = nodes[1].add_connection(info(false), now);
    let mut rng = rand::thread_rng();
    let stdout = std::io::stdout();
    let deadline = now + Duration::from_secs(20);
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        if round % 4 == 0 {
            let start = nodes[0].core(&dkey).expect("writer").length();
            let n = rng.gen_range(1..=8u64);
            let blocks: Vec<Vec<u8>> = (start..start + n).map(content).collect();
            nodes[0]
                .append(&dkey, &blocks, Instant::now())
                .expect("append");
        }
        for (from, cf, to, ct) in [(0, c0, 1, c1), (1, c1, 0, c0)] {
            while let Some(f) = nodes[from].poll_transmit(cf) {
                nodes[to].handle_input(ct, &f, Instant::now());
            }
        }
        let reader = &mut nodes[1];
        while let Some(c) = reader.poll_commit() {
            c.run();
            reader.handle_committed(c, Instant::now());
        }
        let mut out = stdout.lock();
        while let Some(e) = reader.poll_event() {
            let line = match e {
                Event::Downloaded { index, .. } => format!("b {index}\n"),
                Event::Head { length, .. } => format!("h {length}\n"),
                _ => continue,
            };
            // One write(2) per line: a pipe write this small is atomic.
            out.write_all(line.as_bytes())
                .and_then(|()| out.flush())
                .expect("stdout");
        }
        while nodes[0].poll_event().is_some() {}
    }
}

/// What a killed child reported.
#[derive(Default)]
struct Acked {
    blocks: BTreeSet<u64>,
    length: u64,
}

/// Reopen the replica and check it against what was acknowledged; returns its length.
fn check(root: &Path, mode: &str, acked: &Acked) -> u64 {
    let store = Store::open_with(root.join("r"), options(mode)).expect("reopen after kill");
    let mut core = store.open_core("r").expect("the replica reopens");
    let length = core.length();
    assert!(
        length >= acked.length,
        "{mode}: length {length} < last reported head {}",
        acked.length
    );
    assert!(
        length == 0 || core.signature_verifies(),
        "{mode}: signature of length {length}"
    );
    for &i in &acked.blocks {
        let block = core.get(i).expect("block verifies");
        assert_eq!(block, Some(content(i)), "{mode}: reported block {i}");
    }
    let mut i = 0;
    while let Some(b) = core.next_present(i, length).expect("bitfield") {
        let block = core.get(b).expect("block verifies").expect("present");
        assert_eq!(block, content(b), "{mode}: held block {b}");
        i = b + 1;
    }
    length
}

fn run(mode: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    {
        let ws = Store::open_with(root.join("w"), options("process")).expect("writer store");
        let key_pair = KeyPair::from_seed(&[0x24; 32]);
        let mut w = ws
            .create("w", CreateOptions::default().key_pair(key_pair))
            .expect("create the writer");
        w.append(&(0..300).map(content).collect::<Vec<_>>())
            .expect("append");
        let rs = Store::open_with(root.join("r"), options(mode)).expect("replica store");
        rs.create_replica(w.key(), None, Some("r"))
            .expect("create the replica");
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = rand::thread_rng();
    let mut acked = Acked::default();
    let mut lengths = Vec::new();
    for _ in 0..KILLS_PER_MODE {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_replicates",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, root)
            .env(ENV_MODE, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        // The child's first block or head line says it is replicating:
        // the random delay before the kill counts from there, so a slow start on a loaded
        // machine does not turn every kill into a kill before anything was replicated.
        let (started_tx, started) = std::sync::mpsc::sync_channel::<()>(1);
        let reader = std::thread::spawn(move || {
            let mut got = Acked::default();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("b ") || line.starts_with("h ") {
                    let _ = started_tx.try_send(());
                }
                match line.split_once(' ') {
                    Some(("b", i)) => {
                        got.blocks.extend(i.parse::<u64>());
                    }
                    Some(("h", l)) => {
                        got.length = got.length.max(l.parse().unwrap_or(0));
                    }
                    _ => {}
                }
            }
            got
        });
        let _ = started.recv_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..=300)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert!(!status.success(), "child exited by itself: {status:?}");
        let got = reader.join().expect("reader thread");
        acked.blocks.extend(got.blocks);
        acked.length = acked.length.max(got.length);
        lengths.push(check(root, mode, &acked));
    }
    // A final full pass: every block against its leaf, every parent, roots, signature.
    let store = Store::open_with(root.join("r"), options(mode)).expect("store");
    let mut core = store.open_core("r").expect("log");
    let report = core.verify().expect("full verify");
    assert!(report.signed && report.blocks > 300, "{mode}: {report:?}");
    assert!(
        !acked.blocks.is_empty(),
        "{mode}: no block was ever reported"
    );
    eprintln!(
        "{mode}: {KILLS_PER_MODE} kills, {} blocks reported, replica lengths {lengths:?}",
        acked.blocks.len()
    );
}

#[test]
fn a_replica_survives_sigkill_without_fsync() {
    run("process");
}

#[test]
fn a_replica_survives_sigkill_with_fsync() {
    run("sync");
}
