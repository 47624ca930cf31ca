//! The daemon's actor: one task owns everything the daemon tracks and changes — each log's
//! role, the communities and their descriptors, the state file's content, the quota, the
//! latest problems — so no mutex guards them. Everything else talks to it through a bounded
//! queue of [`Command`]s, each answered on its own one-shot channel.
//!
//! It wakes on:
//! - a command (track a log, mirror, status, …);
//! - the node's events: a descriptor log that grew is re-read (its community may name new
//!   logs), a download may have spent the quota, a storage failure is noted;
//! - three timers: the status file (every `status_interval_ms`), the state file (every 10 s)
//!   and the disk measure for the quota (every 10 s).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use peerhost_feed::Descriptor;
use peerhost_feed::read;
use peerhost_ids::{DiscoveryKey, Key};
use peerhost_node::Node;
use peerhost_replication::Event;
use peerhost_store::{Core, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::TrackError;
use crate::http::Http;
use crate::network::Network;
use crate::quota::{Quota, disk_usage};
use crate::state::{self, State, Status};
use crate::tracking::{CommunityEntry, LogEntry, Mode, Part, Role, Tracked};

/// Commands waiting for the actor at most; senders wait beyond.
pub(crate) const QUEUE: usize = 64;
/// Errors and warnings kept for the status file.
const MAX_ERRORS: usize = 16;
/// How often the state file is rewritten while running.
const STATE_EVERY: Duration = Duration::from_secs(10);
/// The status file takes at most 1/STATUS_SHARE of the actor's time (`Actor::run`).
const STATUS_SHARE: u32 = 50;
/// How often the disk is measured for the quota.
const MEASURE_EVERY: Duration = Duration::from_secs(10);
/// Node events handled in one batch before the descriptors they touched are re-read.
const EVENT_BATCH: usize = 1024;

/// What the daemon's parts share, fixed once it started (the HTTP gateway is set once, while
/// starting).
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) storage: PathBuf,
    pub(crate) store: Store,
    pub(crate) node: Node,
    pub(crate) swarm: Option<Network>,
    pub(crate) announce: bool,
    pub(crate) write_files: bool,
    pub(crate) status_interval: Duration,
    pub(crate) upload_limit: Option<u64>,
    pub(crate) tcp_addr: Option<SocketAddr>,
    pub(crate) http: OnceLock<Http>,
    /// The WebRTC home peers, one per instance (set once, while starting).
    pub(crate) rtc: OnceLock<Vec<Arc<crate::rtc::Home>>>,
    /// The STUN server (set once, while starting).
    pub(crate) stun: OnceLock<crate::rtc::Stun>,
    pub(crate) started: SystemTime,
    pub(crate) stop: watch::Sender<bool>,
    /// Set by the actor when the quota is spent.
    pub(crate) quota_full: AtomicBool,
    /// Why the TCP peers we dial are not connected.
    pub(crate) dials: crate::dial::Dials,
    /// The files of the app logs we hold, by hash (kept by the actor, read by the gateway).
    pub(crate) blobs: Arc<peerhost_gateway::blob::BlobIndex>,
}

/// A request to the actor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Add a log (opening or creating its replica) with a role, or upgrade its role.
    Track {
        key: Key,
        role: Role,
        community: Option<(Key, Part)>,
        reply: oneshot::Sender<Result<DiscoveryKey, TrackError>>,
    },
    /// Mirror a key; with `persist`, record it in the state file.
    Mirror {
        key: Key,
        persist: bool,
        reply: oneshot::Sender<Result<(), TrackError>>,
    },
    /// Track a followed community whose descriptor log is held; its latest descriptor.
    Community {
        key: Key,
        reply: oneshot::Sender<Result<Option<Descriptor>, TrackError>>,
    },
    /// Serve every log of the store not tracked yet.
    ServeAll {
        reply: oneshot::Sender<Result<(), TrackError>>,
    },
    /// The status as `peerhost status` shows it.
    Status {
        running: bool,
        reply: oneshot::Sender<Status>,
    },
    /// The communities we publish (for the instance's bootstrap JSON).
    Published {
        reply: oneshot::Sender<Vec<peerhost_gateway::CommunityInfo>>,
    },
    /// Bytes used and the quota, if one is set.
    Quota {
        reply: oneshot::Sender<Option<(u64, u64)>>,
    },
    /// Write the state file now and the status file in the background (the reply comes once
    /// the status is built and handed to its writer, not written).
    Flush { reply: oneshot::Sender<()> },
    /// A problem for the status (and the log), from a service.
    Note { message: String },
    /// Write the final state and status, and end.
    Shutdown { reply: oneshot::Sender<()> },
}

