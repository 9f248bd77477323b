"""A broadcast survives its worker being killed: `vpnshop worker` runs as a real process (PostgreSQL, Redis, the
Bot API emulator over HTTP); once part is sent, the emulator takes every message but holds its answer, the worker
is killed with SIGKILL while its groups wait, and a new worker finishes the broadcast. Every recipient gets exactly
one message; what the killed worker had on its way is `unknown`, never sent again."""

from __future__ import annotations

import signal

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.broadcasts import service
from app.db import create_engine, create_sessionmaker, transaction
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus
from tests.broadcasts.people import draft, person
from tests.conftest import make_settings
from tests.emulators.harness import serve
from tests.emulators.telegram import TelegramBotApiEmulator
from tests.processes import Stack, production_stack, wait_for

RECIPIENTS = 400
RATE = 200
CRON_LOCK = "arq:queue:cron-running:dispatch_broadcasts"


async def counts(sessionmaker: async_sessionmaker[AsyncSession], broadcast_id: int) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(BroadcastDelivery.status, func.count())
            .where(BroadcastDelivery.broadcast_id == broadcast_id)
            .group_by(BroadcastDelivery.status)
        )
        return {str(status): int(number) for status, number in rows.all()}


async def test_killed_worker_mid_broadcast_then_resumed_sends_everyone_exactly_once(redis_url: str) -> None:
    emulator = TelegramBotApiEmulator(global_rate=RATE)
    redis = Redis.from_url(redis_url)
    with serve(emulator.app) as api_url:
        env = {
            "BOT_TOKEN": emulator.token,
            "TELEGRAM_API_URL": api_url,
            "TELEGRAM_RATE_PER_SECOND": str(RATE),
            "BROADCAST_LEASE_SECONDS": "2",
        }
        async with production_stack(**env) as stack:
            engine = create_engine(make_settings(stack.database_url))
            sessionmaker = create_sessionmaker(engine)
            try:
                await _kill_and_resume(stack, emulator, sessionmaker, redis)
            finally:
                await engine.dispose()
    await redis.aclose()


async def _kill_and_resume(
    stack: Stack, emulator: TelegramBotApiEmulator, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis
) -> None:
    async with transaction(sessionmaker) as session:
        people = [await person(session, language=("ru", "en")[n % 2]) for n in range(RECIPIENTS)]
        created = await service.create(session, make_settings(stack.database_url), draft(), service.Actor("cli"))
        await service.start(session, created.id, service.Actor("cli"), now=True)
    broadcast_id = created.id
    first = stack.start("worker")

    async def part_sent() -> bool:
        return len(emulator.messages) >= RECIPIENTS // 4

    await wait_for(part_sent, within=60, what="the first worker to send a quarter")
    # From now on Telegram takes each message but never answers: the worker's groups wait, in `sending`.
    emulator.delay_next(60, times=10**6, method="sendMessage")

    async def in_flight_all_taken() -> bool:
        now = await counts(sessionmaker, broadcast_id)
        sending = now.get("sending", 0)
        return sending > 0 and len(emulator.messages) == now.get("sent", 0) + sending

    await wait_for(in_flight_all_taken, within=60, what="every message on its way to reach the emulator")
    # Not in the middle of a dispatcher run: its cross-worker lock would hold the next worker's dispatcher
    # back until it lapses (30 s), which only makes the test slower.
    await wait_for(lambda: _no_key(redis, CRON_LOCK), within=60, what="the dispatcher to be idle")
    first.stop(signal.SIGKILL)
    at_kill = await counts(sessionmaker, broadcast_id)
    taken_at_kill = len(emulator.messages)
    assert at_kill.get("sending", 0) > 0 and at_kill.get("pending", 0) > 0, at_kill

    emulator.clear_faults()
    stack.start("worker")

    async def done() -> bool:
        async with sessionmaker() as session:
            status = await session.scalar(select(Broadcast.status).where(Broadcast.id == broadcast_id))
        return status == BroadcastStatus.DONE

    await wait_for(done, within=90, what="the second worker to finish the broadcast")

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


async def _no_key(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)
