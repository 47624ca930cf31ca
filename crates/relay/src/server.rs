//! The relay side, sans-IO: sessions (one per connected peer), the pairing table, and the
//! splices the driver must install (blind-relay 1.6.1 `BlindRelayServer`,
//! `BlindRelaySession`, `BlindRelayPair`, `BlindRelayLink`).
//!
//! Flow:
//! 1. [`Server::accept`] a connection: its session opens the `blind-relay` channel (id: the
//!    peer's public key, what hyperdht relays pass) on its own protomux.
//! 2. Feed each message the connection delivers to [`Server::handle_input`]; write what
//!    [`Server::poll_transmit`] returns for that session.
//! 3. A `pair{isInitiator, token, id}` fills slot `isInitiator` of the pairing named by
//!    `token` (a second request for a filled slot is ignored, as in JS). When both slots are
//!    filled, [`Event::Matched`] asks the driver to splice two relay streams; the driver
//!    answers with [`Server::confirm`] (each peer then gets `pair{its isInitiator, token,
//!    id: its relay stream id}`) or [`Server::cancel`].
//! 4. `unpair{token}` cancels a pending pairing, or ends an active one
//!    ([`Event::Unspliced`]). A session that closes cancels its pending pairings and ends its
//!    active ones, as JS `_onclose` does.
//!
//! Drain contract: after any call, drain [`Server::poll_event`] and every session's
//! [`Server::poll_transmit`] (the session named in an event may be another than the one fed).
//!
//! Bounds: at most [`Config::max_pending_per_session`] pending requests per session (more are
//! ignored), [`Config::max_pending`] pending pairings overall, and each session's protomux has
//! its own limits. Sessions accepted with their remote address ([`Server::accept_from`]) are
//! also bounded per client (an IPv4 address or an IPv6 /64): sessions, pending requests and
//! active pairings ([`Config`]); a session cannot be paired with itself, nor hold more than
//! [`Config::max_active_per_session`] active pairings.
//!
//! "Dialed on purpose": [`Event::Matched`] carries each side's session address, and the driver
//! pins each relay stream to it (`peerhost_udx::relay::Relay::splice_pinned`). That address
//! completed a Noise handshake with the relay's key and asked, on its own channel, to be paired:
//! the relay never sends relayed packets anywhere else (a spoofed first packet cannot aim a
//! splice at a third party). JS clients send their relayed stream from the very socket of
//! their relay connection, so pinning keeps them working.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use peerhost_encoding::{from_prefix, to_vec};
use peerhost_protomux::{ChannelHandle, Event as MuxEvent, Mux};

use crate::PROTOCOL;
use crate::error::Error;
use crate::messages::{PAIR, Pair, UNPAIR, Unpair};

/// Limits of a [`Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Pending pairings (one side waiting) across all sessions; more requests are ignored.
    pub max_pending: usize,
    /// Pending requests one session may hold; more are ignored.
    pub max_pending_per_session: usize,
    /// Active pairings (splices) one session may be part of; more requests are ignored.
    pub max_active_per_session: usize,
    /// Sessions from one client (IPv4 address, IPv6 /64) at once; more are refused.
    pub max_sessions_per_ip: usize,
    /// Pending requests from one client's sessions together.
    pub max_pending_per_ip: usize,
    /// Active pairings one client's sessions are part of together.
    pub max_active_per_ip: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_pending: 4096,
            max_pending_per_session: 64,
            max_active_per_session: 8,
            max_sessions_per_ip: 32,
            max_pending_per_ip: 256,
            max_active_per_ip: 32,
        }
    }
}

