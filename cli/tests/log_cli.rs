//! The `peerhost log …` commands as a person uses them: real processes on a real store.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

fn peerhost(storage: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("peerhost")
        .unwrap()
        .arg("log")
        .args(args)
        .arg("--storage")
        .arg(storage)
        .output()
        .unwrap()
}

fn peerhost_stdin(storage: &Path, args: &[&str], stdin: &[u8]) -> Output {
    Command::cargo_bin("peerhost")
        .unwrap()
        .arg("log")
        .args(args)
        .arg("--storage")
        .arg(storage)
        .write_stdin(stdin.to_vec())
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

fn info(storage: &Path, log: &str) -> serde_json::Value {
    serde_json::from_str(&ok(peerhost(storage, &["info", log, "--json"]))).unwrap()
}

#[test]
fn create_append_cat_info_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    let key = ok(peerhost(s, &["create", "notes"])).trim().to_owned();
    assert_eq!(key.len(), 52, "a z-base32 key: {key}");

    ok(peerhost_stdin(
        s,
        &["append", "notes", "--lines"],
        b"alpha\nbeta\r\ngamma",
    ));
    let file = dir.path().join("blob.bin");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let len = ok(peerhost(s, &["append", "notes", file.to_str().unwrap()]));
    assert_eq!(len.trim(), "4");

    assert_eq!(
        ok(peerhost(s, &["cat", "notes", "--end", "3", "--lines"])),
        "alpha\nbeta\ngamma\n"
    );
    assert_eq!(
        ok(peerhost(s, &["cat", &key, "--start", "1", "--end", "2"])),
        "beta"
    );
    assert_eq!(
        ok(peerhost(s, &["cat", "notes", "--start", "3"])).len(),
        100_000
    );

    let v = info(s, "notes");
    assert_eq!(v["key"], key.as_str());
    assert_eq!(v["length"], 4);
    assert_eq!(v["byteLength"], 5 + 4 + 5 + 100_000);
    assert_eq!(v["fork"], 0);
    assert_eq!(v["signatureVerifies"], true);
    assert_eq!(v["compat"], false);
    assert_eq!(v["keyHex"].as_str().unwrap().len(), 64);
    // The same log by its hex key and by pear://.
    assert_eq!(info(s, v["keyHex"].as_str().unwrap())["length"], 4);
    assert_eq!(info(s, &format!("pear://{key}/x"))["length"], 4);

    let verify = ok(peerhost(s, &["verify", "notes"]));
    assert!(verify.starts_with("ok: 4 blocks"), "{verify}");

    let compat = ok(peerhost(s, &["create", "old", "--compat"]))
        .trim()
        .to_owned();
    ok(peerhost_stdin(s, &["append", "old"], b"one block"));
    let v = info(s, &compat);
    assert_eq!(v["compat"], true);
    assert_eq!(v["signatureVerifies"], true);
}

#[test]
fn storage_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("peerhost")
        .unwrap()
        .args(["log", "create", "x"])
        .env("PEERHOST_STORAGE", dir.path())
        .output()
        .unwrap();
    ok(out);
    assert!(dir.path().join("VERSION").is_file());
}

#[test]
fn malformed_keys_get_one_line_naming_the_forms() {
    let dir = tempfile::tempdir().unwrap();
    ok(peerhost(dir.path(), &["create", "notes"]));
    for bad in ["not-a-key", "0123", &"l".repeat(52)] {
        let line = one_line_error(peerhost(dir.path(), &["info", bad]));
        assert!(
            line.contains("52 z-base32 characters, 64 hex characters"),
            "{line}"
        );
    }
    // A well-formed key this store does not hold is a different error.
    let line = one_line_error(peerhost(dir.path(), &["info", &"ab".repeat(32)]));
    assert!(line.contains("no log named or keyed"), "{line}");
}

