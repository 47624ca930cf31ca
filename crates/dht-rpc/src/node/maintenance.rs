//! Routing-table upkeep, the maintenance tick, bootstrap, and our network state: NAT samples,
//! the firewall check, and the switch between ephemeral and persistent (dht-rpc `index.js`
//! `_addNodeFromNetwork`, `_onfullrow`, `_ontick`, `_pingSome`, `_check`, `_bootstrap`,
//! `_updateNetworkState`, `_checkIfFirewalled`).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use super::{
    DEFAULT_RETRIES, Event, MORE_STABLE_TICKS, Node, OLD_NODE, Outgoing, RECENT_NODE, Reply,
    SLEEPING_INTERVAL,
};
use crate::RequestError;
use crate::io::Owner;
use crate::messages::Command;
use crate::nat::NatSampler;
use crate::peer::NodeId;
use crate::query::Purpose;
use crate::table::{Added, K, TableNode};

/// Where `_bootstrap`'s loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bootstrap {
    /// A walk for our own id is running.
    Querying,
    /// A firewall check decides whether to walk again.
    Checking,
    /// Over.
    Done,
}

/// Who waits for a network-state update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckPurpose {
    Bootstrap { round: u8 },
    Adaptive,
}

/// A firewall check in progress (`_updateNetworkState` waiting on `_checkIfFirewalled`).
#[derive(Debug)]
pub(super) struct FirewallCheck {
    pub(super) generation: u64,
    pub(super) host: Ipv4Addr,
    pub(super) port: u16,
    pub(super) only_firewall: bool,
    pub(super) purpose: CheckPurpose,
    pub(super) asked: usize,
    pub(super) pending: usize,
    pub(super) pongs: Vec<Reply>,
    pub(super) hosts: HashSet<Ipv4Addr>,
}

impl Node {
    // ------------------------------------------------------------------ routing table

    /// `_addNodeFromNetwork` for a sender with a valid id.
    pub(super) fn add_node_from_network(
        &mut self,
        now: Instant,
        sample: bool,
        from: SocketAddrV4,
        id: NodeId,
        to: SocketAddrV4,
    ) {
        if self.filter_node.is_some_and(|f| !f(&from)) {
            return;
        }
        let tick = self.tick;
        if let Some(old) = self.table.get_mut(&id) {
            let mut nat_sample = None;
            if sample && (old.sampled == 0 || tick.saturating_sub(old.sampled) >= OLD_NODE) {
                old.to = Some(to);
                old.sampled = tick;
                nat_sample = Some(to);
            }
            old.pinged = tick;
            old.seen = tick;
            self.table.touch(&id);
            if let Some(to) = nat_sample {
                self.nat_add(to);
            }
            return;
        }
        self.add_table_node(TableNode::new(from, Some(to)), now);
    }

    /// `_sampleBootstrapMaybe`: NAT samples from a few id-less responders.
    pub(super) fn sample_bootstrap_maybe(&mut self, from: SocketAddrV4, to: SocketAddrV4) {
        if self.filter_node.is_some_and(|f| !f(&from)) {
            return;
        }
        if self.none_persistent_samples.len() >= self.bootstrap_nodes.len().max(1)
            || self.none_persistent_samples.contains(&from)
        {
            return;
        }
        self.none_persistent_samples.push(from);
        self.nat_add(to);
    }

    /// `_addNode`.
    pub(super) fn add_table_node(&mut self, mut node: TableNode, now: Instant) {
        if self.table.contains(&node.id) || node.id == self.table.id() {
            return;
        }
        let tick = self.tick;
        node.added = tick;
        node.pinged = tick;
        node.seen = tick;
        match self.table.add(node.clone()) {
            Added::Full { row } => self.on_full_row(now, node, row),
            Added::Replaced => {}
            Added::New => {
                if let Some(to) = node.to {
                    if node.sampled == 0 {
                        if let Some(n) = self.table.get_mut(&node.id) {
                            n.sampled = tick;
                        }
                        self.nat_add(to);
                    }
                }
            }
        }
    }

    pub(super) fn remove_node(&mut self, id: &NodeId) {
        self.table.remove(id);
    }

