//! The actor's topics: joining and leaving, refreshing (the DHT walks of announce, unannounce
//! and lookup), the records a lookup finds, and the queue of refreshes waiting for a slot.

use super::*;

impl Actor {
    pub(super) fn join(&mut self, topic: Key, opts: JoinOptions) -> Result<u64, Error> {
        if self.destroying.is_some() {
            return Err(Error::Destroyed);
        }
        if !opts.server && !opts.client {
            return Err(Error::NoMode);
        }
        let inst = match self.active.get(&topic) {
            Some(&i) => i,
            None if self.active.len() >= self.max_topics => return Err(Error::TooManyTopics),
            None => {
                // A previous instance still unannouncing: this one waits for it (JS `wait`).
                let wait = self.leaving_topics.contains_key(&topic);
                self.next_instance += 1;
                let inst = self.next_instance;
                self.instances.insert(
                    inst,
                    Instance {
                        topic,
                        state: Topic::new(wait, self.retry_policy),
                        waiters: Vec::new(),
                        leaving: None,
                        unannouncing: false,
                    },
                );
                self.active.insert(topic, inst);
                self.core.set_topic(topic, true);
                inst
            }
        };
        self.next_session += 1;
        let session = self.next_session;
        if let Some(i) = self.instances.get_mut(&inst) {
            i.state.set_session(session, opts);
        }
        self.refresh(inst, None);
        Ok(session)
    }

    /// JS `discovery.refresh()`: start or join a refresh; `waiter` hears how it went.
    pub(super) fn refresh(&mut self, inst: u64, waiter: Option<Reply<Result<bool, Error>>>) {
        let Some(i) = self.instances.get_mut(&inst) else {
            if let Some(w) = waiter {
                let _ = w.send(Err(Error::NotJoined));
            }
            return;
        };
        let step = i.state.refresh();
        i.waiters.extend(waiter);
        if let Step::Start(plan) = step {
            self.to_run.push((inst, plan));
        }
    }

    /// Run a refresh's DHT walks in a helper (announcing ones once we listen).
    pub(super) async fn run_plan(&mut self, tasks: &mut JoinSet<Done>, inst: u64, plan: Plan) {
        tracing::debug!(inst, ?plan, walking = self.walking, "refresh");
        let Some(i) = self.instances.get(&inst) else {
            return;
        };
        let topic = i.topic;
        if i.leaving.is_some() {
            // JS returns before the query when the discovery is no longer active.
            self.refreshed(tasks, inst, plan.generation, Ok(Vec::new()));
            return;
        }
        if plan.announce && !matches!(self.listen, Listen::Ready(_)) {
            self.pending_plans.push((inst, plan));
            self.start_listening(tasks);
            return;
        }
        if self.walking >= self.max_refreshes {
            let r = rank(plan.lookup, i.state.priority());
            self.waiting[r].push_back((inst, plan));
            return;
        }
        let relays = match &self.listen {
            Listen::Ready(server) if plan.announce => server.relay_addresses().await,
            _ => Vec::new(),
        };
        self.walking += 1;
        let dht = self.dht.clone();
        let kp = self.key_pair.clone();
        let records = self.records_tx.clone();
        tasks.spawn(async move {
            let result = walk(&dht, &kp, topic, plan, relays, |r| {
                let _ = records.try_send((inst, plan.generation, r));
            })
            .await;
            Done::Refreshed {
                instance: inst,
                generation: plan.generation,
                result,
            }
        });
    }

    /// A walk ended: start the refresh that waited longest among those first in line
    /// (lookups, then prioritized topics); stale ones (superseded, or of a topic left) go.
    pub(super) fn next_waiting(&mut self) {
        let instances = &self.instances;
        for queue in self.waiting.iter_mut().rev() {
            while let Some((inst, plan)) = queue.pop_front() {
                if instances
                    .get(&inst)
                    .is_some_and(|i| i.state.is_latest(plan.generation))
                {
                    self.to_run.push((inst, plan));
                    return;
                }
            }
        }
    }

