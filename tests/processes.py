"""`vpnshop worker` and `vpnshop bot` as real subprocesses against a fresh PostgreSQL database, real Redis and the
Telegram emulator: the product exactly as production starts it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
class Running:
    """A started command; its output goes to a file (a pipe nobody reads would fill up and block it)."""

    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
        """Signal it (if still running) and return its exit code and output."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode, self.log.read_text(errors="replace")


@dataclass
class Stack:
    database_url: str
    env: dict[str, str]
    logs: Path
    started: list[Running] = field(default_factory=list)

    def start(self, command: str, **env: str) -> Running:
        log = self.logs / f"{command}-{len(self.started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [VPNSHOP, command], env=clean_env(**(self.env | env)), stdout=output, stderr=subprocess.STDOUT
            )
        running = Running(process, log)
        self.started.append(running)
        return running


@asynccontextmanager
async def production_stack(**env: str) -> AsyncIterator[Stack]:
    """A migrated PostgreSQL database of its own and the environment production processes read; every process
    started from it is stopped at the end."""
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
            # Off unless a test asks: several workers and bots of one test would want the same port.
            "WORKER_METRICS_PORT": "0",
            "BOT_METRICS_PORT": "0",
        }
        with tempfile.TemporaryDirectory(prefix="vpnshop-proc-") as logs:
            stack = Stack(url, base | env, Path(logs))
            try:
                yield stack
            finally:
                for running in stack.started:
                    running.stop()
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
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within} s")
