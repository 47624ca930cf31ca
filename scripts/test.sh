#!/usr/bin/env bash
# Every test peerhost has, in the order CI runs them. Run from anywhere: `bash scripts/test.sh`.
# Needs: cargo (with cargo-nextest and cargo-fuzz), node 20 + npm. `.ci/run` installs what a
# fresh machine lacks and calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# `npm ci` in DIR, exact pins from its package-lock.json. The registry can fail for a moment:
# try three times, and when it still fails show why (npm's own debug log), not only its path.
npm_ci() {
  local dir=$1 try
  for try in 1 2 3; do
    if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error --fetch-retries=4); then
      return 0
    fi
    echo "npm ci in $dir failed (try $try of 3); npm's log says:" >&2
    local log
    log=$(ls -t "${npm_config_cache:-$HOME/.npm}"/_logs/*-debug-0.log 2>/dev/null | head -n 1 || true)
    [ -n "$log" ] && grep -E 'error|ERR|verbose stack|verbose (cwd|node|npm)' "$log" | tail -n 40 >&2
    sleep $((try * 10))
  done
  echo "npm ci in $dir failed three times: is the npm registry reachable (npm ping)?" >&2
  return 1
}

step "JS packages (interop-tests/, exact pins from package-lock.json)"
npm --version
npm_ci interop-tests

step "format and lints (warnings denied)"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# Issue 14's rule: no source file over 1 000 lines before its test module.
bash scripts/long-files.sh

step "fixtures: regenerate with the pinned JS packages and fail on any diff"
node interop-tests/fixtures/generate.js fixtures
if [ -n "$(git status --porcelain -- fixtures)" ]; then
  git status --porcelain -- fixtures
  git diff --stat -- fixtures
  echo "fixtures/ changed when regenerated: commit the generator's output" >&2
  exit 1
fi

step "fuzz smoke: every fuzz target builds and runs briefly"
bash scripts/fuzz.sh smoke
# CI (.ci/run) sets PEERHOST_LEAN_DISK=1: the fuzz build is not needed again in this run.
if [ "${PEERHOST_LEAN_DISK:-}" = 1 ]; then rm -rf fuzz/target; fi

step "Rust tests (unit, property, fixtures, crash, CLI, live JS interop)"
cargo build --locked --release -p peerhost
# The WebRTC test peer for interop-tests/browser/rtc.test.js: only its tamperer (run with the browser tests below).
cargo build --locked --release -p peerhost-interop-tests --bin rtc_peer
cargo nextest run --locked --workspace --profile ci 2>&1 | tee "$logs/nextest"
cargo test --locked --workspace --doc 2>&1 | tee "$logs/doc"

step "JS tests (node:test, real packages)"
(cd interop-tests && npm test) 2>&1 | tee "$logs/node"

step "browser loader tests (web/, node:test over fixtures/ and gateway golden responses)"
npm_ci web
(cd web && npm test) 2>&1 | tee -a "$logs/node"

step "browser end to end (Chromium via playwright-core: an instance, mirrors, the bootstrap page)"
(cd web && npm run build)
PEERHOST_BIN="${CARGO_TARGET_DIR:-target}/release/peerhost" \
  node --test interop-tests/browser/ 2>&1 | tee -a "$logs/node"

# One closing line for the whole run (every step above already stopped the run on a failure).
rust=$(sed -n 's/.* tests run: \([0-9]*\) passed.*/\1/p' "$logs/nextest" | tail -n 1)
doc=$(awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' "$logs/doc")
js=$(awk '/^# pass / { n += $3 } END { print n + 0 }' "$logs/node")
printf '\nnextest %s, doc %s, node %s\n' "${rust:-0}" "${doc:-0}" "${js:-0}"
echo "$(( ${rust:-0} + ${doc:-0} + ${js:-0} )) passed, 0 failed"
