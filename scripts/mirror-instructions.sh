#!/usr/bin/env bash
# Instructions the mirror of scripts/bench-node.sh executes (callgrind, all threads, start-up
# included): mirroring LOGS logs of 20 x 1 KiB over one connection, idle, then serving one
# follower. Unlike wall time the count does not move with the machine's load, so two builds
# compare on a busy machine.
#   bash scripts/mirror-instructions.sh BIN [BIN...]     (BIN: a release build of mirror_bench)
# The first BIN prepares and serves the source and runs the follower; each BIN mirrors under
# callgrind. Prints one line per BIN. LOGS=N (default 1000).
set -euo pipefail
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
logs=${LOGS:-1000}
src=$1
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
"$src" prepare "$tmp/source" "$logs" 20 1024 >/dev/null
mkfifo "$tmp/src.out"
"$src" serve "$tmp/source" > "$tmp/src.out" & pids+=($!)
read -r port < "$tmp/src.out"
for b in "$@"; do
  rm -rf "$tmp/mirror" "$tmp/follower" "$tmp/in" "$tmp/out"
  mkfifo "$tmp/in" "$tmp/out"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$b" mirror "$port" \
    "$tmp/source/keys.txt" "$tmp/mirror" < "$tmp/in" > "$tmp/out" 2> "$tmp/cg.err" & vp=$!
  exec {w}>"$tmp/in"
  while read -r line; do
    case "$line" in
      *'"listening"'*)
        mport=$(sed 's/.*"port":\([0-9]*\).*/\1/' <<< "$line")
        "$src" follow "$mport" "$tmp/source/keys.txt" "$tmp/follower" > /dev/null
        echo done >&$w ;;
      *'"served"'*) break ;;
    esac
  done < "$tmp/out"
  exec {w}>&-
  wait "$vp"
  echo "$b: $(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/cg.err") instructions"
done
