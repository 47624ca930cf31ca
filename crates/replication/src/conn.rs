//! [`Conn`]: one connection — its protomux, its channels (one [`Peer`] each), the remote's
//! requests waiting for our answers ([`Answers`]), its error and its counters; and [`Conns`],
//! every connection plus the set of those with frames to send (woken).
//!
//! Everything that sends on a channel goes through [`Conns::send`] or [`Conns::request`], so a
//! connection with new frames is always woken and every request of ours is counted against the
//! connection's cap.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use peerhost_encoding::CompactEncoding;
use peerhost_ids::DiscoveryKey;
use peerhost_log::Request;
use peerhost_protomux::{ChannelHandle, Mux};

use crate::ConnId;
use crate::config::ConnectionInfo;
use crate::error::Error;
use crate::messages::{ALIAS, Message, PROTOCOL};
use crate::peer::{Inflight, Kind, Peer, PeerRef};
use crate::serve::Answers;

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) info: ConnectionInfo,
    pub(crate) mux: Mux,
    pub(crate) peers: HashMap<ChannelHandle, Peer>,
    pub(crate) channels: HashMap<DiscoveryKey, ChannelHandle>,
    /// Remote requests waiting for our answer, in order.
    pub(crate) answers: Answers,
    pub(crate) error: Option<Error>,
    pub(crate) timeouts: u32,
    /// Our requests in flight on this connection, all logs together (the sum of its peers'
    /// `inflight`), kept under `Config::max_requests_per_connection`.
    pub(crate) requests_out: usize,
    /// Logs that had blocks to ask this connection for while it was at that cap, in order,
    /// each once: scheduled again as its requests are answered.
    starved: VecDeque<DiscoveryKey>,
    starved_set: HashSet<DiscoveryKey>,
}

impl Conn {
    fn new(info: ConnectionInfo, mux: peerhost_protomux::Config) -> Self {
        let mut mux = Mux::new(mux);
        mux.pair(PROTOCOL, None);
        mux.pair(ALIAS, None);
        Self {
            info,
            mux,
            peers: HashMap::new(),
            channels: HashMap::new(),
            answers: Answers::default(),
            error: None,
            timeouts: 0,
            requests_out: 0,
            starved: VecDeque::new(),
            starved_set: HashSet::new(),
        }
    }

    /// Remember that log `dkey` waits for room on this connection.
    pub(crate) fn starve(&mut self, dkey: DiscoveryKey) {
        if self.starved_set.insert(dkey) {
            self.starved.push_back(dkey);
        }
    }

    /// The log that waited longest for room, if there is room now.
    pub(crate) fn unstarve(&mut self, max: usize) -> Option<DiscoveryKey> {
        if self.requests_out >= max {
            return None;
        }
        let dkey = self.starved.pop_front()?;
        self.starved_set.remove(&dkey);
        Some(dkey)
    }

    /// Forget a channel (closed, rejected): its peer, its queued requests. Returns the peer.
    pub(crate) fn remove_channel(&mut self, channel: ChannelHandle) -> Option<Peer> {
        let peer = self.peers.remove(&channel)?;
        self.requests_out -= peer.inflight.len();
        self.channels.remove(&peer.dkey);
        self.answers.drop_channel(channel);
        Some(peer)
    }
}

/// Every connection, and those with frames to send since [`Conns::take_woken`].
#[derive(Debug)]
pub(crate) struct Conns {
    map: HashMap<ConnId, Conn>,
    woken: BTreeSet<ConnId>,
    next: ConnId,
}

impl Conns {
    pub(crate) fn new() -> Self {
        Self {
            map: HashMap::new(),
            woken: BTreeSet::new(),
            next: 1,
        }
    }

    /// A new connection, woken (its opens go out first).
    pub(crate) fn add(&mut self, info: ConnectionInfo, mux: peerhost_protomux::Config) -> ConnId {
        let id = self.next;
        self.next += 1;
        self.map.insert(id, Conn::new(info, mux));
        self.woken.insert(id);
        id
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.woken.remove(&id);
        self.map.remove(&id)
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.map.get_mut(&id)
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.map.keys().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ConnId, &Conn)> {
        self.map.iter()
    }

    pub(crate) fn peer(&self, r: PeerRef) -> Option<&Peer> {
        self.map.get(&r.conn)?.peers.get(&r.channel)
    }

    pub(crate) fn peer_mut(&mut self, r: PeerRef) -> Option<&mut Peer> {
        self.map.get_mut(&r.conn)?.peers.get_mut(&r.channel)
    }

    pub(crate) fn wake(&mut self, id: ConnId) {
        self.woken.insert(id);
    }

    pub(crate) fn take_woken(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.woken).into_iter().collect()
    }

    /// Send `m` on `r`'s channel; returns its payload length (0 if the channel is gone).
    pub(crate) fn send(&mut self, r: PeerRef, m: &Message) -> usize {
        let Some(c) = self.map.get_mut(&r.conn) else {
            return 0;
        };
        let payload = m.encode();
        if c.mux.send(r.channel, m.message_type(), &payload).is_ok() {
            self.woken.insert(r.conn);
            return payload.len();
        }
        0
    }

    /// Send a request to `r`, recording it in flight with a fresh id. False if the channel is
    /// gone or the connection has `max_per_conn` requests out.
    pub(crate) fn request(
        &mut self,
        r: PeerRef,
        kind: Kind,
        mut req: Request,
        deadline: Instant,
        max_per_conn: usize,
    ) -> bool {
        let Some(c) = self.map.get_mut(&r.conn) else {
            return false;
        };
        if c.requests_out >= max_per_conn {
            return false;
        }
        let Some(p) = c.peers.get_mut(&r.channel) else {
            return false;
        };
        req.id = p.next_request_id();
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
        let id = req.id;
        let inflight = Inflight {
            kind,
            request: req,
            deadline,
        };
        if p.inflight.insert(id, inflight).is_none() {
            c.requests_out += 1;
        }
        self.woken.insert(r.conn);
        true
    }

    /// Our request `id` to `r`, no longer in flight.
    pub(crate) fn take_inflight(&mut self, r: PeerRef, id: u64) -> Option<Inflight> {
        let c = self.map.get_mut(&r.conn)?;
        let inflight = c.peers.get_mut(&r.channel)?.inflight.remove(&id)?;
        c.requests_out -= 1;
        Some(inflight)
    }

    /// Hold `id`'s frames back until [`Conns::uncork`], to go out as one batch frame.
    pub(crate) fn cork(&mut self, id: ConnId) {
        if let Some(c) = self.map.get_mut(&id) {
            c.mux.cork();
        }
    }

    pub(crate) fn uncork(&mut self, id: ConnId) {
        if let Some(c) = self.map.get_mut(&id) {
            c.mux.uncork();
        }
    }
}
