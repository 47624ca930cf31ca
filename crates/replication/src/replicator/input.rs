//! What a connection sends us: protomux frames → channel events → the ten channel messages,
//! each handed to the component that owns what it changes (pairing, the peer's state, the
//! answer queue, the log's view and downloads), then the touched logs are committed and
//! scheduled once per call.

use std::time::Instant;

use peerhost_ids::DiscoveryKey;
use peerhost_log::{Data, Request, Verifier};
use peerhost_protomux::{ChannelHandle, Event as MuxEvent};
use peerhost_store::CoreError;

use super::{ConnId, Log, Replicator};
use crate::announce;
use crate::error::Error;
use crate::event::Event;
use crate::messages::{self, Message, NoData, Sync, Want};
use crate::pairing;
use crate::peer::{Kind, PeerRef};
use crate::serve;
use crate::store::{LogStore, Nodes};
use crate::view::peer_fault;

impl<S: LogStore> Replicator<S> {
    /// Handle one decrypted stream message (one protomux frame) from `conn`. On a protocol
    /// violation the connection fails ([`connection_error`](Self::connection_error)).
    pub fn handle_input(&mut self, conn: ConnId, frame: &[u8], now: Instant) {
        self.handle_inputs(conn, &[frame], now);
    }

    /// [`handle_input`](Self::handle_input) for several messages from `conn` in order (say all
    /// those one transport read decrypted): answers to our requests among them are verified
    /// one by one as they come, what verified is handed to one commit per log, and scheduling
    /// runs once. Stops at the first protocol violation.
    pub fn handle_inputs<F: AsRef<[u8]>>(&mut self, conn: ConnId, frames: &[F], now: Instant) {
        for frame in frames {
            let Some(c) = self.conns.get_mut(conn) else {
                break;
            };
            if c.error.is_some() {
                break;
            }
            if let Err(e) = c.mux.handle_input(frame.as_ref()) {
                self.fail(conn, Error::Mux(e), now);
                break;
            }
            self.drain_mux(conn, now);
        }
        for dkey in std::mem::take(&mut self.touched) {
            self.begin_commit(dkey, now);
            self.update(&dkey, now);
        }
        self.unstarve(conn, now);
    }

