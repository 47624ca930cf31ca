//! The daemon's config file: TOML, `<storage>/peerhost.toml` unless `serve --config PATH`
//! names another. Every key is optional; `protocol/node.md` lists them.
//!
//! ```toml
//! mirrors = ["<community or log key>"]     # kept complete and live, served to others
//! bootstrap = ["node1.hyperdht.org:49737"] # DHT bootstrap nodes (default: the public ones)
//! listen_tcp = "0.0.0.0:7000"               # also accept TCP connections
//! dht_port = 49737                          # UDP port of our DHT server socket (default: any)
//! quota = "10 GB"                           # the store may grow to this; then downloads stop
//! upload_limit = "2 MB"                     # bytes per second sent, all peers together
//! announce = true                           # announce what we serve on the DHT
//! status_interval_ms = 2000                 # how often the status file is rewritten
//! durability = "process"                    # or "sync": fsync every downloaded block
//! http = "0.0.0.0:8080"                     # the HTTP gateway for browsers
//! bootstrap_page = "/srv/peerhost/web/dist" # an instance's bootstrap page (built web/dist)
//! register = ["https://instance.example"]   # instances to register our gateway with
//! public_url = "http://203.0.113.7:8080"    # our gateway's URL as others reach it
//! allow_private_peers = false               # an instance: accept peers on loopback/LANs
//! tls_cert = "/etc/peerhost/cert.pem"       # serve the HTTP gateway over HTTPS (with tls_key)
//! tls_key = "/etc/peerhost/key.pem"
//! stun = "0.0.0.0:3478"                     # an instance: answer STUN binding requests here
//! ice_servers = ["stun:stun.example:3478", "turn:USER:PASSWORD@turn.example:3478"]
//! trusted_proxies = ["127.0.0.1", "10.0.0.0/8"] # reverse proxies whose X-Forwarded-For counts
//! relays = ["<relay key>"]                  # blind relays for when no hole can be punched
//! offer_relay = true                        # run a blind relay and announce it (public hosts)
//! ```

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The file's name inside the storage directory.
pub const FILE_NAME: &str = "peerhost.toml";

/// The public HyperDHT bootstrap nodes (`IP@HOST:PORT`, hyperdht 6 `lib/constants.js`).
pub use peerhost_swarm::hyperdht::bootstrap::PUBLIC_BOOTSTRAP;

/// The config file, as parsed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// Communities or logs to mirror (keys: z-base32, hex or pear://).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// DHT bootstrap nodes, `host:port`; an empty list means the public ones.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Also accept TCP connections here.
    pub listen_tcp: Option<SocketAddr>,
    /// The DHT server socket's UDP port (0 or absent: any).
    pub dht_port: Option<u16>,
    /// The store's disk quota.
    pub quota: Option<Size>,
    /// Bytes per second sent to all peers together.
    pub upload_limit: Option<Size>,
    /// Announce served logs on the DHT (default true).
    pub announce: Option<bool>,
    /// Milliseconds between rewrites of the status file (default 2000).
    pub status_interval_ms: Option<u64>,
    /// `process` (default) or `sync`.
    pub durability: Option<DurabilitySetting>,
    /// Serve the HTTP gateway for browsers here (`protocol/gateway.md`).
    pub http: Option<SocketAddr>,
    /// The bootstrap page's directory (`web/dist` after `npm run build`), served at `/` by an
    /// instance.
    pub bootstrap_page: Option<std::path::PathBuf>,
    /// Instances (base URLs) to register our gateway with and report to.
    #[serde(default)]
    pub register: Vec<String>,
    /// Our gateway's base URL as instances and readers reach it (default
    /// `http://<the bound address>`).
    pub public_url: Option<String>,
    /// An instance accepts (and health-checks) peer gateways on loopback and private networks
    /// (default false: only public addresses; for LANs and tests).
    pub allow_private_peers: Option<bool>,
    /// The gateway's TLS certificate chain (PEM): with `tls_key`, it speaks HTTPS.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The gateway's TLS private key (PEM).
    pub tls_key: Option<std::path::PathBuf>,
    /// Answer STUN binding requests on this UDP address (an instance: listed to browsers and
    /// home peers as its ICE server).
    pub stun: Option<SocketAddr>,
    /// More ICE servers an instance lists for browsers and home peers: `stun:HOST:PORT`,
    /// `turn:USER:PASSWORD@HOST:PORT[?transport=udp|tcp]` (also `stuns:`, `turns:`).
    #[serde(default)]
    pub ice_servers: Vec<String>,
    /// Reverse proxies (addresses or `ADDRESS/LENGTH` networks) whose `X-Forwarded-For` names
    /// the client of a request (`protocol/gateway.md` §4.2); none by default.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Blind relays (public keys: hex, z-base32 or pear://) to connect through when no hole
    /// can be punched, besides those found on the DHT.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Run a blind relay on our DHT node and announce it for other peerhost nodes to find
    /// (default false; useful on a host with a public address).
    pub offer_relay: Option<bool>,
}

