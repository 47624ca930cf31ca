//! What the CLI tests that run `peerhost` against a store share.

use std::path::Path;
use std::process::{Command, Output};

/// `peerhost ARGS --storage STORAGE`, quiet, and never reaching the public DHT.
pub(crate) fn cmd(storage: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peerhost"));
    c.args(args)
        .arg("--storage")
        .arg(storage)
        .env("PEERHOST_LOG", "warn")
        .env_remove("PEERHOST_BOOTSTRAP");
    c
}

/// Run `cmd(storage, args)` to its end and require success (stderr in the failure).
pub(crate) fn run(storage: &Path, args: &[&str]) -> Output {
    let out = cmd(storage, args).output().expect("run peerhost");
    assert!(
        out.status.success(),
        "peerhost {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
