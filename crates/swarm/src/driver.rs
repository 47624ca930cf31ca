//! The tokio driver: one task (the actor, `driver/actor.rs`) runs the core (`state.rs`) and
//! the topics over a [`Dht`].
//!
//! - [`Swarm`] and [`Discovery`] are cheap handles: each call sends a command over a bounded
//!   channel and, where there is an answer, awaits it on a oneshot.
//! - The actor owns the core, every topic instance, the listening server and a `JoinSet` of
//!   its helpers: DHT walks (announce / lookup / unannounce for a refresh, unannounce on
//!   leave; at most [`Config::max_refreshes`] at once, the others queued, lookups and
//!   prioritized topics first), dials (`Dht::connect_raw`), the listen call, and one helper
//!   per connection handed out that waits for the application to drop the connection's
//!   [`Control`](crate::Control) (see `connection.rs`). Each helper ends with a `Done` the
//!   actor feeds back.
//! - It loops (`select!`, biased): hand waiting connections to the application, collect
//!   finished helpers, bans from the server's firewall, commands, incoming connections, and
//!   timers (the core's retry timers, each topic's refresh and empty-lookup retry). After each
//!   event it drains the core's actions (start dials, resolve flushes, record bans).
//! - Connections reach the application through a bounded channel ([`CONNECTION_QUEUE`]);
//!   while it is full, up to [`PENDING_CONNECTIONS`] more wait in the actor, beyond that new
//!   connections are closed.
//! - The server's firewall callback runs inside the DHT task: it reads the ban list (shared
//!   behind a mutex never held across an await) and reports new bans over a bounded channel.
//! - `destroy` (or dropping every handle): leave every topic (unannouncing), resolve flushes
//!   with false, stop listening, end every connection, stop.

use std::sync::Arc;
use std::time::Duration;

use peerhost_hyperdht::driver::{BindOptions, Dht};
use peerhost_ids::KeyPair;
use tokio::sync::{mpsc, oneshot};

mod actor;

use crate::bootstrap::{BootstrapNode, public_bootstrap, resolve_bootstrap};
use crate::connection::Connection;
use crate::error::Error;
use crate::peer::PeerInfo;
use crate::retry::{Backoffs, DEFAULT_JITTER};
use crate::state::{Firewall, Key, Limits, Status};
use crate::topic::{EmptyLookupRetry, JoinOptions};

/// Commands queued for the actor before callers wait.
const COMMANDS: usize = 64;
/// Connections queued for the application ([`Connections::next`]).
pub const CONNECTION_QUEUE: usize = 16;
/// Connections the actor holds while the application's queue is full; beyond, new
/// connections are closed.
pub const PENDING_CONNECTIONS: usize = 64;
/// Bans reported by the server's firewall callback, queued for the actor (the shared ban
/// list applies at once whatever this queue holds).
const BAN_EVENTS: usize = 64;
/// Keys the handshake-time ban list remembers; the oldest are forgotten first (ours).
pub const MAX_BANS: usize = 16_384;
/// Lookup replies queued between the DHT walks and the actor; when full, a reply waits for
/// the walk's end (which lists every reply).
const RECORDS: usize = 256;

