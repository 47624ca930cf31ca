//! What the CLI tests of serving daemons (`http.rs`, `webrtc.rs`) share: a `peerhost` daemon
//! process and the lines it printed first, its status file, HTTP GETs through the gateway's
//! client, and a hang guard.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peerhost_gateway::client;
use serde_json::Value;

/// How long a wait may take before the test fails as hung.
pub(crate) const GUARD: Duration = Duration::from_secs(60);
/// One HTTP request's timeout.
pub(crate) const T: Duration = Duration::from_secs(10);

/// A daemon and the first `n` lines it printed (TCP address, HTTP URL); killed when dropped.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) lines: Vec<String>,
}

impl Daemon {
    pub(crate) fn start(mut c: Command, n: usize) -> Self {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn peerhost");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut lines = Vec::new();
        for _ in 0..n {
            let mut l = String::new();
            out.read_line(&mut l).expect("a line");
            lines.push(l.trim().to_owned());
        }
        Self { child, lines }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn get(rt: &tokio::runtime::Runtime, url: &str) -> client::Response {
    rt.block_on(client::get(url, T)).expect(url)
}

pub(crate) fn get_json(rt: &tokio::runtime::Runtime, url: &str) -> Value {
    let r = get(rt, url);
    assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).expect("JSON")
}

/// The daemon's status file, once it is there and whole.
pub(crate) fn status(storage: &Path) -> Option<Value> {
    let b = std::fs::read(storage.join("peerhost-status.json")).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Poll `f` every 100 ms until it holds; fail after [`GUARD`].
pub(crate) fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + GUARD;
    while !f() {
        assert!(Instant::now() < deadline, "hang guard: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A 32-byte key written in hex in a JSON string.
pub(crate) fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}
