//! Scripted-peer tests of the sans-IO core: hand-built dht-rpc requests go into a persistent
//! [`Node`], and the datagrams it answers with are decoded and checked field by field (h2's
//! `send_frame` / `recv_frame` style). No sockets, no clock: time is a fixed `Instant`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use peerhost_hyperdht::constants::{Command, ErrorCode, Firewall, Mode, ns};
use peerhost_hyperdht::crypto::{self, announce_signable};
use peerhost_hyperdht::dht_rpc::messages::{Message, Request, Response};
use peerhost_hyperdht::dht_rpc::{self, SocketKind};
use peerhost_hyperdht::messages::{
    self, Announce, Handshake, Holepunch, LookupReply, MutableGetResponse, MutablePutRequest,
    NoisePayload, PeerRecord, SecretStreamInfo, UdxInfo,
};
use peerhost_hyperdht::{Config, Event, Node, Outcome, Route};
use peerhost_ids::KeyPair;
use peerhost_noise::{Handshake as Noise, Pattern};

const NODE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 49737);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000);
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 6000);
const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 7000);

struct Harness {
    node: Node,
    now: Instant,
    tid: u16,
    events: Vec<Event>,
    /// Answer the node's address probes (a PING to an address it must first prove) as a live
    /// peer would; the answers they held are then returned with the rest.
    answer_probes: bool,
}

impl Harness {
    /// A persistent node (a bootstrapper at `NODE`), drained of its start-up traffic.
    fn new() -> Self {
        let now = Instant::now();
        let mut config = Config::default();
        config.dht = dht_rpc::Config::bootstrapper(NODE);
        config.dht.seed = Some([5; 32]);
        let mut h = Self {
            node: Node::new(config, NODE.port(), now, 1_700_000_000_000),
            now,
            tid: 100,
            events: Vec::new(),
            answer_probes: true,
        };
        h.drain();
        h.tick(Duration::from_secs(1));
        assert!(
            h.node.is_persistent(),
            "a bootstrapper is persistent at once"
        );
        h
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        self.node.handle_timeout(self.now);
        self.drain();
    }

    fn drain(&mut self) -> Vec<dht_rpc::Transmit> {
        while let Some(ev) = self.node.poll_event(self.now) {
            self.events.push(ev);
        }
        let mut out = Vec::new();
        while let Some(t) = self.node.poll_transmit() {
            out.push(t);
        }
        out
    }

    /// Send a request from `from` and return every datagram the node sends in answer.
    fn request(
        &mut self,
        from: SocketAddrV4,
        token: Option<[u8; 32]>,
        command: u64,
        target: Option<[u8; 32]>,
        value: Option<Vec<u8>>,
    ) -> Vec<dht_rpc::Transmit> {
        self.request_on(SocketKind::Server, from, token, command, target, value)
    }

    /// [`Harness::request`], arriving on our `socket`.
    fn request_on(
        &mut self,
        socket: SocketKind,
        from: SocketAddrV4,
        token: Option<[u8; 32]>,
        command: u64,
        target: Option<[u8; 32]>,
        value: Option<Vec<u8>>,
    ) -> Vec<dht_rpc::Transmit> {
        self.tid += 1;
        self.request_tid_on(socket, self.tid, from, token, command, target, value)
    }

    /// [`Harness::request`] with a chosen transaction id (a relayed message keeps its tid).
    fn request_tid(
        &mut self,
        tid: u16,
        from: SocketAddrV4,
        token: Option<[u8; 32]>,
        command: u64,
        target: Option<[u8; 32]>,
        value: Option<Vec<u8>>,
    ) -> Vec<dht_rpc::Transmit> {
        self.request_tid_on(SocketKind::Server, tid, from, token, command, target, value)
    }