/// How a [`Swarm`] is set up (JS `new Hyperswarm(opts)`).
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Our identity: the key peers connect to and the one we dial with.
    pub key_pair: KeyPair,
    /// Bootstrap nodes (default: [`public_bootstrap`]); resolved once, in [`Swarm::new`].
    pub bootstrap: Vec<BootstrapNode>,
    /// Where the DHT binds.
    pub bind: BindOptions,
    /// The DHT's own settings (firewalled, ephemeral, …); `dht.dht.bootstrap` is replaced by
    /// the resolved [`Config::bootstrap`].
    pub dht: peerhost_hyperdht::Config,
    /// Stop dialling at this many connections (JS `maxPeers`, 64; see `swarm.md`).
    pub max_peers: usize,
    /// Dials at once (JS `maxParallel`, 3).
    pub max_parallel: usize,
    /// Client connections at most (JS `maxClientConnections`, unlimited).
    pub max_client_connections: usize,
    /// Incoming connections at most (ours: JS stores `maxServerConnections` but never
    /// enforces it); default 1024.
    pub max_server_connections: usize,
    /// Peers remembered from discovery at most (ours); default 4096.
    pub max_known_peers: usize,
    /// Decide per peer whether to refuse (and ban) it.
    pub firewall: Option<Firewall>,
    /// Fixed backoffs (JS `opts.backoffs`); default: JS's randomized ones.
    pub backoffs: Option<Backoffs>,
    /// Random extra per retry timer (JS `opts.jitter`, 500 ms).
    pub jitter: Duration,
    /// Seed for the swarm's randomness (queue order, jitter); `None` draws from the OS.
    pub seed: Option<u64>,
    /// Topics joined at most (ours; default 65 536): a join beyond fails with
    /// [`Error::TooManyTopics`].
    pub max_topics: usize,
    /// Topic refreshes (DHT walks) running at once (ours; default 64, JS runs every one at
    /// once). The others wait, lookups and prioritized topics ([`JoinOptions::priority`])
    /// first.
    pub max_refreshes: usize,
    /// Look client topics whose lookup found no one up again sooner than the next refresh
    /// (ours; default `None`, as JS).
    pub empty_lookup_retry: Option<EmptyLookupRetry>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("public_key", &self.key_pair.public_key())
            .field("bootstrap", &self.bootstrap)
            .field("bind", &self.bind)
            .field("max_peers", &self.max_peers)
            .field("max_parallel", &self.max_parallel)
            .field("max_client_connections", &self.max_client_connections)
            .field("max_server_connections", &self.max_server_connections)
            .field("max_known_peers", &self.max_known_peers)
            .field("firewall", &self.firewall.is_some())
            .field("backoffs", &self.backoffs)
            .field("jitter", &self.jitter)
            .field("max_topics", &self.max_topics)
            .field("max_refreshes", &self.max_refreshes)
            .field("empty_lookup_retry", &self.empty_lookup_retry)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// JS's defaults with `key_pair`, the public bootstrap nodes, bound on every interface.
    pub fn new(key_pair: KeyPair) -> Self {
        Self {
            key_pair,
            bootstrap: public_bootstrap(),
            bind: BindOptions::default(),
            dht: peerhost_hyperdht::Config::default(),
            max_peers: 64,
            max_parallel: 3,
            max_client_connections: usize::MAX,
            max_server_connections: 1024,
            max_known_peers: 4096,
            firewall: None,
            backoffs: None,
            jitter: DEFAULT_JITTER,
            seed: None,
            max_topics: 1 << 16,
            max_refreshes: 64,
            empty_lookup_retry: None,
        }
    }

    /// Set [`Config::bootstrap`].
    pub fn with_bootstrap(mut self, nodes: Vec<BootstrapNode>) -> Self {
        self.bootstrap = nodes;
        self
    }

    /// Set [`Config::bind`].
    pub fn with_bind(mut self, bind: BindOptions) -> Self {
        self.bind = bind;
        self
    }

    /// Set [`Config::firewall`].
    pub fn with_firewall(
        mut self,
        firewall: impl Fn(&[u8; 32], Option<&peerhost_hyperdht::messages::NoisePayload>) -> bool
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.firewall = Some(Arc::new(firewall));
        self
    }

    fn limits(&self) -> Limits {
        Limits {
            max_peers: self.max_peers,
            max_parallel: self.max_parallel,
            max_client_connections: self.max_client_connections,
            max_server_connections: self.max_server_connections,
            max_known_peers: self.max_known_peers,
        }
    }
}

type Reply<T> = oneshot::Sender<T>;

#[derive(Debug)]
pub(crate) enum Command {
    Join {
        topic: Key,
        opts: JoinOptions,
        reply: Reply<Result<u64, Error>>,
    },
    Refresh {
        topic: Key,
        session: u64,
        opts: JoinOptions,
        reply: Reply<Result<bool, Error>>,
    },
    Flushed {
        topic: Key,
        reply: Reply<Result<bool, Error>>,
    },
    EndSession {
        topic: Key,
        session: u64,
        reply: Reply<Result<bool, Error>>,
    },
    Leave {
        topic: Key,
        reply: Reply<Result<bool, Error>>,
    },
    Flush(Reply<bool>),
    FlushConnections(Reply<bool>),
    Listen(Reply<Result<(), Error>>),
    JoinPeer(Key),
    LeavePeer(Key),
    Ban(Key),
    Unban(Key),
    Status(Reply<Status>),
    Peer(Key, Reply<Option<PeerInfo>>),
    LookupAgain,
    Destroy(Reply<()>),
}

