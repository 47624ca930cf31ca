#!/usr/bin/env bash
# Fuzz targets (cargo-fuzz, libFuzzer), one per decoder of untrusted bytes.
#   bash scripts/fuzz.sh list                 the targets
#   bash scripts/fuzz.sh run TARGET [SECONDS] fuzz one target (default 60 s)
#   bash scripts/fuzz.sh smoke [SECONDS]      every target briefly (CI; default 5 s each)
# Works on the stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz pass its flags, and no
# sanitizer is used (`-s none`); libFuzzer's coverage guidance still applies.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^peerhost-fuzz$'; }

run() {
  local t=$1 secs=$2
  mkdir -p "corpus/$t"
  cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=0 2>&1 | tail -n 3
}

case "${1:-list}" in
  list) targets ;;
  run) run "$2" "${3:-60}" ;;
  smoke)
    secs=${2:-5}
    cargo fuzz build -s none
    for t in $(targets); do
      echo "fuzz $t (${secs}s)"
      run "$t" "$secs"
    done
    ;;
  *) echo "usage: $0 list | run TARGET [SECONDS] | smoke [SECONDS]" >&2; exit 2 ;;
esac
