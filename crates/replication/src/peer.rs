//! [`Peer`]: one side of one channel — what we know of the remote for one log (its head,
//! which blocks it has, which it wants) and our requests in flight to it. Pure state: no
//! frames are sent from here; the callers turn what it decides into messages.

use std::collections::HashSet;
use std::time::Instant;

use peerhost_ids::DiscoveryKey;
use peerhost_log::Request;
use peerhost_protomux::ChannelHandle;

use crate::ConnId;
use crate::config::WANT_BATCH;
use crate::messages::{Bitfield, Range, Sync, Want};
use crate::rangeset::RangeSet;
use peerhost_store::seeded::U64Map;

/// Local `want` batches per peer (lib/wants.js `MAX`).
const MAX_WANTS: usize = 512;

/// Remote `want` ranges remembered per peer before we treat it as wanting everything.
const MAX_REMOTE_WANTS: usize = 512;

/// A channel: the connection and its protomux channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PeerRef {
    pub(crate) conn: ConnId,
    pub(crate) channel: ChannelHandle,
}

/// What a request of ours asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Block(u64),
    ForkProof,
    Manifest,
    ReorgHash,
    Upgrade,
}

/// One of our requests, waiting for its answer.
#[derive(Debug)]
pub(crate) struct Inflight {
    pub(crate) kind: Kind,
    pub(crate) request: Request,
    pub(crate) deadline: Instant,
}

/// One side of one channel: what we know of the remote for one log.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) dkey: DiscoveryKey,
    /// Both sides opened and the capability checked out.
    pub(crate) opened: bool,
    pub(crate) remote: Option<Sync>,
    /// Our length as the remote last acknowledged it (its sync's `remote_length`).
    pub(crate) length_acked: u64,
    /// Blocks `0..contig` the remote has (`range` from 0).
    pub(crate) contig: u64,
    /// Other blocks the remote has.
    has: RangeSet,
    pub(crate) inflight: U64Map<Inflight>,
    next_id: u64,
    /// `want` batches sent.
    wants_sent: HashSet<u64>,
    /// `want` ranges received (start, end); `wants_all` past the bound.
    remote_wants: Vec<(u64, u64)>,
    wants_all: bool,
    /// The `can_upgrade` we last sent.
    pub(crate) sent_can_upgrade: bool,
    /// The length we last announced as fully contiguous (`range {0, n}`).
    pub(crate) signaled: u64,
}

impl Peer {
    pub(crate) fn new(dkey: DiscoveryKey, max_runs: usize) -> Self {
        Self {
            dkey,
            opened: false,
            remote: None,
            length_acked: 0,
            contig: 0,
            has: RangeSet::new(max_runs),
            inflight: U64Map::default(),
            next_id: 1,
            wants_sent: HashSet::new(),
            remote_wants: Vec::new(),
            wants_all: false,
            sent_can_upgrade: false,
            signaled: 0,
        }
    }

    /// Its sync, requests in flight and acked length, if it is open and uploading: what the
    /// scheduler looks at.
    pub(crate) fn view(&self) -> Option<(Sync, usize, u64)> {
        let s = self.remote?;
        (self.opened && s.uploading).then_some((s, self.inflight.len(), self.length_acked))
    }

    /// A fresh request id (they count up per channel and are never reused).
    pub(crate) fn next_request_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn remote_has(&self, index: u64) -> bool {
        index < self.contig || self.has.contains(index)
    }

    /// The first block at or after `from` the remote says it has.
    pub(crate) fn next_has(&self, from: u64) -> Option<u64> {
        if from < self.contig {
            return Some(from);
        }
        self.has.next_set(from)
    }

    /// Whether the remote asked (`want`) about block `index`.
    pub(crate) fn wants(&self, index: u64) -> bool {
        self.wants_all
            || self
                .remote_wants
                .iter()
                .any(|&(s, e)| s <= index && index < e)
    }

    /// Its `sync` (our `fork`): remember its head; on another fork what it said it has no
    /// longer applies.
    pub(crate) fn on_sync(&mut self, s: Sync, fork: u64) {
        self.remote = Some(s);
        self.length_acked = if s.fork == fork { s.remote_length } else { 0 };
        if s.fork != fork {
            self.contig = 0;
            self.has.clear();
        }
    }

    /// Its `range`: blocks it now has, or (`drop`) no longer has.
    pub(crate) fn on_range(&mut self, m: Range) {
        let end = m.start.saturating_add(m.length);
        if m.drop {
            self.lower_contig(m.start, end);
            self.has.remove(m.start, end);
        } else if m.start == 0 {
            self.contig = self.contig.max(m.length);
        } else {
            self.has.insert(m.start, end);
        }
    }

