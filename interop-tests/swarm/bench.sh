#!/usr/bin/env bash
# Finding peers and moving bytes over UDX, on loopback HyperDHT testnets: peerhost and the JS
# Holepunch stack (hyperswarm 4 + hyperdht 6 + hypercore 11) side by side, in one run.
#   bash interop-tests/swarm/bench.sh [TRIES] [LOOKUPS] [BLOCKS]
# (defaults 10, 20, 1600: 1600 blocks of 64 KiB = 100 MiB). Prints markdown tables for
# BENCHMARKS.md.
#
# Two testnets of 20 nodes each on 127.0.0.1, one per implementation (JS `hyperdht/testnet`;
# peerhost: the swarm's `Bootstrapper` and persistent nodes), both all-persistent and unfirewalled. On each, a
# writer of that implementation holds a 100 MiB log and announces its discovery key (JS: a
# hyperswarm server; peerhost: the daemon `peerhost serve` runs). Then:
#   1. lookups: a fresh DHT node of each implementation, bootstrapped, looks up each writer's
#      topic LOOKUPS times, one after another (both implementations on both testnets);
#   2. join: TRIES times, a fresh reader (DHT node bootstrapped first) joins the topic as a
#      client (JS: hyperswarm `join`; peerhost: the daemon's `follow`) and reads block 0; times
#      from that call to the first connection, the first open replication channel and the
#      first verified block; readers of both implementations against both writers (a reader
#      uses the testnet its writer is on);
#   3. 100 MiB: a fresh reader downloads the whole log, every pairing, BENCH_FULL_RUNS times
#      (default 3; the median run is reported); throughput counts from the open channel to the
#      last verified block (UDX + secret-stream + protomux + hypercore replication), RSS is
#      each process's peak (VmHWM).
# Readers and writers keep their DHT defaults (firewalled until proven otherwise); one extra
# join row runs JS with `firewalled: false` (BENCH_UNFIREWALLED=1 in bench.js).
# The Rust side is crates/daemon/examples/swarm_bench.rs, the JS side interop-tests/swarm/bench.js.
set -euo pipefail
cd "$(dirname "$0")/../.."
tries=${1:-10}
lookups=${2:-20}
blocks=${3:-1600}
# Fresh readers per 100 MiB row (the median is reported).
full=${BENCH_FULL_RUNS:-3}
limit=${BENCH_TIMEOUT:-300}

# SWARM_BENCH_BIN: use this build of the example instead of building one.
if [ -z "${SWARM_BENCH_BIN:-}" ]; then
  cargo build --locked --release -q -p peerhost-daemon --example swarm_bench
fi
(cd interop-tests && [ -d node_modules/hyperswarm ] || npm ci --no-audit --no-fund --loglevel=error)
rs=${SWARM_BENCH_BIN:-$PWD/target/release/examples/swarm_bench}
js=(node interop-tests/swarm/bench.js)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# Start a long-running process writing one JSON line to FILE; wait for the line. Its pid is
# left in $started (not printed: a command substitution would run this in a subshell, and the
# pid would miss `pids`, leaving the process behind).
start() { # file cmd...
  local f=$1
  shift
  "$@" >"$f" 2>"$f.err" &
  started=$!
  pids+=("$started")
  local n=0
  while ! [ -s "$f" ]; do
    sleep 0.1
    n=$((n + 1))
    if [ $n -gt 600 ]; then echo "timed out: $*" >&2; cat "$f.err" >&2; exit 1; fi
  done
}
peak() { awk '/VmHWM/ {print $2 * 1024}' "/proc/$1/status"; }

# Testnets and writers.
start "$tmp/js-net" "${js[@]}" testnet 20
start "$tmp/rs-net" "$rs" testnet 20
declare -A net writer_pid key topic
net[js]=$(field "$tmp/js-net" bootstrap)
net[peerhost]=$(field "$tmp/rs-net" bootstrap)
"${js[@]}" prepare "$tmp/js-w" "$blocks" 65536 >/dev/null
"$rs" prepare "$tmp/rs-w" "$blocks" 65536 >/dev/null
start "$tmp/js-writer" "${js[@]}" writer "$tmp/js-w" "${net[js]}"
writer_pid[js]=$started
start "$tmp/rs-writer" "$rs" writer "$tmp/rs-w" "${net[peerhost]}"
writer_pid[peerhost]=$started
for w in js peerhost; do
  f=$tmp/${w/peerhost/rs}-writer
  key[$w]=$(field "$f" key)
  topic[$w]=$(field "$f" topic)
done
client() { # implementation args...
  local impl=$1
  shift
  if [ "$impl" = js ]; then timeout "$limit" "${js[@]}" "$@"; else timeout "$limit" "$rs" "$@"; fi
}

