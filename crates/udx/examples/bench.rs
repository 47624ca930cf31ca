//! UDX throughput over loopback: Rust -> Rust, Rust -> JS and JS -> Rust.
//!
//! ```text
//! cargo run --release -p peerhost-udx --example bench -- [rust-rust|rust-js|js-rust|all] [MiB]
//! node interop-tests/udx/bench.js js-js [MiB]      # the JS -> JS baseline
//! ```
//!
//! The JS modes need Node 20 and `npm ci` in `interop-tests/` (they run
//! `interop-tests/udx/bench.js peer`). Time runs from the first write to the receiver's
//! end-of-stream. Numbers are printed, never asserted.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peerhost_udx::StreamConfig;
use peerhost_udx::driver::{Socket, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CHUNK: usize = 64 * 1024;

fn report(label: &str, bytes: u64, elapsed: Duration, info: Option<peerhost_udx::StreamInfo>) {
    let s = elapsed.as_secs_f64();
    println!(
        "{label:>10}: {bytes} bytes in {:.0} ms = {:.1} MiB/s ({:.0} Mbit/s)",
        s * 1000.0,
        bytes as f64 / (1 << 20) as f64 / s,
        bytes as f64 * 8.0 / s / 1e6,
    );
    if let Some(i) = info {
        println!(
            "            sender: mtu {} retransmits {} rto {} fast-recoveries {} packets {}",
            i.mtu, i.retransmits, i.rto_count, i.fast_recoveries, i.packets_tx
        );
    }
}

async fn send(stream: &mut Stream, len: u64) -> Result<()> {
    let chunk = vec![0xabu8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    Ok(())
}

async fn drain(stream: &mut Stream) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

async fn rust_rust(len: u64) -> Result<()> {
    let a = Socket::bind("127.0.0.1:0".parse()?).await?;
    let b = Socket::bind("127.0.0.1:0".parse()?).await?;
    let mut sa = a.create_stream(1, StreamConfig::default())?;
    let mut sb = b.create_stream(2, StreamConfig::default())?;
    sa.connect(2, b.local_addr())?;
    sb.connect(1, a.local_addr())?;
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let n = drain(&mut sb).await;
        let _ = sb.shutdown().await;
        n.map_err(|e| e.to_string())
    });
    send(&mut sa, len).await?;
    let got = reader.await??;
    report("rust->rust", got, start.elapsed(), sa.info());
    Ok(())
}

struct JsPeer {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl JsPeer {
    fn spawn() -> Result<(Self, SocketAddr)> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../interop-tests/udx/bench.js"
        );
        let mut child = Command::new("node")
            .arg(script)
            .arg("peer")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop-tests"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut peer = Self {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        let ready = peer.next()?;
        let port = ready["port"].as_u64().ok_or("no port")? as u16;
        Ok((peer, SocketAddr::from(([127, 0, 0, 1], port))))
    }

    fn send(&mut self, cmd: serde_json::Value) -> Result<()> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        Ok(())
    }

    fn next(&mut self) -> Result<serde_json::Value> {
        let line = self.lines.next().ok_or("node exited")??;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn rust_js(len: u64) -> Result<()> {
    let socket = Socket::bind("127.0.0.1:0".parse()?).await?;
    let (mut js, js_addr) = JsPeer::spawn()?;
    let port = socket.local_addr().port();
    js.send(serde_json::json!({"cmd": "recv", "id": 2, "remoteId": 1, "port": port}))?;
    let mut s = socket.create_stream(1, StreamConfig::default())?;
    s.connect(2, js_addr)?;
    // Give the JS stream a moment to exist before the first packet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    send(&mut s, len).await?;
    let done = tokio::task::spawn_blocking(move || js.next().map_err(|e| e.to_string())).await??;
    let elapsed = start.elapsed();
    report(
        "rust->js",
        done["bytes"].as_u64().unwrap_or(0),
        elapsed,
        s.info(),
    );
    Ok(())
}

async fn js_rust(len: u64) -> Result<()> {
    let socket = Socket::bind("127.0.0.1:0".parse()?).await?;
    let (mut js, js_addr) = JsPeer::spawn()?;
    let mut s = socket.create_stream(1, StreamConfig::default())?;
    s.connect(2, js_addr)?;
    let port = socket.local_addr().port();
    let start = Instant::now();
    js.send(serde_json::json!({"cmd": "send", "id": 2, "remoteId": 1, "port": port, "len": len}))?;
    let got = drain(&mut s).await?;
    let elapsed = start.elapsed();
    s.shutdown().await?;
    report("js->rust", got, elapsed, None);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "all".into());
    let mib: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let len = mib << 20;
    match mode.as_str() {
        "rust-rust" => rust_rust(len).await?,
        "rust-js" => rust_js(len).await?,
        "js-rust" => js_rust(len).await?,
        "all" => {
            rust_rust(len).await?;
            rust_js(len).await?;
            js_rust(len).await?;
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
