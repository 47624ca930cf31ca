//! The community index log as a person uses it (issue 13): `feed --page N`, `thread`,
//! `community reindex`, on a real store with a few hundred imported posts and a threaded
//! comment tree, against what the logs alone say.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use peerhost_feed::community::Part;
use peerhost_feed::index::View;
use peerhost_store::Store;
use serde_json::{Value, json};

fn run(storage: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("peerhost")
        .unwrap()
        .args(args)
        .arg("--storage")
        .arg(storage)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_of(storage: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(run(storage, args))).unwrap()
}

const POSTS: i64 = 300;

fn person(name: &str) -> Value {
    json!({ "name": name, "actor_id": format!("https://example.test/u/{name}") })
}

/// Lemmy `post/list` JSON: posts 1..=300, one minute apart, by two authors.
fn posts_json() -> Value {
    let posts: Vec<Value> = (1..=POSTS)
        .map(|i| {
            json!({
                "post": {
                    "id": i,
                    "name": format!("Post {i}"),
                    "body": format!("Body of post {i}"),
                    "published": format!("2026-01-01T{:02}:{:02}:00Z", i / 60, i % 60),
                    "ap_id": format!("https://example.test/post/{i}"),
                    "local": true,
                },
                "creator": person(if i % 2 == 0 { "ann" } else { "bob" }),
            })
        })
        .collect();
    json!({ "posts": posts })
}

/// The comment tree of post 7 (Lemmy paths), plus a comment on post 8. Listed newest first
/// like Lemmy does; the import appends oldest first.
///
/// ```text
/// 101 top
///   102 reply to 101
///     103 reply to 102
///   105 reply to 101
/// 104 second top (deleted)
///   106 reply to 104
/// ```
fn comments_json() -> Value {
    let c = |id: i64, post: i64, path: &str, minute: i64, deleted: bool| {
        json!({
            "comment": {
                "id": id,
                "post_id": post,
                "content": format!("comment {id}"),
                "published": format!("2026-02-01T00:{minute:02}:00Z"),
                "ap_id": format!("https://example.test/comment/{id}"),
                "local": true,
                "deleted": deleted,
                "path": path,
            },
            "creator": person("cat"),
        })
    };
    json!({ "comments": [
        c(107, 8, "0.107", 7, false),
        c(106, 7, "0.104.106", 6, false),
        c(105, 7, "0.101.105", 5, false),
        c(104, 7, "0.104", 4, true),
        c(103, 7, "0.101.102.103", 3, false),
        c(102, 7, "0.101.102", 2, false),
        c(101, 7, "0.101", 1, false),
    ]})
}