    /// `_onfullrow`: maybe ping the row's stalest node and swap it for the newcomer.
    pub(super) fn on_full_row(&mut self, now: Instant, new: TableNode, row: usize) {
        if !self.bootstrapped || self.repinging >= 3 {
            return;
        }
        let tick = self.tick;
        let mut oldest: Option<&TableNode> = None;
        for n in self.table.row(row) {
            if n.pinged == tick {
                continue;
            }
            if oldest
                .is_none_or(|o| o.pinged > n.pinged || (o.pinged == n.pinged && o.added > n.added))
            {
                oldest = Some(n);
            }
        }
        let Some(oldest) = oldest else { return };
        if tick.saturating_sub(oldest.pinged) < RECENT_NODE
            && tick.saturating_sub(oldest.added) > OLD_NODE
        {
            return;
        }
        let (old_id, old_addr) = (oldest.id, oldest.addr);
        if let Some(n) = self.table.get_mut(&old_id) {
            n.pinged = tick;
        }
        self.repinging += 1;
        let sent = self.internal_request(
            now,
            Outgoing::internal(old_addr, None, Command::Ping, None),
            DEFAULT_RETRIES,
            Owner::Reping {
                old: old_id,
                new: Box::new(new),
            },
        );
        if sent.is_none() {
            self.repinging -= 1;
        }
    }

    /// `_check`: ping a node; drop it if it fails or answers without having been seen since.
    pub(super) fn check_node(&mut self, now: Instant, id: NodeId) {
        let tick = self.tick;
        let Some(n) = self.table.get_mut(&id) else {
            return;
        };
        n.pinged = tick;
        let addr = n.addr;
        self.checks += 1;
        let sent = self.internal_request(
            now,
            Outgoing::internal(addr, None, Command::Ping, None),
            DEFAULT_RETRIES,
            Owner::Check { node: id },
        );
        if sent.is_none() {
            self.checks -= 1;
        }
    }

    pub(super) fn nat_add(&mut self, to: SocketAddrV4) {
        let prev = (self.nat.host(), self.nat.port());
        self.nat.add(*to.ip(), to.port());
        let next = (self.nat.host(), self.nat.port());
        if prev != next {
            self.emit(Event::NatUpdate {
                host: next.0,
                port: next.1,
            });
        }
    }

    // ------------------------------------------------------------------ maintenance

    pub(super) fn on_drain(&mut self, now: Instant) {
        self.tokens.on_drain();
        self.io.drain(now, &mut self.outbox);
    }

    /// `_ontick`.
    pub(super) fn on_tick(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_tick) > SLEEPING_INTERVAL {
            self.on_wakeup(now);
        } else {
            self.tick += 1;
        }
        self.last_tick = now;

        if !self.bootstrapped {
            return;
        }

        if self.adaptive && self.ephemeral {
            self.stable_ticks -= 1;
            if self.stable_ticks <= 0 {
                if self.last_host == self.nat.host() {
                    // do not recheck the same network
                    self.stable_ticks = MORE_STABLE_TICKS;
                } else {
                    let _ = self.update_network_state(now, false, CheckPurpose::Adaptive);
                }
            }
        }

        if self.tick & 7 == 0 {
            self.ping_some(now);
        }

        // Short-circuit as JS: the refresh countdown only moves when the first test fails.
        let refresh = (self.tick & 63 == 0 && self.table.len() < K) || {
            self.refresh_ticks -= 1;
            self.refresh_ticks <= 0
        };
        if refresh {
            self.refresh(now);
        }

