//! Listening servers (hyperdht `lib/server.js` and `lib/announcer.js`), as part of [`Node`].
//!
//! A server is a key pair plus a firewall callback. It:
//! - installs a retained route for `hash(publicKey)` in our own router, so handshakes that
//!   reach this node for that target are answered here;
//! - announces itself (FIND_PEER walk, then a signed ANNOUNCE to the 3 closest nodes, which
//!   store a route back to us), again every [`crate::Config::announce_interval`], and
//!   unannounces from nodes that dropped out of the set;
//! - answers each Noise IK `PEER_HANDSHAKE` once (retransmits and relayed copies get the same
//!   reply for [`crate::Config::handshake_clear_wait`]), asks the firewall callback, and hands
//!   the accepted connection to the driver as [`Event::Incoming`].
//!
//! Holepunch slots and their PEER_HOLEPUNCH answers are in `holepunch/server.rs`; a client's
//! `relayThrough` makes the route [`Route::Relay`]. Not here yet (see `protocol/hyperdht.md`):
//! background pings of the relays between announces.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Instant;

use peerhost_dht_rpc::{self as rpc, IncomingRequest, QueryError, QueryParams, SocketKind};
use peerhost_ids::KeyPair;
use peerhost_noise::{Handshake as Noise, Pattern};

use crate::constants::{Command, ErrorCode, Firewall, ns};
use crate::crypto::{self, announce_signable};
use crate::error::Error;
use crate::messages::{
    self, Announce, Handshake, NoisePayload, PeerRecord, RelayInfo, SecretStreamInfo, UdxInfo,
};
use crate::node::{
    Established, Event, FirewallFn, Forward, Incoming, Listening, Node, OpId, Outcome, QueryOwner,
    RequestOwner, Route,
};

/// Announce relays kept (`pickBest`: the 3 closest replies).
const RELAYS: usize = 3;

/// One handshake a server answered, kept to answer copies identically.
#[derive(Debug)]
struct Answered {
    reply: Option<Vec<u8>>,
    expires: Instant,
}

pub(crate) struct Server {
    key_pair: KeyPair,
    firewall: FirewallFn,
    relays: Vec<RelayInfo>,
    relay_addresses: Vec<SocketAddrV4>,
    /// Nodes that stored our route in the last announce, and the one before.
    current: Vec<SocketAddrV4>,
    previous: Vec<SocketAddrV4>,
    closest: Vec<SocketAddrV4>,
    announcing: Option<rpc::QueryId>,
    next_announce: Option<Instant>,
    listen_op: Option<OpId>,
    handshakes: HashMap<[u8; 32], Answered>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("key_pair", &self.key_pair)
            .field("relays", &self.relays)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Whether `node` stored our route in one of the last two announces (it may relay
    /// handshakes to us, and name another relay for our answer).
    pub(crate) fn announced_to(&self, node: SocketAddrV4) -> bool {
        self.current.contains(&node) || self.previous.contains(&node)
    }

    pub(crate) fn poll_timeout(&self) -> Instant {
        let hs = self.handshakes.values().map(|h| h.expires).min();
        match (self.next_announce, hs) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            // Far away: nothing to do until an input.
            (None, None) => Instant::now() + std::time::Duration::from_secs(3600),
        }
    }
}

impl Node {
    /// Listen for connections to `key_pair`'s public key (JS `createServer().listen(keyPair)`).
    ///
    /// `firewall` sees each client's key, payload and address and returns true to reject it.
    /// The outcome ([`Outcome::Listen`]) arrives once the first announce finished; connections
    /// arrive as [`Event::Incoming`] from then on (and before, for clients that find us
    /// directly).
    pub fn listen(
        &mut self,
        now: Instant,
        key_pair: KeyPair,
        firewall: FirewallFn,
    ) -> Result<OpId, Error> {
        let target = crypto::hash(&key_pair.public_key());
        if self.servers.contains_key(&target) {
            return Err(Error::KeyPairAlreadyUsed);
        }
        let id = self.next_op_id().map_err(|()| Error::Overloaded)?;
        let record = messages::encode(&PeerRecord {
            public_key: key_pair.public_key(),
            relay_addresses: vec![],
        });
        self.forwards.retain(
            target,
            Forward {
                relay: None,
                record,
            },
        );
        self.servers.insert(
            target,
            Server {
                key_pair,
                firewall,
                relays: Vec::new(),
                relay_addresses: Vec::new(),
                current: Vec::new(),
                previous: Vec::new(),
                closest: Vec::new(),
                announcing: None,
                next_announce: None,
                listen_op: Some(id),
                handshakes: HashMap::new(),
            },
        );
        self.ops.insert(id, crate::client::Op::Listen);
        self.start_announce(now, target);
        Ok(id)
    }