echo "Lookups ($lookups per row, one after another, each a full query; ms; \"first record\": when the"
echo "JS stream yielded the first answer listing the writer, peerhost's lookup returns only at the end):"
echo
echo "| client | testnet (20 nodes) | median | p90 | first record, median | answers with records | peers found |"
echo "|---|---|---:|---:|---:|---:|---:|"
for c in peerhost js; do
  for n in peerhost js; do
    client "$c" lookup "${net[$n]}" "${topic[$n]}" "$lookups" >"$tmp/lookup" 2>"$tmp/lookup.err" || true
    python3 - "$c" "$n" "$tmp/lookup" <<'PY'
import json, statistics, sys
c, n, f = sys.argv[1:4]
text = open(f).read().strip()
if not text:
    print(f"| {c} | {n} | failed | – | – | – | – |"); sys.exit(0)
j = json.loads(text)
ms = sorted(j['ms'])
p90 = ms[min(len(ms) - 1, int(round(0.9 * len(ms))) - 1)]
first = [x for x in j['first_ms'] if x is not None]
first = f"{statistics.median(first):.2f}" if first else "–"
print(f"| {c} | {n} | {statistics.median(ms):.2f} | {p90:.2f} | {first} | {j['replies']} | {j['peers']} |")
PY
  done
done

echo
echo "Join to first replication channel (median of $tries fresh readers; ms from the join call):"
echo
echo "| writer ← reader | first connection | first open channel | first verified block |"
echo "|---|---:|---:|---:|"
join_row() { # label file
  python3 - "$1" "$2" "$tries" <<'PY'
import json, statistics, sys
label, f, tries = sys.argv[1:4]
rows = [json.loads(l) for l in open(f) if l.strip()]
if not rows:
    print(f"| {label} | failed | – | – |"); sys.exit(0)
def med(k):
    v = [x[k] for x in rows if x.get(k) is not None]
    return f"{statistics.median(v):.1f}" if v else "–"
note = "" if len(rows) == int(tries) else f" ({len(rows)} of {tries} finished)"
print(f"| {label}{note} | {med('connection_ms')} | {med('channel_ms')} | {med('first_block_ms')} |")
PY
}
for w in peerhost js; do
  for r in peerhost js; do
    client "$r" reader "${net[$w]}" "${key[$w]}" "$tries" >"$tmp/join" 2>"$tmp/join.err" || true
    join_row "$w ← $r" "$tmp/join"
  done
done
# JS with `firewalled: false` on the writer's and the readers' nodes (a shorter connect: no
# holepunch round through the DHT), on a small log of its own.
"${js[@]}" prepare "$tmp/js-w2" 16 65536 >/dev/null
start "$tmp/js-writer2" env BENCH_UNFIREWALLED=1 "${js[@]}" writer "$tmp/js-w2" "${net[js]}"
BENCH_UNFIREWALLED=1 client js reader "${net[js]}" "$(field "$tmp/js-writer2" key)" "$tries" \
  >"$tmp/join" 2>"$tmp/join.err" || true
join_row "js ← js, both \`firewalled: false\`" "$tmp/join"

echo
echo "$blocks blocks of 64 KiB over UDX (median of $full fresh readers per row; peak RSS: the largest):"
echo
echo "| writer → reader | join → last block | open channel → last block | throughput (runs) | reader peak RSS | writer peak RSS so far |"
echo "|---|---:|---:|---:|---:|---:|"
for w in peerhost js; do
  for r in peerhost js; do
    : >"$tmp/all"
    for _ in $(seq "$full"); do
      client "$r" reader "${net[$w]}" "${key[$w]}" 1 all >>"$tmp/all" 2>"$tmp/all.err" || true
    done
    python3 - "$w" "$r" "$tmp/all" "$(peak "${writer_pid[$w]}")" "$full" <<'PY'
import json, statistics, sys
w, r, f, wpeak, full = sys.argv[1:6]
rows = [json.loads(l) for l in open(f) if l.strip()]
wmib = f"{int(wpeak) / 2**20:.0f} MiB"
if not rows:
    print(f"| {w} → {r} | failed or timed out | – | – | – | {wmib} |"); sys.exit(0)
for x in rows:
    x['moving'] = x['done_ms'] - x['channel_ms']
    x['mbps'] = x['bytes'] / x['moving'] / 1e3
rows.sort(key=lambda x: x['moving'])
m = rows[len(rows) // 2]
runs = ", ".join(f"{x['mbps']:.0f}" for x in rows)
note = "" if len(rows) == int(full) else f" ({len(rows)} of {full} finished)"
rss = max(x['peak_rss'] for x in rows) / 2**20
print(f"| {w} → {r}{note} | {m['done_ms']:.0f} ms | {m['moving']:.0f} ms | {m['mbps']:.1f} MB/s ({runs}) "
      f"| {rss:.0f} MiB | {wmib} |")
PY
  done
done
