#!/usr/bin/env bash
# Source files in crates/ and cli/ longer than LIMIT lines (default 1000) before their test
# module (`#[cfg(test)]` at the start of a line), one per line: "LINES PATH". Exits 1 if any.
#   bash scripts/long-files.sh [LIMIT]
# Issue 14's rule: no source file over 1 000 lines before its test module. Integration tests
# (`tests/` directories) are test modules as a whole and are not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-1000}
found=0
while IFS= read -r f; do
  n=$(grep -n -m1 '^#\[cfg(test)\]' "$f" | cut -d: -f1 || true)
  [ -n "$n" ] || n=$(wc -l < "$f")
  if [ "$n" -gt "$limit" ]; then
    echo "$n $f"
    found=1
  fi
done < <(git ls-files 'crates/*.rs' 'cli/*.rs' | grep -v '/tests/')
exit "$found"
