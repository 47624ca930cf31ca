//! `peerhost serve`, `follow` and `mirror`: replicate logs and communities with Holepunch
//! peers (JS hypercore 11 / corestore 7 / hyperswarm 4, or another peerhost), found on the
//! HyperDHT or given as `--peer tcp://HOST:PORT`.
//!
//! The work is `peerhost_daemon`'s; here the commands become a runtime, a daemon, and
//! what a person reads.

use crate::term::safe;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use peerhost_daemon::{
    Community, Daemon, DhtOptions, FileConfig, Followed, HttpOptions, LivePost, Network, Options,
    Range, parse_key,
};
use peerhost_feed::read::PostView;
use peerhost_feed::time::format_rfc3339;
use peerhost_ids::Key;
use peerhost_swarm::BootstrapNode;
use serde_json::json;

/// How long `follow` waits for peers and blocks before giving up (default).
const SYNC_TIMEOUT: u64 = 60;

/// Where peers are found: shared by every networked command.
#[derive(Debug, Clone, Args)]
pub(crate) struct DhtArgs {
    /// DHT bootstrap nodes [default: the public HyperDHT nodes; with --peer, no DHT]
    #[arg(
        long,
        value_delimiter = ',',
        env = "PEERHOST_BOOTSTRAP",
        value_name = "HOST:PORT,…"
    )]
    bootstrap: Vec<String>,
    /// Do not use the DHT at all (TCP peers only).
    #[arg(long)]
    no_dht: bool,
    /// Blind relays (public keys) to connect through when no hole can be punched (both NATs
    /// randomize), besides `relays` in the config and those found on the DHT.
    #[arg(
        long = "relay",
        value_delimiter = ',',
        env = "PEERHOST_RELAYS",
        value_name = "KEY,…"
    )]
    relays: Vec<String>,
    /// Run a blind relay on our DHT node and announce it, so that peerhost nodes behind
    /// randomizing NATs can connect through us (useful on a host with a public address).
    #[arg(long)]
    offer_relay: bool,
}

impl DhtArgs {
    /// The network to use; `explicit_peers`: TCP peers were given (then the DHT is used only
    /// if bootstrap nodes were given too).
    pub(crate) fn network(
        &self,
        explicit_peers: bool,
        file: &FileConfig,
    ) -> anyhow::Result<Network> {
        let names = if self.bootstrap.is_empty() {
            &file.bootstrap
        } else {
            &self.bootstrap
        };
        if self.no_dht || (explicit_peers && names.is_empty()) {
            return Ok(Network::Off);
        }
        let bootstrap = if names.is_empty() {
            peerhost_swarm::public_bootstrap()
        } else {
            parse_bootstrap(names)?
        };
        let relays = self
            .relays
            .iter()
            .map(|k| parse_key(k).map(|k| k.0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Network::Dht(
            DhtOptions::new(bootstrap)
                .with_relays(relays)
                .with_offer_relay(self.offer_relay),
        ))
    }
}

/// Bootstrap nodes as given (`HOST:PORT` or `IP@HOST:PORT`); they are resolved when the DHT
/// starts, and one that does not resolve is an error naming it.
pub(crate) fn parse_bootstrap(names: &[String]) -> anyhow::Result<Vec<BootstrapNode>> {
    names
        .iter()
        .map(|n| {
            n.parse()
                .with_context(|| format!("the bootstrap node {n:?}"))
        })
        .collect()
}

/// The HTTP gateway for browsers (`protocol/gateway.md`): shared by `serve` and `mirror`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HttpArgs {
    /// Serve the HTTP gateway for browsers on this address (port 0: any free port); its URL
    /// (`http://ADDR`) is printed on stdout, after the TCP address if any.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Register with this instance (base URL; repeat for several). With --http: our HTTP
    /// gateway, reporting what it served every few seconds. Without: a WebRTC home peer,
    /// which browsers reach through the instance's signaling, with no port opened and no
    /// certificate (works behind NAT).
    #[arg(long, value_name = "URL")]
    register: Vec<String>,
    /// Our gateway's URL as instances and readers reach it [default: http://<bound address>].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Seconds between health checks of registered peers (instance) and between reports
    /// (mirror).
    #[arg(long, value_name = "SECS", default_value_t = 3, hide = true)]
    http_interval: u64,
    /// An instance: accept peer gateways on loopback and private networks (LANs, tests); by
    /// default only public addresses are registered and checked.
    #[arg(long)]
    allow_private_peers: bool,
}

