//! The swarm's actor: the one task that owns the core, the topics, the listening server and
//! every helper task (see the parent module's docs for the message flow).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerhost_hyperdht::driver::{Dht, RawConnection as DhtConnection, Server};
use peerhost_hyperdht::messages::PeerRecord;
use peerhost_hyperdht::{AnnounceOptions, ConnectError, ConnectOptions, FirewallFn, LookupResult};
use peerhost_ids::KeyPair;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::{BAN_EVENTS, Command, Config, MAX_BANS, PENDING_CONNECTIONS, RECORDS, Reply};

use crate::connection::{self, CloseReason, Connection, Link, Shared};
use crate::error::Error;
use crate::peer::PeerInfo;
use crate::state::{Action, ConnId, Core, Dialed, Firewall, Incoming, Key};
use crate::timers::Timers;
use crate::topic::{Due, EmptyLookupRetry, JoinOptions, Plan, RANDOM_JITTER, Step, Topic};

mod topics;

/// A helper task finished.
enum Done {
    Listened(Result<Server, peerhost_hyperdht::Error>),
    Refreshed {
        instance: u64,
        generation: u64,
        result: Result<Vec<PeerRecord>, peerhost_hyperdht::Error>,
    },
    Unannounced {
        instance: u64,
    },
    Dialed {
        conn: ConnId,
        result: Result<Box<DhtConnection>, ConnectError>,
    },
    Closed {
        conn: ConnId,
    },
}

/// Start the actor for a swarm on `dht`.
pub(super) fn spawn(
    dht: Dht,
    config: &Config,
    commands: mpsc::Receiver<Command>,
    me: mpsc::WeakSender<Command>,
    out: mpsc::Sender<(Connection, PeerInfo)>,
) {
    let (ban_tx, ban_rx) = mpsc::channel(BAN_EVENTS);
    let (records_tx, records) = mpsc::channel(RECORDS);
    let mut rng = match config.seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_entropy(),
    };
    let core = Core::new(
        config.key_pair.public_key(),
        config.limits(),
        config.firewall.clone(),
        config.backoffs,
        config.jitter,
        Some(rng.r#gen()),
    );
    let actor = Actor {
        core,
        dht,
        key_pair: config.key_pair.clone(),
        firewall: config.firewall.clone(),
        me,
        out,
        bans: Arc::new(Mutex::new(BanList::default())),
        ban_tx,
        rng,
        instances: HashMap::new(),
        active: HashMap::new(),
        next_instance: 0,
        next_session: 0,
        listen: Listen::Idle,
        listen_waiters: Vec::new(),
        pending_plans: Vec::new(),
        to_run: Vec::new(),
        walking: 0,
        waiting: Default::default(),
        leaving_topics: HashMap::new(),
        timers: Timers::default(),
        max_refreshes: config.max_refreshes.max(1),
        max_topics: config.max_topics,
        retry_policy: config.empty_lookup_retry,
        live: HashMap::new(),
        pending: VecDeque::new(),
        parked: HashMap::new(),
        flushes: HashMap::new(),
        next_flush: 0,
        destroying: None,
        stopped: false,
        records_tx,
        records,
        streamed: HashMap::new(),
    };
    tokio::spawn(actor.run(commands, ban_rx));
}

/// Handshake-time bans: a set with first-in first-out eviction at [`MAX_BANS`].
#[derive(Debug, Default)]
struct BanList {
    set: HashSet<Key>,
    order: VecDeque<Key>,
}

impl BanList {
    fn contains(&self, key: &Key) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: Key) {
        if self.set.insert(key) {
            self.order.push_back(key);
            if self.order.len() > MAX_BANS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, key: &Key) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }
}

enum Listen {
    Idle,
    Pending,
    Ready(Server),
}