/// How hard downloads are pushed to disk (see `peerhost_store::Durability`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DurabilitySetting {
    /// Survive a killed process (the default: a replica can always re-sync).
    #[default]
    Process,
    /// Survive a power cut: fsync every commit.
    Sync,
}

/// A size in bytes: an integer, or a string with a unit (`"500 kB"`, `"10 GB"`, `"1.5 GiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Text(s) => parse_size(&s).map(Self).map_err(serde::de::Error::custom),
        }
    }
}

/// Parse `"10 GB"`, `"1.5GiB"`, `"4096"`, `"64 KiB"`: decimal units (kB, MB, GB, TB: powers
/// of 1000) and binary ones (KiB, MiB, GiB, TiB), case-insensitive, `B` optional.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. \"500 MB\", \"2 GiB\", 4096)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use kB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((n * mult).round() as u64)
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// It could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML, or a key is unknown or has the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (with the line).
        message: String,
    },
}

impl FileConfig {
    /// Read `path`; a file that does not exist is the empty config when `optional`.
    pub fn load(path: &Path, optional: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parse the text of a config file.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10 GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        assert_eq!(parse_size("2mb"), Ok(2_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn full_file() {
        let c = FileConfig::parse(
            r#"
            mirrors = ["abc"]
            bootstrap = ["127.0.0.1:49737"]
            listen_tcp = "127.0.0.1:0"
            quota = "1 MB"
            upload_limit = 65536
            announce = false
            durability = "sync"
            http = "127.0.0.1:8080"
            register = ["http://127.0.0.1:9000"]
            stun = "0.0.0.0:3478"
            ice_servers = ["stun:stun.example:3478"]
            trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
            "#,
        )
        .unwrap();
        assert_eq!(c.mirrors, ["abc"]);
        assert_eq!(c.quota, Some(Size(1_000_000)));
        assert_eq!(c.upload_limit, Some(Size(65536)));
        assert_eq!(c.announce, Some(false));
        assert_eq!(c.durability, Some(DurabilitySetting::Sync));
        assert_eq!(c.http, "127.0.0.1:8080".parse().ok());
        assert_eq!(c.register, ["http://127.0.0.1:9000"]);
        assert_eq!(c.stun, "0.0.0.0:3478".parse().ok());
        assert_eq!(c.ice_servers, ["stun:stun.example:3478"]);
        assert_eq!(c.trusted_proxies, ["127.0.0.1", "10.0.0.0/8"]);
        assert!(FileConfig::parse("quota = \"lots\"").is_err());
        assert!(
            FileConfig::parse("mirros = []")
                .unwrap_err()
                .contains("mirros")
        );
        assert_eq!(FileConfig::parse("").unwrap(), FileConfig::default());
    }
}
