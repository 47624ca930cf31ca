//! Commits: verified data leaves the replicator as a [`Commit`] for the driver to make durable
//! outside its lock (STYLE.md 12b), and comes back with [`Replicator::handle_committed`]; only
//! then are its blocks reported, announced and served, and a new head synced to the peers.
//!
//! One commit per log is in flight; what verifies meanwhile waits for the next one, which
//! begins as soon as the previous is handed back. A change that cannot wait (an append, a
//! truncation, a reorg) commits everything here first ([`Replicator::settle`]).

use std::time::Instant;

use peerhost_ids::DiscoveryKey;
use peerhost_store::CoreError;

use super::Replicator;
use crate::announce;
use crate::event::Event;
use crate::store::{CommitJob, LogStore};
use crate::view::Committed;

/// A batch of verified blocks, nodes and perhaps a new head of one log, to make durable: from
/// [`Replicator::poll_commit`], [`run`](Self::run) it where no lock is held that the
/// replicator's other users need (it does blocking file I/O), then hand it back with
/// [`Replicator::handle_committed`].
#[derive(Debug)]
pub struct Commit<C> {
    dkey: DiscoveryKey,
    id: u64,
    job: C,
}

impl<C: CommitJob> Commit<C> {
    /// Write (and, per the store's durability, fsync) everything the commit holds.
    pub fn run(&self) {
        self.job.run();
    }

    /// The log it belongs to.
    pub fn discovery_key(&self) -> &DiscoveryKey {
        &self.dkey
    }
}

impl<S: LogStore> Replicator<S> {
    /// The next commit for the driver to run (see the drain contract on [`Replicator`]).
    pub fn poll_commit(&mut self) -> Option<Commit<S::Commit>> {
        self.commits.pop_front()
    }

    /// A commit from [`poll_commit`](Self::poll_commit) ran: take it in. Its blocks are now
    /// held: reported ([`Event::Downloaded`]), announced to the peers and served; a new head is
    /// synced to every peer ([`Event::Head`]). A failed commit is reported
    /// ([`Event::StorageError`]) and what it held is asked for again.
    pub fn handle_committed(&mut self, commit: Commit<S::Commit>, now: Instant) {
        let dkey = commit.dkey;
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        let held_back = log.view.uncommitted_bytes() >= self.config.max_uncommitted_bytes;
        if let Some(outcome) = log.view.finish_commit(commit.id) {
            self.committed(dkey, outcome, held_back, now);
        }
        self.begin_commit(dkey, now);
    }

    /// Hand what log `dkey` has staged to a commit, unless one is in flight.
    pub(super) fn begin_commit(&mut self, dkey: DiscoveryKey, now: Instant) {
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        match log.view.begin_commit() {
            Ok(Some((id, job))) => self.commits.push_back(Commit { dkey, id, job }),
            Ok(None) => {}
            Err(e) => self.commit_failed(dkey, &e, now),
        }
    }

    /// Commit everything log `dkey` verified, here and now (before a change that cannot wait),
    /// and take the outcome in.
    pub(super) fn settle(&mut self, dkey: DiscoveryKey, now: Instant) {
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        if !log.view.has_uncommitted() {
            return;
        }
        let outcomes = log.view.settle();
        // Its commits still queued for the driver are done now.
        self.commits.retain(|c| c.dkey != dkey);
        for outcome in outcomes {
            self.committed(dkey, outcome, true, now);
        }
    }

    /// Take a commit's outcome in; `held_back`: the log's block requests waited for it.
    fn committed(
        &mut self,
        dkey: DiscoveryKey,
        outcome: Result<Committed, CoreError>,
        held_back: bool,
        now: Instant,
    ) {
        let done = match outcome {
            Ok(done) => done,
            Err(e) => return self.commit_failed(dkey, &e, now),
        };
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        for &(index, bytes) in &done.blocks {
            log.download.on_committed(index, log.view.store_mut());
            self.events.push(Event::Downloaded {
                discovery_key: dkey,
                index,
                bytes,
            });
            announce::have(log, &mut self.conns, index);
        }
        if done.head {
            self.head_changed(dkey, now);
        } else if held_back {
            // The log waited for its uncommitted blocks to shrink: it asks for more now.
            self.update(&dkey, now);
        }
    }

    /// A commit failed (our storage): report it; the view has dropped everything
    /// uncommitted, so the requests made on top of it are cancelled and asked again.
    fn commit_failed(&mut self, dkey: DiscoveryKey, e: &CoreError, now: Instant) {
        tracing::warn!(log = %dkey, error = %e, "commit failed");
        self.events.push(Event::StorageError {
            discovery_key: dkey,
            message: e.to_string(),
        });
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        log.download.reset_cursors();
        log.download.forget_requests();
        for r in log.peers.clone() {
            self.cancel(r, |_| true);
        }
        self.update(&dkey, now);
    }
}
