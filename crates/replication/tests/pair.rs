//! Replicators back to back in memory (no encryption: frames are moved between them as the
//! secret stream would deliver them), with stores in temporary directories: full and sparse
//! downloads, live appends, a truncation followed by the reader, requests spread over two
//! peers, a dropped peer whose requests move to the other, and JS-like limits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use peerhost_ids::{DiscoveryKey, KeyPair};
use peerhost_replication::{Config, ConnId, ConnectionInfo, Event, Replicator};
use peerhost_store::{CreateOptions, Durability, Options, Store};

fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options::default().durability(Durability::Process),
    )
    .unwrap();
    (store, dir)
}

fn block(i: u64) -> Vec<u8> {
    format!("block {i}").into_bytes()
}

/// A set of replicators and in-memory links between them.
struct Net {
    nodes: Vec<Replicator>,
    /// (node a, conn on a) ↔ (node b, conn on b)
    links: Vec<((usize, ConnId), (usize, ConnId))>,
    now: Instant,
    downloads: HashMap<usize, Vec<u64>>,
    events: Vec<(usize, Event)>,
}

impl Net {
    fn new(n: usize) -> Self {
        Self {
            nodes: (0..n).map(|_| Replicator::new(Config::default())).collect(),
            links: Vec::new(),
            now: Instant::now(),
            downloads: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn link(&mut self, a: usize, b: usize) -> usize {
        let hash = [self.links.len() as u8 + 1; 64];
        let ia = ConnectionInfo {
            is_initiator: true,
            handshake_hash: hash,
            remote_public_key: [b as u8; 32],
        };
        let ib = ConnectionInfo {
            is_initiator: false,
            handshake_hash: hash,
            remote_public_key: [a as u8; 32],
        };
        let ca = self.nodes[a].add_connection(ia, self.now);
        let cb = self.nodes[b].add_connection(ib, self.now);
        self.links.push(((a, ca), (b, cb)));
        self.links.len() - 1
    }

    fn unlink(&mut self, link: usize) {
        let ((a, ca), (b, cb)) = self.links[link];
        self.nodes[a].remove_connection(ca, self.now);
        self.nodes[b].remove_connection(cb, self.now);
    }

    /// Move frames until nothing moves; returns how many moved.
    fn drive(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            for &((a, ca), (b, cb)) in &self.links {
                for (from, cf, to, ct) in [(a, ca, b, cb), (b, cb, a, ca)] {
                    while let Some(f) = self.nodes[from].poll_transmit(cf) {
                        self.nodes[to].handle_input(ct, &f, self.now);
                        any = true;
                        moved += 1;
                    }
                }
            }
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some(e) = n.poll_event() {
                    if let Event::Downloaded { index, .. } = e {
                        self.downloads.entry(i).or_default().push(index);
                    }
                    self.events.push((i, e));
                }
            }
            if !any {
                return moved;
            }
        }
    }
}

/// A writer with `n` blocks in node 0's replicator; returns its discovery key and key.
fn writer(
    net: &mut Net,
    node: usize,
    n: u64,
    stores: &mut Vec<(Store, tempfile::TempDir)>,
) -> (DiscoveryKey, peerhost_ids::Key) {
    let (s, d) = store();
    let mut core = s
        .create(
            "w",
            CreateOptions::default().key_pair(KeyPair::from_seed(&[1; 32])),
        )
        .unwrap();
    let blocks: Vec<Vec<u8>> = (0..n).map(block).collect();
    if n > 0 {
        core.append(&blocks).unwrap();
    }
    let key = core.key();
    let dkey = net.nodes[node].add_core(core, false, net.now);
    stores.push((s, d));
    (dkey, key)
}

fn replica(
    net: &mut Net,
    node: usize,
    key: peerhost_ids::Key,
    stores: &mut Vec<(Store, tempfile::TempDir)>,
) -> DiscoveryKey {
    let (s, d) = store();
    let core = s.create_replica(key, None, None).unwrap();
    let dkey = net.nodes[node].add_core(core, true, net.now);
    stores.push((s, d));
    dkey
}

