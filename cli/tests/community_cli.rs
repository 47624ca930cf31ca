//! The community commands as a person uses them: `community create`, `post`, `import`,
//! `assets publish | ls | get`, `feed`, on a real store in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

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

/// A failure must be exactly one `error: …` line on stderr, and no panic.
fn one_line_error(out: Output) -> String {
    assert!(
        !out.status.success(),
        "command succeeded but should have failed"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

fn json(storage: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(run(storage, args))).unwrap()
}

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/feed/tests/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn create_post_and_read_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    let out = run(s, &["community", "create", "demo", "--title", "Demo town"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let key = ok(out).trim().to_owned();
    assert_eq!(key.len(), 52, "z-base32 key: {key}");
    assert!(stderr.contains("created community demo"), "{stderr}");

    let info = json(s, &["community", "info", "demo", "--json"]);
    assert_eq!(info["key"], key.as_str());
    assert_eq!(info["title"], "Demo town");
    assert_eq!(info["logs"]["posts"]["length"], 0);
    assert_eq!(info["descriptorLength"], 1);

    let id1 = ok(run(
        s,
        &["post", "demo", "--title", "Hello", "--body", "First *post*"],
    ));
    let id2 = ok(run(
        s,
        &[
            "post",
            "demo",
            "--title",
            "Second",
            "--link",
            "https://example.org/",
            "--author",
            "ferris",
        ],
    ));
    assert!(id1.starts_with("ph:") && id1.trim().len() == 35, "{id1}");
    assert_ne!(id1, id2);

    // By name and by key, newest first.
    for community in ["demo", key.as_str()] {
        let feed = json(s, &["feed", community, "--last", "5", "--json"]);
        let posts = feed.as_array().unwrap();
        assert_eq!(posts.len(), 2);
        assert_eq!(posts[0]["title"], "Second");
        assert_eq!(posts[0]["id"], id2.trim());
        assert_eq!(posts[0]["link"], "https://example.org/");
        assert_eq!(posts[0]["author"]["name"], "ferris");
        assert_eq!(posts[0]["index"], 1);
        assert_eq!(posts[1]["title"], "Hello");
        assert_eq!(posts[1]["body"], "First *post*");
        assert_eq!(posts[1]["author"], Value::Null);
        assert!(posts[1]["published"].as_str().unwrap().ends_with('Z'));
    }
    let feed = json(s, &["feed", "demo", "--last", "1", "--json"]);
    assert_eq!(feed.as_array().unwrap().len(), 1);
    assert_eq!(feed[0]["title"], "Second");

    let text = ok(run(s, &["feed", "demo", "--last", "5"]));
    assert!(text.starts_with("Demo town ("), "{text}");
    assert!(
        text.contains("  Second\n  by ferris · https://example.org/"),
        "{text}"
    );
    assert!(text.contains("  | First *post*"), "{text}");

    // The same name again, an unknown community, a bad key.
    let e = one_line_error(run(s, &["community", "create", "demo"]));
    assert!(e.contains("already exists"), "{e}");
    let e = one_line_error(run(s, &["feed", "nosuch", "--last", "1"]));
    assert!(e.contains("or the name of a local community"), "{e}");
    let absent = "yryyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy";
    let e = one_line_error(run(s, &["feed", absent, "--last", "1"]));
    assert!(e.contains("is not in this store"), "{e}");
    let e = one_line_error(run(s, &["post", "demo.posts", "--title", "x"]));
    assert!(e.contains("holds no community descriptor"), "{e}");
}

#[test]
fn a_malformed_block_in_the_posts_log_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(run(s, &["community", "create", "c"]));
    ok(run(s, &["post", "c", "--title", "before"]));
    // Signed by the community, but not an entry: `log append` refuses that (issue 16), so it
    // is written through the store, as another implementation could.
    {
        let store = peerhost_store::Store::open(s).unwrap();
        let mut posts = store.open_core("c.posts").unwrap();
        posts.append(&[b"\x08\x07 not an entry".to_vec()]).unwrap();
    }
    ok(run(s, &["post", "c", "--title", "after"]));

    let out = run(s, &["feed", "c", "--last", "10", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let feed: Value = serde_json::from_str(&ok(out)).unwrap();
    let titles: Vec<&str> = feed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["after", "before"]);
    assert!(
        stderr.starts_with("warning: posts log: skipped block 1: "),
        "{stderr}"
    );
}

#[test]
fn import_lemmy_json_twice() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(run(s, &["community", "create", "rp"]));
    let out = ok(run(
        s,
        &[
            "import",
            "rp",
            &data("community.json"),
            &data("posts.json"),
            &data("comments.json"),
        ],
    ));
    assert!(
        out.contains("community.json: community rust_p2p: descriptor updated"),
        "{out}"
    );
    assert!(
        out.contains("posts.json: 30 posts: 30 new, 0 edited, 0 deleted, 0 restored, 0 unchanged"),
        "{out}"
    );
    assert!(
        out.contains(
            "comments.json: 60 comments: 53 new, 0 edited, 7 deleted, 0 restored, 0 unchanged"
        ),
        "{out}"
    );
    let info = json(s, &["community", "info", "rp", "--json"]);
    assert_eq!(info["name"], "rust_p2p");
    assert_eq!(info["title"], "Rust P2P networking");
    assert_eq!(info["origin"], "https://example-lemmy.test/c/rust_p2p");
    assert_eq!(info["logs"]["posts"]["length"], 30);
    assert_eq!(info["logs"]["comments"]["length"], 67);

    // Again: nothing new, nothing appended.
    let out = ok(run(
        s,
        &[
            "import",
            "rp",
            &data("posts.json"),
            &data("comments.json"),
            &data("community.json"),
        ],
    ));
    assert!(
        out.contains("30 posts: 0 new, 0 edited, 0 deleted, 0 restored, 30 unchanged"),
        "{out}"
    );
    assert!(
        out.contains("60 comments: 0 new, 0 edited, 0 deleted, 0 restored, 60 unchanged"),
        "{out}"
    );
    assert!(out.contains("community rust_p2p: unchanged"), "{out}");
    let info = json(s, &["community", "info", "rp", "--json"]);
    assert_eq!(info["logs"]["posts"]["length"], 30);
    assert_eq!(info["logs"]["comments"]["length"], 67);
    assert_eq!(info["descriptorLength"], 2);

    let feed = json(s, &["feed", "rp", "--last", "3", "--json", "--comments"]);
    let posts = feed.as_array().unwrap();
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[0]["id"], "lemmy:example-lemmy.test/post/49066");
    assert_eq!(posts[0]["published"], "2026-10-17T09:01:28Z");
    assert_eq!(
        posts[0]["author"]["url"],
        "https://mbin.remote-three.test/u/swarm_sam"
    );
    // 49054 has 8 comments in the sample, 2 of them gone (kept as placeholders).
    let meta = posts
        .iter()
        .find(|p| p["id"] == "lemmy:example-lemmy.test/post/49054")
        .unwrap();
    let comments = meta["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 8);
    assert_eq!(comments.iter().filter(|c| c["deleted"] == true).count(), 2);

    // Not JSON, not Lemmy.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"hello\": 1}").unwrap();
    let e = one_line_error(run(s, &["import", "rp", bad.to_str().unwrap()]));
    assert!(e.contains("not a Lemmy API response"), "{e}");
}

#[test]
fn publish_list_and_get_assets() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("store");
    let s = s.as_path();
    let app = dir.path().join("app");
    std::fs::create_dir_all(app.join("js")).unwrap();
    std::fs::write(app.join("index.html"), b"<!doctype html><h1>hi</h1>").unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(app.join("js/app.js"), &big).unwrap();
    std::fs::write(app.join("empty.txt"), b"").unwrap();
    // Without the default app, so that the first publish is this one.
    ok(run(s, &["community", "create", "web", "--no-app"]));

    let e = one_line_error(run(s, &["assets", "ls", "web"]));
    assert!(e.contains("has no web app yet"), "{e}");

    let out = ok(run(s, &["assets", "publish", "web", app.to_str().unwrap()]));
    assert!(
        out.contains("published 3 files (3 new or changed, 200026 bytes appended)"),
        "{out}"
    );
    let ls = json(s, &["assets", "ls", "web", "--json"]);
    let files = ls.as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["empty.txt", "index.html", "js/app.js"]);
    assert_eq!(files[1]["contentType"], "text/html; charset=utf-8");
    assert_eq!(files[2]["size"], 200_000);
    assert_eq!(files[2]["blocks"], 4);
    assert_eq!(files[0]["blocks"], 0);

    let got = Command::cargo_bin("peerhost")
        .unwrap()
        .args(["assets", "get", "web", "js/app.js", "--storage"])
        .arg(s)
        .output()
        .unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, big);
    let out_file = dir.path().join("index.copy");
    ok(run(
        s,
        &[
            "assets",
            "get",
            "web",
            "/index.html",
            "-o",
            out_file.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        b"<!doctype html><h1>hi</h1>"
    );

    // Unchanged: nothing appended. One file changed: only it.
    let out = ok(run(s, &["assets", "publish", "web", app.to_str().unwrap()]));
    assert!(out.contains("nothing appended"), "{out}");
    std::fs::write(app.join("index.html"), b"<!doctype html><h1>hi again</h1>").unwrap();
    let out = ok(run(s, &["assets", "publish", "web", app.to_str().unwrap()]));
    assert!(
        out.contains("published 3 files (1 new or changed, 32 bytes appended)"),
        "{out}"
    );
    let got = ok(run(s, &["assets", "get", "web", "index.html"]));
    assert_eq!(got, "<!doctype html><h1>hi again</h1>");

    let e = one_line_error(run(s, &["assets", "get", "web", "nope.html"]));
    assert!(e.contains("no file \"nope.html\""), "{e}");
    let e = one_line_error(run(s, &["assets", "publish", "web", "/nonexistent/dir"]));
    assert!(e.contains("is not a directory"), "{e}");
}

/// Issue 17 item 7: a stranger's post, author, link, descriptor or asset path must not reach the
/// operator's terminal as escapes (OSC 52 sets the clipboard, CSI clears the screen, CR rewrites
/// the line, a right-to-left override reorders it).
#[test]
fn strangers_text_reaches_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("store");
    let s = s.as_path();
    let evil = "pwn\u{1b}]52;c;aGk=\u{7}\u{1b}[2J\rX\u{9b}1m\u{202e}olleh";
    ok(run(s, &["community", "create", "town", "--title", evil]));
    ok(run(
        s,
        &[
            "post", "town", "--title", evil, "--body", evil, "--author", evil, "--link", evil,
        ],
    ));
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("index.html"), b"hi").unwrap();
    std::fs::write(app.join("a\u{1b}[2Jb.txt"), b"x").unwrap();
    ok(run(
        s,
        &["assets", "publish", "town", app.to_str().unwrap()],
    ));

    let is_safe =
        |c: char| c == '\n' || !(c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c));
    let title = "pwn\\u{1b}]52;c;aGk=\\u{7}\\u{1b}[2J\\u{d}X\\u{9b}1m\\u{202e}olleh";
    for (args, shown) in [
        (&["feed", "town", "--last", "5"][..], title),
        (&["community", "info", "town"][..], title),
        (&["assets", "ls", "town"][..], "a\\u{1b}[2Jb.txt"),
    ] {
        let out = ok(run(s, args));
        assert!(
            out.chars().all(is_safe),
            "{args:?} printed a control: {out:?}"
        );
        assert!(out.contains(shown), "{args:?}: {out}");
    }
    // JSON keeps the text exactly (serde escapes C0 itself).
    let feed = json(s, &["feed", "town", "--last", "1", "--json"]);
    assert_eq!(feed[0]["title"], evil);
}
