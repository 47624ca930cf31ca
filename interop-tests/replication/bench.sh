#!/usr/bin/env bash
# Replication benchmark over loopback TCP: peerhost and JS hypercore 11 as writer and reader in
# every combination, for 100 MiB of 64 KiB blocks and 20 MB of 1 KiB blocks.
#   bash interop-tests/replication/bench.sh [SCALE]   (SCALE 1 = those sizes; 0.1 for a quick run)
# Prints a markdown table (time to download everything, the reader's peak RSS) for BENCHMARKS.md.
# The peerhost reader is `peerhost follow KEY --peer tcp://… --stats` (stores with
# Durability::Process, as replicas do by default); the writer is `peerhost serve`.
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
# A reader that has not finished after this many seconds is reported as timed out (a JS reader
# has been seen to hang now and then; the table should still come out).
limit=${BENCH_TIMEOUT:-300}

# PEERHOST_BIN: use this binary instead of building one.
if [ -z "${PEERHOST_BIN:-}" ]; then cargo build --locked --release -q -p peerhost; fi
(cd interop-tests && [ -d node_modules/hypercore ] || npm ci --no-audit --no-fund --loglevel=error)
bin=${PEERHOST_BIN:-$PWD/target/release/peerhost}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# A peerhost store with one log of N blocks of SIZE bytes (block(i): i as u32le, then i & 255).
prepare_rust() {
  local store=$1 n=$2 size=$3
  python3 - "$tmp/blocks" "$n" "$size" <<'PY'
import os, struct, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(os.path.join(d, '%08d' % i), 'wb') as f:
        f.write(struct.pack('<I', i & 0xffffffff) + bytes([i & 255]) * (size - 4))
PY
  "$bin" log create bench --storage "$store" >"$tmp/key" 2>/dev/null
  (cd "$tmp/blocks" && ls | xargs -n 2000 "$bin" log append bench --storage "$store" >/dev/null)
  rm -rf "$tmp/blocks"
  "$bin" log info bench --storage "$store" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keyHex"])'
}

row() { # writer reader workload json
  python3 - "$@" <<'PY'
import json, sys
w, r, name, line = sys.argv[1:5]
if not line.strip():
    print(f"| {name} | {w} → {r} | failed or timed out | – | – |")
    sys.exit(0)
j = json.loads(line)
s = j['ms'] / 1000
print(f"| {name} | {w} → {r} | {j['ms']} ms | {j['bytes'] / s / 1e6:.1f} MB/s | {j['peak_rss'] / 2**20:.0f} MiB |")
PY
}

echo "| workload | writer → reader | time | throughput | reader peak RSS |"
echo "|---|---|---|---|---|"
for spec in "100 MiB of 64 KiB blocks:1600:65536" "20 MB of 1 KiB blocks:20000:1024"; do
  IFS=: read -r name n size <<<"$spec"
  n=$(python3 -c "print(max(1, round($n * $scale)))")

  # JS writer.
  node interop-tests/replication/bench.js writer "$n" "$size" >"$tmp/jsw" &
  pids+=($!)
  while ! [ -s "$tmp/jsw" ]; do sleep 0.1; done
  jkey=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$tmp/jsw")
  jport=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$tmp/jsw")

  # peerhost writer.
  wkey=$(prepare_rust "$tmp/w" "$n" "$size")
  # No DHT: a loopback benchmark needs none, and joining it can stall the first connections.
  "$bin" serve --storage "$tmp/w" --listen-tcp 127.0.0.1:0 --no-dht >"$tmp/addr" 2>"$tmp/serve.log" &
  pids+=($!)
  while ! [ -s "$tmp/addr" ]; do sleep 0.1; done
  waddr=$(cat "$tmp/addr")

  row js js "$name" "$(timeout "$limit" node interop-tests/replication/bench.js reader "$jkey" "$jport" || true)"
  rm -rf "$tmp/r1"
  row js peerhost "$name" "$(timeout "$limit" "$bin" follow "$jkey" --peer "tcp://127.0.0.1:$jport" --storage "$tmp/r1" -q --stats 2>/dev/null || true)"
  rm -rf "$tmp/r2"
  row peerhost peerhost "$name" "$(timeout "$limit" "$bin" follow "$wkey" --peer "tcp://$waddr" --storage "$tmp/r2" -q --stats 2>/dev/null || true)"
  wport=${waddr##*:}
  row peerhost js "$name" "$(timeout "$limit" node interop-tests/replication/bench.js reader "$wkey" "$wport" || true)"

  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Let the writers exit before their stores are removed.
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  rm -rf "$tmp/w" "$tmp/r1" "$tmp/r2" "$tmp/addr" "$tmp/jsw"
done
