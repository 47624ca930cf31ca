//! Hypercore replication, sans-IO: the `hypercore/alpha` protomux channel of hypercore 11
//! (`lib/replicator.js`), for many logs over many connections.
//!
//! This crate owns:
//! - the channel's ten messages and its open handshake, byte for byte as
//!   `lib/messages.js` `wire.*` ([`messages`]), and the replication capability;
//! - the per-peer state of a channel (the remote's head, which blocks it has, requests in flight)
//!   and the answers to its requests, mirroring `lib/replicator.js`;
//! - one [`Replicator`] for many logs and many connections: protomux pairing the way corestore
//!   does it (a channel is opened for a log we download; a remote open is answered for a log we
//!   hold and rejected otherwise, so a peer learns nothing about logs it did not name), and a
//!   scheduler that spreads requests over the peers that have the blocks, bounds what is in
//!   flight, moves timed-out requests to other peers, and drops peers that send invalid data.
//!
//! It does not own sockets, clocks or tasks: decrypted stream messages and `Instant`s go in,
//! frames and events come out (the drain contract is on [`Replicator`]). The secret stream below
//! it is `peerhost-noise`, the driver around it `peerhost-node`. Logs are read and written
//! through `peerhost_store::Core` (blocking file I/O).
//!
//! `protocol/replication.md` is the prose specification: the message table, the flow, pairing,
//! scheduling, the bounds and where we deliberately differ from JS.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod error;
mod inflight;
pub mod messages;
mod rangeset;
mod replicator;

pub use error::{CommandError, Error};
pub use messages::{Message, MessageError, capability};
pub use replicator::{Config, ConnId, ConnectionInfo, Event, Replicator, WANT_BATCH};

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
