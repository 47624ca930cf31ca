//! [`LogView`]: one log as the replicator sees it — its store's committed state plus what was
//! verified and not committed yet — and the commits that move the second into the first.
//!
//! Ownership and flow:
//! - every `data` answer is verified at once against the view ([`LogView::verify`]): the
//!   newest verified head and the verified nodes laid over the store's, so proofs of later
//!   blocks find the nodes of earlier ones; what verified is staged;
//! - [`LogView::begin_commit`] hands the store everything staged as one batch and returns the
//!   job the driver runs outside its lock; one commit per log is in flight, and what verifies
//!   meanwhile is staged for the next;
//! - [`LogView::finish_commit`] takes the outcome in: the blocks it made durable (now to be
//!   reported and announced), whether the head moved; on failure everything uncommitted is
//!   dropped and the view is the store again;
//! - the scheduler asks the view (length, missing blocks, missing nodes), so nothing verified
//!   is asked for twice; serving asks the store, so nothing uncommitted is served.

use peerhost_log::{Data, Node, NodeSource, Tree, Verifier, VerifyError};
use peerhost_store::{BlockWrite, Changes, CoreError};

use crate::runs::Runs;
use crate::store::{CommitJob, LogStore};
use peerhost_store::seeded::U64Map;

/// A log: its store and what is verified on top of it.
#[derive(Debug)]
pub(crate) struct LogView<S> {
    store: S,
    /// The newest verified head: the committed one, or a verified upgrade not committed yet.
    tree: Tree,
    verifier: Option<Verifier>,
    /// Nodes verified and not committed, with how many staged or in-flight commits hold each
    /// (looked up before the store on every node read of the view).
    nodes: U64Map<(Node, u32)>,
    /// The indices of `nodes` lie in `lo..=hi` (or it is empty): lookups outside skip it.
    lo: u64,
    hi: u64,
    /// Blocks verified and not committed.
    blocks: Runs,
    /// Their bytes.
    uncommitted: u64,
    /// What the next commit takes.
    staged: Staged,
    /// The commit handed to the driver and not finished.
    inflight: Option<InFlight>,
    next_id: u64,
}

#[derive(Debug, Default)]
struct Staged {
    changes: Changes,
    /// Index and length of each block in `changes`.
    blocks: Vec<(u64, u64)>,
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    blocks: Vec<(u64, u64)>,
    nodes: Vec<u64>,
    head: bool,
}

/// What a finished commit made durable.
#[derive(Debug)]
pub(crate) struct Committed {
    /// Index and length of each block, now held.
    pub(crate) blocks: Vec<(u64, u64)>,
    /// Whether the head moved (a verified upgrade).
    pub(crate) head: bool,
}

/// What a verified `data` message added (its new head, if any, is staged too).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verified {
    /// The block it carried, unless we had it already.
    pub(crate) block: Option<u64>,
}

/// The view's uncommitted nodes over the store's committed ones.
struct Overlay<'a, S> {
    nodes: &'a U64Map<(Node, u32)>,
    /// The range `nodes` lies in.
    range: (u64, u64),
    store: &'a mut S,
}

impl<S: LogStore> NodeSource for Overlay<'_, S> {
    type Error = peerhost_store::Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Self::Error> {
        let (lo, hi) = self.range;
        if (lo..=hi).contains(&index) {
            if let Some((n, _)) = self.nodes.get(&index) {
                return Ok(Some(*n));
            }
        }
        self.store.node(index)
    }
}

impl<S: LogStore> LogView<S> {
    pub(crate) fn new(store: S) -> Self {
        Self {
            tree: store.tree().clone(),
            verifier: store.verifier().cloned(),
            store,
            nodes: U64Map::default(),
            lo: u64::MAX,
            hi: 0,
            blocks: Runs::new(),
            uncommitted: 0,
            staged: Staged::default(),
            inflight: None,
            next_id: 1,
        }
    }

    /// The committed log.
    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The newest verified head.
    pub(crate) fn tree(&self) -> &Tree {
        &self.tree
    }

    pub(crate) fn length(&self) -> u64 {
        self.tree.length()
    }

    pub(crate) fn fork(&self) -> u64 {
        self.tree.fork()
    }

    pub(crate) fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// Something verified is not committed yet (staged or in flight).
    pub(crate) fn has_uncommitted(&self) -> bool {
        self.inflight.is_some() || !self.staged.changes.is_empty()
    }

    /// Bytes of blocks verified and not committed.
    pub(crate) fn uncommitted_bytes(&self) -> u64 {
        self.uncommitted
    }