/// The client a session's address counts for: an IPv4 address (IPv4-mapped included) or an
/// IPv6 /64.
fn client_of(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// What one client holds.
#[derive(Debug, Default, Clone, Copy)]
struct ClientUse {
    sessions: usize,
    pending: usize,
    active: usize,
}

/// One accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

/// One side of a pairing: who asked, and the stream id it announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The session the request came on.
    pub session: SessionId,
    /// The peer's UDX stream id (where relayed packets to it are addressed).
    pub remote_id: u32,
    /// The session's remote address, if the driver gave it: pin the relay stream to it.
    pub addr: Option<SocketAddr>,
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Both sides asked: splice two relay streams, one per side (the initiator's with
    /// `initiator.remote_id`, the other with `responder.remote_id`), then call
    /// [`Server::confirm`] with their ids, or [`Server::cancel`].
    Matched {
        /// The pairing token.
        token: [u8; 32],
        /// The side that sent `isInitiator: true`.
        initiator: Link,
        /// The other side.
        responder: Link,
    },
    /// An active pairing ended: remove the splice of these relay ids.
    Unspliced {
        /// The pairing token.
        token: [u8; 32],
        /// The relay ids given to the initiator and the responder.
        relay_ids: [u32; 2],
    },
    /// The session's channel closed (either side, or the stream ended). Drop the connection.
    SessionClosed(SessionId),
}

/// Counters (what JS keeps in `server.stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sessions accepted.
    pub sessions: u64,
    /// Sessions still open.
    pub active_sessions: usize,
    /// Pairing requests accepted.
    pub requested: u64,
    /// Pairings matched.
    pub matched: u64,
    /// Pairings cancelled.
    pub cancelled: u64,
    /// Pairings waiting for their second side.
    pub pending: usize,
    /// Pairings spliced and not yet ended.
    pub active: usize,
}

#[derive(Debug)]
struct Session {
    mux: Mux,
    channel: Option<ChannelHandle>,
    pending: HashSet<[u8; 32]>,
    active: HashSet<[u8; 32]>,
    closed: bool,
    addr: Option<SocketAddr>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Index 0: responder (`isInitiator: false`), 1: initiator, as JS `links[+isInitiator]`.
    links: [Option<Link>; 2],
}

#[derive(Debug, Clone, Copy)]
struct Active {
    /// Initiator, responder.
    links: [Link; 2],
    relay_ids: [u32; 2],
}

