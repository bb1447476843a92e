#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each; stops at the first crash.
# usage: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "fuzz/run.sh: install cargo-fuzz first: cargo install cargo-fuzz" >&2; exit 1; }
for target in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
  echo "== $target for ${seconds}s" >&2
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds" 2>&1 | tail -3
done
