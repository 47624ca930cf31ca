//! Commits in two steps (`Core::begin_commit` → `Commit::run` → `Core::finish_commit`), as a
//! replicator makes them with the slow part outside its lock: nothing of a commit is visible
//! before it is finished, everything after, across a reopen; a commit run on another thread,
//! or not run at all before a change or a drop, still lands exactly once.

use std::collections::BTreeMap;

use peerhost_log::proof::{RequestBlock, RequestUpgrade};
use peerhost_log::{Data, Node, NodeSource, Request, Tree, Verifier};
use peerhost_store::{BlockWrite, Changes, Core, CreateOptions, Durability, Error, Options, Store};

fn store(dir: &std::path::Path, durability: Durability) -> Store {
    Store::open_with(dir, Options::default().durability(durability)).unwrap()
}

fn blocks(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|i| format!("block {i}").into_bytes()).collect()
}

/// What a replicator keeps between verifying and committing: the verified head, and nodes
/// verified but not committed, laid over the log's own.
struct View {
    tree: Tree,
    nodes: BTreeMap<u64, Node>,
    verifier: Option<Verifier>,
}

struct Over<'a> {
    nodes: &'a BTreeMap<u64, Node>,
    core: &'a mut Core,
}

impl NodeSource for Over<'_> {
    type Error = Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Error> {
        match self.nodes.get(&index) {
            Some(n) => Ok(Some(*n)),
            None => self.core.nodes().node(index),
        }
    }
}

impl View {
    fn of(core: &Core) -> Self {
        Self {
            tree: core.tree().clone(),
            nodes: BTreeMap::new(),
            verifier: core.verifier().cloned(),
        }
    }

    /// Verify `data` and add what it proves to `changes`.
    fn add(&mut self, core: &mut Core, data: &Data, changes: &mut Changes) {
        let learned = self.verifier.is_none();
        let verifier = self.verifier.clone().unwrap_or_else(|| {
            Verifier::resolve(core.key(), None, data.manifest.as_ref()).unwrap()
        });
        let mut over = Over {
            nodes: &self.nodes,
            core,
        };
        let proof = self.tree.verify_proof(data, &verifier, &mut over).unwrap();
        for n in &proof.nodes {
            self.nodes.insert(n.index, *n);
        }
        changes.nodes.extend(proof.nodes.iter().copied());
        if let Some(h) = proof.head {
            self.tree = h.clone();
            changes.head = Some(h);
            if learned {
                changes.verifier = Some(verifier.clone());
                self.verifier = Some(verifier);
            }
        }
        if let Some(b) = &data.block {
            let mut over = Over {
                nodes: &self.nodes,
                core,
            };
            let offset = self.tree.byte_offset(b.index, &mut over).unwrap();
            changes.blocks.push(BlockWrite {
                index: b.index,
                offset,
                value: b.value.clone(),
            });
        }
    }
}

fn upgrade(writer: &mut Core, length: u64) -> Data {
    let req = Request {
        id: 1,
        upgrade: Some(RequestUpgrade { start: 0, length }),
        manifest: true,
        ..Request::default()
    };
    writer.proof(&req).unwrap().unwrap()
}

fn block(writer: &mut Core, view: &mut View, replica: &mut Core, i: u64) -> Data {
    let mut over = Over {
        nodes: &view.nodes,
        core: replica,
    };
    let nodes = view.tree.missing_nodes(2 * i, &mut over).unwrap();
    let req = Request {
        id: 2,
        block: Some(RequestBlock { index: i, nodes }),
        ..Request::default()
    };
    writer.proof(&req).unwrap().unwrap()
}

fn setup(durability: Durability) -> (tempfile::TempDir, Store, Core, Core) {
    let dir = tempfile::tempdir().unwrap();
    let ws = store(&dir.path().join("writer"), durability);
    let rs = store(&dir.path().join("replica"), durability);
    let mut writer = ws.create("w", CreateOptions::default()).unwrap();
    writer.append(&blocks(0..40)).unwrap();
    let replica = rs.create_replica(writer.key(), None, Some("r")).unwrap();
    (dir, rs, writer, replica)
}

