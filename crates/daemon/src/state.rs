//! What the daemon keeps across restarts (`<storage>/peerhost-state.json`) and what it tells
//! `peerhost status` while it runs (`<storage>/peerhost-status.json`). Both are JSON, written
//! whole to a temporary file and renamed over the old one, so a reader (or a restart after a
//! kill) sees the previous version or the new one, never a torn file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use peerhost_node::LogStats;

/// The state file's name inside the storage directory.
pub const STATE_FILE: &str = "peerhost-state.json";
/// The status file's name inside the storage directory.
pub const STATUS_FILE: &str = "peerhost-status.json";

/// Blocks and bytes, up and down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counts {
    /// Blocks sent to peers.
    pub uploaded_blocks: u64,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Verified blocks stored.
    pub downloaded_blocks: u64,
    /// Their bytes.
    pub downloaded_bytes: u64,
}

impl Counts {
    /// Add `other`.
    pub fn add(&mut self, other: &Self) {
        self.uploaded_blocks += other.uploaded_blocks;
        self.uploaded_bytes += other.uploaded_bytes;
        self.downloaded_blocks += other.downloaded_blocks;
        self.downloaded_bytes += other.downloaded_bytes;
    }
}

impl From<LogStats> for Counts {
    fn from(s: LogStats) -> Self {
        Self {
            uploaded_blocks: s.uploaded_blocks,
            uploaded_bytes: s.uploaded_bytes,
            downloaded_blocks: s.downloaded_blocks,
            downloaded_bytes: s.downloaded_bytes,
        }
    }
}

/// The state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct State {
    /// Format version, 1.
    pub version: u32,
    /// Keys (hex) mirrored because `peerhost mirror KEY` asked for it (the config file's
    /// `mirrors` are mirrored too, without being recorded here).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Counters of earlier runs, by discovery key (hex).
    #[serde(default)]
    pub totals: BTreeMap<String, Counts>,
    /// How many times the daemon started on this store.
    #[serde(default)]
    pub runs: u64,
}

impl State {
    /// Read the state file of `storage` (missing: empty state).
    pub fn load(storage: &Path) -> std::io::Result<Self> {
        let path = storage.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                version: 1,
                ..Self::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Write it (atomically).
    pub fn save(&self, storage: &Path) -> std::io::Result<()> {
        write_json(&storage.join(STATE_FILE), self)
    }
}

/// What `peerhost status` prints: the status file a running daemon rewrites.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// Format version, 1.
    pub version: u32,
    /// The daemon's process id.
    pub pid: u32,
    /// False once it shut down gracefully (a killed daemon leaves `true`: compare
    /// `updated_ms` with the interval, or check the pid).
    pub running: bool,
    /// When it started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When this file was written.
    pub updated_ms: u64,
    /// Milliseconds between rewrites.
    pub interval_ms: u64,
    /// Our public key (hex), the Noise identity peers see.
    pub public_key: String,
    /// The DHT, when it is on.
    pub dht: Option<DhtStatus>,
    /// The TCP listener, if any.
    pub listen_tcp: Option<String>,
    /// Connections now.
    pub peers: Vec<PeerStatus>,
    /// Every log held, with what moved.
    pub logs: Vec<LogStatus>,
    /// Everything served (uploaded) and downloaded, this run.
    pub session: Counts,
    /// The same over every run on this store.
    pub total: Counts,
    /// The disk quota, if one is set.
    pub quota: Option<QuotaStatus>,
    /// The upload limit in bytes per second, if one is set.
    pub upload_limit: Option<u64>,
    /// The latest problems (newest last, at most 16).
    pub errors: Vec<String>,
    /// The HTTP gateway, if it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStatus>,
    /// The STUN server, if it runs (`serve --stun`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun: Option<StunStatus>,
    /// A home peer's WebRTC registrations, one per instance (`register` without `http`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webrtc: Vec<WebrtcStatus>,
}

/// The STUN server part of [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StunStatus {
    /// The bound UDP address.
    pub address: String,
    /// Its URL as listed to browsers (`stun:HOST:PORT`).
    pub url: String,
    /// Datagrams received.
    pub received: u64,
    /// Binding requests answered.
    pub answered: u64,
    /// Datagrams dropped (not a binding request, malformed).
    pub dropped: u64,
    /// Requests over a client's rate.
    pub limited: u64,
}

