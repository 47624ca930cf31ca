//! Requests and responses in: answering (rate limits, tokens, the built-in commands) and
//! matching responses to the requests that wait for them.

use super::*;

impl Node {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        req: Request,
        size: usize,
    ) {
        self.stats.requests += 1;
        let external = socket != self.default_socket();
        let target = req.target.map(NodeId);

        // > if (req.token !== null && !equals(token(from, 1)) && !equals(token(from, 0)))
        // >   req.error(INVALID_TOKEN, { token: true })
        if let Some(token) = &req.token {
            if !self.tokens.verify(*from.ip(), token) {
                self.stats.invalid_tokens += 1;
                self.send_reply(
                    socket,
                    req.tid,
                    from,
                    INVALID_TOKEN,
                    None,
                    true,
                    target,
                    size,
                );
                return;
            }
            // A token we handed this host came back: it receives there.
            self.proven(*from.ip(), now);
        }

        let from_id = req.id.filter(|id| *id == NodeId::from_addr(from));
        if let Some(id) = from_id {
            self.add_node_from_network(now, !external, from, id, req.to);
        }

        if req.internal {
            self.on_internal_request(now, socket, from, req, target, size);
            return;
        }

        if !self.handle_user_commands {
            self.stats.unknown_commands += 1;
            self.send_reply(
                socket,
                req.tid,
                from,
                UNKNOWN_COMMAND,
                None,
                false,
                target,
                size,
            );
            return;
        }
        if self.events.len() >= self.limits.max_events {
            // The requester retries; answering UNKNOWN_COMMAND would be a lie.
            self.stats.requests_dropped += 1;
            return;
        }
        self.emit(Event::Request(IncomingRequest {
            tid: req.tid,
            from,
            from_id,
            to: req.to,
            socket,
            token: req.token,
            command: req.command,
            target: req.target,
            value: req.value,
            size,
        }));
    }

    pub(super) fn on_internal_request(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        req: Request,
        target: Option<NodeId>,
        size: usize,
    ) {
        let value = req.value.as_deref();
        match Command::from_u64(req.command) {
            Some(Command::Ping) => {
                // A PING from a host we are probing may be its own probe of us: answer it at
                // once, or each side would wait for the other's proof (`crate::proof`).
                let budget = if self.proofs.is_probing(*from.ip()) {
                    usize::MAX
                } else {
                    size
                };
                self.send_reply(socket, req.tid, from, OK, None, false, None, budget);
            }
            Some(Command::DelayedPing) => {
                // > if (req.value === null || req.value.byteLength < 4) return
                let Some(v) = value.and_then(|v| v.get(..4)) else {
                    return;
                };
                let ms = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                let delay = Duration::from_millis(u64::from(ms));
                if delay > self.max_ping_delay
                    || self.delayed.len() >= self.limits.max_delayed_pings
                {
                    return;
                }
                self.delayed_seq += 1;
                self.delayed.insert(
                    (now + delay, self.delayed_seq),
                    DelayedReply {
                        socket,
                        tid: req.tid,
                        to: from,
                        budget: size,
                    },
                );
            }
            Some(Command::PingNat) => {
                // > const port = c.uint16.decode(req.value); if (port === 0) return
                // > req.from.port = port; req.sendReply(0, null, false, false)
                let Some(v) = value.and_then(|v| v.get(..2)) else {
                    return;
                };
                let port = u16::from_le_bytes([v[0], v[1]]);
                if port == 0 {
                    return;
                }
                let to = SocketAddrV4::new(*from.ip(), port);
                self.send_reply(socket, req.tid, to, OK, None, false, None, size);
            }
            Some(Command::FindNode) => {
                if target.is_none() {
                    return;
                }
                self.send_reply(socket, req.tid, from, OK, None, false, target, size);
            }
            Some(Command::DownHint) => {
                let Some(v) = value.filter(|v| v.len() >= 6) else {
                    return;
                };
                if self.checks < 10 {
                    if let Some(down) = decode_addr(v) {
                        let id = NodeId::from_addr(down);
                        let tick = self.tick;
                        let check = match self.table.get_mut(&id) {
                            Some(n) if n.pinged < tick || n.down_hints == 0 => {
                                n.down_hints += 1;
                                true
                            }
                            _ => false,
                        };
                        if check {
                            self.check_node(now, id);
                        }
                    }
                }
                self.send_reply(socket, req.tid, from, OK, None, false, None, size);
            }
            None => {
                self.stats.unknown_commands += 1;
                self.send_reply(
                    socket,
                    req.tid,
                    from,
                    UNKNOWN_COMMAND,
                    None,
                    false,
                    target,
                    size,
                );
            }
        }
    }

    // ------------------------------------------------------------------ responses in

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        socket: SocketKind,
        from: SocketAddrV4,
        res: Response,
    ) {
        let Some(req) = self.io.remove(res.tid) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        self.stats.responses += 1;
        // Our request reached this host (only it could echo the random tid from there).
        if from.ip() == req.to.ip() {
            self.proven(*from.ip(), now);
        }
        let external = socket != self.default_socket();
        let from_id = res.id.filter(|id| *id == NodeId::from_addr(from));
        let reply = Reply {
            from,
            from_id,
            to: res.to,
            token: res.token,
            closer_nodes: res.closer_nodes.unwrap_or_default(),
            error: res.error,
            value: res.value,
            rtt: now.saturating_duration_since(req.started),
        };
        // > this.onresponse(res, external) → _addNodeFromNetwork(!external, res.from, res.to)
        match from_id {
            Some(id) => self.add_node_from_network(now, !external, from, id, res.to),
            None => self.sample_bootstrap_maybe(from, res.to),
        }
        let done = Done {
            tid: res.tid,
            to: req.to,
            slow: req.slow,
        };
        self.on_request_done(now, done, req.owner, Ok(reply));
    }

    /// A send timed out (`oncycle`).
    pub(super) fn on_send_timeout(&mut self, now: Instant, tid: u16) {
        // The query hook runs first: a request's first timeout marks it slow.
        let first_cycle = match self.io.get_mut(tid) {
            Some(r) => match r.owner {
                Owner::Visit(q) if !r.slow => {
                    r.slow = true;
                    Some(q)
                }
                _ => None,
            },
            None => return,
        };
        if let Some(qid) = first_cycle {
            self.with_query(now, qid, |node, q, now| {
                q.slow += 1;
                node.read_more(now, qid, q);
            });
        }
        // The query may have ended and cancelled this request.
        let Some(r) = self.io.get(tid) else { return };
        if r.sent > r.retries {
            self.stats.timeouts += 1;
            if let Some(req) = self.io.remove(tid) {
                let to_id = req.to_id;
                let done = Done {
                    tid,
                    to: req.to,
                    slow: req.slow,
                };
                self.on_request_done(now, done, req.owner, Err(RequestError::Timeout));
                // > _ontimeout: if (req.to.id) remove it from the table
                if let Some(id) = to_id {
                    self.remove_node(&id);
                }
            }
        } else {
            self.stats.retries += 1;
            self.io.send(tid, now, false, &mut self.outbox);
        }
    }

    pub(super) fn on_request_done(
        &mut self,
        now: Instant,
        done: Done,
        owner: Owner,
        result: Result<Reply, RequestError>,
    ) {
        match owner {
            Owner::User(id) => self.emit(Event::Response { id, result }),
            Owner::Visit(qid) => self.with_query(now, qid, |node, q, now| {
                q.session.remove(&done.tid);
                // > _dec(req)
                if done.slow {
                    q.slow = q.slow.saturating_sub(1);
                }
                q.inflight = q.inflight.saturating_sub(1);
                match result {
                    Ok(reply) => node.on_visit(now, qid, q, done.to, reply),
                    Err(e) => node.on_visit_error(now, qid, q, done.to, e),
                }
            }),
            Owner::DownHint(qid) => {
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.session.remove(&done.tid);
                }
            }
            Owner::Commit(qid) => self.with_query(now, qid, |_, q, _| {
                q.commit_pending = q.commit_pending.saturating_sub(1);
                match result {
                    Ok(reply) => q.commits.push(reply),
                    Err(e) => q.commit_error = Some(CommitError::Request(e)),
                }
                q.settle_commit();
            }),
            Owner::Check { node } => {
                self.checks = self.checks.saturating_sub(1);
                // > _removeStaleNode(node, lastSeen): if (node.seen <= lastSeen) remove
                // JS asks "was it heard from (with its id) since?", by tick; a node already seen
                // in the tick of the check would be removed although it answered. We ask the
                // answer itself: it must carry the node's id.
                let alive = result.is_ok_and(|r| r.from_id == Some(node));
                if !alive {
                    self.remove_node(&node);
                }
            }
            Owner::Reping { old, new } => {
                self.repinging = self.repinging.saturating_sub(1);
                // As for checks: alive if it answered with its id.
                let alive = result.is_ok_and(|r| r.from_id == Some(old));
                if !alive {
                    self.remove_node(&old);
                    self.add_table_node(*new, now);
                }
            }
            Owner::QuickNat => {
                if result.is_ok() {
                    self.test_nat = true;
                }
            }
            Owner::Firewall { generation } => self.on_firewall_pong(now, generation, result),
            // A pong already proved the host (`on_response`); no answer: drop what waited.
            Owner::Probe { ip } => {
                if result.is_err() {
                    self.stats.answers_unproven += self.proofs.fail(ip) as u64;
                }
            }
        }
    }
}
