//! The NAT matrix: a log replicated between two peers behind every pair of NAT types, in the
//! lab of `netlab/netlab.sh` (network namespaces; needs root, iproute2, nftables, conntrack).
//!
//! One lab run: a 5-node JS DHT on `ph-boot`, a blind relay on `ph-relay`, then for each stack
//! pairing and each of the 16 cells (router 1's NAT × router 2's NAT): a server in `ph-peer1`
//! writes a log of [`BLOCKS`] blocks and announces it, a client in `ph-peer2` finds it on the
//! DHT, connects (directly, holepunched, or through the relay), downloads every block and
//! checks it. Each peer is a fresh process with fresh keys, and each NAT change flushes the
//! routers' conntrack tables, so cells do not share state.
//!
//! Expected (what hyperswarm 4.17 / hyperdht 6.34 do): direct in every cell but
//! symmetric↔symmetric, which goes through the relay. The test prints the matrix (how each
//! cell connected and how long from the client's start to an open connection) and writes it to
//! `target/netlab/nat-matrix.json` (or `$NAT_MATRIX_OUT`).
//!
//! Skips (passing, with a line saying why) when not root, when `ip netns`, `nft`, `conntrack`
//! or the JS packages are missing, or when `PEERHOST_NETLAB=0`. The lab is torn down at the
//! end even when a cell fails (a guard runs `netlab.sh down`). `NAT_MATRIX_CELLS=port:port,…`
//! restricts the run to some cells (for debugging). `NAT_MATRIX_REPEAT=N` runs every cell N
//! times (fresh keys each time) and reports the median connect time with the range: the
//! benchmark's setting, since a cell with one randomizing NAT is a birthday draw.
//!
//! Run: `cargo test -p peerhost-interop-tests --test nat_matrix -- --nocapture`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Blocks in each cell's log (1 KiB each).
const BLOCKS: usize = 64;
/// Hang guards (not timing assertions).
const READY_GUARD: Duration = Duration::from_secs(40);
const CELL_GUARD: Duration = Duration::from_secs(120);

const NATS: [&str; 4] = ["full", "restricted", "port", "symmetric"];
const BOOT_IPS: &str = "198.51.100.10,198.51.100.11,198.51.100.12,198.51.100.13,198.51.100.14";
const DHT_PORT: u16 = 49737;

fn netlab() -> PathBuf {
    peerhost_interop_tests::dir().join("netlab/netlab.sh")
}

fn bootstrap() -> String {
    BOOT_IPS
        .split(',')
        .map(|ip| format!("{ip}:{DHT_PORT}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn succeeds(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the lab cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if std::env::var("PEERHOST_NETLAB").as_deref() == Ok("0") {
        return Some("PEERHOST_NETLAB=0".into());
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces need root; CI runs as root)".into());
    }
    if !succeeds("ip", &["netns", "list"]) {
        return Some("no `ip netns` (install iproute2)".into());
    }
    for tool in ["nft", "conntrack"] {
        if !succeeds("sh", &["-c", &format!("command -v {tool}")]) {
            return Some(format!("no `{tool}`: run interop-tests/netlab/install.sh"));
        }
    }
    if !peerhost_interop_tests::dir()
        .join("node_modules/hyperswarm")
        .is_dir()
    {
        return Some("JS packages missing: run `cd interop-tests && npm ci`".into());
    }
    None
}

/// Runs `netlab.sh ARGS`, panicking with its output on failure.
fn lab(args: &[&str]) {
    let out = Command::new("bash")
        .arg(netlab())
        .args(args)
        .output()
        .expect("run netlab.sh");
    assert!(
        out.status.success(),
        "netlab.sh {args:?} failed: {}",
        peerhost_interop_tests::describe(&out)
    );
}

/// One lab per machine at a time: namespaces are global. A lock directory holding the
/// owner's pid; a lock whose owner is gone is taken over.
const LOCK: &str = "/run/peerhost-netlab.lock";

struct LabLock;

