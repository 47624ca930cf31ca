//! The community's index log (`protocol/feeds.md`, "The index log"): keeping it up to date,
//! `community reindex`, `feed --page` and `thread`.

use super::*;
use crate::posts::author_name;

/// The community's index log, if its descriptor names one held in this store.
pub(super) fn open_index(store: &Logs, c: &Community) -> anyhow::Result<Option<Log>> {
    let Some(key) = Part::Index.key_in(c.descriptor()) else {
        return Ok(None);
    };
    if !store.contains(&key)? {
        return Ok(None);
    }
    Ok(Some(store.log(&key.to_hex())?))
}

/// A progress bar on stderr for indexing (drawn only on a terminal).
pub(super) fn index_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("indexing {bar:30} {pos}/{len} blocks")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Bring the community's index up to its posts and comments logs (after a write). A
/// community without an index log is left alone; one whose index cannot be written here is
/// read through its logs until `community reindex`.
pub(super) fn update_index(store: &Logs, c: &Community, progress: bool) -> anyhow::Result<()> {
    let Some(mut ix) = open_index(store, c)? else {
        return Ok(());
    };
    if !ix.writable() {
        return Ok(());
    }
    let mut posts = c.open_log(store, Part::Posts, false)?;
    let mut comments = c.open_log(store, Part::Comments, false)?;
    let bar = index_bar(progress && std::io::stderr().is_terminal());
    let r = index::catch_up(&mut ix, &mut posts, &mut comments, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    if let Err(e) = r {
        eprintln!(
            "warning: the index of {} was not updated ({e}); readers use the logs meanwhile: \
             rebuild it with `peerhost community reindex {}`",
            c.query, c.query
        );
    }
    Ok(())
}

pub(super) fn reindex(logs: &Logs, query: &str) -> anyhow::Result<()> {
    let store = own_store(logs, "rebuilding an index")?;
    let mut c = Community::open(logs, query)?;
    if !c.log.writable() {
        bail!(
            "community {query} is read-only here (no secret key for its descriptor log): run this \
             on the store that created it"
        );
    }
    let mut posts = c.open_log(logs, Part::Posts, false)?;
    let mut comments = c.open_log(logs, Part::Comments, false)?;
    let mut core = match Part::Index.key_in(c.descriptor()) {
        Some(key) => {
            let mut core = store.open_core(&key.to_hex()).with_context(|| {
                format!(
                    "the index log of {query} ({}) is not in this store",
                    key.to_z32()
                )
            })?;
            if !core.writable() {
                bail!("the index log of {query} is read-only here (no secret key for it)");
            }
            core.truncate(0)?;
            core
        }
        None => {
            let name = Part::Index.log_name(&c.descriptor().name);
            if let Some(key) = store.name_key(&name)? {
                bail!(
                    "a log named {name} already exists ({}) but the community does not name it: \
                     rename or remove it, then run this again",
                    key.to_z32()
                );
            }
            let core = store.create(&name, peerhost_store::CreateOptions::default())?;
            let key = core.key();
            c.update(|d| {
                d.index = key.0.to_vec();
                true
            })?;
            eprintln!(
                "created the index log {name} ({}) and named it in the descriptor",
                key.to_z32()
            );
            core
        }
    };
    let bar = index_bar(std::io::stderr().is_terminal());
    let caught = index::catch_up(&mut core, &mut posts, &mut comments, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    println!(
        "indexed {} blocks of the posts and comments logs of {query} in {} batches: the index \
         log has {} blocks",
        caught.blocks,
        caught.batches,
        core.length()
    );
    Ok(())
}

/// Why the index could not answer, as a warning, before the logs are scanned instead.
pub(super) fn index_fallback(c: &Community, e: &IndexError) {
    eprintln!(
        "warning: the index of {} cannot answer ({e}): reading the logs instead",
        c.query
    );
}

/// Page `n` of the posts: through the index (plus the posts it has not indexed yet) when there
/// is one, by scanning the posts log otherwise.
pub(super) fn page_posts(
    store: &Logs,
    c: &Community,
    posts: &mut Log,
    n: usize,
) -> anyhow::Result<Vec<read::PostView>> {
    if let Some(ix) = open_index(store, c)? {
        let mut view = index::View::new(ix);
        let r = view
            .absorb_posts(posts, u64::MAX)
            .and_then(|_| index::page(&mut view, posts, n, index::PAGE));
        match r {
            Ok(v) => return Ok(v),
            Err(e) => index_fallback(c, &e),
        }
    }
    let (v, notes) = index::page_scan(posts, n, index::PAGE)?;
    warn_notes("posts log", &notes);
    Ok(v)
}

/// Post `id` and its comments in thread order, through the index or the logs.
pub(super) fn read_thread(
    store: &Logs,
    c: &Community,
    id: &str,
) -> anyhow::Result<Option<(read::PostView, Vec<CommentView>)>> {
    let mut posts = c.open_log(store, Part::Posts, false)?;
    let mut comments = c.open_log(store, Part::Comments, false)?;
    if let Some(ix) = open_index(store, c)? {
        let mut view = index::View::new(ix);
        let r = view
            .absorb(&mut posts, &mut comments, u64::MAX)
            .and_then(|_| index::thread(&mut view, &mut posts, &mut comments, id));
        match r {
            Ok(v) => return Ok(v),
            Err(e) => index_fallback(c, &e),
        }
    }
    let (v, notes) = index::thread_scan(&mut posts, &mut comments, id)?;
    warn_notes("posts and comments logs", &notes);
    Ok(v)
}

/// For each comment of a thread (in thread order), the position of the comment it is shown
/// under (`None`: the post) and its depth: by `parent` id, at most `index::MAX_DEPTH` deep.
pub(super) fn nesting(comments: &[CommentView]) -> Vec<(Option<usize>, usize)> {
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out: Vec<(Option<usize>, usize)> = Vec::with_capacity(comments.len());
    for (i, c) in comments.iter().enumerate() {
        let mut parent = at.get(c.comment.parent.as_str()).copied();
        // Deeper than the index keys: shown beside its deepest ancestor that fits.
        while let Some(p) = parent {
            if out[p].1 + 1 < index::MAX_DEPTH {
                break;
            }
            parent = out[p].0;
        }
        let depth = parent.map_or(0, |p| out[p].1 + 1);
        out.push((parent, depth));
        at.insert(&c.comment.id, i);
    }
    out
}

pub(super) fn thread(store: &Logs, query: &str, id: &str, json: bool) -> anyhow::Result<()> {
    let c = Community::open(store, query)?;
    let Some((post, comments)) = read_thread(store, &c, id)? else {
        bail!(
            "community {query} has no post {id:?} (or it was deleted): list them with `peerhost \
             feed {query} --json`"
        );
    };
    let nest = nesting(&comments);
    if json {
        // Built from the leaves up (children come after their parent): no recursion.
        let mut replies: Vec<Vec<Value>> = vec![Vec::new(); comments.len()];
        let mut top = Vec::new();
        for (i, cv) in comments.iter().enumerate().rev() {
            let mut v = serde_json::to_value(community::CommentJson::of(cv))?;
            v["replies"] = Value::Array(std::mem::take(&mut replies[i]));
            match nest[i].0 {
                Some(p) => replies[p].insert(0, v),
                None => top.insert(0, v),
            }
        }
        let mut v = serde_json::to_value(PostJson::of(&post))?;
        v["comments"] = Value::Array(top);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let d = c.descriptor();
    let p = &post.post;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", safe(&p.title))?;
    let mut meta = format!(
        "  by {} · {}",
        safe(&author_name(p.author.as_ref(), &d.name)),
        format_rfc3339(p.published_us)
    );
    if !p.link.is_empty() {
        meta.push_str(&format!(" · {}", safe(&p.link)));
    }
    if post.edited_us > 0 || p.updated_us > 0 {
        meta.push_str(" · edited");
    }
    writeln!(out, "{meta}")?;
    for line in p.body.lines() {
        writeln!(out, "  | {}", safe(line))?;
    }
    writeln!(out, "\n{} comments", comments.len())?;
    for (cv, (_, depth)) in comments.iter().zip(&nest) {
        let pad = "  ".repeat(depth + 1);
        let cm = &cv.comment;
        writeln!(out)?;
        if cv.deleted.is_some() {
            writeln!(out, "{pad}[deleted] · {}", format_rfc3339(cm.published_us))?;
            continue;
        }
        let edited = if cv.edited_us > 0 || cm.updated_us > 0 {
            " · edited"
        } else {
            ""
        };
        writeln!(
            out,
            "{pad}{} · {}{edited}",
            safe(&author_name(cm.author.as_ref(), &d.name)),
            format_rfc3339(cm.published_us)
        )?;
        for line in cm.body.lines() {
            writeln!(out, "{pad}| {}", safe(line))?;
        }
    }
    Ok(())
}
