#!/usr/bin/env bash
# Hyperbee benchmark: peerhost-bee and JS hyperbee 2.27.3 (on hypercore 11.39.5) in one run on
# this machine, same workloads, same keys (crates/bee/examples/bench.rs, interop-tests/bee/bench.js).
#   bash interop-tests/bee/bench.sh [ENTRIES]     (default 1000000, the BENCHMARKS.md size)
# Prints markdown tables; paste them into BENCHMARKS.md with the command line and the date.
set -euo pipefail
cd "$(dirname "$0")/../.."
entries=${1:-1000000}
args=(--entries "$entries" --single "${BEE_SINGLE:-10000}" --lookups 10000 --walks 1000)

cargo build --locked --release -q -p peerhost-bee --example bench
(cd interop-tests && [ -d node_modules/hyperbee ] || npm ci --no-audit --no-fund --loglevel=error)

out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Alternate implementations so neither always runs on a cold or a warm page cache.
target/release/examples/bench "${args[@]}" --log process >>"$out"
node interop-tests/bee/bench.js "${args[@]}" >>"$out"
target/release/examples/bench "${args[@]}" --log sync >>"$out"
target/release/examples/bench "${args[@]}" --log memory >>"$out"

node - "$out" "$entries" <<'JS'
const lines = require('fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map(JSON.parse)
const entries = Number(process.argv[3])
const impls = ['peerhost (process)', 'js', 'peerhost (sync)', 'peerhost (memory)']
const names = [...new Set(lines.map((l) => l.name))]
const find = (i, n) => lines.find((l) => l.impl === i && l.name === n)
const fmt = (x) => Math.round(x).toLocaleString('en')
const cell = (l) => {
  if (!l) return '–'
  const s = l.ms / 1000
  if (l.p50_us !== undefined) return `${fmt(l.ops / s)} ops/s; p50 ${l.p50_us.toFixed(0)} µs, p99 ${l.p99_us.toFixed(0)} µs`
  if (l.entries !== undefined) return `${fmt(l.ops / s)} walks/s (${(l.ms / l.ops).toFixed(2)} ms each)`
  return `${s.toFixed(2)} s, ${fmt(l.ops / s)} entries/s`
}
console.log(`| workload (${fmt(entries)} entries) | ${impls.join(' | ')} | js / peerhost (process) |`)
console.log(`|---|${impls.map(() => '---').join('|')}|---|`)
for (const n of names) {
  const p = find('peerhost (process)', n)
  const j = find('js', n)
  const ratio = p && j ? (j.ms / p.ms).toFixed(1) + 'x' : '–'
  console.log(`| ${n} | ${impls.map((i) => cell(find(i, n))).join(' | ')} | ${ratio} |`)
}
console.log()
console.log('| index | log bytes per million entries | on disk per million entries (peerhost process / js) | same bytes as JS |')
console.log('|---|---|---|---|')
for (const n of names.filter((n) => n.startsWith('build'))) {
  const p = find('peerhost (process)', n)
  const j = find('js', n)
  const per = (b) => (b / entries).toFixed(1) + ' MB'
  console.log(`| ${n.replace('build, ', '')} | ${per(p.bytes)} | ${per(p.disk)} / ${per(j.disk)} | ${p.bytes === j.bytes && p.blocks === j.blocks ? 'yes' : 'NO'} (${fmt(p.blocks)} blocks) |`)
}
JS
