//! `peerhost-daemon`: the application that `peerhost serve`, `mirror` and `follow` run on
//! top of one [`Node`]. It owns one store, one node, one swarm, and what it tracks: every log
//! held is served, the mirrors are kept complete and live, communities are followed through
//! their descriptor.
//!
//! What it owns:
//! - [`Options`] and the config file ([`config`]), the identity file ([`identity`]), the
//!   state and status files ([`state`]);
//! - the actor (`actor.rs`): one task owning each log's role, the communities, the quota and
//!   the latest problems, woken by commands, by the node's events and by three timers — no
//!   mutex guards the daemon's state, no loop polls it;
//! - the reader procedures ([`Daemon::follow`], [`Daemon::latest_posts`],
//!   [`Daemon::fetch_asset`], [`Daemon::new_posts`]): sparse downloads of what a reader needs;
//! - the services it starts with the node's key pair and a log source ([`NodeSource`]), in
//!   `Daemon::start_services`, each stopped by the same stop signal: the HTTP gateway
//!   ([`http`]), or, when it registers with instances without one, a WebRTC home peer per
//!   instance (`rtc.rs`: browsers reach it through the instance's signaling);
//! - the control socket ([`control`]): the server here, and the client a command uses when a
//!   daemon holds the store ([`control::Logs`] opens a log locally or through the daemon).
//!
//! What it does not own: replication and connections (`peerhost-node`), discovery and NAT
//! traversal (`peerhost-swarm`), the formats of entries and communities (`peerhost-feed`),
//! argument parsing and printing (the `peerhost` binary).
//!
//! Every task it spawns ends when the daemon stops ([`Daemon::shutdown`]); its queues are
//! bounded. The formats of the config, identity, state and status files, the discovery topics
//! and the quota are specified in `protocol/node.md`, the control socket in
//! `protocol/control.md`.

mod actor;
mod blobs;
pub mod config;
pub mod control;
mod dial;
mod error;
pub mod http;
pub mod identity;
mod network;
mod options;
mod quota;
mod reader;
mod rtc;
pub mod state;
mod status;
mod tracking;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use peerhost_ids::Key;
use peerhost_node::{Config as NodeConfig, Node};
use peerhost_store::{Core, Durability, Options as StoreOptions, Store};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use actor::{Actor, Command, Context};
pub use config::{ConfigError, FileConfig};
pub use error::{AppendError, FollowError, HttpError, KeyError, StartError, TrackError};
pub use http::{HttpOptions, NodeSource};
use network::SwarmOptions;
pub use options::{DhtOptions, Network, Options};
pub use peerhost_swarm::relay_topic;
pub use quota::disk_usage;
pub use reader::{Followed, Held, LivePost, NewPosts, Range};
use state::{State, Status};
pub use tracking::{Community, Part, Role};

/// The topic a community is found under: the discovery key of its descriptor log (so a JS
/// peer that joined every log's discovery key announces it too).
pub fn community_topic(community_key: &Key) -> [u8; 32] {
    community_key.discovery_key().0
}