fn invisible_until_finished(durability: Durability) {
    let (_dir, rs, mut writer, mut replica) = setup(durability);
    let mut view = View::of(&replica);

    // The head and the manifest, committed on another thread.
    let mut changes = Changes::default();
    view.add(&mut replica, &upgrade(&mut writer, 40), &mut changes);
    let commit = replica.begin_commit(changes).unwrap();
    assert!(replica.is_committing());
    let job = commit.clone();
    std::thread::spawn(move || job.run()).join().unwrap();
    assert_eq!(replica.length(), 0, "not finished: the old head");
    assert!(replica.verifier().is_none());
    replica.finish_commit().unwrap();
    assert_eq!(replica.length(), 40);
    assert!(replica.signature_verifies());

    // Twelve blocks in one commit, with the nodes of each verified over the earlier ones.
    let mut changes = Changes::default();
    for i in (0..12).rev() {
        let data = block(&mut writer, &mut view, &mut replica, i);
        view.add(&mut replica, &data, &mut changes);
    }
    let commit = replica.begin_commit(changes).unwrap();
    commit.run();
    // Written to the files, not finished: reads still say the blocks are not here.
    for i in 0..12 {
        assert!(!replica.has(i).unwrap(), "block {i} visible before finish");
        assert_eq!(replica.get(i).unwrap(), None);
    }
    commit.run(); // a second run does nothing
    replica.finish_commit().unwrap();
    assert!(!replica.is_committing());
    for i in 0..12 {
        assert_eq!(replica.get(i).unwrap(), writer.get(i).unwrap(), "block {i}");
    }
    assert_eq!(replica.contiguous_length().unwrap(), 12);
    replica.finish_commit().unwrap(); // nothing in flight

    drop(replica);
    let mut replica = rs.open_core("r").unwrap();
    assert!(replica.signature_verifies());
    let report = replica.verify().unwrap();
    assert_eq!((report.length, report.blocks), (40, 12));
    assert_eq!(replica.get(11).unwrap(), writer.get(11).unwrap());
}

#[test]
fn a_commit_is_invisible_until_finished_and_survives_a_reopen() {
    invisible_until_finished(Durability::Process);
}

#[test]
fn a_synced_commit_is_invisible_until_finished_and_survives_a_reopen() {
    invisible_until_finished(Durability::Sync);
}

#[test]
fn a_change_or_a_drop_finishes_the_commit_in_flight_first() {
    let (_dir, rs, mut writer, mut replica) = setup(Durability::Process);
    let mut view = View::of(&replica);
    let mut changes = Changes::default();
    view.add(&mut replica, &upgrade(&mut writer, 40), &mut changes);
    for i in 0..4 {
        let data = block(&mut writer, &mut view, &mut replica, i);
        view.add(&mut replica, &data, &mut changes);
    }
    // Never run by the caller: clearing block 0 runs and finishes it first.
    let commit = replica.begin_commit(changes).unwrap();
    replica.clear(0, 1).unwrap();
    assert_eq!(replica.length(), 40);
    assert!(!replica.has(0).unwrap() && replica.has(3).unwrap());
    commit.run();
    replica.finish_commit().unwrap();
    assert!(replica.has(1).unwrap());

    // Begun and dropped with the log: it still lands.
    let mut changes = Changes::default();
    for i in 4..8 {
        let data = block(&mut writer, &mut view, &mut replica, i);
        view.add(&mut replica, &data, &mut changes);
    }
    let commit = replica.begin_commit(changes).unwrap();
    drop(replica);
    commit.run();
    let mut replica = rs.open_core("r").unwrap();
    for i in 1..8 {
        assert_eq!(replica.get(i).unwrap(), writer.get(i).unwrap(), "block {i}");
    }
    replica.verify().unwrap();
}

#[test]
fn blocks_already_held_are_not_written_again() {
    let (_dir, _rs, mut writer, mut replica) = setup(Durability::Process);
    let mut view = View::of(&replica);
    let mut changes = Changes::default();
    view.add(&mut replica, &upgrade(&mut writer, 40), &mut changes);
    let data = block(&mut writer, &mut view, &mut replica, 7);
    view.add(&mut replica, &data, &mut changes);
    replica.begin_commit(changes).unwrap().run();
    replica.finish_commit().unwrap();
    // The same block again (say from a second peer), with a value that would fail its leaf:
    // it is skipped, not written over the good one.
    let mut over = Over {
        nodes: &view.nodes,
        core: &mut replica,
    };
    let offset = view.tree.byte_offset(7, &mut over).unwrap();
    let mut changes = Changes::default();
    changes.blocks.push(BlockWrite {
        index: 7,
        offset,
        value: b"not block 7".to_vec(),
    });
    replica.begin_commit(changes).unwrap().run();
    replica.finish_commit().unwrap();
    assert_eq!(replica.get(7).unwrap(), writer.get(7).unwrap());
}
