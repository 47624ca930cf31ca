//! The default app in new communities and `peerhost app fork` (issue 12), as a person runs
//! them: real `peerhost` processes on a store in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `peerhost ARGS --storage STORAGE`, run in `cwd`.
fn run_in(cwd: &Path, storage: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("peerhost")
        .unwrap()
        .current_dir(cwd)
        .args(args)
        .arg("--storage")
        .arg(storage)
        .output()
        .unwrap()
}

fn ok(out: Output) -> (String, String) {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "command failed: {}\n{stderr}",
        out.status
    );
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

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

/// `assets ls Q --json`: (path, sha256 hex, size) sorted by path.
fn ls(cwd: &Path, storage: &Path, q: &str) -> Vec<(String, String, u64)> {
    let (out, _) = ok(run_in(cwd, storage, &["assets", "ls", q, "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every file of `dir` as `ls` lists it, hashed here.
fn expected(dir: &Path) -> Vec<(String, String, u64)> {
    let mut files: Vec<(String, String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().into_string().unwrap(),
                hex::encode(Sha256::digest(&bytes)),
                bytes.len() as u64,
            )
        })
        .collect();
    files.sort();
    files
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A stand-in for `web/app/dist` (the build): the app and a runtime.
fn built_app(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><p>built</p>").unwrap();
    std::fs::write(
        dir.join("peerhost-runtime.js"),
        "export function start () {}\n",
    )
    .unwrap();
    std::fs::write(dir.join("style.css"), "p{color:red}").unwrap();
}

#[test]
fn a_new_community_gets_the_default_app() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("store");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();

    // No web/app/dist where it runs: the app's sources built into the binary, and a warning
    // that says how to add the runtime. Every file with the SHA-256 of web/app's source.
    let (key, err) = ok(run_in(&elsewhere, &s, &["community", "create", "plain"]));
    assert_eq!(key.trim().len(), 52, "stdout is the key only: {key}");
    assert!(err.contains("the default app built into peerhost"), "{err}");
    assert!(err.contains("warning: no web/app/dist here"), "{err}");
    assert!(
        err.contains("peerhost assets publish plain web/app/dist"),
        "{err}"
    );
    let want = expected(&repo().join("web/app"));
    // The listing found web/app's sources (the comparison below then covers every file).
    for name in ["index.html", "main.js", "style.css"] {
        assert!(
            want.iter().any(|(n, ..)| n == name),
            "web/app's sources: {want:?}"
        );
    }
    assert_eq!(ls(&elsewhere, &s, "plain"), want);
    // And by the community key, as a reader's store would name it.
    assert_eq!(ls(&elsewhere, &s, key.trim()), want);

    // Run from a checkout with the build: web/app/dist is published, no warning.
    let checkout = dir.path().join("checkout");
    built_app(&checkout.join("web/app/dist"));
    let (_, err) = ok(run_in(&checkout, &s, &["community", "create", "built"]));
    assert!(
        err.contains("web app: web/app/dist: published 3 files"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(
        ls(&checkout, &s, "built"),
        expected(&checkout.join("web/app/dist"))
    );

    // --app DIR wins; --no-app publishes nothing.
    let other = dir.path().join("other-app");
    built_app(&other);
    std::fs::write(other.join("extra.txt"), "more").unwrap();
    let (_, err) = ok(run_in(
        &checkout,
        &s,
        &[
            "community",
            "create",
            "given",
            "--app",
            other.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("published 4 files"), "{err}");
    assert_eq!(ls(&checkout, &s, "given"), expected(&other));
    ok(run_in(
        &checkout,
        &s,
        &["community", "create", "bare", "--no-app"],
    ));
    let e = one_line_error(run_in(&checkout, &s, &["assets", "ls", "bare"]));
    assert!(e.contains("has no web app yet"), "{e}");

    // A missing --app is an error, and creates nothing.
    let e = one_line_error(run_in(
        &checkout,
        &s,
        &["community", "create", "typo", "--app", "/nonexistent/app"],
    ));
    assert!(
        e.contains("--app /nonexistent/app is not a directory"),
        "{e}"
    );
    let e = one_line_error(run_in(&checkout, &s, &["community", "info", "typo"]));
    assert!(e.contains("typo"), "{e}");
}

#[test]
fn fork_then_publish_changes_the_fork_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("store");
    let app = dir.path().join("app");
    built_app(&app);
    std::fs::write(app.join("big.bin"), vec![9u8; 150_000]).unwrap();
    let cwd = dir.path();
    ok(run_in(
        cwd,
        &s,
        &[
            "community",
            "create",
            "town",
            "--app",
            app.to_str().unwrap(),
        ],
    ));
    let original = ls(cwd, &s, "town");

    let (key, err) = ok(run_in(cwd, &s, &["app", "fork", "town", "mine"]));
    let key = key.trim().to_owned();
    assert_eq!(key.len(), 64, "the fork's key in hex: {key}");
    assert!(err.contains(&format!("INSTANCE/#app={key}")), "{err}");
    assert!(err.contains("peerhost assets publish mine DIR"), "{err}");
    // The same files, by name and by key; a log of its own that this store writes.
    assert_eq!(ls(cwd, &s, "mine"), original);
    assert_eq!(ls(cwd, &s, &key), original);
    let (info, _) = ok(run_in(cwd, &s, &["log", "info", "mine", "--json"]));
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["keyHex"], key.as_str());
    assert_eq!(info["writable"], true);
    let town = ok(run_in(cwd, &s, &["community", "info", "town", "--json"])).0;
    let town: Value = serde_json::from_str(&town).unwrap();
    assert_ne!(town["logs"]["assets"]["key"], info["key"]);

    // Change one file and publish to the fork: the fork has it, the community does not.
    let changed = dir.path().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    for (name, _, _) in &original {
        std::fs::copy(app.join(name), changed.join(name)).unwrap();
    }
    std::fs::write(
        changed.join("index.html"),
        "<!doctype html><ol id=list></ol>",
    )
    .unwrap();
    let (out, _) = ok(run_in(
        cwd,
        &s,
        &["assets", "publish", "mine", changed.to_str().unwrap()],
    ));
    assert!(
        out.contains("published 4 files (1 new or changed, 32 bytes appended)"),
        "{out}"
    );
    assert_eq!(ls(cwd, &s, "mine"), expected(&changed));
    assert_eq!(ls(cwd, &s, "town"), original);
    let (got, _) = ok(run_in(cwd, &s, &["assets", "get", "mine", "index.html"]));
    assert_eq!(got, "<!doctype html><ol id=list></ol>");

    // A fork of the fork; refusals, each one line.
    ok(run_in(cwd, &s, &["app", "fork", "mine", "mine2"]));
    assert_eq!(ls(cwd, &s, "mine2"), expected(&changed));
    let e = one_line_error(run_in(cwd, &s, &["app", "fork", "town", "mine"]));
    assert!(e.contains("a log named mine already exists"), "{e}");
    ok(run_in(
        cwd,
        &s,
        &["community", "create", "empty", "--no-app"],
    ));
    let e = one_line_error(run_in(cwd, &s, &["app", "fork", "empty", "e2"]));
    assert!(e.contains("has no web app to fork yet"), "{e}");
    let e = one_line_error(run_in(cwd, &s, &["log", "info", "e2"]));
    assert!(e.contains("e2"), "nothing was created: {e}");
    // A community's posts log is not an app log.
    let e = one_line_error(run_in(
        cwd,
        &s,
        &["assets", "publish", "town.posts", changed.to_str().unwrap()],
    ));
    assert!(e.contains("holds no community descriptor"), "{e}");
}