    /// Stop listening on `public_key`: drop the route and unannounce from the relays
    /// (JS `server.close()`). Connections already made are not affected.
    pub fn unlisten(&mut self, now: Instant, public_key: &[u8; 32]) -> bool {
        let target = crypto::hash(public_key);
        let Some(s) = self.servers.remove(&target) else {
            return false;
        };
        self.forwards.delete(&target);
        if let Some(q) = s.announcing {
            self.queries.remove(&q);
            self.dht.cancel_query(now, q);
        }
        if let Some(op) = s.listen_op {
            self.ops.remove(&op);
            self.done(op, Outcome::Listen(Err(Error::Destroyed)));
        }
        let mut nodes = s.current;
        nodes.extend(s.previous);
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            self.unannounce_from(now, &s.key_pair, target, node);
        }
        true
    }

    /// The relay addresses of a listening server (what it puts in handshake replies; pass them
    /// to [`Node::announce`] for topics, as hyperswarm does).
    pub fn relay_addresses(&self, public_key: &[u8; 32]) -> Vec<SocketAddrV4> {
        self.servers
            .get(&crypto::hash(public_key))
            .map(|s| s.relay_addresses.clone())
            .unwrap_or_default()
    }

    /// `Announcer._unannounce`: FIND_PEER for a fresh token, then a signed UNANNOUNCE.
    fn unannounce_from(
        &mut self,
        now: Instant,
        key_pair: &KeyPair,
        target: [u8; 32],
        to: SocketAddrV4,
    ) {
        let params = rpc::RequestParams {
            token: None,
            command: Command::FindPeer.as_u64(),
            target: Some(target),
            value: None,
        };
        if let Ok(rid) = self
            .dht
            .request(now, to, params, rpc::RequestOptions::default())
        {
            self.requests.insert(
                rid,
                RequestOwner::UnannounceToken {
                    key_pair: Box::new(key_pair.clone()),
                    target,
                },
            );
        }
    }

    pub(crate) fn refresh_servers(&mut self, now: Instant) {
        let targets: Vec<[u8; 32]> = self.servers.keys().copied().collect();
        for t in targets {
            let idle = self.servers.get(&t).is_some_and(|s| s.announcing.is_none());
            if idle {
                self.start_announce(now, t);
            }
        }
    }

    /// `Announcer._update`: a FIND_PEER walk whose commit announces to the 3 closest nodes.
    fn start_announce(&mut self, now: Instant, target: [u8; 32]) {
        let Some(s) = self.servers.get_mut(&target) else {
            return;
        };
        s.next_announce = None;
        let key_pair = s.key_pair.clone();
        let mut left = RELAYS;
        let commit = move |reply: &rpc::Reply| -> Option<rpc::CommitRequest> {
            if left == 0 {
                return None;
            }
            let token = reply.token?;
            let node_id = reply.from_id?;
            left -= 1;
            let peer = PeerRecord {
                public_key: key_pair.public_key(),
                relay_addresses: vec![],
            };
            let signable = announce_signable(
                &ns::ANNOUNCE,
                &target,
                node_id.as_bytes(),
                &token,
                &peer,
                None,
            );
            Some(rpc::CommitRequest {
                command: Command::Announce.as_u64(),
                token: Some(token),
                value: Some(messages::encode(&Announce {
                    peer: Some(peer),
                    refresh: None,
                    signature: Some(key_pair.sign(&signable)),
                    bump: 0,
                })),
            })
        };
        let mut params = QueryParams::new(target, Command::FindPeer.as_u64());
        params.commit = rpc::Commit::Custom(Box::new(commit));
        params.nodes = s.closest.clone();
        match self.dht.query(now, params) {
            Ok(q) => {
                s.announcing = Some(q);
                self.queries.insert(q, QueryOwner::Announcer(target));
            }
            Err(_) => {
                // Overloaded: try again at the next interval.
                s.next_announce = Some(now + self.config.announce_interval);
            }
        }
    }

    pub(crate) fn on_announced(
        &mut self,
        now: Instant,
        target: [u8; 32],
        result: Result<rpc::QueryResult, QueryError>,
    ) {
        let remote = self.dht.remote_address();
        let interval = self.config.announce_interval;
        let Some(s) = self.servers.get_mut(&target) else {
            return;
        };
        s.announcing = None;
        s.next_announce = Some(now + interval);
        let mut stale = Vec::new();
        let outcome = match result {
            Ok(r) => {
                let mut relays = Vec::new();
                let mut relay_addresses: Vec<SocketAddrV4> = remote.into_iter().collect();
                let mut current = Vec::new();
                for c in r.commits.iter().filter(|c| c.error == 0) {
                    if relay_addresses.len() < RELAYS {
                        relay_addresses.push(c.from);
                    }
                    relays.push(RelayInfo {
                        relay_address: c.from,
                        peer_address: c.to,
                    });
                    current.push(c.from);
                }
                if !r.closest_replies.is_empty() {
                    s.closest = r.closest_replies.iter().map(|c| c.from).collect();
                }
                // > nodes from the generation before last that are not in the new set
                stale = s
                    .previous
                    .iter()
                    .filter(|n| !current.contains(n) && !s.current.contains(n))
                    .copied()
                    .collect();
                s.previous = std::mem::replace(&mut s.current, current);
                s.relays = relays;
                s.relay_addresses = relay_addresses.clone();
                Ok(Listening {
                    public_key: s.key_pair.public_key(),
                    relay_addresses,
                })
            }
            // > try { await q.finished() } catch { /* ignore failures... */ }
            // A failed walk still lets the server listen (clients may find it directly), as
            // in JS; the next interval tries again.
            Err(_) => Ok(Listening {
                public_key: s.key_pair.public_key(),
                relay_addresses: s.relay_addresses.clone(),
            }),
        };
        let key_pair = s.key_pair.clone();
        if let Some(op) = s.listen_op.take() {
            self.ops.remove(&op);
            self.done(op, Outcome::Listen(outcome));
        }
        for node in stale {
            self.unannounce_from(now, &key_pair, target, node);
        }
    }

    pub(crate) fn servers_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (t, s) in &mut self.servers {
            s.handshakes.retain(|_, h| h.expires > now);
            if s.next_announce.is_some_and(|n| n <= now) && s.announcing.is_none() {
                due.push(*t);
            }
        }
        for t in due {
            self.start_announce(now, t);
        }
    }

    /// `Server._onpeerhandshake` + `_addHandshake`: the Noise reply for a handshake that
    /// reached our server `target`, or `None` to stay silent.
    pub(crate) fn server_handshake(
        &mut self,
        now: Instant,
        target: [u8; 32],
        hs: &Handshake,
        req: &IncomingRequest,
    ) -> Option<Vec<u8>> {
        let key = crypto::hash(&hs.noise);
        let max = self.config.max_handshakes;
        let wait = self.config.handshake_clear_wait;
        let s = self.servers.get_mut(&target)?;
        // > The next couple of statements MUST run within the same tick to prevent a malicious
        // > peer from flooding us with handshakes.
        if let Some(a) = s.handshakes.get(&key) {
            return a.reply.clone();
        }
        if s.handshakes.len() >= max {
            return None;
        }
        s.handshakes.insert(
            key,
            Answered {
                reply: None,
                expires: now + wait,
            },
        );
        let direct = hs.peer_address.is_none();
        let client_address = hs.peer_address.unwrap_or(req.from);

        let mut noise = Noise::new(
            Pattern::IK,
            false,
            s.key_pair.clone(),
            &ns::PEER_HANDSHAKE,
            None,
        )
        .ok()?;
        let remote_payload = noise
            .read_message(&hs.noise)
            .ok()
            .and_then(|p| messages::decode::<NoisePayload>(&p).ok())?;
        let remote_public_key = noise.remote_public_key()?;
        if (s.firewall)(&remote_public_key, &remote_payload, client_address) {
            return None;
        }
        let relay_addresses = s.relay_addresses.clone();
        let relays = s.relays.clone();

        let remote_udx = remote_payload.udx.and_then(|u| u32::try_from(u.id).ok());
        let error = if remote_payload.version != 1 {
            ErrorCode::VERSION_MISMATCH
        } else if remote_udx.is_some() {
            ErrorCode::NONE
        } else {
            ErrorCode::ABORTED
        };
        let our_remote = self.dht.remote_address();
        let mut addresses4: Vec<SocketAddrV4> = our_remote.into_iter().collect();
        if self.config.share_local_address {
            addresses4.extend(self.local_addresses());
        }
        // Whether the client can reach us at a public address of ours (see the route below).
        let ours_public = addresses4
            .iter()
            .any(|a| !crate::node::is_private(a.ip()) && !crate::node::is_reserved(a.ip()));
        let local_id = (error == ErrorCode::NONE).then(|| self.alloc_stream_id());
        // > holepunch: ourRemoteAddr ? null : { id, relays } — a slot when both sides are
        // > firewalled and the handshake came through a relay (holepunch/server.rs).
        let punch_slot = if !direct
            && our_remote.is_none()
            && remote_payload.firewall != Firewall::OPEN
            && local_id.is_some()
        {
            match (local_id, remote_udx) {
                (Some(l), Some(r)) => self.holepunch_slot(now, relays, client_address, (l, r)),
                _ => None,
            }
        } else {
            None
        };
        let payload = NoisePayload {
            error,
            firewall: if our_remote.is_some() {
                Firewall::OPEN
            } else {
                Firewall::UNKNOWN
            },
            holepunch: punch_slot.clone(),
            addresses4,
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: u64::from(local_id.unwrap_or(0)),
                seq: 0,
            }),
            secret_stream: Some(SecretStreamInfo { version: 1 }),
            relay_addresses: (!relay_addresses.is_empty()).then_some(relay_addresses),
            ..NoisePayload::default()
        };
        let reply = noise.write_message(&messages::encode(&payload)).ok();
        let s = self.servers.get_mut(&target)?;
        if let Some(a) = s.handshakes.get_mut(&key) {
            a.reply.clone_from(&reply);
        }
        let reply = reply?;
        let result = noise.into_result()?;
        if let Some(slot) = &punch_slot {
            self.holepunch_slot_keys(slot.id, result.hash());
        }
        if let (Some(local_id), Some(remote_id)) = (local_id, remote_udx) {
            // > if (remotePayload.firewall === FIREWALL.OPEN || direct) connect now
            let route = if let Some(r) = &remote_payload.relay_through {
                // > _relayConnection: the client chose a relay; we pair as the responder.
                Route::Relay {
                    relay: r.public_key,
                    token: r.token,
                    is_initiator: false,
                    socket: self.dht.default_socket(),
                }
            } else if remote_payload.firewall == Firewall::OPEN || direct {
                // > const sock = direct ? socket : this.dht.socket
                // JS's libudx hands a stream every packet with its id whatever socket it
                // arrives on; ours listen on the socket they were made on. So the stream goes
                // on the socket the client will send to: the one it reached us on (direct),
                // or the one it picks from our reply (`client.rs`: the first public address
                // of ours, a server-socket address, else where the relay saw our reply come
                // from: the socket the request arrived on) when it connects too, which it does
                // unless it waits for our holepunch.
                let client_connects = our_remote.is_some() || punch_slot.is_none();
                let socket = if direct || (client_connects && !ours_public) {
                    req.socket
                } else if client_connects {
                    SocketKind::Server
                } else {
                    self.dht.default_socket()
                };
                Route::Connect {
                    socket,
                    addr: client_address,
                }
            } else {
                // The client connects to us: to the address a relay saw our reply come from
                // (the socket the request arrived on) or, on a LAN, to our server socket.
                Route::Await {
                    sockets: vec![req.socket, other(req.socket)],
                    // Holepunching may take the random strategies' ~35 s.
                    timeout: if punch_slot.is_some() {
                        crate::holepunch::AWAIT_PUNCHED
                    } else {
                        self.config.passive_wait
                    },
                }
            };
            self.events.push_back(Event::Incoming(Box::new(Incoming {
                server: remote_server_key(&result),
                client_address,
                established: Established {
                    remote_public_key,
                    handshake: result,
                    local_id,
                    remote_id,
                    route,
                    payload: remote_payload,
                },
            })));
        } else if let Some(id) = local_id {
            self.release_stream_id(id);
        }
        Some(reply)
    }
}

fn other(s: SocketKind) -> SocketKind {
    if s == SocketKind::Server {
        SocketKind::Client
    } else {
        SocketKind::Server
    }
}

fn remote_server_key(result: &peerhost_noise::HandshakeResult) -> [u8; 32] {
    *result.public_key()
}
