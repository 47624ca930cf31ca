//! Communities (`protocol/feeds.md`): `peerhost community …`, `post`, `import`, `assets …` on
//! the instance side, and `feed` on the reader side (offline: from the local store).
//!
//! A community NAME is five logs in the store, named NAME (the descriptor: its key is the
//! community key), NAME.posts, NAME.comments, NAME.assets and NAME.index (older communities may
//! have no index). Everything else is found from the descriptor, so a command given a community
//! key works the same as one given the name. The web app's commands are in `community/web_app.rs`,
//! the index's in `community/index_log.rs`.

use crate::term::{safe, safe_lines};
use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use peerhost_daemon::control::{Log, Logs};
use peerhost_feed::assets::{self, Known};
use peerhost_feed::community::{self, Part, PostJson};
use peerhost_feed::import::{Item, Seen, Stats, plan};
use peerhost_feed::index::{self, IndexError};
use peerhost_feed::lemmy::Document;
use peerhost_feed::read::{self, AppendBlocks, CommentView};
use peerhost_feed::time::format_rfc3339;
use peerhost_feed::{Asset, Descriptor, Entry, Kind, Notes, Post};
use peerhost_ids::Key;
use peerhost_store::Store;
use serde_json::{Value, json};

use crate::StorageArgs;
use crate::posts::{CommentsByPost, print_posts};

mod web_app;
pub(crate) use web_app::{assets_log, publish_to};
mod index_log;
use index_log::*;
use web_app::*;

/// Entries handed to one append (one signature per batch).
const BATCH_ENTRIES: usize = 1024;