/// The relay's state for all sessions. See the module docs for the flow and drain contract.
#[derive(Debug, Default)]
pub struct Server {
    config: Config,
    sessions: HashMap<SessionId, Session>,
    pending: HashMap<[u8; 32], Pending>,
    /// Matched, waiting for the driver's confirm.
    matching: HashMap<[u8; 32], [Link; 2]>,
    active: HashMap<[u8; 32], Active>,
    clients: HashMap<IpAddr, ClientUse>,
    next_session: u64,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Server {
    /// A server with these limits.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Start a session on a new connection and open its `blind-relay` channel with `id`
    /// (hyperdht relays use the peer's public key, matching what the client opens). The
    /// session's address is unknown: its relay streams learn their peers' addresses from the
    /// first packets, and no per-client bound applies. Prefer [`Server::accept_from`].
    pub fn accept(&mut self, id: Option<&[u8]>) -> SessionId {
        self.open_session(id, None)
    }

    /// [`Server::accept`] for a connection from `addr`: the session counts against its
    /// client's bounds (`None` when the client already has [`Config::max_sessions_per_ip`]
    /// sessions: drop the connection), and its relay streams are pinned to `addr`.
    pub fn accept_from(&mut self, id: Option<&[u8]>, addr: SocketAddr) -> Option<SessionId> {
        let c = self.clients.entry(client_of(addr)).or_default();
        if c.sessions >= self.config.max_sessions_per_ip {
            return None;
        }
        c.sessions += 1;
        Some(self.open_session(id, Some(addr)))
    }

    fn open_session(&mut self, id: Option<&[u8]>, addr: Option<SocketAddr>) -> SessionId {
        let sid = SessionId(self.next_session);
        self.next_session += 1;
        let mut mux = Mux::default();
        let channel = mux.open(PROTOCOL, id, &[]).ok();
        self.sessions.insert(
            sid,
            Session {
                mux,
                channel,
                pending: HashSet::new(),
                active: HashSet::new(),
                closed: false,
                addr,
            },
        );
        self.stats.sessions += 1;
        self.stats.active_sessions = self.sessions.len();
        sid
    }

    /// The client `session` counts for, if its address is known.
    fn client(&self, session: SessionId) -> Option<IpAddr> {
        self.sessions
            .get(&session)
            .and_then(|s| s.addr)
            .map(client_of)
    }

    fn client_add(&mut self, session: SessionId, f: impl FnOnce(&mut ClientUse)) {
        if let Some(ip) = self.client(session) {
            if let Some(c) = self.clients.get_mut(&ip) {
                f(c);
            }
        }
    }

    /// The splice with relay id `relay_id` ended on its own (a bound of the relay socket, or a
    /// DESTROY it forwarded): end its pairing as an `unpair` would.
    pub fn end_splice(&mut self, relay_id: u32) {
        let token = self
            .active
            .iter()
            .find(|(_, a)| a.relay_ids.contains(&relay_id))
            .map(|(t, _)| *t);
        if let Some(token) = token {
            self.end_active(token);
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            pending: self.pending.len(),
            active: self.active.len(),
            active_sessions: self.sessions.len(),
            ..self.stats
        }
    }

    /// One message from `session`'s connection. An error means the connection must end (call
    /// [`Server::close`] after dropping it).
    pub fn handle_input(&mut self, session: SessionId, msg: &[u8]) -> Result<(), Error> {
        let s = self.sessions.get_mut(&session).ok_or(Error::Closed)?;
        s.mux.handle_input(msg)?;
        self.process(session)
    }

    /// The connection of `session` ended (or the driver gave up on it): end its pairings and
    /// forget it.
    pub fn close(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.mux.handle_stream_closed();
        }
        let _ = self.process(session);
        self.end_session(session);
        if let Some(ip) = self.client(session) {
            if let Some(c) = self.clients.get_mut(&ip) {
                c.sessions = c.sessions.saturating_sub(1);
                if c.sessions == 0 && c.pending == 0 && c.active == 0 {
                    self.clients.remove(&ip);
                }
            }
        }
        self.sessions.remove(&session);
        self.stats.active_sessions = self.sessions.len();
    }

    /// Whether `session` is gone or its channel closed (its connection should end).
    pub fn is_closed(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_none_or(|s| s.closed)
    }

