//! [`Event`]: what the replicator reports to the driver, and the bounded queue it waits in.

use std::collections::VecDeque;

use peerhost_ids::DiscoveryKey;

use crate::ConnId;

/// The longest event queue kept if the driver does not drain it (oldest dropped).
const MAX_EVENTS: usize = 1 << 16;

/// What happened, drained with [`crate::Replicator::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A channel opened and the remote proved it knows the key.
    ChannelOpened {
        /// The connection.
        conn: ConnId,
        /// The log.
        discovery_key: DiscoveryKey,
    },
    /// A channel closed (by either side, or with its connection).
    ChannelClosed {
        /// The connection.
        conn: ConnId,
        /// The log.
        discovery_key: DiscoveryKey,
    },
    /// A verified block was stored, durably (its commit is done): from now on it is served
    /// and announced.
    Downloaded {
        /// The log.
        discovery_key: DiscoveryKey,
        /// Block index.
        index: u64,
        /// Its length.
        bytes: u64,
    },
    /// We answered a request with a block.
    Uploaded {
        /// The log.
        discovery_key: DiscoveryKey,
        /// Block index.
        index: u64,
        /// Its length.
        bytes: u64,
    },
    /// The log's signed head changed: a verified upgrade (once committed), an append, a
    /// truncate or a reorg.
    Head {
        /// The log.
        discovery_key: DiscoveryKey,
        /// The new length.
        length: u64,
        /// The new fork.
        fork: u64,
    },
    /// The replicator ended a connection: see [`crate::Replicator::connection_error`]. Close the
    /// transport.
    ConnectionFailed {
        /// The connection.
        conn: ConnId,
    },
    /// Our own storage failed while replicating a log (not the peer's fault).
    StorageError {
        /// The log.
        discovery_key: DiscoveryKey,
        /// The error, rendered.
        message: String,
    },
}

/// Events not drained yet, oldest first, at most [`MAX_EVENTS`].
#[derive(Debug, Default)]
pub(crate) struct Events {
    queue: VecDeque<Event>,
}

impl Events {
    pub(crate) fn push(&mut self, e: Event) {
        if self.queue.len() >= MAX_EVENTS {
            self.queue.pop_front();
        }
        self.queue.push_back(e);
    }

    /// Push unless the queue is full (for events that are only counted: never drop an older,
    /// rarer one for them).
    pub(crate) fn push_if_room(&mut self, e: Event) {
        if self.queue.len() < MAX_EVENTS {
            self.queue.push_back(e);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.queue.pop_front()
    }
}