    /// [`Harness::request_tid`], arriving on our `socket`.
    #[allow(clippy::too_many_arguments)]
    fn request_tid_on(
        &mut self,
        socket: SocketKind,
        tid: u16,
        from: SocketAddrV4,
        token: Option<[u8; 32]>,
        command: u64,
        target: Option<[u8; 32]>,
        value: Option<Vec<u8>>,
    ) -> Vec<dht_rpc::Transmit> {
        let req = Message::Request(Request {
            tid,
            to: NODE,
            id: None,
            token,
            internal: false,
            command,
            target,
            value,
        });
        self.node
            .handle_datagram(self.now, socket, SocketAddr::V4(from), &req.encode());
        let mut out = self.drain();
        while self.answer_probes {
            let Some(i) = out.iter().position(is_probe) else {
                break;
            };
            let probe = out.remove(i);
            let pong = Message::Response(Response {
                tid: request_of(&probe).tid,
                to: NODE,
                id: None,
                token: None,
                closer_nodes: None,
                error: 0,
                value: None,
            });
            self.node.handle_datagram(
                self.now,
                SocketKind::Server,
                SocketAddr::V4(probe.destination),
                &pong.encode(),
            );
            out.extend(self.drain());
        }
        out
    }

    /// A token the node hands to `from` (any reply carries one).
    fn token(&mut self, from: SocketAddrV4) -> [u8; 32] {
        let out = self.request(from, None, Command::Lookup.as_u64(), Some([0; 32]), None);
        response(&out[0])
            .token
            .expect("a LOOKUP reply carries a token")
    }
}

/// A PING the node sends to prove an address (an answer waits for its pong).
fn is_probe(t: &dht_rpc::Transmit) -> bool {
    matches!(
        Message::decode(&t.contents),
        Ok(Message::Request(Request {
            internal: true,
            command: 0,
            id: None,
            ..
        }))
    )
}

