//! Replicators back to back in memory (no encryption: frames are moved between them as the
//! secret stream would deliver them), on logs in memory ([`MemoryLog`]) and, where the disk
//! path matters, on stores in temporary directories: full and sparse downloads, live appends, a
//! truncation followed by the reader, requests spread over two peers, a dropped peer whose
//! requests move to the other, JS-like limits, and commits: nothing is served, announced or
//! reported before its commit is done, what waits for a commit is bounded, a failed commit is
//! asked for again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_log::{Data, Node, Reorg, Request, Tree, Verifier};
use peerhost_replication::{
    Commit, CommitJob, Config, ConnId, ConnectionInfo, Event, LogStore, MemoryCommit, MemoryLog,
    Replicator,
};
use peerhost_store::{Changes, Core, CoreError, CreateOptions, Durability, Options, Store};

fn block(i: u64) -> Vec<u8> {
    format!("block {i}").into_bytes()
}

/// Where the logs of a test live.
trait Backend {
    type Log: LogStore;
    fn writer(&mut self, seed: u8, n: u64) -> Self::Log;
    fn replica(&mut self, key: Key) -> Self::Log;
    fn get(log: &mut Self::Log, index: u64) -> Option<Vec<u8>>;
    /// Check every block and node held; how many blocks.
    fn verify(log: &mut Self::Log) -> u64;
}

#[derive(Default)]
struct Memory;

impl Backend for Memory {
    type Log = MemoryLog;
    fn writer(&mut self, seed: u8, n: u64) -> MemoryLog {
        let mut log = MemoryLog::writer(KeyPair::from_seed(&[seed; 32]), false);
        let blocks: Vec<Vec<u8>> = (0..n).map(block).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        log.append(&refs).unwrap();
        log
    }
    fn replica(&mut self, key: Key) -> MemoryLog {
        MemoryLog::replica(key, None).unwrap()
    }
    fn get(log: &mut MemoryLog, index: u64) -> Option<Vec<u8>> {
        log.get(index).map(<[u8]>::to_vec)
    }
    fn verify(log: &mut MemoryLog) -> u64 {
        log.verify().unwrap()
    }
}

#[derive(Default)]
struct Disk {
    stores: Vec<(Store, tempfile::TempDir)>,
}

impl Disk {
    fn store(&mut self) -> &Store {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().durability(Durability::Process);
        let store = Store::open_with(dir.path(), options).unwrap();
        self.stores.push((store, dir));
        &self.stores.last().unwrap().0
    }
}

impl Backend for Disk {
    type Log = Core;
    fn writer(&mut self, seed: u8, n: u64) -> Core {
        let options = CreateOptions::default().key_pair(KeyPair::from_seed(&[seed; 32]));
        let mut core = self.store().create("w", options).unwrap();
        if n > 0 {
            core.append(&(0..n).map(block).collect::<Vec<_>>()).unwrap();
        }
        core
    }
    fn replica(&mut self, key: Key) -> Core {
        self.store().create_replica(key, None, None).unwrap()
    }
    fn get(log: &mut Core, index: u64) -> Option<Vec<u8>> {
        log.get(index).unwrap()
    }
    fn verify(log: &mut Core) -> u64 {
        log.verify().unwrap().blocks
    }
}

/// A set of replicators and in-memory links between them.
struct Net<B: Backend> {
    backend: B,
    nodes: Vec<Replicator<B::Log>>,
    /// (node a, conn on a) ↔ (node b, conn on b)
    links: Vec<((usize, ConnId), (usize, ConnId))>,
    now: Instant,
    downloads: HashMap<usize, Vec<u64>>,
    events: Vec<(usize, Event)>,
    /// Nodes whose commits are held back (not run) until [`Net::release`].
    hold: HashSet<usize>,
    held: Vec<(usize, Commit<<B::Log as LogStore>::Commit>)>,
}

impl<B: Backend + Default> Net<B> {
    fn new(n: usize) -> Self {
        Self::with_configs(vec![Config::default(); n])
    }

