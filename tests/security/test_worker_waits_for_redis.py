"""`vpnshop worker` waits for Redis instead of exiting (issue 18 item 4): started while Redis is down it waits,
and when Redis goes away mid-run it waits again; each time it carries on running jobs once Redis is back.
A redis-server of the test's own, on a free port, is the Redis that comes and goes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
from sqlalchemy import func, select

from app.db import create_engine, create_sessionmaker
from app.kit.clock import utcnow
from app.models import JobRun
from tests.conftest import make_settings
from tests.emulators.harness import free_port
from tests.processes import Running, production_stack, wait_for

REDIS_SERVER = shutil.which("redis-server")
# arq's own start-up budget is 5 retries a second apart; the worker must outlive it by a margin.
LONGER_THAN_ARQ_GIVES_UP = 8.0

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


@contextmanager
def redis_server(port: int) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="vpnshop-redis-") as workdir:
        process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


def logged(worker: Running, text: str) -> bool:
    assert worker.process.poll() is None, f"the worker exited:\n{worker.log.read_text(errors='replace')[-3000:]}"
    return worker.log.read_text(errors="replace").count(text) > 0


async def test_the_worker_waits_for_redis_at_start_and_mid_run() -> None:
    port = free_port()
    async with production_stack(REDIS_URL=f"redis://127.0.0.1:{port}/0") as stack:
        engine = create_engine(make_settings(stack.database_url))
        sessionmaker = create_sessionmaker(engine)

        async def jobs_ran_since(moment: datetime) -> bool:
            async with sessionmaker() as session:
                return bool(await session.scalar(select(func.count()).where(JobRun.started_at > moment)))

        try:
            worker = stack.start("worker")
            await wait_for(lambda: logged(worker, "Redis is unreachable"), within=60, what="the worker noticing")
            await asyncio.sleep(LONGER_THAN_ARQ_GIVES_UP)
            assert logged(worker, "Redis is unreachable")  # still running, still waiting

            with redis_server(port):
                back = utcnow()
                await wait_for(lambda: jobs_ran_since(back), within=60, what="a job run once Redis is up")
                before = worker.log.read_text(errors="replace").count("Redis is unreachable")
            # Redis gone mid-run: the worker waits again rather than exiting.
            await wait_for(
                lambda: worker.log.read_text(errors="replace").count("Redis is unreachable") > before,
                within=60,
                what="the worker noticing Redis gone",
            )
            await asyncio.sleep(LONGER_THAN_ARQ_GIVES_UP)
            assert worker.process.poll() is None
            with redis_server(port):
                back = utcnow()
                await wait_for(lambda: jobs_ran_since(back), within=60, what="jobs again once Redis is back")
                assert logged(worker, "Redis is reachable again")
                code, output = worker.stop()
            # Stopped by SIGTERM rather than killed after stop()'s 30 s: shutdown does not wait on anything.
            assert code != -9, output[-3000:]
        finally:
            await engine.dispose()
