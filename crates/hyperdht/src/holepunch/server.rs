//! The server's side of holepunching (hyperdht `lib/server.js` `_addHandshake` slots and
//! `_onpeerholepunch`).
//!
//! A handshake that came through a relay from a firewalled client, to a server that is itself
//! firewalled, gets a *slot*: its id and our announce relays go into the reply's `holepunch`
//! field, and the slot answers the client's `PEER_HOLEPUNCH` messages (relayed to us as
//! `FROM_RELAY`) until the punch connects or runs out. The connection's UDX stream waits on
//! our DHT sockets (the handshake's [`crate::Route::Await`]); we punch from the default one.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use peerhost_dht_rpc::IncomingRequest;

use super::puncher::Puncher;
use super::{MAX_SERVER_SESSIONS, PunchSocket};
use crate::constants::{ErrorCode, Firewall, Mode};
use crate::crypto::{self, SecurePayload};
use crate::messages::{self, Holepunch, HolepunchInfo, HolepunchPayload, RelayInfo};
use crate::node::Node;

/// How long a slot waits for the client to start punching (`HANDSHAKE_INITIAL_TIMEOUT`).
const PREPUNCH: Duration = Duration::from_secs(10);
/// How long a slot lives once punching started (the random strategies run ~35 s).
const PUNCHING: Duration = Duration::from_secs(45);

/// One holepunch slot.
#[derive(Debug)]
pub(crate) struct ServerSession {
    client_address: SocketAddrV4,
    relays: Vec<RelayInfo>,
    /// Keyed once the handshake reply is written ([`Node::holepunch_slot_keys`]).
    secure: Option<SecurePayload>,
    round: u64,
    pub(crate) puncher: Puncher,
    expires: Instant,
}

impl ServerSession {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [self.puncher.next, Some(self.expires)]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn client_host(&self) -> Option<std::net::Ipv4Addr> {
        Some(*self.client_address.ip())
    }
}

impl Node {
    /// Open a slot for a relayed handshake from `client_address` (`_addHandshake` with a
    /// puncher). `None` when we are reachable (no holepunch needed) or full.
    pub(crate) fn holepunch_slot(
        &mut self,
        now: Instant,
        relays: Vec<RelayInfo>,
        client_address: SocketAddrV4,
        stream: (u32, u32),
    ) -> Option<HolepunchInfo> {
        if relays.is_empty() || self.holepunch.servers.len() >= MAX_SERVER_SESSIONS {
            return None;
        }
        let (firewall, _) = self.our_nat();
        if firewall == Firewall::OPEN {
            return None;
        }
        let id = self.holepunch.next_slot;
        self.holepunch.next_slot += 1;
        let socket = PunchSocket::Dht(self.dht.default_socket());
        let mut puncher = Puncher::new(false, socket, firewall);
        // Birthday sockets when our NAT randomizes: the connection waits on them too.
        puncher.allow_extra = true;
        puncher.stream = Some(stream);
        self.holepunch.servers.insert(
            id,
            ServerSession {
                client_address,
                relays: relays.clone(),
                secure: None,
                round: 0,
                puncher,
                expires: now + PREPUNCH,
            },
        );
        Some(HolepunchInfo { id, relays })
    }

    /// Key slot `id` with the handshake's hash (`hs.payload = new SecurePayload(...)`).
    pub(crate) fn holepunch_slot_keys(&mut self, id: u64, handshake_hash: &[u8; 64]) {
        if let Some(s) = self.holepunch.servers.get_mut(&id) {
            s.secure = Some(SecurePayload::new(&crypto::holepunch_secret(
                handshake_hash,
            )));
        }
    }

