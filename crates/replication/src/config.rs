//! [`Config`]: the replicator's limits and knobs, and what the driver tells it about a
//! connection ([`ConnectionInfo`]).

use std::time::Duration;

/// Blocks per `want` batch (lib/wants.js `BATCH` in its compat mode: 65536 words of 32 bits).
pub const WANT_BATCH: u64 = 1 << 21;

/// The largest block one `data` message can carry: a secret-stream message holds at most
/// 2^24 − 1 − 17 bytes (uint24 length, 17-byte tag); 128 KiB of that is kept for the proof,
/// the protomux header and the small answers batched before it (`protocol/log.md`, "How large
/// a block can be").
pub const MAX_BLOCK_LEN: usize = (1 << 24) - 1 - 17 - (128 << 10);

/// Limits and knobs. The defaults follow JS where JS has a number, and are documented bounds
/// where it has none.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Requests in flight per peer and log (JS: `min(512, 16 * 3)` = 48 over TCP): the least
    /// window, whatever the block size.
    pub max_inflight: usize,
    /// Bytes of blocks in flight per peer and log that the window may grow to for small blocks
    /// (the log's average block size sets how many requests that is; default 2 MiB), up to
    /// [`Config::max_inflight_blocks`]. 48 requests of 1 KiB blocks keep too little in flight to
    /// fill a fast link; of 64 KiB blocks, enough. It also bounds what a JS peer answers in
    /// one protomux batch (it batches the requests it has queued).
    pub max_inflight_bytes: u64,
    /// The most requests in flight per peer and log however small the blocks (JS's
    /// `inflightRange` upper bound, 512).
    pub max_inflight_blocks: usize,
    /// A request unanswered for this long is cancelled and asked of another peer.
    pub request_timeout: Duration,
    /// Timed-out requests a connection may accumulate before it is dropped as too slow.
    pub max_timeouts: u32,
    /// Requests from a peer waiting for our answer; one more ends the connection. Reading
    /// stops well before (see `pause_pending_requests`); this bounds what one read may add.
    pub max_pending_requests: usize,
    /// Our requests in flight on one connection, all its logs together. A mirror of a thousand
    /// logs would otherwise have a window per log out at once (tens of thousands of requests),
    /// more than a serving peer queues: ours ends such a connection past
    /// `max_pending_requests`.
    pub max_requests_per_connection: usize,
    /// Above this many waiting requests [`crate::Replicator::wants_input`] says stop reading.
    pub pause_pending_requests: usize,
    /// Invalid requests tolerated per connection (JS `MAX_INVALID_REQUESTS` = 64).
    pub max_invalid_requests: u32,
    /// The largest payload of the small messages (sync, request, cancel, noData, want, unwant,
    /// range); honest ones are under 100 bytes.
    pub max_message_len: usize,
    /// The most words of a `bitfield` message (JS sends at most 65536: one 2^21-bit segment).
    pub max_bitfield_words: usize,
    /// Runs of blocks remembered per peer and log (see `RangeSet`).
    pub max_remote_runs: usize,
    /// End the connection on a message type past the ten hypercore defines (JS ignores them).
    pub strict_message_types: bool,
    /// Hash every block we serve against its leaf before sending it (default on): a block
    /// damaged on our disk is then answered with `noData` and reported as a
    /// [`crate::Event::StorageError`] instead of being sent for the peer to refuse. Off saves a
    /// BLAKE2b pass per block served (see `peerhost_store::Core::proof_with`).
    pub verify_uploads: bool,
    /// The largest block we send (default [`MAX_BLOCK_LEN`]): a request for a larger one is
    /// answered `noData`, not counted as served, and logged as a warning. JS
    /// would try and fail the whole connection ("Message is too large for an atomic write").
    pub max_block_len: usize,
    /// Bytes of verified blocks per log held in memory until their commit is done: past this
    /// no more blocks of the log are requested until the driver has committed them (see
    /// [`Replicator::poll_commit`](crate::Replicator::poll_commit)).
    pub max_uncommitted_bytes: u64,
    /// Limits of the protomux layer.
    pub mux: peerhost_protomux::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_inflight: 48,
            max_inflight_bytes: 2 << 20,
            max_inflight_blocks: 512,
            request_timeout: Duration::from_secs(20),
            max_timeouts: 8,
            max_pending_requests: 32768,
            max_requests_per_connection: 2048,
            pause_pending_requests: 2048,
            max_invalid_requests: 64,
            max_message_len: 4096,
            max_bitfield_words: 1 << 17,
            max_remote_runs: 4096,
            strict_message_types: true,
            verify_uploads: true,
            max_uncommitted_bytes: 8 << 20,
            max_block_len: MAX_BLOCK_LEN,
            mux: peerhost_protomux::Config::default(),
        }
    }
}

/// What the driver knows about a connection once its secret stream is established.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// Whether we initiated the secret-stream handshake.
    pub is_initiator: bool,
    /// The 64-byte handshake hash (the capability binds to it).
    pub handshake_hash: [u8; 64],
    /// The remote's static public key.
    pub remote_public_key: [u8; 32],
}
