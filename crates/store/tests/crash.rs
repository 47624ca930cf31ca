//! Crash test: a child process appends to a signed v11 log (`Core`) in a loop and is SIGKILLed at
//! random moments; after each kill the log must reopen valid (roots hash to the signed tree hash,
//! the signature verifies), hold every block it acknowledged, and hold nothing wrong.
//!
//! The child is this test binary re-run with `PEERHOST_STORE_CRASH_DIR` set (see
//! [`crash_child_process`]); it prints each length an append returned, flushed, on its own line.
//! Block `i`'s content is a function of `i` alone ([`common::block_content`]), so a lost,
//! misplaced or torn block cannot go unnoticed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peerhost_ids::KeyPair;
use peerhost_store::{CreateOptions, Durability, Options, Store};
use rand::Rng;

const ENV_DIR: &str = "PEERHOST_STORE_CRASH_DIR";
const ENV_MODE: &str = "PEERHOST_STORE_CRASH_MODE";
const KILLS_PER_MODE: usize = 50;

fn options(mode: &str) -> Options {
    let durability = match mode {
        "sync" => Durability::Sync,
        _ => Durability::Process,
    };
    Options::default().durability(durability)
}

/// The child's body. Run directly (no env var) it does nothing and passes.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let mode = std::env::var(ENV_MODE).unwrap_or_default();
    let store = Store::open_with(&dir, options(&mode)).expect("child opens the store");
    let mut core = store.open_core("crash").expect("child opens the log");
    let mut rng = rand::thread_rng();
    let stdout = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let start = core.length();
        let n = rng.gen_range(1..=8u64);
        let blocks: Vec<Vec<u8>> = (start..start + n).map(common::block_content).collect();
        let length = core.append(&blocks).expect("append");
        let mut out = stdout.lock();
        // One write(2) per line: a pipe write this small is atomic, so a kill never leaves half
        // a number behind.
        out.write_all(format!("{length}\n").as_bytes())
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}

/// Reopen the log and check it: roots matching the signed tree hash (checked by `open_core`), a
/// valid signature, at least `acked` blocks, every block from `verified_up_to` on equal to its
/// deterministic content (and verified against its leaf by `get`). Returns the length.
fn check(root: &Path, mode: &str, acked: u64, verified_up_to: u64) -> u64 {
    let store = Store::open_with(root, options(mode)).expect("reopen after kill");
    let mut core = store.open_core("crash").expect("log reopens");
    let length = core.length();
    assert!(
        length >= acked,
        "{mode}: length {length} < last acknowledged {acked}"
    );
    assert!(
        length == 0 || core.signature_verifies(),
        "{mode}: signature of length {length}"
    );
    for i in verified_up_to..length {
        let block = core.get(i).expect("block verifies").expect("block present");
        assert_eq!(block, common::block_content(i), "{mode}: block {i}");
    }
    length
}

fn run(mode: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    {
        let store = Store::open_with(root, options(mode)).expect("store");
        let key_pair = KeyPair::from_seed(&[0x42; 32]);
        store
            .create("crash", CreateOptions::default().key_pair(key_pair))
            .expect("create the log");
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = rand::thread_rng();
    let (mut verified, mut acked, mut mid_append_kills) = (0u64, 0u64, 0usize);
    for _ in 0..KILLS_PER_MODE {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_process",
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
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(n) = line.trim().parse::<u64>() {
                    last = Some(n);
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..=100)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert!(!status.success(), "child exited by itself: {status:?}");
        let last = reader.join().expect("reader thread");
        if let Some(n) = last {
            acked = acked.max(n);
        }
        let length = check(root, mode, acked, verified);
        if length > acked {
            // The child was killed after a commit landed but before it printed: mid-append.
            mid_append_kills += 1;
        }
        verified = length;
    }
    // A final full pass: every block against its leaf, every parent, roots, signature.
    let store = Store::open_with(root, options(mode)).expect("store");
    let mut core = store.open_core("crash").expect("log");
    let report = core.verify().expect("full verify");
    assert_eq!(
        report.blocks,
        core.length(),
        "{mode}: every block is stored"
    );
    assert!(report.signed);
    assert!(acked > 0, "{mode}: no append was ever acknowledged");
    eprintln!(
        "{mode}: {KILLS_PER_MODE} kills, final length {}, {mid_append_kills} kills between a \
         commit and its acknowledgement",
        core.length()
    );
}

#[test]
fn survives_sigkill_without_fsync() {
    run("process");
}

#[test]
fn survives_sigkill_with_fsync() {
    run("sync");
}
