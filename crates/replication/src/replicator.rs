//! [`Replicator`]: many logs replicated with many peers, one `hypercore/alpha` channel per
//! (connection, log), mirroring hypercore 11's `lib/replicator.js` on the wire.
//!
//! Ownership and flow:
//! - the replicator owns every [`Core`] it replicates (by discovery key) and, per connection,
//!   a protomux [`Mux`] and one [`Peer`] per channel;
//! - the driver hands it each decrypted stream message ([`Replicator::handle_input`]), lets
//!   timers fire ([`Replicator::handle_timeout`]), and pulls the frames to encrypt and send
//!   ([`Replicator::poll_transmit`]) at the pace its transport accepts them;
//! - requests from a peer wait in a bounded per-connection queue and are answered lazily from
//!   `poll_transmit`, so a peer that does not read its answers gets no more of them and, past
//!   a bound, is disconnected;
//! - after every change the scheduler ([`Replicator::update`]) issues requests: the upgrade,
//!   fork proofs, then missing blocks of the wanted ranges, spread over the peers that have
//!   them, at most `Config::max_inflight` per peer and log (more for small blocks, see
//!   `Config::max_inflight_bytes`);
//! - a peer that sends data that does not verify, or breaks the protocol, loses its
//!   connection ([`Replicator::connection_error`]); one that leaves requests unanswered past
//!   `Config::request_timeout` has them moved to other peers, and too many times loses it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use peerhost_encoding::CompactEncoding;
use peerhost_ids::DiscoveryKey;
use peerhost_log::proof::{RequestBlock, RequestUpgrade};
use peerhost_log::{Data, NodeSource, Reorg, Request, flat};
use peerhost_protomux::{ChannelHandle, Event as MuxEvent, Mux, OpenOptions};
use peerhost_store::{Core, CoreError};

use crate::error::{CommandError, Error};
use crate::inflight::InflightBlocks;
use crate::messages::{
    self, ALIAS, Bitfield, Cancel, Handshake, Message, NoData, PROTOCOL, Range, Sync, Want,
    capability, reason,
};
use crate::rangeset::RangeSet;

/// Blocks per `want` batch (lib/wants.js `BATCH` in its compat mode: 65536 words of 32 bits).
pub const WANT_BATCH: u64 = 1 << 21;

/// A connection's id in the replicator.
pub type ConnId = u64;

/// Blocks below `length - LAST_BLOCKS` are announced to a peer only if it asked for them
/// (lib/replicator.js `LAST_BLOCKS`).
const LAST_BLOCKS: u64 = 256;

/// Local `want` batches per peer (lib/wants.js `MAX`).
const MAX_WANTS: usize = 512;

/// Remote `want` ranges remembered per peer before we treat it as wanting everything.
const MAX_REMOTE_WANTS: usize = 512;

/// Candidate blocks the scheduler looks at per log and update, so one update stays cheap.
const MAX_SCAN: usize = 4096;

/// Limits and knobs. The defaults follow JS where JS has a number, and are documented bounds
/// where it has none.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Requests in flight per peer and log (JS: `min(512, 16 * 3)` = 48 over TCP): the least
    /// window, whatever the block size.
    pub max_inflight: usize,
    /// Bytes of blocks in flight per peer and log that the window may grow to for small blocks
    /// (the log's average block size sets how many requests that is; default 2 MiB), up to
    /// [`Config::max_inflight_blocks`]. 48 requests of 1 KiB blocks keep too little in flight to
    /// fill a fast link; of 64 KiB blocks, enough. It also bounds what a JS peer answers in
    /// one protomux batch (it batches the requests it has queued).
    pub max_inflight_bytes: u64,
    /// The most requests in flight per peer and log however small the blocks (JS's
    /// `inflightRange` upper bound, 512).
    pub max_inflight_blocks: usize,
    /// A request unanswered for this long is cancelled and asked of another peer.
    pub request_timeout: Duration,
    /// Timed-out requests a connection may accumulate before it is dropped as too slow.
    pub max_timeouts: u32,
    /// Requests from a peer waiting for our answer; one more ends the connection. Reading
    /// stops well before (see `pause_pending_requests`); this bounds what one read may add.
    pub max_pending_requests: usize,
    /// Our requests in flight on one connection, all its logs together. A mirror of a thousand
    /// logs would otherwise have a window per log out at once (tens of thousands of requests),
    /// more than a serving peer queues: ours ends such a connection past
    /// `max_pending_requests`.
    pub max_requests_per_connection: usize,
    /// Above this many waiting requests [`Replicator::wants_input`] says stop reading.
    pub pause_pending_requests: usize,
    /// Invalid requests tolerated per connection (JS `MAX_INVALID_REQUESTS` = 64).
    pub max_invalid_requests: u32,
    /// The largest payload of the small messages (sync, request, cancel, noData, want, unwant,
    /// range); honest ones are under 100 bytes.
    pub max_message_len: usize,
    /// The most words of a `bitfield` message (JS sends at most 65536: one 2^21-bit segment).
    pub max_bitfield_words: usize,
    /// Runs of blocks remembered per peer and log (see `RangeSet`).
    pub max_remote_runs: usize,
    /// End the connection on a message type past the ten hypercore defines (JS ignores them).
    pub strict_message_types: bool,
    /// Hash every block we serve against its leaf before sending it (default on): a block
    /// damaged on our disk is then answered with `noData` and reported as a
    /// [`Event::StorageError`] instead of being sent for the peer to refuse. Off saves a
    /// BLAKE2b pass per block served (see `peerhost_store::Core::proof_with`).
    pub verify_uploads: bool,
    /// Limits of the protomux layer.
    pub mux: peerhost_protomux::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_inflight: 48,
            max_inflight_bytes: 2 << 20,
            max_inflight_blocks: 512,
            request_timeout: Duration::from_secs(20),
            max_timeouts: 8,
            max_pending_requests: 32768,
            max_requests_per_connection: 2048,
            pause_pending_requests: 2048,
            max_invalid_requests: 64,
            max_message_len: 4096,
            max_bitfield_words: 1 << 17,
            max_remote_runs: 4096,
            strict_message_types: true,
            verify_uploads: true,
            mux: peerhost_protomux::Config::default(),
        }
    }
}

/// What the driver knows about a connection once its secret stream is established.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// Whether we initiated the secret-stream handshake.
    pub is_initiator: bool,
    /// The 64-byte handshake hash (the capability binds to it).
    pub handshake_hash: [u8; 64],
    /// The remote's static public key.
    pub remote_public_key: [u8; 32],
}

/// What happened, drained with [`Replicator::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A channel opened and the remote proved it knows the key.
    ChannelOpened {
        /// The connection.
        conn: ConnId,
        /// The log.
        discovery_key: DiscoveryKey,
    },
    /// A channel closed (by either side, or with its connection).
    ChannelClosed {
        /// The connection.
        conn: ConnId,
        /// The log.
        discovery_key: DiscoveryKey,
    },
    /// A verified block was stored.
    Downloaded {
        /// The log.
        discovery_key: DiscoveryKey,
        /// Block index.
        index: u64,
        /// Its length.
        bytes: u64,
    },
    /// We answered a request with a block.
    Uploaded {
        /// The log.
        discovery_key: DiscoveryKey,
        /// Block index.
        index: u64,
        /// Its length.
        bytes: u64,
    },
    /// The log's signed head changed: a verified upgrade, an append, a truncate or a reorg.
    Head {
        /// The log.
        discovery_key: DiscoveryKey,
        /// The new length.
        length: u64,
        /// The new fork.
        fork: u64,
    },
    /// The replicator ended a connection: see [`Replicator::connection_error`]. Close the
    /// transport.
    ConnectionFailed {
        /// The connection.
        conn: ConnId,
    },
    /// Our own storage failed while replicating a log (not the peer's fault).
    StorageError {
        /// The log.
        discovery_key: DiscoveryKey,
        /// The error, rendered.
        message: String,
    },
}

/// A wanted range of blocks: `start..end`, or to the log's length when `end` is `None` (and
/// beyond, as it grows, when the log is live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    start: u64,
    end: Option<u64>,
    /// Blocks `start..cursor` are known to be stored (reset when the log is truncated).
    cursor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PeerRef {
    conn: ConnId,
    channel: ChannelHandle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Block(u64),
    Upgrade,
    Manifest,
    ForkProof,
    ReorgHash,
}

#[derive(Debug)]
struct Inflight {
    kind: Kind,
    request: Request,
    deadline: Instant,
}

