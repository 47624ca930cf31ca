#!/usr/bin/env bash
# Log benchmark: peerhost and JS hypercore 11 in one run on this machine, same workloads.
#   bash scripts/bench-log.sh [SCALE]     (SCALE 1 = the sizes in BENCHMARKS.md)
# Prints a markdown table; paste it into BENCHMARKS.md with the command line and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-1}

cargo build --locked --release -q -p peerhost
(cd interop-tests && [ -d node_modules/hypercore ] || npm ci --no-audit --no-fund --loglevel=error)

out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Alternate implementations so neither always runs on a cold or a warm page cache.
target/release/peerhost bench log --scale "$scale" --durability process >>"$out"
node interop-tests/bench/log.js --scale "$scale" >>"$out"
target/release/peerhost bench log --scale "$scale" --durability sync >>"$out"

node - "$out" <<'JS'
const lines = require('fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map(JSON.parse)
const impls = [...new Set(lines.map(l => l.impl))]
const names = [...new Set(lines.map(l => l.name))]
const cell = (l) => {
  if (!l) return '–'
  const s = l.ms / 1000
  return `${Math.round(l.ops / s).toLocaleString('en')} ops/s, ${(l.bytes / s / 1e6).toFixed(1)} MB/s`
}
console.log(`| workload | ${impls.join(' | ')} | peerhost (process) / js |`)
console.log(`|---|${impls.map(() => '---').join('|')}|---|`)
for (const n of names) {
  const row = impls.map(i => cell(lines.find(l => l.impl === i && l.name === n)))
  const p = lines.find(l => l.impl === 'peerhost (process)' && l.name === n)
  const j = lines.find(l => l.impl === 'js' && l.name === n)
  const ratio = p && j ? (j.ms / p.ms).toFixed(2) + 'x' : '–'
  console.log(`| ${n} | ${row.join(' | ')} | ${ratio} |`)
}
JS
