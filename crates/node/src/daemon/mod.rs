//! The daemon: one store, one [`Node`], one swarm; every log held is served, the mirrors are
//! kept complete and live, communities are followed through their descriptor.
//!
//! Ownership and flow:
//! - [`Daemon`] owns the [`Store`] (its lock: one daemon per storage directory), the node
//!   (replication over every connection), the discovery (DHT topics, connections by public
//!   key) and what it tracks: each log's role (writer, mirror, follow, serve) and each
//!   community's parts;
//! - a controller task wakes on every replicator change and at least every 500 ms: it reads
//!   the descriptor of each tracked community when its log grew and adds the logs it names,
//!   re-measures the disk for the quota, and rewrites the status file (and every 10 s the
//!   state file);
//! - [`Daemon::follow`] and [`Daemon::fetch_asset`] are one-shot procedures on top: sparse
//!   downloads of what a reader needs, driven by the readers of `peerhost-feed`;
//! - [`Daemon::shutdown`] closes every connection, leaves the DHT and writes the final state
//!   and status.
//!
//! The formats of the config, state and status files, the discovery topics and the quota are
//! specified in `protocol/node.md`.

pub mod config;
mod control;
pub mod http;
mod network;
pub mod state;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peerhost_feed::read::{self, PostView};
use peerhost_feed::{Asset, Descriptor, Notes};
use peerhost_ids::{DiscoveryKey, Key, KeyPair};
use peerhost_replication::Replicator;
use peerhost_store::{Core, Durability, Options as StoreOptions, Store};
use peerhost_swarm::BootstrapNode;
use peerhost_swarm::hyperdht::driver::BindOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{Config as NodeConfig, Node};
pub use config::{ConfigError, FileConfig};
use network::{Network as Swarm, SwarmOptions};
pub use peerhost_swarm::relay_topic;

/// The topic a community is found under: the discovery key of its descriptor log (so a JS
/// peer that joined every log's discovery key announces it too).
pub fn community_topic(community_key: &Key) -> [u8; 32] {
    community_key.discovery_key().0
}
pub use http::HttpOptions;
use state::{Counts, State, Status};

/// How the daemon finds peers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Network {
    /// No DHT: TCP only (`--peer tcp://…`, `listen_tcp`).
    Off,
    /// HyperDHT through these bootstrap nodes.
    Dht(DhtOptions),
}

/// Where the daemon's DHT node binds and whom it asks first.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DhtOptions {
    /// Bootstrap nodes (resolved when the daemon starts; one that does not resolve is an
    /// error naming it).
    pub bootstrap: Vec<BootstrapNode>,
    /// The address both UDP sockets bind to (`0.0.0.0` by default).
    pub host: Ipv4Addr,
    /// The server socket's port (0: any).
    pub port: u16,
    /// Our LAN addresses, offered to peers behind the same NAT (default: the bound host if
    /// specific, else loopback).
    pub local_addresses: Vec<Ipv4Addr>,
    /// Blind relays (public keys) to fall back to when holepunching fails; relays announced
    /// by other peerhost nodes are added as they are found.
    pub relays: Vec<[u8; 32]>,
    /// Run a blind relay on our DHT node and announce it.
    pub offer_relay: bool,
}

impl DhtOptions {
    /// Bootstrap through `bootstrap`, binding to any address and port.
    pub fn new(bootstrap: Vec<BootstrapNode>) -> Self {
        Self {
            bootstrap,
            host: Ipv4Addr::UNSPECIFIED,
            port: 0,
            local_addresses: Vec::new(),
            relays: Vec::new(),
            offer_relay: false,
        }
    }

    /// Set [`DhtOptions::relays`].
    pub fn with_relays(mut self, relays: Vec<[u8; 32]>) -> Self {
        self.relays = relays;
        self
    }

    /// Set [`DhtOptions::offer_relay`].
    pub fn with_offer_relay(mut self, offer: bool) -> Self {
        self.offer_relay = offer;
        self
    }

    /// Set [`DhtOptions::host`].
    pub fn with_host(mut self, host: Ipv4Addr) -> Self {
        self.host = host;
        self
    }

    /// Set [`DhtOptions::local_addresses`].
    pub fn with_local_addresses(mut self, addresses: Vec<Ipv4Addr>) -> Self {
        self.local_addresses = addresses;
        self
    }
}

/// How to start a [`Daemon`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The storage directory (the store, the config, state and status files).
    pub storage: PathBuf,
    /// The config file's content.
    pub file: FileConfig,
    /// DHT or not.
    pub network: Network,
    /// Accept TCP connections here (overrides the config's `listen_tcp`).
    pub listen_tcp: Option<SocketAddr>,
    /// Announce what we serve (overrides the config's `announce`).
    pub announce: Option<bool>,
    /// Write the state and status files (false for one-shot commands such as `follow`).
    pub write_files: bool,
    /// The Noise identity; by default the one kept in `<storage>/peerhost-identity.json`
    /// (created at the first start).
    pub key_pair: Option<KeyPair>,
    /// The HTTP gateway (each field overrides the config file's).
    pub http: HttpOptions,
}

impl Options {
    /// Defaults: no DHT, no listener, files written, the config file's settings.
    pub fn new(storage: impl Into<PathBuf>, file: FileConfig) -> Self {
        Self {
            storage: storage.into(),
            file,
            network: Network::Off,
            listen_tcp: None,
            announce: None,
            write_files: true,
            key_pair: None,
            http: HttpOptions::default(),
        }
    }

    /// Set [`Options::http`].
    pub fn with_http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Set [`Options::network`].
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Set [`Options::listen_tcp`].
    pub fn with_listen_tcp(mut self, addr: Option<SocketAddr>) -> Self {
        self.listen_tcp = addr;
        self
    }

    /// Set [`Options::announce`].
    pub fn with_announce(mut self, announce: bool) -> Self {
        self.announce = Some(announce);
        self
    }