/// One WebRTC registration of a home peer in [`Status`]: the signed long-poll to an
/// instance, and what the data channels served.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebrtcStatus {
    /// The instance's base URL.
    pub instance: String,
    /// Whether the last poll reached it.
    pub connected: bool,
    /// Whether it lists us to readers (its last health check of us passed).
    pub listed: bool,
    /// Why not, in the instance's code (`NOT_CHECKED`, `BAD_PROOF`, `TIMEOUT`, …).
    #[serde(default)]
    pub problem: Option<String>,
    /// The last error talking to the instance, in words.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Our UDP socket.
    pub local: String,
    /// Our public addresses as the STUN servers see them.
    #[serde(default)]
    pub public: Vec<String>,
    /// The ICE servers the instance gives browsers (and us).
    #[serde(default)]
    pub ice_servers: Vec<String>,
    /// Browsers' peer connections open now.
    pub connections: usize,
    /// Data channels open now.
    pub channels: usize,
    /// Offers answered this run.
    pub answered: u64,
    /// Offers refused this run.
    pub refused: u64,
    /// Health checks answered this run.
    pub checks: u64,
    /// Requests answered on data channels this run (health checks not counted).
    pub requests: u64,
    /// Body bytes sent on data channels this run (health checks not counted).
    pub bytes_served: u64,
}

/// The HTTP gateway part of [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpStatus {
    /// The bound address.
    pub address: String,
    /// Our gateway's base URL as we register it.
    pub url: String,
    /// Requests answered this run.
    pub requests: u64,
    /// Body bytes sent this run.
    pub bytes_served: u64,
    /// Whether we act as an instance (bootstrap JSON, peer registration).
    pub instance: bool,
    /// Instances we register with.
    #[serde(default)]
    pub registered_with: Vec<String>,
    /// An instance's table of registered peers: health, uptime, what they report serving.
    #[serde(default)]
    pub contributions: Vec<peerhost_gateway::Contribution>,
}

/// The DHT part of [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DhtStatus {
    /// Our DHT server socket.
    pub address: String,
    /// Nodes in the routing table.
    pub nodes: usize,
    /// Topics we announce.
    pub announced: usize,
    /// Topics we look up.
    pub lookups: usize,
    /// Blind relays we would fall back to (configured and found).
    #[serde(default)]
    pub relays: usize,
    /// The key of the blind relay we offer, if any (hex).
    #[serde(default)]
    pub offered_relay: Option<String>,
    /// Whether peers can dial us by key yet (our DHT node is listening).
    #[serde(default)]
    pub listening: bool,
}

/// One connection in [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PeerStatus {
    /// The remote's public key (hex).
    pub public_key: String,
    /// Its address.
    pub address: String,
    /// `tcp` or `dht`.
    pub transport: String,
    /// Whether we dialled.
    pub initiator: bool,
    /// Since when, ms since the Unix epoch.
    pub since_ms: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// One log in [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogStatus {
    /// Its key (z-base32).
    pub key: String,
    /// Its discovery key (hex).
    pub discovery_key: String,
    /// `writer`, `mirror`, `follow` or `serve` (held, served, not downloaded).
    pub role: String,
    /// For a community's log: the community key (z-base32) and which log (`descriptor`,
    /// `posts`, `comments`, `assets`).
    pub community: Option<String>,
    /// Which log of the community it is.
    pub part: Option<String>,
    /// Its length (blocks).
    pub length: u64,
    /// Blocks held here.
    pub held: u64,
    /// Peers with its channel open.
    pub peers: usize,
    /// This run.
    pub session: Counts,
    /// Every run.
    pub total: Counts,
}

/// The quota part of [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuotaStatus {
    /// The quota in bytes.
    pub limit: u64,
    /// Bytes the store uses (on disk when last measured, plus downloads since).
    pub used: u64,
    /// Whether downloads are stopped.
    pub full: bool,
}

impl Status {
    /// Read the status file of `storage`.
    pub fn load(storage: &Path) -> std::io::Result<Self> {
        let path = storage.join(STATUS_FILE);
        let b = std::fs::read(&path)?;
        serde_json::from_slice(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }
}

/// Write `value` as JSON to `path` atomically (temporary file, then rename).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension(format!("json.tmp-{}", std::process::id()));
    // Streamed through a small buffer: the status of a mirror of 40,000 logs is 25 MB of
    // JSON, which a whole-file buffer would add to the process's peak (and its idle RSS, as
    // the allocator keeps what it got).
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(&tmp)?);
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::other)?;
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)
}