    /// `_onpeerholepunch`: a client's holepunch message relayed to us.
    pub(crate) fn on_server_holepunch(
        &mut self,
        now: Instant,
        req: &IncomingRequest,
        hp: &Holepunch,
    ) {
        let (firewall, addresses) = self.our_nat();
        let hps = &mut self.holepunch;
        let Some(s) = hps.servers.get_mut(&hp.id) else {
            return;
        };
        let Some(peer_address) = hp.peer_address else {
            return;
        };
        let Some(remote) = s.secure.as_ref().and_then(|k| k.decrypt(&hp.payload)) else {
            return;
        };
        s.puncher.local_firewall = firewall;
        let is_server_relay = s.relays.iter().any(|r| r.relay_address == req.from);
        let reply =
            |s: &mut ServerSession, error: ErrorCode, token: Option<[u8; 32]>| HolepunchPayload {
                error,
                firewall,
                round: s.round,
                connected: false,
                punching: s.puncher.is_punching(),
                addresses: Some(addresses.clone()),
                remote_address: None,
                token,
                remote_token: remote.token,
            };
        if remote.error != ErrorCode::NONE {
            if remote.round >= s.round {
                s.round = remote.round;
            }
            let r = reply(s, ErrorCode::ABORTED, None);
            let value = encrypt_reply(s, &r, peer_address);
            hps.servers.remove(&hp.id);
            self.relay_holepunch_reply(req, value);
            return;
        }
        let Some(token) = s.secure.as_ref().map(|k| k.token(peer_address.ip())) else {
            return;
        };
        let echoed = is_server_relay && remote.remote_token == Some(token);
        if remote.round >= s.round {
            s.round = remote.round;
            let addrs = remote.addresses.clone().unwrap_or_default();
            s.puncher.update_remote(
                remote.punching,
                remote.firewall,
                &addrs,
                echoed.then_some(*peer_address.ip()),
            );
        }
        let mut error = ErrorCode::NONE;
        let double_random = firewall == Firewall::RANDOM && remote.firewall == Firewall::RANDOM;
        if firewall == Firewall::UNKNOWN || double_random {
            error = ErrorCode::ABORTED;
        } else {
            // > Fast mode: we are consistent and the client already opened a session to us.
            let consistent = firewall == Firewall::CONSISTENT || firewall == Firewall::OPEN;
            if consistent
                && remote
                    .remote_address
                    .is_some_and(|a| addresses.contains(&a))
            {
                s.puncher.ping(&mut hps.commands, peer_address);
            }
            if s.puncher.remote_punching {
                let next_extra = &mut hps.next_extra;
                if !s.puncher.punch(now, &mut hps.commands, || {
                    *next_extra = next_extra.wrapping_add(1);
                    *next_extra
                }) {
                    error = ErrorCode::ABORTED;
                } else {
                    s.expires = now + PUNCHING;
                }
            }
        }
        let r = reply(s, error, is_server_relay.then_some(token));
        let value = encrypt_reply(s, &r, peer_address);
        if error != ErrorCode::NONE {
            if let Some(mut s) = hps.servers.remove(&hp.id) {
                let close = s.puncher.stop(None);
                if !close.is_empty() {
                    hps.commands
                        .push_back(super::PunchCommand::Close { ids: close });
                }
            }
        }
        self.relay_holepunch_reply(req, value);
    }

    fn relay_holepunch_reply(&mut self, req: &IncomingRequest, value: Vec<u8>) {
        // > req.relay(FROM_SERVER, req.from, { socket: puncher socket })
        let socket = self.dht.default_socket();
        let _ = self.dht.relay(req, Some(&value), req.from, Some(socket));
    }

    pub(crate) fn servers_holepunch_timeout(&mut self, now: Instant) {
        let hps = &mut self.holepunch;
        let mut done = Vec::new();
        for (id, s) in &mut hps.servers {
            s.puncher
                .handle_timeout(now, &mut self.rng, &mut hps.commands);
            if now >= s.expires || (s.puncher.exhausted && !s.puncher.is_punching()) {
                done.push(*id);
            }
        }
        for id in done {
            if let Some(mut s) = hps.servers.remove(&id) {
                let close = s.puncher.stop(None);
                if !close.is_empty() {
                    hps.commands
                        .push_back(super::PunchCommand::Close { ids: close });
                }
            }
        }
    }
}

