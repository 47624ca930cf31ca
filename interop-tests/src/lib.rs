//! Helpers for the live interop tests: where the repository and the pinned JS packages are, and
//! how to run a Node script from this directory and read its result.
//!
//! The tests never mock the JS side: they run the real packages installed by `npm ci` from
//! `package-lock.json`.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `interop-tests/` directory.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    dir().parent().map(Path::to_path_buf).unwrap_or_else(dir)
}

/// Run `node SCRIPT ARGS…` with `interop-tests/` as the working directory.
///
/// Panics with a line saying what to do when the JS packages are not installed.
pub fn node(script: &str, args: &[&str]) -> Output {
    assert!(
        dir().join("node_modules/hypercore").is_dir(),
        "the pinned JS packages are missing: run `cd interop-tests && npm ci`"
    );
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(dir())
        .output();
    match out {
        Ok(out) => out,
        Err(e) => panic!("could not run node ({e}): install Node.js 20"),
    }
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
