#!/usr/bin/env bash
# Instructions a peerhost reader executes to download a log over loopback TCP, counted by
# valgrind's callgrind: unlike wall time, the count does not move with the machine's load, so
# two builds compare on a busy machine.
#   bash interop-tests/replication/instructions.sh N SIZE BIN [BIN...]
# A writer (the first BIN, `peerhost serve`, run natively; with WRITER=js the JS writer of
# bench.js) holds N blocks of SIZE bytes; each BIN then runs `peerhost follow KEY --peer
# tcp://…` under callgrind into a fresh store. Prints one line per BIN: the total instructions
# of the reader (all threads, startup included).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=$1 size=$2
shift 2
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ "${WRITER:-}" = js ]; then
  (cd interop-tests && [ -d node_modules/hypercore ] || npm ci --no-audit --no-fund --loglevel=error)
  node interop-tests/replication/bench.js writer "$n" "$size" >"$tmp/jsw" &
  pids+=($!)
  while ! [ -s "$tmp/jsw" ]; do sleep 0.1; done
  key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$tmp/jsw")
  port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$tmp/jsw")
  echo "127.0.0.1:$port" >"$tmp/addr"
else
  python3 - "$tmp/blocks" "$n" "$size" <<'PY'
import os, struct, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(os.path.join(d, '%08d' % i), 'wb') as f:
        f.write(struct.pack('<I', i & 0xffffffff) + bytes([i & 255]) * (size - 4))
PY
  writer=$(realpath "$1")
  "$writer" log create bench --storage "$tmp/w" >/dev/null 2>&1
  (cd "$tmp/blocks" && ls | xargs -n 2000 "$writer" log append bench --storage "$tmp/w" >/dev/null)
  key=$("$writer" log info bench --storage "$tmp/w" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["keyHex"])')
  "$writer" serve --storage "$tmp/w" --listen-tcp 127.0.0.1:0 --no-dht >"$tmp/addr" 2>/dev/null &
  pids+=($!)
  while ! [ -s "$tmp/addr" ]; do sleep 0.05; done
fi
for bin in "$@"; do
  rm -rf "$tmp/r"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$bin" follow "$key" \
    --peer "tcp://$(cat "$tmp/addr")" --storage "$tmp/r" -q --stats >/dev/null 2>"$tmp/cg.err" || true
  total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/cg.err")
  echo "$bin: ${total:-failed} instructions"
done