/// A handle on a running swarm (JS `Hyperswarm`). Clone it freely; the swarm is destroyed
/// when [`Swarm::destroy`] is called or every handle (and every [`Discovery`]) is dropped.
#[derive(Debug, Clone)]
pub struct Swarm {
    commands: mpsc::Sender<Command>,
    key_pair: KeyPair,
    dht: Dht,
}

/// The connections the swarm opens, with what it knows about each peer (JS
/// `swarm.on('connection', (conn, peerInfo) => …)`).
#[derive(Debug)]
pub struct Connections {
    rx: mpsc::Receiver<(Connection, PeerInfo)>,
}

impl Connections {
    /// The next connection; `None` once the swarm stopped.
    pub async fn next(&mut self) -> Option<(Connection, PeerInfo)> {
        self.rx.recv().await
    }
}

/// One `join` of a topic (JS `PeerDiscoverySession`). Dropping it does not leave the topic:
/// call [`Discovery::destroy`] or [`Swarm::leave`].
#[derive(Debug)]
pub struct Discovery {
    topic: Key,
    session: u64,
    commands: mpsc::Sender<Command>,
}

async fn call<T>(
    commands: &mpsc::Sender<Command>,
    make: impl FnOnce(Reply<T>) -> Command,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    commands.send(make(tx)).await.ok()?;
    rx.await.ok()
}

impl Discovery {
    /// The topic.
    pub fn topic(&self) -> [u8; 32] {
        self.topic
    }

    /// Change how this session takes part and refresh now (JS `session.refresh({ server,
    /// client })`). `Ok(false)` when the DHT walks failed.
    pub async fn refresh(&self, opts: JoinOptions) -> Result<bool, Error> {
        let (topic, session) = (self.topic, self.session);
        call(&self.commands, |reply| Command::Refresh {
            topic,
            session,
            opts,
            reply,
        })
        .await
        .unwrap_or(Err(Error::Destroyed))
    }

    /// Resolves once the topic's current refresh (announce and/or lookup) is done (JS
    /// `flushed()`); false if it failed.
    pub async fn flushed(&self) -> bool {
        let topic = self.topic;
        matches!(
            call(&self.commands, |reply| Command::Flushed { topic, reply }).await,
            Some(Ok(true))
        )
    }

    /// End this session (JS `session.destroy()`): the last one leaves the topic
    /// (unannouncing); without server sessions left, the topic unannounces and stays a
    /// client.
    pub async fn destroy(self) -> Result<(), Error> {
        let (topic, session) = (self.topic, self.session);
        call(&self.commands, |reply| Command::EndSession {
            topic,
            session,
            reply,
        })
        .await
        .unwrap_or(Err(Error::Destroyed))
        .map(drop)
    }
}

impl Swarm {
    /// Resolve the bootstrap nodes, bind the DHT and start the swarm (JS `new
    /// Hyperswarm(opts)`).
    pub async fn new(config: Config) -> Result<(Self, Connections), Error> {
        let mut dht_config = config.dht.clone();
        dht_config.dht.bootstrap = resolve_bootstrap(&config.bootstrap).await?;
        let dht = Dht::bind(dht_config, config.bind).await?;
        Ok(Self::with_dht(dht, config))
    }

    /// Start a swarm on a DHT node that is already running (JS `opts.dht`);
    /// [`Config::bootstrap`], [`Config::bind`] and [`Config::dht`] are not used. Must be
    /// called within a tokio runtime.
    pub fn with_dht(dht: Dht, config: Config) -> (Self, Connections) {
        let (tx, rx) = mpsc::channel(COMMANDS);
        let (out, out_rx) = mpsc::channel(CONNECTION_QUEUE);
        actor::spawn(dht.clone(), &config, rx, tx.downgrade(), out);
        let swarm = Self {
            commands: tx,
            key_pair: config.key_pair,
            dht,
        };
        (swarm, Connections { rx: out_rx })
    }

