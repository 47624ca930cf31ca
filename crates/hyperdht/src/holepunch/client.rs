//! The client's side of holepunching (hyperdht `lib/connect.js` `holepunch`, `probeRound`,
//! `roundPunch`, `updateHolepunch`).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use peerhost_dht_rpc::{self as rpc, Reply, RequestError, RequestId};

use super::PunchSocket;
use super::puncher::Puncher;
use crate::constants::{Command, ErrorCode, Firewall, Mode};
use crate::crypto::{self, SecurePayload};
use crate::error::ConnectError;
use crate::messages::{self, Holepunch, HolepunchPayload, RelayInfo};
use crate::node::{Established, Node, OpId, Route};

/// How long a client holepunch may take from the first probe (the random strategies run
/// ~35 s; JS has no overall limit but the same probes).
const CLIENT_DEADLINE: Duration = Duration::from_secs(45);
/// `probeRound`: give a server that does not know its NAT yet a moment.
const UNKNOWN_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A probe is in flight; `retry`: one more probe allowed.
    Probe { retry: bool },
    /// Waiting [`UNKNOWN_GRACE`] after a probe.
    Grace { retry: bool },
    /// The punch-round message is in flight.
    Punch,
    /// Both sides punch.
    Punching,
}

/// One connect's holepunch.
#[derive(Debug)]
pub(crate) struct ClientSession {
    est: Established,
    target: [u8; 32],
    /// The node our handshake went through (JS `c.connect.relayAddress`).
    relay_node: SocketAddrV4,
    server_address: SocketAddrV4,
    secure: SecurePayload,
    hp_id: u64,
    server_relay: RelayInfo,
    round: u64,
    phase: Phase,
    server_token: Option<[u8; 32]>,
    /// The token we sent in the message in flight, and the peer address it was for.
    sent_token: Option<([u8; 32], SocketAddrV4)>,
    /// The relay the message in flight went to.
    asked: SocketAddrV4,
    pub(crate) puncher: Puncher,
    request: Option<RequestId>,
    resume_at: Option<Instant>,
    deadline: Instant,
    random: bool,
}

impl ClientSession {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [self.resume_at, self.puncher.next, Some(self.deadline)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a punch from `from` on `socket` is for this session.
    pub(crate) fn accepts_punch(&self, socket: &PunchSocket, from: &SocketAddrV4) -> bool {
        let ours = *socket == self.puncher.socket
            || self
                .puncher
                .extra
                .iter()
                .any(|id| *socket == PunchSocket::Extra(*id));
        ours && (from.ip() == self.server_address.ip() || self.puncher.is_remote(from))
    }
}

/// `pickServerRelay`: the server relay equal to the node we used, else the first.
fn pick_server_relay(relays: &[RelayInfo], relay_node: SocketAddrV4) -> Option<RelayInfo> {
    relays
        .iter()
        .find(|r| r.relay_address == relay_node)
        .or_else(|| relays.first())
        .cloned()
}

impl Node {
    /// Start holepunching for connect `op` (the remote is holepunchable; both sides are
    /// firewalled). `relay_node` is the node our handshake went through.
    pub(crate) fn start_holepunch(
        &mut self,
        now: Instant,
        op: OpId,
        est: Established,
        relay_node: SocketAddrV4,
        server_address: SocketAddrV4,
    ) {
        let relays = est
            .payload
            .holepunch
            .as_ref()
            .map(|h| (h.id, h.relays.clone()));
        let Some((hp_id, relays)) = relays else {
            return self.fail_connect(now, op, ConnectError::CannotHolepunch);
        };
        let Some(server_relay) = pick_server_relay(&relays, relay_node) else {
            return self.fail_connect(now, op, ConnectError::CannotHolepunch);
        };
        let (firewall, _) = self.our_nat();
        let socket = PunchSocket::Dht(self.dht.default_socket());
        let secure = SecurePayload::new(&crypto::holepunch_secret(est.handshake.hash()));
        let session = ClientSession {
            target: crypto::hash(&est.remote_public_key),
            est,
            relay_node,
            server_address,
            secure,
            hp_id,
            server_relay,
            round: 0,
            phase: Phase::Probe { retry: true },
            server_token: None,
            sent_token: None,
            asked: server_relay.relay_address,
            puncher: Puncher::new(true, socket, firewall),
            request: None,
            resume_at: None,
            deadline: now + CLIENT_DEADLINE,
            random: false,
        };
        // > Open a quick low ttl session against what we think is the server
        session
            .puncher
            .open_session(&mut self.holepunch.commands, server_address);
        self.holepunch.clients.insert(op, session);
        self.send_probe(now, op);
    }