fn id(post: i64) -> String {
    format!("lemmy:example.test/post/{post}")
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every (key, value) of the community's index log, read from the store.
fn index_entries(storage: &Path) -> (u64, Vec<peerhost_feed::index::KeyValue>) {
    let store = Store::open(storage).unwrap();
    let core = store.open_core(&Part::Index.log_name("lc")).unwrap();
    let length = core.length();
    let mut view = View::new(core);
    (length, view.prefix(&[], false, usize::MAX).unwrap())
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(run(s, &["community", "create", "lc"]));
    let posts = s.join("posts.json");
    std::fs::write(&posts, posts_json().to_string()).unwrap();
    let comments = s.join("comments.json");
    std::fs::write(&comments, comments_json().to_string()).unwrap();
    ok(run(
        s,
        &[
            "import",
            "lc",
            posts.to_str().unwrap(),
            comments.to_str().unwrap(),
        ],
    ));
    dir
}

#[test]
fn pages_come_from_the_index_and_equal_the_logs() {
    let dir = setup();
    let s = dir.path();
    let info = json_of(s, &["community", "info", "lc", "--json"]);
    assert_eq!(info["logs"]["posts"]["length"], POSTS);
    assert!(info["logs"]["index"]["length"].as_u64().unwrap() > POSTS as u64);

    // Page 3 = posts 41-60 from the newest: 260 down to 241.
    let page3 = json_of(s, &["feed", "lc", "--page", "3", "--json"]);
    let want: Vec<String> = (241..=260).rev().map(id).collect();
    assert_eq!(ids(&page3), want);
    assert_eq!(page3[0]["title"], "Post 260");
    assert_eq!(page3[0]["author"]["name"], "ann");
    // The same as the latest 60 read from the end of the posts log.
    let last60 = json_of(s, &["feed", "lc", "--last", "60", "--json"]);
    assert_eq!(ids(&page3), ids(&last60)[40..60].to_vec());
    // Page 1 is the latest 20; past the end, nothing.
    let page1 = json_of(s, &["feed", "lc", "--page", "1", "--json"]);
    assert_eq!(ids(&page1), ids(&last60)[..20].to_vec());
    let page16 = json_of(s, &["feed", "lc", "--page", "16", "--json"]);
    assert!(page16.as_array().unwrap().is_empty());
    let page15 = json_of(s, &["feed", "lc", "--page", "15", "--json"]);
    assert_eq!(ids(&page15), (1..=20).rev().map(id).collect::<Vec<_>>());
    // The text view says which page.
    let text = ok(run(s, &["feed", "lc", "--page", "3"]));
    assert!(
        text.contains("Post 260") && text.contains("Post 241"),
        "{text}"
    );
    assert!(
        !text.contains("Post 261") && !text.contains("Post 240"),
        "{text}"
    );

    // A post after the import is indexed by `post` and is page 1's first.
    let new = ok(run(s, &["post", "lc", "--title", "Fresh"]));
    let page1 = json_of(s, &["feed", "lc", "--page", "1", "--json"]);
    assert_eq!(page1[0]["id"], new.trim());
    assert_eq!(page1[1]["id"], id(300));
}

#[test]
fn a_thread_prints_its_tree_in_order() {
    let dir = setup();
    let s = dir.path();
    let text = ok(run(s, &["thread", "lc", &id(7)]));
    let order: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("| comment ") || l.contains("[deleted]"))
        .collect();
    assert_eq!(
        order,
        [
            "  | comment 101",
            "    | comment 102",
            "      | comment 103",
            "    | comment 105",
            "  [deleted] · 2026-02-01T00:04:00Z",
            "    | comment 106",
        ],
        "{text}"
    );
    assert!(
        text.starts_with("Post 7\n  by bob · 2026-01-01T00:07:00Z"),
        "{text}"
    );
    assert!(text.contains("6 comments"), "{text}");
    assert!(text.contains("  cat · 2026-02-01T00:01:00Z"), "{text}");

    let j = json_of(s, &["thread", "lc", &id(7), "--json"]);
    assert_eq!(j["id"], id(7));
    let top = j["comments"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top[0]["body"], "comment 101");
    assert_eq!(top[0]["author"]["name"], "cat");
    assert_eq!(top[0]["replies"][0]["body"], "comment 102");
    assert_eq!(top[0]["replies"][0]["replies"][0]["body"], "comment 103");
    assert_eq!(top[0]["replies"][1]["body"], "comment 105");
    assert_eq!(top[1]["deleted"], true);
    assert_eq!(top[1]["body"], "");
    assert_eq!(top[1]["replies"][0]["body"], "comment 106");

    // No such post: one line that says what to do.
    let out = run(s, &["thread", "lc", "lemmy:example.test/post/999"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: community lc has no post"), "{err}");
}

#[test]
fn reindex_rebuilds_the_same_index() {
    let dir = setup();
    let s = dir.path();
    let (length, before) = index_entries(s);
    let thread_before = ok(run(s, &["thread", "lc", &id(7), "--json"]));
    let out = ok(run(s, &["community", "reindex", "lc"]));
    // 300 posts, 7 comments and the deletion of one.
    assert!(out.contains("indexed 308 blocks"), "{out}");
    let (length_after, after) = index_entries(s);
    assert_eq!(before, after);
    assert!(before.len() > 600, "{}", before.len());
    // Built in fewer batches than import + post made it: no more blocks than before.
    assert!(length_after <= length, "{length_after} > {length}");
    assert_eq!(
        ok(run(s, &["thread", "lc", &id(7), "--json"])),
        thread_before
    );
}

#[test]
fn a_community_without_an_index_is_scanned_then_reindexed() {
    let dir = setup();
    let s = dir.path();
    let page_indexed = json_of(s, &["feed", "lc", "--page", "2", "--json"]);
    let thread_indexed = json_of(s, &["thread", "lc", &id(7), "--json"]);
    // Drop the index from the descriptor, as a community made before it would be.
    {
        let store = Store::open(s).unwrap();
        let mut log = store.open_core("lc").unwrap();
        let (found, _) = peerhost_feed::read::descriptor(&mut log).unwrap();
        let (_, entry) = found.unwrap();
        let e = peerhost_feed::community::updated_descriptor(&entry, 1, |d| {
            d.index.clear();
            true
        })
        .unwrap();
        log.append(&[e.encode().unwrap()]).unwrap();
    }
    assert_eq!(
        json_of(s, &["feed", "lc", "--page", "2", "--json"]),
        page_indexed
    );
    assert_eq!(
        json_of(s, &["thread", "lc", &id(7), "--json"]),
        thread_indexed
    );
    // The old index log still holds the name: reindex says so.
    let out = run(s, &["community", "reindex", "lc"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("a log named lc.index already exists"), "{err}");
}

/// A daemon that starts on a store whose index lags its logs (here: an import stopped after
/// the posts, before the comments' index batch was written) brings the index up to date
/// before it takes commands: the same entries as an index written in one go.
#[test]
fn a_daemon_brings_a_lagging_index_up_to_date_when_it_starts() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(run(s, &["community", "create", "lc"]));
    let posts = s.join("posts.json");
    std::fs::write(&posts, posts_json().to_string()).unwrap();
    let comments = s.join("comments.json");
    std::fs::write(&comments, comments_json().to_string()).unwrap();
    ok(run(s, &["import", "lc", posts.to_str().unwrap()]));
    let (after_posts, _) = index_entries(s);
    ok(run(s, &["import", "lc", comments.to_str().unwrap()]));
    let (whole, want) = index_entries(s);
    assert!(whole > after_posts);
    // The comments' index batch lost: the index lags the comments log.
    {
        let store = Store::open(s).unwrap();
        let mut core = store.open_core(&Part::Index.log_name("lc")).unwrap();
        core.truncate(after_posts).unwrap();
        let mut view = View::new(core);
        assert_eq!(view.position().unwrap(), (POSTS as u64, 0));
    }

    // The daemon (a real process) catches up before it prints its addresses.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_peerhost"))
        .args([
            "serve",
            "--no-dht",
            "--listen-tcp",
            "127.0.0.1:0",
            "--storage",
        ])
        .arg(s)
        .env("PEERHOST_LOG", "warn")
        .env_remove("PEERHOST_BOOTSTRAP")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("127.0.0.1"), "{line:?}");
    // Through the daemon, the thread reads as before.
    let thread = json_of(s, &["thread", "lc", &id(7), "--json"]);
    assert_eq!(thread["comments"].as_array().unwrap().len(), 2);
    let _ = child.kill();
    let _ = child.wait();

    let (length, got) = index_entries(s);
    assert_eq!(length, whole, "the index log's length after catching up");
    assert_eq!(got, want);
    let store = Store::open(s).unwrap();
    let comments = store.open_core(&Part::Comments.log_name("lc")).unwrap();
    let core = store.open_core(&Part::Index.log_name("lc")).unwrap();
    assert_eq!(
        View::new(core).position().unwrap(),
        (POSTS as u64, comments.length())
    );
}
