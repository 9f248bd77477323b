"""The broadcast jobs under the in-process runner (the same job functions arq runs): the dispatcher starts what is
due and gives each unattended broadcast one sender job, slices continue in new jobs, and a broadcast whose worker
died is resumed once its lease lapses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import sender, service
from app.db import transaction
from app.kit.clock import utcnow
from app.kit.jobs import InProcessRunner, JobPhase, JobRegistry, configure_jobs
from app.models import Broadcast, BroadcastStatus
from tasks.broadcasts import dispatch_broadcasts, send_broadcast
from tests.broadcasts.conftest import Bot
from tests.broadcasts.people import crowd, draft, reload

CLI = service.Actor("cli")


class Jobs:
    def __init__(self, bot: Bot) -> None:
        registry = JobRegistry()
        registry.job(send_broadcast)
        registry.job(dispatch_broadcasts)
        self.started: list[str] = []
        self.runner = InProcessRunner(registry, lambda: {"resources": bot.resources}, on_job_event=self._seen)
        self.ctx = {"resources": bot.resources}

    def _seen(self, name: str, phase: JobPhase, error: BaseException | None) -> None:
        if phase == "started":
            self.started.append(name)
        assert error is None, error

    async def dispatch(self) -> dict[str, list[int]]:
        return await dispatch_broadcasts(self.ctx)


@pytest.fixture
async def jobs(bot: Bot) -> AsyncIterator[Jobs]:
    jobs = Jobs(bot)
    jobs.runner.start()
    configure_jobs(jobs.runner)
    try:
        yield jobs
    finally:
        configure_jobs(None)
        await jobs.runner.stop()


async def test_the_dispatcher_starts_what_is_due_and_its_job_sends_it(
    db: AsyncSession, bot: Bot, jobs: Jobs, freeze
) -> None:
    users = await crowd(db, 10)
    clock = freeze(utcnow())
    created = await service.create(db, bot.settings, draft(scheduled_at=utcnow() + timedelta(minutes=5)), CLI)
    await service.start(db, created.id, CLI)
    await db.commit()
    broadcast_id = created.id

    assert await jobs.dispatch() == {"started": [], "enqueued": []}  # not yet
    clock.advance(minutes=5)
    assert await jobs.dispatch() == {"started": [broadcast_id], "enqueued": [broadcast_id]}
    # While its job is queued or running, later ticks add no second one.
    assert (await jobs.dispatch())["enqueued"] == []
    await jobs.runner.join()

    assert (await reload(db, broadcast_id)).status == BroadcastStatus.DONE
    assert bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1)
    assert jobs.started == ["send_broadcast"]


async def test_a_long_broadcast_runs_in_slices_each_in_its_own_job(
    db: AsyncSession, bot: Bot, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "SLICE_SECONDS", 0.05)  # stands for arq's four minutes
    users = await crowd(db, 120)  # groups of 50 at 200/s: a quarter second each
    broadcast_id = await bot.running(db)

    assert (await jobs.dispatch())["enqueued"] == [broadcast_id]
    await jobs.runner.join()

    assert (await reload(db, broadcast_id)).status == BroadcastStatus.DONE
    assert bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1)
    assert len(jobs.started) >= 2 and set(jobs.started) == {"send_broadcast"}


async def test_a_broadcast_whose_worker_died_is_resumed_once_the_lease_lapses(
    db: AsyncSession, bot: Bot, jobs: Jobs
) -> None:
    users = await crowd(db, 5)
    broadcast_id = await bot.running(db)
    async with transaction(bot.resources.sessionmaker) as session:
        held = {"lease_owner": "dead-worker", "lease_until": utcnow() + timedelta(minutes=1)}
        await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(**held))

    assert (await jobs.dispatch())["enqueued"] == []  # someone holds it
    async with transaction(bot.resources.sessionmaker) as session:
        await session.execute(
            update(Broadcast).where(Broadcast.id == broadcast_id).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    assert (await jobs.dispatch())["enqueued"] == [broadcast_id]
    await jobs.runner.join()

    assert (await reload(db, broadcast_id)).status == BroadcastStatus.DONE
    assert bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1)


async def test_paused_and_cancelled_broadcasts_get_no_sender(db: AsyncSession, bot: Bot, jobs: Jobs) -> None:
    await crowd(db, 2)
    paused, cancelled = await bot.running(db), await bot.running(db)
    async with transaction(bot.resources.sessionmaker) as session:
        await service.pause(session, paused, CLI)
        await service.cancel(session, cancelled, CLI)
    assert await jobs.dispatch() == {"started": [], "enqueued": []}
    assert bot.emulator.messages == []


async def test_without_a_bot_the_dispatcher_enqueues_no_sender(db: AsyncSession, bot: Bot, jobs: Jobs) -> None:
    await crowd(db, 2)
    broadcast_id = await bot.running(db)
    botless = {"resources": replace(bot.resources, telegram=None)}
    assert await dispatch_broadcasts(botless) == {"started": [], "enqueued": []}
    assert (await reload(db, broadcast_id)).status == BroadcastStatus.RUNNING  # waits for a bot
    assert jobs.started == []
