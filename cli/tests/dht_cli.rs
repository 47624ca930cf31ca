//! `peerhost dht bootstrap` and `peerhost relay` as processes on loopback: the bootstrap node
//! prints the address peers use, and a relay bootstraps from it and prints its key.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `peerhost ARGS…` and return it with its first stdout line (hang guard: 60 s).
fn first_line(args: &[&str]) -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerhost"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let child = Kill(child);
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a first line within 60 s");
    (child, line.trim().to_owned())
}

#[test]
fn a_bootstrap_node_and_a_relay_on_it() {
    let (_boot, addr) = first_line(&["dht", "bootstrap", "--host", "127.0.0.1", "--port", "0"]);
    let (ip, port) = addr.rsplit_once(':').expect("HOST:PORT");
    assert_eq!(ip, "127.0.0.1");
    assert!(port.parse::<u16>().unwrap() > 0, "{addr}");

    let (_relay, key) = first_line(&["relay", "--host", "127.0.0.1", "--bootstrap", &addr]);
    assert_eq!(key.len(), 64, "a hex public key: {key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
}

#[test]
fn bootstrap_refuses_an_unspecified_host() {
    let out = Command::new(env!("CARGO_BIN_EXE_peerhost"))
        .args(["dht", "bootstrap", "--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--host must be the address peers reach"),
        "{stderr}"
    );
}
