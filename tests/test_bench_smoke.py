"""Every benchmark in bench/ runs its smoke mode (`--smoke`, bench/smoke.py): the real benchmark at a tiny size,
with all its correctness checks and no performance goal. A benchmark that no longer matches the product (a seed
refused by a new NOT NULL column, the home page's bare floor sending other SQL than the app) fails here, in the
change that broke it, instead of months later when someone wants figures.

Each runs as a subprocess, as a person would run it, against the suite's PostgreSQL and Redis (TEST_POSTGRES_URL,
TEST_REDIS_URL; skipped locally when absent, failed in CI). No timing is asserted: the machine may be busy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, POSTGRES_URL, require_server

ROOT = Path(__file__).resolve().parent.parent
# A guard against a hung run, far above what a smoke run takes (seconds to about twenty on a busy machine).
TIMEOUT_SECONDS = 300


def options(name: str, redis_url: str, tmp_path: Path) -> list[str]:
    """Where each benchmark finds the suite's servers (their option names differ)."""
    database = ["--database-url", POSTGRES_URL]
    return {
        "admin": [*database, "--redis-url", redis_url],
        "broadcast": [*database, "--redis-url", redis_url, "--worker-log", str(tmp_path / "worker.log")],
        "home_page": [*database, "--redis-url", redis_url],
        "panel_sync": database,
        "payment_webhooks": ["--database", POSTGRES_URL, "--redis", redis_url],
        "reminder_scan": database,
    }[name]


BENCHMARKS = ["admin", "broadcast", "home_page", "panel_sync", "payment_webhooks", "reminder_scan"]


def require_wrk() -> None:
    # scripts/test.sh installs Debian's wrk when it can (as root), like chromium for the end-to-end tests.
    if shutil.which("wrk") is not None:
        return
    message = "wrk is not installed (Debian: apt-get install -y wrk)"
    if IN_CI:
        pytest.fail(f"{message}; CI requires it")
    pytest.skip(message)


def checks_of(result: dict[str, Any]) -> dict[str, bool]:
    """Every check a benchmark's JSON reports (reminder_scan's are per scenario)."""
    found = dict(result.get("checks") or {})
    for scenario in result.get("scenarios", []):
        found |= {f"{scenario['spread']}: {name}": passed for name, passed in scenario["checks"].items()}
    return found


def test_every_benchmark_has_a_smoke_test() -> None:
    modules = {path.stem for path in (ROOT / "bench").glob("*.py")}
    # Helpers of home_page, not benchmarks of their own; smoke.py is the smoke mode itself.
    assert modules - {"__init__", "bare_home", "home_profile", "smoke"} == set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_smoke(name: str, redis_url: str, tmp_path: Path) -> None:
    require_server("PostgreSQL", POSTGRES_URL)
    if name == "home_page":
        require_wrk()
    results = tmp_path / f"{name}.json"
    env = dict(os.environ)
    # The benchmarks' throwaway databases, recognisable as the suite's (each run still gets a name of its own).
    env.setdefault("BENCH_DATABASE_PREFIX", "vpnshop_test_bench")
    command = [
        sys.executable,
        "-m",
        f"bench.{name}",
        "--smoke",
        "--json",
        str(results),
        *options(name, redis_url, tmp_path),
    ]
    run = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
    )
    output = f"{' '.join(command)}\n--- stdout\n{run.stdout[-6000:]}\n--- stderr\n{run.stderr[-6000:]}"
    assert run.returncode == 0, output
    result = json.loads(results.read_text())
    assert result["smoke"] is True, output
    checks = checks_of(result)
    assert checks, f"no checks in {results}:\n{output}"
    assert [check for check, passed in checks.items() if not passed] == [], output
    assert result["ok"] is True, output
