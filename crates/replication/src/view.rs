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

use std::collections::HashMap;

use peerhost_log::{Data, Node, NodeSource, Tree, Verifier, VerifyError};
use peerhost_store::{BlockWrite, Changes, CoreError};

use crate::runs::Runs;
use crate::store::{CommitJob, LogStore};

/// A log: its store and what is verified on top of it.
#[derive(Debug)]
pub(crate) struct LogView<S> {
    store: S,
    /// The newest verified head: the committed one, or a verified upgrade not committed yet.
    tree: Tree,
    verifier: Option<Verifier>,
    /// Nodes verified and not committed, with how many staged or in-flight commits hold each.
    nodes: HashMap<u64, (Node, u32)>,
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
    nodes: &'a HashMap<u64, (Node, u32)>,
    store: &'a mut S,
}

impl<S: LogStore> NodeSource for Overlay<'_, S> {
    type Error = peerhost_store::Error;
    fn node(&mut self, index: u64) -> Result<Option<Node>, Self::Error> {
        match self.nodes.get(&index) {
            Some((n, _)) => Ok(Some(*n)),
            None => self.store.node(index),
        }
    }
}

impl<S: LogStore> LogView<S> {
    pub(crate) fn new(store: S) -> Self {
        Self {
            tree: store.tree().clone(),
            verifier: store.verifier().cloned(),
            store,
            nodes: HashMap::new(),
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
        let label = self.store.label();
        let verify_error = |source| CoreError::Verify {
            log: label.clone(),
            source: Box::new(source),
        };
        let resolved;
        let verifier = match &self.verifier {
            Some(v) => v,
            None => {
                resolved = Verifier::resolve(self.store.key(), None, data.manifest.as_ref())
                    .map_err(|e| verify_error(VerifyError::InvalidManifest(e)))?;
                &resolved
            }
        };
        let mut overlay = Overlay {
            nodes: &self.nodes,
            store: &mut self.store,
        };
        let proof = self
            .tree
            .verify_proof(&data, verifier, &mut overlay)
            .map_err(verify_error)?;
        // Learned from a proof that verified against it (without a manifest in the proof this
        // is the compat manifest of the key, which JS also keeps after the first upgrade).
        let learned = (self.verifier.is_none()
            && (data.manifest.is_some() || proof.head.is_some()))
        .then(|| verifier.clone());
        for n in &proof.nodes {
            self.nodes.entry(n.index).or_insert((*n, 0)).1 += 1;
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
                let offset =
                    tree.byte_offset(b.index, &mut overlay)
                        .map_err(|source| CoreError::Tree {
                            log: label.clone(),
                            source: Box::new(source),
                        })?;
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

    /// Forget everything uncommitted (a commit failed).
    fn rollback(&mut self) {
        self.nodes.clear();
        self.blocks.clear();
        self.uncommitted = 0;
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