/// One instance of a topic (a topic left and joined again is a new instance).
struct Instance {
    topic: Key,
    state: Topic,
    /// Waiting for the latest refresh.
    waiters: Vec<Reply<Result<bool, Error>>>,
    /// Left: waiting for the running refresh, then the unannounce.
    leaving: Option<Vec<Reply<Result<bool, Error>>>>,
    unannouncing: bool,
}

struct Live {
    kill: Option<oneshot::Sender<()>>,
    link: Arc<Link>,
    shared: Arc<Shared>,
}

struct Actor {
    core: Core,
    dht: Dht,
    key_pair: KeyPair,
    firewall: Option<Firewall>,
    me: mpsc::WeakSender<Command>,
    out: mpsc::Sender<(Connection, PeerInfo)>,
    bans: Arc<Mutex<BanList>>,
    ban_tx: mpsc::Sender<Key>,
    rng: StdRng,
    instances: HashMap<u64, Instance>,
    /// Joined topics → their instance.
    active: HashMap<Key, u64>,
    next_instance: u64,
    next_session: u64,
    listen: Listen,
    listen_waiters: Vec<Reply<Result<(), Error>>>,
    /// Announcing refreshes waiting for the server to listen.
    pending_plans: Vec<(u64, Plan)>,
    /// Refreshes to start (they may await the server's relay addresses).
    to_run: Vec<(u64, Plan)>,
    /// DHT walks running…
    walking: usize,
    /// …and refreshes waiting for one to end (at most `max_refreshes` run), one queue per
    /// rank (`topics::rank`: lookups, then prioritized topics), oldest first; superseded ones
    /// are dropped when they come up. Queues, not one list searched at every walk's end: with
    /// 40 000 topics joined at once that search was quadratic.
    waiting: [VecDeque<(u64, Plan)>; 4],
    /// Topics with an instance still leaving (unannouncing), and how many: a new instance of
    /// one waits for it (JS `wait`).
    leaving_topics: HashMap<Key, usize>,
    /// Every instance's next timer (refresh or empty-lookup retry), earliest first, kept in
    /// step with `Topic::poll_timeout` by [`Actor::arm`].
    timers: Timers<u64>,
    max_refreshes: usize,
    max_topics: usize,
    retry_policy: Option<EmptyLookupRetry>,
    live: HashMap<ConnId, Live>,
    /// Connections waiting for room in the application's queue.
    pending: VecDeque<(ConnId, Connection, PeerInfo)>,
    /// Connections waiting for the one they replace to close.
    parked: HashMap<ConnId, Connection>,
    flushes: HashMap<u64, Reply<bool>>,
    next_flush: u64,
    destroying: Option<Vec<Reply<()>>>,
    stopped: bool,
    /// Records from lookups still running (instance, refresh generation, reply): hyperswarm
    /// dials on each as it arrives, not at the lookup's end.
    records_tx: mpsc::Sender<(u64, u64, LookupResult)>,
    records: mpsc::Receiver<(u64, u64, LookupResult)>,
    /// Peers already handled in a refresh still running, by (instance, generation).
    streamed: HashMap<(u64, u64), HashSet<Key>>,
}

enum Event {
    Record(u64, u64, LookupResult),
    Command(Option<Command>),
    Banned(Key),
    Done(Done),
    Incoming(Option<Box<DhtConnection>>),
    Deliver(Result<mpsc::OwnedPermit<(Connection, PeerInfo)>, mpsc::error::SendError<()>>),
    Timer,
    Nothing,
}

