//! A replicator connection fed arbitrary protomux frames after an honest channel open: no
//! panic, and an error always ends the connection (no further output).
//!
//! Setup (once): a store in a temporary directory with a log we write (5 blocks) and an empty
//! replica of another key. Each run opens both into a fresh `Replicator`, adds a connection with
//! a fixed handshake hash, and opens the writer's channel with the right capability, so the
//! input reaches the channel's message handling. Input: records of `u8 len ‖ frame` (cut at the
//! end); each frame goes to `handle_input`, then every transmit is drained.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use peerhost_ids::{Key, KeyPair};
use peerhost_replication::messages::{Handshake, PROTOCOL};
use peerhost_replication::{Config, ConnectionInfo, Replicator, capability};
use peerhost_store::{CreateOptions, Durability, Options, Store};

struct Fixture {
    store: Store,
    writer: Key,
    replica: Key,
    _dir: std::path::PathBuf,
}

fn fixture() -> &'static std::sync::Mutex<Fixture> {
    static F: OnceLock<std::sync::Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("peerhost-fuzz-repl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_with(&dir, Options::default().durability(Durability::Process))
            .expect("store");
        let mut core = store
            .create(
                "w",
                CreateOptions::default().key_pair(KeyPair::from_seed(&[3; 32])),
            )
            .expect("create");
        core.append(&[b"a", b"b", b"c", b"d", b"e"])
            .expect("append");
        let writer = core.key();
        let replica = Key([5; 32]);
        store.create_replica(replica, None, None).expect("replica");
        std::sync::Mutex::new(Fixture {
            store,
            writer,
            replica,
            _dir: dir,
        })
    })
}

fn open_frame(local_id: u64, dkey: &[u8; 32], handshake: &[u8]) -> Vec<u8> {
    // protomux control frame: 00 01 ‖ uint localId ‖ string protocol ‖ buffer id ‖ handshake
    let mut f = vec![0, 1, local_id as u8, PROTOCOL.len() as u8];
    f.extend_from_slice(PROTOCOL.as_bytes());
    f.push(32);
    f.extend_from_slice(dkey);
    f.extend_from_slice(handshake);
    f
}

fuzz_target!(|data: &[u8]| {
    let f = fixture().lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let mut r = Replicator::new(Config::default());
    let (Ok(writer), Ok(replica)) = (
        f.store.open_core(&f.writer.to_hex()),
        f.store.open_core(&f.replica.to_hex()),
    ) else {
        return;
    };
    let dkey = r.add_core(writer, false, now);
    let rdkey = r.add_core(replica, true, now);
    let _ = r.download(&rdkey, 0, None, now);
    let hash = [7u8; 64];
    let conn = r.add_connection(
        ConnectionInfo {
            is_initiator: false,
            handshake_hash: hash,
            remote_public_key: [1; 32],
        },
        now,
    );
    let hs = peerhost_encoding::to_vec(&Handshake {
        seeks: true,
        capability: capability(true, &f.writer, &hash),
    });
    r.handle_input(conn, &open_frame(1, &dkey.0, &hs), now);
    let mut i = 0;
    while i < data.len() {
        let len = data[i] as usize;
        i += 1;
        let end = (i + len).min(data.len());
        r.handle_input(conn, &data[i..end], now);
        i = end;
        while r.poll_transmit(conn).is_some() {}
        if r.connection_error(conn).is_some() {
            assert!(
                r.poll_transmit(conn).is_none(),
                "output after the connection failed"
            );
            break;
        }
        r.handle_timeout(now + std::time::Duration::from_secs(3600));
    }
    while r.poll_event().is_some() {}
    r.remove_connection(conn, now);
});
