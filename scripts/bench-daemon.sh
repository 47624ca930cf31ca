#!/usr/bin/env bash
# Many communities on one mirror (issue 15): a daemon mirroring COMMUNITIES communities of 4
# logs each (a few small posts) on a local HyperDHT testnet on 127.0.0.1 (a bootstrap node and
# 4 persistent nodes, like `peerhost demo`'s), against JS corestore 7 + hyperswarm 4 joining the
# same number of topics on the same testnet, in one run, one after the other.
#   bash scripts/bench-daemon.sh [COMMUNITIES]     (default 10000)
# Per side: time to start (process start to the daemon ready: every log open and tracked,
# every topic joined, the swarm listening), time until every topic is announced (the swarm's own
# count: topics whose announce completed; JS: every discovery flushed), RSS and descriptors
# SETTLE s later (default 20), files per log; then a fresh DHT node looks up SAMPLE topics
# (default 200, spread over all logs) and counts those that list the node's key.
# Rust: crates/daemon/examples/daemon_bench.rs; JS: interop-tests/bench/daemon.js.
# DAEMON_BENCH_BIN: a build of the example to use instead of building one. TIMEOUT (s, default
# 900): how long one side may take to announce everything before it is reported as missed.
# JS=0: the Rust side alone (quick loops while profiling; the table rows need both).
set -euo pipefail
cd "$(dirname "$0")/.."
communities=${1:-10000}
settle=${SETTLE:-20}
sample=${SAMPLE:-200}
timeout=${TIMEOUT:-900}
js=${JS:-1}
if [ -z "${DAEMON_BENCH_BIN:-}" ]; then
  cargo build --locked --release -q -p peerhost-daemon --example daemon_bench
fi
(cd interop-tests && [ -d node_modules/corestore ] || npm ci --no-audit --no-fund --loglevel=error)
bin=${DAEMON_BENCH_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/examples/daemon_bench}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
results=$tmp/results

mkfifo "$tmp/testnet.out"
"$bin" testnet 5 > "$tmp/testnet.out" & pids+=($!)
read -r line < "$tmp/testnet.out"
boot=$(sed 's/.*"bootstrap":"\([^"]*\)".*/\1/' <<< "$line")
echo "testnet: $boot" >&2

"$bin" prepare "$tmp/peerhost" "$communities" 3 | sed 's/^{/{"impl":"peerhost",/' | tee -a "$results"
if [ "$js" = 1 ]; then
  node interop-tests/bench/daemon.js prepare "$tmp/js" "$communities" 3 | sed 's/^{/{"impl":"js",/' | tee -a "$results"
fi

# side NAME CMD…: run one side until its "idle" line (or TIMEOUT), sample lookups, stop it.
side() {
  local name=$1; shift
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" & local pid=$!; pids+=($pid)
  local deadline=$((SECONDS + timeout))
  until grep -q '"idle"' "$tmp/$name.out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "$name exited:" >&2; cat "$tmp/$name.err" >&2; break; fi
    if [ $SECONDS -ge $deadline ]; then
      echo "$name: not all announced within ${timeout} s" >&2
      echo "{\"impl\":\"$name\",\"event\":\"timeout\",\"s\":$timeout}" >> "$results"
      break
    fi
    sleep 1
  done
  sed "s/^{/{\"impl\":\"$name\",/" "$tmp/$name.out" | tee -a "$results"
  local key
  key=$(grep '"ready"' "$tmp/$name.out" | sed 's/.*"public_key":"\([0-9a-f]*\)".*/\1/')
  if [ -n "$key" ]; then
    "$bin" lookup "$boot" "$tmp/$name.topics" "$sample" "$key" | sed "s/^{/{\"impl\":\"$name\",/" | tee -a "$results"
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

side peerhost "$bin" run "$tmp/peerhost" "$boot" "$settle"
if [ "$js" = 1 ]; then
  side js node interop-tests/bench/daemon.js run "$tmp/js" "$boot" "$settle"
fi

python3 - "$results" "$communities" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    try: v = json.loads(line)
    except ValueError: continue
    rows.setdefault(v['impl'], {})[v['event']] = v
mib = lambda b: '%.1f MiB' % (b / 1048576)
print('\n| %s communities (%d logs) | start (process start to ready) | all topics announced (after ready) | RSS at ready | idle RSS (peak) | idle heap | descriptors | files + dirs (per log) | sampled lookups that find it |' % (sys.argv[2], int(sys.argv[2]) * 4))
print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
for impl in ('peerhost', 'js'):
    r = rows.get(impl, {})
    rd, an, idle, lk = r.get('ready', {}), r.get('announced'), r.get('idle', {}), r.get('lookup', {})
    if not rd: continue
    ann = '%.1f s' % (an['ms'] / 1000) if an else 'not within %s s' % r.get('timeout', {}).get('s', '?')
    logs = idle.get('logs') or 1
    print('| %s | %.2f s | %s | %s | %s (%s) | %s | %s | %s + %s (%.2f) | %s / %s |' % (
        'peerhost' if impl == 'peerhost' else 'JS corestore 7 + hyperswarm 4',
        rd['ms'] / 1000, ann, mib(rd.get('rss', 0)), mib(idle.get('rss', 0)),
        mib(idle.get('peak_rss', 0)), mib(idle['heap']) if 'heap' in idle else '?',
        idle.get('fds', '?'), idle.get('files', '?'),
        idle.get('dirs', '?'), idle.get('files', 0) / logs, lk.get('found', '?'),
        lk.get('sampled', '?')))
PY