#[derive(Debug)]
struct CoreState {
    core: Core,
    /// We open channels for it on every connection (we are downloading it).
    active: bool,
    /// Follow new appends: keep upgrading and fetch new blocks in open-ended ranges.
    live: bool,
    ranges: Vec<Wanted>,
    peers: BTreeSet<PeerRef>,
    inflight_blocks: InflightBlocks<PeerRef>,
    upgrade: Option<PeerRef>,
    manifest: Option<PeerRef>,
    fork_proof: Option<PeerRef>,
    reorg: Option<(Reorg, PeerRef)>,
    reorg_hash: Option<PeerRef>,
    /// Blocks `0..contiguous` are stored (cached; `Core::contiguous_length` scans).
    contiguous: u64,
}

/// One side of one channel: what we know of the remote for one log.
#[derive(Debug)]
struct Peer {
    dkey: DiscoveryKey,
    /// Both sides opened and the capability checked out.
    opened: bool,
    remote: Option<Sync>,
    /// Our length as the remote last acknowledged it (its sync's `remote_length`).
    length_acked: u64,
    /// Blocks `0..contig` the remote has (`range` from 0).
    contig: u64,
    /// Other blocks the remote has.
    has: RangeSet,
    inflight: HashMap<u64, Inflight>,
    next_id: u64,
    /// `want` batches sent.
    wants_sent: HashSet<u64>,
    /// `want` ranges received (start, end); `wants_all` past the bound.
    remote_wants: Vec<(u64, u64)>,
    wants_all: bool,
    /// The `can_upgrade` we last sent.
    sent_can_upgrade: bool,
    /// The length we last announced as fully contiguous (`range {0, n}`).
    signaled: u64,
}

impl Peer {
    fn new(dkey: DiscoveryKey, max_runs: usize) -> Self {
        Self {
            dkey,
            opened: false,
            remote: None,
            length_acked: 0,
            contig: 0,
            has: RangeSet::new(max_runs),
            inflight: HashMap::new(),
            next_id: 1,
            wants_sent: HashSet::new(),
            remote_wants: Vec::new(),
            wants_all: false,
            sent_can_upgrade: false,
            signaled: 0,
        }
    }

    fn remote_has(&self, index: u64) -> bool {
        index < self.contig || self.has.contains(index)
    }

    fn next_has(&self, from: u64) -> Option<u64> {
        if from < self.contig {
            return Some(from);
        }
        self.has.next_set(from)
    }

    fn wants(&self, index: u64) -> bool {
        self.wants_all
            || self
                .remote_wants
                .iter()
                .any(|&(s, e)| s <= index && index < e)
    }
}

#[derive(Debug)]
struct Conn {
    info: ConnectionInfo,
    mux: Mux,
    peers: HashMap<ChannelHandle, Peer>,
    channels: HashMap<DiscoveryKey, ChannelHandle>,
    /// Remote requests waiting for our answer, in order.
    pending: VecDeque<(ChannelHandle, Request)>,
    error: Option<Error>,
    timeouts: u32,
    invalid_requests: u32,
    /// Payload bytes of the answers made since `poll_transmit` last reset it.
    answered: usize,
    /// Our requests in flight on this connection, all logs together (the sum of its peers'
    /// `inflight`), kept under [`Config::max_requests_per_connection`].
    requests_out: usize,
    /// The last answer was small: batch the next ones into one protomux frame.
    small_answers: bool,
    /// Logs that had blocks to ask this connection for while it was at that cap, in order,
    /// each once: scheduled again as its requests are answered (`Replicator::unstarve`).
    starved: VecDeque<DiscoveryKey>,
    starved_set: HashSet<DiscoveryKey>,
}

/// Many logs replicated over many connections, sans-IO: no sockets, no clock, no tasks. It
/// reads and writes logs through [`Core`] (blocking file I/O).
///
/// # Drain contract
/// 1. **Connections.** When a secret stream is established call
///    [`add_connection`](Self::add_connection); hand every decrypted message to
///    [`handle_input`](Self::handle_input), or all those one read produced to
///    [`handle_inputs`](Self::handle_inputs) (their data is then stored with one commit); when
///    the stream ends or fails call
///    [`remove_connection`](Self::remove_connection).
/// 2. **Output.** After any call, for every connection in [`take_woken`](Self::take_woken) (and
///    whenever the transport can take more), pull [`poll_transmit`](Self::poll_transmit) until
///    it returns `None` or the transport is full; each frame is one secret-stream message.
///    Stop reading from a connection while [`wants_input`](Self::wants_input) is false.
/// 3. **Errors.** When [`connection_error`](Self::connection_error) is `Some`, close the
///    transport and call `remove_connection`.
/// 4. **Time.** Call [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
/// 5. **Events.** Drain [`poll_event`](Self::poll_event).
///
/// Never panics on any input.
#[derive(Debug)]
pub struct Replicator {
    config: Config,
    cores: HashMap<DiscoveryKey, CoreState>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    events: VecDeque<Event>,
    woken: BTreeSet<ConnId>,
    /// Answers to block requests received in this `handle_input`, verified and stored together
    /// at its end (or before anything else is handled).
    staged: Option<Staged>,
}

/// A run of `data` messages for one log, waiting for one commit.
#[derive(Debug)]
struct Staged {
    dkey: DiscoveryKey,
    items: Vec<(PeerRef, Kind, Data)>,
    bytes: usize,
}

/// An answer below this size makes the next answers go out batched.
const SMALL_ANSWER: usize = 16 * 1024;

/// Answer bytes batched into one protomux frame.
const ANSWER_BATCH: usize = 64 * 1024;

/// Answers batched into one protomux frame.
const MAX_BATCHED_ANSWERS: usize = 256;

/// Most `data` messages stored by one commit.
const MAX_STAGED: usize = 256;

/// Most block bytes held for one commit.
const MAX_STAGED_BYTES: usize = 1 << 20;

/// The longest event queue kept if the driver does not drain it (oldest dropped).
const MAX_EVENTS: usize = 1 << 16;

