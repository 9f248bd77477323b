"""`vpnshop worker` and `vpnshop bot` as real processes (PostgreSQL, Redis, the Telegram emulator over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import create_sessionmaker, transaction
from app.models import JobRun, Notification, User
from app.notifications.service import notify_user
from tests.emulators.harness import Plug, serve
from tests.emulators.telegram import TelegramBotApiEmulator
from tests.processes import production_stack, wait_for

plug = Plug()


@pytest.fixture
def emulator(redis_url: str) -> Iterator[tuple[TelegramBotApiEmulator, str]]:
    emulator = TelegramBotApiEmulator()
    plug.app = emulator.app
    with serve(plug) as url:
        yield emulator, url
    plug.app = None


async def test_the_worker_sends_queued_notifications_and_records_its_runs(emulator) -> None:
    emu, url = emulator
    async with production_stack(BOT_TOKEN=emu.token, TELEGRAM_API_URL=url) as stack:
        engine = create_async_engine(stack.database_url)
        sessionmaker = create_sessionmaker(engine)
        async with transaction(sessionmaker) as session:
            user = User(telegram_id=4242, referral_code="r4242", language="en")
            session.add(user)
            await session.flush()
            await notify_user(
                session, user.id, "trial_ending", {"ends_at": "2026-12-01T10:00:00+00:00"}, dedupe_key="k"
            )
        worker = stack.start("worker")
        try:
            await wait_for(lambda: emu.messages, within=30, what="the notification reaching Telegram")

            async def run_recorded() -> bool:
                async with sessionmaker() as session:
                    runs = (await session.scalars(select(JobRun).where(JobRun.job_name == "dispatch_messages"))).all()
                return any(run.outcome == "ok" and run.finished_at for run in runs)

            await wait_for(run_recorded, within=15, what="the dispatch run recorded as finished")
            async with sessionmaker() as session:
                assert (await session.scalar(select(Notification))).status == "sent"
        finally:
            code, output = worker.stop()
            await engine.dispose()
        assert len(emu.messages) == 1 and emu.messages[0]["chat"]["id"] == 4242
        assert code == 0, output


async def test_the_worker_refuses_to_start_without_redis() -> None:
    async with production_stack(REDIS_URL="") as stack:
        worker = stack.start("worker")
        worker.process.wait(timeout=30)
        code, output = worker.stop()
        assert code == 2
        assert "REDIS_URL" in output


async def test_the_bot_answers_by_long_polling_and_stops_cleanly(emulator) -> None:
    emu, url = emulator
    async with production_stack(BOT_TOKEN=emu.token, TELEGRAM_API_URL=url) as stack:
        bot = stack.start("bot")
        try:
            emu.user_message(5151, "/start", language_code="en")
            await wait_for(lambda: emu.messages_to(5151), within=30, what="the bot's answer to /start")
            engine = create_async_engine(stack.database_url)
            async with create_sessionmaker(engine)() as session:
                user = await session.scalar(select(User).where(User.telegram_id == 5151))
            await engine.dispose()
        finally:
            code, output = bot.stop()
        assert user is not None and user.language == "en"
        assert emu.messages_to(5151)[0]["text"].startswith("👋 Hi")
        assert emu.calls("setMyCommands") and emu.calls("getUpdates")
        assert code == 0, output