    fn drain_mux(&mut self, conn: ConnId, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            if c.error.is_some() {
                return;
            }
            let Some(ev) = c.mux.poll_event() else {
                return;
            };
            self.conns.wake(conn);
            match ev {
                MuxEvent::RemoteOpen { protocol, id, .. } => {
                    let logs = &self.logs;
                    let key_of = |d: &DiscoveryKey| logs.get(d).map(|l| l.view.store().key());
                    let max_runs = self.config.max_remote_runs;
                    pairing::on_remote_open(
                        &mut self.conns,
                        conn,
                        &protocol,
                        id.as_deref(),
                        key_of,
                        max_runs,
                    );
                }
                MuxEvent::ChannelOpened {
                    channel, handshake, ..
                } => self.on_open(conn, channel, &handshake, now),
                MuxEvent::Message {
                    channel,
                    message_type,
                    payload,
                } => self.on_message(PeerRef { conn, channel }, message_type, &payload, now),
                MuxEvent::ChannelClosed { channel, .. } | MuxEvent::Rejected { channel, .. } => {
                    self.on_close(PeerRef { conn, channel }, now);
                }
                _ => {}
            }
        }
    }

    fn on_open(&mut self, conn: ConnId, channel: ChannelHandle, handshake: &[u8], now: Instant) {
        let logs = &self.logs;
        let key_of = |d: &DiscoveryKey| logs.get(d).map(|l| l.view.store().key());
        match pairing::on_open(&mut self.conns, conn, channel, handshake, key_of) {
            Ok(Some(dkey)) => {
                let r = PeerRef { conn, channel };
                let Some(log) = self.logs.get_mut(&dkey) else {
                    return;
                };
                log.peers.insert(r);
                announce::opened(log, &mut self.conns, r);
                self.events.push(Event::ChannelOpened {
                    conn,
                    discovery_key: dkey,
                });
                self.update(&dkey, now);
            }
            Ok(None) => {}
            Err(e) => self.fail(conn, e, now),
        }
    }

    fn on_close(&mut self, r: PeerRef, now: Instant) {
        let Some(peer) = self
            .conns
            .get_mut(r.conn)
            .and_then(|c| c.remove_channel(r.channel))
        else {
            return;
        };
        if let Some(log) = self.logs.get_mut(&peer.dkey) {
            log.peers.remove(&r);
            log.download.release_peer(r, &peer);
        }
        if peer.opened {
            self.events.push(Event::ChannelClosed {
                conn: r.conn,
                discovery_key: peer.dkey,
            });
        }
        self.update(&peer.dkey, now);
    }

    /// A channel message: bounded, decoded, dispatched.
    fn on_message(&mut self, r: PeerRef, message_type: u64, payload: &[u8], now: Instant) {
        let Some(dkey) = self.conns.peer(r).map(|p| p.dkey) else {
            return;
        };
        let max = match message_type {
            3 | 9 => usize::MAX,
            7 => 16 + 4 * self.config.max_bitfield_words,
            _ => self.config.max_message_len,
        };
        if payload.len() > max {
            let name = Message::type_name(message_type);
            let len = payload.len();
            let e = Error::Oversized {
                discovery_key: dkey,
                name,
                len,
                max,
            };
            self.fail(r.conn, e, now);
            return;
        }
        let message = match Message::decode(message_type, payload) {
            Ok(m) => m,
            Err(messages::MessageError::UnknownType(t)) if !self.config.strict_message_types => {
                tracing::trace!(conn = r.conn, log = %dkey, t, "ignoring unknown message type");
                return;
            }
            Err(source) => {
                let e = Error::Message {
                    discovery_key: dkey,
                    source,
                };
                self.fail(r.conn, e, now);
                return;
            }
        };
        match message {
            Message::Sync(s) => self.on_sync(r, dkey, s, now),
            Message::Request(req) => self.on_request(r, req, now),
            Message::Cancel(m) => {
                if let Some(c) = self.conns.get_mut(r.conn) {
                    c.answers.cancel(r.channel, m.request);
                }
            }
            Message::Data(d) => self.on_data(r, dkey, d, now),
            Message::NoData(m) => self.on_no_data(r, dkey, m, now),
            Message::Want(w) => self.on_want(r, dkey, &w),
            Message::Unwant(w) => {
                if let Some(p) = self.conns.peer_mut(r) {
                    p.on_unwant(&w);
                }
            }
            Message::Bitfield(b) => {
                if let Some(p) = self.conns.peer_mut(r) {
                    p.on_bitfield(&b);
                }
                self.update(&dkey, now);
            }
            Message::Range(rg) => {
                if let Some(p) = self.conns.peer_mut(r) {
                    p.on_range(rg);
                }
                if !rg.drop {
                    self.update(&dkey, now);
                }
            }
            Message::Extension(e) => {
                tracing::trace!(conn = r.conn, log = %dkey, name = %e.name, "ignoring extension message");
            }
        }
    }

    fn on_sync(&mut self, r: PeerRef, dkey: DiscoveryKey, s: Sync, now: Instant) {
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        let fork = log.view.store().fork();
        let Some(p) = self.conns.peer_mut(r) else {
            return;
        };
        p.on_sync(s, fork);
        announce::on_sync(log, &mut self.conns, r, s);
        self.update(&dkey, now);
    }

    fn on_request(&mut self, r: PeerRef, req: Request, now: Instant) {
        let max = self.config.max_pending_requests;
        let Some(c) = self.conns.get_mut(r.conn) else {
            return;
        };
        match c.answers.push(r.channel, req, max) {
            Ok(()) => self.conns.wake(r.conn),
            Err(e) => self.fail(r.conn, e, now),
        }
    }

    fn on_want(&mut self, r: PeerRef, dkey: DiscoveryKey, w: &Want) {
        let Some(p) = self.conns.peer_mut(r) else {
            return;
        };
        if !p.on_want(w) {
            return;
        }
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        let contiguous = log.download.contiguous;
        if let Some(m) = serve::want_reply(log.view.store_mut(), contiguous, w) {
            self.conns.send(r, &m);
        }
    }

    fn on_no_data(&mut self, r: PeerRef, dkey: DiscoveryKey, m: NoData, now: Instant) {
        let Some(inflight) = self.conns.take_inflight(r, m.request) else {
            return;
        };
        if let Some(p) = self.conns.peer_mut(r) {
            match inflight.kind {
                Kind::Block(i) => p.forget_block(i),
                // Do not ask it again until it syncs again.
                Kind::Upgrade => {
                    if let Some(s) = &mut p.remote {
                        s.can_upgrade = false;
                    }
                }
                _ => {}
            }
        }
        if let Some(log) = self.logs.get_mut(&dkey) {
            log.download.release(r, inflight.kind);
        }
        self.update(&dkey, now);
    }

    /// An answer to one of our requests: verified against the log's view at once and staged
    /// for its commit (lib/replicator.js `ondata`). Data that does not match its request, or
    /// does not verify, ends the connection; nothing of it is kept.
    fn on_data(&mut self, r: PeerRef, dkey: DiscoveryKey, data: Data, now: Instant) {
        // Unrequested data (push) is ignored, as JS does without `allowPush`.
        let Some(inflight) = self.conns.take_inflight(r, data.request) else {
            tracing::trace!(conn = r.conn, log = %dkey, request = data.request, "ignoring unrequested data");
            return;
        };
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        log.download.release(r, inflight.kind);
        if !matches_request(&inflight.request, &data) {
            let e = Error::UnexpectedData {
                discovery_key: dkey,
                request: data.request,
            };
            self.fail(r.conn, e, now);
            return;
        }
        let fork = log.view.fork();
        if data.fork > fork && matches!(inflight.kind, Kind::ForkProof | Kind::ReorgHash) {
            self.on_reorg_data(r, dkey, inflight.kind, &data, now);
            return;
        }
        self.touched.insert(dkey);
        if data.fork != fork {
            // Answered on a fork we are no longer on (or not yet): as if no data.
            return;
        }
        let has_block = data.block.is_some();
        match log.view.verify(data) {
            Ok(v) => {
                if let Some(i) = v.block {
                    log.download.blocks.remove(&i);
                }
                if let (Kind::Block(i), false) = (inflight.kind, has_block) {
                    // A manifest-only answer to a block request: the peer lacks the block.
                    if let Some(p) = self.conns.peer_mut(r) {
                        p.forget_block(i);
                    }
                }
            }
            Err(e) if peer_fault(&e) => {
                let e = Error::InvalidData {
                    discovery_key: dkey,
                    source: Box::new(e),
                };
                self.fail(r.conn, e, now);
            }
            Err(e) => self.events.push(Event::StorageError {
                discovery_key: dkey,
                message: e.to_string(),
            }),
        }
    }

    /// A fork proof, or a hash proof narrowing a reorg: verified against the committed log
    /// (everything verified before is committed first, here), adopted when finished.
    fn on_reorg_data(
        &mut self,
        r: PeerRef,
        dkey: DiscoveryKey,
        kind: Kind,
        data: &Data,
        now: Instant,
    ) {
        if self
            .logs
            .get(&dkey)
            .is_none_or(|l| l.view.store().writable())
        {
            return;
        }
        self.settle(dkey, now);
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        let result = match (kind, log.download.reorg.take()) {
            (Kind::ForkProof, _) if data.upgrade.is_some() => {
                verify_reorg(log, data).map(|reorg| Some((reorg, r)))
            }
            (Kind::ReorgHash, Some((mut reorg, from))) if reorg.head().fork() == data.fork => {
                let label = log.view.store().label();
                reorg
                    .update(data, &mut Nodes(log.view.store_mut()))
                    .map(|_| Some((reorg, from)))
                    .map_err(|source| CoreError::Verify {
                        log: label,
                        source: Box::new(source),
                    })
            }
            (_, other) => Ok(other),
        };
        match result {
            Ok(Some((reorg, _))) if reorg.finished() => self.apply_reorg(dkey, reorg, now),
            Ok(pending) => {
                log.download.reorg = pending;
                self.update(&dkey, now);
            }
            Err(e) => {
                let e = Error::InvalidData {
                    discovery_key: dkey,
                    source: Box::new(e),
                };
                self.fail(r.conn, e, now);
            }
        }
    }

    /// Follow the log onto the reorg's fork (the store truncates to the shared blocks and
    /// takes the new head), then start over from there.
    fn apply_reorg(&mut self, dkey: DiscoveryKey, reorg: peerhost_log::Reorg, now: Instant) {
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        let ancestors = reorg.ancestors();
        match log.view.store_mut().apply_reorg(reorg) {
            Ok(()) => {
                log.view.resync();
                let store = log.view.store_mut();
                tracing::info!(log = %dkey, ancestors, length = store.length(), fork = store.fork(), "followed the log onto a new fork");
                log.download.recount(store);
                log.download.blocks.clear();
                log.download.reset_cursors();
                self.head_changed(dkey, now);
            }
            Err(e) => self.events.push(Event::StorageError {
                discovery_key: dkey,
                message: e.to_string(),
            }),
        }
    }
}

