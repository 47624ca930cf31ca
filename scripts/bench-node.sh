#!/usr/bin/env bash
# The node benchmark (issue 6): a node mirroring LOGS logs of 20 x 1 KiB blocks over one TCP
# connection, then idle for 5 s, then serving a follower that downloads all of them from it.
# peerhost (crates/daemon/examples/mirror_bench.rs) and JS corestore 7
# (interop-tests/community/bench-mirror.js) mirror the same source (a peerhost node) in one run;
# the follower is a peerhost node in both cases.
#   bash scripts/bench-node.sh [LOGS]     (default 1000)
# Prints one JSON line per phase and a markdown table for BENCHMARKS.md. Temporary stores go
# under $TMPDIR: on ext4 without a journal, runs right after
# another are slowed by its deletes (ext4 skips inodes freed in the last 60-300 s; BENCHMARKS.md).
# NODE_CACHE=N: tree nodes cached in the Rust processes, all logs together (default: the
# store's, as the daemon has it).
set -euo pipefail
cd "$(dirname "$0")/.."
logs=${1:-1000}
# MIRROR_BENCH_BIN: use this build of the example instead of building one.
if [ -z "${MIRROR_BENCH_BIN:-}" ]; then
  cargo build --release -q -p peerhost-daemon --example mirror_bench
fi
(cd interop-tests && [ -d node_modules/corestore ] || npm ci --no-audit --no-fund --loglevel=error)
bin=${MIRROR_BENCH_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/examples/mirror_bench}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

"$bin" prepare "$tmp/source" "$logs" 20 1024
mkfifo "$tmp/src.out"
"$bin" serve "$tmp/source" > "$tmp/src.out" & pids+=($!)
read -r port < "$tmp/src.out"

# run_mirror NAME CMD…: the mirror prints phases; the follower runs when it listens.
run_mirror() {
  local name=$1; shift
  mkfifo "$tmp/$name.in" "$tmp/$name.out"
  "$@" < "$tmp/$name.in" > "$tmp/$name.out" & local mpid=$!; pids+=($mpid)
  exec {win}>"$tmp/$name.in"
  local line mport
  while read -r line; do
    echo "{\"impl\":\"$name\",${line#\{}" | tee -a "$tmp/results"
    case "$line" in
      *'"listening"'*)
        mport=$(sed 's/.*"port":\([0-9]*\).*/\1/' <<< "$line")
        "$bin" follow "$mport" "$tmp/source/keys.txt" "$tmp/follower-$name" | \
          sed "s/^{/{\"impl\":\"follower of $name\",/" | tee -a "$tmp/results"
        echo done >&$win ;;
      *'"served"'*) break ;;
    esac
  done < "$tmp/$name.out"
  exec {win}>&-
  wait "$mpid" 2>/dev/null || true
}

run_mirror peerhost "$bin" mirror "$port" "$tmp/source/keys.txt" "$tmp/mirror"
run_mirror "js-corestore" node interop-tests/community/bench-mirror.js "$port" "$tmp/source/keys.txt"

python3 - "$tmp/results" "$logs" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    try: v = json.loads(line)
    except ValueError: continue
    rows.setdefault(v['impl'], {})[v['event']] = v
mib = lambda b: '%.0f MiB' % (b / 1048576)
print('\n| %s logs x 20 x 1 KiB, one connection | time | CPU | peak RSS | idle RSS | serving a follower: follower time, mirror CPU, peak RSS |' % sys.argv[2])
print('|---|---|---|---|---|---|')
for impl in ('peerhost', 'js-corestore'):
    r = rows.get(impl, {})
    m, i, s = r.get('mirrored', {}), r.get('idle', {}), r.get('served', {})
    f = rows.get('follower of ' + impl, {}).get('followed', {})
    if not m: continue
    print('| %s | %.2f s | %.2f s | %s | %s | %.2f s, %.2f s, %s |' % (
        impl, m['ms'] / 1000, m['cpu_ms'] / 1000, mib(m['peak_rss']), mib(i.get('rss', 0)),
        f.get('ms', 0) / 1000, s.get('cpu_ms', 0) / 1000, mib(s.get('peak_rss', 0))))
PY
