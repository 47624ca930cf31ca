//! Stalled clients do not lock the owner out of the control socket (issue 17, item 8): the
//! daemon serves 16 connections at once, and a client that sends the first byte of a request
//! and then nothing used to hold its slot until the idle timeout (5 minutes). Sixteen such
//! clients, on the real socket of a running daemon, then the owner's `post`/`feed` path
//! (`RemoteLog`: open, append, read): served once the stalled requests are cut off (10 s after
//! their first byte), well before the idle timeout.
//!
//! Timeouts are hang guards only.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use peerhost_daemon::control::{RemoteLog, socket_path};
use peerhost_daemon::{Daemon, FileConfig, Options};
use peerhost_store::{CreateOptions, Store};

/// Connections the daemon serves at once (`control/server.rs`).
const SLOTS: usize = 16;
/// How long a request may take to arrive whole once it started (`control/server.rs`), and the
/// margin the owner is given on top of it; the idle timeout it must not wait for is 300 s.
const REQUEST: Duration = Duration::from_secs(10);
const MARGIN: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_stalled_clients_do_not_lock_the_owner_out() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path())
        .unwrap()
        .create("a", CreateOptions::default())
        .unwrap();
    let daemon = Daemon::start(Options::new(dir.path(), FileConfig::default()))
        .await
        .unwrap();
    let storage = dir.path().to_path_buf();

    // Every slot taken by a client that announced a 5-byte request and sent 2 of them. One
    // more connection than the slots, so that every slot is surely held.
    let path = socket_path(&storage);
    let stalled: Vec<UnixStream> = (0..=SLOTS)
        .map(|_| {
            let mut s = UnixStream::connect(&path).expect("connect");
            s.write_all(&[5, 1, 2]).expect("a stalled request");
            s
        })
        .collect();
    // Give the daemon time to accept them (it takes a slot per accepted connection).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let s = storage.clone();
    let served = tokio::time::timeout(
        REQUEST + MARGIN,
        tokio::task::spawn_blocking(move || {
            let mut log = RemoteLog::open(&s, "a")?;
            let length = log.append(&[b"after the stall".to_vec()])?;
            let block = log.get(0)?;
            Ok::<_, peerhost_daemon::control::ControlError>((length, block))
        }),
    )
    .await;
    let waited = started.elapsed();
    let (length, block) = served
        .unwrap_or_else(|_| panic!("the owner was not served within {:?}", REQUEST + MARGIN))
        .unwrap()
        .expect("the owner is served");
    assert_eq!(length, 1);
    assert_eq!(block.as_deref(), Some(&b"after the stall"[..]));
    // It did wait for the stalled requests to be cut off: the slots were really held.
    assert!(
        waited >= REQUEST - Duration::from_secs(1),
        "served after {waited:?}: were the slots held?"
    );
    drop(stalled);
    daemon.shutdown(Duration::from_millis(200)).await;
}