/// A log's file in the store (format 2, `protocol/store.md`): `logs/<dkey>.meta`, `.data`, `.key`.
fn log_file(storage: &Path, log: &str, ext: &str) -> std::path::PathBuf {
    let dkey = info(storage, log)["discoveryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    storage.join("logs").join(format!("{dkey}.{ext}"))
}

#[test]
fn a_corrupt_block_is_found_by_verify_and_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(peerhost(s, &["create", "c"]));
    let lines: String = (0..50).map(|i| format!("block number {i:04}\n")).collect();
    ok(peerhost_stdin(
        s,
        &["append", "c", "--lines"],
        lines.as_bytes(),
    ));

    // Block 12 starts at 12 * 17 bytes (every block is 17 bytes long).
    let data = log_file(s, "c", "data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[12 * 17 + 3] ^= 0x20;
    std::fs::write(&data, bytes).unwrap();

    let line = one_line_error(peerhost(s, &["verify", "c"]));
    assert!(
        line.contains("\"c\"") && line.contains("block 12"),
        "{line}"
    );
    let line = one_line_error(peerhost(s, &["cat", "c"]));
    assert!(line.contains("block 12"), "{line}");
    // Blocks before it still read.
    assert_eq!(
        ok(peerhost(s, &["cat", "c", "--end", "2", "--lines"]))
            .lines()
            .count(),
        2
    );
}

#[test]
fn a_corrupt_tree_node_is_found_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(peerhost(s, &["create", "t"]));
    let lines: String = (0..64).map(|i| format!("{i}\n")).collect();
    ok(peerhost_stdin(
        s,
        &["append", "t", "--lines"],
        lines.as_bytes(),
    ));

    // Flat index 5 is a parent node; records are 64 bytes at 131072 + 528384 in the metadata
    // file (chunk 0's tree records), the hash starts at byte 8.
    let tree = log_file(s, "t", "meta");
    let mut bytes = std::fs::read(&tree).unwrap();
    bytes[131_072 + 528_384 + 5 * 64 + 8 + 4] ^= 1;
    std::fs::write(&tree, bytes).unwrap();

    let line = one_line_error(peerhost(s, &["verify", "t"]));
    assert!(line.contains("\"t\"") && line.contains('5'), "{line}");
}

/// Issue 17, item 8: a new store is private (root 0700, LOCK 0600); a link planted in a log's
/// directory is refused, one line, and the file it points to is left alone (it used to be
/// truncated by `log info`); a root other users can write to is refused with the fix.
#[test]
fn the_store_is_private_and_never_follows_a_planted_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("store");
    ok(peerhost(&s, &["create", "notes"]));
    ok(peerhost_stdin(
        &s,
        &["append", "notes", "--lines"],
        b"a\nb\n",
    ));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s), 0o700);
    assert_eq!(mode(&s.join("LOCK")), 0o600);

    let outside = dir.path().join("precious.txt");
    std::fs::write(&outside, b"someone else's file").unwrap();
    // Each file with a command that opens it: the metadata file on open, the data file on a
    // read, the key file on an append.
    let paths: Vec<_> = ["meta", "data", "key"]
        .iter()
        .map(|f| (*f, log_file(&s, "notes", f)))
        .collect();
    for ((f, p), args) in paths.iter().zip([
        &["info", "notes"][..],
        &["cat", "notes"][..],
        &["append", "notes", "--lines"][..],
    ]) {
        let saved = std::fs::read(p).unwrap();
        std::fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink(&outside, p).unwrap();
        let e = one_line_error(peerhost_stdin(&s, args, b"c\n"));
        assert!(e.contains("symbolic link"), "{f}: {e}");
        assert_eq!(
            std::fs::read(&outside).unwrap(),
            b"someone else's file",
            "{f}"
        );
        std::fs::remove_file(p).unwrap();
        std::fs::write(p, saved).unwrap();
    }
    assert_eq!(info(&s, "notes")["length"], 2);

    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = one_line_error(peerhost(&s, &["info", "notes"]));
    assert!(
        e.contains("writable by other users") && e.contains("chmod go-w"),
        "{e}"
    );
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(info(&s, "notes")["length"], 2);
}
