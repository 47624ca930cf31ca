//! Issue 17, item 6: the TCP replication listener and the HTTP gateway listener outlive running
//! out of file descriptors. The real binary runs under `prlimit --nofile=…`; connections from
//! many loopback source addresses (127.0.0.2…, each under the per-address caps) exhaust its
//! descriptors; once they close, the same listeners still replicate a log and answer HTTP, and
//! the daemon said what happened on stderr.
//!
//! Timeouts are hang guards only.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{cmd, run};

const T: Duration = Duration::from_secs(10);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Open `per_source` connections to `to` from each of `sources` loopback addresses and keep
/// them open; returns how many connected.
async fn flood(to: SocketAddr, sources: u8, per_source: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for s in 2..2 + sources {
        for _ in 0..per_source {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(127, 0, 0, s),
                0,
            )))
            .unwrap();
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(2), sock.connect(to)).await
            {
                held.push(c);
            }
        }
    }
    held
}

#[test]
fn listeners_survive_running_out_of_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let key = String::from_utf8(run(&w, &["log", "create", "notes"]).stdout).unwrap();
    let key = key.trim().to_owned();
    let mut a = cmd(&w, &["log", "append", "notes", "--lines"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: String = (0..20).map(|i| format!("line {i}\n")).collect();
    std::io::Write::write_all(&mut a.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    assert!(a.wait().unwrap().success());

    // The daemon with 96 file descriptors at most.
    let mut c = Command::new("prlimit");
    c.arg("--nofile=96:96")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_peerhost"))
        .args(["serve", "--no-dht", "--listen-tcp", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0", "--storage"])
        .arg(&w)
        .env("PEERHOST_LOG", "warn")
        .env_remove("PEERHOST_BOOTSTRAP")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut daemon = Killed(c.spawn().expect("prlimit (util-linux) runs peerhost"));
    let mut out = BufReader::new(daemon.0.stdout.take().unwrap());
    let mut line = || {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        l.trim().to_owned()
    };
    let tcp: SocketAddr = line().parse().unwrap();
    let http = line();
    let http_addr: SocketAddr = http.trim_start_matches("http://").parse().unwrap();
    let mut stderr = daemon.0.stderr.take().unwrap();
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // 150 idle connections to each listener, 10 per source address: far more than the
    // daemon's descriptors, under its per-address caps (16 TCP, 64 HTTP).
    let held = rt.block_on(async {
        let mut held = flood(tcp, 15, 10).await;
        held.extend(flood(http_addr, 15, 10).await);
        // Let the daemon run into the limit.
        tokio::time::sleep(Duration::from_secs(2)).await;
        held
    });
    assert!(held.len() > 96, "only {} connections opened", held.len());
    drop(held);
    std::thread::sleep(Duration::from_secs(2));

    // The same listeners serve again: a follower replicates the log over TCP …
    let r = dir.path().join("r");
    let peer = format!("tcp://{tcp}");
    let deadline = Instant::now() + T;
    let followed = loop {
        let o = cmd(&r, &["follow", &key, "--peer", &peer, "-q"])
            .output()
            .unwrap();
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        followed.status.success(),
        "follow after the flood: {}",
        String::from_utf8_lossy(&followed.stderr)
    );
    let cat = String::from_utf8(run(&r, &["log", "cat", &key]).stdout).unwrap();
    assert!(cat.contains("line 0") && cat.contains("line 19"), "{cat}");
    // … and the gateway answers HTTP.
    let got = rt
        .block_on(peerhost_gateway::client::get(&format!("{http}/v1/logs"), T))
        .expect("HTTP after the flood");
    assert_eq!(got.status, 200);

    drop(daemon);
    let text = err_text.join().unwrap();
    assert!(
        text.contains("TCP listener: cannot accept a connection"),
        "the daemon did not say it ran out: {text}"
    );
    assert!(
        text.contains("HTTP gateway: cannot accept a connection"),
        "the gateway did not say it ran out: {text}"
    );
}