impl LabLock {
    fn take() -> Self {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if std::fs::create_dir(LOCK).is_ok() {
                let _ = std::fs::write(format!("{LOCK}/pid"), std::process::id().to_string());
                return Self;
            }
            let owner = std::fs::read_to_string(format!("{LOCK}/pid")).unwrap_or_default();
            let alive = !owner.trim().is_empty()
                && std::path::Path::new(&format!("/proc/{}", owner.trim())).exists();
            if !alive {
                // Stale (its owner died), or being created this instant: retry shortly.
                std::thread::sleep(Duration::from_millis(200));
                let again = std::fs::read_to_string(format!("{LOCK}/pid")).unwrap_or_default();
                if again == owner {
                    let _ = std::fs::remove_dir_all(LOCK);
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "the NAT lab stayed busy (pid {owner})"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(LOCK);
    }
}

/// The lab, torn down when dropped (also on panic), then the lock released.
struct Lab {
    _lock: LabLock,
}

impl Lab {
    fn up() -> Self {
        let lock = LabLock::take();
        lab(&["up"]);
        Self { _lock: lock }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(netlab()).arg("down").status();
    }
}

/// A process inside a lab host, printing JSON lines; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

/// The lab's scratch directory: every peer's `TMPDIR` (their stores), removed when the test
/// ends. Peers are killed, not asked to stop, so they cannot clean up after themselves (a JS
/// hypercore store is ~75 MB of preallocated files).
static SCRATCH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

impl Proc {
    fn spawn(host: &str, name: &str, argv: &[String]) -> Self {
        let mut cmd = Command::new("bash");
        if let Some(dir) = SCRATCH.get() {
            cmd.env("TMPDIR", dir);
        }
        let mut child = cmd
            .arg(netlab())
            .arg("exec")
            .arg(host)
            .args(argv)
            .current_dir(peerhost_interop_tests::dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn in lab");
        let stdout = child.stdout.take().expect("piped stdout");
        // Bounded: the reader blocks when the test does not consume.
        let (tx, rx) = sync_channel(256);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.into(),
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The first event (new or already seen) whose `event` is one of `events`; `None` if the
    /// process ended or the guard ran out first.
    fn wait(&mut self, events: &[&str], guard: Duration) -> Option<Value> {
        let matches = |v: &Value| events.iter().any(|e| v["event"] == *e);
        if let Some(v) = self.seen.iter().find(|v| matches(v)) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + guard;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.lines.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if matches(&v) {
                return Some(v);
            }
        }
    }

    fn expect(&mut self, event: &str, guard: Duration) -> Value {
        match self.wait(&[event], guard) {
            Some(v) => v,
            None => panic!("{}: no {event:?} (events: {:?})", self.name, self.seen),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which implementation runs a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    Js,
    Rust,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Self::Js => "JS",
            Self::Rust => "peerhost",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::Js => "js",
            Self::Rust => "rust",
        }
    }
}

fn nat_peer() -> String {
    env!("CARGO_BIN_EXE_nat_peer").to_owned()
}

/// The relays running in the lab, by stack.
struct Relays {
    js_key: String,
    rust_key: String,
}

impl Relays {
    /// The relay a pairing falls back to: the JS relay between JS peers, ours between ours;
    /// across stacks the client's relay is the other stack's, so both relays carry both.
    fn for_pairing(&self, server: Stack, client: Stack) -> &str {
        match (server, client) {
            (Stack::Js, Stack::Js) | (Stack::Rust, Stack::Js) => &self.js_key,
            (Stack::Rust, Stack::Rust) | (Stack::Js, Stack::Rust) => &self.rust_key,
        }
    }
}

fn seed(cell: usize, role: u8) -> String {
    let mut s = [0u8; 32];
    s[0] = role;
    s[1] = cell as u8;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    s[2..18].copy_from_slice(&t.to_le_bytes());
    hex::encode(s)
}

fn server_argv(stack: Stack, seed: &str, relay: &str) -> Vec<String> {
    match stack {
        Stack::Rust => vec![
            nat_peer(),
            "server".into(),
            bootstrap(),
            seed.into(),
            BLOCKS.to_string(),
            relay.into(),
        ],
        Stack::Js => vec![
            "node".into(),
            "netlab/js-node.js".into(),
            "server".into(),
            bootstrap(),
            seed.into(),
            BLOCKS.to_string(),
            relay.into(),
        ],
    }
}

fn client_argv(stack: Stack, server_key: &str, core_key: &str, relay: &str) -> Vec<String> {
    match stack {
        Stack::Rust => vec![
            nat_peer(),
            "client".into(),
            bootstrap(),
            server_key.into(),
            core_key.into(),
            BLOCKS.to_string(),
            relay.into(),
        ],
        Stack::Js => vec![
            "node".into(),
            "netlab/js-node.js".into(),
            "client".into(),
            bootstrap(),
            server_key.into(),
            core_key.into(),
            BLOCKS.to_string(),
            relay.into(),
        ],
    }
}

/// One cell's outcome.
#[derive(Debug, Clone)]
struct Cell {
    server_nat: &'static str,
    client_nat: &'static str,
    /// The client's report (`event: done`), or why the cell failed.
    result: Result<Value, String>,
    /// With `NAT_MATRIX_REPEAT`: every run's connect time (ms), sorted; `result` is the
    /// median run's.
    times: Vec<u64>,
}

impl Cell {
    fn path(&self) -> &str {
        match &self.result {
            Ok(v) => v["path"].as_str().unwrap_or("?"),
            Err(_) => "FAILED",
        }
    }

    fn short(&self) -> String {
        match &self.result {
            Ok(v) if self.times.len() > 1 => format!(
                "{} {} ms (median of {}, {}–{})",
                self.path(),
                v["connectMs"],
                self.times.len(),
                self.times[0],
                self.times[self.times.len() - 1]
            ),
            Ok(v) => format!("{} {} ms", self.path(), v["connectMs"]),
            Err(_) => "FAILED".into(),
        }
    }

    fn expected_path(&self) -> &'static str {
        if self.server_nat == "symmetric" && self.client_nat == "symmetric" {
            "relayed"
        } else {
            "direct"
        }
    }
}

fn run_cell(
    server: Stack,
    client: Stack,
    cell_no: usize,
    (server_nat, client_nat): (&'static str, &'static str),
    relays: &Relays,
    client_host: &str,
) -> Cell {
    lab(&["nat", "nat1", server_nat]);
    if client_host == "peer2" {
        lab(&["nat", "nat2", client_nat]);
    }
    let mut srv = Proc::spawn(
        "peer1",
        "server",
        &server_argv(
            server,
            &seed(cell_no, 1),
            relays.for_pairing(server, client),
        ),
    );
    let result = (|| {
        let ready = srv
            .wait(&["ready", "failed"], READY_GUARD)
            .ok_or_else(|| format!("server never ready: {:?}", srv.seen))?;
        if ready["event"] != "ready" {
            return Err(format!("server failed: {ready}"));
        }
        let server_key = ready["publicKey"].as_str().unwrap_or_default().to_owned();
        let core_key = ready["key"].as_str().unwrap_or_default().to_owned();
        let mut cli = Proc::spawn(
            client_host,
            "client",
            &client_argv(
                client,
                &server_key,
                &core_key,
                relays.for_pairing(server, client),
            ),
        );
        let done = cli
            .wait(&["done", "failed"], CELL_GUARD)
            .ok_or_else(|| format!("client hung or died: {:?}", cli.seen))?;
        if done["event"] != "done" {
            return Err(format!("client failed: {done}"));
        }
        if done["blocks"] != json!(BLOCKS) {
            return Err(format!(
                "client verified the wrong number of blocks: {done}"
            ));
        }
        Ok(done)
    })();
    Cell {
        server_nat,
        client_nat,
        result,
        times: Vec::new(),
    }
}

/// Runs of one cell folded into one: the first off expectation if any, else the median run,
/// with every run's time.
fn fold(mut runs: Vec<Cell>) -> Cell {
    let ms = |c: &Cell| {
        c.result
            .as_ref()
            .ok()
            .and_then(|v| v["connectMs"].as_u64())
            .unwrap_or(u64::MAX)
    };
    if let Some(i) = runs
        .iter()
        .position(|c| c.result.is_err() || c.path() != c.expected_path())
    {
        return runs.swap_remove(i);
    }
    let mut times: Vec<u64> = runs.iter().map(ms).collect();
    times.sort_unstable();
    runs.sort_by_key(ms);
    let mut median = runs.swap_remove((runs.len() - 1) / 2);
    median.times = times;
    median
}

fn repeat() -> usize {
    std::env::var("NAT_MATRIX_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .clamp(1, 50)
}

fn cells() -> Vec<(&'static str, &'static str)> {
    let all: Vec<_> = NATS
        .iter()
        .flat_map(|s| NATS.iter().map(move |c| (*s, *c)))
        .collect();
    match std::env::var("NAT_MATRIX_CELLS") {
        Ok(only) if !only.is_empty() => all
            .into_iter()
            .filter(|(s, c)| only.split(',').any(|w| w == format!("{s}:{c}")))
            .collect(),
        _ => all,
    }
}

fn print_matrix(title: &str, cells: &[Cell]) {
    println!("\n{title}  (rows: server behind router 1; columns: client behind router 2)");
    print!("{:>12}", "");
    for c in NATS {
        print!(" | {c:^20}");
    }
    println!();
    for s in NATS {
        print!("{s:>12}");
        for c in NATS {
            let text = cells
                .iter()
                .find(|x| x.server_nat == s && x.client_nat == c)
                .map(Cell::short)
                .unwrap_or_else(|| "-".into());
            print!(" | {text:^20}");
        }
        println!();
    }
}

fn to_json(server: Stack, client: Stack, cells: &[Cell]) -> Value {
    json!({
        "server": server.name(),
        "client": client.name(),
        "cells": cells.iter().map(|c| json!({
            "server_nat": c.server_nat,
            "client_nat": c.client_nat,
            "path": c.path(),
            "connect_ms": c.result.as_ref().ok().map(|v| v["connectMs"].clone()),
            "runs_ms": c.times,
            "total_ms": c.result.as_ref().ok().map(|v| v["totalMs"].clone()),
            "error": c.result.as_ref().err(),
            "report": c.result.as_ref().ok(),
        })).collect::<Vec<_>>(),
    })
}

/// A markdown table: one row per cell, one column per pairing ("direct 42 ms").
fn side_by_side(report: &[Value]) -> String {
    let mut t = String::from("| server NAT | client NAT |");
    for r in report {
        t += &format!(
            " {} server ← {} client |",
            r["server"].as_str().unwrap_or("?"),
            r["client"].as_str().unwrap_or("?")
        );
    }
    t += "\n|---|---|";
    for _ in report {
        t += "---|";
    }
    t += "\n";
    for s in NATS {
        for c in NATS {
            t += &format!("| {s} | {c} |");
            for r in report {
                let cell = r["cells"].as_array().and_then(|cells| {
                    cells
                        .iter()
                        .find(|x| x["server_nat"] == s && x["client_nat"] == c)
                });
                let text = match cell {
                    Some(x) if x["connect_ms"].is_number() => {
                        let runs = x["runs_ms"].as_array().map_or(0, Vec::len);
                        let range = if runs > 1 {
                            format!(" ({}–{})", x["runs_ms"][0], x["runs_ms"][runs - 1])
                        } else {
                            String::new()
                        };
                        format!(
                            "{} {} ms{range}",
                            x["path"].as_str().unwrap_or("?"),
                            x["connect_ms"]
                        )
                    }
                    Some(x) => x["path"].as_str().unwrap_or("?").to_owned(),
                    None => "-".into(),
                };
                t += &format!(" {text} |");
            }
            t += "\n";
        }
    }
    t
}

#[test]
fn nat_matrix() {
    if let Some(why) = skip_reason() {
        println!("nat_matrix: SKIPPED: {why}");
        return;
    }
    let _lab = Lab::up();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let _ = SCRATCH.set(scratch.path().to_owned());

    let mut dht = Proc::spawn(
        "boot",
        "dht",
        &[
            "node".into(),
            "netlab/js-node.js".into(),
            "dht".into(),
            BOOT_IPS.into(),
            DHT_PORT.to_string(),
        ],
    );
    dht.expect("ready", READY_GUARD);
    let mut js_relay = Proc::spawn(
        "relay",
        "js relay",
        &[
            "node".into(),
            "netlab/js-node.js".into(),
            "relay".into(),
            bootstrap(),
            hex::encode([0x52; 32]),
        ],
    );
    let mut rust_relay = Proc::spawn(
        "relay",
        "peerhost relay",
        &[
            nat_peer(),
            "relay".into(),
            bootstrap(),
            hex::encode([0x53; 32]),
        ],
    );
    let key = |v: Value| v["publicKey"].as_str().expect("relay key").to_owned();
    let relays = Relays {
        js_key: key(js_relay.expect("ready", READY_GUARD)),
        rust_key: key(rust_relay.expect("ready", READY_GUARD)),
    };

    let all = [
        (Stack::Js, Stack::Js),
        (Stack::Rust, Stack::Rust),
        (Stack::Js, Stack::Rust),
        (Stack::Rust, Stack::Js),
    ];
    // NAT_MATRIX_PAIRS=js:rust,… (server:client) runs only those pairings.
    let only = std::env::var("NAT_MATRIX_PAIRS").unwrap_or_default();
    let pairings: Vec<_> = all
        .into_iter()
        .filter(|(s, c)| {
            only.is_empty()
                || only
                    .split(',')
                    .any(|w| w == format!("{}:{}", s.short(), c.short()))
        })
        .collect();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for &(server, client) in &pairings {
        let title = format!("{} server <- {} client", server.name(), client.name());
        let mut done = Vec::new();
        for (i, nats) in cells().into_iter().enumerate() {
            let runs = (0..repeat())
                .map(|k| {
                    let c = run_cell(server, client, i + 1000 * k, nats, &relays, "peer2");
                    if repeat() > 1 {
                        println!("{title}: {}:{} run {k}: {}", nats.0, nats.1, c.short());
                    }
                    c
                })
                .collect();
            let mut cell = fold(runs);
            println!("{title}: {}:{} {}", nats.0, nats.1, cell.short());
            // Punching into a randomizing NAT is a birthday draw (256 mappings against up to
            // 1750 random ports: it misses about once in a thousand); a cell off expectation
            // gets one more attempt, and both attempts are printed.
            let off = cell.result.is_err() || cell.path() != cell.expected_path();
            if off {
                cell = run_cell(server, client, 200 + i, nats, &relays, "peer2");
                println!("{title}: {}:{} retried: {}", nats.0, nats.1, cell.short());
            }
            if let Err(e) = &cell.result {
                failures.push(format!("{title} {}:{}: {e}", nats.0, nats.1));
            } else if cell.path() != cell.expected_path() {
                failures.push(format!(
                    "{title} {}:{}: {} (expected {})",
                    nats.0,
                    nats.1,
                    cell.path(),
                    cell.expected_path()
                ));
            }
            done.push(cell);
        }
        print_matrix(&title, &done);
        report.push(to_json(server, client, &done));
    }

    // The same-LAN shortcut: server in peer1, client in peer3, both behind nat1 (a
    // port-restricted cone): the relay node sees one public address for both, and the client
    // connects to the server's LAN address.
    let mut lan = Vec::new();
    if std::env::var("NAT_MATRIX_CELLS").map_or(true, |c| c.is_empty() || c.contains("lan")) {
        for (i, (server, client)) in pairings.iter().enumerate() {
            let cell = run_cell(
                *server,
                *client,
                100 + i,
                ("port", "port"),
                &relays,
                "peer3",
            );
            let title = format!("{} server <- {} client", server.name(), client.name());
            println!("{title}: same LAN behind nat1: {}", cell.short());
            match &cell.result {
                Err(e) => failures.push(format!("{title} same LAN: {e}")),
                Ok(_) if cell.path() != "lan" => {
                    failures.push(format!("{title} same LAN: {} (expected lan)", cell.path()));
                }
                Ok(_) => {}
            }
            lan.push(
                json!({"server": server.name(), "client": client.name(), "path": cell.path(),
                "connect_ms": cell.result.as_ref().ok().map(|v| v["connectMs"].clone())}),
            );
        }
    }

    // The daemon as users run it (`peerhost serve` ← `peerhost mirror`), both NATs
    // randomizing, no relay configured anywhere: a third daemon on the public relay host
    // offers a blind relay, and the mirror's dial falls back to it once found on the DHT.
    let mut daemons = None;
    if std::env::var("NAT_MATRIX_CELLS").map_or(true, |c| c.is_empty() || c.contains("daemon")) {
        lab(&["nat", "nat1", "symmetric"]);
        lab(&["nat", "nat2", "symmetric"]);
        let argv = |args: &[&str]| -> Vec<String> {
            std::iter::once(nat_peer())
                .chain(args.iter().map(|a| (*a).to_owned()))
                .collect()
        };
        let boot = bootstrap();
        let mut relay = Proc::spawn("relay", "daemon relay", &argv(&["daemon-relay", &boot]));
        let offered = relay.expect("ready", READY_GUARD)["relay"].clone();
        let mut server = Proc::spawn(
            "peer1",
            "daemon server",
            &argv(&["daemon-serve", &boot, &BLOCKS.to_string()]),
        );
        let key = server.expect("ready", READY_GUARD)["key"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut mirror = Proc::spawn(
            "peer2",
            "daemon mirror",
            &argv(&["daemon-mirror", &boot, &key, &BLOCKS.to_string()]),
        );
        let what = "daemons, symmetric ← symmetric, relay found on the DHT";
        match mirror.wait(&["done", "failed"], CELL_GUARD) {
            Some(v) if v["event"] == "done" => {
                let relayed = v["peers"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|a| a.as_str().is_some_and(|a| a.contains("198.51.100.20")))
                });
                println!("{what}: {v} (relay {offered})");
                if !relayed {
                    failures.push(format!("{what}: not through the relay host: {v}"));
                }
                daemons = Some(format!(
                    "{} {} ms",
                    if relayed { "relayed" } else { "direct?" },
                    v["ms"]
                ));
            }
            other => failures.push(format!("{what}: {other:?} (mirror saw {:?})", mirror.seen)),
        }
    }

    let mut table = side_by_side(&report);
    if let Some(d) = &daemons {
        table += &format!(
            "\nDaemons (`serve` ← `mirror`), both NATs symmetric, no relay configured (one \
             found on the DHT), from the mirror's start to every block held: {d}\n"
        );
    }
    if !lan.is_empty() {
        table += "\nSame LAN (both behind nat1, port-restricted):\n\n";
        for l in &lan {
            table += &format!(
                "- {} server ← {} client: {} {} ms\n",
                l["server"].as_str().unwrap_or("?"),
                l["client"].as_str().unwrap_or("?"),
                l["path"].as_str().unwrap_or("?"),
                l["connect_ms"]
            );
        }
    }
    println!("\nconnect time per cell, every stack in this lab run:\n\n{table}");

    let out = std::env::var("NAT_MATRIX_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            peerhost_interop_tests::repo_root().join("target/netlab/nat-matrix.json")
        });
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!(report)).unwrap_or_default(),
    );
    let _ = std::fs::write(out.with_extension("md"), &table);
    println!("\nmatrix written to {} (and .md)", out.display());

    assert!(
        failures.is_empty(),
        "cells off expectation:\n{}",
        failures.join("\n")
    );
}
