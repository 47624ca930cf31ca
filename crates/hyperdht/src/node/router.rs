//! The router (router.js): PEER_HANDSHAKE and PEER_HOLEPUNCH, answered for our servers or
//! relayed along the routes announces left.

use super::*;

impl Node {
    pub(super) fn on_peer_handshake(&mut self, now: Instant, req: &IncomingRequest) {
        let Some(hs) = req
            .value
            .as_deref()
            .and_then(|v| messages::decode::<Handshake>(v).ok())
        else {
            return self.invalid();
        };
        let Some(target) = req.target else {
            return self.invalid();
        };
        if self.servers.contains_key(&target) {
            // JS runs the server's handshake for any mode and then answers only these three;
            // we do not start connections we will never answer.
            // Ours: FROM_SECOND_RELAY names where our answer goes (its relayAddress); we take
            // that only from a node we announced ourselves to (routes.rs).
            let second_ok = hs.mode == Mode::FROM_SECOND_RELAY
                && hs.relay_address.is_some()
                && self
                    .servers
                    .get(&target)
                    .is_some_and(|s| s.announced_to(req.from));
            let answerable =
                hs.mode == Mode::FROM_CLIENT || hs.mode == Mode::FROM_RELAY || second_ok;
            if !answerable {
                return self.invalid();
            }
            let Some(reply) = self.server_handshake(now, target, &hs, req) else {
                return;
            };
            let opts = Self::BARE;
            match hs.mode {
                Mode::FROM_CLIENT => {
                    let value = messages::encode(&Handshake {
                        mode: Mode::REPLY,
                        noise: reply,
                        peer_address: None,
                        relay_address: None,
                    });
                    self.reply(req, Some(&value), opts);
                }
                Mode::FROM_RELAY | Mode::FROM_SECOND_RELAY => {
                    let to = if hs.mode == Mode::FROM_RELAY {
                        req.from
                    } else {
                        let Some(relay) = hs.relay_address else {
                            return;
                        };
                        relay
                    };
                    let value = messages::encode(&Handshake {
                        mode: Mode::FROM_SERVER,
                        noise: reply,
                        peer_address: hs.peer_address,
                        relay_address: None,
                    });
                    let _ = self.dht.relay(req, Some(&value), to, None);
                }
                _ => {}
            }
            return;
        }
        let relay = self.forwards.get(&target).and_then(|f| f.relay);
        match hs.mode {
            Mode::FROM_CLIENT => {
                // > req.relay(…, relayAddress || relay)
                // Ours: only the route the server announced to us; a relayAddress the request
                // names is ignored (JS clients never set one), so nobody can aim us at an
                // address of their choice (routes.rs).
                let Some(to) = relay else {
                    // > help the user route
                    return self.reply(
                        req,
                        None,
                        ReplyOptions {
                            token: false,
                            closer_nodes: true,
                            to: None,
                            socket: None,
                        },
                    );
                };
                let value = messages::encode(&Handshake {
                    mode: Mode::FROM_RELAY,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                });
                self.stats.relayed += 1;
                self.routes.open_handshake(req.tid, target, req.from, now);
                let _ = self.dht.relay(req, Some(&value), to, None);
            }
            Mode::FROM_RELAY => {
                let Some(to) = relay else { return };
                let value = messages::encode(&Handshake {
                    mode: Mode::FROM_SECOND_RELAY,
                    noise: hs.noise,
                    peer_address: hs.peer_address,
                    relay_address: Some(req.from),
                });
                self.stats.relayed += 1;
                let _ = self.dht.relay(req, Some(&value), to, None);
            }
            Mode::FROM_SERVER => {
                let Some(to) = hs.peer_address else { return };
                // Ours: only to a client whose handshake (this tid, this target) we relayed.
                if !self.routes.handshake(req.tid, target, to, now) {
                    return self.invalid();
                }
                self.routes.open_holepunch(target, to, req.from, now);
                let value = messages::encode(&Handshake {
                    mode: Mode::REPLY,
                    noise: hs.noise,
                    peer_address: Some(req.from),
                    relay_address: None,
                });
                self.reply(
                    req,
                    Some(&value),
                    ReplyOptions {
                        to: Some(to),
                        ..Self::BARE
                    },
                );
            }
            _ => {}
        }
    }

    pub(super) fn on_peer_holepunch(&mut self, now: Instant, req: &IncomingRequest) {
        let Some(hp) = req
            .value
            .as_deref()
            .and_then(|v| messages::decode::<Holepunch>(v).ok())
        else {
            return self.invalid();
        };
        let target = req.target;
        let is_server = target.is_some_and(|t| self.servers.contains_key(&t));
        let relay = target.and_then(|t| self.forwards.get(&t).and_then(|f| f.relay));
        match hp.mode {
            Mode::FROM_CLIENT => {
                // > req.relay(…, peerAddress || relay)
                // Ours: the peerAddress only if it is the server this client's handshake came
                // from through us (routes.rs); else the announced route.
                let to = match (hp.peer_address, target) {
                    (Some(server), Some(t)) if self.routes.holepunch(t, req.from, server, now) => {
                        Some(server)
                    }
                    (Some(server), _) if Some(server) == relay => Some(server),
                    (Some(_), _) => return self.invalid(),
                    (None, _) => relay,
                };
                let Some(to) = to else {
                    return;
                };
                let value = messages::encode(&Holepunch {
                    mode: Mode::FROM_RELAY,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                });
                let _ = self.dht.relay(req, Some(&value), to, None);
            }
            // A slot of one of our servers (holepunch/server.rs); unknown slots and
            // non-servers stay silent, as JS does.
            Mode::FROM_RELAY if is_server => self.on_server_holepunch(now, req, &hp),
            Mode::FROM_SERVER => {
                // Ours: only back to a client that holepunches this server through us.
                let known = match (hp.peer_address, target) {
                    (Some(client), Some(t)) => self.routes.holepunch(t, client, req.from, now),
                    _ => false,
                };
                if !known {
                    return self.invalid();
                }
                let value = messages::encode(&Holepunch {
                    mode: Mode::REPLY,
                    id: hp.id,
                    payload: hp.payload,
                    peer_address: Some(req.from),
                });
                self.reply(
                    req,
                    Some(&value),
                    ReplyOptions {
                        to: hp.peer_address,
                        ..Self::BARE
                    },
                );
            }
            _ => {}
        }
    }
}
