//! Hypercore replication, sans-IO: the `hypercore/alpha` protomux channel of hypercore 11
//! (`lib/replicator.js`), for many logs over many connections.
//!
//! This crate owns:
//! - the channel's ten messages and its open handshake, byte for byte as
//!   `lib/messages.js` `wire.*` ([`messages`]), and the replication capability;
//! - the per-peer state of a channel (the remote's head, which blocks it has, requests in
//!   flight) and the answers to its requests, mirroring `lib/replicator.js`;
//! - one [`Replicator`] for many logs and many connections: protomux pairing the way corestore
//!   does it (a channel is opened for a log we download; a remote open is answered for a log we
//!   hold and rejected otherwise, so a peer learns nothing about logs it did not name), and a
//!   scheduler that spreads requests over the peers that have the blocks, bounds what is in
//!   flight, moves timed-out requests to other peers, and drops peers that send invalid data;
//! - the [`LogStore`] contract it reads and extends logs through, implemented for the disk
//!   store (`peerhost_store::Core`) and for a log in memory ([`MemoryLog`]).
//!
//! It does not own sockets, clocks, tasks or file writes: decrypted stream messages and
//! `Instant`s go in; frames, events and [`Commit`]s (verified data for the driver to make
//! durable outside its lock) come out — the drain contract is on [`Replicator`]. The secret
//! stream below it is `peerhost-noise`, the driver around it `peerhost-node`.
//!
//! Inside, the replicator is a composition of small state machines, each in its own file:
//!
//! | module | owns |
//! |---|---|
//! | `replicator/` | the public API and the glue: dispatch of what connections send (`input.rs`), commits (`commits.rs`) |
//! | `view.rs` | a log's committed state plus what is verified and not committed; verification |
//! | `download.rs` | a log's wanted ranges and our requests in flight |
//! | `scheduler.rs` | which requests a log needs now, to which peer |
//! | `peer.rs` | one channel's knowledge of the remote (head, blocks, wants) |
//! | `conn.rs` | one connection: protomux, channels, counters; the set of connections |
//! | `serve.rs` | the remote's requests waiting on a connection, and our answers |
//! | `pairing.rs` | opening, accepting, rejecting channels; the capability check |
//! | `announce.rs` | what we tell peers: syncs, ranges, head changes |
//! | `store/` | the [`LogStore`] trait; its disk and memory implementations |
//!
//! `protocol/replication.md` is the prose specification: the message table, the flow, pairing,
//! scheduling, commits, the bounds and where we deliberately differ from JS.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod announce;
mod config;
mod conn;
mod download;
mod error;
mod event;
mod inflight;
pub mod messages;
mod pairing;
mod peer;
mod rangeset;
mod replicator;
mod runs;
mod scheduler;
mod serve;
mod store;
mod view;

pub use config::{Config, ConnectionInfo, MAX_BLOCK_LEN, WANT_BATCH};
pub use error::{CommandError, Error};
pub use event::Event;
pub use messages::{Message, MessageError, capability};
pub use replicator::{Commit, ConnId, Replicator};
pub use store::{CommitJob, LogStore, MemoryCommit, MemoryLog};

/// Entry points for the fuzz targets in `fuzz/`. Not a stable API.
#[doc(hidden)]
pub mod fuzz {
    /// Decode a channel message of `message_type`; re-encode and decode it again when it
    /// decodes, checking the round trip.
    pub fn message(message_type: u64, payload: &[u8]) {
        if let Ok(m) = crate::Message::decode(message_type, payload) {
            let again = crate::Message::decode(message_type, &m.encode());
            assert_eq!(
                again.ok().as_ref(),
                Some(&m),
                "re-encoding changed the message"
            );
        }
    }
}
