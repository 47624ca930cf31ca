//! [`Replicator`]: many logs replicated with many peers, one `hypercore/alpha` channel per
//! (connection, log), mirroring hypercore 11's `lib/replicator.js` on the wire. A thin
//! composition of smaller state machines:
//!
//! - per log ([`Log`]): its [`LogView`] (the store's committed state plus what is verified and
//!   not committed, `view.rs`), its [`Download`] (wanted ranges and requests in flight,
//!   `download.rs`) and its open channels;
//! - per connection ([`Conns`], `conn.rs`): protomux, one [`crate::peer::Peer`] per channel
//!   (`peer.rs`), the remote's requests waiting for answers (`serve.rs`);
//! - pairing of channels (`pairing.rs`), what we announce (`announce.rs`), the scheduler
//!   (`scheduler.rs`).
//!
//! Here: the public API and the glue between them; `input.rs` dispatches what a connection
//! sends, `commits.rs` hands verified data to the driver to commit and takes it back.

mod commits;
mod input;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use peerhost_ids::DiscoveryKey;
use peerhost_store::Core;

use crate::announce;
use crate::config::{Config, ConnectionInfo};
use crate::conn::Conns;
use crate::download::Download;
use crate::error::{CommandError, Error};
use crate::event::{Event, Events};
use crate::messages::{Cancel, Message};
use crate::pairing;
use crate::peer::{Kind, PeerRef};
use crate::scheduler;
use crate::serve::{self, ANSWER_BATCH, MAX_BATCHED_ANSWERS};
use crate::store::LogStore;
use crate::view::LogView;

pub use commits::Commit;

/// A connection's id in the replicator.
pub type ConnId = u64;

/// One log: its view, its downloads, its open channels.
#[derive(Debug)]
pub(crate) struct Log<S> {
    pub(crate) view: LogView<S>,
    pub(crate) download: Download,
    /// Channels open (capability checked) for it.
    pub(crate) peers: BTreeSet<PeerRef>,
    /// We open its channel on every connection (we are downloading it).
    pub(crate) active: bool,
    /// Follow new appends (open-ended ranges keep growing).
    pub(crate) live: bool,
}

impl<S> Log<S> {
    /// Whether we tell peers we are downloading it.
    pub(crate) fn is_downloading(&self) -> bool {
        self.active || self.download.is_busy()
    }
}

/// Many logs replicated over many connections, sans-IO: no sockets, no clock, no tasks, and
/// no file writes of its own — verified data goes to the driver as [`Commit`]s.
///
/// Generic over the log store: [`Core`] (on disk) by default, or
/// [`MemoryLog`](crate::MemoryLog).
///
/// # Drain contract
/// 1. **Connections.** When a secret stream is established call
///    [`add_connection`](Self::add_connection); hand every decrypted message to
///    [`handle_input`](Self::handle_input), or all those one read produced to
///    [`handle_inputs`](Self::handle_inputs) (scheduling then runs once); when the stream
///    ends or fails call [`remove_connection`](Self::remove_connection).
/// 2. **Commits.** After any call, take every [`poll_commit`](Self::poll_commit), run it
///    ([`Commit::run`]: blocking file I/O) **without** holding the lock that guards the
///    replicator, and hand it back with [`handle_committed`](Self::handle_committed). Blocks
///    are served, announced and reported ([`Event::Downloaded`]) only from then on.
/// 3. **Output.** For every connection in [`take_woken`](Self::take_woken) (and whenever the
///    transport can take more), pull [`poll_transmit`](Self::poll_transmit) until it returns
///    `None` or the transport is full; each frame is one secret-stream message. Stop reading
///    from a connection while [`wants_input`](Self::wants_input) is false.
/// 4. **Errors.** When [`connection_error`](Self::connection_error) is `Some`, close the
///    transport and call `remove_connection`.
/// 5. **Time.** Call [`handle_timeout`](Self::handle_timeout) at
///    [`poll_timeout`](Self::poll_timeout).
/// 6. **Events.** Drain [`poll_event`](Self::poll_event).
///
/// Never panics on any input.
#[derive(Debug)]
pub struct Replicator<S: LogStore = Core> {
    config: Config,
    /// Boxed: a mirror holds tens of thousands of logs, and the map's empty slots (up to
    /// half of it after it doubles) would each cost a whole `Log` inline, not a pointer.
    logs: HashMap<DiscoveryKey, Box<Log<S>>>,
    conns: Conns,
    events: Events,
    /// Commits begun, waiting for the driver.
    commits: VecDeque<Commit<S::Commit>>,
    /// Logs that verified data in the current `handle_inputs`: committed and scheduled at its
    /// end.
    touched: BTreeSet<DiscoveryKey>,
}

