#!/usr/bin/env bash
# Opening many logs at once (issue 15: a mirror of 10 000 communities holds 40 000 logs open):
# peerhost's store (crates/store/examples/open_bench.rs) and JS corestore 7
# (interop-tests/bench/open.js) in one run, same logs (LOGS logs of 20 x 1 KiB blocks).
#   bash scripts/bench-open.sh [LOGS]     (default 40000)
# Each side writes its logs once, then opens all of them in a fresh process (twice, alternating
# with the other side), keeping them all open, and reads the last block of each. Prints one JSON
# line per step and a markdown table for BENCHMARKS.md.
# Stores go under $TMPDIR. On ext4 without a journal, creating files right after many were
# deleted is slow (ext4 skips inodes freed in the last 60-300 s; BENCHMARKS.md, issue 6): run
# on a fresh or journaled file system for the "write" column.
set -euo pipefail
cd "$(dirname "$0")/.."
logs=${1:-40000}
cargo build --locked --release -q -p peerhost-store --example open_bench
(cd interop-tests && [ -d node_modules/corestore ] || npm ci --no-audit --no-fund --loglevel=error)
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/open_bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/results

"$bin" make "$tmp/peerhost" --logs "$logs" | sed 's/^{/{"impl":"peerhost",/' | tee -a "$out"
node interop-tests/bench/open.js make "$tmp/js" --logs "$logs" | tee -a "$out"
for _ in 1 2; do
  "$bin" open "$tmp/peerhost" | tee -a "$out"
  node interop-tests/bench/open.js open "$tmp/js" | tee -a "$out"
done

node - "$out" <<'JS'
const lines = require('fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map(JSON.parse)
const mib = (b) => (b / 1048576).toFixed(1) + ' MiB'
const per = (b, n) => (b / n / 1024).toFixed(2) + ' KiB'
console.log()
console.log('| | write the logs | open all (store, list, open each) | then read the last block of each | RSS with all open (per log) | RSS after the reads | open descriptors | files + directories (per log) | disk per log |')
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
for (const impl of ['peerhost', 'js']) {
  const made = lines.find((l) => l.event === 'made' && l.impl === impl)
  // The better of the two opens: the machine is shared.
  const opens = lines.filter((l) => l.event === 'opened' && l.impl === impl)
  const total = (l) => l.store_ms + l.keys_ms + l.open_ms
  const o = opens.sort((a, b) => total(a) - total(b))[0]
  const n = o.logs
  const name = impl === 'js' ? 'JS corestore 7' : 'peerhost'
  console.log(`| ${name} (${n.toLocaleString('en')} logs) | ${(made.ms / 1000).toFixed(1)} s | ${(total(o) / 1000).toFixed(2)} s (${opens.map((x) => (total(x) / 1000).toFixed(2)).join(', ')}) | ${(o.read_ms / 1000).toFixed(2)} s | ${mib(o.rss_open)} (${per(o.rss_open - o.rss_start, n)}) | ${mib(o.rss_read)} | ${o.fds} | ${o.files} + ${o.dirs} (${((o.files + o.dirs) / n).toFixed(2)}) | ${per(o.disk, n)} |`)
}
JS
