//! What we tell the peers of a log about it: our `sync` (lib/replicator.js `sendSync` with
//! `_canUpgrade`), the blocks we hold (`range`, `broadcastRange`), our head changes and
//! truncations. Always the **committed** state: a peer never hears of a block or a head we
//! could not serve after a crash.

use peerhost_log::flat;

use crate::conn::Conns;
use crate::messages::{Message, Range, Sync};
use crate::peer::{Peer, PeerRef};
use crate::replicator::Log;
use crate::store::LogStore;

/// Blocks below `length - LAST_BLOCKS` are announced to a peer only if it asked for them
/// (lib/replicator.js `LAST_BLOCKS`).
const LAST_BLOCKS: u64 = 256;

/// Our sync for `peer`.
pub(crate) fn sync_for<S: LogStore>(log: &mut Log<S>, peer: &Peer) -> Sync {
    let downloading = log.is_downloading();
    let store = log.view.store_mut();
    let (length, fork) = (store.length(), store.fork());
    let (rfork, rlength) = peer.remote.map_or((0, 0), |s| (s.fork, s.length));
    let can_upgrade =
        rfork == fork && (rlength == 0 || (rlength < length && upgradeable(store, rlength)));
    Sync {
        fork,
        length,
        remote_length: if rfork == fork { rlength } else { 0 },
        can_upgrade,
        uploading: true,
        downloading,
        has_manifest: store.verifier().is_some_and(|v| !v.is_compat()),
        allow_push: false,
    }
}

/// Whether we hold the roots of a tree of `length` blocks, so we can prove an upgrade from it
/// (lib/merkle-tree.js `upgradeable`).
fn upgradeable<S: LogStore>(store: &mut S, length: u64) -> bool {
    flat::full_roots(2 * length)
        .into_iter()
        .all(|i| matches!(store.node(i), Ok(Some(_))))
}

/// The channel `r` opened: our sync and, if we hold blocks `0..c`, `range {0, c}`, corked
/// into one batch (`this.protomux.cork(); this.sendSync(); … this.broadcastRange(0, contig)`).
pub(crate) fn opened<S: LogStore>(log: &mut Log<S>, conns: &mut Conns, r: PeerRef) {
    let Some(peer) = conns.peer(r) else {
        return;
    };
    let sync = sync_for(log, peer);
    let length = log.view.store().length();
    let contig = log.download.contiguous.min(length);
    conns.cork(r.conn);
    if let Some(p) = conns.peer_mut(r) {
        p.sent_can_upgrade = sync.can_upgrade;
        if contig > 0 && contig == length {
            p.signaled = contig;
        }
    }
    conns.send(r, &Message::Sync(sync));
    if contig > 0 {
        let range = Range {
            drop: false,
            start: 0,
            length: contig,
        };
        conns.send(r, &Message::Range(range));
    }
    conns.uncork(r.conn);
}

/// The peer's `sync` arrived: answer with ours when we are longer on the same fork or our
/// `canUpgrade` for it changed (`if (this.needsSync === true || (fork === remoteFork &&
/// length > this.remoteLength)) this.signalUpgrade()`).
pub(crate) fn on_sync<S: LogStore>(log: &mut Log<S>, conns: &mut Conns, r: PeerRef, s: Sync) {
    let Some(peer) = conns.peer(r) else {
        return;
    };
    let (length, fork) = (log.view.store().length(), log.view.store().fork());
    let sync = sync_for(log, peer);
    if (s.fork == fork && length > s.length) || sync.can_upgrade != peer.sent_can_upgrade {
        if let Some(p) = conns.peer_mut(r) {
            p.sent_can_upgrade = sync.can_upgrade;
        }
        conns.send(r, &Message::Sync(sync));
    }
}

/// Our committed head changed: sync every peer, and announce a log held in full.
pub(crate) fn head_changed<S: LogStore>(log: &mut Log<S>, conns: &mut Conns) {
    let length = log.view.store().length();
    let full = log.download.contiguous >= length;
    for r in log.peers.clone() {
        let Some(peer) = conns.peer(r) else {
            continue;
        };
        let sync = sync_for(log, peer);
        conns.cork(r.conn);
        let announce = match conns.peer_mut(r) {
            Some(p) => {
                p.sent_can_upgrade = sync.can_upgrade;
                let announce = full && length > 0 && p.signaled < length;
                if announce {
                    p.signaled = length;
                }
                announce
            }
            None => false,
        };
        conns.send(r, &Message::Sync(sync));
        if announce {
            let m = Range {
                drop: false,
                start: 0,
                length,
            };
            conns.send(r, &Message::Range(m));
        }
        conns.uncork(r.conn);
    }
}

/// Block `index` was committed: tell the peers that may want it (`broadcastRange`): a full log
/// once per length, else the block to peers that do not have it, and an old block only to
/// peers that asked about it.
pub(crate) fn have<S: LogStore>(log: &Log<S>, conns: &mut Conns, index: u64) {
    let length = log.view.store().length();
    let full = log.download.contiguous >= length;
    for &r in &log.peers {
        let Some(p) = conns.peer_mut(r) else {
            continue;
        };
        let m = if full {
            if p.signaled >= length {
                continue;
            }
            p.signaled = length;
            Range {
                drop: false,
                start: 0,
                length,
            }
        } else {
            if p.remote_has(index) || (index + LAST_BLOCKS < length && !p.wants(index)) {
                continue;
            }
            Range {
                drop: false,
                start: index,
                length: 1,
            }
        };
        conns.send(r, &Message::Range(m));
    }
}

/// We truncated from `old` to `length` blocks: `range {drop}` to every peer.
pub(crate) fn truncated<S>(log: &Log<S>, conns: &mut Conns, old: u64, length: u64) {
    for &r in &log.peers {
        if let Some(p) = conns.peer_mut(r) {
            p.signaled = p.signaled.min(length);
        }
        let drop = Range {
            drop: true,
            start: length,
            length: old - length,
        };
        conns.send(r, &Message::Range(drop));
    }
}