    fn probe_payload(&mut self, op: OpId, punching: bool, token: bool) -> Option<HolepunchPayload> {
        let (firewall, addresses) = self.our_nat();
        let s = self.holepunch.clients.get_mut(&op)?;
        s.puncher.local_firewall = firewall;
        let round = s.round;
        s.round += 1;
        let token = token.then(|| s.secure.token(s.server_address.ip()));
        Some(HolepunchPayload {
            error: ErrorCode::NONE,
            firewall,
            round,
            connected: false,
            punching,
            addresses: Some(addresses),
            remote_address: (!punching).then_some(s.server_address),
            token,
            remote_token: if punching { s.server_token } else { None },
        })
    }

    fn send_probe(&mut self, now: Instant, op: OpId) {
        let Some(payload) = self.probe_payload(op, false, false) else {
            return;
        };
        let Some(s) = self.holepunch.clients.get(&op) else {
            return;
        };
        let (peer, relay) = (s.server_relay.peer_address, s.server_relay.relay_address);
        self.send_holepunch(now, op, peer, relay, &payload);
    }

    /// `updateHolepunch`: one PEER_HOLEPUNCH through `relay` for `peer_address`.
    fn send_holepunch(
        &mut self,
        now: Instant,
        op: OpId,
        peer_address: SocketAddrV4,
        relay: SocketAddrV4,
        payload: &HolepunchPayload,
    ) {
        let socket = self.dht.default_socket();
        let Some(s) = self.holepunch.clients.get_mut(&op) else {
            return;
        };
        let value = messages::encode(&Holepunch {
            mode: Mode::FROM_CLIENT,
            id: s.hp_id,
            payload: s.secure.encrypt(payload),
            peer_address: Some(peer_address),
        });
        s.sent_token = payload.token.map(|t| (t, peer_address));
        s.asked = relay;
        let params = rpc::RequestParams {
            token: None,
            command: Command::PeerHolepunch.as_u64(),
            target: Some(s.target),
            value: Some(value),
        };
        let opts = rpc::RequestOptions {
            socket: Some(socket),
            ..rpc::RequestOptions::default()
        };
        match self.dht.request(now, relay, params, opts) {
            Ok(rid) => {
                s.request = Some(rid);
                self.holepunch.requests.insert(rid, op);
            }
            Err(_) => self.end_client(now, op, Err(ConnectError::HolepunchAborted)),
        }
    }

    /// `abort()`: tell the server we give up (fire and forget), then fail.
    fn abort_client(&mut self, now: Instant, op: OpId, err: ConnectError) {
        if let Some(s) = self.holepunch.clients.get(&op) {
            let (peer, relay) = (s.server_relay.peer_address, s.server_relay.relay_address);
            let payload = HolepunchPayload {
                error: ErrorCode::ABORTED,
                firewall: s.puncher.local_firewall,
                round: s.round,
                connected: false,
                punching: false,
                addresses: None,
                remote_address: None,
                token: None,
                remote_token: None,
            };
            self.send_holepunch(now, op, peer, relay, &payload);
            if let Some(rid) = self.holepunch.clients.get(&op).and_then(|s| s.request) {
                self.holepunch.requests.remove(&rid);
            }
        }
        self.end_client(now, op, Err(err));
    }

