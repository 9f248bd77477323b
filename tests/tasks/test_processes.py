"""`vpnshop worker` and `vpnshop bot` as real processes (PostgreSQL, Redis, the Telegram emulator over HTTP)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import create_sessionmaker, transaction
from app.models import JobRun, Notification, User
from app.notifications.service import notify_user
from tests.conftest import REDIS_URL
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
            await wait_for(lambda: emu.messages, within=90, what="the notification reaching Telegram")

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
            await wait_for(lambda: emu.messages_to(5151), within=90, what="the bot's answer to /start")
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


class LateServer:
    """A port where nothing answers until `open()`: then every connection is passed to `target` (host, port), as
    Redis or Telegram coming back would look to a process that started before them."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:  # a free port, closed again: connections are refused until open()
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))


async def test_the_worker_waits_for_redis_and_starts_once_it_answers() -> None:
    redis = urlsplit(REDIS_URL)
    late = LateServer((redis.hostname or "127.0.0.1", redis.port or 6379))
    async with production_stack(REDIS_URL=f"redis://127.0.0.1:{late.port}{redis.path}") as stack:
        worker = stack.start("worker")
        try:
            await wait_for(lambda: "unreachable" in worker.log.read_text(), within=60, what="the worker waiting")
            assert worker.process.poll() is None  # waiting, not exited
            await late.open()
            await wait_for(lambda: "Starting worker" in worker.log.read_text(), within=60, what="arq starting")
        finally:
            # In a thread: the forwarder runs on this loop, and the worker talks to Redis while it shuts down.
            code, output = await asyncio.to_thread(worker.stop)
            await late.close()
        assert code == 0, output
        assert "Traceback" not in output


async def test_the_bot_waits_for_telegram_and_starts_once_it_answers(emulator) -> None:
    emu, url = emulator
    address = urlsplit(url)
    late = LateServer((address.hostname or "127.0.0.1", address.port or 80))
    async with production_stack(BOT_TOKEN=emu.token, TELEGRAM_API_URL=f"http://127.0.0.1:{late.port}") as stack:
        bot = stack.start("bot")
        try:
            await wait_for(lambda: "unreachable" in bot.log.read_text(), within=60, what="the bot waiting")
            assert bot.process.poll() is None and not emu.calls("setMyCommands")
            await late.open()
            await wait_for(lambda: emu.calls("getUpdates"), within=90, what="the bot polling once Telegram answers")
        finally:
            code, output = await asyncio.to_thread(bot.stop)  # the forwarder runs on this loop
            await late.close()
        assert code == 0, output
        assert "Traceback" not in output