    /// The next message to write on `session`'s connection.
    pub fn poll_transmit(&mut self, session: SessionId) -> Option<Vec<u8>> {
        self.sessions.get_mut(&session)?.mux.poll_transmit()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The driver spliced relay streams for a [`Event::Matched`] pairing: tell both peers.
    /// Returns `false` if the pairing is gone (a side left meanwhile); the driver then removes
    /// the splice.
    pub fn confirm(&mut self, token: [u8; 32], initiator_id: u32, responder_id: u32) -> bool {
        let Some(links) = self.matching.remove(&token) else {
            return false;
        };
        // Both sides still there, or neither gets the pairing.
        let alive = links
            .iter()
            .all(|l| self.sessions.get(&l.session).is_some_and(|s| !s.closed));
        if !alive {
            self.stats.cancelled += 1;
            return false;
        }
        let relay_ids = [initiator_id, responder_id];
        for (i, link) in links.iter().enumerate() {
            self.client_add(link.session, |c| c.active += 1);
            let Some(s) = self.sessions.get_mut(&link.session) else {
                continue;
            };
            s.active.insert(token);
            if let Some(ch) = s.channel {
                let msg = Pair {
                    is_initiator: i == 0,
                    token,
                    id: relay_ids[i],
                    seq: 0,
                };
                let _ = s.mux.send(ch, PAIR, &to_vec(&msg));
            }
        }
        self.active.insert(token, Active { links, relay_ids });
        true
    }

    /// The driver could not splice a [`Event::Matched`] pairing: forget it (the peers time
    /// out, as they would with a relay that never answers).
    pub fn cancel(&mut self, token: [u8; 32]) {
        if self.matching.remove(&token).is_some() {
            self.stats.cancelled += 1;
        }
    }

    fn process(&mut self, session: SessionId) -> Result<(), Error> {
        loop {
            let Some(s) = self.sessions.get_mut(&session) else {
                return Ok(());
            };
            let Some(ev) = s.mux.poll_event() else {
                return Ok(());
            };
            match ev {
                MuxEvent::Message {
                    channel,
                    message_type,
                    payload,
                } if Some(channel) == s.channel => match message_type {
                    PAIR => {
                        let pair: Pair = from_prefix(&payload)?;
                        self.on_pair(session, pair);
                    }
                    UNPAIR => {
                        let unpair: Unpair = from_prefix(&payload)?;
                        self.on_unpair(session, unpair.token);
                    }
                    // JS ignores types past its message list.
                    _ => {}
                },
                MuxEvent::ChannelClosed { channel, .. } | MuxEvent::Rejected { channel, .. }
                    if Some(channel) == s.channel =>
                {
                    s.channel = None;
                    s.closed = true;
                    self.end_session(session);
                    self.events.push_back(Event::SessionClosed(session));
                }
                _ => {}
            }
        }
    }

    /// Whether `session` (and its client) may hold one more active pairing.
    fn may_activate(&self, session: SessionId) -> bool {
        let Some(s) = self.sessions.get(&session) else {
            return false;
        };
        let client_ok = self
            .client(session)
            .and_then(|ip| self.clients.get(&ip))
            .is_none_or(|c| c.active < self.config.max_active_per_ip);
        s.active.len() < self.config.max_active_per_session && client_ok
    }

    fn on_pair(&mut self, session: SessionId, pair: Pair) {
        let slot = usize::from(pair.is_initiator);
        if let Some(p) = self.pending.get(&pair.token) {
            if p.links[slot].is_some() {
                return;
            }
            // A session cannot pair with itself: both ends would be one peer.
            if p.links.iter().flatten().any(|l| l.session == session) {
                return;
            }
        } else if self.pending.len() >= self.config.max_pending {
            return;
        }
        let client_pending = self
            .client(session)
            .and_then(|ip| self.clients.get(&ip))
            .map_or(0, |c| c.pending);
        if client_pending >= self.config.max_pending_per_ip || !self.may_activate(session) {
            return;
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.pending.len() >= self.config.max_pending_per_session {
            return;
        }
        s.pending.insert(pair.token);
        let addr = s.addr;
        self.client_add(session, |c| c.pending += 1);
        self.stats.requested += 1;
        let p = self.pending.entry(pair.token).or_default();
        p.links[slot] = Some(Link {
            session,
            remote_id: pair.id,
            addr,
        });
        let [Some(responder), Some(initiator)] = p.links else {
            return;
        };
        self.pending.remove(&pair.token);
        for link in [initiator, responder] {
            if let Some(s) = self.sessions.get_mut(&link.session) {
                s.pending.remove(&pair.token);
            }
            self.client_add(link.session, |c| c.pending = c.pending.saturating_sub(1));
        }
        // Both sides within their bounds now (the other may have filled up meanwhile)?
        if !self.may_activate(initiator.session) || !self.may_activate(responder.session) {
            self.stats.cancelled += 1;
            return;
        }
        self.stats.matched += 1;
        self.matching.insert(pair.token, [initiator, responder]);
        self.events.push_back(Event::Matched {
            token: pair.token,
            initiator,
            responder,
        });
    }

    fn on_unpair(&mut self, session: SessionId, token: [u8; 32]) {
        if let Some(p) = self.pending.remove(&token) {
            for link in p.links.iter().flatten() {
                if let Some(s) = self.sessions.get_mut(&link.session) {
                    s.pending.remove(&token);
                }
                self.client_add(link.session, |c| c.pending = c.pending.saturating_sub(1));
            }
            self.stats.cancelled += 1;
            return;
        }
        let ours = self
            .sessions
            .get(&session)
            .is_some_and(|s| s.active.contains(&token));
        if ours {
            self.end_active(token);
            self.stats.cancelled += 1;
        }
    }

    fn end_active(&mut self, token: [u8; 32]) {
        let Some(a) = self.active.remove(&token) else {
            return;
        };
        for link in a.links {
            if let Some(s) = self.sessions.get_mut(&link.session) {
                s.active.remove(&token);
            }
            self.client_add(link.session, |c| c.active = c.active.saturating_sub(1));
        }
        self.events.push_back(Event::Unspliced {
            token,
            relay_ids: a.relay_ids,
        });
    }

    fn end_session(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let pending: Vec<_> = s.pending.drain().collect();
        let active: Vec<_> = s.active.drain().collect();
        for token in pending {
            // JS deletes the whole pairing, even a side another session filled.
            if let Some(p) = self.pending.remove(&token) {
                for link in p.links.iter().flatten() {
                    if let Some(s) = self.sessions.get_mut(&link.session) {
                        s.pending.remove(&token);
                    }
                    self.client_add(link.session, |c| c.pending = c.pending.saturating_sub(1));
                }
                self.stats.cancelled += 1;
            }
        }
        let matching: Vec<_> = self
            .matching
            .iter()
            .filter(|(_, links)| links.iter().any(|l| l.session == session))
            .map(|(t, _)| *t)
            .collect();
        for token in matching {
            self.matching.remove(&token);
        }
        for token in active {
            self.end_active(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, Event as ClientEvent};

    /// Move every message between a client and its session until both are quiet.
    fn pump(server: &mut Server, sid: SessionId, client: &mut Client) {
        loop {
            let mut moved = false;
            while let Some(m) = client.poll_transmit() {
                server.handle_input(sid, &m).expect("server input");
                moved = true;
            }
            while let Some(m) = server.poll_transmit(sid) {
                client.handle_input(&m).expect("client input");
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    #[test]
    fn two_clients_pair_and_unpair() {
        let mut server = Server::default();
        let (ka, kb) = ([1u8; 32], [2u8; 32]);
        let sa = server.accept(Some(&ka));
        let sb = server.accept(Some(&kb));
        let mut a = Client::new(Some(&ka));
        let mut b = Client::new(Some(&kb));
        pump(&mut server, sa, &mut a);
        pump(&mut server, sb, &mut b);
        let token = [9u8; 32];
        a.pair(true, token, 11).expect("pair a");
        pump(&mut server, sa, &mut a);
        assert_eq!(server.poll_event(), None);
        assert_eq!(server.stats().pending, 1);
        b.pair(false, token, 22).expect("pair b");
        pump(&mut server, sb, &mut b);
        let Some(Event::Matched {
            initiator,
            responder,
            ..
        }) = server.poll_event()
        else {
            panic!("no match");
        };
        assert_eq!((initiator.session, initiator.remote_id), (sa, 11));
        assert_eq!((responder.session, responder.remote_id), (sb, 22));
        assert!(server.confirm(token, 1000, 2000));
        pump(&mut server, sa, &mut a);
        pump(&mut server, sb, &mut b);
        let paired = |c: &mut Client| {
            std::iter::from_fn(|| c.poll_event()).find(|e| matches!(e, ClientEvent::Paired { .. }))
        };
        assert!(matches!(
            paired(&mut a),
            Some(ClientEvent::Paired {
                relay_id: 1000,
                is_initiator: true,
                ..
            })
        ));
        assert!(matches!(
            paired(&mut b),
            Some(ClientEvent::Paired {
                relay_id: 2000,
                is_initiator: false,
                ..
            })
        ));
        assert_eq!(server.stats().active, 1);
        a.unpair(token);
        pump(&mut server, sa, &mut a);
        assert_eq!(
            server.poll_event(),
            Some(Event::Unspliced {
                token,
                relay_ids: [1000, 2000]
            })
        );
    }

    #[test]
    fn duplicate_slots_are_ignored_and_closing_cancels() {
        let mut server = Server::default();
        let sa = server.accept(None);
        let mut a = Client::new(None);
        pump(&mut server, sa, &mut a);
        a.pair(true, [1; 32], 1).expect("pair");
        pump(&mut server, sa, &mut a);
        // A second client asking for the same slot is ignored.
        let sb = server.accept(None);
        let mut b = Client::new(None);
        pump(&mut server, sb, &mut b);
        b.pair(true, [1; 32], 2).expect("pair");
        pump(&mut server, sb, &mut b);
        assert_eq!(server.stats().requested, 1);
        server.close(sa);
        assert_eq!(server.stats().pending, 0);
        assert_eq!(server.stats().active_sessions, 1);
    }

    #[test]
    fn closing_a_session_ends_its_active_pairings() {
        let mut server = Server::default();
        let sa = server.accept(None);
        let sb = server.accept(None);
        let mut a = Client::new(None);
        let mut b = Client::new(None);
        pump(&mut server, sa, &mut a);
        pump(&mut server, sb, &mut b);
        a.pair(false, [3; 32], 1).expect("pair");
        b.pair(true, [3; 32], 2).expect("pair");
        pump(&mut server, sa, &mut a);
        pump(&mut server, sb, &mut b);
        assert!(matches!(server.poll_event(), Some(Event::Matched { .. })));
        assert!(server.confirm([3; 32], 7, 8));
        server.close(sb);
        assert_eq!(
            server.poll_event(),
            Some(Event::Unspliced {
                token: [3; 32],
                relay_ids: [7, 8]
            })
        );
        assert_eq!(server.stats().active, 0);
    }

    #[test]
    fn per_session_cap_holds() {
        let mut server = Server::new(Config {
            max_pending: 10,
            max_pending_per_session: 2,
            ..Config::default()
        });
        let sa = server.accept(None);
        let mut a = Client::new(None);
        pump(&mut server, sa, &mut a);
        for i in 0..5u8 {
            a.pair(true, [i; 32], 1).expect("pair");
        }
        pump(&mut server, sa, &mut a);
        assert_eq!(server.stats().pending, 2);
    }

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], port))
    }

    /// A session from `at` with its client, channel open.
    fn session(server: &mut Server, at: SocketAddr) -> Option<(SessionId, Client)> {
        let sid = server.accept_from(None, at)?;
        let mut c = Client::new(None);
        pump(server, sid, &mut c);
        Some((sid, c))
    }

    fn pair(server: &mut Server, s: &mut (SessionId, Client), init: bool, token: u8, id: u32) {
        s.1.pair(init, [token; 32], id).expect("pair");
        pump(server, s.0, &mut s.1);
    }

    #[test]
    fn matched_links_carry_their_session_addresses() {
        let mut server = Server::default();
        let mut a = session(&mut server, addr(1, 1)).unwrap();
        let mut b = session(&mut server, addr(2, 2)).unwrap();
        pair(&mut server, &mut a, true, 1, 11);
        pair(&mut server, &mut b, false, 1, 22);
        let Some(Event::Matched {
            initiator,
            responder,
            ..
        }) = server.poll_event()
        else {
            panic!("no match");
        };
        assert_eq!(initiator.addr, Some(addr(1, 1)));
        assert_eq!(responder.addr, Some(addr(2, 2)));
    }

    #[test]
    fn a_session_cannot_pair_with_itself() {
        let mut server = Server::default();
        let (a, _client) = session(&mut server, addr(1, 1)).unwrap();
        // What a hand-made client could send on its one channel: both roles of one token.
        for is_initiator in [true, false] {
            server.on_pair(
                a,
                Pair {
                    is_initiator,
                    token: [1; 32],
                    id: 11,
                    seq: 0,
                },
            );
        }
        assert_eq!(server.poll_event(), None);
        assert_eq!(server.stats().matched, 0);
    }

    #[test]
    fn splices_and_sessions_are_capped_per_session_and_per_client() {
        let config = Config {
            max_active_per_session: 2,
            max_active_per_ip: 3,
            max_sessions_per_ip: 3,
            ..Config::default()
        };
        let mut server = Server::new(config);
        // Two sessions of one client (the attacker's two fresh keys), one of another.
        let mut a = session(&mut server, addr(1, 1)).unwrap();
        let mut b = session(&mut server, addr(1, 2)).unwrap();
        let mut c = session(&mut server, addr(2, 1)).unwrap();
        let mut matched = 0;
        for t in 0..10u8 {
            pair(&mut server, &mut a, true, t, 1);
            pair(&mut server, &mut b, false, t, 2);
            while let Some(ev) = server.poll_event() {
                if let Event::Matched { token, .. } = ev {
                    assert!(server.confirm(token, 100 + u32::from(t), 200 + u32::from(t)));
                    matched += 1;
                }
            }
        }
        // Each session is in at most 2 splices: 2, not 10.
        assert_eq!(matched, 2);
        assert_eq!(server.stats().active, 2);
        // A legitimate pair from elsewhere still gets one.
        let mut d = session(&mut server, addr(3, 1)).unwrap();
        pair(&mut server, &mut c, true, 99, 5);
        pair(&mut server, &mut d, false, 99, 6);
        assert!(matches!(server.poll_event(), Some(Event::Matched { .. })));
        // The third session of client 10.0.0.1 is accepted, the fourth refused.
        assert!(session(&mut server, addr(1, 3)).is_some());
        assert!(server.accept_from(None, addr(1, 4)).is_none());
        // A splice ending on its own (idle, bytes, DESTROY) frees the pairing and the caps.
        server.end_splice(100);
        assert!(matches!(
            server.poll_event(),
            Some(Event::Unspliced {
                relay_ids: [100, 200],
                ..
            })
        ));
        assert_eq!(server.stats().active, 1);
        pair(&mut server, &mut a, true, 50, 1);
        pair(&mut server, &mut b, false, 50, 2);
        assert!(matches!(server.poll_event(), Some(Event::Matched { .. })));
    }

    #[test]
    fn pending_requests_are_capped_per_client() {
        let config = Config {
            max_pending_per_ip: 5,
            ..Config::default()
        };
        let mut server = Server::new(config);
        let mut sessions: Vec<_> = (0..4)
            .map(|p| session(&mut server, addr(1, p)).unwrap())
            .collect();
        for (i, s) in sessions.iter_mut().enumerate() {
            for t in 0..4u8 {
                pair(&mut server, s, true, (i as u8) * 10 + t, 1);
            }
        }
        assert_eq!(server.stats().pending, 5);
        // Another client is not held back.
        let mut other = session(&mut server, addr(2, 1)).unwrap();
        pair(&mut server, &mut other, true, 200, 1);
        assert_eq!(server.stats().pending, 6);
        // Closing sessions releases their share.
        for (sid, _) in sessions.drain(..) {
            server.close(sid);
        }
        let mut again = session(&mut server, addr(1, 9)).unwrap();
        for t in 0..5u8 {
            pair(&mut server, &mut again, true, 100 + t, 1);
        }
        assert_eq!(server.stats().pending, 6);
    }

    #[test]
    fn garbage_ends_the_session_with_an_error() {
        let mut server = Server::default();
        let sa = server.accept(None);
        assert!(server.handle_input(sa, &[0xff, 0xff, 0xff]).is_err());
    }
}
