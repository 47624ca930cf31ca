//! The daemon's errors, one type per operation: each variant's message is one line that says
//! what is wrong and, where the reader can act, what to do.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;

/// A key given as text that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a key: {message}")]
#[non_exhaustive]
pub struct KeyError {
    /// What was given.
    pub text: String,
    /// Why it is not a key.
    pub message: String,
}

/// Why [`crate::Daemon::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store cannot be opened (locked by another process, unreadable, corrupt).
    #[error(transparent)]
    Store(#[from] peerhost_store::Error),
    /// A file the daemon keeps (state, identity) cannot be read or written.
    #[error("{}: {source} (fix its permissions, or move it away to start afresh)", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP listener cannot be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another program using it? pick another address)"
    )]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key in the config (mirrors, relays) does not parse.
    #[error("peerhost.toml: {0}")]
    Key(#[from] KeyError),
    /// The swarm (the DHT node) could not start: its sockets cannot be bound.
    #[error("the DHT could not start: {0}")]
    Swarm(#[source] peerhost_swarm::Error),
    /// The HTTP gateway could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A log to mirror or serve could not be opened.
    #[error(transparent)]
    Track(#[from] TrackError),
}

/// Why the HTTP gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A bootstrap page or `--public-url` without an address to serve on.
    #[error("a bootstrap page or --public-url needs --http ADDR (or `http` in the config)")]
    NoAddress,
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] peerhost_gateway::tls::TlsError),
    /// A `--trusted-proxy` (`trusted_proxies` entry) is not a network.
    #[error("--trusted-proxy (trusted_proxies): {0}")]
    TrustedProxy(#[from] peerhost_gateway::forwarded::CidrError),
    /// Only one of the TLS certificate and key was given.
    #[error("--tls-cert and --tls-key (tls_cert, tls_key) go together")]
    TlsPair,
    /// The STUN server cannot be bound.
    #[error(
        "cannot answer STUN on {addr}: {source} (is another program using it? pick another \
         --stun address)"
    )]
    Stun {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `--stun` on a wildcard address, with no name browsers could reach it by.
    #[error(
        "--stun {0} is a wildcard address: give --public-url (its host is then the STUN \
         server's) or bind --stun to the public address"
    )]
    StunHost(SocketAddr),
    /// An `--ice-server` (or `ice_servers` entry) is not one.
    #[error("the ICE server {url:?}: {reason}")]
    IceServer {
        /// As given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificates of `PEERHOST_EXTRA_CA_CERTS` cannot be read.
    #[error(
        "PEERHOST_EXTRA_CA_CERTS: {0} (it names a PEM file of CA certificates to trust for \
         https:// instances; unset it or fix the file)"
    )]
    ExtraCa(peerhost_gateway::tls::TlsError),
    /// A WebRTC home peer could not start (`--register` without `--http`).
    #[error("WebRTC: {0}")]
    Webrtc(#[from] peerhost_webrtc::home::HomeError),
    /// The listener cannot be bound.
    #[error(
        "cannot listen for HTTP on {addr}: {source} (is another program using it? pick another \
         --http address)"
    )]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bootstrap page's directory cannot be loaded.
    #[error("the bootstrap page: {0}")]
    Page(String),
}

/// Why a log could not be tracked (mirrored, followed or served).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The store failed to open or create the log.
    #[error(transparent)]
    Store(#[from] peerhost_store::Error),
    /// The log failed.
    #[error(transparent)]
    Core(#[from] peerhost_store::CoreError),
    /// The replicator refused the download.
    #[error(transparent)]
    Command(#[from] peerhost_replication::CommandError),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    Closed,
}

/// Why a reader procedure ([`crate::Daemon::follow`], [`crate::Daemon::open_community`],
/// [`crate::Daemon::latest_posts`], [`crate::Daemon::fetch_asset`]) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The log could not be opened here.
    #[error(transparent)]
    Track(#[from] TrackError),
    /// The replicator refused the download.
    #[error(transparent)]
    Command(#[from] peerhost_replication::CommandError),
    /// Nothing happened in time.
    #[error(
        "{what}: nothing within {secs} s {}",
        if *connected == 0 {
            "and no peer found (check the key, and that a peer serving it is online)".to_owned()
        } else {
            format!(
                "from the {connected} connected peer(s) (they may not hold it, or it is slow to \
                 come: check the key and the range, or raise --timeout)"
            )
        }
    )]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        secs: u64,
        /// Peers connected when it ended.
        connected: usize,
    },
    /// Nothing happened in time, and no peer could be reached: the dials' failures say why.
    #[error(
        "{what}: no peer reached within {secs} s: {failures}; start `peerhost serve \
         --listen-tcp ADDR` on that host, or check the address"
    )]
    Unreachable {
        /// What we waited for.
        what: String,
        /// How long.
        secs: u64,
        /// `tcp://ADDR: cause` of each failing peer.
        failures: String,
    },
    /// A block to download is larger than one replication message can carry: no peer can
    /// send it (`protocol/log.md`, "How large a block can be").
    #[error(
        "block {index} of {key} is {bytes} bytes, more than one replication message carries \
         ({limit} bytes): no peer can send it; `--end {index}` takes the blocks before it, and \
         its writer should split it (`log append` refuses blocks above 15 MiB)"
    )]
    BlockTooLarge {
        /// The log (z-base32).
        key: String,
        /// The block.
        index: u64,
        /// Its size, from the log's tree.
        bytes: u64,
        /// The largest block a peer sends.
        limit: u64,
    },
    /// The key names a log that holds no community descriptor.
    #[error("log {key} is not a community (its first block is not a descriptor)")]
    NotACommunity {
        /// The key (z-base32).
        key: String,
    },
    /// The community lacks the log asked for.
    #[error("community {key} has no {part} log")]
    NoSuchPart {
        /// The community (z-base32).
        key: String,
        /// `posts`, `comments` or `assets`.
        part: &'static str,
    },
    /// No file at this path in the community's web app.
    #[error("community {key} has no asset {path:?} (see `peerhost community assets ls`)")]
    NoSuchAsset {
        /// The community.
        key: String,
        /// The path asked for.
        path: String,
    },
    /// Reading the community's logs failed.
    #[error(transparent)]
    Read(#[from] peerhost_feed::ReadError),
    /// An asset's content did not check out (size, SHA-256, not chunks).
    #[error(transparent)]
    Asset(#[from] peerhost_feed::assets::AssetError),
    /// The community's index could not answer (a damaged index, or one that disagrees with
    /// the logs: read them instead).
    #[error(transparent)]
    Index(peerhost_feed::index::IndexError),
    /// The disk quota is full: downloads are stopped (serving goes on).
    #[error(
        "the disk quota is full ({used} of {limit} bytes used): downloads stopped, serving goes \
         on; raise `quota` in peerhost.toml and restart to download more"
    )]
    QuotaFull {
        /// Bytes used.
        used: u64,
        /// The quota.
        limit: u64,
    },
    /// The daemon shut down.
    #[error("the daemon is shutting down")]
    Closed,
}

/// Why [`crate::Daemon::append`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The log is not held here.
    #[error("log {key} is not in this store (see `peerhost log list`)")]
    NotHeld {
        /// The key (z-base32).
        key: String,
    },
    /// We hold the log but not its secret key.
    #[error("log {key} is read-only here (no secret key)")]
    ReadOnly {
        /// The key (z-base32).
        key: String,
    },
    /// The replicator refused the append (storage failed).
    #[error(transparent)]
    Command(#[from] peerhost_replication::CommandError),
}
