//! Driving queries (dht-rpc `lib/query.js`): visiting nodes through the node's requests
//! layer, learning closer nodes, DOWN_HINTs, and the commit step. The query's own state and
//! its pure rules live in `crate::query`.

use std::net::SocketAddrV4;
use std::time::Instant;

use super::{
    Bootstrap, DEFAULT_RETRIES, Event, Node, Outgoing, QUERY_RETRIES, QueryId, REFRESH_TICKS, Reply,
};
use crate::RequestError;
use crate::io::Owner;
use crate::messages::{Command, OK};
use crate::peer::{NodeId, encode_addr};
use crate::query::{
    Candidate, Commit, CommitError, CommitRequest, Purpose, Query, QueryError, Seen,
};
use crate::table::K;

impl Node {
    // ------------------------------------------------------------------ queries

    pub(super) fn next_query_id(&mut self) -> QueryId {
        self.next_query += 1;
        QueryId(self.next_query)
    }

    /// `_backgroundQuery`: a FIND_NODE walk at low concurrency.
    pub(super) fn background_query(
        &mut self,
        now: Instant,
        target: NodeId,
        purpose: Purpose,
    ) -> Option<QueryId> {
        self.refresh_ticks = REFRESH_TICKS;
        let q = Query::new(
            purpose,
            target,
            true,
            Command::FindNode as u64,
            None,
            self.background_concurrency(),
            QUERY_RETRIES,
            Commit::None,
        );
        self.start_query(now, q, &[])
    }

    pub(super) fn start_query(
        &mut self,
        now: Instant,
        mut q: Query,
        nodes: &[SocketAddrV4],
    ) -> Option<QueryId> {
        if self.queries.len() >= self.limits.max_queries {
            return None;
        }
        self.refresh_ticks = REFRESH_TICKS;
        let id = self.next_query_id();
        // Caller-supplied nodes, pushed in reverse as the stack pops from the end.
        for addr in nodes.iter().rev() {
            let _ = q.add_pending(
                Candidate {
                    id: NodeId::from_addr(*addr),
                    addr: *addr,
                },
                None,
            );
        }
        // `_open`: the table, then the bootstrap nodes if that is not enough.
        self.add_from_table(&mut q);
        if q.pending.len() < q.k {
            for addr in self.bootstrap_nodes.clone() {
                let _ = q.add_pending(
                    Candidate {
                        id: NodeId::from_addr(addr),
                        addr,
                    },
                    None,
                );
            }
        }
        self.read_more(now, id, &mut q);
        self.queries.insert(id, q);
        self.finish_if_ended(now, id);
        Some(id)
    }

    /// Run `f` on a query taken out of the map, then put it back unless it ended.
    pub(super) fn with_query(
        &mut self,
        now: Instant,
        id: QueryId,
        f: impl FnOnce(&mut Self, &mut Query, Instant),
    ) {
        let Some(mut q) = self.queries.remove(&id) else {
            return;
        };
        f(self, &mut q, now);
        self.queries.insert(id, q);
        self.finish_if_ended(now, id);
    }

    pub(super) fn finish_if_ended(&mut self, now: Instant, id: QueryId) {
        if self.queries.get(&id).is_none_or(|q| q.done.is_none()) {
            return;
        }
        if let Some(mut q) = self.queries.remove(&id) {
            let result = q.done.take().unwrap_or(Ok(()));
            self.end_query(now, id, q, result);
        }
    }

    /// Report a query that is over (it is already out of the map).
    pub(super) fn end_query(
        &mut self,
        now: Instant,
        id: QueryId,
        mut q: Query,
        result: Result<(), QueryError>,
    ) {
        self.cancel_session(&mut q);
        match q.purpose {
            Purpose::User => {
                let result = result.map(|()| q.result());
                self.emit(Event::QueryDone { id, result });
            }
            Purpose::Bootstrap { round } => {
                if self.bootstrap == Bootstrap::Querying {
                    self.on_bootstrap_query_done(now, round);
                }
            }
            Purpose::Refresh => {}
        }
    }

