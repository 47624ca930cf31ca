//! `peerhost log …`: create, append to, read, inspect and verify logs in the local store.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use peerhost_daemon::control::{self, Log, Logs, MAX_BLOCK};
use peerhost_feed::Blocks as _;
use peerhost_feed::community::Part;
use peerhost_feed::read;
use peerhost_ids::Key;
use peerhost_store::{Core, CreateOptions, Store};

/// Blocks handed to one `append` call (one signature and one commit per batch).
const BATCH_BLOCKS: usize = 1024;
/// Bytes handed to one `append` call.
const BATCH_BYTES: usize = 8 << 20;

#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Create a new writable log and print its key (z-base32).
    Create {
        /// Local name of the log.
        name: String,
        /// A compat (hypercore 10 style) log: the key is the Ed25519 public key.
        #[arg(long)]
        compat: bool,
    },
    /// Append blocks: each FILE is one block; `-` or no FILE reads stdin.
    Append {
        /// Local name (or key) of a log this store writes.
        name: String,
        /// Files to append, one block each (`-` for stdin).
        files: Vec<PathBuf>,
        /// One block per line of input (the newline is not part of the block).
        #[arg(long)]
        lines: bool,
    },
    /// Write blocks START..END to stdout.
    Cat {
        /// Key (z-base32, hex, pear://) or local name.
        log: String,
        /// First block.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// End (exclusive) [default: the log's length].
        #[arg(long)]
        end: Option<u64>,
        /// Write a newline after each block (the inverse of `append --lines`).
        #[arg(long)]
        lines: bool,
    },
    /// Key, discovery key, length, byte length, fork, tree hash, signature check.
    Info {
        /// Key (z-base32, hex, pear://) or local name.
        log: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every stored block and tree node against the signed root. While a daemon holds
    /// the store it does this in steps and goes on serving and appending: the length at the
    /// start is what is checked.
    Verify {
        /// Key (z-base32, hex, pear://) or local name.
        log: String,
        /// Print JSON ({blocks, parents, signed, length}); a failure is still one line on
        /// stderr and a non-zero exit.
        #[arg(long)]
        json: bool,
    },
    /// List the logs in the store: named ones, then the ones followed or mirrored (no name).
    List {
        /// Print JSON (an array of {key, name, length, writable}).
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(dir: &Path, command: LogCommand) -> anyhow::Result<()> {
    let logs =
        Logs::open(dir).with_context(|| format!("cannot open the store {}", dir.display()))?;
    if let LogCommand::Append { name, .. } = &command {
        refuse_community_log(&logs, name)?;
    }
    let store = match logs {
        Logs::Local(store) => store,
        // A daemon holds the lock: append and cat through it (protocol/control.md).
        daemon => return through_daemon(&daemon, command),
    };
    match command {
        LogCommand::Create { name, compat } => {
            let core = store.create(&name, CreateOptions::default().compat(compat))?;
            println!("{}", core.key().to_z32());
            eprintln!(
                "created {} log {name:?} (discovery key {})",
                if compat { "compat" } else { "v11" },
                core.discovery_key()
            );
        }
        LogCommand::Append { name, files, lines } => {
            let core = open_log(&store, &name)?;
            if !core.writable() {
                bail!(
                    "log {name} is read-only here (no secret key): append on the store that created it"
                );
            }
            let len = append(&mut Log::Local(Box::new(core)), &files, lines)?;
            println!("{len}");
        }
        LogCommand::Cat {
            log,
            start,
            end,
            lines,
        } => {
            let core = open_log(&store, &log)?;
            cat(&mut Log::Local(Box::new(core)), &log, start, end, lines)?;
        }
        LogCommand::Info { log, json } => {
            let mut core = open_log(&store, &log)?;
            print_info(&control::detail_of(&mut core)?, json)?;
        }
        LogCommand::Verify { log, json } => {
            let core = open_log(&store, &log)?;
            verify(&mut Log::Local(Box::new(core)), &log, json)?;
        }
        LogCommand::List { json } => print_list(&Logs::Local(store).list()?, json)?,
    }
    Ok(())
}

/// `log info`, from the store or the daemon.
fn print_info(d: &control::proto::LogDetail, json: bool) -> anyhow::Result<()> {
    let key = Key(d
        .key
        .as_slice()
        .try_into()
        .context("a key that is not 32 bytes")?);
    if json {
        let v = serde_json::json!({
            "key": key.to_z32(),
            "keyHex": key.to_hex(),
            "discoveryKey": hex::encode(&d.discovery_key),
            "length": d.length,
            "contiguousLength": d.contiguous_length,
            "held": d.held,
            "byteLength": d.byte_length,
            "fork": d.fork,
            "treeHash": hex::encode(&d.tree_hash),
            "signatureVerifies": d.signature_verifies,
            "writable": d.writable,
            "compat": d.compat,
            "manifestKnown": d.manifest_known,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("key:              {}", key.to_z32());
    println!("key (hex):        {}", key.to_hex());
    println!("discovery key:    {}", hex::encode(&d.discovery_key));
    println!(
        "length:           {} ({} held here, {} in a row from block 0)",
        d.length, d.held, d.contiguous_length
    );
    println!("byte length:      {}", d.byte_length);
    println!("fork:             {}", d.fork);
    println!("tree hash:        {}", hex::encode(&d.tree_hash));
    println!(
        "signature:        {}",
        match (d.length, d.signature_verifies) {
            (0, _) => "none (empty log)",
            (_, true) => "verifies",
            (_, false) => "DOES NOT VERIFY",
        }
    );
    println!(
        "kind:             {}{}",
        if d.compat { "compat" } else { "v11" },
        if d.writable {
            ", writable here"
        } else {
            ", replica"
        }
    );
    Ok(())
}

/// `log list`: named logs, then those followed or mirrored (issue 16: they have no name and
/// were not listed).
fn print_list(logs: &[control::proto::ListedLog], json: bool) -> anyhow::Result<()> {
    let z32 =
        |k: &[u8]| <[u8; 32]>::try_from(k).map_or_else(|_| hex::encode(k), |k| Key(k).to_z32());
    if json {
        let v: Vec<serde_json::Value> = logs
            .iter()
            .map(|l| {
                serde_json::json!({
                    "key": z32(&l.key),
                    "name": l.name,
                    "length": l.length,
                    "writable": l.writable,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for l in logs {
        let name = match (&l.name, l.writable) {
            (Some(n), _) => n.clone(),
            (None, true) => "(no name)".to_owned(),
            (None, false) => "(no name: followed or mirrored)".to_owned(),
        };
        println!("{}  {name}  length {}", z32(&l.key), l.length);
    }
    Ok(())
}

/// Open a log by local name or key; a query that is neither gets one line naming the forms.
/// `log cat`: blocks `start..end` (clamped to the length) to stdout.
fn cat(
    log: &mut Log,
    query: &str,
    start: u64,
    end: Option<u64>,
    lines: bool,
) -> anyhow::Result<()> {
    let length = log.length();
    if let Some(e) = end.filter(|e| *e > length) {
        bail!("--end {e} is past the end of log {query}: it has {length} blocks");
    }
    let end = end.unwrap_or(length);
    if start > end {
        bail!("--start {start} is after the end ({end}) of the range asked of log {query}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in start..end {
        let Some(block) = log.block(i)? else {
            bail!("log {query} does not hold block {i} locally: follow or mirror it from a peer");
        };
        out.write_all(&block)?;
        if lines {
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `log verify`: re-hash the log (here, or in the daemon's steps while it goes on serving and
/// appending), with its progress on a terminal; the length it began with is what is checked.
fn verify(log: &mut Log, query: &str, json: bool) -> anyhow::Result<()> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} verifying {prefix}: {pos}/{len} blocks, {msg}, {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(query.to_owned());
    bar.set_message("starting");
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.tick();
    let started = std::time::Instant::now();
    let report = log.verify(|p| {
        bar.set_length(p.length);
        bar.set_position(p.position);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{} at {}/s",
            HumanBytes(p.bytes),
            HumanBytes((p.bytes as f64 / secs) as u64)
        ));
    });
    bar.finish_and_clear();
    let report = report?;
    if json {
        let v = serde_json::json!({
            "blocks": report.blocks,
            "parents": report.parents,
            "signed": report.signed,
            "length": report.length,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "ok: {} blocks and {} parent nodes verified against the {} root (length {})",
        report.blocks,
        report.parents,
        if report.signed { "signed" } else { "unsigned" },
        report.length
    );
    Ok(())
}

/// `log append`, `cat`, `info`, `list`, `create` and `verify` while a daemon holds the store:
/// through its control socket.
fn through_daemon(logs: &Logs, command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Append { name, files, lines } => {
            let mut log = logs.log(&name)?;
            if !log.writable() {
                bail!(
                    "log {name} is read-only here (no secret key): append on the store that created it"
                );
            }
            let len = append(&mut log, &files, lines)?;
            println!("{len}");
        }
        LogCommand::Cat {
            log: query,
            start,
            end,
            lines,
        } => {
            let mut log = logs.log(&query)?;
            cat(&mut log, &query, start, end, lines)?;
        }
        LogCommand::Info { log: query, json } => {
            let mut log = logs.log(&query)?;
            print_info(&log.detail()?, json)?;
        }
        LogCommand::List { json } => print_list(&logs.list()?, json)?,
        LogCommand::Create { name, compat } => {
            let key = logs.create(&name, compat)?;
            println!("{}", key.to_z32());
            eprintln!(
                "created {} log {name:?} (discovery key {}), served by the running daemon",
                if compat { "compat" } else { "v11" },
                key.discovery_key()
            );
        }
        LogCommand::Verify { log: query, json } => {
            let mut log = logs.log(&query)?;
            verify(&mut log, &query, json)?;
        }
    }
    Ok(())
}

/// Refuse raw appends to a community's logs (issue 16 item 4): readers decode every block of
/// them as an entry, and one that is not stays a warning for good. The descriptor log is known
/// by its block 0; a posts, comments or assets log by a local name `BASE.PART` whose `BASE`
/// descriptor names it. There is no `--force`: no reader gains from a raw block there, and the
/// commands that write entries cover each log.
fn refuse_community_log(logs: &Logs, query: &str) -> anyhow::Result<()> {
    let Ok(mut log) = logs.log(query) else {
        // Not a log here: the append itself says so.
        return Ok(());
    };
    if read::is_descriptor_log(&mut log).unwrap_or(false) {
        bail!(
            "log {query} is a community's descriptor log: `peerhost community` and `peerhost \
             assets publish` write it (raw blocks would make every reader skip them for good)"
        );
    }
    let key = log.key();
    let names: Vec<String> = match logs.store() {
        Some(store) => store
            .names()?
            .into_iter()
            .filter_map(|(name, k)| (k == key).then_some(name))
            .collect(),
        // Through the daemon only the name given is known.
        None if logs.is_name(query) => vec![query.to_owned()],
        None => Vec::new(),
    };
    for name in &names {
        for part in Part::NAMED {
            let Some(base) = name.strip_suffix(&format!(".{}", part.name())) else {
                continue;
            };
            let Ok(mut descriptor_log) = logs.log(base) else {
                continue;
            };
            let Ok((Some((_, entry)), _)) = read::descriptor(&mut descriptor_log) else {
                continue;
            };
            if read::as_descriptor(&entry).and_then(|d| part.key_in(d)) == Some(key) {
                let writers = match part {
                    Part::Posts => "`peerhost post` and `peerhost import`",
                    Part::Comments => "`peerhost import`",
                    _ => "`peerhost assets publish`",
                };
                bail!(
                    "log {query} is the {} log of community {base}: {writers} write it as \
                     entries readers decode (a raw block would be skipped by every reader, for \
                     good)",
                    part.name()
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn open_log(store: &Store, query: &str) -> anyhow::Result<Core> {
    let named = store.name_key(query).ok().flatten().is_some();
    if !named {
        if let Err(e) = Key::parse(query) {
            bail!("{e}, or the name of a local log (see `peerhost log list`)");
        }
    }
    Ok(store.open_core(query)?)
}

/// Append FILES (or stdin) in bounded batches, with a progress bar on a terminal.
fn append(core: &mut Log, files: &[PathBuf], lines: bool) -> anyhow::Result<u64> {
    let sources: Vec<PathBuf> = if files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        files.to_vec()
    };
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut batch = Batch::default();
    for path in &sources {
        let mut input = open_input(path)?;
        progress.set_message(format!("appending {}", path.display()));
        if lines {
            let mut reader = BufReader::new(&mut input);
            let mut line = Vec::new();
            for number in 1u64.. {
                line.clear();
                // At most one block and its line end in memory: a longer line is refused
                // before any of it (or of the batch it would have joined) is written.
                let n = (&mut reader)
                    .take(MAX_BLOCK as u64 + 2)
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                if line.len() > MAX_BLOCK {
                    bail!(
                        "line {number} of {} is longer than {} MiB, the largest block a log \
                         replicates: split it; the log holds {} blocks (the lines before it \
                         not yet appended were dropped)",
                        path.display(),
                        MAX_BLOCK >> 20,
                        core.length()
                    );
                }
                progress.inc(n as u64);
                batch.push(core, std::mem::take(&mut line))?;
            }
        } else {
            let mut block = Vec::new();
            input
                .take(MAX_BLOCK as u64 + 1)
                .read_to_end(&mut block)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if block.len() > MAX_BLOCK {
                bail!(
                    "{} is larger than {} MiB: split it, or append it with --lines",
                    path.display(),
                    MAX_BLOCK >> 20
                );
            }
            progress.inc(block.len() as u64);
            batch.push(core, block)?;
        }
    }
    batch.flush(core)?;
    progress.finish_and_clear();
    Ok(core.length())
}

#[derive(Default)]
struct Batch {
    blocks: Vec<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, core: &mut Log, block: Vec<u8>) -> anyhow::Result<()> {
        self.bytes += block.len();
        self.blocks.push(block);
        if self.blocks.len() >= BATCH_BLOCKS || self.bytes >= BATCH_BYTES {
            self.flush(core)?;
        }
        Ok(())
    }

    fn flush(&mut self, core: &mut Log) -> anyhow::Result<()> {
        if !self.blocks.is_empty() {
            core.append(&self.blocks)?;
            self.blocks.clear();
            self.bytes = 0;
        }
        Ok(())
    }
}

fn open_input(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(file))
}