impl HttpArgs {
    fn options(&self, page: Option<PathBuf>) -> HttpOptions {
        let mut o = HttpOptions::default();
        o.addr = self.http;
        o.page = page;
        o.register.clone_from(&self.register);
        o.public_url.clone_from(&self.public_url);
        o.interval = Some(Duration::from_secs(self.http_interval.max(1)));
        o.allow_private_peers = self.allow_private_peers;
        o
    }
}

/// Print the bound addresses on stdout: TCP first (one line), then the HTTP URL, then the
/// STUN server (`stun:ADDR`).
fn print_addresses(daemon: &Daemon) {
    if let Some(addr) = daemon.tcp_addr() {
        println!("{addr}");
    }
    if let Some(url) = daemon.http_addr().and(daemon.http_base()) {
        println!("{url}");
    }
    if let Some(addr) = daemon.stun_addr() {
        println!("stun:{addr}");
    }
    let _ = std::io::stdout().flush();
}

/// `peerhost serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Also accept TCP connections on this address (port 0: any free port); the bound
    /// address is printed on stdout.
    #[arg(long, value_name = "ADDR")]
    listen_tcp: Option<SocketAddr>,
    /// The config file [default: STORAGE/peerhost.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Do not announce on the DHT (serve only peers that dial us by key or TCP).
    #[arg(long)]
    no_announce: bool,
    #[command(flatten)]
    dht: DhtArgs,
    #[command(flatten)]
    http: HttpArgs,
    /// Serve this directory (the built `web/dist`: `cd web && npm ci && npm run build`) as
    /// the bootstrap page at `/` of the HTTP gateway.
    #[arg(long, value_name = "DIR")]
    bootstrap_page: Option<PathBuf>,
    /// Serve the HTTP gateway over HTTPS with this certificate chain (PEM; with --tls-key).
    /// The page of an https:// instance may fetch nothing over plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Answer STUN binding requests on this UDP address (e.g. 0.0.0.0:3478; port 0: any, printed
    /// as stun:ADDR): an instance lists it to browsers and home peers as its ICE server, so
    /// they learn their public addresses. On a wildcard address its name is --public-url's
    /// host.
    #[arg(long, value_name = "ADDR")]
    stun: Option<SocketAddr>,
    /// Also list this ICE server to browsers and home peers (repeat): stun:HOST:PORT or
    /// turn:USER:PASSWORD@HOST:PORT[?transport=udp|tcp] (config: `ice_servers`).
    #[arg(long = "ice-server", value_name = "URL")]
    ice_servers: Vec<String>,
    /// Behind a reverse proxy: believe `X-Forwarded-For` from this proxy (an address or
    /// ADDRESS/LENGTH network; repeat), so per-client limits count readers, not the proxy.
    /// None by default: from any other peer the header is ignored (config: `trusted_proxies`).
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<String>,
}

/// `peerhost follow`.
#[derive(Debug, Args)]
pub(crate) struct FollowArgs {
    /// The community's or log's key (z-base32, hex or pear://).
    key: String,
    /// A peer to replicate with: tcp://HOST:PORT (repeat for several; requests are spread).
    /// Without one, peers are found on the DHT.
    #[arg(long = "peer", value_name = "tcp://HOST:PORT")]
    peers: Vec<String>,
    #[command(flatten)]
    dht: DhtArgs,
    /// First block to download (a plain log).
    #[arg(long, conflicts_with = "last")]
    start: Option<u64>,
    /// End (exclusive) [default: the log's length when first synced].
    #[arg(long, conflicts_with = "last")]
    end: Option<u64>,
    /// Download only the last N blocks (a community: the latest N posts) [community
    /// default: 20].
    #[arg(long, value_name = "N")]
    last: Option<u64>,
    /// Keep running: follow as it grows (a community: print new posts as they come).
    #[arg(long)]
    live: bool,
    /// Also fetch this file of the community's web app (repeat; verified by SHA-256; read
    /// it back with `peerhost assets get`).
    #[arg(long, value_name = "PATH")]
    asset: Vec<String>,
    /// Print the posts as JSON (an array, newest first).
    #[arg(long)]
    json: bool,
    /// Local name to give the log if it is new here.
    #[arg(long)]
    name: Option<String>,
    /// fsync every downloaded block.
    #[arg(long)]
    sync: bool,
    /// No progress, no INFO log lines, no summary: warnings, errors and what was asked for
    /// (posts, --stats) only.
    #[arg(long, short)]
    quiet: bool,
    /// When done, print one JSON line on stdout: blocks, bytes, milliseconds since start and
    /// this process's peak RSS.
    #[arg(long)]
    stats: bool,
    /// Seconds to wait for peers and blocks.
    #[arg(long, default_value_t = SYNC_TIMEOUT, value_name = "SECS")]
    timeout: u64,
}

