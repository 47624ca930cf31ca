//! The daemon on the DHT: one [`Swarm`] (hyperswarm's topics, one connection per peer,
//! retries, limits), the blind relays it finds and offers ([`Relays`]), and one task that hands
//! every connection the swarm opens to the node.
//!
//! The daemon joins one topic per log (`protocol/node.md`): a community's descriptor log's
//! discovery key is its community topic, announced and looked up, prioritized; a community's
//! other logs are announced only (for JS peers that look one log up); a plain log is looked
//! up when mirrored or followed and announced when served.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peerhost_swarm::hyperdht::driver::BindOptions;
use peerhost_swarm::{
    BootstrapNode, Config, EmptyLookupRetry, JoinOptions, RelayOptions, Relays, Swarm,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use peerhost_node::Node;

use crate::error::StartError;
use crate::state::DhtStatus;

/// Topic refreshes (DHT walks) at once.
const MAX_REFRESHES: usize = 24;
/// Dials at once (hyperswarm: 3). Records of peers that went away stay on the DHT for up to
/// 20 minutes and each dial to one waits out its timeout: with 3 slots a live peer behind a
/// few stale records is reached seconds late.
const MAX_PARALLEL: usize = 16;
/// Topics at most (one per log held).
const MAX_TOPICS: usize = 1 << 16;
/// A lookup that found no one is retried after 1 s, doubling up to 30 s.
const EMPTY_LOOKUP_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// How long closing waits for our records to be taken down (the rest expire).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where the daemon's DHT node binds, whom it asks first, which relays it uses.
#[derive(Debug, Clone)]
pub(crate) struct SwarmOptions {
    pub(crate) bootstrap: Vec<BootstrapNode>,
    pub(crate) bind: BindOptions,
    pub(crate) local_addresses: Vec<std::net::Ipv4Addr>,
    pub(crate) relays: Vec<[u8; 32]>,
    pub(crate) offer_relay: bool,
}

/// The daemon's swarm and what runs beside it.
#[derive(Debug)]
pub(crate) struct Network {
    swarm: Swarm,
    relays: std::sync::Mutex<Option<Relays>>,
    intake: JoinHandle<()>,
    joins: Arc<Joins>,
    joiner: JoinHandle<()>,
}

/// Topics to join, handed to the swarm by one task so that tracking a log never waits for
/// the swarm's actor (busy with the DHT walks of the topics joined before: a mirror of 10,000
/// communities joins 40,000 topics at its start). At most one entry per topic: a second join
/// of a queued topic adds its modes to the first, as a second session would. So the queue
/// holds at most one entry per log tracked.
#[derive(Debug, Default)]
struct Joins {
    queue: std::sync::Mutex<Queue>,
    ready: Notify,
}

/// The topics in the order queued, and what each asks for.
type Queue = (VecDeque<[u8; 32]>, HashMap<[u8; 32], Modes>);

/// What a queued join asks for: announce, look up, priority.
#[derive(Debug, Clone, Copy, Default)]
struct Modes {
    announce: bool,
    lookup: bool,
    priority: bool,
}

impl Joins {
    fn push(&self, topic: [u8; 32], m: Modes) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        let (order, modes) = &mut *q;
        match modes.get_mut(&topic) {
            Some(e) => {
                e.announce |= m.announce;
                e.lookup |= m.lookup;
                e.priority |= m.priority;
            }
            None => {
                modes.insert(topic, m);
                order.push_back(topic);
            }
        }
        drop(q);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<([u8; 32], Modes)> {
        let mut q = self.queue.lock().ok()?;
        let (order, modes) = &mut *q;
        let topic = order.pop_front()?;
        modes.remove(&topic).map(|m| (topic, m))
    }

    /// Hand every queued topic to the swarm, in the order queued.
    async fn run(self: Arc<Self>, swarm: Swarm) {
        loop {
            let Some((topic, m)) = self.pop() else {
                self.ready.notified().await;
                continue;
            };
            let opts = JoinOptions::new(m.announce, m.lookup).with_priority(m.priority);
            if let Err(e) = swarm.join(topic, opts).await {
                tracing::warn!(topic = %crate::hex(&topic[..8]), "cannot join the topic: {e}");
            }
        }
    }
}

impl Network {
    /// Bind the DHT node, start the swarm, listen on the node's key pair, and hand every
    /// connection to `node`. Bootstrapping goes on in the background, so a node without
    /// Internet access still starts (and serves over TCP).
    pub(crate) async fn start(node: Node, opts: SwarmOptions) -> Result<Self, StartError> {
        let mut config = Config::new(node.key_pair().clone())
            .with_bootstrap(opts.bootstrap)
            .with_bind(opts.bind);
        config.dht.relays = opts.relays;
        config.dht.local_addresses = opts.local_addresses;
        config.max_refreshes = MAX_REFRESHES;
        config.max_parallel = MAX_PARALLEL;
        config.max_topics = MAX_TOPICS;
        config.empty_lookup_retry = Some(EmptyLookupRetry::new(
            EMPTY_LOOKUP_RETRY.0,
            EMPTY_LOOKUP_RETRY.1,
        ));
        let (swarm, mut connections) = Swarm::new(config).await.map_err(StartError::Swarm)?;
        let relays = Relays::start(&swarm, RelayOptions::new(true, opts.offer_relay));
        // Peers dial us by key even when we announce nothing (a follower's peers).
        let s = swarm.clone();
        tokio::spawn(async move {
            if let Err(e) = s.listen().await {
                tracing::error!("the DHT is unusable: cannot listen on our key: {e}");
            }
        });
        let intake = tokio::spawn(async move {
            while let Some((conn, _peer)) = connections.next().await {
                let node = node.clone();
                let label = format!("dht:{}", conn.remote_address());
                tracing::info!(
                    peer = %label,
                    key = %crate::hex(&conn.remote_public_key()[..8]),
                    initiator = conn.is_initiator(),
                    "DHT connection"
                );
                tokio::spawn(async move {
                    let _ = node.run_swarm_connection(conn, label).await;
                });
            }
        });
        let joins = Arc::new(Joins::default());
        let joiner = tokio::spawn(joins.clone().run(swarm.clone()));
        Ok(Self {
            swarm,
            relays: std::sync::Mutex::new(Some(relays)),
            intake,
            joins,
            joiner,
        })
    }

    /// Our DHT server socket.
    pub(crate) fn address(&self) -> SocketAddr {
        self.swarm.dht().server_addr()
    }

    /// Take part in `topic`: announce it, look it up, or both; `priority` topics are
    /// refreshed first (community topics). Queued: the swarm joins it soon after.
    pub(crate) fn join(&self, topic: [u8; 32], announce: bool, lookup: bool, priority: bool) {
        if !announce && !lookup {
            return;
        }
        self.joins.push(
            topic,
            Modes {
                announce,
                lookup,
                priority,
            },
        );
    }

    /// Wait for the bootstrap walk to end; the DHT nodes known then (0: none answered).
    pub(crate) async fn bootstrapped(&self) -> usize {
        let dht = self.swarm.dht();
        dht.bootstrapped().await;
        dht.info().await.map_or(0, |i| i.nodes)
    }

    /// What `peerhost status` shows.
    pub(crate) async fn status(&self) -> DhtStatus {
        let dht = self.swarm.dht();
        let st = self.swarm.status().await.unwrap_or_default();
        DhtStatus {
            address: self.address().to_string(),
            nodes: dht.info().await.map_or(0, |i| i.nodes),
            announced: st.announced_topics,
            lookups: st.client_topics,
            relays: dht.relays().len(),
            listening: st.listening,
            offered_relay: self
                .relays
                .lock()
                .ok()
                .and_then(|r| r.as_ref().and_then(Relays::offered))
                .map(|k| crate::hex(&k)),
        }
    }

    /// Stop offering a relay, leave every topic (taking our records down for at most 2 s),
    /// end every DHT connection.
    pub(crate) async fn close(&self) {
        let relays = self.relays.lock().ok().and_then(|mut r| r.take());
        let leave = async {
            if let Some(r) = relays {
                r.close().await;
            }
            self.swarm.destroy().await;
        };
        self.joiner.abort();
        let _ = tokio::time::timeout(CLOSE_GRACE, leave).await;
        self.intake.abort();
    }
}
