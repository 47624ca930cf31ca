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

/// Start `node SCRIPT ARGS…` in `interop-tests/` with stdin and stdout piped (stderr inherited),
/// for scripts that run alongside the test and talk to it while they run.
///
/// Panics with a line saying what to do when the JS packages or Node are missing.
pub fn spawn_node(script: &str, args: &[&str]) -> std::process::Child {
    use std::process::Stdio;
    assert!(
        dir().join("node_modules/hypercore").is_dir(),
        "the pinned JS packages are missing: run `cd interop-tests && npm ci`"
    );
    match Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("could not run node ({e}): install Node.js 20"),
    }
}

/// A Node script running interactively: JSON commands on its stdin, JSON events read from its
/// stdout one line at a time (used by the UDX tests with `udx/peer.js`).
#[derive(Debug)]
pub struct NodePeer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Every event read so far, for failure messages and later lookups.
    pub seen: Vec<serde_json::Value>,
}

impl NodePeer {
    /// Start `node SCRIPT ARGS…` in `interop-tests/` with piped stdin and stdout.
    pub fn spawn(script: &str, args: &[&str]) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        assert!(
            dir().join("node_modules/udx-native").is_dir(),
            "the pinned JS packages are missing: run `cd interop-tests && npm ci`"
        );
        let mut child = match Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("could not run node ({e}): install Node.js 20"),
        };
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        // Bounded: the reader blocks when the test is not consuming.
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str(&line) else {
                    continue;
                };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Send one command line.
    pub fn send(&mut self, cmd: serde_json::Value) {
        use std::io::Write;
        writeln!(self.stdin, "{cmd}").expect("node peer stdin");
        self.stdin.flush().expect("node peer stdin");
    }

    /// Wait for the first event (already seen or new) matching `pred`. Panics after `limit`
    /// (a hang guard, not a timing assertion) or when the script exits.
    pub fn wait_for(
        &mut self,
        limit: std::time::Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(e) => panic!(
                    "node peer: {e:?} while waiting; events so far: {:?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for NodePeer {
    /// SIGTERM first, so that the script removes its store (the scripts exit on it); SIGKILL
    /// after 2 s if it is still there.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