#[test]
fn full_sparse_live_and_truncate() {
    let mut stores = Vec::new();
    let mut net = Net::new(2);
    let (dkey, key) = writer(&mut net, 0, 100, &mut stores);
    replica(&mut net, 1, key, &mut stores);
    net.link(0, 1);
    net.drive();
    assert!(net.nodes[1].is_synced(&dkey));
    assert_eq!(net.nodes[1].core(&dkey).unwrap().length(), 100);

    // Sparse first.
    net.nodes[1].download(&dkey, 40, Some(45), net.now).unwrap();
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey));
    let core = net.nodes[1].core_mut(&dkey).unwrap();
    assert!(!core.has(39).unwrap() && core.has(40).unwrap() && !core.has(45).unwrap());

    // Then everything, live.
    net.nodes[1].set_live(&dkey, true, net.now);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey));
    net.nodes[0]
        .append(&dkey, &[block(100), block(101)], net.now)
        .unwrap();
    net.drive();
    let core = net.nodes[1].core_mut(&dkey).unwrap();
    assert_eq!(core.length(), 102);
    assert_eq!(core.get(101).unwrap(), Some(block(101)));

    // A truncation and new blocks: the reader follows onto the new fork.
    net.nodes[0].truncate(&dkey, 90, net.now).unwrap();
    net.nodes[0]
        .append(&dkey, &[b"new 90".to_vec()], net.now)
        .unwrap();
    net.drive();
    let core = net.nodes[1].core_mut(&dkey).unwrap();
    assert_eq!((core.length(), core.fork()), (91, 1));
    assert_eq!(core.get(90).unwrap(), Some(b"new 90".to_vec()));
    assert_eq!(core.get(89).unwrap(), Some(block(89)));
    core.verify().unwrap();
}

#[test]
fn requests_spread_over_peers_and_move_when_one_leaves() {
    let mut stores = Vec::new();
    let mut net = Net::new(3);
    // Node 0 writes; node 1 mirrors it fully first.
    let (dkey, key) = writer(&mut net, 0, 400, &mut stores);
    replica(&mut net, 1, key, &mut stores);
    let l01 = net.link(0, 1);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey));

    // Node 2 downloads from both.
    replica(&mut net, 2, key, &mut stores);
    let l02 = net.link(0, 2);
    let l12 = net.link(1, 2);
    net.drive();
    assert!(net.nodes[2].is_synced(&dkey));
    net.nodes[2].download(&dkey, 0, None, net.now).unwrap();
    // One round: the first requests go to both peers.
    let mut uploads = [0u64; 2];
    for _ in 0..3 {
        for &((a, ca), (b, cb)) in &net.links.clone() {
            for (from, cf, to, ct) in [(a, ca, b, cb), (b, cb, a, ca)] {
                while let Some(f) = net.nodes[from].poll_transmit(cf) {
                    net.nodes[to].handle_input(ct, &f, net.now);
                }
            }
        }
    }
    for (i, n) in net.nodes.iter_mut().enumerate().take(2) {
        while let Some(e) = n.poll_event() {
            if matches!(e, Event::Uploaded { .. }) {
                uploads[i] += 1;
            }
        }
    }
    assert!(
        uploads[0] > 0 && uploads[1] > 0,
        "uploads per peer: {uploads:?}"
    );
    // Node 1 goes away mid-download: its requests move to node 0.
    net.unlink(l12);
    net.drive();
    assert!(net.nodes[2].is_complete(&dkey));
    net.nodes[2].core_mut(&dkey).unwrap().verify().unwrap();
    let _ = (l01, l02);
}

#[test]
fn unanswered_requests_time_out_and_move() {
    let mut stores = Vec::new();
    let mut net = Net::new(3);
    let (dkey, key) = writer(&mut net, 0, 50, &mut stores);
    replica(&mut net, 1, key, &mut stores);
    net.link(0, 1);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    // Node 2 is a reader whose peer 1 never answers (we never move 1's frames), then peer 0.
    replica(&mut net, 2, key, &mut stores);
    let hash = [9; 64];
    let c21 = net.nodes[2].add_connection(
        ConnectionInfo {
            is_initiator: true,
            handshake_hash: hash,
            remote_public_key: [1; 32],
        },
        net.now,
    );
    let c12 = net.nodes[1].add_connection(
        ConnectionInfo {
            is_initiator: false,
            handshake_hash: hash,
            remote_public_key: [2; 32],
        },
        net.now,
    );
    // Exchange only the opens and syncs, then stop answering.
    for _ in 0..4 {
        while let Some(f) = net.nodes[2].poll_transmit(c21) {
            net.nodes[1].handle_input(c12, &f, net.now);
        }
        // Node 1 sends its frames but will not answer requests: we drop its data replies.
        while let Some(f) = net.nodes[1].poll_transmit(c12) {
            net.nodes[2].handle_input(c21, &f, net.now);
        }
    }
    net.nodes[2].download(&dkey, 0, None, net.now).unwrap();
    let pending = net.nodes[2].poll_timeout();
    assert!(
        pending.is_some(),
        "requests are in flight to the silent peer"
    );
    // Time passes: requests time out and are asked of peer 0 once it is linked.
    net.now += Duration::from_secs(30);
    net.nodes[2].handle_timeout(net.now);
    net.link(0, 2);
    net.drive();
    assert!(net.nodes[2].is_complete(&dkey));
}

