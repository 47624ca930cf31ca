//! The scheduler: the requests one log needs now (lib/replicator.js `updatePeer` /
//! `updateAll`, simplified and deterministic), in this order — a fork proof or the next reorg
//! step (nothing else while one is under way), the upgrade, the manifest, then the missing
//! blocks of the wanted ranges, each to the least busy peer that has it.
//!
//! It reads the log's view (verified, not necessarily committed), so nothing verified is asked
//! for again, and stops asking for blocks while `Config::max_uncommitted_bytes` of them wait for
//! their commit. `protocol/replication.md` ("Requests") is the prose version.

use std::time::Instant;

use peerhost_ids::DiscoveryKey;
use peerhost_log::Request;
use peerhost_log::proof::{RequestBlock, RequestUpgrade};

use crate::ConnId;
use crate::config::Config;
use crate::conn::Conns;
use crate::messages::{Message, Sync};
use crate::peer::{Kind, PeerRef};
use crate::replicator::Log;
use crate::serve::SMALL_ANSWER;
use crate::store::LogStore;
use crate::view::LogView;

/// Candidate blocks the scheduler looks at per log and update, so one update stays cheap.
const MAX_SCAN: usize = 4096;

/// What one pass knows about the log.
struct Pass {
    deadline: Instant,
    max_per_conn: usize,
    /// The verified length and fork.
    length: u64,
    fork: u64,
    /// Requests in flight per peer for this log.
    window: usize,
    small_blocks: bool,
    peers: Vec<PeerRef>,
}

/// Issue the requests log `dkey` needs now.
pub(crate) fn update<S: LogStore>(
    log: &mut Log<S>,
    dkey: DiscoveryKey,
    conns: &mut Conns,
    config: &Config,
    now: Instant,
) {
    let (window, small_blocks) = inflight_window(config, &log.view);
    let pass = Pass {
        deadline: now + config.request_timeout,
        max_per_conn: config.max_requests_per_connection,
        length: log.view.length(),
        fork: log.view.fork(),
        window,
        small_blocks,
        peers: log.peers.iter().copied().collect(),
    };
    let writable = log.view.store().writable();
    if !writable {
        fork_proof(log, conns, &pass);
    }
    reorg_step(log, conns, &pass);
    if log.download.reorg.is_some() || log.download.fork_proof.is_some() {
        return;
    }
    if !writable {
        upgrade(log, conns, &pass);
    }
    manifest(log, conns, &pass);
    if log.view.uncommitted_bytes() < config.max_uncommitted_bytes {
        blocks(log, dkey, conns, &pass);
    }
}

/// Requests in flight per peer for this log: `max_inflight`, or more for small blocks, so that
/// about `max_inflight_bytes` are in flight (by the log's average block size), at most
/// `max_inflight_blocks`. Also whether the blocks are small (under [`SMALL_ANSWER`] on
/// average).
pub(crate) fn inflight_window<S>(config: &Config, view: &LogView<S>) -> (usize, bool)
where
    S: LogStore,
{
    let tree = view.tree();
    if tree.length() == 0 {
        return (config.max_inflight, false);
    }
    let average = (tree.byte_length() / tree.length()).max(1);
    let by_bytes = usize::try_from(config.max_inflight_bytes / average).unwrap_or(usize::MAX);
    let window = by_bytes
        .min(config.max_inflight_blocks)
        .max(config.max_inflight);
    (window, average < SMALL_ANSWER as u64)
}

/// The first of `peers` whose sync, requests in flight and acked length pass `ok`.
fn find(
    conns: &Conns,
    peers: &[PeerRef],
    mut ok: impl FnMut(&Sync, usize, u64) -> bool,
) -> Option<(PeerRef, Sync)> {
    peers.iter().find_map(|&r| {
        let (s, n, acked) = conns.peer(r)?.view()?;
        ok(&s, n, acked).then_some((r, s))
    })
}

/// 1. A peer on a higher fork with blocks (a truncation we have not followed): one fork-proof
///    request to it.
fn fork_proof<S: LogStore>(log: &mut Log<S>, conns: &mut Conns, pass: &Pass) {
    let d = &mut log.download;
    if d.reorg.is_some() || d.fork_proof.is_some() {
        return;
    }
    let found = find(conns, &pass.peers, |s, n, _| {
        s.fork > pass.fork && s.length > 0 && n < pass.window
    });
    let Some((r, s)) = found else {
        return;
    };
    let req = Request {
        fork: s.fork,
        upgrade: Some(RequestUpgrade {
            start: 0,
            length: s.length,
        }),
        manifest: log.view.verifier().is_none(),
        ..Request::default()
    };
    if conns.request(r, Kind::ForkProof, req, pass.deadline, pass.max_per_conn) {
        log.download.fork_proof = Some(r);
    }
}

