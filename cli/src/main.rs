//! `peerhost`: the command-line front of the peerhost node.
//!
//! This is the only crate that uses `clap` and `anyhow`: library crates return typed errors, and
//! here they become one line for a person (what is wrong, and what to do).

mod app;
mod bench;
mod community;
mod daemon;
mod demo;
mod dht;
mod logcmd;
mod net;
mod progress;
mod term;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A node for hypercore logs and the communities built on them: publish, verify, and replicate
/// them with Holepunch peers.
#[derive(Debug, Parser)]
#[command(
    name = "peerhost",
    version,
    about,
    propagate_version = true,
    after_help = "--storage DIR may come before or after the subcommand."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where logs live on disk; every command that touches logs takes it.
#[derive(Debug, Clone, clap::Args)]
struct StorageArgs {
    /// Storage directory [default: $PEERHOST_STORAGE, else the platform data dir + /peerhost]
    #[arg(long, global = true, value_name = "DIR")]
    storage: Option<PathBuf>,
}

impl StorageArgs {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.storage {
            return Ok(dir.clone());
        }
        if let Some(dir) = std::env::var_os("PEERHOST_STORAGE").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        match dirs::data_dir() {
            Some(d) => Ok(d.join("peerhost")),
            None => anyhow::bail!(
                "no platform data directory is known here: pass --storage DIR or set PEERHOST_STORAGE"
            ),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, append to, read and verify signed logs in the local store.
    Log {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(subcommand)]
        command: logcmd::LogCommand,
    },
    /// A community on a local network in this process: an instance, two mirrors and a
    /// follower on an embedded DHT (no Internet needed).
    Demo {
        #[command(flatten)]
        app: app::AppArgs,
    },
    /// Benchmarks (compare with the JS stack via scripts/bench-log.sh).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// The daemon: serve every local log and the configured mirrors on the DHT (and TCP with
    /// --listen-tcp, printing the bound address) until SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        args: net::ServeArgs,
    },
    /// Download a log (or part of it) from peers, verifying every block.
    Follow {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        args: net::FollowArgs,
    },
    /// Keep a full, live copy of a log from peers.
    Mirror {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        args: net::MirrorArgs,
    },
    /// What the running daemon (`serve`, `mirror`) on this store is doing: peers, bytes up and
    /// down per log, what it served.
    Status {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        args: daemon::StatusArgs,
    },
    /// Communities: create, post, import from Lemmy, publish a web app, read the feed.
    #[command(flatten)]
    Feed(community::FeedCommand),
    /// Web apps readers can swap in: fork a community's app into a log you own.
    App {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(subcommand)]
        command: app::AppCommand,
    },
    /// DHT tools: a bootstrap node for isolated networks.
    Dht {
        #[command(subcommand)]
        command: dht::DhtCommand,
    },
    /// Run a blind relay: peers behind two randomizing NATs connect through it, end to end
    /// encrypted (the relay cannot read what it carries).
    Relay(dht::RelayArgs),
}

/// `peerhost --storage DIR log create a`: flags that every subcommand takes (`--storage`),
/// given before the subcommand, are moved after it, where clap reads them (issue 16 item 8).
fn hoist_global_flags(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut iter = args.into_iter();
    let mut out: Vec<std::ffi::OsString> = iter.next().into_iter().collect();
    let mut hoisted = Vec::new();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--storage" {
            hoisted.push(arg);
            hoisted.extend(iter.next());
        } else if text.starts_with("--storage=") {
            hoisted.push(arg);
        } else {
            rest.push(arg);
            break;
        }
    }
    rest.extend(iter);
    // Before a `--` (after it everything is a value), else at the end.
    let at = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let tail = rest.split_off(at);
    out.extend(rest);
    out.extend(hoisted);
    out.extend(tail);
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(hoist_global_flags(std::env::args_os().collect()));
    let result = match cli.command {
        Command::Log { storage, command } => {
            storage.dir().and_then(|dir| logcmd::run(&dir, command))
        }
        Command::Demo { app } => demo::run(&app),
        Command::Bench { command } => bench::run(command),
        Command::Serve { storage, args } => storage.dir().and_then(|d| net::serve(&d, args)),
        Command::Follow { storage, args } => storage.dir().and_then(|d| net::follow(&d, args)),
        Command::Mirror { storage, args } => storage.dir().and_then(|d| net::mirror(&d, args)),
        Command::Status { storage, args } => storage.dir().and_then(|d| daemon::status(&d, args)),
        Command::Feed(command) => community::run(command),
        Command::App { storage, command } => app::run(&storage, command),
        Command::Dht { command } => dht::run(command),
        Command::Relay(args) => dht::relay(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context, then the causes it does not already say.
            let mut line = format!("error: {e}");
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
            }
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(std::ffi::OsString::from).collect();
        hoist_global_flags(args)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn storage_before_the_subcommand_moves_after_it() {
        assert_eq!(
            hoisted(&["p", "--storage", "X", "log", "create", "a"]),
            ["p", "log", "create", "a", "--storage", "X"]
        );
        assert_eq!(
            hoisted(&["p", "--storage=X", "log", "cat", "a", "--", "-x"]),
            ["p", "log", "cat", "a", "--storage=X", "--", "-x"]
        );
        // After the subcommand nothing moves, not even a value that reads like the flag.
        assert_eq!(
            hoisted(&["p", "post", "c", "--title", "--storage"]),
            ["p", "post", "c", "--title", "--storage"]
        );
    }
}