    /// A commit is waiting to begin (staged, none in flight).
    pub(crate) fn wants_commit(&self) -> bool {
        self.inflight.is_none() && !self.staged.changes.is_empty()
    }

    fn overlay(&mut self) -> (&Tree, Overlay<'_, S>) {
        let overlay = Overlay {
            nodes: &self.nodes,
            range: (self.lo, self.hi),
            store: &mut self.store,
        };
        (&self.tree, overlay)
    }

    /// Whether block `index` is held or verified.
    pub(crate) fn has(&mut self, index: u64) -> Result<bool, peerhost_store::Error> {
        Ok(self.blocks.contains(index) || self.store.has(index)?)
    }

    /// The first block in `start..end` (clamped to the verified length) neither held nor
    /// verified: what to download next.
    pub(crate) fn next_missing(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Option<u64>, peerhost_store::Error> {
        let end = end.min(self.tree.length());
        let committed = self.store.length();
        let mut i = start;
        while i < end {
            let m = if i < committed {
                let to = end.min(committed);
                self.store.next_missing(i, to)?.unwrap_or(to)
            } else {
                i
            };
            if m >= end {
                return Ok(None);
            }
            let past = self.blocks.skip(m);
            if past == m {
                return Ok(Some(m));
            }
            i = past;
        }
        Ok(None)
    }

    /// How many nodes above flat index `index` we lack (held or verified): the `nodes` of a
    /// request.
    pub(crate) fn missing_nodes(&mut self, index: u64) -> u64 {
        let (tree, mut overlay) = self.overlay();
        tree.missing_nodes(index, &mut overlay).unwrap_or(0)
    }

    /// Verify a `data` answer on our fork against the view and stage what it proves: its
    /// nodes, its block, its head and manifest. Nothing is stored yet.
    pub(crate) fn verify(&mut self, data: Data) -> Result<Verified, CoreError> {
        let verify_error = |store: &S, source| CoreError::Verify {
            log: store.label(),
            source: Box::new(source),
        };
        let resolved;
        let verifier = match &self.verifier {
            Some(v) => v,
            None => {
                resolved = Verifier::resolve(self.store.key(), None, data.manifest.as_ref())
                    .map_err(|e| verify_error(&self.store, VerifyError::InvalidManifest(e)))?;
                &resolved
            }
        };
        let mut overlay = Overlay {
            nodes: &self.nodes,
            range: (self.lo, self.hi),
            store: &mut self.store,
        };
        let proof = match self.tree.verify_proof(&data, verifier, &mut overlay) {
            Ok(proof) => proof,
            Err(e) => return Err(verify_error(&self.store, e)),
        };
        // Learned from a proof that verified against it (without a manifest in the proof this
        // is the compat manifest of the key, which JS also keeps after the first upgrade).
        let learned = (self.verifier.is_none()
            && (data.manifest.is_some() || proof.head.is_some()))
        .then(|| verifier.clone());
        for n in &proof.nodes {
            self.nodes.entry(n.index).or_insert((*n, 0)).1 += 1;
            self.lo = self.lo.min(n.index);
            self.hi = self.hi.max(n.index);
        }
        self.staged.changes.nodes.extend_from_slice(&proof.nodes);
        if let Some(mut head) = proof.head {
            if let Some(v) = &learned {
                head.set_prologue(v.prologue());
            }
            self.tree = head.clone();
            self.staged.changes.head = Some(head);
        }
        if let Some(v) = learned {
            self.verifier = Some(v.clone());
            self.staged.changes.verifier = Some(v);
        }
        let block = match data.block {
            Some(b) if !self.has(b.index)? => {
                let (tree, mut overlay) = self.overlay();
                let offset = match tree.byte_offset(b.index, &mut overlay) {
                    Ok(offset) => offset,
                    Err(source) => {
                        return Err(CoreError::Tree {
                            log: self.store.label(),
                            source: Box::new(source),
                        });
                    }
                };
                let bytes = b.value.len() as u64;
                self.blocks.insert(b.index);
                self.uncommitted += bytes;
                self.staged.blocks.push((b.index, bytes));
                self.staged.changes.blocks.push(BlockWrite {
                    index: b.index,
                    offset,
                    value: b.value,
                });
                Some(b.index)
            }
            _ => None,
        };
        Ok(Verified { block })
    }

    /// Hand the store what is staged, as one commit, unless one is in flight or nothing is
    /// staged: its id and the job for the driver.
    pub(crate) fn begin_commit(&mut self) -> Result<Option<(u64, S::Commit)>, CoreError> {
        if !self.wants_commit() {
            return Ok(None);
        }
        let staged = std::mem::take(&mut self.staged);
        let head = staged.changes.head.is_some();
        let nodes: Vec<u64> = staged.changes.nodes.iter().map(|n| n.index).collect();
        match self.store.begin_commit(staged.changes) {
            Ok(job) => {
                let id = self.next_id;
                self.next_id += 1;
                self.inflight = Some(InFlight {
                    id,
                    blocks: staged.blocks,
                    nodes,
                    head,
                });
                Ok(Some((id, job)))
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Take in commit `id` (the store runs its job if the driver has not): what it made
    /// durable, or why it failed (then nothing uncommitted is left). `None` when `id` is not
    /// the commit in flight (finished already by [`LogView::settle`]).
    pub(crate) fn finish_commit(&mut self, id: u64) -> Option<Result<Committed, CoreError>> {
        if self.inflight.as_ref().is_none_or(|f| f.id != id) {
            return None;
        }
        let f = self.inflight.take()?;
        if let Err(e) = self.store.finish_commit() {
            self.rollback();
            return Some(Err(e));
        }
        if self.staged.changes.is_empty() {
            // Nothing else uncommitted (the usual case: the driver commits at once).
            self.clear_uncommitted();
        } else {
            for i in f.nodes {
                if let Some(entry) = self.nodes.get_mut(&i) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        self.nodes.remove(&i);
                    }
                }
            }
            for &(i, bytes) in &f.blocks {
                self.blocks.remove(i);
                self.uncommitted -= bytes;
            }
        }
        Some(Ok(Committed {
            blocks: f.blocks,
            head: f.head,
        }))
    }

    /// Commit everything uncommitted now, here (before a change that cannot wait: an append,
    /// a truncation, a reorg): the commit in flight, then what is staged.
    pub(crate) fn settle(&mut self) -> Vec<Result<Committed, CoreError>> {
        let mut out = Vec::new();
        if let Some(id) = self.inflight.as_ref().map(|f| f.id) {
            out.extend(self.finish_commit(id));
        }
        match self.begin_commit() {
            Ok(Some((id, job))) => {
                job.run();
                out.extend(self.finish_commit(id));
            }
            Ok(None) => {}
            Err(e) => out.push(Err(e)),
        }
        out
    }

    /// Drop the staged blocks (not the commit in flight): downloads stopped.
    pub(crate) fn drop_staged_blocks(&mut self) {
        for (i, bytes) in self.staged.blocks.drain(..) {
            self.blocks.remove(i);
            self.uncommitted -= bytes;
        }
        self.staged.changes.blocks.clear();
    }

    /// The store changed under the view (append, truncate, reorg) with nothing uncommitted:
    /// the view is the store again.
    pub(crate) fn resync(&mut self) {
        debug_assert!(!self.has_uncommitted());
        self.tree = self.store.tree().clone();
        self.verifier = self.store.verifier().cloned();
    }

    fn clear_uncommitted(&mut self) {
        self.nodes.clear();
        (self.lo, self.hi) = (u64::MAX, 0);
        self.blocks.clear();
        self.uncommitted = 0;
    }

    /// Forget everything uncommitted (a commit failed).
    fn rollback(&mut self) {
        self.clear_uncommitted();
        self.staged = Staged::default();
        self.inflight = None;
        self.tree = self.store.tree().clone();
        self.verifier = self.store.verifier().cloned();
    }
}

/// Whether a failure to verify `data` is the sender's fault (a bad proof, signature or
/// manifest) rather than our storage's.
pub(crate) fn peer_fault(e: &CoreError) -> bool {
    match e {
        CoreError::Verify { source, .. } => !matches!(**source, VerifyError::Storage(_)),
        CoreError::Manifest { .. } | CoreError::BadSignature { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryLog;
    use peerhost_ids::KeyPair;
    use peerhost_log::Request;
    use peerhost_log::proof::{RequestBlock, RequestUpgrade};

    fn writer(n: u8) -> MemoryLog {
        let mut w = MemoryLog::writer(KeyPair::from_seed(&[9; 32]), false);
        let blocks: Vec<Vec<u8>> = (0..n).map(|i| vec![i; 3]).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        w.append(&refs).unwrap();
        w
    }

    fn upgrade(w: &mut MemoryLog, length: u64) -> Data {
        let req = Request {
            upgrade: Some(RequestUpgrade { start: 0, length }),
            manifest: true,
            ..Request::default()
        };
        w.proof(&req, true).unwrap().unwrap()
    }

    fn block(w: &mut MemoryLog, view: &mut LogView<MemoryLog>, i: u64) -> Data {
        let req = Request {
            block: Some(RequestBlock {
                index: i,
                nodes: view.missing_nodes(2 * i),
            }),
            ..Request::default()
        };
        w.proof(&req, true).unwrap().unwrap()
    }

    fn commit(view: &mut LogView<MemoryLog>) -> Committed {
        let (id, job) = view.begin_commit().unwrap().unwrap();
        job.run();
        view.finish_commit(id).unwrap().unwrap()
    }

    #[test]
    fn the_view_runs_ahead_of_the_store_until_its_commits_are_done() {
        let mut w = writer(10);
        let mut view = LogView::new(MemoryLog::replica(w.key(), None).unwrap());
        view.verify(upgrade(&mut w, 10)).unwrap();
        assert_eq!((view.length(), view.store().length()), (10, 0));
        assert!(view.verifier().is_some() && view.store().verifier().is_none());
        for i in [0, 2] {
            let d = block(&mut w, &mut view, i);
            assert_eq!(view.verify(d).unwrap().block, Some(i));
        }
        // Verified blocks count as held to the scheduler, not to the store.
        assert_eq!(view.next_missing(0, 10).unwrap(), Some(1));
        assert_eq!(view.next_missing(2, 10).unwrap(), Some(3));
        assert!(view.has(2).unwrap() && !view.store_mut().has(2).unwrap());
        assert_eq!(view.uncommitted_bytes(), 6);
        // The same block again adds nothing.
        let again = block(&mut w, &mut view, 2);
        assert_eq!(view.verify(again).unwrap().block, None);

        let (id, job) = view.begin_commit().unwrap().unwrap();
        // In flight: what verifies now waits for the next commit.
        let d = block(&mut w, &mut view, 5);
        view.verify(d).unwrap();
        assert!(
            view.begin_commit().unwrap().is_none(),
            "one commit at a time"
        );
        job.run();
        let done = view.finish_commit(id).unwrap().unwrap();
        assert!(done.head);
        assert_eq!(done.blocks, vec![(0, 3), (2, 3)]);
        assert_eq!(view.store().length(), 10);
        assert!(view.store_mut().has(2).unwrap() && !view.store_mut().has(5).unwrap());
        assert_eq!(
            view.finish_commit(id).map(|r| r.is_ok()),
            None,
            "handed back twice"
        );

        let done = commit(&mut view);
        assert!(!done.head && done.blocks == vec![(5, 3)]);
        assert!(!view.has_uncommitted() && view.uncommitted_bytes() == 0);
        assert_eq!(view.next_missing(3, 10).unwrap(), Some(3));
        assert_eq!(view.store().verify().unwrap(), 3);
    }

    #[test]
    fn settle_commits_everything_in_place_and_staged_blocks_can_be_dropped() {
        let mut w = writer(6);
        let mut view = LogView::new(MemoryLog::replica(w.key(), None).unwrap());
        view.verify(upgrade(&mut w, 6)).unwrap();
        let d = block(&mut w, &mut view, 0);
        view.verify(d).unwrap();
        let (_id, _job) = view.begin_commit().unwrap().unwrap();
        for i in [1, 3] {
            let d = block(&mut w, &mut view, i);
            view.verify(d).unwrap();
        }
        view.drop_staged_blocks();
        assert!(!view.has(3).unwrap());
        let d = block(&mut w, &mut view, 4);
        view.verify(d).unwrap();
        let done = view.settle();
        assert_eq!(done.len(), 2);
        assert!(!view.has_uncommitted());
        let held: Vec<u64> = (0..6)
            .filter(|&i| view.store_mut().has(i).unwrap())
            .collect();
        assert_eq!(held, vec![0, 4]);
    }

    #[test]
    fn a_bad_proof_stages_nothing() {
        let mut w = writer(4);
        let mut view = LogView::new(MemoryLog::replica(w.key(), None).unwrap());
        view.verify(upgrade(&mut w, 4)).unwrap();
        commit(&mut view);
        let mut d = block(&mut w, &mut view, 1);
        if let Some(b) = d.block.as_mut() {
            b.value[0] ^= 1;
        }
        let e = view.verify(d).unwrap_err();
        assert!(peer_fault(&e), "{e}");
        assert!(!view.has_uncommitted() && !view.has(1).unwrap());
    }
}