    fn with_configs(configs: Vec<Config>) -> Self {
        Self {
            backend: B::default(),
            nodes: configs.into_iter().map(Replicator::new).collect(),
            links: Vec::new(),
            now: Instant::now(),
            downloads: HashMap::new(),
            events: Vec::new(),
            hold: HashSet::new(),
            held: Vec::new(),
        }
    }
}

impl<B: Backend> Net<B> {
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

    /// Move every frame once each way on every link; whether any moved.
    fn step(&mut self) -> usize {
        let mut moved = 0;
        for &((a, ca), (b, cb)) in &self.links {
            for (from, cf, to, ct) in [(a, ca, b, cb), (b, cb, a, ca)] {
                while let Some(f) = self.nodes[from].poll_transmit(cf) {
                    self.nodes[to].handle_input(ct, &f, self.now);
                    moved += 1;
                }
            }
        }
        moved
    }

    /// Run (or hold) the commits, collect the events; whether a commit ran.
    fn commit(&mut self) -> bool {
        let mut ran = false;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            while let Some(c) = n.poll_commit() {
                if self.hold.contains(&i) {
                    self.held.push((i, c));
                    continue;
                }
                c.run();
                n.handle_committed(c, self.now);
                ran = true;
            }
            while let Some(e) = n.poll_event() {
                if let Event::Downloaded { index, .. } = e {
                    self.downloads.entry(i).or_default().push(index);
                }
                self.events.push((i, e));
            }
        }
        ran
    }

    /// Move frames and run commits until nothing moves; returns how many frames moved.
    fn drive(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let m = self.step();
            moved += m;
            let ran = self.commit();
            if m == 0 && !ran {
                return moved;
            }
        }
    }

    /// Run and hand back node `i`'s held commits, and stop holding them.
    fn release(&mut self, i: usize) {
        self.hold.remove(&i);
        for (n, c) in std::mem::take(&mut self.held) {
            if n != i {
                self.held.push((n, c));
                continue;
            }
            c.run();
            self.nodes[n].handle_committed(c, self.now);
        }
    }

    fn uploads(&self, node: usize) -> usize {
        self.events
            .iter()
            .filter(|(i, e)| *i == node && matches!(e, Event::Uploaded { .. }))
            .count()
    }

    /// A writer of `n` blocks on `node` (passive); its discovery key and key.
    fn writer(&mut self, node: usize, seed: u8, n: u64) -> (DiscoveryKey, Key) {
        let log = self.backend.writer(seed, n);
        let key = log.key();
        (self.nodes[node].add_core(log, false, self.now), key)
    }

    /// An empty replica of `key` on `node` (active).
    fn replica(&mut self, node: usize, key: Key) -> DiscoveryKey {
        let log = self.backend.replica(key);
        self.nodes[node].add_core(log, true, self.now)
    }

    fn log(&mut self, node: usize, dkey: &DiscoveryKey) -> &mut B::Log {
        self.nodes[node].core_mut(dkey).unwrap()
    }
}

fn full_sparse_live_and_truncate<B: Backend + Default>() {
    let mut net = Net::<B>::new(2);
    let (dkey, key) = net.writer(0, 1, 100);
    net.replica(1, key);
    net.link(0, 1);
    net.drive();
    assert!(net.nodes[1].is_synced(&dkey));
    assert_eq!(net.nodes[1].core(&dkey).unwrap().length(), 100);

    // Sparse first.
    net.nodes[1].download(&dkey, 40, Some(45), net.now).unwrap();
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey));
    let log = net.log(1, &dkey);
    assert!(!log.has(39).unwrap() && log.has(40).unwrap() && !log.has(45).unwrap());

    // Then everything, live.
    net.nodes[1].set_live(&dkey, true, net.now);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey));
    net.nodes[0]
        .append(&dkey, &[block(100), block(101)], net.now)
        .unwrap();
    net.drive();
    let log = net.log(1, &dkey);
    assert_eq!(log.length(), 102);
    assert_eq!(B::get(log, 101), Some(block(101)));

    // A truncation and new blocks: the reader follows onto the new fork.
    net.nodes[0].truncate(&dkey, 90, net.now).unwrap();
    net.nodes[0]
        .append(&dkey, &[b"new 90".to_vec()], net.now)
        .unwrap();
    net.drive();
    let log = net.log(1, &dkey);
    assert_eq!((log.length(), log.fork()), (91, 1));
    assert_eq!(B::get(log, 90), Some(b"new 90".to_vec()));
    assert_eq!(B::get(log, 89), Some(block(89)));
    assert_eq!(B::verify(log), 91);
}