    /// Set [`Options::write_files`].
    pub fn with_write_files(mut self, write: bool) -> Self {
        self.write_files = write;
        self
    }

    /// Set [`Options::key_pair`].
    pub fn with_key_pair(mut self, key_pair: KeyPair) -> Self {
        self.key_pair = Some(key_pair);
        self
    }
}

/// Why the daemon could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The store failed (cannot open, locked by another process, corrupt).
    #[error(transparent)]
    Store(#[from] peerhost_store::Error),
    /// A log failed.
    #[error(transparent)]
    Core(#[from] peerhost_store::CoreError),
    /// A replication command failed.
    #[error(transparent)]
    Command(#[from] peerhost_replication::CommandError),
    /// A file (config, state, status, identity) or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The config file is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key that does not parse.
    #[error("{text:?} is not a key: {message}")]
    Key {
        /// What was given.
        text: String,
        /// Why.
        message: String,
    },
    /// The swarm (the DHT node) could not start: a bootstrap node does not resolve, or its
    /// sockets cannot be bound.
    #[error("the DHT could not start: {0}")]
    Swarm(peerhost_swarm::Error),
    /// Nothing happened in time (no peer has the log, or peers are too slow).
    #[error("{what}: nothing within {secs} s (no peer found that has it?)")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        secs: u64,
    },
    /// The key names a log that holds no community descriptor.
    #[error("log {key} is not a community (its first block is not a descriptor)")]
    NotACommunity {
        /// The key (z-base32).
        key: String,
    },
    /// The community lacks the log asked for.
    #[error("community {key} has no {part} log")]
    NoSuchPart {
        /// The community (z-base32).
        key: String,
        /// `posts`, `comments` or `assets`.
        part: &'static str,
    },
    /// No file at this path in the community's web app.
    #[error("community {key} has no asset {path:?}")]
    NoSuchAsset {
        /// The community.
        key: String,
        /// The path asked for.
        path: String,
    },
    /// Reading the community's logs failed.
    #[error(transparent)]
    Read(#[from] peerhost_feed::ReadError),
    /// An asset's content did not check out (size, SHA-256, not chunks).
    #[error(transparent)]
    Asset(#[from] peerhost_feed::assets::AssetError),
    /// The disk quota is full: downloads are stopped (serving goes on).
    #[error(
        "the disk quota is full ({used} of {limit} bytes used): downloads stopped, serving goes \
         on; raise `quota` in peerhost.toml and restart to download more"
    )]
    QuotaFull {
        /// Bytes used.
        used: u64,
        /// The quota.
        limit: u64,
    },
    /// The daemon shut down.
    #[error("the daemon is shutting down")]
    Closed,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// What the daemon does with a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// We hold its secret key.
    Writer,
    /// Complete and live.
    Mirror,
    /// Sparse: what a reader asked for.
    Follow,
    /// Held and served; not downloaded.
    Serve,
}

impl Role {
    /// Writer > Mirror > Follow > Serve.
    fn rank(self) -> u8 {
        match self {
            Self::Writer => 3,
            Self::Mirror => 2,
            Self::Follow => 1,
            Self::Serve => 0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Writer => "writer",
            Self::Mirror => "mirror",
            Self::Follow => "follow",
            Self::Serve => "serve",
        }
    }
}

/// Which log of a community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// The descriptor log (its key is the community key).
    Descriptor,
    /// Posts.
    Posts,
    /// Comments.
    Comments,
    /// The web app.
    Assets,
}

impl Part {
    /// The name used in status and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Descriptor => "descriptor",
            Self::Posts => "posts",
            Self::Comments => "comments",
            Self::Assets => "assets",
        }
    }

    fn key_in(self, d: &Descriptor) -> Option<Key> {
        let bytes = match self {
            Self::Descriptor => return None,
            Self::Posts => &d.posts,
            Self::Comments => &d.comments,
            Self::Assets => &d.assets,
        };
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Key)
    }
}

#[derive(Debug, Clone)]
struct LogEntry {
    key: Key,
    role: Role,
    community: Option<(Key, Part)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Mirror,
    Follow,
}

#[derive(Debug)]
struct CommunityEntry {
    mode: Mode,
    /// The descriptor log's length when we last read it.
    read_at: u64,
    descriptor: Option<Descriptor>,
}

#[derive(Debug, Default)]
struct Tracked {
    logs: HashMap<DiscoveryKey, LogEntry>,
    communities: HashMap<Key, CommunityEntry>,
    /// Mirrored keys that are not (yet known to be) communities.
    mirrors: HashSet<Key>,
}

/// A community as read from its descriptor log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Community {
    /// The community key (the descriptor log's).
    pub key: Key,
    /// Its latest descriptor.
    pub descriptor: Descriptor,
}

impl Community {
    /// The key of one of its logs.
    pub fn part(&self, part: Part) -> Option<Key> {
        if part == Part::Descriptor {
            return Some(self.key);
        }
        part.key_in(&self.descriptor)
    }
}

/// What [`Daemon::follow`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Followed {
    /// A community: its descriptor and latest posts, newest first.
    Community {
        /// The community.
        community: Box<Community>,
        /// The latest posts (at most the number asked for).
        posts: Vec<PostView>,
        /// What the readers skipped (malformed entries) on the way.
        notes: Notes,
    },
    /// A plain log: these blocks are now held and verified.
    Log {
        /// The log.
        key: Key,
        /// The first block downloaded.
        start: u64,
        /// The end (exclusive).
        end: u64,
        /// The log's length.
        length: u64,
    },
}

/// Which blocks of a plain log [`Daemon::follow`] downloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Range {
    /// First block (default 0).
    pub start: Option<u64>,
    /// End, exclusive (default: the length when first synced).
    pub end: Option<u64>,
    /// Only the last N blocks (N posts, for a community).
    pub last: Option<u64>,
}

