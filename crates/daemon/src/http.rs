//! The daemon's HTTP gateway (`peerhost serve --http ADDR`, config `http`): the cores the
//! replicator holds, lent to `peerhost-gateway` through [`NodeSource`]; an instance's routes
//! when the daemon publishes a community (or has a bootstrap page); registration with
//! instances (`register`).
//!
//! - the gateway reads a core under the node's lock, on the blocking pool (one head or one
//!   range at a time per request, bounded by the gateway's `max_inflight`);
//! - an [`Instance`] is attached when the daemon holds a writable community or serves a
//!   bootstrap page; its check loop verifies registered peers against our own heads;
//! - with `register`, a reporter loop POSTs our URL and counters to each instance;
//! - all three tasks end when the daemon stops.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use peerhost_gateway::TrustedProxies;
use peerhost_gateway::blob::{BlobError, BlobIndex, Sha256};
use peerhost_gateway::signal::IceServer;
use peerhost_gateway::{
    Config, Counters, HeadVersion, Instance, InstanceOptions, LogSource, RangeError, RangeQuery,
    ServeOptions, SetQuery, SignedHead, Site, SourceError, prove_range, prove_set,
    range::RangeProof, set::SetProof,
};
use peerhost_ids::Key;
use tokio::net::TcpListener;
use tokio::sync::watch;

use peerhost_node::Node;

use crate::error::HttpError;

