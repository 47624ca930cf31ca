//! Client operations of [`Node`] (hyperdht `index.js` and `lib/connect.js`): lookup,
//! announce / unannounce, find_peer, mutable and immutable put / get, and connect.
//!
//! Every operation is one dht-rpc query (plus, for connect, handshake requests): the query's
//! replies are checked and collected here, its commit step (announce, puts) is a
//! [`rpc::Commit::Custom`] that signs per node, and the query's end ends the operation with
//! one [`Event::Done`](crate::Event::Done).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::Instant;

use peerhost_dht_rpc::{
    self as rpc, QueryError, QueryId, QueryParams, Reply, RequestError, SocketKind,
};
use peerhost_encoding::Writer;
use peerhost_ids::KeyPair;
use peerhost_noise::{Handshake as Noise, Pattern};

use crate::constants::{Command, ErrorCode, Firewall, Mode, ns};
use crate::crypto::{self, announce_signable};
use crate::error::{ConnectError, Error};
use crate::messages::{
    self, Announce, Handshake, LookupReply, MutableGetResponse, MutablePutRequest, NoisePayload,
    PeerRecord, SecretStreamInfo, UdxInfo,
};
use crate::node::{
    AnnounceResult, Established, Event, FindPeerResult, ImmutablePutResult, ImmutableValue,
    LookupResult, MutablePutResult, MutableValue, Node, OpId, Outcome, QueryOwner, RequestOwner,
    Route, decode_record, is_reserved, match_address,
};

/// Handshakes in flight per connect (JS semaphore: 2, 3 with relay hints).
const HANDSHAKE_PARALLEL: usize = 2;
/// Retries of the FIND_PEER walk's requests during connect (JS `retries: 3`).
const CONNECT_RETRIES: u32 = 3;

/// Options of [`Node::announce`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnnounceOptions {
    /// Unannounce first from nodes that hold an older record of ours (JS `clear`, what
    /// hyperswarm does on a topic's first announce).
    pub clear: bool,
    /// A bump timestamp in wall-clock ms (JS `bump`); 0 for none.
    pub bump: u64,
}

/// Options of [`Node::connect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Nodes known to hold a route to the server (JS `relayAddresses`): handshakes go to
    /// them first, and the FIND_PEER walk starts from them.
    pub relay_addresses: Vec<SocketAddrV4>,
    /// Connect through this blind relay (JS `relayThrough`): the server is asked to pair
    /// through it too, and the connection runs over the relay ([`Route::Relay`]). Unless the
    /// server names its own relay, which wins, as in JS.
    pub relay_through: Option<[u8; 32]>,
}

#[derive(Debug)]
pub(crate) enum Op {
    Lookup {
        replies: Vec<LookupResult>,
        /// `lookupAndUnannounce`: unannounce this key from nodes listing it.
        unannounce: Option<Box<KeyPair>>,
        target: [u8; 32],
        kind: LookupKind,
        /// UNANNOUNCEs in flight; the operation reports once they are answered (JS awaits
        /// them in the commit step).
        pending: usize,
        /// The walk's result, kept while `pending > 0`.
        finished: Option<Result<rpc::QueryResult, QueryError>>,
    },
    Announce,
    FindPeer(Vec<FindPeerResult>),
    MutablePut {
        public_key: [u8; 32],
        seq: u64,
        signature: [u8; 64],
    },
    MutableGet {
        public_key: [u8; 32],
        min_seq: u64,
        latest: bool,
        best: Option<MutableValue>,
    },
    ImmutablePut([u8; 32]),
    ImmutableGet([u8; 32]),
    Listen,
    Connect(Box<Connect>),
}

/// `lib/connect.js` state for one connect.
#[derive(Debug)]
pub(crate) struct Connect {
    target: [u8; 32],
    noise: Option<Noise>,
    /// The encoded PEER_HANDSHAKE value (the same noise bytes to every node).
    request: Vec<u8>,
    sent_firewall: Firewall,
    local_id: u32,
    query: Option<QueryId>,
    queue: VecDeque<SocketAddrV4>,
    asked: HashSet<SocketAddrV4>,
    inflight: usize,
    parallel: usize,
    attempts: usize,
    found: bool,
    /// A completed handshake waiting for the same-LAN ping.
    lan: Option<Box<Established>>,
    /// The relay we asked for, and our token.
    relay_through: Option<([u8; 32], [u8; 32])>,
}

