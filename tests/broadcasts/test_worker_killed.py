"""A broadcast survives its worker being killed: `vpnshop worker` runs as a real process (PostgreSQL, Redis, the
Bot API emulator over HTTP); once part is sent, the emulator takes every message but holds its answer, the worker
is killed with SIGKILL while its groups wait, and a new worker finishes the broadcast. Every recipient gets exactly
one message; what the killed worker had on its way is `unknown`, never sent again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import migrate
from app.broadcasts import service
from app.db import create_engine, create_sessionmaker, transaction
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus
from tests.broadcasts.people import draft, person
from tests.conftest import (
    POSTGRES_URL,
    TEST_ENCRYPTION_KEY,
    TEST_SECRET,
    _create_pg_database,
    _drop_pg_database,
    make_settings,
    require_server,
)
from tests.demo_process import VPNSHOP, clean_env
from tests.emulators.harness import serve
from tests.emulators.telegram import TelegramBotApiEmulator

RECIPIENTS = 400
RATE = 200
CRON_LOCK = "arq:queue:cron-running:dispatch_broadcasts"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    require_server("PostgreSQL", POSTGRES_URL)
    name = f"vpnshop_bcast_{uuid.uuid4().hex[:10]}"
    url = await _create_pg_database(POSTGRES_URL, name)
    await migrate.upgrade(url)
    yield url
    await _drop_pg_database(POSTGRES_URL, name)


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def counts(sessionmaker: async_sessionmaker[AsyncSession], broadcast_id: int) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(BroadcastDelivery.status, func.count())
            .where(BroadcastDelivery.broadcast_id == broadcast_id)
            .group_by(BroadcastDelivery.status)
        )
        return {str(status): int(number) for status, number in rows.all()}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [VPNSHOP, "worker"], env=clean_env(**env), stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=log.parent
    )


async def test_killed_worker_mid_broadcast_then_resumed_sends_everyone_exactly_once(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    engine = create_engine(make_settings(pg_url))
    sessionmaker = create_sessionmaker(engine)
    redis = Redis.from_url(redis_url)
    emulator = TelegramBotApiEmulator(global_rate=RATE)
    log = tmp_path / "worker.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with serve(emulator.app) as api_url:
            async with transaction(sessionmaker) as session:
                people = [await person(session, language=("ru", "en")[n % 2]) for n in range(RECIPIENTS)]
                settings = make_settings(pg_url)
                created = await service.create(session, settings, draft(), service.Actor("cli"))
                await service.start(session, created.id, service.Actor("cli"), now=True)
            broadcast_id = created.id
            env = {
                "DATABASE_URL": pg_url,
                "REDIS_URL": redis_url,
                "SECRET_KEY": TEST_SECRET,
                "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
                "BOT_TOKEN": emulator.token,
                "TELEGRAM_API_URL": api_url,
                "TELEGRAM_RATE_PER_SECOND": str(RATE),
                "BROADCAST_LEASE_SECONDS": "2",
                "LOG_JSON": "false",
            }
            workers.append(start_worker(env, log))

            async def part_sent() -> bool:
                return len(emulator.messages) >= RECIPIENTS // 4

            await until(part_sent, "the first worker to send a quarter")
            # From now on Telegram takes each message but never answers: the worker's groups wait, in `sending`.
            emulator.delay_next(60, times=10**6, method="sendMessage")

            async def in_flight_all_taken() -> bool:
                now = await counts(sessionmaker, broadcast_id)
                sending = now.get("sending", 0)
                return sending > 0 and len(emulator.messages) == now.get("sent", 0) + sending

            await until(in_flight_all_taken, "every message on its way to reach the emulator")
            # Not in the middle of a dispatcher run: its cross-worker lock would hold the next worker's dispatcher
            # back until it lapses (30 s), which only makes the test slower.
            await until(lambda: _no_key(redis, CRON_LOCK), "the dispatcher to be idle")
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=10)
            at_kill = await counts(sessionmaker, broadcast_id)
            taken_at_kill = len(emulator.messages)
            assert at_kill.get("sending", 0) > 0 and at_kill.get("pending", 0) > 0, at_kill

            emulator.clear_faults()
            workers.append(start_worker(env, log))

            async def done() -> bool:
                async with sessionmaker() as session:
                    status = await session.scalar(select(Broadcast.status).where(Broadcast.id == broadcast_id))
                return status == BroadcastStatus.DONE

            await until(done, "the second worker to finish the broadcast", within=90)

            assert emulator.message_counts() == dict.fromkeys((p.telegram_id for p in people), 1)
            assert emulator.stats()["duplicates"] == {}
            final = await counts(sessionmaker, broadcast_id)
            assert final == {"sent": RECIPIENTS - at_kill["sending"], "unknown": at_kill["sending"]}
            assert len(emulator.messages) > taken_at_kill
            async with sessionmaker() as session:
                stored = await session.get(Broadcast, broadcast_id)
                assert stored is not None
                assert (stored.total, stored.sent, stored.unknown, stored.failed) == (
                    RECIPIENTS,
                    final["sent"],
                    final["unknown"],
                    0,
                )
                unknown = await session.scalars(
                    select(BroadcastDelivery.error).where(
                        BroadcastDelivery.broadcast_id == broadcast_id,
                        BroadcastDelivery.status == DeliveryStatus.UNKNOWN,
                    )
                )
                assert set(unknown.all()) == {"interrupted while sending (worker stopped); not sent again"}
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
        await redis.aclose()
        await engine.dispose()


async def _no_key(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)