/// Verify a fork proof against the committed log (`MerkleTree.reorg`).
fn verify_reorg<S: LogStore>(
    log: &mut Log<S>,
    data: &Data,
) -> Result<peerhost_log::Reorg, CoreError> {
    let store = log.view.store_mut();
    let label = store.label();
    let verify_error = |source| CoreError::Verify {
        log: label.clone(),
        source: Box::new(source),
    };
    let verifier = match store.verifier() {
        Some(v) => v.clone(),
        None => Verifier::resolve(store.key(), None, data.manifest.as_ref())
            .map_err(|e| verify_error(peerhost_log::VerifyError::InvalidManifest(e)))?,
    };
    let tree = store.tree().clone();
    tree.verify_reorg(data, &verifier, &mut Nodes(store))
        .map_err(verify_error)
}

/// Whether `data` answers `req` (lib/replicator.js `_matchingRequest`).
fn matches_request(req: &Request, data: &Data) -> bool {
    if let Some(b) = &data.block {
        if req.block.is_none_or(|r| r.index != b.index) {
            return false;
        }
    }
    if let Some(h) = &data.hash {
        if req.hash.is_none_or(|r| r.index != h.index) {
            return false;
        }
    }
    if let Some(s) = &data.seek {
        if req.seek.is_none_or(|r| r.bytes != s.bytes) {
            return false;
        }
    }
    if data.upgrade.is_some() && req.upgrade.is_none() {
        return false;
    }
    true
}
