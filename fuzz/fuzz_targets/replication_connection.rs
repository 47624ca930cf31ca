//! A replicator fed arbitrary protomux frames on one connection while an honest peer serves it
//! on another, on logs in memory (no disk): no panic, an error always ends the connection (no
//! further output), and whatever arrived, the log it downloads holds only what verifies.
//!
//! Setup per run: replicator A holds a log it writes (`w1`, 5 blocks, served passively) and a
//! replica of another log (`w2`, downloading everything); replicator B holds `w2` (40 blocks).
//! A's connection 1 is the fuzzer's: both channels are opened on it with the right
//! capabilities, so input reaches the serving and the downloading paths. A's connection 2 is
//! B's. Input: records of `u8 len ‖ frame` (cut at the end); `len = 0` runs A's held commits
//! (otherwise they wait, so frames meet commits in flight), every other frame goes to
//! `handle_input` on connection 1, then both links are drained.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_replication::messages::{Handshake, PROTOCOL};
use peerhost_replication::{
    Config, ConnId, ConnectionInfo, LogStore, MemoryLog, Replicator, capability,
};

struct Fixture {
    w1: MemoryLog,
    w2: MemoryLog,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut w1 = MemoryLog::writer(KeyPair::from_seed(&[3; 32]), false);
        w1.append(&[b"a", b"b", b"c", b"d", b"e"]).expect("append");
        let mut w2 = MemoryLog::writer(KeyPair::from_seed(&[4; 32]), false);
        let blocks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w2.append(&refs).expect("append");
        Fixture { w1, w2 }
    })
}

fn open_frame(local_id: u64, dkey: &DiscoveryKey, handshake: &[u8]) -> Vec<u8> {
    // protomux control frame: 00 01 ‖ uint localId ‖ string protocol ‖ buffer id ‖ handshake
    let mut f = vec![0, 1, local_id as u8, PROTOCOL.len() as u8];
    f.extend_from_slice(PROTOCOL.as_bytes());
    f.push(32);
    f.extend_from_slice(&dkey.0);
    f.extend_from_slice(handshake);
    f
}

fn info(is_initiator: bool, hash: [u8; 64]) -> ConnectionInfo {
    ConnectionInfo {
        is_initiator,
        handshake_hash: hash,
        remote_public_key: [1; 32],
    }
}

/// Move frames between A's connection 2 and B until neither sends.
fn pump(a: &mut Replicator<MemoryLog>, a2: ConnId, b: &mut Replicator<MemoryLog>, b1: ConnId) {
    let now = Instant::now();
    for _ in 0..64 {
        let mut any = false;
        while let Some(f) = a.poll_transmit(a2) {
            b.handle_input(b1, &f, now);
            any = true;
        }
        while let Some(f) = b.poll_transmit(b1) {
            a.handle_input(a2, &f, now);
            any = true;
        }
        while let Some(c) = b.poll_commit() {
            c.run();
            b.handle_committed(c, now);
        }
        if !any {
            return;
        }
    }
}

fn commit(a: &mut Replicator<MemoryLog>) {
    while let Some(c) = a.poll_commit() {
        c.run();
        a.handle_committed(c, Instant::now());
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let now = Instant::now();
    let mut a = Replicator::new(Config::default());
    let mut b = Replicator::new(Config::default());
    let (k1, k2): (Key, Key) = (f.w1.key(), f.w2.key());
    let d1 = a.add_core(f.w1.clone(), false, now);
    let d2 = a.add_core(MemoryLog::replica(k2, None).expect("replica"), true, now);
    let _ = a.download(&d2, 0, None, now);
    b.add_core(f.w2.clone(), false, now);

    let hash = [7u8; 64];
    let a1 = a.add_connection(info(false, hash), now);
    let a2 = a.add_connection(info(true, [8; 64]), now);
    let b1 = b.add_connection(info(false, [8; 64]), now);
    for (local_id, dkey, key) in [(1, d1, k1), (2, d2, k2)] {
        let hs = peerhost_encoding::to_vec(&Handshake {
            seeks: true,
            capability: capability(true, &key, &hash),
        });
        a.handle_input(a1, &open_frame(local_id, &dkey, &hs), now);
    }
    pump(&mut a, a2, &mut b, b1);

    let mut i = 0;
    while i < data.len() {
        let len = data[i] as usize;
        i += 1;
        if len == 0 {
            commit(&mut a);
            continue;
        }
        let end = (i + len).min(data.len());
        a.handle_input(a1, &data[i..end], now);
        i = end;
        while a.poll_transmit(a1).is_some() {}
        if a.connection_error(a1).is_some() {
            assert!(
                a.poll_transmit(a1).is_none(),
                "output after the connection failed"
            );
            break;
        }
        pump(&mut a, a2, &mut b, b1);
        a.handle_timeout(now + Duration::from_secs(3600));
    }
    commit(&mut a);
    pump(&mut a, a2, &mut b, b1);
    commit(&mut a);
    while a.poll_event().is_some() {}
    if data.is_empty() {
        // The harness itself works: with no input, the honest peer fills the replica.
        assert!(a.is_complete(&d2), "the honest download did not complete");
        assert_eq!(a.core(&d2).map(LogStore::length), Some(40));
    }
    let replica = a.core(&d2).expect("the replica");
    if let Err(e) = replica.verify() {
        panic!("the replica holds something that does not verify: {e}");
    }
    a.remove_connection(a1, now);
    a.remove_connection(a2, now);
});