/// What a LOOKUP walk reports at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupKind {
    Lookup,
    Unannounce,
    /// An announce with `clear`: a `lookupAndUnannounce` whose commit announces.
    AnnounceClear,
}

fn uint_bytes(n: u64) -> Vec<u8> {
    let mut out = vec![0; peerhost_encoding::uint_len(n)];
    Writer::new(&mut out).uint(n);
    out
}

impl Node {
    fn start_query(
        &mut self,
        now: Instant,
        params: QueryParams,
        op: impl FnOnce(QueryId) -> Op,
    ) -> Result<OpId, Error> {
        let id = self.next_op_id().map_err(|()| Error::Overloaded)?;
        let q = self.dht.query(now, params)?;
        self.queries.insert(q, QueryOwner::Op(id));
        self.ops.insert(id, op(q));
        Ok(id)
    }

    /// Find the records announced under `target` (JS `lookup`).
    pub fn lookup(&mut self, now: Instant, target: [u8; 32]) -> Result<OpId, Error> {
        let params = QueryParams::new(target, Command::Lookup.as_u64());
        self.start_query(now, params, |_| Op::Lookup {
            replies: Vec::new(),
            unannounce: None,
            target,
            kind: LookupKind::Lookup,
            pending: 0,
            finished: None,
        })
    }