    pub(super) fn start_listening(&mut self, tasks: &mut JoinSet<Done>) {
        if !matches!(self.listen, Listen::Idle) {
            return;
        }
        self.listen = Listen::Pending;
        let dht = self.dht.clone();
        let kp = self.key_pair.clone();
        let firewall = self.server_firewall();
        tasks.spawn(async move { Done::Listened(dht.listen_with_firewall(&kp, firewall).await) });
    }

    /// JS `_handleFirewall` for incoming handshakes, run inside the DHT task.
    pub(super) fn server_firewall(&self) -> FirewallFn {
        let own = self.key_pair.public_key();
        let bans = self.bans.clone();
        let user = self.firewall.clone();
        let tx = self.ban_tx.clone();
        Box::new(move |key, payload, _addr| {
            if *key == own || bans.lock().is_ok_and(|b| b.contains(key)) {
                return true;
            }
            if user.as_ref().is_some_and(|f| f(key, Some(payload))) {
                if let Ok(mut b) = bans.lock() {
                    b.insert(*key);
                }
                let _ = tx.try_send(*key);
                return true;
            }
            false
        })
    }

    /// A record from a lookup still running: handle its peers now (once per refresh).
    pub(super) fn record(&mut self, inst: u64, generation: u64, reply: LookupResult) {
        let now = Instant::now();
        let Some(i) = self.instances.get(&inst) else {
            return;
        };
        if !i.state.is_client() || i.leaving.is_some() {
            return;
        }
        let topic = i.topic;
        let seen = self.streamed.entry((inst, generation)).or_default();
        for p in reply.peers {
            if seen.insert(p.public_key) {
                self.core
                    .handle_peer(now, topic, p.public_key, p.relay_addresses);
            }
        }
    }

    /// A refresh finished.
    pub(super) fn refreshed(
        &mut self,
        tasks: &mut JoinSet<Done>,
        inst: u64,
        generation: u64,
        result: Result<Vec<PeerRecord>, peerhost_hyperdht::Error>,
    ) {
        let now = Instant::now();
        let jitter = self.jitter();
        // Peers this refresh's lookup already streamed were handled then.
        let mut seen = self
            .streamed
            .remove(&(inst, generation))
            .unwrap_or_default();
        self.streamed
            .retain(|(i, g), _| *i != inst || *g > generation);
        let own = self.key_pair.public_key();
        let found = seen.iter().any(|k| *k != own)
            || result
                .as_ref()
                .is_ok_and(|r| r.iter().any(|p| p.public_key != own));
        let Some(i) = self.instances.get_mut(&inst) else {
            return;
        };
        let ok = result.is_ok();
        tracing::debug!(topic = %hex8(&i.topic), generation, ok, found, "refreshed");
        let latest = i.state.handle_done(now, generation, ok, found, jitter);
        self.arm(inst);
        let Some(i) = self.instances.get_mut(&inst).filter(|_| latest) else {
            return;
        };
        for w in i.waiters.drain(..) {
            let _ = w.send(Ok(ok));
        }
        let (topic, client, leaving) = (i.topic, i.state.is_client(), i.leaving.is_some());
        if client && !leaving {
            for p in result.unwrap_or_default() {
                if seen.insert(p.public_key) {
                    self.core
                        .handle_peer(now, topic, p.public_key, p.relay_addresses);
                }
            }
        }
        if leaving {
            self.step_leave(tasks, inst);
        }
    }

    /// Leave `topic` (JS `leave` → `discovery.destroy()`).
    pub(super) fn leave(
        &mut self,
        tasks: &mut JoinSet<Done>,
        topic: Key,
        reply: Option<Reply<Result<bool, Error>>>,
    ) {
        let Some(inst) = self.active.remove(&topic) else {
            if let Some(r) = reply {
                let _ = r.send(Ok(true));
            }
            return;
        };
        self.core.set_topic(topic, false);
        if let Some(i) = self.instances.get_mut(&inst) {
            i.state.destroy();
            i.leaving = Some(reply.into_iter().collect());
            *self.leaving_topics.entry(topic).or_insert(0) += 1;
        }
        self.arm(inst);
        // Completes at once unless a refresh runs or an unannounce is needed.
        self.step_leave(tasks, inst);
    }

