//! Requests out: ids, the congestion window, encoding and sending, retries and timeouts.

use super::*;

impl Node {
    pub(super) fn next_request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    pub(super) fn id_for(&self, socket: SocketKind) -> Option<NodeId> {
        // > const id = this._io.ephemeral === false && socket === this._io.serverSocket
        (!self.ephemeral && socket == SocketKind::Server).then(|| self.table.id())
    }

    pub(super) fn send_request(
        &mut self,
        now: Instant,
        out: Outgoing,
        opts: RequestOptions,
        owner: Owner,
    ) -> Result<u16, RequestError> {
        let socket = opts.socket.unwrap_or(self.default_socket());
        // A random tid: responses are matched by tid alone, and a response proves its sender
        // receives (`crate::proof`), so tids must not be predictable.
        let start = self.rng.r#gen();
        let tid = self
            .io
            .alloc_tid_from(start)
            .ok_or(RequestError::Overloaded)?;
        let msg = Request {
            tid,
            to: out.to,
            id: if out.no_id { None } else { self.id_for(socket) },
            token: out.token,
            internal: out.internal,
            command: out.command,
            target: out.target,
            value: out.value,
        };
        let bytes = encode_bounded(&msg).ok_or(RequestError::TooLarge)?;
        self.io.insert(
            tid,
            bytes,
            NewRequest {
                to: out.to,
                to_id: out.to_id,
                socket,
                retries: opts.retries,
                // A zero timeout would refire at once; a huge one would overflow `Instant`.
                timeout: opts.timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT),
                owner,
            },
            now,
        );
        self.io.send(tid, now, false, &mut self.outbox);
        Ok(tid)
    }

    /// An internal request with default options; `None` if the node is saturated.
    pub(super) fn internal_request(
        &mut self,
        now: Instant,
        out: Outgoing,
        retries: u32,
        owner: Owner,
    ) -> Option<u16> {
        let opts = RequestOptions {
            retries,
            ..RequestOptions::default()
        };
        self.send_request(now, out, opts, owner).ok()
    }

    /// Encode and queue a response to a request of `budget` bytes; false if it would not fit
    /// one datagram. To an address that has not proven it receives, an answer larger than
    /// `budget` is held until a probe proves it (`crate::proof`), or, if it carries nothing but
    /// our id, sent without it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_reply(
        &mut self,
        socket: SocketKind,
        tid: u16,
        to: SocketAddrV4,
        error: u64,
        value: Option<&[u8]>,
        token: bool,
        closer_target: Option<NodeId>,
        budget: usize,
    ) -> bool {
        let closer_nodes = closer_target.map(|t| {
            self.table
                .closest(&t, K)
                .into_iter()
                .map(|n| n.addr)
                .collect()
        });
        let msg = Response {
            tid,
            to,
            id: self.id_for(socket),
            token: token.then(|| self.tokens.current(*to.ip())),
            closer_nodes,
            error,
            value: value.map(<[u8]>::to_vec),
        };
        let Some(bytes) = encode_bounded(&msg) else {
            return false;
        };
        let t = Transmit {
            socket,
            destination: to,
            contents: bytes,
        };
        self.answer_out(t, tid, budget);
        true
    }

    /// Send an answer (a reply, or a request relayed on behalf of another) of a request of
    /// `budget` bytes: at once if it fits or its address is proven; else held while the
    /// address is probed (`crate::proof`).
    pub(super) fn answer_out(&mut self, t: Transmit, tid: u16, budget: usize) {
        let ip = *t.destination.ip();
        if t.contents.len() <= budget || self.proofs.is_proven(ip, self.now) {
            self.outbox.push(t);
            return;
        }
        let (socket, destination) = (t.socket, t.destination);
        if !self.proofs.can_hold(ip, self.now) || !self.proofs.hold(ip, tid, t, self.now) {
            self.stats.answers_unproven += 1;
            return;
        }
        self.stats.answers_held += 1;
        if self.proofs.start_probe(ip) {
            let now = self.now;
            let out = Outgoing {
                no_id: true,
                ..Outgoing::internal(destination, None, Command::Ping, None)
            };
            // One try: a lost probe loses the answer, as a lost datagram would, and the
            // requester retries (a probe slot is never held long by a spoofed address).
            let opts = RequestOptions {
                retries: 0,
                timeout: DEFAULT_TIMEOUT,
                socket: Some(socket),
            };
            self.stats.probes += 1;
            if self
                .send_request(now, out, opts, Owner::Probe { ip })
                .is_err()
            {
                self.stats.answers_unproven += self.proofs.fail(ip) as u64;
            }
        }
    }

    /// The probe of `ip` is void (a guessed answer may have been sent for it): forget it and
    /// drop what waited for it.
    pub(super) fn cancel_probe(&mut self, ip: Ipv4Addr) {
        for tid in self
            .io
            .tids_where(|o| matches!(o, Owner::Probe { ip: p } if *p == ip))
        {
            self.io.remove(tid);
        }
        self.stats.answers_unproven += self.proofs.fail(ip) as u64;
    }

    /// `ip` proved it receives: send what was held for it.
    pub(super) fn proven(&mut self, ip: Ipv4Addr, now: Instant) {
        for t in self.proofs.prove(ip, now) {
            self.outbox.push(t);
        }
    }
}
