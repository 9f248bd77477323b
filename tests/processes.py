"""`vpnshop worker` and `vpnshop bot` as real subprocesses against a fresh PostgreSQL database, real Redis and the
Telegram emulator: the product exactly as production starts it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from app import migrate
from tests.conftest import (
    POSTGRES_URL,
    REDIS_URL,
    TEST_ENCRYPTION_KEY,
    TEST_SECRET,
    _create_pg_database,
    _drop_pg_database,
    require_server,
)
from tests.demo_process import VPNSHOP, clean_env


@dataclass
class Stack:
    database_url: str
    env: dict[str, str]

    def start(self, command: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [VPNSHOP, command],
            env=clean_env(**(self.env | env)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


@asynccontextmanager
async def production_stack(**env: str) -> AsyncIterator[Stack]:
    """A migrated PostgreSQL database of its own and the environment production processes read."""
    require_server("PostgreSQL", POSTGRES_URL)
    require_server("Redis", REDIS_URL)
    name = f"vpnshop_proc_{uuid.uuid4().hex[:8]}"
    url = await _create_pg_database(POSTGRES_URL, name)
    try:
        await migrate.upgrade(url)
        base = {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": TEST_SECRET,
            "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
            "LOG_JSON": "false",
            "PUBLIC_BASE_URL": "https://shop.example",
        }
        yield Stack(url, base | env)
    finally:
        await _drop_pg_database(POSTGRES_URL, name)


async def wait_for(condition: Callable[[], object], *, within: float, what: str) -> None:
    """Poll an async or plain condition until it is truthy."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within} s")


def stop(process: subprocess.Popen[str], *, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
    """Signal the process and collect its exit code and output."""
    process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output
