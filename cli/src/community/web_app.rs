//! The community's web app: `peerhost assets publish | ls | get` and publishing a directory into an
//! app log (`protocol/feeds.md`, assets).

use super::*;

/// Every regular file under `dir`: (path relative to `dir` with `/`, full path, size), sorted
/// by relative path. Symbolic links are skipped with a warning.
pub(super) fn walk(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries =
            std::fs::read_dir(&path).with_context(|| format!("cannot list {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                bail!(
                    "{} is not a UTF-8 file name: rename it (asset paths are UTF-8)",
                    entry.path().display()
                );
            };
            let rel = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let meta = entry
                .metadata()
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            if meta.is_dir() {
                stack.push((entry.path(), rel));
            } else if meta.is_file() {
                if let Err(why) = peerhost_feed::check_path(&rel) {
                    bail!("{rel:?} cannot be published: {why}");
                }
                out.push((rel, entry.path(), meta.len()));
            } else {
                eprintln!("warning: skipped {rel} (not a regular file or directory)");
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The assets log of the community `query`.
pub(crate) fn assets_log(store: &Logs, query: &str, write: bool) -> anyhow::Result<Log> {
    Community::open(store, query)?.open_log(store, Part::Assets, write)
}

/// The app log `query` names: an app log itself (a fork), or a community's assets log.
pub(super) fn app_log(store: &Logs, query: &str, write: bool) -> anyhow::Result<Log> {
    match crate::app::plain_app_log(store, query, write)? {
        Some(log) => Ok(log),
        None => assets_log(store, query, write),
    }
}

pub(super) fn publish(store: &Logs, query: &str, dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: pass the web app's build directory",
            dir.display()
        );
    }
    let mut log = app_log(store, query, true)?;
    println!("{}", publish_to(&mut log, dir)?);
    Ok(())
}

/// Publish every file under `dir` into the app log `log`; what was done, in one line.
pub(crate) fn publish_to<L: AppendBlocks>(log: &mut L, dir: &Path) -> anyhow::Result<String> {
    let (previous, notes) = read::asset_index(log)?;
    warn_notes("assets log", &notes);
    let mut known = Known::from_index(previous.as_ref().map(|(_, i)| i));
    let files = walk(dir)?;
    if files.is_empty() {
        bail!("{} has no files to publish", dir.display());
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut new_files, mut new_bytes, mut done) = (0u64, 0u64, 0u64);
    let mut index = Vec::with_capacity(files.len());
    for (rel, path, _) in &files {
        bar.set_message(rel.clone());
        let open = || std::fs::File::open(path).with_context(|| format!("cannot read {rel}"));
        let (sha256, size) = assets::hash(open()?).with_context(|| format!("cannot read {rel}"))?;
        let content = match known.find(&sha256, size) {
            Some(content) => content,
            None => {
                let content = assets::append_content(log, open()?, |n| {
                    bar.set_position(done + n);
                })
                .with_context(|| format!("cannot publish {rel}"))?;
                if content.sha256 != sha256 || content.size != size {
                    bail!("{rel} changed while it was being published: publish again");
                }
                new_files += 1;
                new_bytes += size;
                known.add(content);
                content
            }
        };
        done += size;
        bar.set_position(done);
        index.push(content.asset(rel, assets::content_type(rel)));
    }
    bar.finish_and_clear();
    let unchanged = previous.as_ref().is_some_and(|(_, p)| p.files == index);
    if unchanged {
        return Ok(format!(
            "{} files, unchanged since the current index: nothing appended",
            index.len()
        ));
    }
    let count = index.len();
    let block = assets::index_entry(index, now_us())
        .encode()
        .with_context(|| format!("the index of {count} files is too large for one block"))?;
    let length = log
        .append_blocks(&[block])
        .map_err(|e| anyhow::anyhow!("cannot append the index: {e}"))?;
    Ok(format!(
        "published {count} files ({new_files} new or changed, {new_bytes} bytes appended); \
         index at assets block {}",
        length - 1
    ))
}

pub(super) fn current_index(store: &Logs, query: &str) -> anyhow::Result<(Log, Vec<Asset>)> {
    let mut log = app_log(store, query, false)?;
    let (found, notes) = read::asset_index(&mut log)?;
    warn_notes("assets log", &notes);
    let Some((_, index)) = found else {
        bail!("community {query} has no web app yet: publish one with `peerhost assets publish`");
    };
    Ok((log, index.files))
}

pub(super) fn assets_ls(store: &Logs, query: &str, json: bool) -> anyhow::Result<()> {
    let (_, files) = current_index(store, query)?;
    if json {
        let v: Vec<Value> = files
            .iter()
            .map(|a| {
                json!({
                    "path": a.path,
                    "contentType": a.content_type,
                    "size": a.size,
                    "sha256": hex::encode(&a.sha256),
                    "start": a.start,
                    "blocks": a.blocks,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for a in &files {
            println!(
                "{:>10}  {}  {:<28}  {}",
                a.size,
                &hex::encode(&a.sha256)[..16],
                safe(&a.content_type).to_string(),
                safe(&a.path)
            );
        }
    }
    Ok(())
}

pub(super) fn assets_get(
    store: &Logs,
    query: &str,
    path: &str,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let (mut log, files) = current_index(store, query)?;
    let path = path.trim_start_matches('/');
    let Some(asset) = files.iter().find(|a| a.path == path) else {
        bail!("no file {path:?} in the web app of {query}: list them with `peerhost assets ls`");
    };
    match output {
        Some(out) => {
            // Write beside the target, rename once the hash checks: no half-written file.
            let parent = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let mut tmp = tempfile::NamedTempFile::new_in(parent)
                .with_context(|| format!("cannot write in {}", parent.display()))?;
            assets::read_content(&mut log, asset, &mut tmp)
                .with_context(|| format!("cannot read {path}"))?;
            tmp.persist(out)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            assets::read_content(&mut log, asset, &mut lock)
                .with_context(|| format!("cannot read {path}"))?;
            lock.flush()?;
        }
    }
    Ok(())
}
