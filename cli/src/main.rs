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
mod posts;
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
    /// `--storage` is global: accepted before or after the subcommand.
    #[command(flatten)]
    storage: StorageArgs,
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
        args: net::ServeArgs,
    },
    /// Download a log (or part of it) from peers, verifying every block.
    Follow {
        #[command(flatten)]
        args: net::FollowArgs,
    },
    /// Keep a full, live copy of a log from peers.
    Mirror {
        #[command(flatten)]
        args: net::MirrorArgs,
    },
    /// What the running daemon (`serve`, `mirror`) on this store is doing: peers, bytes up and
    /// down per log, what it served.
    Status {
        #[command(flatten)]
        args: daemon::StatusArgs,
    },
    /// Communities: create, post, import from Lemmy, publish a web app, read the feed.
    #[command(flatten)]
    Feed(community::FeedCommand),
    /// Web apps readers can swap in: fork a community's app into a log you own.
    App {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let storage = &cli.storage;
    let result = match cli.command {
        Command::Log { command } => storage.dir().and_then(|dir| logcmd::run(&dir, command)),
        Command::Demo { app } => demo::run(&app),
        Command::Bench { command } => bench::run(command),
        Command::Serve { args } => storage.dir().and_then(|d| net::serve(&d, args)),
        Command::Follow { args } => storage.dir().and_then(|d| net::follow(&d, args)),
        Command::Mirror { args } => storage.dir().and_then(|d| net::mirror(&d, args)),
        Command::Status { args } => storage.dir().and_then(|d| daemon::status(&d, args)),
        Command::Feed(command) => community::run(storage, command),
        Command::App { command } => app::run(storage, command),
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

    /// The storage directory and the log command's name that `args` parse to.
    fn parsed(args: &[&str]) -> (Option<PathBuf>, String) {
        let cli = Cli::try_parse_from(args).expect("parses");
        let Command::Log { command } = cli.command else {
            panic!("not a log command")
        };
        (cli.storage.storage, format!("{command:?}"))
    }

    #[test]
    fn storage_before_or_after_the_subcommand() {
        let before = parsed(&["p", "--storage", "X", "log", "create", "a"]);
        let after = parsed(&["p", "log", "create", "a", "--storage", "X"]);
        assert_eq!(before.0, Some(PathBuf::from("X")));
        assert_eq!(before, after);
        let (dir, _) = parsed(&["p", "--storage=X", "log", "cat", "a"]);
        assert_eq!(dir, Some(PathBuf::from("X")));
        // A value that reads like the flag stays a value.
        let cli = Cli::try_parse_from(["p", "post", "c", "--title=--storage"]).expect("parses");
        assert_eq!(cli.storage.storage, None);
        let Command::Feed(command) = cli.command else {
            panic!("not a post")
        };
        assert!(
            format!("{command:?}").contains("\"--storage\""),
            "{command:?}"
        );
    }
}