/// The FROM_SERVER value answering a client message.
fn encrypt_reply(s: &ServerSession, payload: &HolepunchPayload, peer: SocketAddrV4) -> Vec<u8> {
    messages::encode(&Holepunch {
        mode: Mode::FROM_SERVER,
        id: 0,
        payload: s
            .secure
            .as_ref()
            .map(|k| k.encrypt(payload))
            .unwrap_or_default(),
        peer_address: Some(peer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::Command;
    use crate::holepunch::PunchCommand;
    use peerhost_dht_rpc::SocketKind;
    use peerhost_dht_rpc::messages::Message;

    const RELAY: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 51, 100, 10), 49737);
    const CLIENT: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(203, 0, 113, 12), 4444);
    const US: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(203, 0, 113, 11), 5555);

    /// A firewalled node whose NAT the DHT saw as `US` (consistent).
    fn node(now: Instant) -> Node {
        let mut config = crate::Config::default();
        config.dht.nat_seed = Some(US);
        config.dht.seed = Some([3; 32]);
        let mut n = Node::new(config, 49737, now, 1_700_000_000_000);
        while n.poll_transmit().is_some() {}
        n
    }

    fn message(from_client: &SecurePayload, p: &HolepunchPayload) -> IncomingRequest {
        let hp = Holepunch {
            mode: Mode::FROM_RELAY,
            id: 0,
            payload: from_client.encrypt(p),
            peer_address: Some(CLIENT),
        };
        IncomingRequest {
            tid: 77,
            from: RELAY,
            from_id: None,
            to: US,
            socket: SocketKind::Client,
            token: None,
            command: Command::PeerHolepunch.as_u64(),
            target: Some([1; 32]),
            value: Some(messages::encode(&hp)),
            size: 1500,
        }
    }

    /// The FROM_SERVER answer the node relayed back through `RELAY`, decrypted.
    fn answer(n: &mut Node, client: &SecurePayload) -> HolepunchPayload {
        let t = n.poll_transmit().expect("an answer");
        assert_eq!(t.destination, RELAY);
        let Ok(Message::Request(r)) = Message::decode(&t.contents) else {
            panic!("expected the relayed request");
        };
        assert_eq!(r.tid, 77, "the client's tid is kept");
        let hp: Holepunch = messages::decode(&r.value.expect("value")).expect("holepunch");
        assert_eq!(
            (hp.mode, hp.id, hp.peer_address),
            (Mode::FROM_SERVER, 0, Some(CLIENT))
        );
        client
            .decrypt(&hp.payload)
            .expect("decrypts with the shared secret")
    }

    #[test]
    fn probe_then_punch_round_like_js() {
        let now = Instant::now();
        let mut n = node(now);
        let hash = [7u8; 64];
        let relays = vec![RelayInfo {
            relay_address: RELAY,
            peer_address: US,
        }];
        let info = n
            .holepunch_slot(now, relays, CLIENT, (1, 2))
            .expect("a slot");
        assert_eq!(info.id, 0);
        n.holepunch_slot_keys(0, &hash);
        let client = SecurePayload::new(&crypto::holepunch_secret(&hash));

        // Probe round: the server tells its NAT, a token for the client's host, and, since the
        // client named our address, pings it at once (fast mode).
        let probe = HolepunchPayload {
            error: ErrorCode::NONE,
            firewall: Firewall::CONSISTENT,
            round: 0,
            connected: false,
            punching: false,
            addresses: Some(vec![CLIENT]),
            remote_address: Some(US),
            token: None,
            remote_token: None,
        };
        let req = message(&client, &probe);
        let hp: Holepunch = messages::decode(req.value.as_deref().unwrap()).unwrap();
        n.on_server_holepunch(now, &req, &hp);
        let a = answer(&mut n, &client);
        assert_eq!(
            (a.error, a.firewall, a.punching),
            (ErrorCode::NONE, Firewall::CONSISTENT, false)
        );
        assert_eq!(a.addresses, Some(vec![US]));
        let token = a
            .token
            .expect("a token: the message came through our announce relay");
        assert_eq!(
            n.poll_punch(),
            Some(PunchCommand::Send {
                socket: PunchSocket::Dht(SocketKind::Client),
                dest: CLIENT,
                ttl: 64
            })
        );

        // Punch round: our token echoed verifies the client's host; we punch (after 1 s) and
        // echo the client's token.
        let punch = HolepunchPayload {
            round: 1,
            punching: true,
            remote_address: None,
            token: Some([9; 32]),
            remote_token: Some(token),
            ..probe
        };
        let req = message(&client, &punch);
        let hp: Holepunch = messages::decode(req.value.as_deref().unwrap()).unwrap();
        n.on_server_holepunch(now, &req, &hp);
        let a = answer(&mut n, &client);
        assert!(a.punching);
        assert_eq!(a.remote_token, Some([9; 32]));
        assert_eq!(n.poll_punch(), None, "the responder waits a second");
        n.handle_timeout(now + Duration::from_secs(1));
        let punches: Vec<_> = std::iter::from_fn(|| n.poll_punch()).collect();
        assert!(punches.contains(&PunchCommand::Send {
            socket: PunchSocket::Dht(SocketKind::Client),
            dest: CLIENT,
            ttl: 64
        }));

        // A punch from the client is echoed.
        n.on_punch(now, PunchSocket::Dht(SocketKind::Client), CLIENT.into());
        assert!(matches!(
            n.poll_punch(),
            Some(PunchCommand::Send { dest: CLIENT, .. })
        ));
    }

    #[test]
    fn unknown_slots_and_foreign_keys_stay_silent() {
        let now = Instant::now();
        let mut n = node(now);
        let relays = vec![RelayInfo {
            relay_address: RELAY,
            peer_address: US,
        }];
        n.holepunch_slot(now, relays, CLIENT, (1, 2)).expect("slot");
        n.holepunch_slot_keys(0, &[7; 64]);
        let stranger = SecurePayload::new(&[1; 32]);
        let p = HolepunchPayload {
            error: ErrorCode::NONE,
            firewall: Firewall::CONSISTENT,
            round: 0,
            connected: false,
            punching: false,
            addresses: None,
            remote_address: None,
            token: None,
            remote_token: None,
        };
        let req = message(&stranger, &p);
        let hp: Holepunch = messages::decode(req.value.as_deref().unwrap()).unwrap();
        n.on_server_holepunch(now, &req, &hp);
        assert!(
            n.poll_transmit().is_none(),
            "a payload we cannot open gets no answer"
        );
        let other = Holepunch { id: 5, ..hp };
        n.on_server_holepunch(now, &req, &other);
        assert!(
            n.poll_transmit().is_none(),
            "an unknown slot gets no answer"
        );
    }
}
