//! The web app a community publishes, and apps readers swap in (issue 12, `web/README.md`):
//! which files `community create` and `demo` publish, `peerhost app fork`, and finding the app
//! log a command names (a community's assets log, or a plain app log such as a fork).
//!
//! Where the default app comes from (the reason is in web/README.md, "The default app in new
//! communities"): `--app DIR` if given; else `web/app/dist` under the working directory, the
//! build `npm run build` writes (its `peerhost-runtime.js` is the one the instance's
//! `web/dist` document pins); else the app's source files compiled into this binary (they need
//! no build step), without the bootstrap runtime, and a warning that says how to add it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use peerhost_daemon::control::{Log, Logs};
use peerhost_feed::assets::{self, Known};
use peerhost_feed::read::{self, AppendBlocks};
use peerhost_feed::{Entry, Kind};
use peerhost_store::CreateOptions;

use crate::StorageArgs;

/// The build of the default app, relative to the working directory (the repository's root).
pub(crate) const BUILT_APP: &str = "web/app/dist";

/// The default app's source files (`web/app/`), compiled in: ordinary static files and ES
/// modules that run as they are (the build only minifies them and adds the runtime).
pub(crate) const EMBEDDED: &[(&str, &[u8])] = &[
    ("feed.js", include_bytes!("../../web/app/feed.js")),
    ("index.html", include_bytes!("../../web/app/index.html")),
    ("index.js", include_bytes!("../../web/app/index.js")),
    ("main.js", include_bytes!("../../web/app/main.js")),
    ("markdown.js", include_bytes!("../../web/app/markdown.js")),
    ("style.css", include_bytes!("../../web/app/style.css")),
];

/// Which app a new community gets.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct AppArgs {
    /// Publish this directory as the community's web app [default: web/app/dist if it exists
    /// here (`cd web && npm ci && npm run build`), else the default app's sources built into
    /// peerhost, without the bootstrap runtime].
    #[arg(long, value_name = "DIR", conflicts_with = "no_app")]
    pub(crate) app: Option<PathBuf>,
    /// Create the community with no web app (publish one later with `peerhost assets publish`).
    #[arg(long)]
    pub(crate) no_app: bool,
}

/// Where the files of a new community's app come from.
#[derive(Debug)]
pub(crate) enum AppSource {
    /// A directory (given, or the default build).
    Dir(PathBuf),
    /// The compiled-in sources, written to a temporary directory to publish.
    Embedded(tempfile::TempDir),
}

impl AppSource {
    /// The directory to publish.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            Self::Dir(d) => d,
            Self::Embedded(t) => t.path(),
        }
    }

    /// What it is, for a person.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Dir(d) => d.display().to_string(),
            Self::Embedded(_) => "the default app built into peerhost".to_owned(),
        }
    }
}

impl AppArgs {
    /// The app to publish, or `None` with `--no-app`. A `--app DIR` that is not a directory is
    /// an error; a missing default build falls back to the compiled-in sources.
    pub(crate) fn source(&self) -> anyhow::Result<Option<AppSource>> {
        if self.no_app {
            return Ok(None);
        }
        if let Some(dir) = &self.app {
            if !dir.is_dir() {
                bail!(
                    "--app {} is not a directory: pass the built web app (web/app/dist after \
                     `cd web && npm ci && npm run build`)",
                    dir.display()
                );
            }
            return Ok(Some(AppSource::Dir(dir.clone())));
        }
        let built = Path::new(BUILT_APP);
        if built.join("index.html").is_file() {
            return Ok(Some(AppSource::Dir(built.to_path_buf())));
        }
        Ok(Some(AppSource::Embedded(embedded_dir()?)))
    }
}

/// The compiled-in sources in a new temporary directory.
pub(crate) fn embedded_dir() -> anyhow::Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix("peerhost-app-")
        .tempdir()
        .context("cannot create a temporary directory for the default app")?;
    for (name, bytes) in EMBEDDED {
        let mut f = std::fs::File::create(tmp.path().join(name))
            .with_context(|| format!("cannot write the default app's {name}"))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write the default app's {name}"))?;
    }
    Ok(tmp)
}

/// The warning for an app published without the bootstrap runtime.
pub(crate) fn without_runtime_hint(name: &str) -> String {
    format!(
        "no {BUILT_APP} here: published the default app's sources without the bootstrap runtime; \
         before serving the page, build it (cd web && npm ci && npm run build) and run \
         `peerhost assets publish {name} {BUILT_APP}`"
    )
}

/// `peerhost app …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AppCommand {
    /// Copy a community's current web app into a new log you own, to change and publish.
    ///
    /// Prints the new app log's key (hex). Change the files and publish them with `peerhost
    /// assets publish NAME DIR`; serve the log (`peerhost serve`, or have mirrors keep it), and
    /// readers see the community rendered by it at INSTANCE/#app=KEY.
    Fork {
        /// The community (name or key) whose app to copy, or another app log.
        community: String,
        /// Local name of the new app log.
        name: String,
    },
}

pub(crate) fn run(storage: &StorageArgs, command: AppCommand) -> anyhow::Result<()> {
    let dir = storage.dir()?;
    let logs =
        Logs::open(&dir).with_context(|| format!("cannot open the store {}", dir.display()))?;
    match command {
        AppCommand::Fork { community, name } => fork(&logs, &community, &name),
    }
}

/// Whether `log` holds an app: chunks and asset indexes (its block 0 is one). An empty log
/// is not one (a fork is never empty; an empty log may be a new community's posts log).
fn is_app_log(log: &mut Log) -> anyhow::Result<bool> {
    if log.length() == 0 {
        return Ok(false);
    }
    let Some(block) = read::Blocks::block(log, 0)? else {
        return Ok(false);
    };
    Ok(Entry::decode(&block)
        .is_ok_and(|e| matches!(e.into_kind(), Some(Kind::Chunk(_) | Kind::AssetIndex(_)))))
}