#[test]
fn full_sparse_live_and_truncate_in_memory() {
    full_sparse_live_and_truncate::<Memory>();
}

#[test]
fn full_sparse_live_and_truncate_on_disk() {
    full_sparse_live_and_truncate::<Disk>();
}

#[test]
fn requests_spread_over_peers_and_move_when_one_leaves() {
    let mut net = Net::<Memory>::new(3);
    // Node 0 writes; node 1 mirrors it fully first.
    let (dkey, key) = net.writer(0, 1, 400);
    net.replica(1, key);
    net.link(0, 1);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey));

    // Node 2 downloads from both.
    net.replica(2, key);
    net.link(0, 2);
    let l12 = net.link(1, 2);
    net.drive();
    assert!(net.nodes[2].is_synced(&dkey));
    net.events.clear();
    net.nodes[2].download(&dkey, 0, None, net.now).unwrap();
    // A few rounds: the first requests go to both peers.
    for _ in 0..3 {
        net.step();
        net.commit();
    }
    let uploads = [net.uploads(0), net.uploads(1)];
    assert!(
        uploads[0] > 0 && uploads[1] > 0,
        "uploads per peer: {uploads:?}"
    );
    // Node 1 goes away mid-download: its requests move to node 0.
    net.unlink(l12);
    net.drive();
    assert!(net.nodes[2].is_complete(&dkey));
    assert_eq!(Memory::verify(net.log(2, &dkey)), 400);
}

#[test]
fn unanswered_requests_time_out_and_move() {
    let mut net = Net::<Memory>::new(3);
    let (dkey, key) = net.writer(0, 1, 50);
    net.replica(1, key);
    net.link(0, 1);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    // Node 2 is a reader whose peer 1 never answers (we never move 1's frames), then peer 0.
    net.replica(2, key);
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
    net.commit();
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
    let mut net = Net::<Memory>::new(2);
    // Node 0 serves log A (passively); node 1 downloads log B, which node 0 does not have.
    let (a, _) = net.writer(0, 1, 5);
    let b = net.replica(1, Key([42; 32]));
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

fn small_blocks_travel_batched_and_all_arrive<B: Backend + Default>() {
    // The writer leaves the hashing of what it sends to the reader.
    let mut config = Config::default();
    config.verify_uploads = false;
    let mut net = Net::<B>::with_configs(vec![config, Config::default()]);
    let (dkey, key) = net.writer(0, 1, 3000);
    net.replica(1, key);
    net.link(0, 1);
    net.drive();
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    let frames = net.drive();
    assert!(net.nodes[1].is_complete(&dkey));
    let mut got = net.downloads.remove(&1).unwrap_or_default();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, (0..3000).collect::<Vec<u64>>());
    assert_eq!(B::verify(net.log(1, &dkey)), 3000);
    // Requests go out corked and answers batched: far fewer frames than blocks (one frame per
    // message would be two per block).
    assert!(frames < 600, "{frames} frames for 3000 blocks");
}

#[test]
fn small_blocks_travel_batched_and_all_arrive_in_memory() {
    small_blocks_travel_batched_and_all_arrive::<Memory>();
}

#[test]
fn small_blocks_travel_batched_and_all_arrive_on_disk() {
    small_blocks_travel_batched_and_all_arrive::<Disk>();
}