fn response(t: &dht_rpc::Transmit) -> Response {
    match Message::decode(&t.contents) {
        Ok(Message::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn request_of(t: &dht_rpc::Transmit) -> Request {
    match Message::decode(&t.contents) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn node_id() -> [u8; 32] {
    *dht_rpc::NodeId::from_addr(NODE).as_bytes()
}

fn signed_announce(
    kp: &KeyPair,
    target: [u8; 32],
    token: [u8; 32],
    namespace: &[u8; 32],
) -> Vec<u8> {
    let peer = PeerRecord {
        public_key: kp.public_key(),
        relay_addresses: vec![RELAY],
    };
    let signable = announce_signable(namespace, &target, &node_id(), &token, &peer, None);
    messages::encode(&Announce {
        peer: Some(peer),
        refresh: None,
        signature: Some(kp.sign(&signable)),
        bump: 0,
    })
}

#[test]
fn unknown_commands_get_an_error_reply() {
    let mut h = Harness::new();
    for command in [11u64, 200, 70_000, Command::Plugin.as_u64()] {
        let out = h.request(CLIENT, None, command, Some([1; 32]), Some(vec![1, 2, 3]));
        assert_eq!(out.len(), 1, "command {command}");
        let r = response(&out[0]);
        assert_eq!(r.error, dht_rpc::messages::UNKNOWN_COMMAND);
        assert_eq!(out[0].destination, CLIENT);
    }
    assert_eq!(h.node.stats().unknown_commands, 4);
}

#[test]
fn malformed_values_are_dropped_silently() {
    let mut h = Harness::new();
    let token = h.token(CLIENT);
    for command in 0..=9u64 {
        for value in [vec![0xff; 10], vec![], vec![0x05]] {
            let out = h.request(
                CLIENT,
                Some(token),
                command,
                Some([3; 32]),
                Some(value.clone()),
            );
            for t in &out {
                // Whatever is answered must be a well-formed response with no stored effect.
                let r = response(t);
                assert!(r.value.is_none() || command == 9 || command == 7 || command == 3);
            }
        }
    }
    assert_eq!(h.node.stored(), 0);
    assert!(h.node.stats().invalid > 0);
}

#[test]
fn announce_lookup_and_unannounce_check_signatures() {
    let mut h = Harness::new();
    let kp = KeyPair::from_seed(&[8; 32]);
    let topic = [0x77; 32];
    let token = h.token(CLIENT);

    // A signature over another token is refused without a reply.
    let forged = signed_announce(&kp, topic, [0; 32], &ns::ANNOUNCE);
    let out = h.request(
        CLIENT,
        Some(token),
        Command::Announce.as_u64(),
        Some(topic),
        Some(forged),
    );
    assert!(out.is_empty());

    let value = signed_announce(&kp, topic, token, &ns::ANNOUNCE);
    let out = h.request(
        CLIENT,
        Some(token),
        Command::Announce.as_u64(),
        Some(topic),
        Some(value),
    );
    let r = response(&out[0]);
    // > req.reply(null, { token: false, closerNodes: false })
    assert_eq!(
        (r.error, r.value.is_none(), r.token.is_none()),
        (0, true, true)
    );
    assert!(r.closer_nodes.is_none());

    let out = h.request(SERVER, None, Command::Lookup.as_u64(), Some(topic), None);
    let r = response(&out[0]);
    let l: LookupReply = messages::decode(&r.value.unwrap()).unwrap();
    assert_eq!(
        l.peers,
        vec![PeerRecord {
            public_key: kp.public_key(),
            relay_addresses: vec![RELAY]
        }]
    );

    // An UNANNOUNCE signed with the ANNOUNCE namespace is refused; a proper one removes it.
    let token = h.token(CLIENT);
    let wrong = signed_announce(&kp, topic, token, &ns::ANNOUNCE);
    assert!(
        h.request(
            CLIENT,
            Some(token),
            Command::Unannounce.as_u64(),
            Some(topic),
            Some(wrong)
        )
        .is_empty()
    );
    let unann = signed_announce(&kp, topic, token, &ns::UNANNOUNCE);
    let out = h.request(
        CLIENT,
        Some(token),
        Command::Unannounce.as_u64(),
        Some(topic),
        Some(unann),
    );
    assert_eq!(response(&out[0]).error, 0);
    let out = h.request(SERVER, None, Command::Lookup.as_u64(), Some(topic), None);
    assert!(response(&out[0]).value.is_none());
}

#[test]
fn mutable_put_get_and_sequence_rules() {
    let mut h = Harness::new();
    let kp = KeyPair::from_seed(&[9; 32]);
    let target = crypto::hash(&kp.public_key());
    let put = |seq: u64, value: &[u8]| {
        messages::encode(&MutablePutRequest {
            public_key: kp.public_key(),
            seq,
            value: value.to_vec(),
            signature: crypto::sign_mutable(seq, value, &kp),
        })
    };
    let token = h.token(CLIENT);
    let out = h.request(
        CLIENT,
        Some(token),
        Command::MutablePut.as_u64(),
        Some(target),
        Some(put(4, b"four")),
    );
    assert_eq!(response(&out[0]).error, 0);
    let out = h.request(
        CLIENT,
        Some(token),
        Command::MutablePut.as_u64(),
        Some(target),
        Some(put(4, b"FOUR")),
    );
    assert_eq!(response(&out[0]).error, ErrorCode::SEQ_REUSED.0);
    let out = h.request(
        CLIENT,
        Some(token),
        Command::MutablePut.as_u64(),
        Some(target),
        Some(put(3, b"three")),
    );
    assert_eq!(response(&out[0]).error, ErrorCode::SEQ_TOO_LOW.0);
    // A put under another key's target is dropped.
    let out = h.request(
        CLIENT,
        Some(token),
        Command::MutablePut.as_u64(),
        Some([1; 32]),
        Some(put(5, b"x")),
    );
    assert!(out.is_empty());
    // Without a token: dropped (JS requires one).
    let out = h.request(
        CLIENT,
        None,
        Command::MutablePut.as_u64(),
        Some(target),
        Some(put(5, b"x")),
    );
    assert!(out.is_empty());

    for (min, expect) in [(0u64, true), (4, true), (5, false)] {
        let out = h.request(
            SERVER,
            None,
            Command::MutableGet.as_u64(),
            Some(target),
            Some(vec![min as u8]),
        );
        let r = response(&out[0]);
        assert_eq!(r.value.is_some(), expect, "min seq {min}");
        if let Some(v) = r.value {
            let got: MutableGetResponse = messages::decode(&v).unwrap();
            assert_eq!((got.seq, got.value.as_slice()), (4, &b"four"[..]));
        }
    }
}

#[test]
fn immutable_put_checks_the_hash() {
    let mut h = Harness::new();
    let token = h.token(CLIENT);
    let value = b"some bytes".to_vec();
    let target = crypto::hash(&value);
    assert!(
        h.request(
            CLIENT,
            Some(token),
            Command::ImmutablePut.as_u64(),
            Some([2; 32]),
            Some(value.clone())
        )
        .is_empty()
    );
    let out = h.request(
        CLIENT,
        Some(token),
        Command::ImmutablePut.as_u64(),
        Some(target),
        Some(value.clone()),
    );
    assert_eq!(response(&out[0]).error, 0);
    let out = h.request(
        SERVER,
        None,
        Command::ImmutableGet.as_u64(),
        Some(target),
        None,
    );
    assert_eq!(response(&out[0]).value, Some(value));
}

#[test]
fn handshakes_are_routed_like_router_js() {
    let mut h = Harness::new();
    let server = KeyPair::from_seed(&[0x51; 32]);
    let target = crypto::hash(&server.public_key());
    let noise = vec![0xaa; 80];
    let hs = |mode, peer, relay| {
        messages::encode(&Handshake {
            mode,
            noise: noise.clone(),
            peer_address: peer,
            relay_address: relay,
        })
    };
    let cmd = Command::PeerHandshake.as_u64();

    // No route: help the client route (closer nodes, no value, no token).
    let out = h.request(
        CLIENT,
        None,
        cmd,
        Some(target),
        Some(hs(Mode::FROM_CLIENT, None, None)),
    );
    let r = response(&out[0]);
    // (closer nodes are only encoded when the table has some; this node knows none)
    assert!(r.value.is_none() && r.token.is_none() && r.error == 0);

    // The server announces itself from SERVER: the node now holds its route.
    let token = h.token(SERVER);
    let peer = PeerRecord {
        public_key: server.public_key(),
        relay_addresses: vec![],
    };
    let signable = announce_signable(&ns::ANNOUNCE, &target, &node_id(), &token, &peer, None);
    let ann = messages::encode(&Announce {
        peer: Some(peer.clone()),
        refresh: None,
        signature: Some(server.sign(&signable)),
        bump: 0,
    });
    assert_eq!(
        response(
            &h.request(
                SERVER,
                Some(token),
                Command::Announce.as_u64(),
                Some(target),
                Some(ann)
            )[0]
        )
        .error,
        0
    );
    // FIND_PEER answers with the record.
    let out = h.request(CLIENT, None, Command::FindPeer.as_u64(), Some(target), None);
    assert_eq!(response(&out[0]).value, Some(messages::encode(&peer)));

    // FROM_CLIENT → forwarded to the server as FROM_RELAY with the client's address, same tid.
    // A relayAddress the client names is ignored (issue 17): the route is the announce's.
    const VICTIM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 9999);
    let out = h.request(
        CLIENT,
        None,
        cmd,
        Some(target),
        Some(hs(Mode::FROM_CLIENT, None, Some(VICTIM))),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].destination, SERVER);
    let client_tid = h.tid;
    let fwd = request_of(&out[0]);
    assert_eq!(fwd.tid, client_tid);
    assert!(fwd.token.is_none());
    let v: Handshake = messages::decode(&fwd.value.unwrap()).unwrap();
    assert_eq!(
        (v.mode, v.peer_address, v.noise.len()),
        (Mode::FROM_RELAY, Some(CLIENT), 80)
    );

    // FROM_RELAY from another relay → FROM_SECOND_RELAY to the server, naming that relay.
    let out = h.request(
        RELAY,
        None,
        cmd,
        Some(target),
        Some(hs(Mode::FROM_RELAY, Some(CLIENT), None)),
    );
    let v: Handshake = messages::decode(&request_of(&out[0]).value.unwrap()).unwrap();
    assert_eq!(
        (out[0].destination, v.mode, v.peer_address, v.relay_address),
        (SERVER, Mode::FROM_SECOND_RELAY, Some(CLIENT), Some(RELAY))
    );

    // FROM_SERVER naming a client whose handshake we did not relay (another tid, another
    // address): nothing is sent anywhere (issue 17).
    assert!(
        h.request(
            SERVER,
            None,
            cmd,
            Some(target),
            Some(hs(Mode::FROM_SERVER, Some(VICTIM), None)),
        )
        .is_empty()
    );
    assert!(
        h.request(
            SERVER,
            None,
            cmd,
            Some(target),
            Some(hs(Mode::FROM_SERVER, Some(CLIENT), None)),
        )
        .is_empty(),
        "another tid"
    );
    // A holepunch to or from a pair that never shook hands through us: dropped.
    let hp = |mode, peer| {
        messages::encode(&Holepunch {
            mode,
            id: 3,
            payload: vec![1; 50],
            peer_address: peer,
        })
    };
    assert!(
        h.request(
            CLIENT,
            None,
            Command::PeerHolepunch.as_u64(),
            Some(target),
            Some(hp(Mode::FROM_CLIENT, Some(VICTIM))),
        )
        .is_empty()
    );
    assert!(
        h.request(
            SERVER,
            None,
            Command::PeerHolepunch.as_u64(),
            Some(target),
            Some(hp(Mode::FROM_SERVER, Some(CLIENT))),
        )
        .is_empty()
    );

    // FROM_SERVER with the client's tid → REPLY to the client, carrying the server's address.
    let out = h.request_tid(
        client_tid,
        SERVER,
        None,
        cmd,
        Some(target),
        Some(hs(Mode::FROM_SERVER, Some(CLIENT), None)),
    );
    assert_eq!(out[0].destination, CLIENT);
    let r = response(&out[0]);
    assert_eq!(r.to, CLIENT);
    let v: Handshake = messages::decode(&r.value.unwrap()).unwrap();
    assert_eq!((v.mode, v.peer_address), (Mode::REPLY, Some(SERVER)));

    // Holepunch relaying along that route: FROM_CLIENT → FROM_RELAY to the server (named or
    // by the announce), FROM_SERVER → REPLY.
    for peer in [None, Some(SERVER)] {
        let out = h.request(
            CLIENT,
            None,
            Command::PeerHolepunch.as_u64(),
            Some(target),
            Some(hp(Mode::FROM_CLIENT, peer)),
        );
        let v: Holepunch = messages::decode(&request_of(&out[0]).value.unwrap()).unwrap();
        assert_eq!(
            (out[0].destination, v.mode, v.peer_address, v.id),
            (SERVER, Mode::FROM_RELAY, Some(CLIENT), 3)
        );
    }
    let out = h.request(
        SERVER,
        None,
        Command::PeerHolepunch.as_u64(),
        Some(target),
        Some(hp(Mode::FROM_SERVER, Some(CLIENT))),
    );
    let v: Holepunch = messages::decode(&response(&out[0]).value.unwrap()).unwrap();
    assert_eq!(
        (out[0].destination, v.mode, v.peer_address),
        (CLIENT, Mode::REPLY, Some(SERVER))
    );
}

/// Issue 17, item 5: an IMMUTABLE_GET of a stored value from an address that never proved it
/// receives is not answered with the value (47 times the request, in JS): the node holds the
/// answer and probes the address with a PING no larger than the request; an address that
/// answers the probe gets the value.
#[test]
fn a_large_answer_waits_for_the_address_to_prove_it_receives() {
    let mut h = Harness::new();
    let value = vec![0x42; 1950];
    let target = crypto::hash(&value);
    let token = h.token(RELAY);
    let out = h.request(
        RELAY,
        Some(token),
        Command::ImmutablePut.as_u64(),
        Some(target),
        Some(value.clone()),
    );
    assert_eq!(response(&out[0]).error, 0);

    // From a spoofed source: only a probe goes there, smaller than the request.
    h.answer_probes = false;
    const VICTIM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 9999);
    let get = |h: &mut Harness, from| {
        h.request(
            from,
            None,
            Command::ImmutableGet.as_u64(),
            Some(target),
            None,
        )
    };
    let out = get(&mut h, VICTIM);
    let request_len = Message::Request(Request {
        tid: 1,
        to: NODE,
        command: Command::ImmutableGet.as_u64(),
        target: Some(target),
        ..Default::default()
    })
    .encode()
    .len();
    assert_eq!(out.len(), 1, "one probe, no answer");
    assert!(is_probe(&out[0]));
    assert_eq!(out[0].destination, VICTIM);
    assert!(
        out[0].contents.len() <= request_len,
        "{}",
        out[0].contents.len()
    );
    // Nobody answers the probe: after the hold time nothing more goes out.
    h.tick(Duration::from_secs(5));
    assert!(h.drain().is_empty());
    // Again: one more probe at most, never the value.
    for out in [get(&mut h, VICTIM), get(&mut h, VICTIM)] {
        assert!(out.iter().all(|t| t.contents.len() <= request_len));
    }

    // A live client answers the probe and gets the value.
    h.answer_probes = true;
    let out = get(&mut h, CLIENT);
    assert_eq!(out.len(), 1);
    assert_eq!(response(&out[0]).value, Some(value.clone()));
    // Proven now: the next answer goes at once, no probe.
    h.answer_probes = false;
    let out = get(&mut h, CLIENT);
    assert_eq!(response(&out[0]).value, Some(value));
}

#[test]
fn a_listening_server_answers_ik_once_and_asks_its_firewall() {
    let mut h = Harness::new();
    let server = KeyPair::from_seed(&[0x61; 32]);
    let client = KeyPair::from_seed(&[0x62; 32]);
    let blocked = KeyPair::from_seed(&[0x63; 32]);
    let blocked_pk = blocked.public_key();
    let target = crypto::hash(&server.public_key());
    let op = h
        .node
        .listen(
            h.now,
            server.clone(),
            Box::new(move |pk, _, _| *pk == blocked_pk),
        )
        .unwrap();
    h.drain();
    let _ = op;

    let ik = |kp: &KeyPair| {
        let mut n = Noise::new(
            Pattern::IK,
            true,
            kp.clone(),
            &ns::PEER_HANDSHAKE,
            Some(server.public_key()),
        )
        .unwrap();
        let payload = NoisePayload {
            firewall: Firewall::UNKNOWN,
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: 42,
                seq: 0,
            }),
            secret_stream: Some(SecretStreamInfo { version: 1 }),
            ..NoisePayload::default()
        };
        let msg = n.write_message(&messages::encode(&payload)).unwrap();
        (n, msg)
    };
    let cmd = Command::PeerHandshake.as_u64();
    let (mut n, msg) = ik(&client);
    let value = messages::encode(&Handshake {
        mode: Mode::FROM_RELAY,
        noise: msg.clone(),
        peer_address: Some(CLIENT),
        relay_address: None,
    });

    // Relayed: the reply goes back to the relay as FROM_SERVER with the client's address.
    let out = h.request(RELAY, None, cmd, Some(target), Some(value.clone()));
    assert_eq!(out[0].destination, RELAY);
    let v: Handshake = messages::decode(&request_of(&out[0]).value.unwrap()).unwrap();
    assert_eq!((v.mode, v.peer_address), (Mode::FROM_SERVER, Some(CLIENT)));
    let payload: NoisePayload = messages::decode(&n.read_message(&v.noise).unwrap()).unwrap();
    assert_eq!(payload.error, ErrorCode::NONE);
    assert!(payload.holepunch.is_none(), "not holepunchable yet");
    let server_udx = payload.udx.unwrap().id;

    let incoming: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Incoming(i) => Some(i.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(incoming.len(), 1);
    let inc = &incoming[0];
    assert_eq!(inc.established.remote_public_key, client.public_key());
    assert_eq!(
        (
            inc.established.remote_id,
            u64::from(inc.established.local_id)
        ),
        (42, server_udx)
    );
    assert_eq!(inc.client_address, CLIENT);
    assert!(
        matches!(inc.established.route, Route::Await { .. }),
        "a firewalled client connects to us"
    );
    assert_eq!(inc.established.handshake.hash(), n.result().unwrap().hash());

    // A copy through another relay gets the same reply and no second connection.
    let out = h.request(SERVER, None, cmd, Some(target), Some(value));
    let again: Handshake = messages::decode(&request_of(&out[0]).value.unwrap()).unwrap();
    assert_eq!(again.noise, v.noise);
    assert_eq!(
        h.events
            .iter()
            .filter(|e| matches!(e, Event::Incoming(_)))
            .count(),
        1
    );

    // The firewall rejects silently.
    let (_, msg) = ik(&blocked);
    let value = messages::encode(&Handshake {
        mode: Mode::FROM_CLIENT,
        noise: msg,
        peer_address: None,
        relay_address: None,
    });
    assert!(
        h.request(CLIENT, None, cmd, Some(target), Some(value))
            .is_empty()
    );

    // Garbage noise: silence, and the node is fine.
    let value = messages::encode(&Handshake {
        mode: Mode::FROM_CLIENT,
        noise: vec![1; 100],
        peer_address: None,
        relay_address: None,
    });
    assert!(
        h.request(CLIENT, None, cmd, Some(target), Some(value))
            .is_empty()
    );

    // A direct handshake from a reachable client: connect now, from the request's socket.
    let (_, msg) = {
        let mut n = Noise::new(
            Pattern::IK,
            true,
            client.clone(),
            &ns::PEER_HANDSHAKE,
            Some(server.public_key()),
        )
        .unwrap();
        let payload = NoisePayload {
            firewall: Firewall::OPEN,
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: 43,
                seq: 0,
            }),
            ..NoisePayload::default()
        };
        let m = n.write_message(&messages::encode(&payload)).unwrap();
        (n, m)
    };
    let value = messages::encode(&Handshake {
        mode: Mode::FROM_CLIENT,
        noise: msg,
        peer_address: None,
        relay_address: None,
    });
    let out = h.request(CLIENT, None, cmd, Some(target), Some(value));
    let r = response(&out[0]);
    assert_eq!(
        messages::decode::<Handshake>(&r.value.unwrap())
            .unwrap()
            .mode,
        Mode::REPLY
    );
    let last = h
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Incoming(i) => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        last.established.route,
        Route::Connect {
            socket: SocketKind::Server,
            addr: CLIENT
        }
    );

    // Handshakes are forgotten after the clear wait.
    h.tick(Duration::from_secs(11));
    assert!(h.events.iter().all(|e| !matches!(
        e,
        Event::Done {
            outcome: Outcome::Connect(_),
            ..
        }
    )));
}