impl<S: LogStore> Replicator<S> {
    /// An empty replicator.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            logs: HashMap::new(),
            conns: Conns::new(),
            events: Events::default(),
            commits: VecDeque::new(),
            touched: BTreeSet::new(),
        }
    }

    // ------------------------------------------------------------------------------ logs

    /// Replicate `core`. With `active`, we open its channel on every connection (we want its
    /// blocks, as corestore opens channels for cores with active sessions); otherwise we only
    /// answer a peer that opens it (a peer that does not know the discovery key learns
    /// nothing). Returns its discovery key.
    pub fn add_core(&mut self, mut core: S, active: bool, now: Instant) -> DiscoveryKey {
        let _ = now;
        let dkey = core.discovery_key();
        let key = core.key();
        let length = core.length();
        let contiguous = core
            .next_missing(0, length)
            .ok()
            .flatten()
            .unwrap_or(length);
        let log = Log {
            view: LogView::new(core),
            download: Download::new(contiguous),
            peers: BTreeSet::new(),
            active,
            live: false,
        };
        self.logs.insert(dkey, Box::new(log));
        if active {
            for conn in self.conns.ids() {
                pairing::open(
                    &mut self.conns,
                    conn,
                    dkey,
                    &key,
                    self.config.max_remote_runs,
                );
            }
        }
        dkey
    }

    /// The logs replicated here.
    pub fn discovery_keys(&self) -> impl Iterator<Item = &DiscoveryKey> {
        self.logs.keys()
    }

    /// The log, to read from: its committed state (what verified and is not committed yet is
    /// not visible here).
    pub fn core(&self, dkey: &DiscoveryKey) -> Option<&S> {
        self.logs.get(dkey).map(|l| l.view.store())
    }

    /// The log, mutably (reads need `&mut`). Changing its head behind the replicator's back is
    /// not supported: use [`append`](Self::append) and [`truncate`](Self::truncate).
    pub fn core_mut(&mut self, dkey: &DiscoveryKey) -> Option<&mut S> {
        self.logs.get_mut(dkey).map(|l| l.view.store_mut())
    }

    /// Download blocks `start..end` (`None`: to the length, and with [`set_live`](Self::set_live)
    /// every block appended later).
    pub fn download(
        &mut self,
        dkey: &DiscoveryKey,
        start: u64,
        end: Option<u64>,
        now: Instant,
    ) -> Result<(), CommandError> {
        let log = self
            .logs
            .get_mut(dkey)
            .ok_or(CommandError::UnknownLog(*dkey))?;
        log.download.want(start, end);
        self.update(dkey, now);
        Ok(())
    }

    /// Make a log added passively active (or back): an active log has its channel opened on
    /// every connection, now and later (see [`add_core`](Self::add_core)).
    pub fn set_active(&mut self, dkey: &DiscoveryKey, active: bool, now: Instant) {
        let Some(log) = self.logs.get_mut(dkey) else {
            return;
        };
        let was = std::mem::replace(&mut log.active, active);
        if active && !was {
            let key = log.view.store().key();
            for conn in self.conns.ids() {
                pairing::open(
                    &mut self.conns,
                    conn,
                    *dkey,
                    &key,
                    self.config.max_remote_runs,
                );
            }
        }
        self.update(dkey, now);
    }

    /// Whether the log is replicated here and active.
    pub fn is_active(&self, dkey: &DiscoveryKey) -> bool {
        self.logs.get(dkey).is_some_and(|l| l.active)
    }

    /// Stop downloading the blocks of a log: forget every wanted range, cancel the block
    /// requests in flight (a `cancel` each; an answer that still comes is ignored as
    /// unrequested) and drop verified blocks not handed to a commit yet, so nothing more is
    /// stored than the commit in flight. The head is still followed if the log is live, and
    /// the log is still served. Used by a node whose disk quota is full.
    pub fn stop_download(&mut self, dkey: &DiscoveryKey, now: Instant) {
        let Some(log) = self.logs.get_mut(dkey) else {
            return;
        };
        log.download.ranges.clear();
        log.view.drop_staged_blocks();
        let inflight: Vec<(u64, PeerRef)> = log.download.blocks.drain().collect();
        for (index, r) in inflight {
            self.cancel(r, |kind| kind == Kind::Block(index));
        }
        self.update(dkey, now);
    }

    /// Cancel our requests to `r` whose kind `which` picks.
    fn cancel(&mut self, r: PeerRef, which: impl Fn(Kind) -> bool) {
        let Some(p) = self.conns.peer(r) else {
            return;
        };
        let ids: Vec<u64> = p
            .inflight
            .iter()
            .filter(|(_, i)| which(i.kind))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if self.conns.take_inflight(r, id).is_some() {
                self.conns.send(r, &Message::Cancel(Cancel { request: id }));
            }
        }
    }

    /// Keep upgrading to the longest signed head any peer offers.
    pub fn set_live(&mut self, dkey: &DiscoveryKey, live: bool, now: Instant) {
        if let Some(log) = self.logs.get_mut(dkey) {
            log.live = live;
        }
        self.update(dkey, now);
    }

    /// Append blocks to a log we write (durably: the store's own commit, under the caller's
    /// lock, as an append must be durable when it returns), and tell every peer.
    pub fn append<B: AsRef<[u8]>>(
        &mut self,
        dkey: &DiscoveryKey,
        blocks: &[B],
        now: Instant,
    ) -> Result<u64, CommandError> {
        if !self.logs.contains_key(dkey) {
            return Err(CommandError::UnknownLog(*dkey));
        }
        self.settle(*dkey, now);
        let log = self
            .logs
            .get_mut(dkey)
            .ok_or(CommandError::UnknownLog(*dkey))?;
        let store = log.view.store_mut();
        let was_contiguous = log.download.contiguous == store.length();
        let refs: Vec<&[u8]> = blocks.iter().map(AsRef::as_ref).collect();
        let length = store.append(&refs)?;
        log.view.resync();
        if was_contiguous {
            log.download.contiguous = length;
        }
        self.head_changed(*dkey, now);
        Ok(length)
    }

    /// Truncate a log we write to `length` (a new fork), and tell every peer.
    pub fn truncate(
        &mut self,
        dkey: &DiscoveryKey,
        length: u64,
        now: Instant,
    ) -> Result<(), CommandError> {
        if !self.logs.contains_key(dkey) {
            return Err(CommandError::UnknownLog(*dkey));
        }
        self.settle(*dkey, now);
        let log = self
            .logs
            .get_mut(dkey)
            .ok_or(CommandError::UnknownLog(*dkey))?;
        let old = log.view.store().length();
        log.view.store_mut().truncate(length)?;
        log.view.resync();
        log.download.contiguous = log.download.contiguous.min(length);
        log.download.reset_cursors();
        announce::truncated(log, &mut self.conns, old, length);
        self.head_changed(*dkey, now);
        Ok(())
    }

    /// Whether the log knows the newest head its peers offer: at least one peer has sent its
    /// sync, no peer on our fork offers a longer head that we have not taken (or is about
    /// to), and no upgrade, reorg or commit of a new head is under way (JS `update()`
    /// resolving).
    pub fn is_synced(&self, dkey: &DiscoveryKey) -> bool {
        let Some(log) = self.logs.get(dkey) else {
            return false;
        };
        let store = log.view.store();
        let (length, fork) = (store.length(), store.fork());
        if log.download.head_in_flight() || log.view.length() != length {
            return false;
        }
        let mut any = false;
        for &r in &log.peers {
            let Some(p) = self.conns.peer(r) else {
                continue;
            };
            let Some(s) = p.remote else { continue };
            any = true;
            if s.fork == fork && s.length > length {
                // It may still upgrade us once it has seen our length.
                if s.can_upgrade || p.length_acked != length {
                    return false;
                }
            }
            if s.fork > fork && !store.writable() {
                return false;
            }
        }
        any
    }

    /// Whether every wanted range is stored, committed (open-ended ranges up to the current
    /// length).
    pub fn is_complete(&mut self, dkey: &DiscoveryKey) -> bool {
        let Some(log) = self.logs.get_mut(dkey) else {
            return false;
        };
        let uncommitted = log.view.has_uncommitted();
        let store = log.view.store_mut();
        let length = store.length();
        log.download.ranges.iter().all(|r| {
            let end = r.end.unwrap_or(length);
            !uncommitted
                && end <= length
                && matches!(store.next_missing(r.cursor.max(r.start), end), Ok(None))
        })
    }

    /// Channels open (capability checked) for this log.
    pub fn peer_count(&self, dkey: &DiscoveryKey) -> usize {
        self.logs.get(dkey).map_or(0, |l| l.peers.len())
    }

    // ------------------------------------------------------------------------ connections

    /// A secret stream is established: start protomux on it and open the channels of the
    /// active logs.
    pub fn add_connection(&mut self, info: ConnectionInfo, now: Instant) -> ConnId {
        let _ = now;
        let id = self.conns.add(info, self.config.mux.clone());
        let active: Vec<(DiscoveryKey, peerhost_ids::Key)> = self
            .logs
            .iter()
            .filter(|(_, l)| l.active)
            .map(|(d, l)| (*d, l.view.store().key()))
            .collect();
        self.conns.cork(id);
        for (dkey, key) in active {
            pairing::open(&mut self.conns, id, dkey, &key, self.config.max_remote_runs);
        }
        self.conns.uncork(id);
        id
    }

    /// The connection ended (or the driver gave up on it): forget it, move its requests to
    /// other peers.
    pub fn remove_connection(&mut self, conn: ConnId, now: Instant) {
        let Some(mut c) = self.conns.remove(conn) else {
            return;
        };
        c.mux.handle_stream_closed();
        let mut touched = Vec::new();
        for (channel, peer) in c.peers.drain() {
            let r = PeerRef { conn, channel };
            if let Some(log) = self.logs.get_mut(&peer.dkey) {
                log.peers.remove(&r);
                log.download.release_peer(r, &peer);
            }
            if peer.opened {
                self.events.push(Event::ChannelClosed {
                    conn,
                    discovery_key: peer.dkey,
                });
            }
            touched.push(peer.dkey);
        }
        for dkey in touched {
            self.update(&dkey, now);
        }
    }

    /// Why the replicator ended this connection, if it did.
    pub fn connection_error(&self, conn: ConnId) -> Option<&Error> {
        self.conns.get(conn).and_then(|c| c.error.as_ref())
    }

    /// Whether the driver should read more from this connection: false while the remote's
    /// requests pile up unanswered (it is not reading our answers) or protomux is paused.
    pub fn wants_input(&self, conn: ConnId) -> bool {
        self.conns.get(conn).is_some_and(|c| {
            c.error.is_none()
                && !c.mux.is_paused()
                && c.answers.len() < self.config.pause_pending_requests
        })
    }

    /// Connections with new frames to send or a new error since the last call.
    pub fn take_woken(&mut self) -> Vec<ConnId> {
        self.conns.take_woken()
    }

    /// The next frame (one secret-stream message) for `conn`. Answers to the remote's requests
    /// are produced here, one per call once earlier frames are out (many small ones batched
    /// into one frame), so call it only as fast as the transport drains.
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        loop {
            let c = self.conns.get_mut(conn)?;
            if c.error.is_some() {
                return None;
            }
            if let Some(frame) = c.mux.poll_transmit() {
                return Some(frame);
            }
            // Small answers (say 1 KiB blocks) go out many to a protomux batch frame, so one
            // secret-stream message carries up to `ANSWER_BATCH` bytes of them: far fewer
            // frames to encrypt here and to decrypt and handle on the other side.
            let (channel, request) = c.answers.pop()?;
            let batch = c.answers.small && !c.answers.is_empty();
            if batch {
                c.mux.cork();
            }
            c.answers.start_batch();
            let mut next = Some((channel, request));
            let mut answers = 0;
            while let Some((channel, request)) = next.take() {
                answers += 1;
                if !self.answer(PeerRef { conn, channel }, &request) {
                    break;
                }
                let Some(c) = self.conns.get_mut(conn) else {
                    break;
                };
                let more = batch
                    && answers < MAX_BATCHED_ANSWERS
                    && c.answers.small
                    && c.answers.answered < ANSWER_BATCH;
                if more {
                    next = c.answers.pop();
                }
            }
            if batch {
                self.conns.uncork(conn);
            }
        }
    }

    /// Answer one request from `r`; false when that ended the connection.
    fn answer(&mut self, r: PeerRef, request: &peerhost_log::Request) -> bool {
        let Some(dkey) = self.conns.peer(r).map(|p| p.dkey) else {
            return true;
        };
        let Some(log) = self.logs.get_mut(&dkey) else {
            return true;
        };
        let store = log.view.store_mut();
        let answered = serve::answer(
            &mut self.conns,
            r,
            store,
            request,
            &self.config,
            &mut self.events,
        );
        match answered {
            Ok(()) => true,
            Err(e) => {
                self.fail(r.conn, e, Instant::now());
                false
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .iter()
            .flat_map(|(_, c)| c.peers.values())
            .flat_map(|p| p.inflight.values())
            .map(|i| i.deadline)
            .min()
    }

    /// Let request timers fire: each request past its deadline is cancelled and asked of
    /// another peer; a connection with too many is dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (&conn, c) in self.conns.iter() {
            for (&channel, p) in &c.peers {
                for (&id, i) in &p.inflight {
                    if i.deadline <= now {
                        expired.push((PeerRef { conn, channel }, id));
                    }
                }
            }
        }
        let mut touched = HashSet::new();
        for (r, id) in expired {
            let Some(inflight) = self.conns.take_inflight(r, id) else {
                continue;
            };
            let Some(dkey) = self.conns.peer(r).map(|p| p.dkey) else {
                continue;
            };
            tracing::debug!(conn = r.conn, log = %dkey, request = id, "request timed out");
            self.conns.send(r, &Message::Cancel(Cancel { request: id }));
            if let Some(log) = self.logs.get_mut(&dkey) {
                log.download.release(r, inflight.kind);
            }
            // Do not ask this peer for the same block again right away.
            if let (Kind::Block(i), Some(p)) = (inflight.kind, self.conns.peer_mut(r)) {
                p.forget_block(i);
            }
            let Some(c) = self.conns.get_mut(r.conn) else {
                continue;
            };
            c.timeouts += 1;
            let timeouts = c.timeouts;
            if timeouts >= self.config.max_timeouts {
                self.fail(r.conn, Error::TimedOut { count: timeouts }, now);
            }
            touched.insert(dkey);
        }
        for dkey in touched {
            self.update(&dkey, now);
        }
        for conn in self.conns.ids() {
            self.unstarve(conn, now);
        }
    }

    /// The scheduler: issue the requests log `dkey` needs now (see `scheduler.rs`).
    pub fn update(&mut self, dkey: &DiscoveryKey, now: Instant) {
        if let Some(log) = self.logs.get_mut(dkey) {
            scheduler::update(log, *dkey, &mut self.conns, &self.config, now);
        }
    }

    // --------------------------------------------------------------------------- internals

    /// Schedule the logs that waited for room on `conn`, oldest first, while it has room.
    fn unstarve(&mut self, conn: ConnId, now: Instant) {
        let max = self.config.max_requests_per_connection;
        while let Some(dkey) = self.conns.get_mut(conn).and_then(|c| c.unstarve(max)) {
            self.update(&dkey, now);
        }
    }

    /// End `conn` for `error`: release everything its channels held, reschedule their logs.
    fn fail(&mut self, conn: ConnId, error: Error, now: Instant) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.error.is_some() {
            return;
        }
        tracing::debug!(conn, %error, "ending connection");
        c.error = Some(error);
        c.answers.clear();
        c.mux.handle_stream_closed();
        while c.mux.poll_event().is_some() {}
        let peers: Vec<_> = c.peers.drain().collect();
        c.channels.clear();
        c.requests_out = 0;
        let mut touched = Vec::new();
        for (channel, peer) in peers {
            let r = PeerRef { conn, channel };
            if let Some(log) = self.logs.get_mut(&peer.dkey) {
                log.peers.remove(&r);
                log.download.release_peer(r, &peer);
            }
            touched.push(peer.dkey);
        }
        self.conns.wake(conn);
        self.events.push(Event::ConnectionFailed { conn });
        for dkey in touched {
            self.update(&dkey, now);
        }
    }

    /// Our committed head changed: report it, sync every peer, reschedule.
    fn head_changed(&mut self, dkey: DiscoveryKey, now: Instant) {
        let Some(log) = self.logs.get_mut(&dkey) else {
            return;
        };
        let store = log.view.store();
        self.events.push(Event::Head {
            discovery_key: dkey,
            length: store.length(),
            fork: store.fork(),
        });
        announce::head_changed(log, &mut self.conns);
        self.update(&dkey, now);
    }
}