impl Replicator {
    /// An empty replicator.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            cores: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            events: VecDeque::new(),
            woken: BTreeSet::new(),
            staged: None,
        }
    }

    // ------------------------------------------------------------------------------ logs

    /// Replicate `core`. With `active`, we open its channel on every connection (we want its
    /// blocks, as corestore opens channels for cores with active sessions); otherwise we only
    /// answer a peer that opens it (a peer that does not know the discovery key learns
    /// nothing). Returns its discovery key.
    pub fn add_core(&mut self, mut core: Core, active: bool, now: Instant) -> DiscoveryKey {
        let dkey = core.discovery_key();
        let contiguous = core.contiguous_length().unwrap_or(0);
        self.cores.insert(
            dkey,
            CoreState {
                core,
                active,
                live: false,
                ranges: Vec::new(),
                peers: BTreeSet::new(),
                inflight_blocks: InflightBlocks::new(),
                upgrade: None,
                manifest: None,
                fork_proof: None,
                reorg: None,
                reorg_hash: None,
                contiguous,
            },
        );
        if active {
            let conns: Vec<ConnId> = self.conns.keys().copied().collect();
            for conn in conns {
                self.open_channel(conn, dkey);
            }
        }
        let _ = now;
        dkey
    }

    /// The logs replicated here.
    pub fn discovery_keys(&self) -> impl Iterator<Item = &DiscoveryKey> {
        self.cores.keys()
    }

    /// The log, to read from.
    pub fn core(&self, dkey: &DiscoveryKey) -> Option<&Core> {
        self.cores.get(dkey).map(|c| &c.core)
    }

    /// The log, mutably (reads need `&mut`). Changing its head behind the replicator's back is
    /// not supported: use [`append`](Self::append) and [`truncate`](Self::truncate).
    pub fn core_mut(&mut self, dkey: &DiscoveryKey) -> Option<&mut Core> {
        self.cores.get_mut(dkey).map(|c| &mut c.core)
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
        let cs = self
            .cores
            .get_mut(dkey)
            .ok_or(CommandError::UnknownLog(*dkey))?;
        cs.ranges.push(Wanted {
            start,
            end,
            cursor: start,
        });
        self.update(dkey, now);
        Ok(())
    }

    /// Make a log added passively active (or back): an active log has its channel opened on
    /// every connection, now and later (see [`add_core`](Self::add_core)).
    pub fn set_active(&mut self, dkey: &DiscoveryKey, active: bool, now: Instant) {
        let Some(cs) = self.cores.get_mut(dkey) else {
            return;
        };
        let was = std::mem::replace(&mut cs.active, active);
        if active && !was {
            let conns: Vec<ConnId> = self.conns.keys().copied().collect();
            for conn in conns {
                self.open_channel(conn, *dkey);
            }
        }
        self.update(dkey, now);
    }

    /// Whether the log is replicated here and active.
    pub fn is_active(&self, dkey: &DiscoveryKey) -> bool {
        self.cores.get(dkey).is_some_and(|c| c.active)
    }

    /// Stop downloading the blocks of a log: forget every wanted range and cancel the block
    /// requests in flight (a `cancel` each; an answer that still comes is ignored as
    /// unrequested, so nothing more is stored). The head is still followed if the log is live,
    /// and the log is still served. Used by a node whose disk quota is full.
    pub fn stop_download(&mut self, dkey: &DiscoveryKey, now: Instant) {
        let Some(cs) = self.cores.get_mut(dkey) else {
            return;
        };
        cs.ranges.clear();
        let inflight: Vec<(u64, PeerRef)> = cs.inflight_blocks.drain().collect();
        for (index, r) in inflight {
            let Some(c) = self.conns.get_mut(&r.conn) else {
                continue;
            };
            let Some(p) = c.peers.get_mut(&r.channel) else {
                continue;
            };
            let ids: Vec<u64> = p
                .inflight
                .iter()
                .filter(|(_, i)| i.kind == Kind::Block(index))
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                if p.inflight.remove(id).is_some() {
                    c.requests_out -= 1;
                }
            }
            for id in ids {
                send(
                    c,
                    &mut self.woken,
                    r,
                    &Message::Cancel(Cancel { request: id }),
                );
            }
        }
        self.update(dkey, now);
    }

    /// Keep upgrading to the longest signed head any peer offers.
    pub fn set_live(&mut self, dkey: &DiscoveryKey, live: bool, now: Instant) {
        if let Some(cs) = self.cores.get_mut(dkey) {
            cs.live = live;
        }
        self.update(dkey, now);
    }

    /// Append blocks to a log we write, and tell every peer.
    pub fn append<B: AsRef<[u8]>>(
        &mut self,
        dkey: &DiscoveryKey,
        blocks: &[B],
        now: Instant,
    ) -> Result<u64, CommandError> {
        let cs = self
            .cores
            .get_mut(dkey)
            .ok_or(CommandError::UnknownLog(*dkey))?;
        let was_contiguous = cs.contiguous == cs.core.length();
        let length = cs.core.append(blocks)?;
        if was_contiguous {
            cs.contiguous = length;
        }
        self.head_changed(dkey, now);
        Ok(length)
    }

    /// Truncate a log we write to `length` (a new fork), and tell every peer.
    pub fn truncate(
        &mut self,
        dkey: &DiscoveryKey,
        length: u64,
        now: Instant,
    ) -> Result<(), CommandError> {
        let cs = self
            .cores
            .get_mut(dkey)
            .ok_or(CommandError::UnknownLog(*dkey))?;
        let old = cs.core.length();
        cs.core.truncate(length)?;
        cs.contiguous = cs.contiguous.min(length);
        reset_cursors(cs);
        let peers: Vec<PeerRef> = cs.peers.iter().copied().collect();
        for r in peers {
            if let Some(conn) = self.conns.get_mut(&r.conn) {
                if let Some(p) = conn.peers.get_mut(&r.channel) {
                    p.signaled = p.signaled.min(length);
                }
                let drop = Range {
                    drop: true,
                    start: length,
                    length: old - length,
                };
                send(conn, &mut self.woken, r, &Message::Range(drop));
            }
        }
        self.head_changed(dkey, now);
        Ok(())
    }

    /// Whether the log knows the newest head its peers offer: at least one peer has sent its
    /// sync, and no peer on our fork offers a longer head that we have not taken (or is about
    /// to), and no upgrade or reorg is in flight (JS `update()` resolving).
    pub fn is_synced(&self, dkey: &DiscoveryKey) -> bool {
        let Some(cs) = self.cores.get(dkey) else {
            return false;
        };
        if cs.upgrade.is_some() || cs.fork_proof.is_some() || cs.reorg.is_some() {
            return false;
        }
        let (length, fork) = (cs.core.length(), cs.core.fork());
        let mut any = false;
        for r in &cs.peers {
            let Some(p) = self
                .conns
                .get(&r.conn)
                .and_then(|c| c.peers.get(&r.channel))
            else {
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
            if s.fork > fork && !cs.core.writable() {
                return false;
            }
        }
        any
    }

    /// Whether every wanted range is stored (open-ended ranges up to the current length).
    pub fn is_complete(&mut self, dkey: &DiscoveryKey) -> bool {
        let Some(cs) = self.cores.get_mut(dkey) else {
            return false;
        };
        let length = cs.core.length();
        cs.ranges.iter().all(|r| {
            let end = r.end.unwrap_or(length);
            end <= length && matches!(cs.core.next_missing(r.cursor.max(r.start), end), Ok(None))
        })
    }

    /// Channels open (capability checked) for this log.
    pub fn peer_count(&self, dkey: &DiscoveryKey) -> usize {
        self.cores.get(dkey).map_or(0, |c| c.peers.len())
    }

    // ------------------------------------------------------------------------ connections

    /// A secret stream is established: start protomux on it and open the channels of the
    /// active logs.
    pub fn add_connection(&mut self, info: ConnectionInfo, now: Instant) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        let mut mux = Mux::new(self.config.mux.clone());
        mux.pair(PROTOCOL, None);
        mux.pair(ALIAS, None);
        self.conns.insert(
            id,
            Conn {
                info,
                mux,
                peers: HashMap::new(),
                channels: HashMap::new(),
                pending: VecDeque::new(),
                error: None,
                timeouts: 0,
                invalid_requests: 0,
                answered: 0,
                small_answers: false,
                requests_out: 0,
                starved: VecDeque::new(),
                starved_set: HashSet::new(),
            },
        );
        let active: Vec<DiscoveryKey> = self
            .cores
            .iter()
            .filter(|(_, c)| c.active)
            .map(|(k, _)| *k)
            .collect();
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.mux.cork();
        }
        for dkey in active {
            self.open_channel(id, dkey);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.mux.uncork();
        }
        self.woken.insert(id);
        let _ = now;
        id
    }

    /// The connection ended (or the driver gave up on it): forget it, move its requests to
    /// other peers.
    pub fn remove_connection(&mut self, conn: ConnId, now: Instant) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        c.mux.handle_stream_closed();
        let mut touched = Vec::new();
        for (channel, peer) in c.peers.drain() {
            let dkey = peer.dkey;
            let r = PeerRef { conn, channel };
            if let Some(cs) = self.cores.get_mut(&dkey) {
                release_peer(cs, r, &peer);
            }
            if peer.opened {
                self.push_event(Event::ChannelClosed {
                    conn,
                    discovery_key: dkey,
                });
            }
            touched.push(dkey);
        }
        self.woken.remove(&conn);
        for dkey in touched {
            self.update(&dkey, now);
        }
    }

    /// Why the replicator ended this connection, if it did.
    pub fn connection_error(&self, conn: ConnId) -> Option<&Error> {
        self.conns.get(&conn).and_then(|c| c.error.as_ref())
    }

    /// Whether the driver should read more from this connection: false while the remote's
    /// requests pile up unanswered (it is not reading our answers) or protomux is paused.
    pub fn wants_input(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            c.error.is_none()
                && !c.mux.is_paused()
                && c.pending.len() < self.config.pause_pending_requests
        })
    }

    /// Connections with new frames to send or a new error since the last call.
    pub fn take_woken(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.woken).into_iter().collect()
    }

    /// The next frame (one secret-stream message) for `conn`. Answers to the remote's requests
    /// are produced here, one per call once earlier frames are out, so call it only as fast as
    /// the transport drains.
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        loop {
            let c = self.conns.get_mut(&conn)?;
            if c.error.is_some() {
                return None;
            }
            if let Some(frame) = c.mux.poll_transmit() {
                return Some(frame);
            }
            let (channel, request) = c.pending.pop_front()?;
            // Small answers (say 1 KiB blocks) go out many to a protomux batch frame, so one
            // secret-stream message carries up to `ANSWER_BATCH` bytes of them: far fewer
            // frames to encrypt here and to decrypt and handle on the other side.
            let batch = c.small_answers && !c.pending.is_empty();
            if batch {
                c.mux.cork();
            }
            c.answered = 0;
            self.answer(conn, channel, &request);
            let mut answers = 1;
            while batch && answers < MAX_BATCHED_ANSWERS {
                let c = self.conns.get_mut(&conn)?;
                if c.error.is_some() || !c.small_answers || c.answered >= ANSWER_BATCH {
                    break;
                }
                answers += 1;
                let Some((channel, request)) = c.pending.pop_front() else {
                    break;
                };
                self.answer(conn, channel, &request);
            }
            if batch {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.mux.uncork();
                }
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .flat_map(|c| c.peers.values())
            .flat_map(|p| p.inflight.values())
            .map(|i| i.deadline)
            .min()
    }

    /// Let request timers fire: each request past its deadline is cancelled and asked of
    /// another peer; a connection with too many is dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (&conn, c) in &self.conns {
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
            let Some(c) = self.conns.get_mut(&r.conn) else {
                continue;
            };
            let Some(p) = c.peers.get_mut(&r.channel) else {
                continue;
            };
            let Some(inflight) = p.inflight.remove(&id) else {
                continue;
            };
            c.requests_out -= 1;
            let dkey = p.dkey;
            tracing::debug!(conn = r.conn, log = %dkey, request = id, "request timed out");
            send(
                c,
                &mut self.woken,
                r,
                &Message::Cancel(Cancel { request: id }),
            );
            c.timeouts += 1;
            let timeouts = c.timeouts;
            if let Some(cs) = self.cores.get_mut(&dkey) {
                release_request(cs, r, inflight.kind);
            }
            // Do not ask this peer for the same block again right away.
            if let (Kind::Block(i), Some(p)) = (inflight.kind, c.peers.get_mut(&r.channel)) {
                forget_block(p, i);
            }
            if timeouts >= self.config.max_timeouts {
                self.fail(r.conn, Error::TimedOut { count: timeouts }, now);
            }
            touched.insert(dkey);
        }
        for dkey in touched {
            self.update(&dkey, now);
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.unstarve(conn, now);
        }
    }

    /// Handle one decrypted stream message (one protomux frame) from `conn`. On a protocol
    /// violation the connection fails ([`connection_error`](Self::connection_error)).
    pub fn handle_input(&mut self, conn: ConnId, frame: &[u8], now: Instant) {
        self.handle_inputs(conn, &[frame], now);
    }

    /// [`handle_input`](Self::handle_input) for several messages from `conn` in order (say all
    /// those one transport read decrypted): answers to our block requests among them are
    /// verified one by one and stored with one commit, and scheduling runs once. Stops at the
    /// first protocol violation.
    pub fn handle_inputs<F: AsRef<[u8]>>(&mut self, conn: ConnId, frames: &[F], now: Instant) {
        for frame in frames {
            let Some(c) = self.conns.get_mut(&conn) else {
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
        self.flush_staged(now);
        self.unstarve(conn, now);
    }

    /// Schedule the logs that waited for room on `conn`, oldest first, while it has room.
    fn unstarve(&mut self, conn: ConnId, now: Instant) {
        let max = self.config.max_requests_per_connection;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.requests_out >= max {
                return;
            }
            let Some(dkey) = c.starved.pop_front() else {
                return;
            };
            c.starved_set.remove(&dkey);
            self.update(&dkey, now);
        }
    }

    // --------------------------------------------------------------------------- internals

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn fail(&mut self, conn: ConnId, error: Error, now: Instant) {
        // What the connection sent before the violation is handled first.
        self.flush_staged(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.error.is_some() {
            return;
        }
        tracing::debug!(conn, %error, "ending connection");
        c.error = Some(error);
        c.pending.clear();
        c.mux.handle_stream_closed();
        while c.mux.poll_event().is_some() {}
        let peers: Vec<(ChannelHandle, Peer)> = c.peers.drain().collect();
        c.channels.clear();
        let mut touched = Vec::new();
        for (channel, peer) in peers {
            let r = PeerRef { conn, channel };
            if let Some(cs) = self.cores.get_mut(&peer.dkey) {
                release_peer(cs, r, &peer);
            }
            touched.push(peer.dkey);
        }
        self.woken.insert(conn);
        self.push_event(Event::ConnectionFailed { conn });
        for dkey in touched {
            self.update(&dkey, now);
        }
    }

    fn open_channel(&mut self, conn: ConnId, dkey: DiscoveryKey) {
        let Some(cs) = self.cores.get(&dkey) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.error.is_some() || c.channels.contains_key(&dkey) {
            return;
        }
        let hs = Handshake {
            seeks: true,
            capability: capability(c.info.is_initiator, &cs.core.key(), &c.info.handshake_hash),
        };
        let hs = peerhost_encoding::to_vec(&hs);
        let opts = OpenOptions::new(PROTOCOL)
            .aliases(&[ALIAS])
            .id(Some(&dkey.0))
            .handshake(&hs);
        match c.mux.open_with(opts) {
            Ok(ch) => {
                c.channels.insert(dkey, ch);
                c.peers
                    .insert(ch, Peer::new(dkey, self.config.max_remote_runs));
                self.woken.insert(conn);
            }
            Err(e) => tracing::debug!(conn, log = %dkey, error = %e, "cannot open channel"),
        }
    }

    fn drain_mux(&mut self, conn: ConnId, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.error.is_some() {
                return;
            }
            let Some(ev) = c.mux.poll_event() else {
                break;
            };
            self.woken.insert(conn);
            if !matches!(
                ev,
                MuxEvent::Message {
                    message_type: 3,
                    ..
                }
            ) {
                // Only a run of `data` messages is stored together; anything else sees it
                // stored first, as if each had been handled on its own.
                self.flush_staged(now);
            }
            match ev {
                MuxEvent::RemoteOpen { protocol, id, .. } => {
                    let dkey = id
                        .as_deref()
                        .and_then(|id| <[u8; 32]>::try_from(id).ok())
                        .map(DiscoveryKey);
                    match dkey.filter(|d| self.cores.contains_key(d)) {
                        Some(dkey) => {
                            // Answer with our open; the mux then reports the channel opened.
                            self.open_channel(conn, dkey);
                            let opened = self
                                .conns
                                .get(&conn)
                                .is_some_and(|c| c.channels.contains_key(&dkey));
                            if !opened {
                                if let Some(c) = self.conns.get_mut(&conn) {
                                    c.mux.reject(&protocol, id.as_deref());
                                }
                            }
                        }
                        None => {
                            // Unknown log (or not a discovery key): refuse without saying more,
                            // as corestore does.
                            tracing::debug!(conn, "rejecting a channel for a log we do not have");
                            if let Some(c) = self.conns.get_mut(&conn) {
                                c.mux.reject(&protocol, id.as_deref());
                            }
                        }
                    }
                }
                MuxEvent::ChannelOpened {
                    channel, handshake, ..
                } => self.on_open(conn, channel, &handshake, now),
                MuxEvent::Message {
                    channel,
                    message_type,
                    payload,
                } => self.on_message(conn, channel, message_type, &payload, now),
                MuxEvent::ChannelClosed { channel, .. } | MuxEvent::Rejected { channel, .. } => {
                    self.on_close(conn, channel, now);
                }
                _ => {}
            }
        }
    }

    fn on_close(&mut self, conn: ConnId, channel: ChannelHandle, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(peer) = c.peers.remove(&channel) else {
            return;
        };
        c.requests_out -= peer.inflight.len();
        c.channels.remove(&peer.dkey);
        c.pending.retain(|(ch, _)| *ch != channel);
        let dkey = peer.dkey;
        if let Some(cs) = self.cores.get_mut(&dkey) {
            release_peer(cs, PeerRef { conn, channel }, &peer);
        }
        if peer.opened {
            self.push_event(Event::ChannelClosed {
                conn,
                discovery_key: dkey,
            });
        }
        self.update(&dkey, now);
    }

    fn on_open(&mut self, conn: ConnId, channel: ChannelHandle, handshake: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(peer) = c.peers.get_mut(&channel) else {
            return;
        };
        let dkey = peer.dkey;
        let Some(cs) = self.cores.get_mut(&dkey) else {
            return;
        };
        let Ok(hs) = peerhost_encoding::from_prefix::<Handshake>(handshake) else {
            self.fail(
                conn,
                Error::InvalidHandshake {
                    discovery_key: dkey,
                },
                now,
            );
            return;
        };
        // > const expected = caps.replicate(this.stream.isInitiator === false, this.core.key, …)
        let expected = capability(!c.info.is_initiator, &cs.core.key(), &c.info.handshake_hash);
        if hs.capability != expected {
            self.fail(
                conn,
                Error::InvalidCapability {
                    discovery_key: dkey,
                },
                now,
            );
            return;
        }
        peer.opened = true;
        let r = PeerRef { conn, channel };
        cs.peers.insert(r);
        // > this.protomux.cork(); this.sendSync(); … this.broadcastRange(0, contig) …
        c.mux.cork();
        let downloading = is_downloading(cs);
        let sync = sync_for(cs, peer, downloading);
        peer.sent_can_upgrade = sync.can_upgrade;
        let contig = cs.contiguous.min(cs.core.length());
        let _ = c.mux.send(channel, 0, &peerhost_encoding::to_vec(&sync));
        if contig > 0 {
            let range = Range {
                drop: false,
                start: 0,
                length: contig,
            };
            if contig == cs.core.length() {
                peer.signaled = contig;
            }
            let _ = c.mux.send(channel, 8, &peerhost_encoding::to_vec(&range));
        }
        c.mux.uncork();
        self.woken.insert(conn);
        self.push_event(Event::ChannelOpened {
            conn,
            discovery_key: dkey,
        });
        self.update(&dkey, now);
    }

    fn on_message(
        &mut self,
        conn: ConnId,
        channel: ChannelHandle,
        message_type: u64,
        payload: &[u8],
        now: Instant,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(peer) = c.peers.get(&channel) else {
            return;
        };
        let dkey = peer.dkey;
        let name = Message::type_name(message_type);
        let max = match message_type {
            3 | 9 => usize::MAX,
            7 => 16 + 4 * self.config.max_bitfield_words,
            _ => self.config.max_message_len,
        };
        if payload.len() > max {
            let e = Error::Oversized {
                discovery_key: dkey,
                name,
                len: payload.len(),
                max,
            };
            self.fail(conn, e, now);
            return;
        }
        let message = match Message::decode(message_type, payload) {
            Ok(m) => m,
            Err(messages::MessageError::UnknownType(t)) if !self.config.strict_message_types => {
                tracing::trace!(conn, log = %dkey, t, "ignoring unknown message type");
                return;
            }
            Err(source) => {
                let e = Error::Message {
                    discovery_key: dkey,
                    source,
                };
                self.fail(conn, e, now);
                return;
            }
        };
        let r = PeerRef { conn, channel };
        match message {
            Message::Sync(s) => self.on_sync(r, s, now),
            Message::Request(req) => self.on_request(r, req, now),
            Message::Cancel(m) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.pending
                        .retain(|(ch, q)| !(*ch == channel && q.id == m.request));
                }
            }
            Message::Data(d) => self.on_data(r, d, now),
            Message::NoData(m) => self.on_no_data(r, m, now),
            Message::Want(w) => self.on_want(r, w),
            Message::Unwant(w) => {
                if let Some(p) = self.peer_mut(r) {
                    let end = w.start.saturating_add(w.length);
                    p.remote_wants.retain(|&(s, e)| (s, e) != (w.start, end));
                }
            }
            Message::Bitfield(b) => self.on_bitfield(r, b, now),
            Message::Range(rg) => self.on_range(r, rg, now),
            Message::Extension(e) => {
                tracing::trace!(conn, log = %dkey, name = %e.name, "ignoring extension message");
            }
        }
    }

    /// Our request `id` to `r`, no longer in flight.
    fn take_inflight(&mut self, r: PeerRef, id: u64) -> Option<Inflight> {
        let c = self.conns.get_mut(&r.conn)?;
        let inflight = c.peers.get_mut(&r.channel)?.inflight.remove(&id)?;
        c.requests_out -= 1;
        Some(inflight)
    }

    fn peer_mut(&mut self, r: PeerRef) -> Option<&mut Peer> {
        self.conns
            .get_mut(&r.conn)
            .and_then(|c| c.peers.get_mut(&r.channel))
    }

    fn on_sync(&mut self, r: PeerRef, s: Sync, now: Instant) {
        let Some(c) = self.conns.get_mut(&r.conn) else {
            return;
        };
        let Some(peer) = c.peers.get_mut(&r.channel) else {
            return;
        };
        let Some(cs) = self.cores.get_mut(&peer.dkey) else {
            return;
        };
        let dkey = peer.dkey;
        let (length, fork) = (cs.core.length(), cs.core.fork());
        peer.remote = Some(s);
        peer.length_acked = if s.fork == fork { s.remote_length } else { 0 };
        if s.fork != fork {
            // Their blocks are of another fork: what they said they have no longer applies.
            peer.contig = 0;
            peer.has.clear();
        }
        let sync = sync_for(cs, peer, is_downloading(cs));
        // > if (this.needsSync === true || (fork === remoteFork && length > this.remoteLength))
        // >   this.signalUpgrade()
        if (s.fork == fork && length > s.length) || sync.can_upgrade != peer.sent_can_upgrade {
            peer.sent_can_upgrade = sync.can_upgrade;
            send(c, &mut self.woken, r, &Message::Sync(sync));
        }
        self.update(&dkey, now);
    }

    fn on_request(&mut self, r: PeerRef, req: Request, now: Instant) {
        let max = self.config.max_pending_requests;
        let Some(c) = self.conns.get_mut(&r.conn) else {
            return;
        };
        // > if size didnt change -> id overwrite -> old one is deleted
        c.pending
            .retain(|(ch, q)| !(*ch == r.channel && q.id == req.id && req.id != 0));
        if c.pending.len() >= max {
            self.fail(r.conn, Error::TooManyRequests { max }, now);
            return;
        }
        c.pending.push_back((r.channel, req));
        self.woken.insert(r.conn);
    }

    /// Answer one request (lib/replicator.js `_handleRequest` / `_fulfillRequest`).
    fn answer(&mut self, conn: ConnId, channel: ChannelHandle, req: &Request) {
        let r = PeerRef { conn, channel };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(peer) = c.peers.get(&channel) else {
            return;
        };
        let dkey = peer.dkey;
        let Some(cs) = self.cores.get_mut(&dkey) else {
            return;
        };
        let reply = match cs.core.proof_with(req, self.config.verify_uploads) {
            Ok(Some(data)) => {
                if let Some(b) = &data.block {
                    let e = Event::Uploaded {
                        discovery_key: dkey,
                        index: b.index,
                        bytes: b.value.len() as u64,
                    };
                    if self.events.len() < MAX_EVENTS {
                        self.events.push_back(e);
                    }
                }
                Message::Data(data)
            }
            Ok(None) => {
                // > if (req.msg.manifest && this.core.header.manifest) → data with the manifest
                match cs.core.verifier() {
                    Some(v) if req.manifest && !v.is_compat() => Message::Data(Data {
                        request: req.id,
                        fork: cs.core.fork(),
                        manifest: Some(v.manifest().clone()),
                        ..Data::default()
                    }),
                    _ => Message::NoData(NoData {
                        request: req.id,
                        reason: reason::NOT_AVAILABLE,
                    }),
                }
            }
            Err(e @ (CoreError::Tree { .. } | CoreError::Verify { .. })) => {
                c.invalid_requests += 1;
                tracing::debug!(conn, log = %dkey, error = %e, "invalid request");
                if c.invalid_requests >= self.config.max_invalid_requests {
                    let count = c.invalid_requests;
                    self.fail(
                        conn,
                        Error::TooManyInvalidRequests { count },
                        Instant::now(),
                    );
                    return;
                }
                Message::NoData(NoData {
                    request: req.id,
                    reason: reason::INVALID_REQUEST,
                })
            }
            Err(e) => {
                let message = e.to_string();
                self.push_event(Event::StorageError {
                    discovery_key: dkey,
                    message,
                });
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                send(
                    c,
                    &mut self.woken,
                    r,
                    &Message::NoData(NoData {
                        request: req.id,
                        reason: reason::NOT_AVAILABLE,
                    }),
                );
                return;
            }
        };
        let len = send(c, &mut self.woken, r, &reply);
        c.answered += len;
        c.small_answers = len < SMALL_ANSWER;
    }

    fn on_no_data(&mut self, r: PeerRef, m: NoData, now: Instant) {
        let Some(inflight) = self.take_inflight(r, m.request) else {
            return;
        };
        let Some(peer) = self.peer_mut(r) else {
            return;
        };
        let dkey = peer.dkey;
        match inflight.kind {
            Kind::Block(i) => forget_block(peer, i),
            Kind::Upgrade => {
                // Do not ask it again until it syncs again.
                if let Some(s) = &mut peer.remote {
                    s.can_upgrade = false;
                }
            }
            _ => {}
        }
        if let Some(cs) = self.cores.get_mut(&dkey) {
            release_request(cs, r, inflight.kind);
        }
        self.update(&dkey, now);
    }

    fn on_data(&mut self, r: PeerRef, data: Data, now: Instant) {
        let Some(dkey) = self.peer_mut(r).map(|p| p.dkey) else {
            return;
        };
        // Unrequested data (push) is ignored, as JS does without `allowPush`.
        let Some(inflight) = self.take_inflight(r, data.request) else {
            tracing::trace!(conn = r.conn, log = %dkey, request = data.request, "ignoring unrequested data");
            return;
        };
        let Some(cs) = self.cores.get_mut(&dkey) else {
            return;
        };
        release_request(cs, r, inflight.kind);
        if !matches_request(&inflight.request, &data) {
            let e = Error::UnexpectedData {
                discovery_key: dkey,
                request: data.request,
            };
            self.fail(r.conn, e, now);
            return;
        }
        let fork = cs.core.fork();
        if data.fork > fork && matches!(inflight.kind, Kind::ForkProof | Kind::ReorgHash) {
            self.on_reorg_data(r, inflight.kind, &data, now);
            return;
        }
        if data.fork != fork {
            // Answered on a fork we are no longer on (or not yet): as if no data.
            self.update(&dkey, now);
            return;
        }
        let batchable = matches!(inflight.kind, Kind::Block(_)) && cs.core.batchable(&data);
        if !batchable {
            // Keep the order: what was staged before goes first.
            self.flush_staged(now);
            self.apply_data(dkey, vec![(r, inflight.kind, data)], now);
            return;
        }
        if self.staged.as_ref().is_some_and(|s| s.dkey != dkey) {
            self.flush_staged(now);
        }
        let staged = self.staged.get_or_insert_with(|| Staged {
            dkey,
            items: Vec::new(),
            bytes: 0,
        });
        staged.bytes += data.block.as_ref().map_or(0, |b| b.value.len());
        staged.items.push((r, inflight.kind, data));
        if staged.items.len() >= MAX_STAGED || staged.bytes >= MAX_STAGED_BYTES {
            self.flush_staged(now);
        }
    }

    /// Verify and store the staged run of `data` messages with one commit
    /// ([`Core::apply_batch`]).
    fn flush_staged(&mut self, now: Instant) {
        if let Some(staged) = self.staged.take() {
            self.apply_data(staged.dkey, staged.items, now);
        }
    }

    /// Apply answers to our requests (already released) in order, then schedule once. A proof
    /// that does not verify ends its connection; what verified before it is kept, and the
    /// requests after it are asked again.
    fn apply_data(&mut self, dkey: DiscoveryKey, items: Vec<(PeerRef, Kind, Data)>, now: Instant) {
        let Some(cs) = self.cores.get_mut(&dkey) else {
            return;
        };
        let (stored, result) = {
            let refs: Vec<&Data> = items.iter().map(|(_, _, d)| d).collect();
            cs.core.apply_batch(&refs)
        };
        let mut items = items.into_iter();
        for (r, kind, data) in items.by_ref().take(stored) {
            if let Some(b) = &data.block {
                if let Some(cs) = self.cores.get_mut(&dkey) {
                    on_block(cs, b.index);
                }
                self.push_event(Event::Downloaded {
                    discovery_key: dkey,
                    index: b.index,
                    bytes: b.value.len() as u64,
                });
                self.broadcast_have(&dkey, b.index);
            } else if let Kind::Block(i) = kind {
                // A manifest-only answer to a block request: the peer lacks the block.
                if let Some(p) = self.peer_mut(r) {
                    forget_block(p, i);
                }
            }
        }
        let grew = match result {
            Ok(grew) => grew,
            Err(e) if e.code().is_some() && !matches!(e, CoreError::Tree { .. }) => {
                if let Some((r, _, _)) = items.next() {
                    let e = Error::InvalidData {
                        discovery_key: dkey,
                        source: Box::new(e),
                    };
                    self.fail(r.conn, e, now);
                }
                false
            }
            Err(e) => {
                let message = e.to_string();
                self.push_event(Event::StorageError {
                    discovery_key: dkey,
                    message,
                });
                false
            }
        };
        if grew {
            self.head_changed(&dkey, now);
        } else {
            self.update(&dkey, now);
        }
    }

    fn on_reorg_data(&mut self, r: PeerRef, kind: Kind, data: &Data, now: Instant) {
        let Some(peer) = self
            .conns
            .get(&r.conn)
            .and_then(|c| c.peers.get(&r.channel))
        else {
            return;
        };
        let dkey = peer.dkey;
        let Some(cs) = self.cores.get_mut(&dkey) else {
            return;
        };
        if cs.core.writable() {
            return;
        }
        let result = match (kind, cs.reorg.take()) {
            (Kind::ForkProof, _) if data.upgrade.is_some() => {
                cs.core.verify_reorg(data).map(|reorg| Some((reorg, r)))
            }
            (Kind::ReorgHash, Some((mut reorg, from))) if reorg.head().fork() == data.fork => cs
                .core
                .update_reorg(&mut reorg, data)
                .map(|_| Some((reorg, from))),
            (_, other) => Ok(other),
        };
        match result {
            Ok(Some((reorg, from))) if reorg.finished() => {
                let ancestors = reorg.ancestors();
                match cs.core.apply_reorg(reorg) {
                    Ok(()) => {
                        tracing::info!(log = %dkey, ancestors, length = cs.core.length(), fork = cs.core.fork(), "followed the log onto a new fork");
                        cs.contiguous = cs.core.contiguous_length().unwrap_or(0);
                        cs.inflight_blocks.clear();
                        reset_cursors(cs);
                        self.head_changed(&dkey, now);
                    }
                    Err(e) => {
                        let message = e.to_string();
                        self.push_event(Event::StorageError {
                            discovery_key: dkey,
                            message,
                        });
                    }
                }
                let _ = from;
            }
            Ok(pending) => {
                cs.reorg = pending;
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

    fn on_want(&mut self, r: PeerRef, w: Want) {
        let Some(c) = self.conns.get_mut(&r.conn) else {
            return;
        };
        let Some(peer) = c.peers.get_mut(&r.channel) else {
            return;
        };
        let Some(cs) = self.cores.get_mut(&peer.dkey) else {
            return;
        };
        // lib/wants.js `RemoteWants.add`: ranges above MAX_RANGE are ignored.
        if !w.any && w.length > WANT_BATCH {
            return;
        }
        let end = w.start.saturating_add(w.length);
        if peer.remote_wants.len() < MAX_REMOTE_WANTS {
            peer.remote_wants.push((w.start, end));
        } else {
            peer.wants_all = true;
        }
        // lib/replicator.js `_onwant`.
        let length = cs.core.length();
        let contig = cs.contiguous.min(length);
        if end < contig || length == contig || (w.any && w.start < contig) {
            let m = Range {
                drop: false,
                start: 0,
                length: contig,
            };
            send(c, &mut self.woken, r, &Message::Range(m));
            return;
        }
        if w.start >= length {
            return;
        }
        let end = end.min(length);
        if w.any {
            if let Ok(Some(bit)) = cs.core.next_present(w.start, end) {
                let m = Range {
                    drop: false,
                    start: bit,
                    length: 1,
                };
                send(c, &mut self.woken, r, &Message::Range(m));
            }
            return;
        }
        let start = w.start - w.start % 32;
        if let Ok(words) = bitfield_words(&mut cs.core, start, end) {
            let m = Bitfield {
                start,
                bitfield: words,
            };
            send(c, &mut self.woken, r, &Message::Bitfield(m));
        }
    }

    fn on_bitfield(&mut self, r: PeerRef, b: Bitfield, now: Instant) {
        let Some(peer) = self.peer_mut(r) else {
            return;
        };
        let end = b.start.saturating_add(32 * b.bitfield.len() as u64);
        // > if (start < this._remoteContiguousLength) this._remoteContiguousLength = start
        if b.start < peer.contig {
            if end < peer.contig {
                let contig = peer.contig;
                peer.has.insert(end, contig);
            }
            peer.contig = b.start;
        }
        peer.has.set_words(b.start, &b.bitfield);
        let dkey = peer.dkey;
        self.update(&dkey, now);
    }

    fn on_range(&mut self, r: PeerRef, m: Range, now: Instant) {
        let Some(peer) = self.peer_mut(r) else {
            return;
        };
        let end = m.start.saturating_add(m.length);
        if m.drop {
            if m.start < peer.contig {
                if end < peer.contig {
                    let contig = peer.contig;
                    peer.has.insert(end, contig);
                }
                peer.contig = m.start;
            }
            peer.has.remove(m.start, end);
        } else if m.start == 0 {
            peer.contig = peer.contig.max(m.length);
        } else {
            peer.has.insert(m.start, end);
        }
        let dkey = peer.dkey;
        if !m.drop {
            self.update(&dkey, now);
        }
    }

    /// A block was stored: tell the peers that may want it (lib/replicator.js `broadcastRange`).
    fn broadcast_have(&mut self, dkey: &DiscoveryKey, index: u64) {
        let Some(cs) = self.cores.get(dkey) else {
            return;
        };
        let length = cs.core.length();
        let full = cs.contiguous >= length;
        for r in &cs.peers {
            let Some(c) = self.conns.get_mut(&r.conn) else {
                continue;
            };
            let Some(p) = c.peers.get_mut(&r.channel) else {
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
            send(c, &mut self.woken, *r, &Message::Range(m));
        }
    }

    /// Our head changed: sync every peer, announce a fully contiguous log, reschedule.
    fn head_changed(&mut self, dkey: &DiscoveryKey, now: Instant) {
        let Some(cs) = self.cores.get_mut(dkey) else {
            return;
        };
        let (length, fork) = (cs.core.length(), cs.core.fork());
        self.events.push_back(Event::Head {
            discovery_key: *dkey,
            length,
            fork,
        });
        let downloading = is_downloading(cs);
        let full = cs.contiguous >= length;
        for r in cs.peers.clone() {
            let Some(c) = self.conns.get_mut(&r.conn) else {
                continue;
            };
            let Some(p) = c.peers.get_mut(&r.channel) else {
                continue;
            };
            let sync = sync_for(cs, p, downloading);
            p.sent_can_upgrade = sync.can_upgrade;
            c.mux.cork();
            send(c, &mut self.woken, r, &Message::Sync(sync));
            if full && length > 0 {
                if let Some(p) = c.peers.get_mut(&r.channel) {
                    if p.signaled < length {
                        p.signaled = length;
                        let m = Range {
                            drop: false,
                            start: 0,
                            length,
                        };
                        send(c, &mut self.woken, r, &Message::Range(m));
                    }
                }
            }
            c.mux.uncork();
        }
        self.update(dkey, now);
    }

    /// The scheduler: issue the requests log `dkey` needs now (lib/replicator.js `updatePeer`
    /// / `updateAll`, simplified): a fork proof or reorg step, the upgrade, the manifest, then
    /// missing blocks of the wanted ranges, each to the least busy peer that has it.
    pub fn update(&mut self, dkey: &DiscoveryKey, now: Instant) {
        let Some(cs) = self.cores.get_mut(dkey) else {
            return;
        };
        let conns = &mut self.conns;
        let woken = &mut self.woken;
        let config = &self.config;
        let deadline = now + config.request_timeout;
        let max_per_conn = config.max_requests_per_connection;
        let (length, fork) = (cs.core.length(), cs.core.fork());
        let writable = cs.core.writable();
        let (max_inflight, small_blocks) = inflight_window(config, &cs.core);
        let peers: Vec<PeerRef> = cs.peers.iter().copied().collect();
        let view = |conns: &HashMap<ConnId, Conn>, r: &PeerRef| -> Option<(Sync, usize, u64)> {
            let p = conns.get(&r.conn)?.peers.get(&r.channel)?;
            let s = p.remote?;
            (p.opened && s.uploading).then_some((s, p.inflight.len(), p.length_acked))
        };

        // 1. Reorgs: a peer on a higher fork (a truncation we have not followed).
        if !writable && cs.reorg.is_none() && cs.fork_proof.is_none() {
            let target = peers.iter().find(|r| {
                view(conns, r)
                    .is_some_and(|(s, n, _)| s.fork > fork && s.length > 0 && n < max_inflight)
            });
            if let Some(r) = target.copied() {
                if let Some((s, _, _)) = view(conns, &r) {
                    let req = Request {
                        fork: s.fork,
                        upgrade: Some(RequestUpgrade {
                            start: 0,
                            length: s.length,
                        }),
                        manifest: cs.core.verifier().is_none(),
                        ..Request::default()
                    };
                    if request(
                        conns,
                        woken,
                        r,
                        Kind::ForkProof,
                        req,
                        deadline,
                        max_per_conn,
                    ) {
                        cs.fork_proof = Some(r);
                    }
                }
            }
        }
        if let (Some((reorg, from)), None) = (&cs.reorg, cs.reorg_hash) {
            if let Some(want) = reorg.want() {
                let req = Request {
                    fork: reorg.head().fork(),
                    hash: Some(RequestBlock {
                        index: 2 * want.start,
                        nodes: want.nodes,
                    }),
                    ..Request::default()
                };
                let from = *from;
                if request(
                    conns,
                    woken,
                    from,
                    Kind::ReorgHash,
                    req,
                    deadline,
                    max_per_conn,
                ) {
                    cs.reorg_hash = Some(from);
                }
            }
        }
        if cs.reorg.is_some() || cs.fork_proof.is_some() {
            return;
        }

        // 2. The upgrade: JS `_shouldUpgrade` — the peer can upgrade us and has acked our length.
        if !writable && cs.upgrade.is_none() {
            let target = peers.iter().find(|r| {
                view(conns, r).is_some_and(|(s, n, acked)| {
                    s.fork == fork
                        && s.length > length
                        && s.can_upgrade
                        && acked == length
                        && n < max_inflight
                })
            });
            if let Some(r) = target.copied() {
                if let Some((s, _, _)) = view(conns, &r) {
                    let req = Request {
                        fork,
                        upgrade: Some(RequestUpgrade {
                            start: length,
                            length: s.length - length,
                        }),
                        manifest: cs.core.verifier().is_none() && s.has_manifest,
                        ..Request::default()
                    };
                    if request(conns, woken, r, Kind::Upgrade, req, deadline, max_per_conn) {
                        cs.upgrade = Some(r);
                    }
                }
            }
        }

        // 3. The manifest, eagerly, from a peer that has it but no blocks yet.
        if cs.core.verifier().is_none() && cs.manifest.is_none() && cs.upgrade.is_none() {
            let target = peers.iter().find(|r| {
                view(conns, r)
                    .is_some_and(|(s, n, _)| s.has_manifest && s.length == 0 && n < max_inflight)
            });
            if let Some(r) = target.copied() {
                let req = Request {
                    fork,
                    manifest: true,
                    ..Request::default()
                };
                if request(conns, woken, r, Kind::Manifest, req, deadline, max_per_conn) {
                    cs.manifest = Some(r);
                }
            }
        }

        // 4. Blocks of the wanted ranges, below our length, spread over the peers.
        if cs.ranges.is_empty() || length == 0 {
            return;
        }
        // For small blocks a peer is topped up once an eighth of its window is free, not after
        // every answer: requests then leave (and are read) many at a time instead of one per
        // block. Not for large blocks: JS answers the requests it has queued as one protomux
        // batch, which for 64 KiB blocks makes messages of many MiB to buffer.
        let refill = if small_blocks {
            (max_inflight / 8).max(1)
        } else {
            1
        };
        let mut cands: Vec<PeerRef> = peers
            .iter()
            .filter(|r| {
                view(conns, r).is_some_and(|(s, n, _)| {
                    s.fork == fork && n + refill <= max_inflight && s.length > 0
                })
            })
            .copied()
            .collect();
        // A connection at its cap of requests takes none now: this log waits its turn there.
        cands.retain(|r| {
            let Some(c) = conns.get_mut(&r.conn) else {
                return false;
            };
            if c.requests_out < max_per_conn {
                return true;
            }
            starve(c, *dkey);
            false
        });
        // Requests for small blocks made in this update go out as one protomux batch frame
        // per connection. Not for large blocks: a JS peer answers a batch with a batch (its
        // `_onbatch` corks), which for 64 KiB blocks is one multi-MiB message to buffer whole.
        let mut corked: Vec<ConnId> = if small_blocks {
            cands.iter().map(|r| r.conn).collect()
        } else {
            Vec::new()
        };
        corked.sort_unstable();
        corked.dedup();
        for id in &corked {
            if let Some(c) = conns.get_mut(id) {
                c.mux.cork();
            }
        }
        let mut scanned = 0;
        // Skip the stored prefix of each range once, remembering it.
        for w in &mut cs.ranges {
            let end = w.end.unwrap_or(length).min(length);
            w.cursor = match cs.core.next_missing(w.cursor.max(w.start), end) {
                Ok(Some(m)) => m,
                Ok(None) => end.max(w.cursor),
                Err(_) => w.cursor,
            };
        }
        let ranges = cs.ranges.clone();
        'ranges: for w in &ranges {
            let end = w.end.unwrap_or(length).min(length);
            let mut i = w.cursor;
            while i < end && !cands.is_empty() && scanned < MAX_SCAN {
                scanned += 1;
                let Ok(Some(m)) = cs.core.next_missing(i, end) else {
                    continue 'ranges;
                };
                i = m;
                if cs.inflight_blocks.contains_key(&i) {
                    // Step over the whole run of requests in flight at once.
                    i = cs.inflight_blocks.skip(i);
                    continue;
                }
                // The least busy candidate that has block i and can prove it for our length.
                let best = cands
                    .iter()
                    .filter_map(|r| {
                        let p = conns.get(&r.conn)?.peers.get(&r.channel)?;
                        let s = p.remote?;
                        let ok = i < s.length
                            && p.remote_has(i)
                            && (s.length >= length || p.sent_can_upgrade);
                        ok.then_some((p.inflight.len(), *r))
                    })
                    .min();
                match best {
                    Some((_, r)) => {
                        let nodes = cs.core.missing_nodes(2 * i).unwrap_or(0);
                        let req = Request {
                            fork,
                            block: Some(RequestBlock { index: i, nodes }),
                            ..Request::default()
                        };
                        if request(conns, woken, r, Kind::Block(i), req, deadline, max_per_conn) {
                            cs.inflight_blocks.insert(i, r);
                        }
                        let full = conns.get_mut(&r.conn).is_none_or(|c| {
                            if c.requests_out >= max_per_conn {
                                starve(c, *dkey);
                                return true;
                            }
                            c.peers
                                .get(&r.channel)
                                .is_none_or(|p| p.inflight.len() >= max_inflight)
                        });
                        if full {
                            cands.retain(|c| *c != r);
                        }
                        i += 1;
                    }
                    None => {
                        // Nobody says it has block i: ask them (`want`), then skip to the next
                        // block some peer has.
                        for r in &cands {
                            if let Some(c) = conns.get_mut(&r.conn) {
                                maybe_want(c, woken, *r, i);
                            }
                        }
                        let next = cands
                            .iter()
                            .filter_map(|r| {
                                conns.get(&r.conn)?.peers.get(&r.channel)?.next_has(i + 1)
                            })
                            .min();
                        match next {
                            Some(n) => i = n,
                            None => continue 'ranges,
                        }
                    }
                }
            }
        }
        for id in &corked {
            if let Some(c) = conns.get_mut(id) {
                c.mux.uncork();
            }
        }
    }
}

/// Requests in flight per peer for this log: `max_inflight`, or more for small blocks, so that
/// about `max_inflight_bytes` are in flight (by the log's average block size), at most
/// `max_inflight_blocks`.
///
/// Also whether the blocks are small (under [`SMALL_ANSWER`] on average).
fn inflight_window(config: &Config, core: &Core) -> (usize, bool) {
    let length = core.length();
    if length == 0 {
        return (config.max_inflight, false);
    }
    let average = (core.byte_length() / length).max(1);
    let by_bytes = usize::try_from(config.max_inflight_bytes / average).unwrap_or(usize::MAX);
    let window = by_bytes
        .min(config.max_inflight_blocks)
        .max(config.max_inflight);
    (window, average < SMALL_ANSWER as u64)
}

/// The log was truncated: blocks below the cursors may be gone.
fn reset_cursors(cs: &mut CoreState) {
    for w in &mut cs.ranges {
        w.cursor = w.start;
    }
}

/// Whether we tell peers we are downloading this log.
fn is_downloading(cs: &CoreState) -> bool {
    cs.active || !cs.inflight_blocks.is_empty() || cs.upgrade.is_some()
}

/// Our sync for a peer (lib/replicator.js `sendSync`, with `_canUpgrade`).
fn sync_for(cs: &mut CoreState, peer: &Peer, downloading: bool) -> Sync {
    let (length, fork) = (cs.core.length(), cs.core.fork());
    let (rfork, rlength) = peer.remote.map_or((0, 0), |s| (s.fork, s.length));
    let can_upgrade =
        rfork == fork && (rlength == 0 || (rlength < length && upgradeable(&mut cs.core, rlength)));
    Sync {
        fork,
        length,
        remote_length: if rfork == fork { rlength } else { 0 },
        can_upgrade,
        uploading: true,
        downloading,
        has_manifest: cs.core.verifier().is_some_and(|v| !v.is_compat()),
        allow_push: false,
    }
}

/// Whether we hold the roots of a tree of `length` blocks, so we can prove an upgrade from it
/// (lib/merkle-tree.js `upgradeable`).
fn upgradeable(core: &mut Core, length: u64) -> bool {
    flat::full_roots(2 * length)
        .into_iter()
        .all(|i| matches!(core.nodes().node(i), Ok(Some(_))))
}

/// Our bitfield for blocks `start..end` as 32-bit words (`start` a multiple of 32).
fn bitfield_words(core: &mut Core, start: u64, end: u64) -> Result<Vec<u32>, CoreError> {
    let n = (end - start).div_ceil(32) as usize;
    let mut words = vec![0u32; n];
    let mut i = start;
    while let Some(s) = core.next_present(i, end)? {
        let e = core.next_missing(s, end)?.unwrap_or(end);
        for b in s..e {
            let off = b - start;
            words[(off / 32) as usize] |= 1 << (off % 32);
        }
        i = e;
    }
    Ok(words)
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

/// Block `index` was stored: advance the cached contiguous length.
fn on_block(cs: &mut CoreState, index: u64) {
    cs.inflight_blocks.remove(&index);
    if index == cs.contiguous {
        let length = cs.core.length();
        cs.contiguous = match cs.core.next_missing(index, length) {
            Ok(Some(m)) => m,
            Ok(None) => length,
            Err(_) => index,
        };
    }
}

/// The peer does not (or cannot now) give us block `index`.
fn forget_block(peer: &mut Peer, index: u64) {
    if index < peer.contig {
        let contig = peer.contig;
        peer.has.insert(index + 1, contig);
        peer.contig = index;
    }
    peer.has.remove(index, index + 1);
}

/// A request to `r` of this kind is over (answered, refused, timed out, or the peer left).
fn release_request(cs: &mut CoreState, r: PeerRef, kind: Kind) {
    match kind {
        Kind::Block(i) => {
            if cs.inflight_blocks.get(&i) == Some(&r) {
                cs.inflight_blocks.remove(&i);
            }
        }
        Kind::Upgrade => {
            if cs.upgrade == Some(r) {
                cs.upgrade = None;
            }
        }
        Kind::Manifest => {
            if cs.manifest == Some(r) {
                cs.manifest = None;
            }
        }
        Kind::ForkProof => {
            if cs.fork_proof == Some(r) {
                cs.fork_proof = None;
            }
        }
        Kind::ReorgHash => {
            if cs.reorg_hash == Some(r) {
                cs.reorg_hash = None;
            }
        }
    }
}

/// The peer is gone: release everything it was asked for.
fn release_peer(cs: &mut CoreState, r: PeerRef, peer: &Peer) {
    cs.peers.remove(&r);
    for i in peer.inflight.values() {
        release_request(cs, r, i.kind);
    }
    if cs.reorg.as_ref().is_some_and(|(_, from)| *from == r) {
        cs.reorg = None;
    }
}

/// Send `m` on `r`'s channel; returns its payload length (0 if the channel is gone).
fn send(c: &mut Conn, woken: &mut BTreeSet<ConnId>, r: PeerRef, m: &Message) -> usize {
    let payload = m.encode();
    if c.mux.send(r.channel, m.message_type(), &payload).is_ok() {
        woken.insert(r.conn);
        return payload.len();
    }
    0
}

/// Remember that log `dkey` waits for room on connection `c`.
fn starve(c: &mut Conn, dkey: DiscoveryKey) {
    if c.starved_set.insert(dkey) {
        c.starved.push_back(dkey);
    }
}

/// Send a request to `r`, recording it in flight. False if the channel is gone or the
/// connection has `max_per_conn` requests out.
fn request(
    conns: &mut HashMap<ConnId, Conn>,
    woken: &mut BTreeSet<ConnId>,
    r: PeerRef,
    kind: Kind,
    mut req: Request,
    deadline: Instant,
    max_per_conn: usize,
) -> bool {
    let Some(c) = conns.get_mut(&r.conn) else {
        return false;
    };
    if c.requests_out >= max_per_conn {
        return false;
    }
    let Some(p) = c.peers.get_mut(&r.channel) else {
        return false;
    };
    req.id = p.next_id;
    p.next_id += 1;
    let bytes = {
        let mut sizer = peerhost_encoding::Sizer::default();
        req.preencode(&mut sizer);
        let mut out = vec![0; sizer.len()];
        req.encode(&mut peerhost_encoding::Writer::new(&mut out));
        out
    };
    if c.mux.send(r.channel, 1, &bytes).is_err() {
        return false;
    }
    if p.inflight
        .insert(
            req.id,
            Inflight {
                kind,
                request: req,
                deadline,
            },
        )
        .is_none()
    {
        c.requests_out += 1;
    }
    woken.insert(r.conn);
    true
}

/// Ask the peer which blocks of `index`'s batch it has, once per batch (lib/replicator.js
/// `_maybeWant`).
fn maybe_want(c: &mut Conn, woken: &mut BTreeSet<ConnId>, r: PeerRef, index: u64) {
    let Some(p) = c.peers.get_mut(&r.channel) else {
        return;
    };
    if index < p.contig || p.remote.is_none_or(|s| index >= s.length) {
        return;
    }
    let batch = index / WANT_BATCH;
    if p.wants_sent.contains(&batch) || p.wants_sent.len() >= MAX_WANTS {
        return;
    }
    p.wants_sent.insert(batch);
    let m = Want {
        start: batch * WANT_BATCH,
        length: WANT_BATCH,
        any: false,
    };
    send(c, woken, r, &Message::Want(m));
}