/// `peerhost mirror`.
#[derive(Debug, Args)]
pub(crate) struct MirrorArgs {
    /// The community's or log's key (z-base32, hex or pear://).
    key: String,
    /// A peer to replicate with: tcp://HOST:PORT (repeat; reconnects when lost). Without
    /// one, peers are found on the DHT.
    #[arg(long = "peer", value_name = "tcp://HOST:PORT")]
    peers: Vec<String>,
    #[command(flatten)]
    dht: DhtArgs,
    /// Also accept TCP connections (and serve every local log) on this address.
    #[arg(long, value_name = "ADDR")]
    listen_tcp: Option<SocketAddr>,
    /// The config file [default: STORAGE/peerhost.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// fsync every downloaded block.
    #[arg(long)]
    sync: bool,
    /// No progress lines and no INFO log lines: warnings and errors only.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    http: HttpArgs,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_logging("info")
}

/// The runtime, with log lines at `level` and above unless `PEERHOST_LOG` says otherwise.
pub(crate) fn runtime_logging(level: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    init_tracing(level);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEERHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a person at a terminal (and not under NO_COLOR): a log file or a pipe
    // gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

fn parse_peer(s: &str) -> anyhow::Result<SocketAddr> {
    let Some(rest) = s.strip_prefix("tcp://") else {
        bail!("peer {s:?}: expected tcp://HOST:PORT");
    };
    use std::net::ToSocketAddrs;
    rest.to_socket_addrs()
        .with_context(|| format!("peer {s:?}: cannot resolve"))?
        .next()
        .with_context(|| format!("peer {s:?}: no address"))
}

fn parse_peers(peers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    peers.iter().map(|p| parse_peer(p)).collect()
}

/// The config file: `--config FILE` (must exist) or `STORAGE/peerhost.toml` (if it exists).
pub(crate) fn load_config(dir: &Path, path: Option<&Path>) -> anyhow::Result<FileConfig> {
    Ok(match path {
        Some(p) => FileConfig::load(p, false)?,
        None => FileConfig::load(&dir.join(peerhost_daemon::config::FILE_NAME), true)?,
    })
}

fn with_sync(mut file: FileConfig, sync: bool) -> FileConfig {
    if sync {
        file.durability = Some(peerhost_daemon::config::DurabilitySetting::Sync);
    }
    file
}

/// SIGINT and SIGTERM, caught from the moment this is created (so a stop that comes while
/// the daemon starts is not lost to the default action).
pub(crate) struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Start catching them (inside the runtime).
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        {
            let int = async {
                match &mut self.int {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let term = async {
                match &mut self.term {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = int => {}
                () = term => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `peerhost serve`: every local log and the configured mirrors, on one swarm, until SIGINT
/// or SIGTERM.
pub(crate) fn serve(dir: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let file = load_config(dir, args.config.as_deref())?;
    let network = args.dht.network(false, &file)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let mut signals = Signals::new();
        let mut http = args.http.options(args.bootstrap_page.clone());
        http.stun = args.stun;
        http.tls = args.tls_cert.clone().zip(args.tls_key.clone());
        http.ice_servers.clone_from(&args.ice_servers);
        http.trusted_proxies.clone_from(&args.trusted_proxies);
        let mut opts = Options::new(dir, file)
            .with_network(network)
            .with_listen_tcp(args.listen_tcp)
            .with_http(http);
        if args.no_announce {
            opts = opts.with_announce(false);
        }
        let daemon = Daemon::start(opts)
            .await
            .with_context(|| format!("cannot start serving {}", dir.display()))?;
        print_addresses(&daemon);
        let st = daemon.status(true).await;
        tracing::info!(
            logs = st.logs.len(),
            tcp = ?daemon.tcp_addr(),
            http = ?daemon.http_addr(),
            dht_socket = ?daemon.dht_addr(),
            "serving; `peerhost status` shows what moves"
        );
        tokio::select! {
            () = signals.recv() => {}
            () = report_dht(&daemon, !args.no_announce) => {}
        }
        daemon.shutdown(Duration::from_secs(2)).await;
        Ok(())
    })
}

/// `peerhost mirror`: everything of a community or log, kept live and served, until SIGINT
/// or SIGTERM. The key is recorded in the state file: `peerhost serve` keeps mirroring it.
pub(crate) fn mirror(dir: &Path, args: MirrorArgs) -> anyhow::Result<()> {
    let key = parse_key(&args.key)?;
    let peers = parse_peers(&args.peers)?;
    let file = with_sync(load_config(dir, args.config.as_deref())?, args.sync);
    let network = args.dht.network(!peers.is_empty(), &file)?;
    let rt = runtime_logging(if args.quiet { "warn" } else { "info" })?;
    rt.block_on(async move {
        let mut signals = Signals::new();
        let opts = Options::new(dir, file)
            .with_network(network)
            .with_listen_tcp(args.listen_tcp)
            .with_http(args.http.options(None));
        let daemon = Daemon::start(opts)
            .await
            .with_context(|| format!("cannot start mirroring in {}", dir.display()))?;
        print_addresses(&daemon);
        daemon.mirror(key, true).await?;
        for p in peers {
            daemon.add_tcp_peer(p);
        }
        let watch = report_mirror(&daemon, args.quiet);
        tokio::select! {
            () = signals.recv() => {}
            () = watch => {}
        }
        daemon.shutdown(Duration::from_secs(2)).await;
        Ok(())
    })
}

/// Print a line whenever a mirrored log becomes complete at a new length; never returns.
async fn report_mirror(daemon: &Daemon, quiet: bool) {
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if quiet {
            continue;
        }
        let st = daemon.status(true).await;
        for l in st.logs.iter().filter(|l| l.role == "mirror") {
            if l.length > 0 && l.held == l.length && seen.get(&l.key) != Some(&l.length) {
                seen.insert(l.key.clone(), l.length);
                let what = match (&l.community, &l.part) {
                    (Some(_), Some(p)) => format!("{p} log"),
                    _ => "log".into(),
                };
                eprintln!(
                    "mirror: {what} {} complete: {} blocks, {} peers",
                    l.key, l.length, l.peers
                );
            }
        }
        if let Some(q) = st.quota.filter(|q| q.full) {
            if seen.insert("quota".into(), 1).is_none() {
                eprintln!(
                    "error: the disk quota is full ({} of {} bytes): downloads stopped, still \
                     serving",
                    q.used, q.limit
                );
            }
        }
    }
}

/// `peerhost follow`.
pub(crate) fn follow(dir: &Path, args: FollowArgs) -> anyhow::Result<()> {
    let key = parse_key(&args.key)?;
    let peers = parse_peers(&args.peers)?;
    let file = with_sync(FileConfig::default(), args.sync);
    let network = args.dht.network(!peers.is_empty(), &file)?;
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    let rt = runtime_logging(if args.quiet { "warn" } else { "info" })?;
    rt.block_on(async move {
        let mut signals = Signals::new();
        let opts = Options::new(dir, file)
            .with_network(network)
            .with_announce(false)
            .with_write_files(false);
        let daemon = Daemon::start(opts)
            .await
            .with_context(|| format!("cannot open {}", dir.display()))?;
        for p in &peers {
            daemon.add_tcp_peer(*p);
        }
        let range = Range::between(args.start, args.end);
        let range = match args.last {
            Some(n) => Range::last(n),
            None => range,
        };
        let bar = crate::progress::bar(!args.quiet && !args.stats);
        // Ctrl-C or SIGTERM stops the wait for a head or for blocks at once (issue 16): what
        // was verified is stored, so the same command resumes.
        let result = tokio::select! {
            r = daemon.follow(key, range, timeout) => Some(r),
            () = signals.recv() => None,
            () = crate::progress::watch(&daemon, bar.as_ref()) => None,
        };
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        let Some(result) = result else {
            daemon.shutdown(Duration::from_millis(200)).await;
            anyhow::bail!(
                "interrupted: the blocks verified so far are kept; run the same command to resume"
            );
        };
        let followed = match result {
            Ok(f) => f,
            Err(e) => {
                daemon.shutdown(Duration::from_millis(200)).await;
                return Err(e.into());
            }
        };
        if let Some(name) = &args.name {
            daemon.store().set_name(name, &key)?;
        }
        let out = match followed {
            Followed::Log {
                key,
                start,
                end,
                length,
            } => {
                let span = (start, end, length);
                follow_log(&daemon, &args, key, span, started, &mut signals).await
            }
            Followed::Community {
                community,
                posts,
                notes,
            } => {
                for s in &notes.skipped {
                    eprintln!("warning: posts log: skipped {s}");
                }
                follow_community(
                    &daemon,
                    &args,
                    &community,
                    &posts,
                    timeout,
                    started,
                    &mut signals,
                )
                .await
            }
            _ => Ok(()),
        };
        daemon.shutdown(Duration::from_millis(500)).await;
        out
    })
}

async fn follow_log(
    daemon: &Daemon,
    args: &FollowArgs,
    key: Key,
    (start, end, length): (u64, u64, u64),
    started: Instant,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    if args.live {
        daemon.follow_log_live(&key, start)?;
        if !args.quiet {
            eprintln!(
                "following {} live from block {start} (Ctrl-C to stop)",
                key.to_z32()
            );
        }
        let mut last = daemon.length(&key);
        loop {
            let l = tokio::select! {
                () = signals.recv() => break,
                l = daemon.length_changed(&key, last) => l,
            };
            let Some(l) = l else { break };
            if !args.quiet {
                eprintln!("log {}: length {l}", key.to_z32());
            }
            last = l;
        }
    }
    let got = daemon.held_in(&key, start, end);
    if args.stats {
        let stats = daemon.node().log_stats();
        let s = stats.get(&key.discovery_key()).copied().unwrap_or_default();
        println!(
            "{}",
            json!({
                "blocks": got,
                "downloaded": s.downloaded_blocks,
                "bytes": s.downloaded_bytes,
                "ms": started.elapsed().as_millis() as u64,
                "peak_rss": peak_rss(),
            })
        );
    }
    if !args.quiet {
        eprintln!(
            "log {}: blocks {start}..{end} stored and verified ({got} present), length {length}",
            key.to_z32()
        );
    }
    Ok(())
}

async fn follow_community(
    daemon: &Daemon,
    args: &FollowArgs,
    c: &Community,
    posts: &[PostView],
    timeout: Duration,
    started: Instant,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    if !args.stats {
        let mut out = std::io::stdout().lock();
        crate::posts::print_posts(&mut out, &c.descriptor, &c.key, posts, None, args.json)?;
    }
    for path in &args.asset {
        let asset = daemon
            .fetch_asset(c, path, std::io::sink(), timeout)
            .await
            .with_context(|| format!("asset {path}"))?;
        eprintln!(
            "asset {path}: {} bytes in {} blocks, SHA-256 {} verified (read it with `peerhost \
             assets get {} {path}`)",
            asset.size,
            asset.blocks,
            hex::encode(&asset.sha256),
            c.key.to_z32()
        );
    }
    if args.stats {
        let stats = daemon.node().log_stats();
        let (blocks, bytes) = stats.values().fold((0, 0), |(b, n), s| {
            (b + s.downloaded_blocks, n + s.downloaded_bytes)
        });
        println!(
            "{}",
            json!({
                "posts": posts.len(),
                "blocks": blocks,
                "bytes": bytes,
                "ms": started.elapsed().as_millis() as u64,
                "peak_rss": peak_rss(),
                "peers": daemon.node().peers().iter().map(|p| hex::encode(p.remote_public_key)).collect::<Vec<_>>(),
            })
        );
    }
    if !args.live {
        return Ok(());
    }
    let mut new_posts = daemon.follow_live(c)?;
    if !args.quiet {
        eprintln!("following {} live (Ctrl-C to stop)", c.key.to_z32());
    }
    loop {
        let item = tokio::select! {
            () = signals.recv() => return Ok(()),
            item = new_posts.next() => item,
        };
        match item {
            Some(LivePost::Post { index, post }) => {
                if args.json {
                    let v = json!({"index": index, "id": post.id, "title": post.title, "body": post.body});
                    println!("{v}");
                } else {
                    println!(
                        "{}  {}",
                        format_rfc3339(post.published_us),
                        safe(&post.title)
                    );
                }
            }
            Some(LivePost::Skipped { index, reason }) => {
                eprintln!(
                    "warning: posts log: skipped block {index}: {}",
                    safe(&reason.to_string())
                );
            }
            // The daemon stopped.
            Some(_) | None => return Ok(()),
        }
    }
}

/// This process's peak resident set size in bytes (Linux `VmHWM`; 0 elsewhere).
pub(crate) fn peak_rss() -> u64 {
    proc_status_kb("VmHWM:") * 1024
}

fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Say once whether the DHT's bootstrap found nodes (issue 16: offline, `serve` claimed to be
/// on the DHT); never returns.
async fn report_dht(daemon: &Daemon, announce: bool) {
    match daemon.dht_bootstrapped().await {
        Some(0) => tracing::warn!(
            "not on the DHT: no bootstrap node answered (offline, or UDP blocked?), so peers \
             cannot find us there; peers that dial our TCP address still can. Check the \
             network or --bootstrap and restart; `peerhost status` shows the nodes known"
        ),
        Some(nodes) => tracing::info!(
            nodes,
            "on the DHT{}",
            if announce { ", announcing" } else { "" }
        ),
        None => {}
    }
    std::future::pending::<()>().await;
}
