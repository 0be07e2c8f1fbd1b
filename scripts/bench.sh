#!/usr/bin/env bash
# Runs every benchmark; each prints medians of several runs and its ratio to the anchor.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
for b in benchmarks/bench_*.py; do
  echo "== $b"
  .venv/bin/python "$b"
done
