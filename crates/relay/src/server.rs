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
//! its own limits.

use std::collections::{HashMap, HashSet, VecDeque};

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_pending: 4096,
            max_pending_per_session: 64,
        }
    }
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
    /// (hyperdht relays use the peer's public key, matching what the client opens).
    pub fn accept(&mut self, id: Option<&[u8]>) -> SessionId {
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
            },
        );
        self.stats.sessions += 1;
        self.stats.active_sessions = self.sessions.len();
        sid
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
        let relay_ids = [initiator_id, responder_id];
        for (i, link) in links.iter().enumerate() {
            let Some(s) = self.sessions.get_mut(&link.session) else {
                return false;
            };
            if s.closed {
                return false;
            }
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

    fn on_pair(&mut self, session: SessionId, pair: Pair) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let slot = usize::from(pair.is_initiator);
        if let Some(p) = self.pending.get(&pair.token) {
            if p.links[slot].is_some() {
                return;
            }
        } else if self.pending.len() >= self.config.max_pending {
            return;
        }
        if s.pending.len() >= self.config.max_pending_per_session {
            return;
        }
        s.pending.insert(pair.token);
        self.stats.requested += 1;
        let p = self.pending.entry(pair.token).or_default();
        p.links[slot] = Some(Link {
            session,
            remote_id: pair.id,
        });
        let [Some(responder), Some(initiator)] = p.links else {
            return;
        };
        self.pending.remove(&pair.token);
        for link in [initiator, responder] {
            if let Some(s) = self.sessions.get_mut(&link.session) {
                s.pending.remove(&pair.token);
            }
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

    #[test]
    fn garbage_ends_the_session_with_an_error() {
        let mut server = Server::default();
        let sa = server.accept(None);
        assert!(server.handle_input(sa, &[0xff, 0xff, 0xff]).is_err());
    }
}
