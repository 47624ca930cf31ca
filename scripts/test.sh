#!/usr/bin/env bash
# Every test peerhost has, in the order CI runs them. Run from anywhere: `bash scripts/test.sh`.
# Needs: cargo (with cargo-nextest), node 20 + npm. `.ci/run` installs the rest and calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "JS packages (interop-tests/, exact pins from package-lock.json)"
(cd interop-tests && npm ci --no-audit --no-fund --loglevel=error)

step "format and lints (warnings denied)"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

step "fixtures: regenerate with the pinned JS packages and fail on any diff"
node interop-tests/fixtures/generate.js fixtures
if [ -n "$(git status --porcelain -- fixtures)" ]; then
  git status --porcelain -- fixtures
  git diff --stat -- fixtures
  echo "fixtures/ changed when regenerated: commit the generator's output" >&2
  exit 1
fi

step "Rust tests (unit, property, fixtures, crash, JS interop)"
cargo build --locked --release -p peerhost
cargo nextest run --locked --workspace --profile ci
cargo test --locked --workspace --doc

step "JS tests (node:test, real packages)"
(cd interop-tests && npm test)

step "fuzz smoke: every fuzz target builds and runs briefly"
bash scripts/fuzz.sh smoke