#[test]
fn unknown_logs_are_rejected_and_nothing_is_revealed() {
    let mut stores = Vec::new();
    let mut net = Net::new(2);
    // Node 0 serves log A (passively); node 1 downloads log B, which node 0 does not have.
    let (a, _) = writer(&mut net, 0, 5, &mut stores);
    let b = replica(&mut net, 1, peerhost_ids::Key([42; 32]), &mut stores);
    net.link(0, 1);
    let moved = net.drive();
    assert!(moved > 0);
    // Node 1's open of B was rejected; node 0 never opened A (node 1 did not name it).
    assert_eq!(net.nodes[0].peer_count(&a), 0);
    assert_eq!(net.nodes[1].peer_count(&b), 0);
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| matches!(e, Event::ChannelOpened { .. })),
        "{:?}",
        net.events
    );
}

#[test]
fn small_blocks_travel_batched_and_all_arrive() {
    let mut stores = Vec::new();
    let mut net = Net::new(2);
    // The writer leaves the hashing of what it sends to the reader.
    let mut config = Config::default();
    config.verify_uploads = false;
    net.nodes[0] = Replicator::new(config);
    let (dkey, key) = writer(&mut net, 0, 3000, &mut stores);
    replica(&mut net, 1, key, &mut stores);
    net.link(0, 1);
    net.drive();
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    let frames = net.drive();
    assert!(net.nodes[1].is_complete(&dkey));
    let mut got = net.downloads.remove(&1).unwrap_or_default();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, (0..3000).collect::<Vec<u64>>());
    let core = net.nodes[1].core_mut(&dkey).unwrap();
    assert_eq!(core.verify().unwrap().blocks, 3000);
    // Requests go out corked and answers batched: far fewer frames than blocks (one frame per
    // message would be two per block).
    assert!(frames < 600, "{frames} frames for 3000 blocks");
}

/// A reader of many logs over one connection keeps its requests, all logs together, under
/// `max_requests_per_connection`, so a serving peer that queues at most
/// `max_pending_requests` keeps it; every log still completes (the logs that waited for room
/// are scheduled as answers come in). With no such cap the same reader is dropped.
#[test]
fn many_logs_over_one_connection_stay_under_the_servers_queue() {
    fn run(reader_cap: usize) -> (bool, usize) {
        const LOGS: u8 = 60;
        const BLOCKS: u64 = 40;
        let mut stores = Vec::new();
        let mut net = Net::new(2);
        let mut server = Config::default();
        server.max_pending_requests = 300;
        server.pause_pending_requests = 200;
        net.nodes[0] = Replicator::new(server);
        let mut client = Config::default();
        client.max_requests_per_connection = reader_cap;
        net.nodes[1] = Replicator::new(client);
        let mut dkeys = Vec::new();
        for l in 0..LOGS {
            let (s, d) = store();
            let mut core = s
                .create(
                    "w",
                    CreateOptions::default().key_pair(KeyPair::from_seed(&[l + 1; 32])),
                )
                .unwrap();
            core.append(&(0..BLOCKS).map(block).collect::<Vec<_>>())
                .unwrap();
            let key = core.key();
            net.nodes[0].add_core(core, false, net.now);
            stores.push((s, d));
            dkeys.push(replica(&mut net, 1, key, &mut stores));
        }
        net.link(0, 1);
        net.drive();
        for d in &dkeys {
            net.nodes[1].download(d, 0, None, net.now).unwrap();
        }
        net.drive();
        let complete = dkeys.iter().filter(|d| net.nodes[1].is_complete(d)).count();
        let dropped = net.nodes[0].connection_error(net.links[0].0.1).is_some();
        (dropped, complete)
    }
    let (dropped, complete) = run(128);
    assert!(
        !dropped,
        "the server dropped a reader that kept under its queue"
    );
    assert_eq!(complete, 60, "every log completes");
    // The same reader without the cap asks for everything at once and is dropped: the cap is
    // what keeps it.
    let (dropped, _) = run(usize::MAX);
    assert!(
        dropped,
        "without the cap the server's queue limit should have been hit"
    );
}
