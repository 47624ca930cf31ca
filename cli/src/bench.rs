//! `peerhost bench log`: the Rust side of `scripts/bench-log.sh`. The workloads, sizes and order
//! match `interop-tests/bench/log.js` (JS hypercore 11) so one run compares both.

use std::time::Instant;

use anyhow::{Context, ensure};
use clap::{Subcommand, ValueEnum};
use peerhost_store::{CreateOptions, Durability, Options, Store};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Append and random-read workloads on a fresh store in a temporary directory.
    Log {
        /// Multiply every workload size by this factor (1 = the BENCHMARKS.md sizes).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// `process`: no fsync, survives a killed process (what JS hypercore 11's RocksDB does:
        /// WAL writes without sync). `sync`: fsync per commit, survives a power cut.
        #[arg(long, value_enum, default_value_t = BenchDurability::Process)]
        durability: BenchDurability,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum BenchDurability {
    Process,
    Sync,
}

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Log { scale, durability } => log(scale, durability),
    }
}

fn block(i: u64, size: usize) -> Vec<u8> {
    let mut b = vec![(i & 0xff) as u8; size];
    b[..4].copy_from_slice(&(i as u32).to_le_bytes());
    b
}

fn log(scale: f64, durability: BenchDurability) -> anyhow::Result<()> {
    let n = |base: f64| (base * scale).round() as u64;
    let (n_single, n_batches, batch, n_big, n_reads) =
        (n(10_000.0), n(100.0), 1000u64, n(1600.0), n(100_000.0));
    let (label, durability) = match durability {
        BenchDurability::Process => ("peerhost (process)", Durability::Process),
        BenchDurability::Sync => ("peerhost (sync)", Durability::Sync),
    };
    let report = |name: &str, ops: u64, bytes: u64, start: Instant| {
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{}",
            serde_json::json!({"impl": label, "name": name, "ops": ops, "bytes": bytes, "ms": (ms * 1000.0).round() / 1000.0})
        );
    };
    let dir = tempfile::Builder::new()
        .prefix("peerhost-bench-")
        .tempdir()?;
    let store = Store::open_with(dir.path(), Options::default().durability(durability))
        .context("cannot open the bench store")?;

    let mut core = store.create("single", CreateOptions::default())?;
    let t = Instant::now();
    for i in 0..n_single {
        core.append(&[block(i, 1024)])?;
    }
    report("append 1 KiB one by one", n_single, n_single * 1024, t);
    drop(core);

    let mut core = store.create("batch", CreateOptions::default())?;
    let t = Instant::now();
    for b in 0..n_batches {
        let blocks: Vec<Vec<u8>> = (0..batch).map(|i| block(b * batch + i, 1024)).collect();
        core.append(&blocks)?;
    }
    report(
        "append 1 KiB in batches of 1000",
        n_batches * batch,
        n_batches * batch * 1024,
        t,
    );

    // The same linear congruential generator as the JS side, so both read the same indices.
    let len = core.length();
    let mut seed: u64 = 42;
    let t = Instant::now();
    for _ in 0..n_reads {
        seed = (seed.wrapping_mul(1_103_515_245).wrapping_add(12_345)) & 0x7fff_ffff;
        let idx = seed % len;
        let v = core.get(idx)?.context("bench block missing")?;
        ensure!(
            u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as u64 == idx,
            "bad block {idx}"
        );
    }
    report("random reads of 1 KiB blocks", n_reads, n_reads * 1024, t);
    drop(core);

    let mut core = store.create("big", CreateOptions::default())?;
    let t = Instant::now();
    for i in 0..n_big {
        core.append(&[block(i, 65536)])?;
    }
    report("append 64 KiB one by one", n_big, n_big * 65536, t);
    Ok(())
}