/// The community commands, flattened into the top-level command list.
#[derive(Debug, Subcommand)]
pub(crate) enum FeedCommand {
    /// Create and inspect communities (a descriptor log + posts, comments and assets logs).
    Community {
        #[command(subcommand)]
        command: CommunityCommand,
    },
    /// Publish a post to a community this store writes.
    Post {
        /// Community name or key.
        community: String,
        /// Title.
        #[arg(long)]
        title: String,
        /// Body (markdown).
        #[arg(long, default_value = "", conflicts_with = "body_file")]
        body: String,
        /// Read the body (markdown, UTF-8) from this file; `-` reads stdin.
        #[arg(long, value_name = "PATH")]
        body_file: Option<PathBuf>,
        /// The URL the post links to.
        #[arg(long)]
        link: Option<String>,
        /// Author handle [default: none, i.e. the community itself].
        #[arg(long)]
        author: Option<String>,
    },
    /// Import posts, comments or the community description from Lemmy API JSON.
    ///
    /// Reads the responses of /api/v3/post/list, /api/v3/comment/list and /api/v3/community
    /// (Lemmy 0.19). Running it again only appends what changed: new items, edits, deletions.
    Import {
        /// Community name or key.
        community: String,
        /// JSON files (`-` for stdin).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Host of the Lemmy instance the JSON comes from, for ids [default: from the
        /// community's origin, else from the JSON's local items].
        #[arg(long, value_name = "HOST")]
        instance: Option<String>,
    },
    /// Publish, list and read the community's web app.
    Assets {
        #[command(subcommand)]
        command: AssetsCommand,
    },
    /// Print the latest posts of a community, newest first.
    Feed {
        /// Community key (z-base32, hex, pear://) or local name.
        community: String,
        /// How many posts (at least 1).
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        last: usize,
        /// Print JSON (an array of posts).
        #[arg(long)]
        json: bool,
        /// With each post's comments (reads the whole comments log).
        #[arg(long)]
        comments: bool,
        /// Page N of 20 posts by publication time, newest first (1 = the latest 20): read
        /// through the community's index log, or by scanning the posts log without one.
        #[arg(long, value_name = "N", conflicts_with = "last")]
        page: Option<usize>,
    },
    /// Print a post and its comments as a tree (through the index log when there is one).
    Thread {
        /// Community key (z-base32, hex, pear://) or local name.
        community: String,
        /// The post's id (as `feed --json` prints it).
        post_id: String,
        /// Print JSON (the post, with `comments` nested by `replies`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CommunityCommand {
    /// Create a community: four new logs; prints the community key.
    Create {
        /// Local name (and the community's name).
        name: String,
        /// Display title [default: NAME].
        #[arg(long)]
        title: Option<String>,
        /// Description (markdown).
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        app: crate::app::AppArgs,
    },
    /// Rebuild a community's index log from its posts and comments logs.
    ///
    /// Creates the index log (NAME.index) for a community made before there was one.
    Reindex {
        /// Community name or key (a community this store writes).
        community: String,
    },
    /// Show a community's descriptor and logs.
    Info {
        /// Community key or local name.
        community: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AssetsCommand {
    /// Publish every file under DIR as the community's web app (or as an app log's files).
    ///
    /// Content the assets log already holds (same SHA-256) is not appended again.
    Publish {
        /// Community name or key, or an app log you own (`peerhost app fork`).
        community: String,
        /// The directory of the built web app.
        dir: PathBuf,
    },
    /// List the files of the current web app.
    Ls {
        /// Community key or local name.
        community: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write one file of the web app to stdout (or FILE), checking its SHA-256.
    Get {
        /// Community key or local name.
        community: String,
        /// Path in the app, e.g. index.html.
        path: String,
        /// Write to FILE instead of stdout (only once the hash checks).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

pub(crate) fn run(storage: &StorageArgs, command: FeedCommand) -> anyhow::Result<()> {
    match command {
        FeedCommand::Community { command } => {
            let store = open_store(storage)?;
            match command {
                CommunityCommand::Create {
                    name,
                    title,
                    description,
                    app,
                } => create(&store, &name, title, description, &app),
                CommunityCommand::Info { community, json } => info(&store, &community, json),
                CommunityCommand::Reindex { community } => reindex(&store, &community),
            }
        }
        FeedCommand::Post {
            community,
            title,
            body,
            body_file,
            link,
            author,
        } => {
            let body = match body_file {
                Some(path) => read_body(&path)?,
                None => body,
            };
            let store = open_store(storage)?;
            post(&store, &community, title, body, link, author)
        }
        FeedCommand::Import {
            community,
            files,
            instance,
        } => import(&open_store(storage)?, &community, &files, instance),
        FeedCommand::Assets { command } => {
            let store = open_store(storage)?;
            match command {
                AssetsCommand::Publish { community, dir } => publish(&store, &community, &dir),
                AssetsCommand::Ls { community, json } => assets_ls(&store, &community, json),
                AssetsCommand::Get {
                    community,
                    path,
                    output,
                } => assets_get(&store, &community, &path, output.as_deref()),
            }
        }
        FeedCommand::Feed {
            community,
            last,
            json,
            comments,
            page,
        } => feed(
            &open_store(storage)?,
            &community,
            last,
            json,
            comments,
            page,
        ),
        FeedCommand::Thread {
            community,
            post_id,
            json,
        } => thread(&open_store(storage)?, &community, &post_id, json),
    }
}

fn open_store(storage: &StorageArgs) -> anyhow::Result<Logs> {
    let dir = storage.dir()?;
    Logs::open(&dir).with_context(|| format!("cannot open the store {}", dir.display()))
}

/// The store itself, for commands that need it to themselves (creating logs).
fn own_store<'a>(logs: &'a Logs, what: &str) -> anyhow::Result<&'a Store> {
    match logs.store() {
        Some(store) => Ok(store),
        None => bail!(
            "{what} needs the store to itself, and a daemon is running on it: stop `peerhost \
             serve`, run this, then start it again"
        ),
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A community opened from the store: its descriptor log and latest descriptor.
struct Community {
    query: String,
    key: Key,
    log: Log,
    /// The latest descriptor entry (kept whole: unknown fields survive an update)…
    entry: Entry,
    /// …and its descriptor.
    desc: Descriptor,
}

impl Community {
    fn open(store: &Logs, query: &str) -> anyhow::Result<Self> {
        if !store.is_name(query) {
            let key = Key::parse(query).map_err(|e| {
                anyhow::anyhow!("{e}, or the name of a local community (see `peerhost log list`)")
            })?;
            if !store.contains(&key)? {
                bail!(
                    "community {query} is not in this store: follow it first (with the network), \
                     or pass the --storage that holds it"
                );
            }
        }
        let mut log = store.log(query)?;
        let key = log.key();
        let (found, notes) = read::descriptor(&mut log)?;
        let Some((desc, entry)) =
            found.and_then(|(_, e)| read::as_descriptor(&e).cloned().map(|d| (d, e)))
        else {
            bail!(
                "log {query} holds no community descriptor (length {}): is it a community key? \
                 Create one with `peerhost community create NAME`",
                log.length()
            );
        };
        warn_notes(&format!("{query} (descriptor log)"), &notes);
        Ok(Self {
            query: query.to_owned(),
            key,
            log,
            entry,
            desc,
        })
    }

    fn descriptor(&self) -> &Descriptor {
        &self.desc
    }

    /// Open one of the community's logs.
    fn open_log(&self, store: &Logs, part: Part, write: bool) -> anyhow::Result<Log> {
        let which = part.name();
        let Some(key) = part.key_in(self.descriptor()) else {
            bail!("community {} has no {which} log", self.query);
        };
        if !store.contains(&key)? {
            bail!(
                "the {which} log of community {} ({}) is not in this store: follow the community \
                 first (with the network)",
                self.query,
                key.to_z32()
            );
        }
        let core = store.log(&key.to_hex())?;
        if write && !core.writable() {
            bail!(
                "community {} is read-only here (no secret key for its {which} log): run this on \
                 the store that created it",
                self.query
            );
        }
        Ok(core)
    }

    /// Append an updated descriptor (unknown fields of the current one are kept).
    fn update(&mut self, change: impl FnOnce(&mut Descriptor) -> bool) -> anyhow::Result<bool> {
        let Some(entry) = community::updated_descriptor(&self.entry, now_us(), change) else {
            return Ok(false);
        };
        let Some(Kind::Descriptor(d)) = entry.kind() else {
            return Ok(false);
        };
        if !self.log.writable() {
            bail!(
                "community {} is read-only here (no secret key for its descriptor log)",
                self.query
            );
        }
        let desc = d.clone();
        self.log.append(&[entry.encode()?])?;
        self.entry = entry;
        self.desc = desc;
        Ok(true)
    }
}

fn warn_notes(what: &str, notes: &Notes) {
    for s in &notes.skipped {
        eprintln!("warning: {what}: skipped {s}");
    }
    if notes.skipped_total > notes.skipped.len() as u64 {
        eprintln!(
            "warning: {what}: {} more blocks skipped",
            notes.skipped_total - notes.skipped.len() as u64
        );
    }
    if notes.missing_total > 0 {
        eprintln!(
            "warning: {what}: {} blocks not held locally (first: {:?})",
            notes.missing_total,
            notes.missing.first()
        );
    }
}

fn create(
    logs: &Logs,
    name: &str,
    title: Option<String>,
    description: String,
    app: &crate::app::AppArgs,
) -> anyhow::Result<()> {
    community::check_name(name)?;
    let source = app.source()?;
    let store = own_store(logs, "creating a community")?;
    let mut created = community::create(store, name, title, description, now_us())?;
    println!("{}", created.key.to_z32());
    eprintln!(
        "created community {name}: give readers the key above (logs {name}, {name}.posts, \
         {name}.comments, {name}.assets, {name}.index)"
    );
    if let Some(source) = source {
        let what = source.describe();
        let summary = publish_to(&mut created.assets, source.dir())
            .with_context(|| format!("cannot publish the web app {what}"))?;
        eprintln!("web app: {what}: {summary}");
        if matches!(source, crate::app::AppSource::Embedded(_)) {
            eprintln!("warning: {}", crate::app::without_runtime_hint(name));
        }
    }
    Ok(())
}

fn key_text(bytes: &[u8]) -> Value {
    match <[u8; 32]>::try_from(bytes) {
        Ok(k) => Value::String(Key(k).to_z32()),
        Err(_) => Value::Null,
    }
}

fn info(store: &Logs, query: &str, json: bool) -> anyhow::Result<()> {
    let c = Community::open(store, query)?;
    let d = c.descriptor();
    let mut lengths = BTreeMap::new();
    for part in Part::NAMED {
        let length = c.open_log(store, part, false).ok().map(|l| l.length());
        lengths.insert(part.name(), length);
    }
    if json {
        let v = json!({
            "key": c.key.to_z32(),
            "name": d.name,
            "title": d.title,
            "description": d.description,
            "origin": d.origin,
            "updated": format_rfc3339(d.time_us),
            "descriptorLength": c.log.length(),
            "writable": c.log.writable(),
            "logs": {
                "posts": { "key": key_text(&d.posts), "length": lengths["posts"] },
                "comments": { "key": key_text(&d.comments), "length": lengths["comments"] },
                "assets": { "key": key_text(&d.assets), "length": lengths["assets"] },
                "index": { "key": key_text(&d.index), "length": lengths["index"] },
            },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("community:   {}", c.key.to_z32());
        println!("name:        {}", safe(&d.name));
        println!("title:       {}", safe(&d.title));
        if !d.origin.is_empty() {
            println!("origin:      {}", safe(&d.origin));
        }
        println!("updated:     {}", format_rfc3339(d.time_us));
        for (which, bytes) in [
            ("posts", &d.posts),
            ("comments", &d.comments),
            ("assets", &d.assets),
            ("index", &d.index),
        ] {
            let key = key_text(bytes);
            let length = match lengths[which] {
                Some(n) => format!("{n} blocks"),
                None => "not in this store".to_owned(),
            };
            println!(
                "{which:<9}    {} ({length})",
                key.as_str().unwrap_or("none")
            );
        }
        if !d.description.is_empty() {
            println!("\n{}", safe_lines(&d.description));
        }
    }
    Ok(())
}

/// `feed --last N`: 0 would print nothing, so it is refused (issue 16 item 7).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("0 posts shows nothing: give at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `post --body-file PATH` (`-`: stdin): the whole file, which must be UTF-8.
fn read_body(path: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read the body from stdin")?;
    } else {
        bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the body from {}", path.display()))?;
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the body in {} is not UTF-8 (byte {}): convert it first",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

fn post(
    store: &Logs,
    query: &str,
    title: String,
    body: String,
    link: Option<String>,
    author: Option<String>,
) -> anyhow::Result<()> {
    let c = Community::open(store, query)?;
    let mut posts = c.open_log(store, Part::Posts, true)?;
    let id = peerhost_feed::new_id(&posts.key().0, posts.length());
    let entry = Entry::from(Post {
        id: id.clone(),
        author: author.map(|name| peerhost_feed::Author {
            name,
            ..Default::default()
        }),
        title,
        body,
        link: link.unwrap_or_default(),
        published_us: now_us(),
        ..Default::default()
    });
    let block = entry
        .encode()
        .context("cannot publish this post: shorten it")?;
    let length = posts.append(&[block])?;
    println!("{id}");
    eprintln!("posted to {query} (posts log block {})", length - 1);
    // One open handle per log in a process: the index reopens it.
    drop(posts);
    update_index(store, &c, false)
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(bytes)
}

fn append_entries(log: &mut Log, entries: &[Entry]) -> anyhow::Result<()> {
    for batch in entries.chunks(BATCH_ENTRIES) {
        let blocks = batch
            .iter()
            .map(Entry::encode)
            .collect::<Result<Vec<_>, _>>()?;
        log.append(&blocks)?;
    }
    Ok(())
}

/// The posts or comments log of an import, with what it holds, read once on first use.
struct Target {
    which: Part,
    log: Option<(Log, Seen)>,
}

impl Target {
    fn apply(
        &mut self,
        c: &Community,
        store: &Logs,
        items: Vec<Item>,
        now: u64,
    ) -> anyhow::Result<Stats> {
        let (log, seen) = match &mut self.log {
            Some(open) => open,
            None => {
                let mut log = c.open_log(store, self.which, true)?;
                let (seen, notes) = Seen::scan(&mut log)?;
                warn_notes(&format!("{} log", self.which.name()), &notes);
                self.log.insert((log, seen))
            }
        };
        let (entries, stats) = plan(seen, items, now);
        append_entries(log, &entries)?;
        Ok(stats)
    }
}

fn import(
    store: &Logs,
    query: &str,
    files: &[PathBuf],
    instance: Option<String>,
) -> anyhow::Result<()> {
    let mut c = Community::open(store, query)?;
    let mut posts = Target {
        which: Part::Posts,
        log: None,
    };
    let mut comments = Target {
        which: Part::Comments,
        log: None,
    };
    let now = now_us();
    for path in files {
        let name = path.display();
        let doc =
            Document::parse(&read_input(path)?).with_context(|| format!("cannot import {name}"))?;
        let Some(host) = instance
            .clone()
            .or_else(|| peerhost_feed::lemmy::host(&c.descriptor().origin))
            .or_else(|| doc.instance())
        else {
            bail!(
                "{name}: cannot tell which Lemmy instance this comes from (no local item): \
                 pass --instance HOST"
            );
        };
        let batch = doc.batch(&host);
        for w in &batch.warnings {
            eprintln!("warning: {name}: {w}");
        }
        if let Some(info) = &batch.community {
            let changed = c.update(|d| info.apply(d))?;
            println!(
                "{name}: community {}: {}",
                info.name,
                if changed {
                    "descriptor updated"
                } else {
                    "unchanged"
                }
            );
        }
        for (target, items, what) in [
            (&mut posts, batch.posts, "posts"),
            (&mut comments, batch.comments, "comments"),
        ] {
            if items.is_empty() {
                continue;
            }
            let n = items.len();
            let s = target.apply(&c, store, items, now)?;
            println!(
                "{name}: {n} {what}: {} new, {} edited, {} deleted, {} restored, {} unchanged",
                s.new, s.edited, s.deleted, s.restored, s.unchanged
            );
        }
    }
    // One open handle per log in a process: the index reopens them.
    drop((posts, comments));
    update_index(store, &c, true)
}

fn feed(
    store: &Logs,
    query: &str,
    last: usize,
    json: bool,
    with_comments: bool,
    page: Option<usize>,
) -> anyhow::Result<()> {
    let c = Community::open(store, query)?;
    let mut posts_log = c.open_log(store, Part::Posts, false)?;
    let posts = match page {
        Some(0) => bail!("pages are numbered from 1 (--page 1 is the latest 20 posts)"),
        Some(n) => page_posts(store, &c, &mut posts_log, n)?,
        None => {
            let (posts, notes) = read::latest_posts(&mut posts_log, last)?;
            warn_notes("posts log", &notes);
            posts
        }
    };
    let all_comments = if with_comments {
        let mut log = c.open_log(store, Part::Comments, false)?;
        let (views, notes) = read::comments(&mut log)?;
        warn_notes("comments log", &notes);
        views
    } else {
        Vec::new()
    };
    let mut by_post = CommentsByPost::new();
    for v in &all_comments {
        by_post.entry(&v.comment.post).or_default().push(v);
    }
    let comments = with_comments.then_some(&by_post);
    let mut out = std::io::stdout().lock();
    print_posts(&mut out, c.descriptor(), &c.key, &posts, comments, json)?;
    Ok(())
}
