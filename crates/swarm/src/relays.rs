//! Blind relays found and offered on the DHT (ours: hyperswarm has no such topic; its
//! `relayThrough` option takes a fixed list).
//!
//! Two peers behind NATs that both randomize their ports cannot punch a hole; HyperDHT then
//! connects them through a blind relay, one from [`peerhost_hyperdht::Config::relays`] (the
//! configured ones) or added later with `Dht::add_relays`. This module adds relays that other
//! peerhost nodes offer:
//!
//! - **find**: look [`relay_topic`] up at start and then every [`RELAY_LOOKUP_EVERY`] (from
//!   5 s, doubling, while it finds none); add the relays found to the DHT's fallback list, and
//!   when that list grew, look every client topic up again at once
//!   ([`Swarm::lookup_again`]): dials that failed for want of a relay are tried again now
//!   rather than at their next refresh;
//! - **offer**: run a blind relay on our DHT node (`Dht::serve_relay`, its own key pair) and
//!   announce it under [`relay_topic`] every [`ANNOUNCE_EVERY`] (records live 20 min);
//!   [`Relays::close`] takes the record down.
//!
//! One task does both; it is owned by the [`Relays`] handle and ends when the handle is
//! closed or dropped, or when the swarm is destroyed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerhost_hyperdht::AnnounceOptions;
use peerhost_ids::KeyPair;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Swarm;

/// How often the relay topic is looked up again once it found relays (sooner while it finds
/// none: from 5 s, doubling).
pub const RELAY_LOOKUP_EVERY: Duration = Duration::from_secs(10 * 60);
/// How often an offered relay is announced again.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);

/// The DHT topic peerhost nodes that offer a blind relay announce it under (the record's
/// public key is the relay's).
pub fn relay_topic() -> [u8; 32] {
    peerhost_hyperdht::crypto::hash(b"peerhost/blind-relays/v1")
}

/// What [`Relays::start`] does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Look [`relay_topic`] up and fall back to the relays found.
    pub find: bool,
    /// Run a blind relay on our DHT node and announce it (useful on a host with a public
    /// address).
    pub offer: bool,
}

impl RelayOptions {
    /// Find relays, and offer one if `offer`.
    pub fn new(find: bool, offer: bool) -> Self {
        Self { find, offer }
    }
}

/// The relay finder and offerer of one swarm (see the module docs).
#[derive(Debug)]
pub struct Relays {
    offered: Arc<Mutex<Option<[u8; 32]>>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Relays {
    /// Start finding and/or offering relays on `swarm`'s DHT node.
    pub fn start(swarm: &Swarm, options: RelayOptions) -> Self {
        let offered = Arc::new(Mutex::new(None));
        let (stop, _) = watch::channel(false);
        let task = (options.find || options.offer).then(|| {
            let (swarm, offered) = (swarm.clone(), offered.clone());
            let (mut stopped, on_stop) = (stop.subscribe(), stop.subscribe());
            tokio::spawn(async move {
                let find = async {
                    if options.find {
                        tokio::select! {
                            () = find(&swarm, &offered) => {}
                            _ = stopped.wait_for(|s| *s) => {}
                        };
                    }
                };
                let offer = async {
                    if options.offer {
                        offer(&swarm, &offered, on_stop).await;
                    }
                };
                tokio::join!(find, offer);
            })
        });
        Self {
            offered,
            stop,
            task,
        }
    }

    /// The public key of the relay we offer, once it is announced.
    pub fn offered(&self) -> Option<[u8; 32]> {
        *lock(&self.offered)
    }

    /// Stop: take our relay's record down (for at most 2 s) and end the task.
    pub async fn close(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Look the relay topic up now and then; add the relays found to the fallback list.
async fn find(swarm: &Swarm, offered: &Mutex<Option<[u8; 32]>>) {
    let dht = swarm.dht();
    dht.bootstrapped().await;
    let mut delay = Duration::from_secs(5);
    loop {
        let own = *lock(offered);
        let found: Vec<[u8; 32]> = match dht.lookup(relay_topic()).await {
            Ok(replies) => replies
                .iter()
                .flat_map(|r| r.peers.iter().map(|p| p.public_key))
                .filter(|k| Some(*k) != own)
                .collect(),
            Err(e) => {
                tracing::debug!("relay lookup failed: {e}");
                Vec::new()
            }
        };
        let before = dht.relays().len();
        dht.add_relays(found.iter().copied());
        let after = dht.relays().len();
        if after > before {
            tracing::info!(relays = after, "found blind relays on the DHT");
            if swarm.lookup_again().await.is_err() {
                return;
            }
        }
        let wait = if found.is_empty() {
            let d = delay;
            delay = (delay * 2).min(RELAY_LOOKUP_EVERY);
            d
        } else {
            RELAY_LOOKUP_EVERY
        };
        tokio::time::sleep(wait).await;
    }
}

/// Run a blind relay on our DHT node and keep it announced under the relay topic until
/// `stop`; then take the record down.
async fn offer(swarm: &Swarm, offered: &Mutex<Option<[u8; 32]>>, mut stop: watch::Receiver<bool>) {
    let dht = swarm.dht();
    dht.bootstrapped().await;
    let key_pair = KeyPair::generate();
    let relay = match dht.serve_relay(&key_pair).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot offer a blind relay: {e}");
            return;
        }
    };
    if dht.info().await.is_some_and(|i| i.firewalled) {
        tracing::warn!(
            "offering a blind relay, but our DHT node looks firewalled: peers may not reach it"
        );
    }
    tracing::info!(key = %hex(&key_pair.public_key()), "offering a blind relay");
    loop {
        let announced = dht
            .announce(
                relay_topic(),
                &key_pair,
                Vec::new(),
                AnnounceOptions::default(),
            )
            .await;
        let wait = match announced {
            Ok(_) => {
                // Offered once others can find it.
                *lock(offered) = Some(key_pair.public_key());
                ANNOUNCE_EVERY
            }
            Err(e) => {
                tracing::debug!("cannot announce our relay: {e}");
                Duration::from_secs(5)
            }
        };
        let stopped = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            r = stop.wait_for(|s| *s) => r.is_ok(),
        };
        if stopped {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                dht.unannounce(relay_topic(), &key_pair),
            )
            .await;
            drop(relay);
            return;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