impl Range {
    /// The last `n` blocks (or posts).
    pub fn last(n: u64) -> Self {
        Self {
            last: Some(n),
            ..Self::default()
        }
    }

    /// Blocks `start..end`.
    pub fn between(start: Option<u64>, end: Option<u64>) -> Self {
        Self {
            start,
            end,
            last: None,
        }
    }
}

/// Errors and warnings kept for the status file.
const MAX_ERRORS: usize = 16;
/// How often the state file is rewritten while running.
const STATE_EVERY: Duration = Duration::from_secs(10);
/// How often the disk is measured for the quota.
const MEASURE_EVERY: Duration = Duration::from_secs(10);
/// The identity file.
const IDENTITY_FILE: &str = "peerhost-identity.json";

struct Inner {
    storage: PathBuf,
    store: Store,
    node: Node,
    swarm: Option<Swarm>,
    tracked: Mutex<Tracked>,
    state: Mutex<State>,
    errors: Mutex<VecDeque<String>>,
    quota: Mutex<Quota>,
    announce: bool,
    write_files: bool,
    status_interval: Duration,
    upload_limit: Option<u64>,
    tcp_addr: Option<SocketAddr>,
    http: OnceLock<http::Http>,
    started: SystemTime,
    stop: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Quota {
    limit: Option<u64>,
    /// Bytes on disk when last measured…
    measured: u64,
    /// …and the node's downloaded bytes at that moment.
    downloaded_at_measure: u64,
    full: bool,
}

/// The running daemon. Cheap to clone; [`Daemon::shutdown`] stops it.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("storage", &self.inner.storage)
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Parse a key given as text (z-base32, hex, pear://).
pub fn parse_key(text: &str) -> Result<Key, DaemonError> {
    Key::parse(text).map_err(|e| DaemonError::Key {
        text: text.to_owned(),
        message: e.to_string(),
    })
}

fn load_identity(storage: &Path) -> Result<KeyPair, DaemonError> {
    let path = storage.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| DaemonError::Io {
                what: format!("{}", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            let seed =
                v["seed"]
                    .as_str()
                    .and_then(hex_decode32)
                    .ok_or_else(|| DaemonError::Io {
                        what: format!("{}", path.display()),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "no 32-byte hex \"seed\": delete the file to get a new identity",
                        ),
                    })?;
            Ok(KeyPair::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = KeyPair::generate();
            let v = serde_json::json!({
                "publicKey": crate::hex(&kp.public_key()),
                "seed": crate::hex(&kp.seed()),
            });
            let tmp = path.with_extension("json.tmp");
            write_private(&tmp, v.to_string().as_bytes())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(io_err(format!("cannot write {}", path.display())))?;
            Ok(kp)
        }
        Err(e) => Err(io_err(format!("cannot read {}", path.display()))(e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(bytes)
}

fn hex_decode32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Bytes the files under `dir` take on disk (allocated blocks on Unix, so sparse files count
/// what they hold).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    total += m.blocks() * 512;
                }
                #[cfg(not(unix))]
                {
                    total += m.len();
                }
            }
        }
    }
    total
}

/// Blocks held of `core` in `0..length`.
fn held(core: &mut Core) -> u64 {
    let end = core.length();
    let mut n = 0;
    let mut i = 0;
    while let Ok(Some(s)) = core.next_present(i, end) {
        let e = core.next_missing(s, end).ok().flatten().unwrap_or(end);
        n += e - s;
        i = e;
    }
    n
}

impl Daemon {
    /// Open the store, start the node, the DHT and the listener, and resume the mirrors.
    pub async fn start(options: Options) -> Result<Self, DaemonError> {
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
            State::load(&options.storage).map_err(io_err("cannot read the state file"))?
        } else {
            State::default()
        };
        state.version = 1;
        state.runs += 1;
        let key_pair = match options.key_pair.clone() {
            Some(kp) => kp,
            None => load_identity(&options.storage)?,
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
                .map_err(io_err(format!("cannot listen on {addr}")))?;
            tcp_addr = Some(
                listener
                    .local_addr()
                    .map_err(io_err("cannot read the listener's address"))?,
            );
            let n = node.clone();
            tokio::spawn(async move { n.listen_tcp(listener).await });
        }
        let discovery = match &options.network {
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
                    bind: BindOptions::host(dht.host).with_port(dht.port),
                    local_addresses: dht.local_addresses,
                    relays: dht.relays,
                    offer_relay: dht.offer_relay,
                };
                Some(Swarm::start(node.clone(), opts).await?)
            }
        };
        let daemon = Self {
            inner: Arc::new(Inner {
                storage: options.storage.clone(),
                store,
                node,
                swarm: discovery,
                tracked: Mutex::new(Tracked::default()),
                state: Mutex::new(state),
                errors: Mutex::new(VecDeque::new()),
                quota: Mutex::new(Quota {
                    limit: file.quota.map(|s| s.0),
                    ..Quota::default()
                }),
                announce: options.announce.or(file.announce).unwrap_or(true),
                write_files: options.write_files,
                status_interval: Duration::from_millis(
                    file.status_interval_ms.unwrap_or(2000).max(100),
                ),
                upload_limit,
                tcp_addr,
                http: OnceLock::new(),
                started: SystemTime::now(),
                stop,
            }),
        };
        daemon.measure_quota();
        // Mirrors first (active), then everything else held (passive, served).
        let mut mirrors: Vec<Key> = Vec::new();
        for text in &file.mirrors {
            mirrors.push(parse_key(text)?);
        }
        let recorded: Vec<String> = lock(&daemon.inner.state).mirrors.clone();
        for text in recorded {
            if let Ok(k) = parse_key(&text) {
                mirrors.push(k);
            }
        }
        for key in mirrors {
            daemon.track_mirror(key).await?;
        }
        daemon.serve_all().await?;
        daemon.start_http(&options).await?;
        if options.write_files {
            control::start(&daemon);
        }
        daemon.spawn_controller();
        if options.write_files {
            daemon.write_state();
            daemon.write_status(true).await;
        }
        Ok(daemon)
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The TCP listener's address, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// The HTTP gateway's address, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http.get().map(|h| h.addr)
    }

    /// The HTTP gateway's base URL as registered with instances, if it runs.
    pub fn http_url(&self) -> Option<String> {
        self.inner.http.get().map(|h| h.url.clone())
    }

    /// Start the HTTP gateway if the options or the config file ask for it: an instance when
    /// we publish a community or serve a bootstrap page.
    async fn start_http(&self, options: &Options) -> Result<(), DaemonError> {
        let file = &options.file;
        let mut o = options.http.clone();
        let Some(addr) = o.addr.or(file.http) else {
            if o.page.is_some() || !o.register.is_empty() || o.public_url.is_some() {
                return Err(DaemonError::Io {
                    what: "the HTTP gateway".into(),
                    source: std::io::Error::other(
                        "a bootstrap page, --register or --public-url needs --http ADDR (or \
                         `http` in the config)",
                    ),
                });
            }
            return Ok(());
        };
        if o.page.is_none() {
            o.page.clone_from(&file.bootstrap_page);
        }
        if o.register.is_empty() {
            o.register.clone_from(&file.register);
        }
        if o.public_url.is_none() {
            o.public_url.clone_from(&file.public_url);
        }
        o.allow_private_peers |= file.allow_private_peers.unwrap_or(false);
        let communities = self.published_communities();
        let h = http::start(
            &self.inner.node,
            &o,
            addr,
            !communities.is_empty(),
            &self.inner.stop,
        )
        .await?;
        if let Some(i) = &h.instance {
            i.set_communities(communities);
        }
        let _ = self.inner.http.set(h);
        Ok(())
    }

    /// The communities whose descriptor log we can write, for the bootstrap JSON.
    fn published_communities(&self) -> Vec<peerhost_gateway::CommunityInfo> {
        let writers: Vec<(DiscoveryKey, Key)> = lock(&self.inner.tracked)
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

    /// Our DHT server socket's address, if the DHT is on.
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.inner.swarm.as_ref().map(Swarm::address)
    }

    /// Mirror `key` (a community or a plain log): complete and live, served, announced.
    /// With `persist`, it is recorded in the state file and mirrored again after a restart.
    pub async fn mirror(&self, key: Key, persist: bool) -> Result<(), DaemonError> {
        if persist {
            let mut st = lock(&self.inner.state);
            let hex = key.to_hex();
            if !st.mirrors.contains(&hex) {
                st.mirrors.push(hex);
            }
        }
        self.track_mirror(key).await?;
        if self.inner.write_files {
            self.write_state();
        }
        Ok(())
    }

    /// Connect to a peer over TCP, reconnecting every 2 s while the daemon runs.
    pub fn add_tcp_peer(&self, addr: SocketAddr) {
        let node = self.inner.node.clone();
        let mut stop = self.inner.stop.subscribe();
        tokio::spawn(async move {
            loop {
                let _ = node.connect_tcp(addr).await;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = crate::stopped(&mut stop) => return,
                }
                if node.is_closed() {
                    return;
                }
                tracing::info!(peer = %addr, "reconnecting");
            }
        });
    }

    fn replica(&self, key: &Key) -> Result<Core, DaemonError> {
        if self.inner.store.contains(key) {
            Ok(self.inner.store.open_core(&key.to_hex())?)
        } else {
            Ok(self.inner.store.create_replica(*key, None, None)?)
        }
    }

    /// Add `key` to the replicator (opening or creating its replica) with `role`; upgrade the
    /// role of a log already there. Joins its topic on the DHT.
    async fn ensure_log(
        &self,
        key: Key,
        role: Role,
        community: Option<(Key, Part)>,
    ) -> Result<DiscoveryKey, DaemonError> {
        let dkey = key.discovery_key();
        // Already tracked with this role or a stronger one: only name its community.
        {
            let mut t = lock(&self.inner.tracked);
            if let Some(e) = t.logs.get_mut(&dkey) {
                if community.is_some() {
                    e.community = community;
                }
                if e.role.rank() >= role.rank() {
                    return Ok(dkey);
                }
            }
        }
        let now = Instant::now();
        let present = self.inner.node.with(|r| r.core(&dkey).is_some());
        let mut role = role;
        if !present {
            let core = self.replica(&key)?;
            if core.writable() {
                role = Role::Writer;
            }
            let active = matches!(role, Role::Mirror | Role::Follow);
            self.inner.node.with(|r| r.add_core(core, active, now));
        } else if self
            .inner
            .node
            .with(|r| r.core(&dkey).is_some_and(Core::writable))
        {
            role = Role::Writer;
        } else if matches!(role, Role::Mirror | Role::Follow) {
            self.inner.node.with(|r| r.set_active(&dkey, true, now));
        }
        if role == Role::Mirror && !self.inner.node.download_budget_exhausted() {
            // Everything, and (open-ended, live) every block appended later.
            self.inner.node.with(|r| {
                r.set_live(&dkey, true, now);
                r.download(&dkey, 0, None, now)
            })?;
        }
        {
            let mut t = lock(&self.inner.tracked);
            let e = t.logs.entry(dkey).or_insert(LogEntry {
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
            role = e.role;
        }
        if let Some(d) = &self.inner.swarm {
            let is_community = community.is_some_and(|(_, p)| p == Part::Descriptor);
            let announce = self.inner.announce && role != Role::Follow;
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
            )
            .await;
        }
        Ok(dkey)
    }

    async fn track_mirror(&self, key: Key) -> Result<(), DaemonError> {
        lock(&self.inner.tracked).mirrors.insert(key);
        let dkey = self.ensure_log(key, Role::Mirror, None).await?;
        self.check_community(key, dkey, Mode::Mirror).await?;
        Ok(())
    }

    /// Serve every log of the store that is not tracked yet.
    async fn serve_all(&self) -> Result<(), DaemonError> {
        for key in self.inner.store.keys()? {
            let dkey = key.discovery_key();
            if lock(&self.inner.tracked).logs.contains_key(&dkey) {
                continue;
            }
            self.ensure_log(key, Role::Serve, None).await?;
        }
        // Writers of communities: name their parts (status) and announce the community topic.
        let writers: Vec<(DiscoveryKey, Key)> = lock(&self.inner.tracked)
            .logs
            .iter()
            .filter(|(_, e)| e.role == Role::Writer && e.community.is_none())
            .map(|(d, e)| (*d, e.key))
            .collect();
        for (dkey, key) in writers {
            // Only descriptor logs name parts: reading a community's posts, comments or assets
            // log (or a plain log) as one would only report its blocks as skipped.
            let is_descriptor = self.inner.node.with(|r| {
                r.core_mut(&dkey)
                    .is_some_and(|core| read::is_descriptor_log(core).unwrap_or(false))
            });
            if !is_descriptor {
                continue;
            }
            if let Some(desc) = self.read_descriptor(&dkey) {
                self.tag_parts(key, &desc);
            }
        }
        Ok(())
    }

    fn tag_parts(&self, key: Key, desc: &Descriptor) {
        let mut t = lock(&self.inner.tracked);
        if let Some(e) = t.logs.get_mut(&key.discovery_key()) {
            e.community = Some((key, Part::Descriptor));
        }
        for part in [Part::Posts, Part::Comments, Part::Assets] {
            if let Some(k) = part.key_in(desc) {
                if let Some(e) = t.logs.get_mut(&k.discovery_key()) {
                    e.community = Some((key, part));
                }
            }
        }
    }

    /// The latest descriptor of the log `dkey`, if it holds one (reads local blocks only).
    fn read_descriptor(&self, dkey: &DiscoveryKey) -> Option<Descriptor> {
        let (found, notes) = self.inner.node.with(|r| {
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
        &self,
        key: Key,
        dkey: DiscoveryKey,
        mode: Mode,
    ) -> Result<(), DaemonError> {
        let length = self
            .inner
            .node
            .with(|r| r.core(&dkey).map_or(0, Core::length));
        {
            let t = lock(&self.inner.tracked);
            if let Some(c) = t.communities.get(&key) {
                if c.read_at == length {
                    return Ok(());
                }
            }
        }
        let Some(desc) = self.read_descriptor(&dkey) else {
            return Ok(());
        };
        {
            let mut t = lock(&self.inner.tracked);
            let c = t.communities.entry(key).or_insert(CommunityEntry {
                mode,
                read_at: 0,
                descriptor: None,
            });
            if mode == Mode::Mirror {
                c.mode = Mode::Mirror;
            }
            c.read_at = length;
            c.descriptor = Some(desc.clone());
            if let Some(e) = t.logs.get_mut(&dkey) {
                e.community = Some((key, Part::Descriptor));
            }
        }
        let role = match mode {
            Mode::Mirror => Role::Mirror,
            Mode::Follow => Role::Follow,
        };
        // The descriptor log's own topic becomes the community topic (looked up).
        if let Some(d) = &self.inner.swarm {
            let announce = self.inner.announce && mode == Mode::Mirror;
            d.join(dkey.0, announce, true, true).await;
        }
        if mode == Mode::Mirror {
            for part in [Part::Posts, Part::Comments, Part::Assets] {
                if let Some(k) = part.key_in(&desc) {
                    Box::pin(self.ensure_log(k, role, Some((key, part)))).await?;
                }
            }
        }
        Ok(())
    }

    fn note(&self, message: String) {
        tracing::warn!("{message}");
        let mut e = lock(&self.inner.errors);
        if e.back() == Some(&message) {
            return;
        }
        if e.len() == MAX_ERRORS {
            e.pop_front();
        }
        e.push_back(message);
    }

    // ------------------------------------------------------------------ background work

    fn spawn_controller(&self) {
        let d = self.clone();
        let mut stop = self.inner.stop.subscribe();
        tokio::spawn(async move {
            let mut last_status = Instant::now();
            let mut last_state = Instant::now();
            let mut last_measure = Instant::now();
            loop {
                let node = d.inner.node.clone();
                let changed = node.changed();
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = crate::stopped(&mut stop) => return,
                }
                d.tick().await;
                let now = Instant::now();
                if now - last_measure >= MEASURE_EVERY {
                    last_measure = now;
                    d.measure_quota();
                    if let Some(i) = d.inner.http.get().and_then(|h| h.instance.as_ref()) {
                        i.set_communities(d.published_communities());
                    }
                }
                d.check_quota();
                if d.inner.write_files {
                    if now - last_status >= d.inner.status_interval {
                        last_status = now;
                        d.write_status(true).await;
                    }
                    if now - last_state >= STATE_EVERY {
                        last_state = now;
                        d.write_state();
                    }
                }
            }
        });
    }

    /// Re-read the descriptors of tracked communities whose log grew.
    async fn tick(&self) {
        let communities: Vec<(Key, Mode)> = {
            let t = lock(&self.inner.tracked);
            let mut v: Vec<(Key, Mode)> = t.communities.iter().map(|(k, c)| (*k, c.mode)).collect();
            // Mirrored keys not yet known to be communities (their first blocks were missing).
            for k in &t.mirrors {
                if !t.communities.contains_key(k) {
                    v.push((*k, Mode::Mirror));
                }
            }
            v
        };
        for (key, mode) in communities {
            if let Err(e) = self.check_community(key, key.discovery_key(), mode).await {
                self.note(format!("community {}: {e}", key.to_z32()));
            }
        }
    }

    /// Measure the store on disk and give the node the rest of the quota as its budget.
    fn measure_quota(&self) {
        let mut q = lock(&self.inner.quota);
        let Some(limit) = q.limit else {
            return;
        };
        if q.full {
            return;
        }
        let used = disk_usage(&self.inner.storage);
        let downloaded: u64 = self
            .inner
            .node
            .log_stats()
            .values()
            .map(|s| s.downloaded_bytes)
            .sum();
        q.measured = used;
        q.downloaded_at_measure = downloaded;
        self.inner
            .node
            .set_download_budget(Some(limit.saturating_sub(used)));
    }

    fn quota_used(&self, q: &Quota) -> u64 {
        let downloaded: u64 = self
            .inner
            .node
            .log_stats()
            .values()
            .map(|s| s.downloaded_bytes)
            .sum();
        q.measured + downloaded.saturating_sub(q.downloaded_at_measure)
    }

    fn check_quota(&self) {
        let mut q = lock(&self.inner.quota);
        let Some(limit) = q.limit else { return };
        if q.full || !self.inner.node.download_budget_exhausted() {
            return;
        }
        q.full = true;
        let used = self.quota_used(&q);
        drop(q);
        let e = DaemonError::QuotaFull { used, limit };
        tracing::error!("{e}");
        self.note(e.to_string());
    }

    /// Whether the disk quota is full (downloads stopped).
    pub fn quota_full(&self) -> bool {
        lock(&self.inner.quota).full || self.inner.node.download_budget_exhausted()
    }

    /// The status as `peerhost status` shows it.
    pub async fn status(&self, running: bool) -> Status {
        let node = &self.inner.node;
        let stats = node.log_stats();
        let state = lock(&self.inner.state).clone();
        let tracked: Vec<(DiscoveryKey, LogEntry)> = lock(&self.inner.tracked)
            .logs
            .iter()
            .map(|(d, e)| (*d, e.clone()))
            .collect();
        let mut logs = Vec::new();
        let mut session = Counts::default();
        let mut total = Counts::default();
        for (dkey, e) in tracked {
            let hex = crate::hex(&dkey.0);
            let s: Counts = stats.get(&dkey).copied().unwrap_or_default().into();
            let mut t = state.totals.get(&hex).copied().unwrap_or_default();
            t.add(&s);
            session.add(&s);
            total.add(&t);
            let (length, held_blocks, peers) = node.with(|r| {
                let peers = r.peer_count(&dkey);
                r.core_mut(&dkey)
                    .map_or((0, 0, peers), |c| (c.length(), held(c), peers))
            });
            logs.push(state::LogStatus {
                key: e.key.to_z32(),
                discovery_key: hex,
                role: e.role.name().into(),
                community: e.community.map(|(k, _)| k.to_z32()),
                part: e.community.map(|(_, p)| p.name().into()),
                length,
                held: held_blocks,
                peers,
                session: s,
                total: t,
            });
        }
        logs.sort_by(|a, b| {
            (&a.community, a.part.as_deref().unwrap_or(""), &a.key).cmp(&(
                &b.community,
                b.part.as_deref().unwrap_or(""),
                &b.key,
            ))
        });
        let peers = node
            .peers()
            .into_iter()
            .map(|p| state::PeerStatus {
                public_key: crate::hex(&p.remote_public_key),
                address: p.label,
                transport: p.transport.into(),
                initiator: p.is_initiator,
                since_ms: unix_ms(p.since),
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
            })
            .collect();
        let quota = {
            let q = lock(&self.inner.quota);
            q.limit.map(|limit| state::QuotaStatus {
                limit,
                used: self.quota_used(&q),
                full: q.full || node.download_budget_exhausted(),
            })
        };
        Status {
            version: 1,
            pid: std::process::id(),
            running,
            started_ms: unix_ms(self.inner.started),
            updated_ms: unix_ms(SystemTime::now()),
            interval_ms: u64::try_from(self.inner.status_interval.as_millis()).unwrap_or(0),
            public_key: crate::hex(&node.public_key()),
            dht: match &self.inner.swarm {
                Some(s) => Some(s.status().await),
                None => None,
            },
            listen_tcp: self.inner.tcp_addr.map(|a| a.to_string()),
            peers,
            logs,
            session,
            total,
            quota,
            upload_limit: self.inner.upload_limit,
            errors: lock(&self.inner.errors).iter().cloned().collect(),
            http: self.inner.http.get().map(|h| state::HttpStatus {
                address: h.addr.to_string(),
                url: h.url.clone(),
                requests: h.counters.requests(),
                bytes_served: h.counters.bytes(),
                instance: h.instance.is_some(),
                registered_with: h.register.clone(),
                contributions: h
                    .instance
                    .as_ref()
                    .map(|i| i.contributions())
                    .unwrap_or_default(),
            }),
        }
    }

    async fn write_status(&self, running: bool) {
        let status = self.status(running).await;
        let path = self.inner.storage.join(state::STATUS_FILE);
        if let Err(e) = state::write_json(&path, &status) {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }

    /// The state to save: earlier totals plus this run's counters.
    fn write_state(&self) {
        let stats = self.inner.node.log_stats();
        let mut st = lock(&self.inner.state).clone();
        for (dkey, s) in stats {
            st.totals
                .entry(crate::hex(&dkey.0))
                .or_default()
                .add(&s.into());
        }
        if let Err(e) = st.save(&self.inner.storage) {
            tracing::warn!("cannot write the state file: {e}");
        }
    }

    /// Stop: close every connection (each flushes first), leave the DHT, write the final
    /// state and status. Waits at most `grace` for connections to end.
    pub async fn shutdown(&self, grace: Duration) {
        if self.inner.stop.send_replace(true) {
            return;
        }
        tracing::info!("shutting down");
        self.inner.node.close();
        let deadline = Instant::now() + grace;
        while !self.inner.node.peers().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(d) = &self.inner.swarm {
            d.close().await;
        }
        if self.inner.write_files {
            let _ = std::fs::remove_file(crate::control::socket_path(&self.inner.storage));
            self.write_state();
            self.write_status(false).await;
        }
    }

    /// Resolves when [`Daemon::shutdown`] was called.
    pub async fn stopped(&self) {
        let mut s = self.inner.stop.subscribe();
        crate::stopped(&mut s).await;
    }

    // ------------------------------------------------------------------ reading

    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Replicator) -> bool,
    ) -> Result<(), DaemonError> {
        let deadline = Instant::now() + timeout;
        let node = &self.inner.node;
        loop {
            let changed = node.changed();
            if node.with(&mut f) {
                return Ok(());
            }
            if node.is_closed() {
                return Err(DaemonError::Closed);
            }
            if Instant::now() > deadline {
                return Err(DaemonError::Timeout {
                    what: what.into(),
                    secs: timeout.as_secs(),
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
        }
    }

    /// Download `start..end` of `dkey` and wait until it is stored (and verified).
    async fn fetch(
        &self,
        dkey: DiscoveryKey,
        start: u64,
        end: u64,
        timeout: Duration,
        what: &str,
    ) -> Result<(), DaemonError> {
        if start >= end {
            return Ok(());
        }
        if self.inner.node.download_budget_exhausted() {
            let q = lock(&self.inner.quota);
            return Err(DaemonError::QuotaFull {
                used: self.quota_used(&q),
                limit: q.limit.unwrap_or(0),
            });
        }
        let now = Instant::now();
        self.inner
            .node
            .with(|r| r.download(&dkey, start, Some(end), now))?;
        self.wait_for(what, timeout, |r| {
            r.core_mut(&dkey)
                .is_some_and(|c| matches!(c.next_missing(start, end), Ok(None)))
        })
        .await
        .map_err(|e| match e {
            DaemonError::Timeout { .. } if self.inner.node.download_budget_exhausted() => {
                let q = lock(&self.inner.quota);
                DaemonError::QuotaFull {
                    used: self.quota_used(&q),
                    limit: q.limit.unwrap_or(0),
                }
            }
            e => e,
        })
    }

    /// Wait until a peer told us the log's head (JS `core.update()`); its length.
    async fn sync(
        &self,
        dkey: DiscoveryKey,
        timeout: Duration,
        what: &str,
    ) -> Result<u64, DaemonError> {
        self.wait_for(what, timeout, |r| r.is_synced(&dkey)).await?;
        Ok(self
            .inner
            .node
            .with(|r| r.core(&dkey).map_or(0, Core::length)))
    }

    /// Follow `key`: find peers (DHT topic, TCP peers added), learn the head, and download
    /// what a reader needs. A community (the key of a descriptor log) gets its descriptor and
    /// the latest `range.last` posts (default 20), newest first; a plain log gets `range`.
    pub async fn follow(
        &self,
        key: Key,
        range: Range,
        timeout: Duration,
    ) -> Result<Followed, DaemonError> {
        let dkey = self.ensure_log(key, Role::Follow, None).await?;
        let z = key.to_z32();
        let length = self
            .sync(dkey, timeout, &format!("the head of {z}"))
            .await?;
        // The last block says what it is: every entry of a descriptor log is a descriptor.
        // (Not block 0, which a sparse follow of a plain log should not download.)
        if length > 0 {
            self.fetch(
                dkey,
                length - 1,
                length,
                timeout,
                &format!("the last block of {z}"),
            )
            .await?;
        }
        let is_community = length > 0 && {
            let last = self.inner.node.with(|r| {
                r.core_mut(&dkey)
                    .and_then(|c| c.get(length - 1).ok().flatten())
            });
            last.and_then(|b| peerhost_feed::Entry::decode(&b).ok())
                .is_some_and(|e| matches!(e.kind(), Some(peerhost_feed::Kind::Descriptor(_))))
        };
        if !is_community {
            let (start, end) = match range.last {
                Some(n) => (length.saturating_sub(n), length),
                None => (range.start.unwrap_or(0), range.end.unwrap_or(length)),
            };
            self.fetch(
                dkey,
                start,
                end,
                timeout,
                &format!("blocks {start}..{end} of {z}"),
            )
            .await?;
            return Ok(Followed::Log {
                key,
                start,
                end,
                length,
            });
        }
        let community = self.open_community(key, timeout).await?;
        let n = usize::try_from(range.last.unwrap_or(20)).unwrap_or(usize::MAX);
        let (posts, notes) = self.latest_posts(&community, n, timeout).await?;
        Ok(Followed::Community {
            community: Box::new(community),
            posts,
            notes,
        })
    }

    /// The community `key` with its latest descriptor (the descriptor log downloaded whole:
    /// a few blocks), tracked so that its logs are followed on the same connections.
    pub async fn open_community(
        &self,
        key: Key,
        timeout: Duration,
    ) -> Result<Community, DaemonError> {
        let dkey = self.ensure_log(key, Role::Follow, None).await?;
        let z = key.to_z32();
        let length = self
            .sync(dkey, timeout, &format!("the head of {z}"))
            .await?;
        self.fetch(
            dkey,
            0,
            length,
            timeout,
            &format!("the descriptor log of {z}"),
        )
        .await?;
        self.check_community(key, dkey, Mode::Follow).await?;
        let Some(descriptor) = self.read_descriptor(&dkey) else {
            return Err(DaemonError::NotACommunity { key: z });
        };
        Ok(Community { key, descriptor })
    }

    /// Open one of a community's logs here (following it) and learn its head.
    async fn open_part(
        &self,
        c: &Community,
        part: Part,
        timeout: Duration,
    ) -> Result<(DiscoveryKey, u64), DaemonError> {
        let key = c.part(part).ok_or(DaemonError::NoSuchPart {
            key: c.key.to_z32(),
            part: part.name(),
        })?;
        let dkey = self
            .ensure_log(key, Role::Follow, Some((c.key, part)))
            .await?;
        let length = self
            .sync(
                dkey,
                timeout,
                &format!("the head of the {} log", part.name()),
            )
            .await?;
        Ok((dkey, length))
    }

    /// The latest `n` posts of a community, fetching only the blocks they need: the last `n`
    /// blocks first, then twice as many while edits, deletions or skipped blocks among them
    /// leave fewer than `n` posts.
    pub async fn latest_posts(
        &self,
        c: &Community,
        n: usize,
        timeout: Duration,
    ) -> Result<(Vec<PostView>, Notes), DaemonError> {
        let (dkey, length) = self.open_part(c, Part::Posts, timeout).await?;
        let mut window = (n as u64).max(1);
        loop {
            let start = length.saturating_sub(window);
            self.fetch(dkey, start, length, timeout, "the latest posts")
                .await?;
            let (posts, notes) = self
                .inner
                .node
                .with(|r| match r.core_mut(&dkey) {
                    Some(core) => read::latest_posts(core, n).map(Some),
                    None => Ok(None),
                })?
                .unwrap_or_default();
            // Only blocks above the n-th post are read: missing ones there mean the window
            // was too small.
            if notes.missing_total == 0 || start == 0 {
                for s in &notes.skipped {
                    tracing::warn!(log = "posts", "skipped {s}");
                }
                return Ok((posts, notes));
            }
            window = window.saturating_mul(2);
        }
    }

    /// Download the file `path` of a community's web app (the current asset index, then the
    /// file's chunks) and write it to `out`, checking its size and SHA-256.
    pub async fn fetch_asset<W: std::io::Write>(
        &self,
        c: &Community,
        path: &str,
        out: W,
        timeout: Duration,
    ) -> Result<Asset, DaemonError> {
        let (dkey, length) = self.open_part(c, Part::Assets, timeout).await?;
        let mut window = 1u64;
        let index = loop {
            let start = length.saturating_sub(window);
            self.fetch(dkey, start, length, timeout, "the asset index")
                .await?;
            let (found, notes) = self
                .inner
                .node
                .with(|r| match r.core_mut(&dkey) {
                    Some(core) => read::asset_index(core).map(Some),
                    None => Ok(None),
                })?
                .unwrap_or_default();
            if let Some((_, index)) = found.filter(|_| notes.missing_total == 0 || start == 0) {
                break Some(index);
            }
            if start == 0 {
                break None;
            }
            window = window.saturating_mul(4);
        };
        let asset = index
            .and_then(|i| i.files.into_iter().find(|a| a.path == path))
            .ok_or_else(|| DaemonError::NoSuchAsset {
                key: c.key.to_z32(),
                path: path.to_owned(),
            })?;
        self.fetch(
            dkey,
            asset.start,
            asset.start.saturating_add(asset.blocks),
            timeout,
            &format!("asset {path}"),
        )
        .await?;
        self.inner.node.with(|r| match r.core_mut(&dkey) {
            Some(core) => peerhost_feed::assets::read_content(core, &asset, out)
                .map(|_| ())
                .map_err(DaemonError::from),
            None => Err(DaemonError::Closed),
        })?;
        Ok(asset)
    }

    /// Keep following a community's posts as they are published: new blocks are fetched as
    /// the head grows. Call after [`Daemon::follow`].
    pub fn follow_live(&self, c: &Community) -> Result<(), DaemonError> {
        let now = Instant::now();
        let dd = c.key.discovery_key();
        let posts = c.part(Part::Posts).map(|k| k.discovery_key());
        self.inner.node.with(|r| -> Result<(), DaemonError> {
            r.set_live(&dd, true, now);
            let l = r.core(&dd).map_or(0, Core::length);
            r.download(&dd, l, None, now)?;
            if let Some(p) = posts {
                r.set_live(&p, true, now);
                let l = r.core(&p).map_or(0, Core::length);
                r.download(&p, l, None, now)?;
            }
            Ok(())
        })
    }

    /// Keep a plain log live: fetch every block appended from `start` on.
    pub fn follow_log_live(&self, key: &Key, start: u64) -> Result<(), DaemonError> {
        let now = Instant::now();
        let dkey = key.discovery_key();
        self.inner.node.with(|r| {
            r.set_live(&dkey, true, now);
            r.download(&dkey, start, None, now)
        })?;
        Ok(())
    }

    /// The length of a log held here (0 if not).
    pub fn length(&self, key: &Key) -> u64 {
        let dkey = key.discovery_key();
        self.inner
            .node
            .with(|r| r.core(&dkey).map_or(0, Core::length))
    }

    /// Blocks of `key` held here in `start..end`.
    pub fn held_in(&self, key: &Key, start: u64, end: u64) -> u64 {
        let dkey = key.discovery_key();
        self.inner.node.with(|r| {
            let Some(core) = r.core_mut(&dkey) else {
                return 0;
            };
            let mut n = 0;
            let mut i = start;
            while let Ok(Some(s)) = core.next_present(i, end) {
                let e = core.next_missing(s, end).ok().flatten().unwrap_or(end);
                n += e - s;
                i = e;
            }
            n
        })
    }

    /// Blocks of `key` held here, in `0..length`.
    pub fn held(&self, key: &Key) -> u64 {
        let dkey = key.discovery_key();
        self.inner.node.with(|r| r.core_mut(&dkey).map_or(0, held))
    }

    /// Whether every block of `key` up to its length is held here.
    pub fn is_complete(&self, key: &Key) -> bool {
        let dkey = key.discovery_key();
        self.inner.node.with(|r| {
            r.core_mut(&dkey).is_some_and(|c| {
                c.length() > 0 && matches!(c.next_missing(0, c.length()), Ok(None))
            })
        })
    }

    /// Append `blocks` to a log we write (through the replicator, so peers hear of it).
    pub fn append(&self, key: &Key, blocks: &[Vec<u8>]) -> Result<u64, DaemonError> {
        let dkey = key.discovery_key();
        let now = Instant::now();
        Ok(self.inner.node.with(|r| r.append(&dkey, blocks, now))?)
    }
}