/// While a reorg is narrowed: one `hash` request at a time to the peer that sent the proof.
fn reorg_step<S: LogStore>(log: &mut Log<S>, conns: &mut Conns, pass: &Pass) {
    let d = &mut log.download;
    let (Some((reorg, from)), None) = (&d.reorg, d.reorg_hash) else {
        return;
    };
    let Some(want) = reorg.want() else {
        return;
    };
    let req = Request {
        fork: reorg.head().fork(),
        hash: Some(RequestBlock {
            index: 2 * want.start,
            nodes: want.nodes,
        }),
        ..Request::default()
    };
    let from = *from;
    if conns.request(from, Kind::ReorgHash, req, pass.deadline, pass.max_per_conn) {
        d.reorg_hash = Some(from);
    }
}

/// 2. The upgrade, one at a time, from a peer on our fork that is longer, says it can upgrade
///    us and has acked our length (JS `_shouldUpgrade`).
fn upgrade<S: LogStore>(log: &mut Log<S>, conns: &mut Conns, pass: &Pass) {
    if log.download.upgrade.is_some() {
        return;
    }
    let found = find(conns, &pass.peers, |s, n, acked| {
        s.fork == pass.fork
            && s.length > pass.length
            && s.can_upgrade
            && acked == pass.length
            && n < pass.window
    });
    let Some((r, s)) = found else {
        return;
    };
    let req = Request {
        fork: pass.fork,
        upgrade: Some(RequestUpgrade {
            start: pass.length,
            length: s.length - pass.length,
        }),
        manifest: log.view.verifier().is_none() && s.has_manifest,
        ..Request::default()
    };
    if conns.request(r, Kind::Upgrade, req, pass.deadline, pass.max_per_conn) {
        log.download.upgrade = Some(r);
    }
}

/// 3. The manifest, eagerly, from a peer that has it but no blocks yet.
fn manifest<S: LogStore>(log: &mut Log<S>, conns: &mut Conns, pass: &Pass) {
    let d = &log.download;
    if log.view.verifier().is_some() || d.manifest.is_some() || d.upgrade.is_some() {
        return;
    }
    let found = find(conns, &pass.peers, |s, n, _| {
        s.has_manifest && s.length == 0 && n < pass.window
    });
    let Some((r, _)) = found else {
        return;
    };
    let req = Request {
        fork: pass.fork,
        manifest: true,
        ..Request::default()
    };
    if conns.request(r, Kind::Manifest, req, pass.deadline, pass.max_per_conn) {
        log.download.manifest = Some(r);
    }
}

/// 4. Blocks of the wanted ranges below our length, spread over the peers that have them.
fn blocks<S: LogStore>(log: &mut Log<S>, dkey: DiscoveryKey, conns: &mut Conns, pass: &Pass) {
    if log.download.ranges.is_empty() || pass.length == 0 {
        return;
    }
    // For small blocks a peer is topped up once an eighth of its window is free, not after
    // every answer: requests then leave (and are read) many at a time instead of one per
    // block. Not for large blocks: JS answers the requests it has queued as one protomux
    // batch, which for 64 KiB blocks makes messages of many MiB to buffer.
    let refill = if pass.small_blocks {
        (pass.window / 8).max(1)
    } else {
        1
    };
    let mut cands: Vec<PeerRef> = pass
        .peers
        .iter()
        .filter(|&&r| {
            conns
                .peer(r)
                .and_then(|p| p.view())
                .is_some_and(|(s, n, _)| {
                    s.fork == pass.fork && n + refill <= pass.window && s.length > 0
                })
        })
        .copied()
        .collect();
    // A connection at its cap of requests takes none now: this log waits its turn there.
    cands.retain(|r| {
        let Some(c) = conns.get_mut(r.conn) else {
            return false;
        };
        if c.requests_out < pass.max_per_conn {
            return true;
        }
        c.starve(dkey);
        false
    });
    // Requests for small blocks made in this pass go out as one protomux batch frame per
    // connection (a JS peer answers a batch with a batch, which for large blocks would be one
    // multi-MiB message).
    let mut corked: Vec<ConnId> = if pass.small_blocks {
        cands.iter().map(|r| r.conn).collect()
    } else {
        Vec::new()
    };
    corked.sort_unstable();
    corked.dedup();
    for &id in &corked {
        conns.cork(id);
    }
    advance_cursors(log, pass.length);
    let ranges = log.download.ranges.clone();
    let mut scanned = 0;
    for w in &ranges {
        let end = w.end.unwrap_or(pass.length).min(pass.length);
        scan(
            log,
            dkey,
            conns,
            &mut cands,
            (w.cursor, end),
            &mut scanned,
            pass,
        );
    }
    for &id in &corked {
        conns.uncork(id);
    }
}

