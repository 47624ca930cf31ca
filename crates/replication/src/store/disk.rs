//! [`LogStore`] for the disk store's [`Core`]: every call maps onto the `Core` method of the
//! same meaning; commits use its two-step commit (`protocol/store.md`, "Commits in two steps").

use peerhost_ids::{DiscoveryKey, Key};
use peerhost_log::{Data, Node, Reorg, Request, Tree, Verifier};
use peerhost_store::{Changes, Commit, Core, CoreError, LogLabel, NodeSource};

use super::{CommitJob, LogStore};

impl CommitJob for Commit {
    fn run(&self) {
        Self::run(self);
    }
}

impl LogStore for Core {
    type Commit = Commit;

    fn key(&self) -> Key {
        Self::key(self)
    }

    fn discovery_key(&self) -> DiscoveryKey {
        Self::discovery_key(self)
    }

    fn label(&self) -> LogLabel {
        Self::label(self)
    }

    fn tree(&self) -> &Tree {
        Self::tree(self)
    }

    fn verifier(&self) -> Option<&Verifier> {
        Self::verifier(self)
    }

    fn writable(&self) -> bool {
        Self::writable(self)
    }

    fn node(&mut self, index: u64) -> Result<Option<Node>, peerhost_store::Error> {
        self.nodes().node(index)
    }

    fn has(&mut self, index: u64) -> Result<bool, peerhost_store::Error> {
        Self::has(self, index).map_err(store_error)
    }

    fn next_present(&mut self, start: u64, end: u64) -> Result<Option<u64>, peerhost_store::Error> {
        Self::next_present(self, start, end).map_err(store_error)
    }

    fn next_missing(&mut self, start: u64, end: u64) -> Result<Option<u64>, peerhost_store::Error> {
        Self::next_missing(self, start, end).map_err(store_error)
    }

    fn proof(&mut self, request: &Request, check_block: bool) -> Result<Option<Data>, CoreError> {
        self.proof_with(request, check_block)
    }

    fn append(&mut self, blocks: &[&[u8]]) -> Result<u64, CoreError> {
        Self::append(self, blocks)
    }

    fn truncate(&mut self, length: u64) -> Result<(), CoreError> {
        Self::truncate(self, length)
    }

    fn apply_reorg(&mut self, reorg: Reorg) -> Result<(), CoreError> {
        Self::apply_reorg(self, reorg)
    }

    fn begin_commit(&mut self, changes: Changes) -> Result<Commit, CoreError> {
        Self::begin_commit(self, changes)
    }

    fn finish_commit(&mut self) -> Result<(), CoreError> {
        Self::finish_commit(self)
    }
}

/// The storage error inside a `Core` read's error (reads fail only in storage).
fn store_error(e: CoreError) -> peerhost_store::Error {
    match e {
        CoreError::Store(e) => e,
        other => peerhost_store::Error::Io {
            op: "read",
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}