/// The app log `query` names, for reading or (with `write`) publishing: a plain app log (a
/// fork, by name or key), or `None` when `query` names something else (a community: the
/// caller opens its assets log).
pub(crate) fn plain_app_log(store: &Logs, query: &str, write: bool) -> anyhow::Result<Option<Log>> {
    let known = store.is_name(query)
        || peerhost_ids::Key::parse(query)
            .ok()
            .map(|k| store.contains(&k))
            .transpose()?
            .unwrap_or(false);
    if !known {
        return Ok(None);
    }
    let mut log = store.log(query)?;
    if read::is_descriptor_log(&mut log)? || !is_app_log(&mut log)? {
        return Ok(None);
    }
    if write && !log.writable() {
        bail!(
            "app log {query} is read-only here (no secret key): fork it with `peerhost app fork \
             {query} NAME` and publish to the fork"
        );
    }
    Ok(Some(log))
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Copy the current files of `from` into `to` (content shared by several paths is copied
/// once), then one index; the number of files.
pub(crate) fn copy_app<F, T>(from: &mut F, to: &mut T, from_name: &str) -> anyhow::Result<usize>
where
    F: read::Blocks,
    T: AppendBlocks,
{
    let (found, _) = read::asset_index(from)?;
    let Some((_, index)) = found else {
        bail!("{from_name} has no web app to fork yet: publish one with `peerhost assets publish`");
    };
    let mut known = Known::default();
    let mut files = Vec::with_capacity(index.files.len());
    for a in &index.files {
        let sha: Option<[u8; 32]> = a.sha256.as_slice().try_into().ok();
        let content = match sha.and_then(|s| known.find(&s, a.size)) {
            Some(c) => c,
            None => {
                let mut bytes = Vec::with_capacity(usize::try_from(a.size).unwrap_or(0));
                assets::read_content(from, a, &mut bytes).with_context(|| {
                    format!(
                        "cannot read {} of {from_name}: follow or mirror the whole app first",
                        a.path
                    )
                })?;
                let c = assets::append_content(to, &bytes[..], |_| {})
                    .with_context(|| format!("cannot copy {}", a.path))?;
                known.add(c);
                c
            }
        };
        files.push(content.asset(&a.path, &a.content_type));
    }
    let n = files.len();
    let block = assets::index_entry(files, now_us())
        .encode()
        .context("the app's index is too large for one block")?;
    to.append_blocks(&[block])
        .map_err(|e| anyhow::anyhow!("cannot append the index: {e}"))?;
    Ok(n)
}

fn fork(logs: &Logs, query: &str, name: &str) -> anyhow::Result<()> {
    let Some(store) = logs.store() else {
        bail!(
            "forking an app needs the store to itself, and a daemon is running on it: stop \
             `peerhost serve`, run this, then start it again"
        );
    };
    if let Some(key) = store.name_key(name)? {
        bail!(
            "a log named {name} already exists ({}): choose another name",
            key.to_z32()
        );
    }
    let mut from = match plain_app_log(logs, query, false)? {
        Some(log) => log,
        None => crate::community::assets_log(logs, query, false)?,
    };
    // Everything is read before the new log is created: a missing file leaves nothing behind.
    let mut staged: Vec<Vec<u8>> = Vec::new();
    let n = copy_app(&mut from, &mut staged, query)?;
    let mut to = store
        .create(name, CreateOptions::default())
        .with_context(|| format!("cannot create the log {name}"))?;
    to.append(&staged)
        .with_context(|| format!("cannot write the log {name}"))?;
    let key = to.key();
    println!("{}", key.to_hex());
    eprintln!(
        "forked the app of {query} ({n} files) into the log {name}, which you own. Change the \
         files and run `peerhost assets publish {name} DIR`; serve it (`peerhost serve`, or \
         have mirrors keep {}), then open INSTANCE/#app={}",
        key.to_z32(),
        key.to_hex()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_app_is_every_source_file_of_web_app() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/app");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                e.file_type()
                    .unwrap()
                    .is_file()
                    .then(|| e.file_name().into_string().unwrap())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = EMBEDDED.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded, "add the new file of web/app to EMBEDDED");
    }

    #[test]
    fn copy_app_copies_the_current_files_once() {
        let mut from: Vec<Vec<u8>> = Vec::new();
        let a = assets::append_content(&mut from, &b"old"[..], |_| {}).unwrap();
        from.push(
            assets::index_entry(vec![a.asset("x.txt", "text/plain")], 1)
                .encode()
                .unwrap(),
        );
        let b = assets::append_content(&mut from, &vec![7u8; 200_000][..], |_| {}).unwrap();
        from.push(
            assets::index_entry(
                vec![
                    b.asset("big.bin", "application/octet-stream"),
                    b.asset("same.bin", "application/octet-stream"),
                ],
                2,
            )
            .encode()
            .unwrap(),
        );
        let mut to: Vec<Vec<u8>> = Vec::new();
        assert_eq!(copy_app(&mut from, &mut to, "x").unwrap(), 2);
        // 4 chunks of the big file once (the old file is not current), then the index.
        assert_eq!(to.len(), 5);
        let (found, _) = read::asset_index(&mut to).unwrap();
        let files = found.unwrap().1.files;
        assert_eq!(files.len(), 2);
        for f in &files {
            let mut out = Vec::new();
            assets::read_content(&mut to, f, &mut out).unwrap();
            assert_eq!(out, vec![7u8; 200_000]);
        }
        // An empty log has nothing to fork.
        assert!(copy_app(&mut Vec::<Vec<u8>>::new(), &mut to, "y").is_err());
    }
}
