//! The reader procedures: one-shot, sparse downloads of what a reader needs ([`Daemon::follow`],
//! [`Daemon::latest_posts`], [`Daemon::fetch_asset`]), driven by the readers of
//! `peerhost-feed`, and the live stream of new posts ([`Daemon::new_posts`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use peerhost_feed::Blocks as _;
use peerhost_feed::index::{self, IndexError, View, Which};
use peerhost_feed::read::{self, PostView};
use peerhost_feed::{Asset, Entry, Kind, Notes, Post};
use peerhost_ids::{DiscoveryKey, Key};
use peerhost_node::Node;
use peerhost_replication::{Event, Replicator};
use peerhost_store::Core;
use tokio::sync::{broadcast, watch};

use crate::Daemon;
use crate::actor::Command;
use crate::error::FollowError;
use crate::tracking::{Community, Part, Role};

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
    /// First block (default 0). Giving `start` or `end` says the log is a plain one (no
    /// community probe).
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

/// How many missing blocks [`too_large_missing`] looks at, at most.
const TOO_LARGE_SCAN: usize = 4096;

/// A block of `start..end` still missing whose size, known here from the tree (a root, or the
/// leaf its sibling's proof brought), is more than one replication message can carry
/// ([`peerhost_replication::MAX_BLOCK_LEN`]): no peer can send it, so waiting longer does not
/// help (issue 16). Looks at the first [`TOO_LARGE_SCAN`] missing blocks only.
fn too_large_missing(core: &mut Core, start: u64, end: u64) -> Option<FollowError> {
    let limit = peerhost_replication::MAX_BLOCK_LEN as u64;
    let mut at = start;
    for _ in 0..TOO_LARGE_SCAN {
        let index = core.next_missing(at, end).ok().flatten()?;
        let leaf = 2 * index;
        let root = core.tree().roots().iter().find(|n| n.index == leaf);
        let size = match root {
            Some(n) => Some(n.size),
            None => peerhost_store::NodeSource::node(core.nodes(), leaf)
                .ok()
                .flatten()
                .map(|n| n.size),
        };
        if let Some(bytes) = size.filter(|&s| s > limit) {
            return Some(FollowError::BlockTooLarge {
                key: core.key().to_z32(),
                index,
                bytes,
                limit,
            });
        }
        at = index + 1;
    }
    None
}