async fn accept(server: &mut Listen) -> Option<DhtConnection> {
    match server {
        Listen::Ready(s) => s.accept_raw().await,
        _ => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut bans: mpsc::Receiver<Key>) {
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut commands_open = true;
        loop {
            while let Some((inst, plan)) = self.to_run.pop() {
                self.run_plan(&mut tasks, inst, plan).await;
            }
            self.drain(&mut tasks);
            if self.stopped {
                break;
            }
            let deadline = self.deadline();
            let has_pending = !self.pending.is_empty();
            let out = self.out.clone();
            let event = tokio::select! {
                biased;
                p = out.reserve_owned(), if has_pending => Event::Deliver(p),
                Some(d) = tasks.join_next() => match d {
                    Ok(d) => Event::Done(d),
                    // A helper panicked: nothing to report.
                    Err(_) => Event::Nothing,
                },
                Some(k) = bans.recv() => Event::Banned(k),
                Some((i, g, r)) = self.records.recv() => Event::Record(i, g, r),
                c = commands.recv(), if commands_open => Event::Command(c),
                c = accept(&mut self.listen) => Event::Incoming(c.map(Box::new)),
                () = sleep_until(deadline) => Event::Timer,
            };
            match event {
                Event::Deliver(Ok(permit)) => {
                    if let Some((_, conn, peer)) = self.pending.pop_front() {
                        permit.send((conn, peer));
                    }
                }
                Event::Deliver(Err(_)) => {
                    // Nobody takes connections any more: end them.
                    for (id, _, _) in std::mem::take(&mut self.pending) {
                        self.kill(id, CloseReason::NotTaken);
                    }
                }
                Event::Done(d) => self.done(&mut tasks, d),
                Event::Record(inst, generation, reply) => self.record(inst, generation, reply),
                Event::Banned(k) => {
                    if let Some(conn) = self.core.ban(k) {
                        self.kill(conn, CloseReason::Banned);
                    }
                }
                Event::Command(Some(c)) => self.command(&mut tasks, c),
                Event::Command(None) => {
                    // Every handle is gone: destroy.
                    commands_open = false;
                    self.destroy(&mut tasks, None);
                }
                Event::Incoming(Some(c)) => self.incoming(&mut tasks, *c),
                Event::Incoming(None) => self.listen = Listen::Idle,
                Event::Timer => self.timer(),
                Event::Nothing => {}
            }
        }
        // Ends every helper, forwarding tasks included (their connections end gracefully).
        tasks.shutdown().await;
    }

    /// When to wake up: the core's timer or the earliest topic timer (possibly a stale entry:
    /// [`Actor::timer`] then finds nothing due).
    fn deadline(&self) -> Option<Instant> {
        [self.core.poll_timeout(), self.timers.next()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Put `inst`'s next timer in the queue. Called after anything that may move a topic's
    /// timers (`Topic::handle_done`, `handle_timeout`, `lookup_now`, `destroy`).
    pub(super) fn arm(&mut self, inst: u64) {
        let due = self
            .instances
            .get(&inst)
            .and_then(|i| i.state.poll_timeout());
        self.timers.set(inst, due);
    }

    fn jitter(&mut self) -> Duration {
        let max = u64::try_from(RANDOM_JITTER.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.gen_range(0..=max))
    }

    /// The core's actions.
    fn drain(&mut self, tasks: &mut JoinSet<Done>) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Dial {
                    conn,
                    public_key,
                    relay_addresses,
                } => {
                    let dht = self.dht.clone();
                    let kp = self.key_pair.clone();
                    tasks.spawn(async move {
                        let mut opts = ConnectOptions::default();
                        opts.relay_addresses = relay_addresses;
                        let result = dht.connect_raw(&kp, public_key, opts).await;
                        Done::Dialed {
                            conn,
                            result: result.map(Box::new),
                        }
                    });
                }
                Action::Flushed { id, ok } => {
                    if let Some(r) = self.flushes.remove(&id) {
                        let _ = r.send(ok);
                    }
                }
                Action::Banned(key) => {
                    if let Ok(mut b) = self.bans.lock() {
                        b.insert(key);
                    }
                }
            }
        }
    }

    fn command(&mut self, tasks: &mut JoinSet<Done>, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join { topic, opts, reply } => {
                let _ = reply.send(self.join(topic, opts));
            }
            Command::Refresh {
                topic,
                session,
                opts,
                reply,
            } => {
                if !opts.server && !opts.client {
                    let _ = reply.send(Err(Error::NoMode));
                    return;
                }
                let inst = self.active.get(&topic).copied();
                let Some((inst, i)) = inst.and_then(|n| Some((n, self.instances.get_mut(&n)?)))
                else {
                    let _ = reply.send(Err(Error::NotJoined));
                    return;
                };
                if !i.state.has_session(session) {
                    let _ = reply.send(Err(Error::NotJoined));
                    return;
                }
                i.state.set_session(session, opts);
                self.refresh(inst, Some(reply));
            }
            Command::Flushed { topic, reply } => {
                let inst = self.active.get(&topic).copied();
                match inst.and_then(|n| self.instances.get_mut(&n)) {
                    Some(i) if i.state.is_busy() => i.waiters.push(reply),
                    Some(_) => {
                        let _ = reply.send(Ok(true));
                    }
                    None => {
                        let _ = reply.send(Err(Error::NotJoined));
                    }
                }
            }
            Command::EndSession {
                topic,
                session,
                reply,
            } => {
                let inst = self.active.get(&topic).copied();
                let Some((inst, i)) = inst.and_then(|n| Some((n, self.instances.get_mut(&n)?)))
                else {
                    let _ = reply.send(Ok(true));
                    return;
                };
                if !i.state.has_session(session) {
                    let _ = reply.send(Ok(true));
                    return;
                }
                let left = i.state.remove_session(session);
                let unannounce = !i.state.wanted().server && i.state.needs_unannounce();
                if left == 0 {
                    self.leave(tasks, topic, Some(reply));
                } else if unannounce {
                    self.refresh(inst, Some(reply));
                } else {
                    let _ = reply.send(Ok(true));
                }
            }
            Command::Leave { topic, reply } => self.leave(tasks, topic, Some(reply)),
            Command::Flush(reply) => self.flush(reply),
            Command::FlushConnections(reply) => {
                let id = self.next_flush;
                self.next_flush += 1;
                if self.destroying.is_some() {
                    let _ = reply.send(false);
                } else if self.core.flush(id) {
                    let _ = reply.send(true);
                } else {
                    self.flushes.insert(id, reply);
                }
            }
            Command::Listen(reply) => {
                if let Listen::Ready(_) = self.listen {
                    let _ = reply.send(Ok(()));
                } else if self.destroying.is_some() {
                    let _ = reply.send(Err(Error::Destroyed));
                } else {
                    self.listen_waiters.push(reply);
                    self.start_listening(tasks);
                }
            }
            Command::JoinPeer(k) => self.core.join_peer(now, k),
            Command::LeavePeer(k) => self.core.leave_peer(&k),
            Command::Ban(k) => {
                if let Some(conn) = self.core.ban(k) {
                    self.kill(conn, CloseReason::Banned);
                }
            }
            Command::Unban(k) => {
                self.core.unban(&k);
                if let Ok(mut b) = self.bans.lock() {
                    b.remove(&k);
                }
            }
            Command::Status(reply) => {
                let mut st = self.core.status();
                st.listening = matches!(self.listen, Listen::Ready(_));
                let topics = self.active.values().filter_map(|i| self.instances.get(i));
                for i in topics {
                    st.announced_topics += usize::from(i.state.announced());
                    st.client_topics += usize::from(i.state.wanted().client);
                }
                let _ = reply.send(st);
            }
            Command::LookupAgain => {
                let active: Vec<u64> = self.active.values().copied().collect();
                for inst in active {
                    self.lookup_now(inst);
                }
            }
            Command::Peer(k, reply) => {
                let _ = reply.send(self.core.peer_info(&k));
            }
            Command::Destroy(reply) => self.destroy(tasks, Some(reply)),
        }
    }
    fn flush(&mut self, reply: Reply<bool>) {
        if self.destroying.is_some() {
            let _ = reply.send(false);
            return;
        }
        // Stage 1: every topic's current refresh (JS `discovery.flushed()`), then stage 2 in
        // the actor (the connections).
        let mut waits = Vec::new();
        for inst in self.active.values() {
            if let Some(i) = self.instances.get_mut(inst) {
                if i.state.is_busy() {
                    let (tx, rx) = oneshot::channel();
                    i.waiters.push(tx);
                    waits.push(rx);
                }
            }
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            for w in waits {
                let _ = w.await;
            }
            match me.upgrade() {
                Some(tx) => {
                    if let Err(mpsc::error::SendError(Command::FlushConnections(reply))) =
                        tx.send(Command::FlushConnections(reply)).await
                    {
                        let _ = reply.send(false);
                    }
                }
                None => {
                    let _ = reply.send(false);
                }
            }
        });
    }

    /// Hand an established connection out with the swarm's hold on it; a helper waits for
    /// the hold to be dropped (the connection closed).
    fn start(
        &mut self,
        tasks: &mut JoinSet<Done>,
        conn: ConnId,
        inner: DhtConnection,
    ) -> Connection {
        let (control, kill, link, shared, closed) = connection::control();
        tasks.spawn(async move {
            let _ = closed.await;
            Done::Closed { conn }
        });
        self.live.insert(
            conn,
            Live {
                kill: Some(kill),
                link,
                shared,
            },
        );
        Connection::new(inner, control)
    }

    /// End a connection the swarm no longer wants.
    fn kill(&mut self, conn: ConnId, reason: CloseReason) {
        tracing::debug!(?conn, %reason, "ending a connection");
        if let Some(l) = self.live.get_mut(&conn) {
            l.shared.set_reason(reason);
            if let Some(k) = l.kill.take() {
                let _ = k.send(());
            }
        }
        self.pending.retain(|(id, _, _)| *id != conn);
        self.parked.remove(&conn);
    }

    fn deliver(&mut self, conn: ConnId, c: Connection, peer: PeerInfo) {
        if self.pending.len() >= PENDING_CONNECTIONS {
            drop(c);
            self.kill(conn, CloseReason::Backlog);
            return;
        }
        self.pending.push_back((conn, c, peer));
    }

    fn incoming(&mut self, tasks: &mut JoinSet<Done>, c: DhtConnection) {
        let now = Instant::now();
        let key = c.remote_public_key();
        let outdated = self
            .core
            .connection_of(&key)
            .and_then(|id| self.live.get(&id))
            .is_some_and(|l| l.link.outdated());
        let decision = self.core.handle_incoming(now, key, outdated);
        tracing::debug!(peer = %hex8(&key), ?decision, "incoming connection");
        match decision {
            Incoming::Accept { conn, peer } => {
                let app = self.start(tasks, conn, c);
                self.deliver(conn, app, peer);
            }
            // JS also sends a keep-alive on the connection it keeps; ours has its own timer.
            Incoming::Reject(_) => drop(c),
            Incoming::Replace { conn, close } => {
                let app = self.start(tasks, conn, c);
                self.parked.insert(conn, app);
                self.kill(close, CloseReason::Duplicate);
            }
        }
    }

    fn done(&mut self, tasks: &mut JoinSet<Done>, d: Done) {
        let now = Instant::now();
        match d {
            Done::Listened(Ok(server)) => {
                self.listen = Listen::Ready(server);
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
                for (inst, plan) in std::mem::take(&mut self.pending_plans) {
                    let latest = self
                        .instances
                        .get(&inst)
                        .is_some_and(|i| i.state.is_latest(plan.generation));
                    if latest {
                        self.to_run.push((inst, plan));
                    }
                }
            }
            Done::Listened(Err(e)) => {
                self.listen = Listen::Idle;
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(Err(Error::Dht(e.clone())));
                }
                for (inst, plan) in std::mem::take(&mut self.pending_plans) {
                    self.refreshed(tasks, inst, plan.generation, Err(e.clone()));
                }
            }
            Done::Refreshed {
                instance,
                generation,
                result,
            } => {
                self.walking = self.walking.saturating_sub(1);
                self.refreshed(tasks, instance, generation, result);
                self.next_waiting();
            }
            Done::Unannounced { instance } => {
                if let Some(i) = self.instances.get_mut(&instance) {
                    i.unannouncing = false;
                    i.state.unannounced();
                }
                self.step_leave(tasks, instance);
            }
            Done::Dialed { conn, result } => match result {
                Err(e) => {
                    tracing::debug!(?conn, "dial failed: {e}");
                    self.core.handle_dialed(now, conn, false);
                }
                Ok(c) => match self.core.handle_dialed(now, conn, true) {
                    Dialed::Open(peer) => {
                        tracing::debug!(?conn, peer = %hex8(&c.remote_public_key()), "dialled");
                        let app = self.start(tasks, conn, *c);
                        self.deliver(conn, app, peer);
                    }
                    d @ (Dialed::Drop | Dialed::Failed) => {
                        tracing::debug!(?conn, decision = ?d, "dialled, not kept");
                        drop(c);
                    }
                },
            },
            Done::Closed { conn } => {
                tracing::debug!(?conn, "connection closed");
                self.live.remove(&conn);
                self.pending.retain(|(id, _, _)| *id != conn);
                for fate in self.core.handle_closed(now, conn) {
                    match fate {
                        Incoming::Accept { conn, peer } => {
                            if let Some(app) = self.parked.remove(&conn) {
                                self.deliver(conn, app, peer);
                            }
                        }
                        Incoming::Reject(_) => {}
                        // Parked again, behind the one just adopted.
                        Incoming::Replace { close, .. } => self.kill(close, CloseReason::Duplicate),
                    }
                }
                // Parked connections that were not adopted (rejected, or the swarm stopped).
                let core = &self.core;
                self.parked.retain(|c, _| core.is_parked(*c));
                self.check_destroyed();
            }
        }
    }

    fn timer(&mut self) {
        let now = Instant::now();
        self.core.handle_timeout(now);
        for inst in self.timers.take_due(now) {
            let jitter = self.jitter();
            let due = self
                .instances
                .get_mut(&inst)
                .map_or(Due::Nothing, |i| i.state.handle_timeout(now, jitter));
            match due {
                Due::Refresh => self.refresh(inst, None),
                Due::Lookup => self.lookup_now(inst),
                Due::Nothing => {}
            }
            self.arm(inst);
        }
    }

    fn destroy(&mut self, tasks: &mut JoinSet<Done>, reply: Option<Reply<()>>) {
        match &mut self.destroying {
            Some(waiters) => {
                waiters.extend(reply);
                return;
            }
            None => self.destroying = Some(reply.into_iter().collect()),
        }
        self.core.destroy();
        for w in self.listen_waiters.drain(..) {
            let _ = w.send(Err(Error::Destroyed));
        }
        let topics: Vec<Key> = self.active.keys().copied().collect();
        for t in topics {
            self.leave(tasks, t, None);
        }
        self.check_destroyed();
    }

    /// Once every topic has left: stop listening, end every connection, stop.
    fn check_destroyed(&mut self) {
        if self.destroying.is_none() || !self.instances.is_empty() || self.stopped {
            return;
        }
        self.listen = Listen::Idle;
        let live: Vec<ConnId> = self.live.keys().copied().collect();
        for conn in live {
            self.kill(conn, CloseReason::Destroyed);
        }
        self.pending.clear();
        self.parked.clear();
        for f in std::mem::take(&mut self.flushes).into_values() {
            let _ = f.send(false);
        }
        for w in self.destroying.iter_mut().flat_map(std::mem::take) {
            let _ = w.send(());
        }
        self.stopped = true;
    }
}

/// The first bytes of a key, for logs.
fn hex8(key: &Key) -> String {
    key[..8].iter().map(|b| format!("{b:02x}")).collect()
}