/// The actor's own state.
pub(crate) struct Actor {
    ctx: Arc<Context>,
    tracked: Tracked,
    state: State,
    errors: VecDeque<String>,
    quota: Quota,
    /// How long until the status file is rewritten, as the file says (`interval_ms`): the
    /// configured interval, or longer when writing it takes long (see [`Actor::run`]), so
    /// that `peerhost status` does not judge a daemon with a large status dead between writes.
    status_gap: Duration,
    /// The status file's writer while it runs (serializing and writing a 40,000-log status
    /// takes a second): one at a time, off the actor (see [`Actor::write_status`]).
    status_write: Option<tokio::task::JoinHandle<Duration>>,
    /// How long the last status write took, for the rewrite gap.
    status_write_took: Duration,
}

impl Actor {
    pub(crate) fn new(ctx: Arc<Context>, state: State, quota: Option<u64>) -> Self {
        Self {
            tracked: Tracked::default(),
            state,
            errors: VecDeque::new(),
            quota: Quota {
                limit: quota,
                ..Quota::default()
            },
            status_gap: ctx.status_interval,
            status_write: None,
            status_write_took: Duration::ZERO,
            ctx,
        }
    }

    /// Run until [`Command::Shutdown`] or until every sender is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut events = Some(self.ctx.node.subscribe());
        self.measure_quota();
        let start = tokio::time::Instant::now();
        let mut status =
            tokio::time::interval_at(start + self.ctx.status_interval, self.ctx.status_interval);
        let mut state = tokio::time::interval_at(start + STATE_EVERY, STATE_EVERY);
        let mut measure = tokio::time::interval_at(start + MEASURE_EVERY, MEASURE_EVERY);
        for t in [&mut status, &mut state, &mut measure] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let write = self.ctx.write_files;
        let mut status_next = Instant::now();
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        self.flush(false, true).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.handle(cmd).await,
                    None => return,
                },
                ev = recv(&mut events) => self.on_events(ev, &mut events).await,
                _ = status.tick(), if write => {
                    // The status file of a mirror of 10,000 communities is 25 MB (a line per
                    // log): rewritten at most as often as keeps it within 1/STATUS_SHARE of
                    // the actor's time, not every tick (2 s by default).
                    if Instant::now() >= status_next && self.status_writer_idle().await {
                        let t = Instant::now();
                        self.write_status(true, false).await;
                        // The actor's share (building the status) and the writer's.
                        let gap = t.elapsed().max(self.status_write_took) * STATUS_SHARE;
                        status_next = Instant::now() + gap;
                        // The next file says so (the next write costs about what this one did).
                        self.status_gap = gap.max(self.ctx.status_interval);
                    }
                }
                _ = state.tick(), if write => self.write_state(),
                _ = measure.tick() => {
                    self.measure_quota();
                    let ctx = self.ctx.clone();
                    if let Some(i) = ctx.http.get().and_then(|h| h.instance.as_ref()) {
                        i.set_communities(self.published());
                    }
                }
            }
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Track {
                key,
                role,
                community,
                reply,
            } => {
                let r = self.ensure_log(key, role, community).await;
                let _ = reply.send(r);
            }
            Command::Mirror {
                key,
                persist,
                reply,
            } => {
                if persist {
                    let hex = key.to_hex();
                    if !self.state.mirrors.contains(&hex) {
                        self.state.mirrors.push(hex);
                    }
                }
                let r = self.track_mirror(key).await;
                if r.is_ok() && persist && self.ctx.write_files {
                    self.write_state();
                }
                let _ = reply.send(r);
            }
            Command::Community { key, reply } => {
                let dkey = key.discovery_key();
                let r = match self.check_community(key, dkey, Mode::Follow).await {
                    Ok(()) => Ok(self.read_descriptor(&dkey)),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::ServeAll { reply } => {
                let _ = reply.send(self.serve_all().await);
            }
            Command::Status { running, reply } => {
                let _ = reply.send(self.status(running).await);
            }
            Command::Published { reply } => {
                let _ = reply.send(self.published());
            }
            Command::Quota { reply } => {
                let used = self.quota_used();
                let _ = reply.send(self.quota.limit.map(|l| (used, l)));
            }
            Command::Note { message } => self.note(message),
            Command::Flush { reply } => {
                self.flush(true, false).await;
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    /// A batch of node events: re-read the descriptor logs that grew, check the quota, note
    /// storage failures.
    async fn on_events(
        &mut self,
        first: Result<Event, broadcast::error::RecvError>,
        events: &mut Option<broadcast::Receiver<Event>>,
    ) {
        let mut grew: HashSet<DiscoveryKey> = HashSet::new();
        let mut downloaded = false;
        let mut next = Some(first);
        let mut n = 0;
        while let Some(ev) = next.take() {
            match ev {
                Ok(Event::Downloaded { discovery_key, .. }) => {
                    downloaded = true;
                    grew.insert(discovery_key);
                }
                Ok(Event::Head { discovery_key, .. }) => {
                    grew.insert(discovery_key);
                }
                Ok(Event::StorageError {
                    discovery_key,
                    message,
                }) => self.note(format!(
                    "log {}: storage failed: {message}",
                    crate::hex(&discovery_key.0)
                )),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed some: re-read every descriptor (unchanged ones cost a length).
                    grew.extend(self.tracked.descriptor_logs.keys().copied());
                    downloaded = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    *events = None;
                    break;
                }
            }
            n += 1;
            if n < EVENT_BATCH {
                if let Some(rx) = events.as_mut() {
                    match rx.try_recv() {
                        Ok(e) => next = Some(Ok(e)),
                        Err(broadcast::error::TryRecvError::Lagged(k)) => {
                            next = Some(Err(broadcast::error::RecvError::Lagged(k)));
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        let communities: Vec<(Key, Mode)> = grew
            .iter()
            .filter_map(|d| self.tracked.community_of(d))
            .collect();
        for (key, mode) in communities {
            if let Err(e) = self.check_community(key, key.discovery_key(), mode).await {
                self.note(format!("community {}: {e}", key.to_z32()));
            }
        }
        // App logs whose head or blocks changed: their files by hash.
        let apps: Vec<Key> = grew
            .iter()
            .filter_map(|d| self.tracked.logs.get(d))
            .filter(|e| e.community.is_some_and(|(_, p)| p == Part::Assets))
            .map(|e| e.key)
            .collect();
        for key in apps {
            crate::blobs::index_app(&self.ctx.node, &self.ctx.blobs, key);
        }
        if downloaded {
            self.check_quota();
        }
    }

    // ------------------------------------------------------------------ tracking

    fn replica(&self, key: &Key) -> Result<Core, TrackError> {
        let store = &self.ctx.store;
        if store.contains(key) {
            Ok(store.open_core(&key.to_hex())?)
        } else {
            Ok(store.create_replica(*key, None, None)?)
        }
    }

    /// Add `key` to the replicator (opening or creating its replica) with `role`; upgrade the
    /// role of a log already there. Joins its topic on the DHT.
    async fn ensure_log(
        &mut self,
        key: Key,
        role: Role,
        community: Option<(Key, Part)>,
    ) -> Result<DiscoveryKey, TrackError> {
        if self.ctx.node.is_closed() {
            return Err(TrackError::Closed);
        }
        let dkey = key.discovery_key();
        // Already tracked with this role or a stronger one: only name its community.
        if let Some(e) = self.tracked.logs.get_mut(&dkey) {
            if community.is_some() {
                e.community = community;
            }
            if e.role.rank() >= role.rank() {
                return Ok(dkey);
            }
        }
        let node = &self.ctx.node;
        let now = Instant::now();
        let present = node.with(|r| r.core(&dkey).is_some());
        let mut role = role;
        if !present {
            let core = self.replica(&key)?;
            if core.writable() {
                role = Role::Writer;
            }
            let active = matches!(role, Role::Mirror | Role::Follow);
            node.with(|r| r.add_core(core, active, now));
        } else if node.with(|r| r.core(&dkey).is_some_and(Core::writable)) {
            role = Role::Writer;
        } else if matches!(role, Role::Mirror | Role::Follow) {
            node.with(|r| r.set_active(&dkey, true, now));
        }
        if role == Role::Mirror && !node.download_budget_exhausted() {
            // Everything, and (open-ended, live) every block appended later.
            node.with(|r| {
                r.set_live(&dkey, true, now);
                r.download(&dkey, 0, None, now)
            })?;
        }
        let e = self.tracked.logs.entry(dkey).or_insert(LogEntry {
            key,
            role,
            community,
        });
        if role.rank() > e.role.rank() {
            e.role = role;
        }
        if community.is_some() {
            e.community = community;
        }
        let role = e.role;
        if e.community.is_some_and(|(_, p)| p == Part::Assets) {
            crate::blobs::index_app(&self.ctx.node, &self.ctx.blobs, key);
        }
        if let Some(d) = &self.ctx.swarm {
            let is_community = community.is_some_and(|(_, p)| p == Part::Descriptor);
            let announce = self.ctx.announce && role != Role::Follow;
            // Mirrors and followers look up a community's topic (one lookup finds peers for
            // all its logs) or a plain log's; a community's other logs are only announced,
            // for JS peers that look up one log.
            let lookup = matches!(role, Role::Mirror | Role::Follow)
                && (community.is_none() || is_community);
            d.join(
                dkey.0,
                announce,
                lookup,
                is_community || community.is_none(),
            );
        }
        Ok(dkey)
    }

    async fn track_mirror(&mut self, key: Key) -> Result<(), TrackError> {
        let dkey = key.discovery_key();
        self.tracked.mirrors.insert(key);
        self.tracked.descriptor_logs.insert(dkey, key);
        self.ensure_log(key, Role::Mirror, None).await?;
        self.check_community(key, dkey, Mode::Mirror).await
    }

    /// Serve every log of the store that is not tracked yet.
    async fn serve_all(&mut self) -> Result<(), TrackError> {
        for key in self.ctx.store.keys()? {
            if self.tracked.logs.contains_key(&key.discovery_key()) {
                continue;
            }
            self.ensure_log(key, Role::Serve, None).await?;
        }
        // Writers of communities: name their parts (status).
        let writers: Vec<(DiscoveryKey, Key)> = self
            .tracked
            .logs
            .iter()
            .filter(|(_, e)| e.role == Role::Writer && e.community.is_none())
            .map(|(d, e)| (*d, e.key))
            .collect();
        for (dkey, key) in writers {
            // Only descriptor logs name parts: reading a community's posts, comments or assets
            // log (or a plain log) as one would only report its blocks as skipped.
            let is_descriptor = self.ctx.node.with(|r| {
                r.core_mut(&dkey)
                    .is_some_and(|core| read::is_descriptor_log(core).unwrap_or(false))
            });
            if !is_descriptor {
                continue;
            }
            if let Some(desc) = self.read_descriptor(&dkey) {
                self.tracked.tag_parts(key, &desc);
                if let Some(app) = Part::Assets.key_in(&desc) {
                    crate::blobs::index_app(&self.ctx.node, &self.ctx.blobs, app);
                }
            }
        }
        Ok(())
    }

    /// The latest descriptor of the log `dkey`, if it holds one (reads local blocks only).
    fn read_descriptor(&mut self, dkey: &DiscoveryKey) -> Option<Descriptor> {
        let (found, notes) = self.ctx.node.with(|r| {
            let core = r.core_mut(dkey)?;
            read::descriptor(core).ok()
        })?;
        if notes.skipped_total > 0 {
            self.note(format!(
                "descriptor log {}: skipped {} malformed blocks (first: {})",
                crate::hex(&dkey.0),
                notes.skipped_total,
                notes
                    .skipped
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ));
        }
        found.and_then(|(_, e)| read::as_descriptor(&e).cloned())
    }

    /// If `key`'s log now reads as a community, track it as one and add the logs it names.
    async fn check_community(
        &mut self,
        key: Key,
        dkey: DiscoveryKey,
        mode: Mode,
    ) -> Result<(), TrackError> {
        let length = self
            .ctx
            .node
            .with(|r| r.core(&dkey).map_or(0, Core::length));
        if let Some(c) = self.tracked.communities.get(&key) {
            if c.read_at == length && (c.mode == Mode::Mirror || mode == Mode::Follow) {
                return Ok(());
            }
        } else {
            // Not known to be a community: block 0 decides, once (issue 16 item 3: a plain
            // log was re-read as a descriptor log at every growth, each time warning of its
            // "malformed" blocks).
            let first = self.ctx.node.with(|r| {
                let core = r.core_mut(&dkey)?;
                if !core.has(0).unwrap_or(false) {
                    return None;
                }
                Some(read::is_descriptor_log(core).unwrap_or(false))
            });
            match first {
                // Block 0 is not here yet: wait for it.
                None => return Ok(()),
                Some(false) => {
                    if self.tracked.descriptor_logs.remove(&dkey).is_some() {
                        tracing::info!(
                            "log {} is not a community (its block 0 is not a descriptor): \
                             kept as a plain log",
                            key.to_z32()
                        );
                    }
                    return Ok(());
                }
                Some(true) => {}
            }
        }
        let Some(desc) = self.read_descriptor(&dkey) else {
            return Ok(());
        };
        let t = &mut self.tracked;
        let c = t.communities.entry(key).or_insert(CommunityEntry {
            mode,
            read_at: 0,
            descriptor: None,
        });
        if mode == Mode::Mirror {
            c.mode = Mode::Mirror;
        }
        let mode = c.mode;
        c.read_at = length;
        c.descriptor = Some(desc.clone());
        t.descriptor_logs.insert(dkey, key);
        if let Some(e) = t.logs.get_mut(&dkey) {
            e.community = Some((key, Part::Descriptor));
        }
        // The descriptor log's own topic becomes the community topic (looked up).
        if let Some(d) = &self.ctx.swarm {
            let announce = self.ctx.announce && mode == Mode::Mirror;
            d.join(dkey.0, announce, true, true);
        }
        if mode == Mode::Mirror {
            for part in Part::NAMED {
                if let Some(k) = part.key_in(&desc) {
                    Box::pin(self.ensure_log(k, Role::Mirror, Some((key, part)))).await?;
                }
            }
        }
        Ok(())
    }

    /// The communities whose descriptor log we can write, for the bootstrap JSON.
    fn published(&mut self) -> Vec<peerhost_gateway::CommunityInfo> {
        let writers: Vec<(DiscoveryKey, Key)> = self
            .tracked
            .logs
            .iter()
            .filter(|(_, e)| {
                e.role == Role::Writer
                    && e.community
                        .is_some_and(|(k, p)| p == Part::Descriptor && k == e.key)
            })
            .map(|(d, e)| (*d, e.key))
            .collect();
        let mut out: Vec<_> = writers
            .into_iter()
            .filter_map(|(dkey, key)| {
                let d = self.read_descriptor(&dkey)?;
                Some(peerhost_gateway::CommunityInfo::new(
                    key,
                    d.name.clone(),
                    d.title.clone(),
                    Part::Posts.key_in(&d),
                    Part::Comments.key_in(&d),
                    Part::Assets.key_in(&d),
                ))
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    fn note(&mut self, message: String) {
        tracing::warn!("{message}");
        if self.errors.back() == Some(&message) {
            return;
        }
        if self.errors.len() == MAX_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(message);
    }

    // ------------------------------------------------------------------ quota

    fn downloaded(&self) -> u64 {
        self.ctx
            .node
            .log_stats()
            .values()
            .map(|s| s.downloaded_bytes)
            .sum()
    }

    fn quota_used(&self) -> u64 {
        self.quota.used(self.downloaded())
    }

    /// Measure the store on disk and give the node the rest of the quota as its budget.
    fn measure_quota(&mut self) {
        let Some(limit) = self.quota.limit else {
            return;
        };
        if self.quota.full {
            return;
        }
        let used = disk_usage(&self.ctx.storage);
        self.quota.measured = used;
        self.quota.downloaded_at_measure = self.downloaded();
        self.ctx
            .node
            .set_download_budget(Some(limit.saturating_sub(used)));
    }

    fn check_quota(&mut self) {
        let Some(limit) = self.quota.limit else {
            return;
        };
        if self.quota.full || !self.ctx.node.download_budget_exhausted() {
            return;
        }
        self.quota.full = true;
        self.ctx.quota_full.store(true, Ordering::Relaxed);
        let e = crate::FollowError::QuotaFull {
            used: self.quota_used(),
            limit,
        };
        tracing::error!("{e}");
        self.note(e.to_string());
    }

    // ------------------------------------------------------------------ files

    /// Write the state file, and the status file: at once when `wait`, else in the
    /// background.
    async fn flush(&mut self, running: bool, wait: bool) {
        if self.ctx.write_files {
            self.write_state();
            self.write_status(running, wait).await;
        }
    }

    /// Whether no status write runs (collecting the last one's time if it ended).
    async fn status_writer_idle(&mut self) -> bool {
        match &self.status_write {
            Some(h) if !h.is_finished() => false,
            Some(_) => {
                if let Some(h) = self.status_write.take() {
                    self.status_write_took = h.await.unwrap_or_default();
                }
                true
            }
            None => true,
        }
    }

    /// Build the status (in the actor: it reads the tracked logs) and write it: serialized
    /// and written by a blocking task, after the one still running if any (so the files land
    /// in order); awaited when `wait` (shutdown), else left to run.
    async fn write_status(&mut self, running: bool, wait: bool) {
        let status = self.status(running).await;
        if let Some(h) = self.status_write.take() {
            self.status_write_took = h.await.unwrap_or_default();
        }
        let path = self.ctx.storage.join(state::STATUS_FILE);
        let h = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            if let Err(e) = state::write_json(&path, &status) {
                tracing::warn!("cannot write {}: {e}", path.display());
            }
            t.elapsed()
        });
        if wait {
            self.status_write_took = h.await.unwrap_or_default();
        } else {
            self.status_write = Some(h);
        }
    }

    /// The state to save: earlier totals plus this run's counters.
    fn write_state(&self) {
        let stats = self.ctx.node.log_stats();
        let mut st = self.state.clone();
        for (dkey, s) in stats {
            st.totals
                .entry(crate::hex(&dkey.0))
                .or_default()
                .add(&s.into());
        }
        if let Err(e) = st.save(&self.ctx.storage) {
            tracing::warn!("cannot write the state file: {e}");
        }
    }

    /// The status as `peerhost status` shows it.
    async fn status(&self, running: bool) -> Status {
        let quota = self.quota.limit.map(|limit| state::QuotaStatus {
            limit,
            used: self.quota_used(),
            full: self.quota.full || self.ctx.node.download_budget_exhausted(),
        });
        let errors = self.errors.iter().cloned().collect();
        let mut st = crate::status::build(
            &self.ctx,
            &self.tracked,
            &self.state,
            quota,
            errors,
            running,
        )
        .await;
        st.interval_ms = u64::try_from(self.status_gap.as_millis()).unwrap_or(u64::MAX);
        st
    }
}

async fn recv(
    events: &mut Option<broadcast::Receiver<Event>>,
) -> Result<Event, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
