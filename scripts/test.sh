#!/usr/bin/env bash
# The whole test suite: lint, then pytest against SQLite and (when reachable) PostgreSQL and Redis.
# In CI (CI=true) a missing PostgreSQL or Redis fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# The end-to-end tests drive Debian's Chromium; Playwright never downloads a browser here.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's chromium for the end-to-end tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-lohit-deva >/dev/null
fi

# Hindi pages need a Devanagari font in that Chromium (a small one: fonts-lohit-deva, not all of fonts-noto-core).
if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=hi family)" ] \
  && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing a Devanagari font for the Hindi end-to-end tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends fonts-lohit-deva >/dev/null
fi

# The backup tests run PostgreSQL's own pg_dump and pg_restore (Debian's client matches Debian's server).
if ! command -v pg_dump >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's postgresql-client for the backup tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql-client >/dev/null
fi

# The home page benchmark's smoke run (tests/test_bench_smoke.py) loads the page with wrk, Debian's.
if ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's wrk for the benchmarks' smoke runs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi

"$BIN/ruff" check .
"$BIN/ruff" format --check .
"$BIN/lint-imports" --no-cache  # the layer contract in .importlinter (docs/ARCHITECTURE.md)
bash scripts/check_deploy.sh   # compose schema, Caddyfile, Prometheus config and rules, dashboard queries
bash scripts/check_package.sh  # the wheel alone runs the product (fresh venv, demo from another folder)

mkdir -p test-output
"$BIN/pytest" -p no:cacheprovider --durations=15 "$@"