    /// Advance a leaving instance: wait for its refresh, unannounce, then finish (and let a
    /// newer instance of the topic that waited for this one refresh).
    pub(super) fn step_leave(&mut self, tasks: &mut JoinSet<Done>, inst: u64) {
        let Some(i) = self.instances.get_mut(&inst) else {
            return;
        };
        if i.state.is_busy() || i.unannouncing {
            return;
        }
        if i.state.needs_unannounce() {
            i.unannouncing = true;
            let (dht, kp, topic) = (self.dht.clone(), self.key_pair.clone(), i.topic);
            tasks.spawn(async move {
                // Best effort, as JS: a failed unannounce is not retried.
                let _ = dht.unannounce(topic, &kp).await;
                Done::Unannounced { instance: inst }
            });
            return;
        }
        let Some(i) = self.instances.remove(&inst) else {
            return;
        };
        if i.leaving.is_some() {
            if let Some(n) = self.leaving_topics.get_mut(&i.topic) {
                *n -= 1;
                if *n == 0 {
                    self.leaving_topics.remove(&i.topic);
                }
            }
        }
        for w in i.waiters {
            let _ = w.send(Ok(false));
        }
        for w in i.leaving.into_iter().flatten() {
            let _ = w.send(Ok(true));
        }
        self.check_destroyed();
        let newer = self.active.get(&i.topic).copied();
        if let Some(newer) = newer {
            if let Some(plan) = self
                .instances
                .get_mut(&newer)
                .and_then(|n| n.state.undefer())
            {
                self.to_run.push((newer, plan));
            }
        }
    }

    /// A lookup-only refresh of `inst` now, if it is a client.
    pub(super) fn lookup_now(&mut self, inst: u64) {
        let step = self
            .instances
            .get_mut(&inst)
            .and_then(|i| i.state.lookup_now());
        self.arm(inst);
        if let Some(Step::Start(plan)) = step {
            self.to_run.push((inst, plan));
        }
    }
}

/// A refresh's DHT walks: announce and/or (unannounce and) look up, concurrently.
async fn walk(
    dht: &Dht,
    kp: &KeyPair,
    topic: Key,
    plan: Plan,
    relays: Vec<SocketAddrV4>,
    on_record: impl Fn(LookupResult),
) -> Result<Vec<PeerRecord>, peerhost_hyperdht::Error> {
    dht.bootstrapped().await;
    let announce = async {
        if !plan.announce {
            return Ok(());
        }
        let mut opts = AnnounceOptions::default();
        opts.clear = plan.clear;
        dht.announce(topic, kp, relays, opts).await.map(drop)
    };
    let unannounce = async {
        if plan.unannounce {
            dht.unannounce(topic, kp).await
        } else {
            Ok(())
        }
    };
    let lookup = async {
        if !plan.lookup {
            return Ok(Vec::new());
        }
        let (tx, mut rx) = mpsc::channel(RECORDS);
        let forward = async {
            while let Some(r) = rx.recv().await {
                on_record(r);
            }
        };
        let (replies, ()) = tokio::join!(dht.lookup_with(topic, tx), forward);
        Ok(replies?.into_iter().flat_map(|r| r.peers).collect())
    };
    let (a, u, l) = tokio::join!(announce, unannounce, lookup);
    a?;
    u?;
    l
}

/// A waiting refresh's queue in `Actor::waiting`: lookups first, then prioritized topics.
fn rank(lookup: bool, priority: bool) -> usize {
    usize::from(lookup) * 2 + usize::from(priority)
}