    /// Finish the session and the connect op.
    fn end_client(&mut self, now: Instant, op: OpId, result: Result<Established, ConnectError>) {
        let Some(mut s) = self.holepunch.clients.remove(&op) else {
            return;
        };
        if s.random {
            self.holepunch.random_punches = self.holepunch.random_punches.saturating_sub(1);
        }
        if let Some(rid) = s.request.take() {
            self.holepunch.requests.remove(&rid);
        }
        let keep = s.puncher.connected.map(|(sock, _)| sock);
        let close = s.puncher.stop(keep);
        if !close.is_empty() {
            self.holepunch
                .commands
                .push_back(super::PunchCommand::Close { ids: close });
        }
        if !self.ops.contains_key(&op) {
            return;
        }
        match result {
            Ok(est) => self.succeed_connect(now, op, est),
            Err(e) => self.fail_connect(now, op, e),
        }
    }

    pub(crate) fn client_holepunch_response(
        &mut self,
        now: Instant,
        op: OpId,
        id: RequestId,
        result: Result<Reply, RequestError>,
    ) {
        let Some(s) = self.holepunch.clients.get_mut(&op) else {
            return;
        };
        if s.request != Some(id) {
            return;
        }
        s.request = None;
        if !self.ops.contains_key(&op) {
            self.holepunch.clients.remove(&op);
            return;
        }
        let asked = s.asked;
        let decoded = result.ok().and_then(|reply| {
            let hp = messages::decode::<Holepunch>(reply.value.as_deref()?).ok()?;
            // > if (!hs || hs.mode !== REPLY || !res.from equals relay) BAD_HOLEPUNCH_REPLY
            (hp.mode == Mode::REPLY && reply.from == asked).then_some(hp)
        });
        let Some(hp) = decoded else {
            return self.end_client(now, op, Err(ConnectError::HolepunchAborted));
        };
        let Some(remote) = s.secure.decrypt(&hp.payload) else {
            // HOLEPUNCH_INVALID
            return self.end_client(now, op, Err(ConnectError::HolepunchAborted));
        };
        if remote.error != ErrorCode::NONE {
            // REMOTE_ABORTED (TRY_LATER needs a relay token we never hold).
            return self.end_client(now, op, Err(ConnectError::HolepunchAborted));
        }
        let echoed = match (s.sent_token, remote.remote_token) {
            (Some((t, peer)), Some(r)) if t == r => Some(*peer.ip()),
            _ => None,
        };
        let addresses = remote.addresses.clone().unwrap_or_default();
        s.puncher
            .update_remote(remote.punching, remote.firewall, &addresses, echoed);
        match s.phase {
            Phase::Probe { retry } => {
                if remote.token.is_some() {
                    s.server_token = remote.token;
                }
                // > if the relays match, use the server's address as that relay saw it
                if let Some(peer) = hp.peer_address {
                    if s.server_relay.relay_address == s.relay_node && peer != s.server_address {
                        s.server_address = peer;
                        s.puncher.open_session(&mut self.holepunch.commands, peer);
                    }
                }
                if remote.firewall == Firewall::UNKNOWN {
                    s.phase = Phase::Grace { retry };
                    s.resume_at = Some(now + UNKNOWN_GRACE);
                    return;
                }
                self.after_probe(now, op, retry);
            }
            Phase::Punch => {
                if !s.puncher.remote_punching {
                    // REMOTE_NOT_HOLEPUNCHING
                    return self.end_client(now, op, Err(ConnectError::HolepunchAborted));
                }
                let random = s.puncher.local_firewall >= Firewall::RANDOM
                    || s.puncher.remote_firewall >= Firewall::RANDOM;
                let hp = &mut self.holepunch;
                let Some(s) = hp.clients.get_mut(&op) else {
                    return;
                };
                let ok = s.puncher.punch(now, &mut hp.commands, || {
                    hp.next_extra = hp.next_extra.wrapping_add(1);
                    hp.next_extra
                });
                if !ok {
                    // REMOTE_NOT_HOLEPUNCHABLE
                    return self.end_client(now, op, Err(ConnectError::HolepunchAborted));
                }
                if random {
                    s.random = true;
                    hp.random_punches += 1;
                }
                s.phase = Phase::Punching;
            }
            Phase::Grace { .. } | Phase::Punching => {}
        }
    }

