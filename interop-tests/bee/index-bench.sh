#!/usr/bin/env bash
# Community index build benchmark: peerhost's `feed::index::catch_up` and JS hyperbee 2.27.3
# (on hypercore 11.39.5) building the same index, in one run on this machine
# (crates/feed/examples/index_bench.rs, interop-tests/bee/index-bench.js).
#   bash interop-tests/bee/index-bench.sh [POSTS] [COMMENTS]   (default 10000 100000)
# Prints both JSON lines and the load average; paste them into BENCHMARKS.md with the command.
set -euo pipefail
cd "$(dirname "$0")/../.."
posts=${1:-10000}
comments=${2:-100000}
cargo build --locked --release -q -p peerhost-feed --example index_bench
(cd interop-tests && [ -d node_modules/hyperbee ] || npm ci --no-audit --no-fund --loglevel=error)
ops=$(mktemp)
trap 'rm -f "$ops"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/index_bench --posts "$posts" --comments "$comments" --ops "$ops"
node interop-tests/bee/index-bench.js "$ops"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