    /// Announce `key_pair` under `target` with `relay_addresses` (JS `announce`): a LOOKUP
    /// walk, then a signed ANNOUNCE to each of the closest nodes with the token it handed out.
    pub fn announce(
        &mut self,
        now: Instant,
        target: [u8; 32],
        key_pair: &KeyPair,
        relay_addresses: Vec<SocketAddrV4>,
        opts: AnnounceOptions,
    ) -> Result<OpId, Error> {
        let kp = key_pair.clone();
        let bump = opts.bump;
        let commit = move |reply: &Reply| -> Option<rpc::CommitRequest> {
            let token = reply.token?;
            let node_id = reply.from_id?;
            let peer = PeerRecord {
                public_key: kp.public_key(),
                relay_addresses: relay_addresses.clone(),
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
                    signature: Some(kp.sign(&signable)),
                    bump,
                })),
            })
        };
        if opts.clear && self.is_persistent() {
            self.remove_record(target, &key_pair.public_key());
        }
        let mut params = QueryParams::new(target, Command::Lookup.as_u64());
        params.commit = rpc::Commit::Custom(Box::new(commit));
        let unannounce = opts.clear.then(|| Box::new(key_pair.clone()));
        self.start_query(now, params, |_| match unannounce {
            Some(kp) => Op::Lookup {
                replies: Vec::new(),
                unannounce: Some(kp),
                target,
                kind: LookupKind::AnnounceClear,
                pending: 0,
                finished: None,
            },
            None => Op::Announce,
        })
    }

    /// Remove `key_pair`'s record under `target` from the nodes holding it (JS
    /// `unannounce` = `lookupAndUnannounce`).
    pub fn unannounce(
        &mut self,
        now: Instant,
        target: [u8; 32],
        key_pair: &KeyPair,
    ) -> Result<OpId, Error> {
        if self.is_persistent() {
            self.remove_record(target, &key_pair.public_key());
        }
        let params = QueryParams::new(target, Command::Lookup.as_u64());
        let kp = Box::new(key_pair.clone());
        self.start_query(now, params, |_| Op::Lookup {
            replies: Vec::new(),
            unannounce: Some(kp),
            target,
            kind: LookupKind::Unannounce,
            pending: 0,
            finished: None,
        })
    }

    /// Find the nodes holding a route to `public_key` (JS `findPeer`).
    pub fn find_peer(&mut self, now: Instant, public_key: &[u8; 32]) -> Result<OpId, Error> {
        let params = QueryParams::new(crypto::hash(public_key), Command::FindPeer.as_u64());
        self.start_query(now, params, |_| Op::FindPeer(Vec::new()))
    }

    /// Store `value` signed by `key_pair` with sequence number `seq` (JS `mutablePut`): a
    /// MUTABLE_GET walk towards `hash(publicKey)`, then MUTABLE_PUT to the closest nodes.
    ///
    /// Fails with [`Error::SeqReused`] / [`Error::SeqTooLow`] if every node that answered
    /// refused it for that reason (JS resolves anyway; see `protocol/hyperdht.md`).
    pub fn mutable_put(
        &mut self,
        now: Instant,
        key_pair: &KeyPair,
        value: &[u8],
        seq: u64,
    ) -> Result<OpId, Error> {
        let public_key = key_pair.public_key();
        let target = crypto::hash(&public_key);
        let signature = crypto::sign_mutable(seq, value, key_pair);
        let put = messages::encode(&MutablePutRequest {
            public_key,
            seq,
            value: value.to_vec(),
            signature,
        });
        let mut params = QueryParams::new(target, Command::MutableGet.as_u64());
        // > use seq = 0, for the query part here, as we don't care about the actual values
        params.value = Some(uint_bytes(0));
        params.commit = rpc::Commit::Custom(Box::new(move |reply: &Reply| {
            Some(rpc::CommitRequest {
                command: Command::MutablePut.as_u64(),
                token: Some(reply.token?),
                value: Some(put.clone()),
            })
        }));
        self.start_query(now, params, |_| Op::MutablePut {
            public_key,
            seq,
            signature,
        })
    }

    /// Fetch the mutable value of `public_key` with a sequence number of at least `seq`
    /// (JS `mutableGet`): the highest verified one, or the first if `latest` is false.
    pub fn mutable_get(
        &mut self,
        now: Instant,
        public_key: &[u8; 32],
        seq: u64,
        latest: bool,
    ) -> Result<OpId, Error> {
        let mut params = QueryParams::new(crypto::hash(public_key), Command::MutableGet.as_u64());
        params.value = Some(uint_bytes(seq));
        let public_key = *public_key;
        self.start_query(now, params, |_| Op::MutableGet {
            public_key,
            min_seq: seq,
            latest,
            best: None,
        })
    }

    /// Store `value` under its hash (JS `immutablePut`).
    pub fn immutable_put(&mut self, now: Instant, value: &[u8]) -> Result<OpId, Error> {
        let target = crypto::hash(value);
        let value = value.to_vec();
        let mut params = QueryParams::new(target, Command::ImmutableGet.as_u64());
        params.commit = rpc::Commit::Custom(Box::new(move |reply: &Reply| {
            Some(rpc::CommitRequest {
                command: Command::ImmutablePut.as_u64(),
                token: Some(reply.token?),
                value: Some(value.clone()),
            })
        }));
        self.start_query(now, params, |_| Op::ImmutablePut(target))
    }

    /// Fetch the value whose hash is `target` (JS `immutableGet`); the first reply that hashes
    /// right ends the walk.
    pub fn immutable_get(&mut self, now: Instant, target: [u8; 32]) -> Result<OpId, Error> {
        let params = QueryParams::new(target, Command::ImmutableGet.as_u64());
        self.start_query(now, params, |_| Op::ImmutableGet(target))
    }

    /// Cancel an operation; it ends with [`Error::Destroyed`] /
    /// [`ConnectError::Destroyed`].
    pub fn cancel(&mut self, now: Instant, id: OpId) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        self.drop_op_queries(now, id);
        let outcome = match op {
            Op::Connect(c) => {
                self.release_stream_id(c.local_id);
                Outcome::Connect(Box::new(Err(ConnectError::Destroyed)))
            }
            Op::Lookup { .. } => Outcome::Lookup(Err(Error::Destroyed)),
            Op::Announce => Outcome::Announce(Err(Error::Destroyed)),
            Op::FindPeer(_) => Outcome::FindPeer(Err(Error::Destroyed)),
            Op::MutablePut { .. } => Outcome::MutablePut(Err(Error::Destroyed)),
            Op::MutableGet { .. } => Outcome::MutableGet(Err(Error::Destroyed)),
            Op::ImmutablePut(_) => Outcome::ImmutablePut(Err(Error::Destroyed)),
            Op::ImmutableGet(_) => Outcome::ImmutableGet(Err(Error::Destroyed)),
            Op::Listen => Outcome::Listen(Err(Error::Destroyed)),
        };
        self.done(id, outcome);
    }

    fn drop_op_queries(&mut self, now: Instant, id: OpId) {
        let qs: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, o)| **o == QueryOwner::Op(id))
            .map(|(q, _)| *q)
            .collect();
        for q in qs {
            self.queries.remove(&q);
            self.dht.cancel_query(now, q);
        }
        self.requests.retain(|_, o| match o {
            RequestOwner::Handshake { op, .. } | RequestOwner::LanPing { op } => *op != id,
            _ => true,
        });
    }

    pub(crate) fn on_op_query_reply(&mut self, now: Instant, id: OpId, q: QueryId, reply: Reply) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        match op {
            Op::Lookup {
                unannounce, target, ..
            } => {
                let Some(value) = reply.value.as_deref() else {
                    return;
                };
                let Ok(l) = messages::decode::<LookupReply>(value) else {
                    return;
                };
                let listed = unannounce.as_ref().is_some_and(|kp| {
                    l.peers.len() >= 20 || l.peers.iter().any(|p| p.public_key == kp.public_key())
                });
                let (kp, target) = (unannounce.clone(), *target);
                let result = LookupResult {
                    from: reply.from,
                    to: reply.to,
                    token: reply.token,
                    peers: l.peers,
                    bump: l.bump,
                };
                if !result.peers.is_empty() {
                    self.events.push_back(Event::LookupRecords {
                        id,
                        result: result.clone(),
                    });
                }
                let Some(Op::Lookup { replies, .. }) = self.ops.get_mut(&id) else {
                    return;
                };
                replies.push(result);
                if let (true, Some(kp)) = (listed, kp) {
                    let owner = RequestOwner::Unannounced { op: id };
                    if self.send_unannounce(now, &kp, target, &reply, owner) {
                        if let Some(Op::Lookup { pending, .. }) = self.ops.get_mut(&id) {
                            *pending += 1;
                        }
                    }
                }
            }
            Op::FindPeer(found) => {
                if let Some(peer) = decode_record(reply.value.as_deref()) {
                    found.push(FindPeerResult {
                        from: reply.from,
                        to: reply.to,
                        peer,
                    });
                }
            }
            Op::MutableGet {
                public_key,
                min_seq,
                latest,
                best,
            } => {
                let Some(v) = reply
                    .value
                    .as_deref()
                    .and_then(|v| messages::decode::<MutableGetResponse>(v).ok())
                else {
                    return;
                };
                if best.as_ref().is_some_and(|b| v.seq <= b.seq)
                    || v.seq < *min_seq
                    || !crypto::verify_mutable(&v.signature, v.seq, &v.value, public_key)
                {
                    return;
                }
                *best = Some(MutableValue {
                    seq: v.seq,
                    value: v.value,
                    signature: v.signature,
                    from: reply.from,
                });
                if !*latest {
                    let best = best.take();
                    self.finish_early(now, id, q, Outcome::MutableGet(Ok(best)));
                }
            }
            Op::ImmutableGet(target) => {
                let Some(value) = reply.value else { return };
                if crypto::hash(&value) == *target {
                    let found = ImmutableValue {
                        value,
                        from: reply.from,
                    };
                    self.finish_early(now, id, q, Outcome::ImmutableGet(Ok(Some(found))));
                }
            }
            Op::Connect(c) if decode_record(reply.value.as_deref()).is_some() => {
                c.found = true;
                if c.asked.insert(reply.from) {
                    c.queue.push_back(reply.from);
                }
                self.pump_connect(now, id);
            }
            _ => {}
        }
    }

    /// One of an operation's UNANNOUNCEs was answered (or failed).
    pub(crate) fn on_unannounced(&mut self, now: Instant, id: OpId) {
        let Some(Op::Lookup {
            pending, finished, ..
        }) = self.ops.get_mut(&id)
        else {
            return;
        };
        *pending = pending.saturating_sub(1);
        if *pending == 0 {
            if let Some(result) = finished.take() {
                self.on_op_query_done(now, id, result);
            }
        }
    }

    fn finish_early(&mut self, now: Instant, id: OpId, q: QueryId, outcome: Outcome) {
        self.ops.remove(&id);
        self.queries.remove(&q);
        self.dht.cancel_query(now, q);
        self.done(id, outcome);
    }

    pub(crate) fn on_op_query_done(
        &mut self,
        now: Instant,
        id: OpId,
        result: Result<rpc::QueryResult, QueryError>,
    ) {
        match self.ops.get_mut(&id) {
            Some(Op::Connect(c)) => {
                c.query = None;
                return self.maybe_fail_connect(now, id);
            }
            Some(Op::Lookup {
                pending, finished, ..
            }) if *pending > 0 => {
                *finished = Some(result);
                return;
            }
            _ => {}
        }
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        let closest = |r: &rpc::QueryResult| r.closest_replies.iter().map(|c| c.from).collect();
        let stored = |r: &rpc::QueryResult| r.commits.iter().filter(|c| c.error == 0).count();
        let outcome = match op {
            Op::Lookup { replies, kind, .. } => match kind {
                LookupKind::AnnounceClear => {
                    Outcome::Announce(result.map_err(Error::from).map(|r| AnnounceResult {
                        closest_nodes: closest(&r),
                        stored: stored(&r),
                    }))
                }
                LookupKind::Unannounce => {
                    Outcome::Unannounce(result.map(|_| ()).map_err(Error::from))
                }
                LookupKind::Lookup => Outcome::Lookup(result.map(|_| replies).map_err(Error::from)),
            },
            Op::Announce => {
                Outcome::Announce(result.map_err(Error::from).map(|r| AnnounceResult {
                    closest_nodes: closest(&r),
                    stored: stored(&r),
                }))
            }
            Op::FindPeer(found) => Outcome::FindPeer(result.map(|_| found).map_err(Error::from)),
            Op::MutablePut {
                public_key,
                seq,
                signature,
            } => Outcome::MutablePut(result.map_err(Error::from).and_then(|r| {
                let ok = stored(&r);
                let refused = |code: ErrorCode| r.commits.iter().any(|c| c.error == code.0);
                if ok == 0 && refused(ErrorCode::SEQ_REUSED) {
                    return Err(Error::SeqReused);
                }
                if ok == 0 && refused(ErrorCode::SEQ_TOO_LOW) {
                    return Err(Error::SeqTooLow);
                }
                Ok(MutablePutResult {
                    public_key,
                    seq,
                    signature,
                    stored: ok,
                    closest_nodes: closest(&r),
                })
            })),
            Op::MutableGet { best, .. } => {
                Outcome::MutableGet(result.map(|_| best).map_err(Error::from))
            }
            Op::ImmutablePut(hash) => {
                Outcome::ImmutablePut(result.map_err(Error::from).map(|r| ImmutablePutResult {
                    hash,
                    stored: stored(&r),
                    closest_nodes: closest(&r),
                }))
            }
            Op::ImmutableGet(_) => Outcome::ImmutableGet(result.map(|_| None).map_err(Error::from)),
            Op::Listen | Op::Connect(_) => return,
        };
        self.done(id, outcome);
    }

    // ------------------------------------------------------------------ connect

    /// Connect to the server listening on `remote_public_key` as `key_pair` (JS
    /// `dht.connect(publicKey)`): find nodes holding its route, send the Noise IK handshake
    /// through them, and pick how the UDX stream reaches the server.
    ///
    /// Paths: the node we reached is the server; the server is reachable (`firewall: OPEN`,
    /// or relayed and not holepunchable); we are reachable and the server connects to us; the
    /// same-LAN shortcut (ping the server's LAN address); otherwise both sides are firewalled
    /// and we holepunch (`holepunch/`), failing with [`ConnectError::HolepunchAborted`] when
    /// that does not work (e.g. both NATs randomize: a case for a blind relay).
    pub fn connect(
        &mut self,
        now: Instant,
        key_pair: &KeyPair,
        remote_public_key: &[u8; 32],
        opts: ConnectOptions,
    ) -> Result<OpId, ConnectError> {
        let id = self.next_op_id().map_err(|()| ConnectError::Overloaded)?;
        let target = crypto::hash(remote_public_key);
        let mut hints = opts.relay_addresses;
        if hints.is_empty() && self.is_persistent() {
            // > check if we know the route ourself...
            if let Some(relay) = self.forwards.peek(&target).and_then(|f| f.relay) {
                hints.push(relay);
            }
        }
        let local_id = self.alloc_stream_id();
        let our_remote = self.dht.remote_address();
        let mut addresses4: Vec<SocketAddrV4> = our_remote.into_iter().collect();
        if self.config.local_connection {
            addresses4.extend(self.local_addresses());
        }
        let sent_firewall = if our_remote.is_some() {
            Firewall::OPEN
        } else {
            Firewall::UNKNOWN
        };
        let relay_through = opts.relay_through.map(|key| {
            let mut token = [0u8; 32];
            rand::Rng::fill(&mut self.rng, &mut token[..]);
            (key, token)
        });
        let payload = NoisePayload {
            relay_through: relay_through.map(|(public_key, token)| messages::RelayThrough {
                version: 1,
                public_key,
                token,
            }),
            firewall: sent_firewall,
            addresses4,
            udx: Some(UdxInfo {
                version: 1,
                reusable_socket: false,
                id: u64::from(local_id),
                seq: 0,
            }),
            secret_stream: Some(SecretStreamInfo { version: 1 }),
            ..NoisePayload::default()
        };
        let built = Noise::new(
            Pattern::IK,
            true,
            key_pair.clone(),
            &ns::PEER_HANDSHAKE,
            Some(*remote_public_key),
        )
        .and_then(|mut n| n.write_message(&messages::encode(&payload)).map(|m| (n, m)));
        let Ok((noise, msg)) = built else {
            self.release_stream_id(local_id);
            return Err(ConnectError::HandshakeInvalid);
        };
        let request = messages::encode(&Handshake {
            mode: Mode::FROM_CLIENT,
            noise: msg,
            peer_address: None,
            relay_address: None,
        });
        let mut params = QueryParams::new(target, Command::FindPeer.as_u64());
        params.nodes = hints.clone();
        params.retries = Some(CONNECT_RETRIES);
        let Ok(q) = self.dht.query(now, params) else {
            self.release_stream_id(local_id);
            return Err(ConnectError::Overloaded);
        };
        self.queries.insert(q, QueryOwner::Op(id));
        let parallel = if hints.is_empty() {
            HANDSHAKE_PARALLEL
        } else {
            HANDSHAKE_PARALLEL + 1
        };
        self.ops.insert(
            id,
            Op::Connect(Box::new(Connect {
                target,
                noise: Some(noise),
                request,
                sent_firewall,
                local_id,
                query: Some(q),
                asked: hints.iter().copied().collect(),
                queue: hints.into_iter().collect(),
                inflight: 0,
                parallel,
                attempts: 0,
                found: false,
                lan: None,
                relay_through,
            })),
        );
        self.pump_connect(now, id);
        Ok(id)
    }

    /// Send handshakes to queued nodes while fewer than `parallel` are in flight.
    fn pump_connect(&mut self, now: Instant, id: OpId) {
        let socket = self.dht.default_socket();
        loop {
            let Some(Op::Connect(c)) = self.ops.get_mut(&id) else {
                return;
            };
            if c.noise.is_none() || c.inflight >= c.parallel {
                return;
            }
            let Some(node) = c.queue.pop_front() else {
                return;
            };
            let params = rpc::RequestParams {
                token: None,
                command: Command::PeerHandshake.as_u64(),
                target: Some(c.target),
                value: Some(c.request.clone()),
            };
            let opts = rpc::RequestOptions {
                socket: Some(socket),
                ..rpc::RequestOptions::default()
            };
            if let Ok(rid) = self.dht.request(now, node, params, opts) {
                c.inflight += 1;
                c.attempts += 1;
                self.requests.insert(
                    rid,
                    RequestOwner::Handshake {
                        op: id,
                        node,
                        socket,
                    },
                );
            }
        }
    }

    fn maybe_fail_connect(&mut self, now: Instant, id: OpId) {
        if self.holepunch.clients.contains_key(&id) {
            return; // holepunching decides (holepunch/client.rs)
        }
        let Some(Op::Connect(c)) = self.ops.get(&id) else {
            return;
        };
        if c.query.is_some() || c.inflight > 0 || !c.queue.is_empty() || c.lan.is_some() {
            return;
        }
        let err = if c.attempts > 0 || c.found {
            ConnectError::PeerConnectionFailed
        } else {
            ConnectError::PeerNotFound
        };
        self.fail_connect(now, id, err);
    }

    /// The UDX stream id a connect still running offers the server (its payload's
    /// `udx.id`): a driver opens streams for it at once, so that what the server sends before
    /// our handshake completes is kept (JS creates the raw stream up front too).
    pub fn connect_stream_id(&self, id: OpId) -> Option<u32> {
        match self.ops.get(&id) {
            Some(Op::Connect(c)) => Some(c.local_id),
            _ => None,
        }
    }

    pub(crate) fn fail_connect(&mut self, now: Instant, id: OpId, err: ConnectError) {
        if let Some(Op::Connect(c)) = self.ops.remove(&id) {
            self.release_stream_id(c.local_id);
        }
        self.drop_op_queries(now, id);
        self.done(id, Outcome::Connect(Box::new(Err(err))));
    }

    pub(crate) fn succeed_connect(&mut self, now: Instant, id: OpId, established: Established) {
        self.ops.remove(&id);
        self.drop_op_queries(now, id);
        self.done(id, Outcome::Connect(Box::new(Ok(established))));
    }

    /// `Router.peerHandshake` + `connectThroughNode`: a reply to one of our handshakes.
    pub(crate) fn on_handshake_response(
        &mut self,
        now: Instant,
        id: OpId,
        node: SocketAddrV4,
        socket: SocketKind,
        result: Result<Reply, RequestError>,
    ) {
        let lan_ok = self.config.local_connection;
        let local = self.local_addresses();
        let Some(Op::Connect(c)) = self.ops.get_mut(&id) else {
            return;
        };
        c.inflight = c.inflight.saturating_sub(1);
        let hs = result.ok().and_then(|reply| {
            let hs = messages::decode::<Handshake>(reply.value.as_deref()?).ok()?;
            // > if (!hs || hs.mode !== REPLY || to.host !== res.from.host || … ) BAD_HANDSHAKE_REPLY
            (hs.mode == Mode::REPLY && reply.from == node).then_some((hs, reply.to))
        });
        let Some((hs, client_address)) = hs else {
            self.pump_connect(now, id);
            return self.maybe_fail_connect(now, id);
        };
        if c.noise.is_none() {
            return; // already answered by another node
        }
        let Some(mut noise) = c.noise.take() else {
            return;
        };
        let payload = noise
            .read_message(&hs.noise)
            .ok()
            .and_then(|p| messages::decode::<NoisePayload>(&p).ok());
        let Some(payload) = payload else {
            return self.fail_connect(now, id, ConnectError::HandshakeInvalid);
        };
        if payload.version != 1 {
            return self.fail_connect(now, id, ConnectError::ServerIncompatible);
        }
        if payload.error != ErrorCode::NONE {
            return self.fail_connect(now, id, ConnectError::ServerError("server aborted"));
        }
        let Some(remote_id) = payload.udx.and_then(|u| u32::try_from(u.id).ok()) else {
            return self.fail_connect(
                now,
                id,
                ConnectError::ServerError("server did not send UDX data"),
            );
        };
        let (Some(remote_public_key), Some(handshake)) =
            (noise.remote_public_key(), noise.into_result())
        else {
            return self.fail_connect(now, id, ConnectError::HandshakeInvalid);
        };
        let relayed = hs.peer_address.is_some();
        let server_address = hs.peer_address.unwrap_or(node);
        let holepunchable = payload
            .holepunch
            .as_ref()
            .is_some_and(|h| !h.relays.is_empty());
        let sent_firewall = c.sent_firewall;
        let our_relay = c.relay_through;
        let mut est = Established {
            remote_public_key,
            handshake,
            local_id: c.local_id,
            remote_id,
            route: Route::Connect { socket, addr: node },
            payload,
        };
        // > relayConnection: the server's relay wins (we pair as the responder), else ours.
        let relay = match (&est.payload.relay_through, our_relay) {
            (Some(r), _) => Some((r.public_key, r.token, false)),
            (None, Some((key, token))) => Some((key, token, true)),
            (None, None) => None,
        };
        if let Some((relay, token, is_initiator)) = relay {
            est.route = Route::Relay {
                relay,
                token,
                is_initiator,
                socket: self.dht.default_socket(),
            };
            return self.succeed_connect(now, id, est);
        }
        // > if (!relayed) c.onsocket(socket || c.dht.socket, address.port, address.host)
        if !relayed {
            return self.succeed_connect(now, id, est);
        }
        // > if (payload.firewall === FIREWALL.OPEN || (relayed && !remoteHolepunchable))
        if est.payload.firewall == Firewall::OPEN || !holepunchable {
            let addr = est
                .payload
                .addresses4
                .iter()
                .find(|a| !crate::node::is_private(a.ip()) && !is_reserved(a.ip()))
                .copied()
                .unwrap_or(server_address);
            est.route = Route::Connect {
                socket: self.dht.default_socket(),
                addr,
            };
            return self.succeed_connect(now, id, est);
        }
        // > if (c.firewall === FIREWALL.OPEN) passive wait for the server to connect to us
        if sent_firewall == Firewall::OPEN {
            est.route = Route::Await {
                sockets: vec![socket],
                timeout: self.config.passive_wait,
            };
            return self.succeed_connect(now, id, est);
        }
        // > if (c.lan && relayed && clientAddress.host === serverAddress.host)
        if lan_ok && client_address.ip() == server_address.ip() {
            let lan: Vec<SocketAddrV4> = est
                .payload
                .addresses4
                .iter()
                .filter(|a| !is_reserved(a.ip()))
                .copied()
                .collect();
            if let Some(addr) = match_address(&local, &lan).or_else(|| lan.first().copied()) {
                let opts = rpc::RequestOptions {
                    socket: Some(SocketKind::Server),
                    ..rpc::RequestOptions::default()
                };
                if let Ok(rid) = self.dht.ping(now, addr, opts) {
                    est.route = Route::Connect {
                        socket: SocketKind::Server,
                        addr,
                    };
                    if let Some(Op::Connect(c)) = self.ops.get_mut(&id) {
                        c.lan = Some(Box::new(est));
                    }
                    self.requests.insert(rid, RequestOwner::LanPing { op: id });
                    return;
                }
            }
        }
        // > c.puncher = new Holepuncher(...); probeRound; roundPunch (holepunch/client.rs)
        self.start_holepunch(now, id, est, node, server_address);
    }

    pub(crate) fn on_lan_ping(&mut self, now: Instant, id: OpId, ok: bool) {
        let Some(Op::Connect(c)) = self.ops.get_mut(&id) else {
            return;
        };
        let Some(est) = c.lan.take() else { return };
        if ok {
            self.succeed_connect(now, id, *est);
        } else {
            self.fail_connect(now, id, ConnectError::HolepunchAborted);
        }
    }
}