/// Parse a key given as text (z-base32, hex, pear://).
pub fn parse_key(text: &str) -> Result<Key, KeyError> {
    Key::parse(text).map_err(|e| KeyError {
        text: text.to_owned(),
        message: e.to_string(),
    })
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Resolves once `rx` says the daemon stopped (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The running daemon. Cheap to clone; [`Daemon::shutdown`] stops it.
#[derive(Clone)]
pub struct Daemon {
    ctx: Arc<Context>,
    actor: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("storage", &self.ctx.storage)
            .field("node", &self.ctx.node)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Open the store, start the node, the DHT and the listener, resume the mirrors, start
    /// the services (the HTTP gateway) and the control socket.
    pub async fn start(options: Options) -> Result<Self, StartError> {
        let file = &options.file;
        let durability = match file.durability.unwrap_or_default() {
            config::DurabilitySetting::Process => Durability::Process,
            config::DurabilitySetting::Sync => Durability::Sync,
        };
        let store = Store::open_with(
            &options.storage,
            StoreOptions::default().durability(durability),
        )?;
        let mut state = if options.write_files {
            State::load(&options.storage).map_err(|source| StartError::File {
                path: options.storage.join(state::STATE_FILE),
                source,
            })?
        } else {
            State::default()
        };
        state.version = 1;
        state.runs += 1;
        let key_pair = match options.key_pair.clone() {
            Some(kp) => kp,
            None => identity::load(&options.storage)?,
        };
        let upload_limit = file.upload_limit.map(|s| s.0);
        let node = Node::new(
            key_pair,
            NodeConfig::default().with_upload_limit(upload_limit),
        );
        let (stop, _) = watch::channel(false);
        let listen = options.listen_tcp.or(file.listen_tcp);
        let mut tcp_addr = None;
        if let Some(addr) = listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })?;
            tcp_addr = Some(
                listener
                    .local_addr()
                    .map_err(|source| StartError::Listen { addr, source })?,
            );
            let n = node.clone();
            tokio::spawn(async move { n.listen_tcp(listener).await });
        }
        let swarm = match &options.network {
            Network::Off => None,
            Network::Dht(dht) => {
                let mut dht = dht.clone();
                if let Some(p) = file.dht_port {
                    dht.port = p;
                }
                for text in &file.relays {
                    let key = parse_key(text)?.0;
                    if !dht.relays.contains(&key) {
                        dht.relays.push(key);
                    }
                }
                dht.offer_relay |= file.offer_relay.unwrap_or(false);
                let opts = SwarmOptions {
                    bootstrap: dht.bootstrap,
                    bind: peerhost_swarm::hyperdht::driver::BindOptions::host(dht.host)
                        .with_port(dht.port),
                    local_addresses: dht.local_addresses,
                    relays: dht.relays,
                    offer_relay: dht.offer_relay,
                };
                Some(network::Network::start(node.clone(), opts).await?)
            }
        };
        let ctx = Arc::new(Context {
            storage: options.storage.clone(),
            store,
            node,
            swarm,
            announce: options.announce.or(file.announce).unwrap_or(true),
            write_files: options.write_files,
            status_interval: Duration::from_millis(
                file.status_interval_ms.unwrap_or(2000).max(100),
            ),
            upload_limit,
            tcp_addr,
            http: std::sync::OnceLock::new(),
            rtc: std::sync::OnceLock::new(),
            stun: std::sync::OnceLock::new(),
            started: SystemTime::now(),
            stop,
            quota_full: AtomicBool::new(false),
            dials: dial::Dials::default(),
            blobs: Arc::default(),
        });
        let (tx, rx) = mpsc::channel(actor::QUEUE);
        let actor = Actor::new(ctx.clone(), state.clone(), file.quota.map(|s| s.0));
        tokio::spawn(actor.run(rx));
        let daemon = Self { ctx, actor: tx };
        // Mirrors first (active), then everything else held (passive, served).
        let mut mirrors: Vec<Key> = Vec::new();
        for text in &file.mirrors {
            mirrors.push(parse_key(text)?);
        }
        mirrors.extend(state.mirrors.iter().filter_map(|t| parse_key(t).ok()));
        for key in mirrors {
            daemon
                .track(|reply| Command::Mirror {
                    key,
                    persist: false,
                    reply,
                })
                .await?;
        }
        daemon.track(|reply| Command::ServeAll { reply }).await?;
        daemon.start_services(&options).await?;
        if options.write_files {
            // Before the control socket: no command writes an index meanwhile.
            daemon.catch_up_indexes().await;
            control::server::start(&daemon);
        }
        // The state and status files, written after start returns (the status of a mirror of
        // 40,000 logs takes a second to build and write): the reply is not awaited.
        let (reply, _) = oneshot::channel();
        let _ = daemon.actor.send(Command::Flush { reply }).await;
        Ok(daemon)
    }

    /// Ask the actor; `None` once it ended (the daemon shut down).
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.actor.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Ask the actor to track something.
    async fn track<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, TrackError>>) -> Command,
    ) -> Result<T, TrackError> {
        self.ask(make).await.unwrap_or(Err(TrackError::Closed))
    }

    /// Start what the daemon serves beside replication, each with the node's key pair and a
    /// [`NodeSource`] over the logs it holds, each ending when the daemon stops: the HTTP
    /// gateway if the options or the config file ask for it (an instance when we publish a
    /// community or serve a bootstrap page).
    async fn start_services(&self, options: &Options) -> Result<(), StartError> {
        let file = &options.file;
        let mut o = options.http.clone();
        if o.public_url.is_none() {
            o.public_url.clone_from(&file.public_url);
        }
        // The ICE servers an instance lists: our STUN server first, then the configured ones.
        let mut ice = Vec::new();
        if let Some(stun) = o.stun.or(file.stun) {
            let s = rtc::start_stun(stun, o.public_url.as_deref(), &self.ctx.stop).await?;
            ice.push(s.server.clone());
            let _ = self.ctx.stun.set(s);
        }
        let extra = if o.ice_servers.is_empty() {
            &file.ice_servers
        } else {
            &o.ice_servers
        };
        for text in extra {
            ice.push(rtc::parse_ice_server(text)?);
        }
        let Some(addr) = o.addr.or(file.http) else {
            if o.page.is_some() || options.http.public_url.is_some() {
                return Err(HttpError::NoAddress.into());
            }
            // Registering without an HTTP gateway: a WebRTC home peer for each instance.
            let register = if o.register.is_empty() {
                &file.register
            } else {
                &o.register
            };
            if !register.is_empty() {
                let source = NodeSource::new(self.ctx.node.clone()).blobs(self.ctx.blobs.clone());
                let homes = rtc::start(
                    &source,
                    self.ctx.node.key_pair(),
                    register,
                    &self.ctx.stop,
                    &self.actor,
                )
                .await?;
                let _ = self.ctx.rtc.set(homes);
            }
            return Ok(());
        };
        if o.page.is_none() {
            o.page.clone_from(&file.bootstrap_page);
        }
        if o.register.is_empty() {
            o.register.clone_from(&file.register);
        }
        o.allow_private_peers |= file.allow_private_peers.unwrap_or(false);
        if o.trusted_proxies.is_empty() {
            o.trusted_proxies.clone_from(&file.trusted_proxies);
        }
        if o.tls.is_none() {
            o.tls = match (&file.tls_cert, &file.tls_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => None,
                _ => return Err(HttpError::TlsPair.into()),
            };
        }
        let communities = self
            .ask(|reply| Command::Published { reply })
            .await
            .unwrap_or_default();
        let source = NodeSource::new(self.ctx.node.clone()).blobs(self.ctx.blobs.clone());
        let h = http::start(
            source,
            &o,
            addr,
            !communities.is_empty(),
            ice,
            &self.ctx.stop,
        )
        .await?;
        if let Some(i) = &h.instance {
            i.set_communities(communities);
        }
        let _ = self.ctx.http.set(h);
        Ok(())
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.ctx.node
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// The storage directory.
    pub fn storage(&self) -> &Path {
        &self.ctx.storage
    }

    /// The TCP listener's address, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.ctx.tcp_addr
    }

    /// The HTTP gateway's address, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.ctx.http.get().map(|h| h.addr)
    }

    /// The HTTP gateway's own base URL, `http://ADDR` or `https://ADDR`, if it runs.
    pub fn http_base(&self) -> Option<String> {
        self.ctx.http.get().map(|h| {
            let scheme = if h.tls { "https" } else { "http" };
            format!("{scheme}://{}", h.addr)
        })
    }

    /// The STUN server's address, if it runs.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.ctx.stun.get().map(|s| s.addr)
    }

    /// The HTTP gateway's base URL as registered with instances, if it runs.
    pub fn http_url(&self) -> Option<String> {
        self.ctx.http.get().map(|h| h.url.clone())
    }

    /// Our DHT server socket's address, if the DHT is on.
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.ctx.swarm.as_ref().map(network::Network::address)
    }

    /// Serve the logs of the store not served yet (one created through the control socket).
    pub(crate) async fn serve_new_logs(&self) -> Result<(), TrackError> {
        self.track(|reply| Command::ServeAll { reply }).await
    }

    /// Wait for the DHT's bootstrap walk to end, and say how many DHT nodes it found (0: no
    /// bootstrap node answered, so nothing is announced); `None` without the DHT.
    pub async fn dht_bootstrapped(&self) -> Option<usize> {
        match &self.ctx.swarm {
            Some(n) => Some(n.bootstrapped().await),
            None => None,
        }
    }

    /// Mirror `key` (a community or a plain log): complete and live, served, announced.
    /// With `persist`, it is recorded in the state file and mirrored again after a restart.
    pub async fn mirror(&self, key: Key, persist: bool) -> Result<(), TrackError> {
        self.track(|reply| Command::Mirror {
            key,
            persist,
            reply,
        })
        .await
    }

    /// Connect to a peer over TCP, reconnecting every 2 s until the daemon stops. The first
    /// failure in a row is logged as a warning with its cause, and remembered: a wait for the
    /// head or blocks that ends while no peer is connected says it.
    pub fn add_tcp_peer(&self, addr: SocketAddr) {
        let ctx = self.ctx.clone();
        let mut stop = self.ctx.stop.subscribe();
        tokio::spawn(async move {
            let node = &ctx.node;
            loop {
                let ended = tokio::select! {
                    r = node.connect_tcp(addr) => r,
                    () = stopped(&mut stop) => return,
                };
                let failing = match ended {
                    // The dial or the handshake failed: nothing was replicated.
                    Ok(Err(
                        e @ (peerhost_node::ConnectionError::Io(_)
                        | peerhost_node::ConnectionError::SecretStream(_)),
                    )) => {
                        if ctx.dials.failed(addr, &e) {
                            tracing::warn!(
                                "cannot connect to tcp://{addr}: {}; retrying every 2 s",
                                dial::cause(&e)
                            );
                        }
                        true
                    }
                    _ => {
                        ctx.dials.connected(addr);
                        false
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = stopped(&mut stop) => return,
                }
                if node.is_closed() {
                    return;
                }
                if failing {
                    tracing::debug!(peer = %addr, "reconnecting");
                } else {
                    tracing::info!(peer = %addr, "reconnecting");
                }
            }
        });
    }

    /// Whether the disk quota is full (downloads stopped).
    pub fn quota_full(&self) -> bool {
        self.ctx.quota_full.load(Ordering::Relaxed) || self.ctx.node.download_budget_exhausted()
    }

    /// The status as `peerhost status` shows it (`running: false` once shut down).
    pub async fn status(&self, running: bool) -> Status {
        match self.ask(|reply| Command::Status { running, reply }).await {
            Some(s) => s,
            None => Status::load(&self.ctx.storage).unwrap_or_default(),
        }
    }

    /// The DHT part of the status alone (`None` without a network): cheap to poll, unlike
    /// [`status`](Self::status), which reads every log held.
    pub async fn dht_status(&self) -> Option<state::DhtStatus> {
        match &self.ctx.swarm {
            Some(s) => Some(s.status().await),
            None => None,
        }
    }

    /// Stop: close every connection (each flushes first), leave the DHT, write the final
    /// state and status, end every task. Waits at most `grace` for connections to end.
    pub async fn shutdown(&self, grace: Duration) {
        if self.ctx.stop.send_replace(true) {
            return;
        }
        tracing::info!("shutting down");
        self.ctx.node.close();
        let deadline = Instant::now() + grace;
        while !self.ctx.node.peers().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(d) = &self.ctx.swarm {
            d.close().await;
        }
        if self.ctx.write_files {
            let _ = std::fs::remove_file(control::socket_path(&self.ctx.storage));
        }
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }

    /// Resolves when [`Daemon::shutdown`] was called.
    pub async fn stopped(&self) {
        let mut s = self.ctx.stop.subscribe();
        stopped(&mut s).await;
    }

    /// The length of a log held here (0 if not).
    pub fn length(&self, key: &Key) -> u64 {
        let dkey = key.discovery_key();
        self.ctx
            .node
            .with(|r| r.core(&dkey).map_or(0, Core::length))
    }

    /// Blocks of `key` held here in `start..end`.
    pub fn held_in(&self, key: &Key, start: u64, end: u64) -> u64 {
        let dkey = key.discovery_key();
        self.ctx.node.with(|r| {
            r.core_mut(&dkey)
                .map_or(0, |c| status::held_in(c, start, end))
        })
    }

    /// Blocks of `key` held here, in `0..length`.
    pub fn held(&self, key: &Key) -> u64 {
        let dkey = key.discovery_key();
        self.ctx
            .node
            .with(|r| r.core_mut(&dkey).map_or(0, status::held))
    }

    /// Whether every block of `key` up to its length is held here.
    pub fn is_complete(&self, key: &Key) -> bool {
        let dkey = key.discovery_key();
        self.ctx.node.with(|r| {
            r.core_mut(&dkey).is_some_and(|c| {
                c.length() > 0 && matches!(c.next_missing(0, c.length()), Ok(None))
            })
        })
    }

    /// Block `index` of `key`, if held here.
    pub fn block(&self, key: &Key, index: u64) -> Option<Vec<u8>> {
        let dkey = key.discovery_key();
        self.ctx
            .node
            .with(|r| r.core_mut(&dkey).and_then(|c| c.get(index).ok().flatten()))
    }

    /// Append `blocks` to a log we write (through the replicator, so peers hear of it).
    pub fn append(&self, key: &Key, blocks: &[Vec<u8>]) -> Result<u64, AppendError> {
        let dkey = key.discovery_key();
        let now = Instant::now();
        let writable = self.ctx.node.with(|r| r.core(&dkey).map(Core::writable));
        match writable {
            None => Err(AppendError::NotHeld { key: key.to_z32() }),
            Some(false) => Err(AppendError::ReadOnly { key: key.to_z32() }),
            Some(true) => Ok(self.ctx.node.with(|r| r.append(&dkey, blocks, now))?),
        }
    }
}
