#!/usr/bin/env bash
# The whole test suite: lint, then pytest against SQLite and (when reachable) PostgreSQL and Redis.
# In CI (CI=true) a missing PostgreSQL or Redis fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

"$BIN/ruff" check .
"$BIN/ruff" format --check .

mkdir -p test-output
"$BIN/pytest" -p no:cacheprovider --durations=15 "$@"
