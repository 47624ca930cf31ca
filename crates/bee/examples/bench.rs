//! The Hyperbee benchmark, peerhost side (the JS side is `interop-tests/bee/bench.js`, the
//! runner `interop-tests/bee/bench.sh`). Prints one JSON line per measurement.
//!
//! ```text
//! cargo run --release -p peerhost-bee --example bench -- [--entries N] [--single N]
//!     [--lookups N] [--walks N] [--log memory|process|sync]
//! ```
//!
//! Workloads (the same keys, values and order as the JS side, so the logs come out byte for
//! byte the same):
//! - `build, time order`: N puts of `t/<i, 12 digits>`, in batches of 1000;
//! - `build, random order`: N puts of `c/<fmix32(i)><fmix32(i ^ 0x9e3779b9)>` (hex), batches
//!   of 1000;
//! - `put one by one`: `--single` puts of random-order keys, each its own append;
//! - `get`: `--lookups` gets of present keys (random order) on the random-order index, reopened
//!   (no decoded block cached);
//! - `walk 50`: `--walks` walks of 50 entries from a random present key.
//!
//! `--log memory` keeps the log in a `Vec` (the tree's own cost); `process` and `sync` write a
//! signed hypercore in the store at that durability.

use std::time::Instant;

use peerhost_bee::{AppendBlocks, Bee, Blocks, Range};
use peerhost_store::{CreateOptions, Durability, Options, Store};

fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^= x >> 16;
    x
}

fn time_key(i: u32) -> Vec<u8> {
    format!("t/{i:012}").into_bytes()
}

fn random_key(i: u32) -> Vec<u8> {
    format!("c/{:08x}{:08x}", fmix32(i), fmix32(i ^ 0x9e37_79b9)).into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("{:08x}{:08x}", fmix32(i.wrapping_add(1)), i).into_bytes()
}

struct Args {
    entries: u32,
    single: u32,
    lookups: u32,
    walks: u32,
    log: String,
}

fn args() -> Args {
    let mut a = Args {
        entries: 1_000_000,
        single: 10_000,
        lookups: 10_000,
        walks: 1_000,
        log: "process".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let n = || {
            v.parse::<u32>()
                .unwrap_or_else(|_| panic!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--entries" => a.entries = n(),
            "--single" => a.single = n(),
            "--lookups" => a.lookups = n(),
            "--walks" => a.walks = n(),
            "--log" => a.log = v.clone(),
            f => panic!("unknown flag {f}"),
        }
    }
    a
}

fn emit(imp: &str, name: &str, ms: f64, ops: u64, extra: &str) {
    println!("{{\"impl\":\"{imp}\",\"name\":\"{name}\",\"ms\":{ms:.3},\"ops\":{ops}{extra}}}");
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            n += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    n
}

fn log_bytes<B: Blocks>(log: &mut B) -> u64 {
    (0..log.length())
        .map(|i| log.block(i).ok().flatten().map_or(0, |b| b.len() as u64))
        .sum()
}

/// Build an index of `n` entries from `key`, in batches of 1000.
fn build<B: AppendBlocks>(bee: &mut Bee<B>, n: u32, key: fn(u32) -> Vec<u8>) {
    for start in (0..n).step_by(1000) {
        let mut b = bee.batch();
        for i in start..(start + 1000).min(n) {
            b.put(&key(i), &value(i)).expect("put");
        }
        b.flush().expect("flush");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn lookups<B: Blocks>(imp: &str, bee: &mut Bee<B>, a: &Args) {
    let mut lat = Vec::with_capacity(a.lookups as usize);
    let t = Instant::now();
    for q in 0..a.lookups {
        let i = fmix32(q ^ 0x0123_4567) % a.entries;
        let k = random_key(i);
        let t1 = Instant::now();
        let e = bee.get(&k).expect("get").expect("present");
        lat.push(t1.elapsed().as_secs_f64() * 1e6);
        assert_eq!(e.value, Some(value(i)));
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    lat.sort_by(f64::total_cmp);
    let extra = format!(
        ",\"p50_us\":{:.1},\"p99_us\":{:.1}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    emit(
        imp,
        "get (random key, reopened)",
        ms,
        u64::from(a.lookups),
        &extra,
    );

    let t = Instant::now();
    let mut n = 0;
    for q in 0..a.walks {
        let start = random_key(fmix32(q) % a.entries);
        let got = bee.range(Range::all().gte(start).limit(50)).expect("walk");
        n += got.len() as u64;
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    emit(
        imp,
        "walk 50 entries",
        ms,
        u64::from(a.walks),
        &format!(",\"entries\":{n}"),
    );
}

fn main() {
    let a = args();
    let imp = format!("peerhost ({})", a.log);
    if a.log == "memory" {
        for (name, key) in [
            ("build, time order", time_key as fn(u32) -> Vec<u8>),
            ("build, random order", random_key),
        ] {
            let mut bee = Bee::new(Vec::<Vec<u8>>::new());
            let t = Instant::now();
            build(&mut bee, a.entries, key);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let bytes = log_bytes(bee.log_mut());
            let blocks = bee.log().len();
            emit(
                &imp,
                name,
                ms,
                u64::from(a.entries),
                &format!(",\"bytes\":{bytes},\"blocks\":{blocks}"),
            );
            if name.contains("random") {
                let mut bee = Bee::new(bee.into_log());
                lookups(&imp, &mut bee, &a);
            }
        }
        let mut bee = Bee::new(Vec::<Vec<u8>>::new());
        let t = Instant::now();
        for i in 0..a.single {
            bee.put(&random_key(i), &value(i)).expect("put");
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        emit(&imp, "put one by one", ms, u64::from(a.single), "");
        return;
    }
    let durability = match a.log.as_str() {
        "process" => Durability::Process,
        "sync" => Durability::Sync,
        l => panic!("--log memory|process|sync, not {l}"),
    };
    let open = |dir: &std::path::Path| {
        Store::open_with(dir, Options::default().durability(durability)).expect("store")
    };
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    for ((name, key), tmp) in [
        ("build, time order", time_key as fn(u32) -> Vec<u8>),
        ("build, random order", random_key),
    ]
    .into_iter()
    .zip(&dirs)
    {
        let store = open(tmp.path());
        let mut core = store
            .create("index", CreateOptions::default())
            .expect("create");
        let mut bee = Bee::new(&mut core);
        let t = Instant::now();
        build(&mut bee, a.entries, key);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let bytes = core.byte_length();
        let blocks = core.length();
        drop(core);
        drop(store);
        let disk = dir_bytes(tmp.path());
        emit(
            &imp,
            name,
            ms,
            u64::from(a.entries),
            &format!(",\"bytes\":{bytes},\"blocks\":{blocks},\"disk\":{disk}"),
        );
    }
    {
        let store = open(dirs[1].path());
        let mut core = store.open_core("index").expect("reopen");
        let mut bee = Bee::new(&mut core);
        lookups(&imp, &mut bee, &a);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    let mut core = store
        .create("single", CreateOptions::default())
        .expect("create");
    let mut bee = Bee::new(&mut core);
    let t = Instant::now();
    for i in 0..a.single {
        bee.put(&random_key(i), &value(i)).expect("put");
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    emit(&imp, "put one by one", ms, u64::from(a.single), "");
}