    /// Its `bitfield`: exactly which blocks of the range it has.
    pub(crate) fn on_bitfield(&mut self, b: &Bitfield) {
        let end = b.start.saturating_add(32 * b.bitfield.len() as u64);
        // > if (start < this._remoteContiguousLength) this._remoteContiguousLength = start
        self.lower_contig(b.start, end);
        self.has.set_words(b.start, &b.bitfield);
    }

    /// Its contiguous prefix ends at `start` now; what it had in `end..contig` stays known.
    fn lower_contig(&mut self, start: u64, end: u64) {
        if start < self.contig {
            if end < self.contig {
                self.has.insert(end, self.contig);
            }
            self.contig = start;
        }
    }

    /// The peer does not (or cannot now) give us block `index`.
    pub(crate) fn forget_block(&mut self, index: u64) {
        self.lower_contig(index, index + 1);
        self.has.remove(index, index + 1);
    }

    /// Its `want`: remember the range (lib/wants.js `RemoteWants.add`: ranges above a batch
    /// are ignored, and past a bound it wants everything). False when ignored.
    pub(crate) fn on_want(&mut self, w: &Want) -> bool {
        if !w.any && w.length > WANT_BATCH {
            return false;
        }
        let end = w.start.saturating_add(w.length);
        if self.remote_wants.len() < MAX_REMOTE_WANTS {
            self.remote_wants.push((w.start, end));
        } else {
            self.wants_all = true;
        }
        true
    }

    /// Its `unwant`.
    pub(crate) fn on_unwant(&mut self, w: &Want) {
        let end = w.start.saturating_add(w.length);
        self.remote_wants.retain(|&(s, e)| (s, e) != (w.start, end));
    }

    /// The `want` to ask which blocks of `index`'s batch it has, once per batch
    /// (lib/replicator.js `_maybeWant`).
    pub(crate) fn want_for(&mut self, index: u64) -> Option<Want> {
        if index < self.contig || self.remote.is_none_or(|s| index >= s.length) {
            return None;
        }
        let batch = index / WANT_BATCH;
        if self.wants_sent.contains(&batch) || self.wants_sent.len() >= MAX_WANTS {
            return None;
        }
        self.wants_sent.insert(batch);
        Some(Want {
            start: batch * WANT_BATCH,
            length: WANT_BATCH,
            any: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer::new(DiscoveryKey([0; 32]), 64)
    }

    #[test]
    fn ranges_and_bitfields_track_what_the_remote_has() {
        let mut p = peer();
        p.on_range(Range {
            drop: false,
            start: 0,
            length: 10,
        });
        p.on_range(Range {
            drop: false,
            start: 20,
            length: 2,
        });
        assert!(p.remote_has(9) && !p.remote_has(10) && p.remote_has(21));
        assert_eq!(p.next_has(12), Some(20));
        // Dropping 4..6 keeps 6..10 known.
        p.on_range(Range {
            drop: true,
            start: 4,
            length: 2,
        });
        assert_eq!(p.contig, 4);
        assert!(!p.remote_has(5) && p.remote_has(6) && p.remote_has(9));
        p.forget_block(7);
        assert!(!p.remote_has(7) && p.remote_has(8));
        p.on_bitfield(&Bitfield {
            start: 0,
            bitfield: vec![0b101],
        });
        assert_eq!(p.contig, 0);
        assert!(p.remote_has(0) && !p.remote_has(1) && p.remote_has(2));
    }

    #[test]
    fn wants_are_bounded_and_asked_once_per_batch() {
        let mut p = peer();
        p.remote = Some(Sync {
            length: 3 * WANT_BATCH,
            ..Sync::default()
        });
        assert!(p.want_for(5).is_some());
        assert!(p.want_for(6).is_none(), "same batch");
        assert_eq!(
            p.want_for(WANT_BATCH + 1).map(|w| w.start),
            Some(WANT_BATCH)
        );
        let big = Want {
            start: 0,
            length: WANT_BATCH + 1,
            any: false,
        };
        assert!(!p.on_want(&big));
        for i in 0..=MAX_REMOTE_WANTS as u64 {
            assert!(p.on_want(&Want {
                start: i,
                length: 1,
                any: false,
            }));
        }
        assert!(p.wants(u64::MAX - 1), "past the bound it wants everything");
    }
}
