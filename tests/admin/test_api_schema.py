"""schemathesis over the staff API (/api/auth/* and /api/admin/*) of the real `vpnshop demo` process: whatever
the generated requests, no 5xx. Bounded (a few examples per operation, no shrinking) to stay well under two
minutes on a busy CI machine; derandomized so a failure reproduces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from app.demo.seed import DEMO_STAFF_PASSWORD, DEMO_STAFF_USERNAME
from tests.demo_process import start_demo, stop, wait_healthy
from tests.emulators.harness import free_port

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    workdir: Path = tmp_path_factory.mktemp("schema-demo")
    process = start_demo(workdir, port)
    try:
        wait_healthy(base, process)
        yield base
    finally:
        output = stop(process)
        assert "Traceback" not in output, output[-4000:]


@pytest.fixture(scope="module")
def demo_token(demo_base: str) -> str:
    """Taken before the fuzzing starts: generated logins soon hit the per-address limit."""
    response = httpx.post(
        f"{demo_base}/api/auth/login", json={"username": DEMO_STAFF_USERNAME, "password": DEMO_STAFF_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def fuzz(operation: schemathesis.APIOperation, headers: dict[str, str], failures: list[str]) -> int:
    """Run one operation's generated cases; returns how many were sent."""
    sent = 0

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def no_5xx(case: schemathesis.Case) -> None:
        nonlocal sent
        response = case.call(headers=headers, timeout=30)
        sent += 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

    no_5xx()
    return sent


def test_no_server_errors(demo_base: str, demo_token: str) -> None:
    # schemathesis's pytest plugin (lazy schemas) does not run under pytest 9, so each operation gets its own
    # hypothesis run here.
    schema = schemathesis.openapi.from_url(f"{demo_base}/api/openapi.json").include(path_regex=r"^/api/(auth|admin)/")
    failures: list[str] = []
    operations = sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Logout with the shared token would sign the rest of the run out; it is fuzzed without one.
        headers = {"authorization": f"Bearer {demo_token}"} if operation.path.startswith("/api/admin/") else {}
        sent += fuzz(operation, headers, failures)
    assert operations >= 4  # login, refresh, logout and at least one /api/admin operation
    assert sent >= operations * 2
    assert failures == []