    /// `_addFromTable`.
    pub(super) fn add_from_table(&self, q: &mut Query) {
        if q.pending.len() >= q.k {
            return;
        }
        q.from_table = true;
        let want = q.k - q.pending.len();
        for n in self.table.closest(&q.target, want) {
            let _ = q.add_pending(
                Candidate {
                    id: n.id,
                    addr: n.addr,
                },
                None,
            );
        }
    }

    /// `_readMore`.
    pub(super) fn read_more(&mut self, now: Instant, id: QueryId, q: &mut Query) {
        loop {
            if q.committing || q.done.is_some() {
                return;
            }
            let concurrency = if q.slowdown { 3 } else { q.concurrency } + q.slow;
            while q.inflight < concurrency {
                let Some(next) = q.pending.pop() else { break };
                if !q.is_closer(&next.id) {
                    continue;
                }
                if !self.visit(now, id, q, next) {
                    // Saturated: try again when one of ours completes; with none in flight
                    // nothing would wake us, so give up.
                    q.pending.push(next);
                    if q.inflight == 0 {
                        q.done = Some(Err(QueryError::Overloaded));
                    }
                    return;
                }
            }
            // > if reusing closest nodes, slow down after the first readMore tick
            if !q.from_table && q.successes == 0 && q.errors == 0 {
                q.slowdown = true;
            }
            if !q.pending.is_empty() {
                return;
            }
            if q.inflight == 0 || (q.slow == q.inflight && q.closest.len() >= q.k) {
                // > if more than 3/4 failed and we only used cached nodes, try the table
                if !q.from_table && q.successes < q.k / 4 {
                    self.add_from_table(q);
                    continue;
                }
                self.flush(now, id, q);
            }
            return;
        }
    }

    /// `_visit`.
    pub(super) fn visit(
        &mut self,
        now: Instant,
        id: QueryId,
        q: &mut Query,
        to: Candidate,
    ) -> bool {
        let out = Outgoing {
            to: to.addr,
            to_id: Some(to.id),
            no_id: false,
            token: None,
            internal: q.internal,
            command: q.command,
            target: Some(q.target.0),
            value: q.value.clone(),
        };
        match self.internal_request(now, out, q.retries, Owner::Visit(id)) {
            Some(tid) => {
                q.inflight += 1;
                q.session.insert(tid);
                true
            }
            None => false,
        }
    }

    /// `_onvisit`. `to` is where the request went (JS keys its bookkeeping on `req.to`).
    pub(super) fn on_visit(
        &mut self,
        now: Instant,
        id: QueryId,
        q: &mut Query,
        to: SocketAddrV4,
        reply: Reply,
    ) {
        q.seen.insert(to, Seen::Done);
        if q.committing {
            return;
        }
        if reply.error == OK {
            q.successes += 1;
        } else {
            q.errors += 1;
        }
        if reply.error == OK && reply.from_id.is_some_and(|i| q.is_closer(&i)) {
            q.push_closest(reply.clone());
        }
        let referrer = Candidate {
            id: reply
                .from_id
                .unwrap_or_else(|| NodeId::from_addr(reply.from)),
            addr: reply.from,
        };
        // A legitimate reply has at most k closer nodes (`table.closest` defaults to k); we read
        // no more than that.
        for addr in reply.closer_nodes.iter().take(K) {
            let node = Candidate {
                id: NodeId::from_addr(*addr),
                addr: *addr,
            };
            if self.filter_node.is_some_and(|f| !f(addr)) || node.id == self.table.id() {
                continue;
            }
            let (closer, hint) = q.add_pending(node, Some(referrer));
            if let Some(r) = hint {
                self.down_hint(now, id, q, r, *addr);
            }
            // > if (!this._addPending(node, m.from)) break
            if !closer {
                break;
            }
        }
        if !q.from_table && q.successes + q.errors >= q.concurrency {
            q.slowdown = false;
        }
        if reply.error != OK {
            self.read_more(now, id, q);
            return;
        }
        self.on_query_data(now, q, &reply);
        if q.purpose == Purpose::User {
            self.emit(Event::QueryReply { id, reply });
        }
        self.read_more(now, id, q);
    }