/// Skip the held (or verified) prefix of each range once, remembering it.
fn advance_cursors<S: LogStore>(log: &mut Log<S>, length: u64) {
    for w in &mut log.download.ranges {
        let end = w.end.unwrap_or(length).min(length);
        w.cursor = match log.view.next_missing(w.cursor.max(w.start), end) {
            Ok(Some(m)) => m,
            Ok(None) => end.max(w.cursor),
            Err(_) => w.cursor,
        };
    }
}

/// Request the missing blocks of `from..end` that are not in flight, in order, each from the
/// least busy candidate that has it; ask the candidates (`want`) about a block none has.
fn scan<S: LogStore>(
    log: &mut Log<S>,
    dkey: DiscoveryKey,
    conns: &mut Conns,
    cands: &mut Vec<PeerRef>,
    (from, end): (u64, u64),
    scanned: &mut usize,
    pass: &Pass,
) {
    let mut i = from;
    while i < end && !cands.is_empty() && *scanned < MAX_SCAN {
        *scanned += 1;
        let Ok(Some(m)) = log.view.next_missing(i, end) else {
            return;
        };
        i = m;
        if log.download.blocks.contains_key(&i) {
            // Step over the whole run of requests in flight at once.
            i = log.download.blocks.skip(i);
            continue;
        }
        match least_busy(conns, cands, i, pass.length) {
            Some(r) => {
                let nodes = log.view.missing_nodes(2 * i);
                let req = Request {
                    fork: pass.fork,
                    block: Some(RequestBlock { index: i, nodes }),
                    ..Request::default()
                };
                if conns.request(r, Kind::Block(i), req, pass.deadline, pass.max_per_conn) {
                    log.download.blocks.insert(i, r);
                }
                if is_full(conns, r, dkey, pass) {
                    cands.retain(|c| *c != r);
                }
                i += 1;
            }
            None => {
                // Nobody says it has block i: ask them, then skip to the next block some
                // peer has.
                for &r in cands.iter() {
                    if let Some(w) = conns.peer_mut(r).and_then(|p| p.want_for(i)) {
                        conns.send(r, &Message::Want(w));
                    }
                }
                let next = cands
                    .iter()
                    .filter_map(|&r| conns.peer(r)?.next_has(i + 1))
                    .min();
                match next {
                    Some(n) => i = n,
                    None => return,
                }
            }
        }
    }
}

/// The least busy candidate that has block `index` and can prove it for our `length` (it is
/// at least as long, or we told it it could upgrade us).
fn least_busy(conns: &Conns, cands: &[PeerRef], index: u64, length: u64) -> Option<PeerRef> {
    cands
        .iter()
        .filter_map(|&r| {
            let p = conns.peer(r)?;
            let s = p.remote?;
            let ok = index < s.length
                && p.remote_has(index)
                && (s.length >= length || p.sent_can_upgrade);
            ok.then_some((p.inflight.len(), r))
        })
        .min()
        .map(|(_, r)| r)
}

/// Whether `r` takes no more requests in this pass (its window, or its connection's cap,
/// where the log then waits its turn).
fn is_full(conns: &mut Conns, r: PeerRef, dkey: DiscoveryKey, pass: &Pass) -> bool {
    let Some(c) = conns.get_mut(r.conn) else {
        return true;
    };
    if c.requests_out >= pass.max_per_conn {
        c.starve(dkey);
        return true;
    }
    c.peers
        .get(&r.channel)
        .is_none_or(|p| p.inflight.len() >= pass.window)
}
