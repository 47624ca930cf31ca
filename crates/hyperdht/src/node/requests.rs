//! Requests in: the storage commands a node answers for others (persistent.js): lookup,
//! announce, unannounce, refresh, mutable and immutable get and put.

use super::*;

impl Node {
    pub(super) fn handle_request(&mut self, now: Instant, req: IncomingRequest) {
        self.stats.requests += 1;
        let command = Command::from_u64(req.command);
        match command {
            Some(Command::PeerHandshake) => return self.on_peer_handshake(now, &req),
            Some(Command::PeerHolepunch) => return self.on_peer_holepunch(now, &req),
            _ => {}
        }
        // > if (this._persistent === null || this.id === null) return false
        // PLUGIN: we host no plugins, so it is answered like an unknown command (JS stays
        // silent when the plugin is missing; see protocol/hyperdht.md).
        if command.is_none() || command == Some(Command::Plugin) || !self.is_persistent() {
            self.stats.unknown_commands += 1;
            let _ = self
                .dht
                .reply_error(&req, rpc::messages::UNKNOWN_COMMAND, ReplyOptions::ERROR);
            return;
        }
        match command {
            Some(Command::FindPeer) => self.on_find_peer(&req),
            Some(Command::Lookup) => self.on_lookup(&req),
            Some(Command::Announce) => self.on_announce(now, &req),
            Some(Command::Unannounce) => self.on_unannounce(&req),
            Some(Command::MutablePut) => self.on_mutable_put(&req),
            Some(Command::MutableGet) => self.on_mutable_get(&req),
            Some(Command::ImmutablePut) => self.on_immutable_put(&req),
            Some(Command::ImmutableGet) => self.on_immutable_get(&req),
            _ => {}
        }
    }

    pub(super) fn invalid(&mut self) {
        self.stats.invalid += 1;
    }

    pub(super) fn reply(
        &mut self,
        req: &IncomingRequest,
        value: Option<&[u8]>,
        opts: ReplyOptions,
    ) {
        let _ = self.dht.reply(req, value, opts);
    }

    /// `reply(null, { token: false, closerNodes: false })`.
    pub(super) const BARE: ReplyOptions = ReplyOptions {
        token: false,
        closer_nodes: false,
        to: None,
        socket: None,
    };

    pub(super) fn on_find_peer(&mut self, req: &IncomingRequest) {
        let Some(target) = req.target else {
            return self.invalid();
        };
        let record = self.forwards.get(&target).map(|f| f.record.clone());
        self.reply(req, record.as_deref(), ReplyOptions::REPLY);
    }

    pub(super) fn on_lookup(&mut self, req: &IncomingRequest) {
        let Some(target) = req.target else {
            return self.invalid();
        };
        let mut records = self.records.get(&target, LOOKUP_RECORDS, &mut self.rng);
        let bump = self.bumps.get(&target).copied().unwrap_or(0);
        if records.len() < LOOKUP_RECORDS {
            if let Some(f) = self.forwards.get(&target) {
                records.push(f.record.clone());
            }
        }
        if records.is_empty() {
            return self.reply(req, None, ReplyOptions::REPLY);
        }
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let value = encode_lookup_reply(&refs, bump);
        self.reply(req, Some(&value), ReplyOptions::REPLY);
    }

    pub(super) fn on_announce(&mut self, now: Instant, req: &IncomingRequest) {
        let (Some(target), Some(token), Some(id)) = (req.target, req.token, self.dht.id()) else {
            return self.invalid();
        };
        let Some(ann) = req
            .value
            .as_deref()
            .and_then(|v| messages::decode::<Announce>(v).ok())
        else {
            return self.invalid();
        };
        let Some(mut peer) = ann.peer.clone() else {
            match ann.refresh {
                Some(refresh) => self.on_refresh(req, refresh),
                None => self.invalid(),
            }
            return;
        };
        let signable = announce_signable(
            &crate::constants::ns::ANNOUNCE,
            &target,
            id.as_bytes(),
            &token,
            &peer,
            ann.refresh.as_ref(),
        );
        let valid = ann
            .signature
            .is_some_and(|s| peerhost_ids::verify_signature(&peer.public_key, &signable, &s));
        if !valid {
            return self.invalid();
        }
        peer.relay_addresses.truncate(MAX_RELAY_ADDRESSES);
        let record = messages::encode(&peer);
        let announce_self = crypto::hash(&peer.public_key) == target;
        if announce_self {
            self.set_forward(target, Some(req.from), record.clone());
            self.records.remove(&target, &peer.public_key);
        } else {
            let current = self.bumps.get(&target).copied().unwrap_or(0);
            if ann.bump > current && ann.bump <= self.unix_ms(now) + MAX_BUMP_DRIFT_MS {
                self.bumps.set(target, ann.bump, 8);
            }
            self.records.add(target, peer.public_key, record.clone());
        }
        if let Some(refresh) = ann.refresh {
            let len = record.len();
            self.refreshes.set(
                refresh,
                Refresh {
                    target,
                    record,
                    announce_self,
                },
                len,
            );
        }
        self.reply(req, None, Self::BARE);
    }