    /// The background queries' `'data'` hooks (`_backgroundQuery`, `_bootstrap`'s `ondata`).
    pub(super) fn on_query_data(&mut self, now: Instant, q: &mut Query, reply: &Reply) {
        if q.purpose == Purpose::User {
            return;
        }
        // > q.concurrency = this.io.inflight.length < 3 ? this.concurrency : backgroundCon
        q.concurrency = if self.io.len() < 3 {
            self.concurrency
        } else {
            self.background_concurrency()
        };
        if matches!(q.purpose, Purpose::Bootstrap { .. }) && self.quick_firewall_first {
            // The quick NAT heuristic: one PING_NAT to the first responder.
            self.quick_firewall_first = false;
            let value = self.server_port.to_le_bytes().to_vec();
            let _ = self.internal_request(
                now,
                Outgoing::internal(reply.from, reply.from_id, Command::PingNat, Some(value)),
                DEFAULT_RETRIES,
                Owner::QuickNat,
            );
        }
    }

    /// `_onerror`: the node at `to` failed.
    pub(super) fn on_visit_error(
        &mut self,
        now: Instant,
        id: QueryId,
        q: &mut Query,
        to: SocketAddrV4,
        err: RequestError,
    ) {
        if err == RequestError::Timeout {
            // > this._seen.set(addr, DOWN); for (const node of refs) this._downHint(node, req.to)
            if let Some(Seen::Refs(refs)) = q.seen.insert(to, Seen::Down) {
                for r in refs {
                    self.down_hint(now, id, q, r, to);
                }
            }
        }
        q.errors += 1;
        self.read_more(now, id, q);
    }

    /// `_downHint`: tell `to` that `down` (which it told us about) is down.
    pub(super) fn down_hint(
        &mut self,
        now: Instant,
        id: QueryId,
        q: &mut Query,
        to: Candidate,
        down: SocketAddrV4,
    ) {
        if !self.send_down_hints
            || self
                .down_hints_rate_limit
                .is_some_and(|limit| self.down_hints_sent >= limit)
        {
            return;
        }
        self.down_hints_sent += 1;
        let out = Outgoing::internal(
            to.addr,
            Some(to.id),
            Command::DownHint,
            Some(encode_addr(down).to_vec()),
        );
        if let Some(tid) = self.internal_request(now, out, DEFAULT_RETRIES, Owner::DownHint(id)) {
            q.session.insert(tid);
        }
    }

    /// `_flush`: the walk is over; commit or end.
    pub(super) fn flush(&mut self, now: Instant, id: QueryId, q: &mut Query) {
        if q.committing {
            return;
        }
        q.committing = true;
        // The walk's stragglers (slow requests, DOWN_HINTs) are no longer needed.
        self.cancel_session(q);
        let mut commit = std::mem::replace(&mut q.commit, Commit::None);
        if matches!(commit, Commit::None) {
            q.done = Some(Ok(()));
            return;
        }
        if q.closest.is_empty() {
            q.done = Some(Err(QueryError::TooFewNodes));
            return;
        }
        let target = q.target.0;
        for reply in q.closest.clone() {
            let req = match &mut commit {
                Commit::None => None,
                // > if (!reply.token) return Promise.reject(new Error('No token received...'))
                Commit::Auto => reply.token.map(|token| CommitRequest {
                    command: q.command,
                    token: Some(token),
                    value: q.value.clone(),
                }),
                Commit::Custom(f) => f(&reply),
            };
            let Some(req) = req else {
                q.commit_error = Some(CommitError::NoToken);
                continue;
            };
            let out = Outgoing {
                to: reply.from,
                to_id: None,
                no_id: false,
                token: req.token,
                internal: false,
                command: req.command,
                target: Some(target),
                value: req.value,
            };
            match self.internal_request(now, out, DEFAULT_RETRIES, Owner::Commit(id)) {
                Some(_) => q.commit_pending += 1,
                None => q.commit_error = Some(CommitError::Request(RequestError::Overloaded)),
            }
        }
        q.commit = commit;
        q.settle_commit();
    }

    pub(super) fn cancel_session(&mut self, q: &mut Query) {
        for tid in q.session.drain() {
            self.io.remove(tid);
        }
    }

    pub(super) fn background_concurrency(&self) -> usize {
        // > Math.min(this.concurrency, Math.max(2, (this.concurrency / 8) | 0))
        self.concurrency.min((self.concurrency / 8).max(2))
    }
}