        self.down_hints_sent = 0;
    }

    /// `_onwakeup`.
    pub(super) fn on_wakeup(&mut self, _now: Instant) {
        self.tick += 2 * OLD_NODE;
        // > this._tick += 8 - (this._tick & 7) - 2   (may be -1: never underflows here, as the
        // tick just grew by 720)
        self.tick = self.tick + 6 - (self.tick & 7);
        self.stable_ticks = MORE_STABLE_TICKS;
        self.refresh_ticks = 1;
        self.last_host = None;
        if self.adaptive && !self.ephemeral {
            self.ephemeral = true;
            self.emit(Event::Ephemeral);
        }
        self.emit(Event::Wakeup);
    }

    /// `_pingSome`: ping the least recently seen nodes.
    pub(super) fn ping_some(&mut self, now: Instant) {
        let mut cnt = if self.io.len() > 2 { 3 } else { 5 };
        let tick = self.tick;
        let Some(oldest) = self.table.oldest_first().next() else {
            self.refresh(now);
            return;
        };
        if tick.saturating_sub(oldest.pinged) < RECENT_NODE {
            cnt = 2;
        }
        // JS `continue`s without advancing when a node was pinged this tick, which ends the
        // round: take nodes until the first such one.
        let ids: Vec<NodeId> = self
            .table
            .oldest_first()
            .take(cnt)
            .take_while(|n| n.pinged != tick)
            .map(|n| n.id)
            .collect();
        for id in ids {
            self.check_node(now, id);
        }
    }

    // ------------------------------------------------------------------ bootstrap

    pub(super) fn bootstrap_round(&mut self, now: Instant, round: u8) {
        // Set first: the walk may end at once (no nodes to ask).
        self.bootstrap = Bootstrap::Querying;
        if self
            .background_query(now, self.table.id(), Purpose::Bootstrap { round })
            .is_none()
        {
            self.finish_bootstrap();
        }
    }

    /// The bootstrap walk of `round` ended (the rest of `DHT#_bootstrap`'s loop).
    pub(super) fn on_bootstrap_query_done(&mut self, now: Instant, round: u8) {
        // > if (this.bootstrapped || (!testNat && !this._forcePersistent)) break
        if self.bootstrapped || (!self.test_nat && !self.force_persistent) {
            self.finish_bootstrap();
            return;
        }
        let only_firewall = !self.force_persistent;
        match self.update_network_state(now, only_firewall, CheckPurpose::Bootstrap { round }) {
            Some(ok) => self.after_bootstrap_check(now, round, ok),
            None => self.bootstrap = Bootstrap::Checking,
        }
    }

    pub(super) fn after_bootstrap_check(&mut self, now: Instant, round: u8, ok: bool) {
        if ok && round == 0 {
            self.bootstrap_round(now, 1);
        } else {
            self.finish_bootstrap();
        }
    }

    pub(super) fn finish_bootstrap(&mut self) {
        self.bootstrap = Bootstrap::Done;
        if self.bootstrapped {
            return;
        }
        self.bootstrapped = true;
        self.emit(Event::Bootstrapped);
    }

    /// `_updateNetworkState`: `Some(result)` when decided now, `None` while a firewall check
    /// runs (its end calls [`Self::finish_network_state`] and then the purpose's continuation).
    pub(super) fn update_network_state(
        &mut self,
        now: Instant,
        only_firewall: bool,
        purpose: CheckPurpose,
    ) -> Option<bool> {
        if !self.ephemeral || (only_firewall && !self.firewalled) {
            return Some(false);
        }
        let (host, port) = (self.nat.host(), self.nat.port());
        if !only_firewall {
            self.stable_ticks = MORE_STABLE_TICKS;
            self.last_host = host;
        }
        // > if (host === null || port === 0) return false
        let Some(host) = host.filter(|_| port != 0) else {
            return Some(false);
        };
        if !self.firewalled {
            return Some(self.finish_network_state(now, host, port, only_firewall, None));
        }
        if self.check.is_some() {
            // One check at a time (JS would run them in parallel).
            return Some(false);
        }
        self.start_firewall_check(now, host, port, only_firewall, purpose)
    }

    /// The rest of `_updateNetworkState` once we know we are not firewalled. `sampler` is the
    /// firewall check's sampler (`None`: our main one).
    pub(super) fn finish_network_state(
        &mut self,
        now: Instant,
        host: Ipv4Addr,
        port: u16,
        only_firewall: bool,
        sampler: Option<NatSampler>,
    ) -> bool {
        self.firewalled = false;
        if !self.ephemeral || Some(host) != self.nat.host() || port != self.nat.port() {
            return false;
        }
        let s = sampler.as_ref().unwrap_or(&self.nat);
        let Some(shost) = s.host().filter(|h| *h == host && s.port() != 0) else {
            return false;
        };
        let id = NodeId::from_addr(SocketAddrV4::new(shost, s.port()));
        if !only_firewall {
            self.ephemeral = false;
        }
        if let Some(s) = sampler {
            let prev = (self.nat.host(), self.nat.port());
            self.none_persistent_samples.clear();
            self.nat = s;
            if prev != (self.nat.host(), self.nat.port()) {
                self.emit(Event::NatUpdate {
                    host: self.nat.host(),
                    port: self.nat.port(),
                });
            }
        }
        if self.table.id() != id {
            self.table = self.table.rebuild(id);
            if self.bootstrapped {
                self.refresh(now);
            }
        }
        if !self.ephemeral {
            self.emit(Event::Persistent { id });
        }
        true
    }

    /// `_checkIfFirewalled`: ask up to five recent nodes (plus the bootstrap nodes) to PING_NAT
    /// our server socket.
    pub(super) fn start_firewall_check(
        &mut self,
        now: Instant,
        host: Ipv4Addr,
        port: u16,
        only_firewall: bool,
        purpose: CheckPurpose,
    ) -> Option<bool> {
        let mut nodes: Vec<(SocketAddrV4, NodeId)> = self
            .table
            .oldest_first()
            .rev()
            .take(5)
            .map(|n| (n.addr, n.id))
            .collect();
        if nodes.len() < 5 {
            nodes.extend(
                self.bootstrap_nodes
                    .iter()
                    .map(|a| (*a, NodeId::from_addr(*a))),
            );
        }
        if nodes.is_empty() {
            // No one to ask: firewalled.
            return Some(false);
        }
        self.check_generation += 1;
        let generation = self.check_generation;
        let value = self.server_port.to_le_bytes().to_vec();
        let mut sent = 0;
        for (addr, id) in &nodes {
            let ok = self.internal_request(
                now,
                Outgoing::internal(*addr, Some(*id), Command::PingNat, Some(value.clone())),
                DEFAULT_RETRIES,
                Owner::Firewall { generation },
            );
            if ok.is_none() {
                break;
            }
            sent += 1;
        }
        if sent == 0 {
            return Some(false);
        }
        self.check = Some(FirewallCheck {
            generation,
            host,
            port,
            only_firewall,
            purpose,
            asked: nodes.len(),
            pending: sent,
            pongs: Vec::new(),
            hosts: HashSet::new(),
        });
        None
    }

    pub(super) fn on_firewall_pong(
        &mut self,
        now: Instant,
        generation: u64,
        result: Result<Reply, RequestError>,
    ) {
        let Some(check) = self.check.as_mut().filter(|c| c.generation == generation) else {
            return;
        };
        if let Ok(reply) = result {
            check.pongs.push(reply);
        }
        check.pending = check.pending.saturating_sub(1);
        if check.pending > 0 {
            return;
        }
        let Some(check) = self.check.take() else {
            return;
        };
        let mut sampler = NatSampler::new();
        let mut count = 0;
        for pong in &check.pongs {
            // > if (hosts.has(res.from.host)) { count++; natSampler.add(res.to.host, res.to.port) }
            if check.hosts.contains(pong.from.ip()) {
                count += 1;
                sampler.add(*pong.to.ip(), pong.to.port());
            }
        }
        let needed = if check.asked >= 5 { 3 } else { 1 };
        let firewalled = count < needed
            || sampler.host().is_none()
            || self.nat.host() != sampler.host()
            || sampler.port() == 0
            || sampler.port() != self.server_port;
        let ok = !firewalled
            && self.finish_network_state(
                now,
                check.host,
                check.port,
                check.only_firewall,
                Some(sampler),
            );
        match check.purpose {
            CheckPurpose::Bootstrap { round } => {
                if matches!(self.bootstrap, Bootstrap::Checking) {
                    self.after_bootstrap_check(now, round, ok);
                }
            }
            CheckPurpose::Adaptive => {}
        }
    }
}