    /// The end of `probeRound`: retry, give up, or go to the punch round.
    fn after_probe(&mut self, now: Instant, op: OpId, retry: bool) {
        let (local, _) = self.our_nat();
        let Some(s) = self.holepunch.clients.get_mut(&op) else {
            return;
        };
        let remote = s.puncher.remote_firewall;
        if (remote == Firewall::UNKNOWN || s.server_token.is_none()) && retry {
            s.phase = Phase::Probe { retry: false };
            return self.send_probe(now, op);
        }
        if remote == Firewall::UNKNOWN || local == Firewall::UNKNOWN {
            // HOLEPUNCH_PROBE_TIMEOUT
            return self.abort_client(now, op, ConnectError::HolepunchAborted);
        }
        if remote >= Firewall::RANDOM && local >= Firewall::RANDOM {
            // HOLEPUNCH_DOUBLE_RANDOMIZED_NATS: a case for a blind relay.
            return self.abort_client(now, op, ConnectError::HolepunchAborted);
        }
        let random = remote >= Firewall::RANDOM || local >= Firewall::RANDOM;
        if random && self.holepunch.random_punches >= 1 {
            // JS waits (TRY_LATER) only with a relay token; without one it aborts.
            return self.abort_client(now, op, ConnectError::HolepunchAborted);
        }
        // > roundPunch: punching: true, our token for the server's address, its token echoed,
        // > through the node our handshake went through.
        let Some(payload) = self.probe_payload(op, true, true) else {
            return;
        };
        let Some(s) = self.holepunch.clients.get_mut(&op) else {
            return;
        };
        s.phase = Phase::Punch;
        let (peer, relay) = (s.server_address, s.relay_node);
        self.send_holepunch(now, op, peer, relay, &payload);
    }

    pub(crate) fn client_timeout(&mut self, now: Instant, op: OpId) {
        let Some(s) = self.holepunch.clients.get_mut(&op) else {
            return;
        };
        if now >= s.deadline {
            return self.end_client(now, op, Err(ConnectError::HolepunchAborted));
        }
        if s.resume_at.is_some_and(|t| t <= now) {
            s.resume_at = None;
            if let Phase::Grace { retry } = s.phase {
                s.phase = Phase::Probe { retry };
                return self.after_probe(now, op, retry);
            }
        }
        let hp = &mut self.holepunch;
        let Some(s) = hp.clients.get_mut(&op) else {
            return;
        };
        s.puncher
            .handle_timeout(now, &mut self.rng, &mut hp.commands);
        if s.puncher.exhausted && s.puncher.connected.is_none() {
            self.end_client(now, op, Err(ConnectError::HolepunchAborted));
        }
    }

    /// A punch reached connect `op`'s socket: connect the stream there.
    pub(crate) fn client_punched(
        &mut self,
        now: Instant,
        op: OpId,
        socket: PunchSocket,
        from: SocketAddrV4,
    ) {
        let hp = &mut self.holepunch;
        let Some(s) = hp.clients.get_mut(&op) else {
            return;
        };
        if !s.puncher.on_punch(socket, from, &mut hp.commands) {
            return;
        }
        let mut est = s.est.clone();
        est.route = match socket {
            PunchSocket::Dht(socket) => Route::Connect { socket, addr: from },
            PunchSocket::Extra(id) => Route::Punched {
                socket: id,
                addr: from,
            },
        };
        self.end_client(now, op, Ok(est));
    }
}