/// A reachable client whose handshake came through a relay connects to where the relay saw
/// our reply come from, the socket the request reached us on; our stream must be there (JS's
/// libudx takes a stream's packets on any socket, ours only on its own).
#[test]
fn a_relayed_open_client_is_answered_on_the_socket_it_will_send_to() {
    for socket in [SocketKind::Client, SocketKind::Server] {
        let mut h = Harness::new();
        let server = KeyPair::from_seed(&[0x71; 32]);
        let client = KeyPair::from_seed(&[0x72; 32]);
        let target = crypto::hash(&server.public_key());
        h.node
            .listen(h.now, server.clone(), Box::new(|_, _, _| false))
            .unwrap();
        h.drain();
        let mut n = Noise::new(
            Pattern::IK,
            true,
            client.clone(),
            &ns::PEER_HANDSHAKE,
            Some(server.public_key()),
        )
        .unwrap();
        let payload = NoisePayload {
            firewall: Firewall::OPEN,
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: 44,
                seq: 0,
            }),
            ..NoisePayload::default()
        };
        let msg = n.write_message(&messages::encode(&payload)).unwrap();
        let value = messages::encode(&Handshake {
            mode: Mode::FROM_RELAY,
            noise: msg,
            peer_address: Some(CLIENT),
            relay_address: None,
        });
        let cmd = Command::PeerHandshake.as_u64();
        let out = h.request_on(socket, RELAY, None, cmd, Some(target), Some(value));
        assert_eq!(out[0].destination, RELAY);
        let inc = h
            .events
            .iter()
            .find_map(|e| match e {
                Event::Incoming(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            inc.established.route,
            Route::Connect {
                socket,
                addr: CLIENT
            },
            "request on {socket:?}"
        );
    }
}