/// How to run the HTTP gateway.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Bind here.
    pub addr: Option<SocketAddr>,
    /// Serve this directory at `/` (an instance's bootstrap page).
    pub page: Option<PathBuf>,
    /// Register with these instances.
    pub register: Vec<String>,
    /// Our base URL (default `http://<bound address>`).
    pub public_url: Option<String>,
    /// How often to check peers (instance) and to report (mirror).
    pub interval: Option<Duration>,
    /// An instance accepts (and connects to) peers on loopback and private networks
    /// (`--allow-private-peers`; LANs, tests): by default it refuses them.
    pub allow_private_peers: bool,
    /// Serve HTTPS with this certificate chain and key (PEM files; `--tls-cert`,
    /// `--tls-key`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Answer STUN binding requests on this UDP address (`--stun`); an instance lists it as
    /// its ICE server.
    pub stun: Option<SocketAddr>,
    /// More ICE servers an instance lists (`--ice-server`): `stun:HOST:PORT`,
    /// `turn:USER:PASSWORD@HOST:PORT`.
    pub ice_servers: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`,
    /// `trusted_proxies`: addresses or `ADDRESS/LENGTH` networks); none by default.
    pub trusted_proxies: Vec<String>,
}

/// The logs the node's replicator holds, as a log source for the services the daemon
/// starts (the HTTP gateway; any transport serving `peerhost-gateway`'s API): each call
/// reads one core under the node's lock. Files of app logs by hash come from a
/// [`BlobIndex`] the daemon keeps current (`blobs.rs`).
#[derive(Debug, Clone)]
pub struct NodeSource {
    node: Node,
    blobs: Arc<BlobIndex>,
}

impl NodeSource {
    /// The logs `node` holds (no file served by hash).
    pub fn new(node: Node) -> Self {
        Self {
            node,
            blobs: Arc::default(),
        }
    }

    /// Serving files by hash from `blobs`.
    pub fn blobs(mut self, blobs: Arc<BlobIndex>) -> Self {
        self.blobs = blobs;
        self
    }
}

impl LogSource for NodeSource {
    fn keys(&self, limit: usize) -> Result<Vec<Key>, SourceError> {
        let keys: BTreeSet<Key> = self.node.with(|r| {
            let dkeys: Vec<_> = r.discovery_keys().copied().collect();
            dkeys
                .iter()
                .filter_map(|d| r.core(d).map(peerhost_store::Core::key))
                .collect()
        });
        Ok(keys.into_iter().take(limit).collect())
    }

    fn head(&self, key: &Key) -> Result<Option<SignedHead>, SourceError> {
        let dkey = key.discovery_key();
        Ok(self.node.with(|r| r.core(&dkey).map(SignedHead::of)))
    }

    fn range(&self, key: &Key, query: &RangeQuery) -> Result<RangeProof, RangeError> {
        let dkey = key.discovery_key();
        self.node.with(|r| match r.core_mut(&dkey) {
            Some(core) => prove_range(core, query),
            None => Err(RangeError::UnknownLog),
        })
    }

    fn set(&self, key: &Key, query: &SetQuery) -> Result<SetProof, RangeError> {
        let dkey = key.discovery_key();
        self.node.with(|r| match r.core_mut(&dkey) {
            Some(core) => prove_set(core, query),
            None => Err(RangeError::UnknownLog),
        })
    }

    fn blob(&self, sha256: &Sha256, max_bytes: u64) -> Result<Vec<u8>, BlobError> {
        crate::blobs::read_blob(&self.node, &self.blobs, sha256, max_bytes)
    }

    /// Without waiting (the gateway calls it on the runtime for every head and cached range):
    /// `None` while the node is busy, and the gateway then reads the head the slow way.
    fn version(&self, key: &Key) -> Option<HeadVersion> {
        let dkey = key.discovery_key();
        self.node
            .try_peek(|r| r.core(&dkey).map(HeadVersion::of))
            .flatten()
    }
}

/// The running gateway.
#[derive(Debug)]
pub(crate) struct Http {
    pub(crate) addr: SocketAddr,
    pub(crate) url: String,
    pub(crate) counters: Arc<Counters>,
    pub(crate) instance: Option<Arc<Instance>>,
    pub(crate) register: Vec<String>,
    pub(crate) tls: bool,
}

/// Bind and start serving; `instance` says whether to act as one.
pub(crate) async fn start(
    source: NodeSource,
    options: &HttpOptions,
    addr: SocketAddr,
    instance: bool,
    ice: Vec<IceServer>,
    stop: &watch::Sender<bool>,
) -> Result<Http, HttpError> {
    let acceptor = match &options.tls {
        Some((cert, key)) => Some(peerhost_gateway::tls::acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| HttpError::Listen { addr, source })?;
    let node = &source.node;
    let url = options
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| {
            let scheme = if acceptor.is_some() { "https" } else { "http" };
            format!("{scheme}://{addr}")
        });
    if addr.ip().is_unspecified() && options.public_url.is_none() && !options.register.is_empty() {
        tracing::warn!(
            "registering {url} with instances: bound to a wildcard address, give --public-url \
             (or `public_url`) so that instances and readers can reach this gateway"
        );
    }
    let site = match &options.page {
        Some(dir) => Some(Site::load(dir).map_err(|e| HttpError::Page(e.to_string()))?),
        None => None,
    };
    let interval = options.interval.unwrap_or(Duration::from_secs(5));
    let instance = (instance || site.is_some()).then(|| {
        Arc::new(
            Instance::new(
                site,
                InstanceOptions::default()
                    .check_every(interval)
                    .allow_private_peers(options.allow_private_peers),
            )
            .ice_servers(ice),
        )
    });
    let counters = Arc::new(Counters::default());
    let kp = node.key_pair().clone();
    let source = Arc::new(source);
    // Our gateway answers instances' challenges with the node key our registrations are
    // signed with.
    let trusted = TrustedProxies::parse(&options.trusted_proxies)?;
    let mut config = Config::default()
        .counters(counters.clone())
        .identity(kp.clone())
        .trusted_proxies(trusted);
    if let Some(i) = &instance {
        config = config.instance(i.clone());
    }
    let mut rx = stop.subscribe();
    let s = source.clone();
    tokio::spawn(async move {
        let shutdown = async move { crate::stopped(&mut rx).await };
        let options = ServeOptions::default();
        let served = match acceptor {
            Some(a) => peerhost_gateway::serve_tls(listener, a, s, config, options, shutdown).await,
            None => peerhost_gateway::serve(listener, s, config, options, shutdown).await,
        };
        if let Err(e) = served {
            tracing::warn!("HTTP gateway stopped: {e}");
        }
    });
    if let Some(i) = &instance {
        let mut rx = stop.subscribe();
        let i = i.clone();
        tokio::spawn(async move {
            peerhost_gateway::run_checks(i, source, async move {
                crate::stopped(&mut rx).await;
            })
            .await;
        });
    }
    if !options.register.is_empty() {
        let mut rx = stop.subscribe();
        let (instances, own, c) = (options.register.clone(), url.clone(), counters.clone());
        tokio::spawn(async move {
            peerhost_gateway::run_reporter(instances, own, c, kp, interval, async move {
                crate::stopped(&mut rx).await;
            })
            .await;
        });
    }
    tracing::info!(%addr, %url, instance = instance.is_some(), "HTTP gateway");
    Ok(Http {
        addr,
        url,
        counters,
        instance,
        register: options.register.clone(),
        tls: options.tls.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerhost_ids::KeyPair;
    use peerhost_node::Config as NodeConfig;
    use peerhost_store::{CreateOptions, Durability, Options, Store};

    /// The gateway drops cached ranges of an old fork and serves cached heads by this version:
    /// the daemon's source must tell it, without waiting on a busy node.
    #[tokio::test]
    async fn the_version_follows_the_log_and_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            dir.path(),
            Options::default().durability(Durability::Process),
        )
        .unwrap();
        let mut core = store.create("w", CreateOptions::default()).unwrap();
        core.append(&[b"one".to_vec(), b"two".to_vec()]).unwrap();
        let key = core.key();
        let node = Node::new(KeyPair::generate(), NodeConfig::default());
        let dkey = node.with(|r| r.add_core(core, false, std::time::Instant::now()));
        let source = NodeSource::new(node.clone());

        let v = source.version(&key).expect("an idle node answers");
        assert_eq!(v, source.head(&key).unwrap().unwrap().version());
        assert_eq!(v.length, 2);
        assert_eq!(source.version(&Key(KeyPair::generate().public_key())), None);

        // While a writer holds the node, the answer is "don't know", at once.
        node.with(|_| assert_eq!(source.version(&key), None));

        node.with(|r| r.core_mut(&dkey).unwrap().truncate(1).unwrap());
        let after = source.version(&key).unwrap();
        assert_eq!((after.fork, after.length), (1, 1));
        assert_ne!(after, v);
    }
}