    /// Our key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// Our public key (what peers connect to).
    pub fn public_key(&self) -> [u8; 32] {
        self.key_pair.public_key()
    }

    /// The DHT node underneath.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// Join `topic` (JS `swarm.join(topic, { server, client })`): announce it as a server,
    /// look it up and dial the peers found as a client. Returns at once; the first refresh
    /// runs in the background ([`Discovery::flushed`], [`Swarm::flush`]).
    pub async fn join(&self, topic: [u8; 32], opts: JoinOptions) -> Result<Discovery, Error> {
        let session = call(&self.commands, |reply| Command::Join { topic, opts, reply })
            .await
            .unwrap_or(Err(Error::Destroyed))?;
        Ok(Discovery {
            topic,
            session,
            commands: self.commands.clone(),
        })
    }

    /// Leave `topic` (every session of it): stop refreshing, unannounce. Connections stay.
    pub async fn leave(&self, topic: [u8; 32]) -> Result<(), Error> {
        call(&self.commands, |reply| Command::Leave { topic, reply })
            .await
            .unwrap_or(Err(Error::Destroyed))
            .map(drop)
    }

    /// Resolves once every topic's current refresh is done and every dial queued before
    /// this call has opened or failed, or at once when no more connections fit (JS
    /// `flush()`). False if the swarm was destroyed first.
    pub async fn flush(&self) -> bool {
        call(&self.commands, Command::Flush).await.unwrap_or(false)
    }

    /// Accept connections to our key without joining a topic (JS `swarm.listen()`), e.g. for
    /// peers that [`Swarm::join_peer`] us. Joining a topic as a server does this too.
    pub async fn listen(&self) -> Result<(), Error> {
        call(&self.commands, Command::Listen)
            .await
            .unwrap_or(Err(Error::Destroyed))
    }

    /// Keep a connection to `public_key` whatever the topics (JS `joinPeer`).
    pub async fn join_peer(&self, public_key: [u8; 32]) -> Result<(), Error> {
        self.send(Command::JoinPeer(public_key)).await
    }

    /// Stop insisting on `public_key` (JS `leavePeer`); an open connection stays.
    pub async fn leave_peer(&self, public_key: [u8; 32]) -> Result<(), Error> {
        self.send(Command::LeavePeer(public_key)).await
    }

    /// Ban `public_key`: close its connection, never dial it, refuse its handshakes.
    pub async fn ban(&self, public_key: [u8; 32]) -> Result<(), Error> {
        self.send(Command::Ban(public_key)).await
    }

    /// Lift a ban.
    pub async fn unban(&self, public_key: [u8; 32]) -> Result<(), Error> {
        self.send(Command::Unban(public_key)).await
    }

    /// A snapshot of connections, peers and counters.
    pub async fn status(&self) -> Result<Status, Error> {
        call(&self.commands, Command::Status)
            .await
            .ok_or(Error::Destroyed)
    }

    /// Look every client topic up again now, without announcing (ours): after something
    /// changed that may let dials that failed succeed, e.g. a new blind relay to fall back
    /// to. Peers found are dialled again whatever their retry timers say.
    pub async fn lookup_again(&self) -> Result<(), Error> {
        self.send(Command::LookupAgain).await
    }

    /// What the swarm knows about `public_key`.
    pub async fn peer(&self, public_key: [u8; 32]) -> Option<PeerInfo> {
        call(&self.commands, |reply| Command::Peer(public_key, reply))
            .await
            .flatten()
    }

    /// Leave every topic (unannouncing), resolve pending flushes with false, stop
    /// listening and end every connection (JS `destroy()`). Resolves when done.
    pub async fn destroy(&self) {
        let _ = call(&self.commands, Command::Destroy).await;
    }

    async fn send(&self, cmd: Command) -> Result<(), Error> {
        self.commands.send(cmd).await.map_err(|_| Error::Destroyed)
    }
}