impl Daemon {
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Replicator) -> bool,
    ) -> Result<(), FollowError> {
        let deadline = Instant::now() + timeout;
        let node = &self.ctx.node;
        loop {
            // Created before the check, so a change in between still wakes us.
            let changed = node.changed();
            if node.with(&mut f) {
                return Ok(());
            }
            if node.is_closed() {
                return Err(FollowError::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let connected = node.peers().len();
                // No connection and a dial failing: that is why, not a missing block.
                if let Some(failures) = self.ctx.dials.describe().filter(|_| connected == 0) {
                    return Err(FollowError::Unreachable {
                        what: what.into(),
                        secs: timeout.as_secs(),
                        failures,
                    });
                }
                return Err(FollowError::Timeout {
                    what: what.into(),
                    secs: timeout.as_secs(),
                    connected,
                });
            }
            let _ = tokio::time::timeout(left, changed).await;
        }
    }

    async fn quota_full_error(&self) -> FollowError {
        let (used, limit) = self
            .ask(|reply| Command::Quota { reply })
            .await
            .flatten()
            .unwrap_or((0, 0));
        FollowError::QuotaFull { used, limit }
    }

    /// Track `key` with `role` (the actor opens it and joins its topic).
    async fn ensure_log(
        &self,
        key: Key,
        role: Role,
        community: Option<(Key, Part)>,
    ) -> Result<DiscoveryKey, FollowError> {
        Ok(self
            .track(|reply| Command::Track {
                key,
                role,
                community,
                reply,
            })
            .await?)
    }

    /// Download `start..end` of `dkey` and wait until it is stored (and verified).
    async fn fetch(
        &self,
        dkey: DiscoveryKey,
        start: u64,
        end: u64,
        timeout: Duration,
        what: &str,
    ) -> Result<(), FollowError> {
        if start >= end {
            return Ok(());
        }
        let node = &self.ctx.node;
        if node.download_budget_exhausted() {
            return Err(self.quota_full_error().await);
        }
        let now = Instant::now();
        node.with(|r| r.download(&dkey, start, Some(end), now))?;
        let r = self
            .wait_for(what, timeout, |r| {
                r.core_mut(&dkey)
                    .is_some_and(|c| matches!(c.next_missing(start, end), Ok(None)))
            })
            .await;
        match r {
            Err(FollowError::Timeout { .. }) if node.download_budget_exhausted() => {
                Err(self.quota_full_error().await)
            }
            // A block no peer can send is why, when its size is known here (issue 16).
            Err(e @ FollowError::Timeout { .. }) => Err(node
                .with(|r| {
                    r.core_mut(&dkey)
                        .and_then(|c| too_large_missing(c, start, end))
                })
                .unwrap_or(e)),
            r => r,
        }
    }

    /// Wait until a peer told us the log's head (JS `core.update()`); its length.
    async fn sync(
        &self,
        dkey: DiscoveryKey,
        timeout: Duration,
        what: &str,
    ) -> Result<u64, FollowError> {
        self.wait_for(what, timeout, |r| r.is_synced(&dkey)).await?;
        Ok(self
            .ctx
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
    ) -> Result<Followed, FollowError> {
        let dkey = self.ensure_log(key, Role::Follow, None).await?;
        let z = key.to_z32();
        let length = self
            .sync(dkey, timeout, &format!("the head of {z}"))
            .await?;
        // The last block says what it is: every entry of a descriptor log is a descriptor.
        // (Not block 0, which a sparse follow of a plain log should not download.) A range
        // given by `start`/`end` is a plain log's: its last block is not downloaded, so that
        // blocks before one no peer can send (issue 16: a block too large to replicate)
        // still come.
        let plain = range.start.is_some() || range.end.is_some();
        if length > 0 && !plain {
            self.fetch(
                dkey,
                length - 1,
                length,
                timeout,
                &format!("the last block of {z}"),
            )
            .await?;
        }
        let is_community = length > 0
            && !plain
            && self
                .block(&key, length - 1)
                .and_then(|b| Entry::decode(&b).ok())
                .is_some_and(|e| matches!(e.kind(), Some(Kind::Descriptor(_))));
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
    ) -> Result<Community, FollowError> {
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
        let descriptor = self
            .track(|reply| Command::Community { key, reply })
            .await?
            .ok_or(FollowError::NotACommunity { key: z })?;
        Ok(Community::new(key, descriptor))
    }

    /// Open one of a community's logs here (following it) and learn its head.
    async fn open_part(
        &self,
        c: &Community,
        part: Part,
        timeout: Duration,
    ) -> Result<(DiscoveryKey, u64), FollowError> {
        let key = c.part(part).ok_or(FollowError::NoSuchPart {
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
    ) -> Result<(Vec<PostView>, Notes), FollowError> {
        let (dkey, length) = self.open_part(c, Part::Posts, timeout).await?;
        let mut window = (n as u64).max(1);
        loop {
            let start = length.saturating_sub(window);
            self.fetch(dkey, start, length, timeout, "the latest posts")
                .await?;
            let (posts, notes) = self
                .ctx
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

    /// Run `op` over a community's index log (a [`View`] of it) and its posts and comments
    /// logs as held here, fetching each block it stops on (verified, from peers) and running it
    /// again, until it answers: only the index nodes and the blocks a page or a thread needs
    /// are downloaded. The index's answers are checked against the logs by `op`
    /// (`peerhost_feed::index::page`, `thread`); a lagging index is completed from the logs
    /// (`View::absorb`).
    pub async fn read_index<T>(
        &self,
        c: &Community,
        timeout: Duration,
        mut op: impl FnMut(&mut View<Held<'_>>, &mut Held<'_>, &mut Held<'_>) -> Result<T, IndexError>,
    ) -> Result<T, FollowError> {
        let (index, _) = self.open_part(c, Part::Index, timeout).await?;
        let (posts, _) = self.open_part(c, Part::Posts, timeout).await?;
        let (comments, _) = self.open_part(c, Part::Comments, timeout).await?;
        let node = &self.ctx.node;
        loop {
            let r = {
                let mut view = View::new(Held { node, dkey: index });
                op(
                    &mut view,
                    &mut Held { node, dkey: posts },
                    &mut Held {
                        node,
                        dkey: comments,
                    },
                )
            };
            match r {
                Ok(v) => return Ok(v),
                Err(IndexError::Missing { log, index: i }) => {
                    let (dkey, what) = match log {
                        Which::Posts => (posts, "a posts block"),
                        Which::Comments => (comments, "a comments block"),
                        _ => (index, "an index block"),
                    };
                    self.fetch(dkey, i, i + 1, timeout, what).await?;
                }
                Err(IndexError::Read(e)) => return Err(e.into()),
                Err(e) => return Err(FollowError::Index(e)),
            }
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
    ) -> Result<Asset, FollowError> {
        let (dkey, length) = self.open_part(c, Part::Assets, timeout).await?;
        let mut window = 1u64;
        let index = loop {
            let start = length.saturating_sub(window);
            self.fetch(dkey, start, length, timeout, "the asset index")
                .await?;
            let (found, notes) = self
                .ctx
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
            .ok_or_else(|| FollowError::NoSuchAsset {
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
        self.ctx.node.with(|r| match r.core_mut(&dkey) {
            Some(core) => peerhost_feed::assets::read_content(core, &asset, out)
                .map(|_| ())
                .map_err(FollowError::from),
            None => Err(FollowError::Closed),
        })?;
        Ok(asset)
    }

    /// Keep following a community's posts as they are published: new blocks are fetched as
    /// the head grows, and the returned stream yields each new post once it is stored and
    /// verified. Call after [`Daemon::follow`].
    pub fn follow_live(&self, c: &Community) -> Result<NewPosts, FollowError> {
        let now = Instant::now();
        let dd = c.key.discovery_key();
        let posts = c.part(Part::Posts).map(|k| k.discovery_key());
        // Subscribed before the downloads start, so no block is missed.
        let events = self.ctx.node.subscribe();
        let next = self.ctx.node.with(|r| -> Result<u64, FollowError> {
            r.set_live(&dd, true, now);
            let l = r.core(&dd).map_or(0, Core::length);
            r.download(&dd, l, None, now)?;
            let Some(p) = posts else { return Ok(0) };
            r.set_live(&p, true, now);
            let l = r.core(&p).map_or(0, Core::length);
            r.download(&p, l, None, now)?;
            Ok(l)
        })?;
        Ok(NewPosts {
            node: self.ctx.node.clone(),
            posts,
            next,
            events,
            stop: self.ctx.stop.subscribe(),
            ready: VecDeque::new(),
        })
    }

    /// Wait until the length of `key` held here differs from `last`; the new length, or
    /// `None` once the daemon stops.
    pub async fn length_changed(&self, key: &Key, last: u64) -> Option<u64> {
        // Subscribed before the check, so a change in between still wakes us.
        let mut events = self.ctx.node.subscribe();
        let mut stop = self.ctx.stop.subscribe();
        loop {
            let length = self.length(key);
            if length != last {
                return Some(length);
            }
            tokio::select! {
                // Any event may be the one (a lagged receiver re-checks too).
                ev = events.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = ev {
                        return None;
                    }
                }
                () = crate::stopped(&mut stop) => return None,
            }
        }
    }

    /// Keep a plain log live: fetch every block appended from `start` on.
    pub fn follow_log_live(&self, key: &Key, start: u64) -> Result<(), FollowError> {
        let now = Instant::now();
        let dkey = key.discovery_key();
        self.ctx.node.with(|r| {
            r.set_live(&dkey, true, now);
            r.download(&dkey, start, None, now)
        })?;
        Ok(())
    }
}

/// A new block of a community's posts log, as [`NewPosts`] yields it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LivePost {
    /// A new post.
    Post {
        /// Its block.
        index: u64,
        /// The post.
        post: Box<Post>,
    },
    /// A block that is not an entry (skipped, as every reader skips it).
    Skipped {
        /// Its block.
        index: u64,
        /// Why.
        reason: String,
    },
}

/// The posts of a followed community as they arrive ([`Daemon::follow_live`]): woken by the
/// node's events for the posts log, in log order, each block once.
#[derive(Debug)]
pub struct NewPosts {
    node: Node,
    posts: Option<DiscoveryKey>,
    next: u64,
    events: broadcast::Receiver<Event>,
    stop: watch::Receiver<bool>,
    ready: VecDeque<LivePost>,
}

/// Blocks read per wake-up at most (the rest wait for the next call).
const LIVE_BATCH: u64 = 256;

impl NewPosts {
    /// The next new post (or skipped block); `None` once the daemon stops.
    pub async fn next(&mut self) -> Option<LivePost> {
        let dkey = self.posts?;
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Some(p);
            }
            self.read_held(&dkey);
            if !self.ready.is_empty() {
                continue;
            }
            loop {
                tokio::select! {
                    ev = self.events.recv() => match ev {
                        Ok(Event::Downloaded { discovery_key, .. } | Event::Head { discovery_key, .. })
                            if discovery_key == dkey => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    () = crate::stopped(&mut self.stop) => return None,
                }
            }
        }
    }

    /// Decode the blocks held from `next` on (in order, up to the first one missing).
    fn read_held(&mut self, dkey: &DiscoveryKey) {
        let start = self.next;
        let blocks: Vec<(u64, Vec<u8>)> = self.node.with(|r| {
            let Some(core) = r.core_mut(dkey) else {
                return Vec::new();
            };
            let end = core.length().min(start.saturating_add(LIVE_BATCH));
            (start..end)
                .map_while(|i| core.get(i).ok().flatten().map(|b| (i, b)))
                .collect()
        });
        for (index, block) in blocks {
            self.next = index + 1;
            match Entry::decode(&block) {
                Ok(e) => {
                    if let Some(Kind::Post(post)) = e.into_kind() {
                        self.ready.push_back(LivePost::Post {
                            index,
                            post: Box::new(post),
                        });
                    }
                }
                Err(e) => self.ready.push_back(LivePost::Skipped {
                    index,
                    reason: e.to_string(),
                }),
            }
        }
    }
}

impl Daemon {
    /// Bring the index log of every community this daemon writes up to its posts and comments
    /// logs (issue 13): an index lags when an import stopped midway, or when blocks reached
    /// those logs while no index writer ran. Called when the daemon starts, before its control
    /// socket opens (so no command writes the index meanwhile). Bounded: `index::catch_up`
    /// appends one Hyperbee batch per [`peerhost_feed::index::CHUNK`] log blocks, each with
    /// the position it reached, holding the node only for one block at a time; resumable:
    /// interrupted, the next start goes on from the last batch written.
    pub(crate) async fn catch_up_indexes(&self) {
        let communities = self
            .ask(|reply| Command::Published { reply })
            .await
            .unwrap_or_default();
        for c in communities {
            let Ok(key) = Key::parse(&c.key) else {
                continue;
            };
            let d = self.clone();
            match tokio::task::spawn_blocking(move || d.catch_up_index(key)).await {
                Ok(Ok(Some(caught))) if caught.blocks > 0 => tracing::info!(
                    community = %c.name,
                    "index caught up: {} log blocks indexed in {} batches",
                    caught.blocks,
                    caught.batches
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(
                    community = %c.name,
                    "the index was not brought up to date ({e}); readers use the logs \
                     meanwhile: rebuild it with `peerhost community reindex {}`",
                    c.name
                ),
                Err(e) => tracing::warn!(community = %c.name, "indexing failed: {e}"),
            }
        }
    }

    /// [`Daemon::catch_up_indexes`] for the community `key`: `None` when it has no index
    /// log, or one not writable here.
    fn catch_up_index(&self, key: Key) -> Result<Option<index::Caught>, IndexError> {
        let node = &self.ctx.node;
        let dkey = key.discovery_key();
        let found = node.with(|r| r.core_mut(&dkey).map(read::descriptor));
        let Some(Ok((Some((_, entry)), _))) = found else {
            return Ok(None);
        };
        let Some(d) = read::as_descriptor(&entry) else {
            return Ok(None);
        };
        let (Some(ix), Some(posts)) = (Part::Index.key_in(d), Part::Posts.key_in(d)) else {
            return Ok(None);
        };
        let writable = node.with(|r| r.core(&ix.discovery_key()).map(Core::writable));
        if writable != Some(true) {
            return Ok(None);
        }
        let log = IndexLog {
            daemon: self,
            key: ix,
            held: Held {
                node,
                dkey: ix.discovery_key(),
            },
        };
        let mut posts = Held {
            node,
            dkey: posts.discovery_key(),
        };
        // No comments log: one of length 0 (a key held nowhere).
        let mut comments = Held {
            node,
            dkey: Part::Comments
                .key_in(d)
                .map_or(DiscoveryKey([0; 32]), |k| k.discovery_key()),
        };
        index::catch_up(log, &mut posts, &mut comments, |_, _| {}).map(Some)
    }
}

/// A community's index log as [`Daemon::catch_up_indexes`] writes it: read like any held
/// log, appended through [`Daemon::append`] (its peers hear of each batch at once).
struct IndexLog<'a> {
    daemon: &'a Daemon,
    key: Key,
    held: Held<'a>,
}

/// Why [`IndexLog`] failed.
#[derive(Debug, thiserror::Error)]
enum IndexLogError {
    #[error(transparent)]
    Read(#[from] peerhost_store::CoreError),
    #[error(transparent)]
    Append(#[from] crate::error::AppendError),
}

impl peerhost_feed::Blocks for IndexLog<'_> {
    type Error = IndexLogError;

    fn length(&self) -> u64 {
        peerhost_feed::Blocks::length(&self.held)
    }

    fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.held.block(index)?)
    }
}

impl peerhost_feed::AppendBlocks for IndexLog<'_> {
    fn append_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<u64, Self::Error> {
        Ok(self.daemon.append(&self.key, blocks)?)
    }
}

/// A log of the node as [`Daemon::read_index`] reads it: a block not held is `None`.
#[derive(Debug)]
pub struct Held<'a> {
    node: &'a Node,
    dkey: DiscoveryKey,
}

impl peerhost_feed::Blocks for Held<'_> {
    type Error = peerhost_store::CoreError;

    fn length(&self) -> u64 {
        self.node
            .with(|r| r.core(&self.dkey).map_or(0, Core::length))
    }

    fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, Self::Error> {
        let dkey = self.dkey;
        self.node.with(|r| match r.core_mut(&dkey) {
            Some(core) => {
                if core.has(index)? {
                    core.get(index)
                } else {
                    Ok(None)
                }
            }
            None => Ok(None),
        })
    }
}