    /// A route from a remote announce; our own servers' routes are retained and win.
    pub(super) fn set_forward(
        &mut self,
        target: [u8; 32],
        relay: Option<SocketAddrV4>,
        record: Vec<u8>,
    ) {
        let len = record.len();
        self.forwards.set(target, Forward { relay, record }, len);
    }

    pub(super) fn on_refresh(&mut self, req: &IncomingRequest, preimage: [u8; 32]) {
        let key = crypto::hash(&preimage);
        let Some(r) = self.refreshes.delete(&key) else {
            return self.invalid();
        };
        let public_key: [u8; 32] = r
            .record
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32]);
        if r.announce_self {
            self.set_forward(r.target, Some(req.from), r.record.clone());
            self.records.remove(&r.target, &public_key);
        } else {
            self.records.add(r.target, public_key, r.record.clone());
        }
        let len = r.record.len();
        self.refreshes.set(preimage, r, len);
        self.reply(req, None, Self::BARE);
    }

    pub(super) fn on_unannounce(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(token), Some(id)) = (req.target, req.token, self.dht.id()) else {
            return self.invalid();
        };
        let Some(ann) = req
            .value
            .as_deref()
            .and_then(|v| messages::decode::<Announce>(v).ok())
        else {
            return self.invalid();
        };
        let (Some(peer), Some(signature)) = (&ann.peer, &ann.signature) else {
            return self.invalid();
        };
        let signable = announce_signable(
            &crate::constants::ns::UNANNOUNCE,
            &target,
            id.as_bytes(),
            &token,
            peer,
            ann.refresh.as_ref(),
        );
        if !peerhost_ids::verify_signature(&peer.public_key, &signable, signature) {
            return self.invalid();
        }
        self.remove_record(target, &peer.public_key);
        self.reply(req, None, Self::BARE);
    }

    /// `Persistent.unannounce`: drop the record, and the route if it is the key's own.
    pub(crate) fn remove_record(&mut self, target: [u8; 32], public_key: &[u8; 32]) {
        if crypto::hash(public_key) == target && !self.servers.contains_key(&target) {
            self.forwards.delete(&target);
        }
        self.records.remove(&target, public_key);
    }

    pub(super) fn on_mutable_get(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(value)) = (req.target, req.value.as_deref()) else {
            return self.invalid();
        };
        let Ok(seq) = Reader::new(value).uint() else {
            return self.invalid();
        };
        let stored = self.mutables.get(&target).cloned();
        let reply = stored.filter(|v| Reader::new(v).uint().is_ok_and(|local| local >= seq));
        self.reply(req, reply.as_deref(), ReplyOptions::REPLY);
    }

    pub(super) fn on_mutable_put(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(_), Some(value)) = (req.target, req.token, req.value.as_deref())
        else {
            return self.invalid();
        };
        let Ok(p) = messages::decode::<MutablePutRequest>(value) else {
            return self.invalid();
        };
        if crypto::hash(&p.public_key) != target
            || !crypto::verify_mutable(&p.signature, p.seq, &p.value, &p.public_key)
        {
            return self.invalid();
        }
        if let Some(existing) = self
            .mutables
            .get(&target)
            .and_then(|v| messages::decode::<MutableGetResponse>(v).ok())
        {
            if existing.seq == p.seq && existing.value != p.value {
                let _ = self
                    .dht
                    .reply_error(req, ErrorCode::SEQ_REUSED.0, ReplyOptions::ERROR);
                return;
            }
            if p.seq < existing.seq {
                let _ = self
                    .dht
                    .reply_error(req, ErrorCode::SEQ_TOO_LOW.0, ReplyOptions::ERROR);
                return;
            }
        }
        let stored = messages::encode(&MutableGetResponse {
            seq: p.seq,
            value: p.value,
            signature: p.signature,
        });
        let len = stored.len();
        self.mutables.set(target, stored, len);
        self.reply(req, None, ReplyOptions::REPLY);
    }

    pub(super) fn on_immutable_get(&mut self, req: &IncomingRequest) {
        let Some(target) = req.target else {
            return self.invalid();
        };
        let value = self.immutables.get(&target).cloned();
        self.reply(req, value.as_deref(), ReplyOptions::REPLY);
    }

    pub(super) fn on_immutable_put(&mut self, req: &IncomingRequest) {
        let (Some(target), Some(_), Some(value)) = (req.target, req.token, req.value.as_deref())
        else {
            return self.invalid();
        };
        if crypto::hash(value) != target {
            return self.invalid();
        }
        self.immutables.set(target, value.to_vec(), value.len());
        self.reply(req, None, ReplyOptions::REPLY);
    }
}
