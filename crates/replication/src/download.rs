//! [`Download`]: what we want of one log and what we asked for — the wanted ranges, the
//! blocks in flight and from whom, the one upgrade, manifest, fork proof and reorg step in
//! flight — plus the contiguous length we announce. The scheduler (`scheduler.rs`) reads and
//! fills it; answers, timeouts and departures release what they settle.

use peerhost_log::Reorg;

use crate::inflight::InflightBlocks;
use crate::peer::{Kind, Peer, PeerRef};
use crate::store::LogStore;

/// A wanted range of blocks: `start..end`, or to the log's length when `end` is `None` (and
/// beyond, as it grows, when the log is live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) start: u64,
    pub(crate) end: Option<u64>,
    /// Blocks `start..cursor` are known to be held or verified (reset when that may no longer
    /// hold: a truncation, a reorg, a failed commit).
    pub(crate) cursor: u64,
}

/// One log's downloads.
#[derive(Debug)]
pub(crate) struct Download {
    pub(crate) ranges: Vec<Wanted>,
    pub(crate) blocks: InflightBlocks<PeerRef>,
    pub(crate) upgrade: Option<PeerRef>,
    pub(crate) manifest: Option<PeerRef>,
    pub(crate) fork_proof: Option<PeerRef>,
    /// A reorg being narrowed, and the peer whose fork it follows.
    pub(crate) reorg: Option<(Reorg, PeerRef)>,
    pub(crate) reorg_hash: Option<PeerRef>,
    /// Blocks `0..contiguous` are committed (cached: the store's `next_missing` scans).
    pub(crate) contiguous: u64,
}

impl Download {
    pub(crate) fn new(contiguous: u64) -> Self {
        Self {
            ranges: Vec::new(),
            blocks: InflightBlocks::new(),
            upgrade: None,
            manifest: None,
            fork_proof: None,
            reorg: None,
            reorg_hash: None,
            contiguous,
        }
    }

    /// Want blocks `start..end`.
    pub(crate) fn want(&mut self, start: u64, end: Option<u64>) {
        self.ranges.push(Wanted {
            start,
            end,
            cursor: start,
        });
    }

    /// Whether requests are in flight that make us a downloader (for our `sync`).
    pub(crate) fn is_busy(&self) -> bool {
        !self.blocks.is_empty() || self.upgrade.is_some()
    }

    /// Whether a head change is in flight (an upgrade, a fork proof, a reorg).
    pub(crate) fn head_in_flight(&self) -> bool {
        self.upgrade.is_some() || self.fork_proof.is_some() || self.reorg.is_some()
    }

    /// Blocks below the cursors may be gone (or were never stored).
    pub(crate) fn reset_cursors(&mut self) {
        for w in &mut self.ranges {
            w.cursor = w.start;
        }
    }

    /// A request to `r` of this kind is over (answered, refused, timed out, or the peer left).
    pub(crate) fn release(&mut self, r: PeerRef, kind: Kind) {
        let slot = match kind {
            Kind::Block(i) => {
                if self.blocks.get(&i) == Some(&r) {
                    self.blocks.remove(&i);
                }
                return;
            }
            Kind::Upgrade => &mut self.upgrade,
            Kind::Manifest => &mut self.manifest,
            Kind::ForkProof => &mut self.fork_proof,
            Kind::ReorgHash => &mut self.reorg_hash,
        };
        if *slot == Some(r) {
            *slot = None;
        }
    }

    /// Every request is being cancelled (what they were made for may be gone).
    pub(crate) fn forget_requests(&mut self) {
        self.blocks.clear();
        self.upgrade = None;
        self.manifest = None;
        self.fork_proof = None;
        self.reorg_hash = None;
    }

    /// The peer is gone: release everything it was asked for, and a reorg that follows it.
    pub(crate) fn release_peer(&mut self, r: PeerRef, peer: &Peer) {
        for i in peer.inflight.values() {
            self.release(r, i.kind);
        }
        if self.reorg.as_ref().is_some_and(|(_, from)| *from == r) {
            self.reorg = None;
        }
    }

    /// Block `index` was committed: advance the contiguous length.
    pub(crate) fn on_committed<S: LogStore>(&mut self, index: u64, store: &mut S) {
        if index == self.contiguous {
            let length = store.length();
            self.contiguous = match store.next_missing(index, length) {
                Ok(Some(m)) => m,
                Ok(None) => length,
                Err(_) => index,
            };
        }
    }

    /// The committed log changed shape (append, truncate, reorg): recount the contiguous
    /// length from `store`.
    pub(crate) fn recount<S: LogStore>(&mut self, store: &mut S) {
        let length = store.length();
        self.contiguous = store
            .next_missing(0, length)
            .ok()
            .flatten()
            .unwrap_or(length);
    }
}
