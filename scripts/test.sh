#!/usr/bin/env bash
# Runs the architecture contracts and the whole test suite (real Orthanc and dcmprscp peers,
# pytest-qt widgets offscreen, VTK under Xvfb). Used by `make test` and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