/// A reader of many logs over one connection keeps its requests, all logs together, under
/// `max_requests_per_connection`, so a serving peer that queues at most
/// `max_pending_requests` keeps it; every log still completes (the logs that waited for room
/// are scheduled as answers come in). With no such cap the same reader is dropped.
#[test]
fn many_logs_over_one_connection_stay_under_the_servers_queue() {
    fn run(reader_cap: usize) -> (bool, usize) {
        const LOGS: u8 = 60;
        let mut server = Config::default();
        server.max_pending_requests = 300;
        server.pause_pending_requests = 200;
        let mut client = Config::default();
        client.max_requests_per_connection = reader_cap;
        let mut net = Net::<Memory>::with_configs(vec![server, client]);
        let mut dkeys = Vec::new();
        for l in 0..LOGS {
            let (_, key) = net.writer(0, l + 1, 40);
            dkeys.push(net.replica(1, key));
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

/// A chain writer → mirror → reader where the mirror's commits are held back: the mirror
/// verifies what it downloads but reports, announces and serves none of it — the reader
/// learns no head and gets no block from it — until the commits are done.
#[test]
fn nothing_is_served_announced_or_reported_before_its_commit() {
    let mut net = Net::<Memory>::new(3);
    let (dkey, key) = net.writer(0, 1, 64);
    net.replica(1, key);
    net.replica(2, key);
    net.link(0, 1);
    net.link(1, 2);
    net.hold.insert(1);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.nodes[2].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    assert!(!net.held.is_empty(), "the mirror verified data to commit");
    // Uploaded by the writer, held by the mirror: nothing committed, nothing reported.
    assert!(net.uploads(0) > 0);
    assert_eq!(net.nodes[1].core(&dkey).unwrap().length(), 0);
    assert!(!net.nodes[1].is_synced(&dkey) && !net.nodes[1].is_complete(&dkey));
    assert!(net.downloads.get(&1).is_none_or(Vec::is_empty));
    assert!(
        !net.events
            .iter()
            .any(|(i, e)| *i == 1 && matches!(e, Event::Head { .. })),
        "a head reported before its commit"
    );
    // The reader heard of nothing it could ask the mirror for.
    assert_eq!(net.nodes[2].core(&dkey).unwrap().length(), 0);
    assert_eq!(net.uploads(1), 0);

    net.release(1);
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey) && net.nodes[2].is_complete(&dkey));
    assert_eq!(Memory::verify(net.log(2, &dkey)), 64);
    assert!(net.uploads(1) > 0, "the mirror serves once committed");
}

/// Blocks that wait for their commit are bounded (`Config::max_uncommitted_bytes`): a driver
/// that does not commit stops the downloads instead of filling memory.
#[test]
fn blocks_waiting_for_a_commit_are_bounded() {
    let mut reader = Config::default();
    // Blocks are "block {i}": about 10 bytes, so some 50 of them.
    reader.max_uncommitted_bytes = 512;
    let mut net = Net::<Memory>::with_configs(vec![Config::default(), reader]);
    let (dkey, key) = net.writer(0, 1, 3000);
    net.replica(1, key);
    net.link(0, 1);
    net.drive();
    net.hold.insert(1);
    net.nodes[1].download(&dkey, 0, None, net.now).unwrap();
    net.drive();
    // At most the bound plus one window of requests already out (512 for small blocks).
    let sent = net.uploads(0);
    assert!(
        sent > 0 && sent < 700,
        "{sent} blocks sent with commits held"
    );
    net.release(1);
    net.drive();
    assert!(net.nodes[1].is_complete(&dkey));
    assert_eq!(Memory::verify(net.log(1, &dkey)), 3000);
}

/// A [`MemoryLog`] whose next `failures` commits fail (as a full disk would), through the
/// [`LogStore`] contract alone.
#[derive(Debug)]
struct Flaky {
    log: MemoryLog,
    failures: Arc<AtomicUsize>,
    pending: Option<Changes>,
}

impl LogStore for Flaky {
    type Commit = MemoryCommit;
    fn key(&self) -> Key {
        self.log.key()
    }
    fn tree(&self) -> &Tree {
        self.log.tree()
    }
    fn verifier(&self) -> Option<&Verifier> {
        self.log.verifier()
    }
    fn writable(&self) -> bool {
        self.log.writable()
    }
    fn node(&mut self, index: u64) -> Result<Option<Node>, peerhost_store::Error> {
        self.log.node(index)
    }
    fn has(&mut self, index: u64) -> Result<bool, peerhost_store::Error> {
        self.log.has(index)
    }
    fn next_present(&mut self, s: u64, e: u64) -> Result<Option<u64>, peerhost_store::Error> {
        self.log.next_present(s, e)
    }
    fn next_missing(&mut self, s: u64, e: u64) -> Result<Option<u64>, peerhost_store::Error> {
        self.log.next_missing(s, e)
    }
    fn proof(&mut self, request: &Request, check: bool) -> Result<Option<Data>, CoreError> {
        self.log.proof(request, check)
    }
    fn append(&mut self, blocks: &[&[u8]]) -> Result<u64, CoreError> {
        self.log.append(blocks)
    }
    fn truncate(&mut self, length: u64) -> Result<(), CoreError> {
        self.log.truncate(length)
    }
    fn apply_reorg(&mut self, reorg: Reorg) -> Result<(), CoreError> {
        self.log.apply_reorg(reorg)
    }
    fn begin_commit(&mut self, changes: Changes) -> Result<MemoryCommit, CoreError> {
        self.finish_commit()?;
        self.pending = Some(changes);
        Ok(MemoryCommit)
    }
    fn finish_commit(&mut self) -> Result<(), CoreError> {
        let Some(changes) = self.pending.take() else {
            return Ok(());
        };
        let left = self.failures.load(Ordering::Relaxed);
        if left > 0 {
            self.failures.store(left - 1, Ordering::Relaxed);
            let source = std::io::Error::other("disk full");
            return Err(CoreError::Store(peerhost_store::Error::Io {
                op: "write",
                path: "data".into(),
                source,
            }));
        }
        self.log.begin_commit(changes)?.run();
        self.log.finish_commit()
    }
}

#[test]
fn a_failed_commit_is_reported_and_its_blocks_asked_again() {
    let now = Instant::now();
    let flaky = |log: MemoryLog, failures: &Arc<AtomicUsize>| Flaky {
        log,
        failures: failures.clone(),
        pending: None,
    };
    let failures = Arc::new(AtomicUsize::new(0));
    let source = Memory.writer(1, 200);
    let key = source.key();
    let mut nodes: Vec<Replicator<Flaky>> =
        (0..2).map(|_| Replicator::new(Config::default())).collect();
    let dkey = nodes[0].add_core(flaky(source, &Arc::default()), false, now);
    let replica = MemoryLog::replica(key, None).unwrap();
    nodes[1].add_core(flaky(replica, &failures), true, now);
    let info = |is_initiator| ConnectionInfo {
        is_initiator,
        handshake_hash: [3; 64],
        remote_public_key: [0; 32],
    };
    let c0 = nodes[0].add_connection(info(true), now);
    let c1 = nodes[1].add_connection(info(false), now);
    // Move frames and run commits until nothing moves; count the storage errors reported.
    let drive = |nodes: &mut Vec<Replicator<Flaky>>| {
        let mut errors = 0;
        loop {
            let mut any = false;
            for (from, cf, to, ct) in [(0, c0, 1, c1), (1, c1, 0, c0)] {
                while let Some(f) = nodes[from].poll_transmit(cf) {
                    nodes[to].handle_input(ct, &f, now);
                    any = true;
                }
            }
            for n in nodes.iter_mut() {
                while let Some(c) = n.poll_commit() {
                    c.run();
                    n.handle_committed(c, now);
                    any = true;
                }
                while let Some(e) = n.poll_event() {
                    errors += usize::from(matches!(e, Event::StorageError { .. }));
                }
            }
            if !any {
                return errors;
            }
        }
    };
    assert_eq!(drive(&mut nodes), 0);
    assert_eq!(nodes[1].core(&dkey).unwrap().length(), 200);
    // The next two commits fail: reported, and their blocks are asked for again.
    failures.store(2, Ordering::Relaxed);
    nodes[1].download(&dkey, 0, None, now).unwrap();
    assert_eq!(drive(&mut nodes), 2, "each failed commit is reported");
    assert!(nodes[1].is_complete(&dkey));
    assert_eq!(nodes[1].core(&dkey).unwrap().log.verify().unwrap(), 200);
    assert!(nodes[0].connection_error(c0).is_none());
    assert!(nodes[1].connection_error(c1).is_none());
}
