//! What the daemon tracks: each log's role (writer, mirror, follow, serve) and which part of
//! which community it is; each community's latest descriptor. Plain data, owned by the actor.

use std::collections::{HashMap, HashSet};

use peerhost_feed::Descriptor;
pub use peerhost_feed::community::{Community, Part};
use peerhost_ids::{DiscoveryKey, Key};

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
    pub(crate) fn rank(self) -> u8 {
        match self {
            Self::Writer => 3,
            Self::Mirror => 2,
            Self::Follow => 1,
            Self::Serve => 0,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Writer => "writer",
            Self::Mirror => "mirror",
            Self::Follow => "follow",
            Self::Serve => "serve",
        }
    }
}

/// One log the daemon holds.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub(crate) key: Key,
    pub(crate) role: Role,
    pub(crate) community: Option<(Key, Part)>,
}

/// How a community is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Mirror,
    Follow,
}

/// One community the daemon tracks.
#[derive(Debug)]
pub(crate) struct CommunityEntry {
    pub(crate) mode: Mode,
    /// The descriptor log's length when we last read it.
    pub(crate) read_at: u64,
    pub(crate) descriptor: Option<Descriptor>,
}

/// Everything tracked.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    pub(crate) logs: HashMap<DiscoveryKey, LogEntry>,
    pub(crate) communities: HashMap<Key, CommunityEntry>,
    /// Mirrored keys that are not (yet known to be) communities.
    pub(crate) mirrors: HashSet<Key>,
    /// The descriptor logs to re-read when they grow: every community's, and every mirrored
    /// key's (it may turn out to be a community once its first blocks arrive).
    pub(crate) descriptor_logs: HashMap<DiscoveryKey, Key>,
}

impl Tracked {
    /// Name `key`'s parts (as `desc` lists them) on the logs held.
    pub(crate) fn tag_parts(&mut self, key: Key, desc: &Descriptor) {
        if let Some(e) = self.logs.get_mut(&key.discovery_key()) {
            e.community = Some((key, Part::Descriptor));
        }
        for part in Part::NAMED {
            if let Some(k) = part.key_in(desc) {
                if let Some(e) = self.logs.get_mut(&k.discovery_key()) {
                    e.community = Some((key, part));
                }
            }
        }
    }

    /// What to re-read when `dkey` grows: a community key and how it is tracked.
    pub(crate) fn community_of(&self, dkey: &DiscoveryKey) -> Option<(Key, Mode)> {
        let key = *self.descriptor_logs.get(dkey)?;
        let mode = match self.communities.get(&key) {
            Some(c) => c.mode,
            None => Mode::Mirror,
        };
        Some((key, mode))
    }
}
