"""A broadcast's live progress in real Chromium: the staff member starts it on its page, the sender (run as the
worker runs it) delivers to the Telegram Bot API emulator at a few messages a second, and the page's counters,
pushed by server-sent events, move while the emulator receives — then settle on the final figures (sent, blocked)
that the emulator and the database agree on. The app runs under uvicorn on a loopback port over a SQLite file."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app import migrate
from app.broadcasts.sender import run_broadcast
from app.db import create_sessionmaker
from app.main import create_app
from app.models import Broadcast, BroadcastStatus, Staff, StaffRole, User
from app.staff.sessions import ADMIN_COOKIE, start_session
from tests.broadcasts.conftest import bot_resources
from tests.conftest import make_settings
from tests.e2e.conftest import browser_page, shot
from tests.emulators.harness import free_port, serve
from tests.emulators.telegram import TelegramBotApiEmulator

pytestmark = pytest.mark.e2e

RECIPIENTS = 30
BLOCKED = 3
RATE = 4  # messages a second: slow enough that the counters are seen in between
TIMEOUT = 30_000
FIRST_CHAT = 810_000_001


def _run(coroutine: Any) -> Any:
    """Run a coroutine on a loop of its own (Playwright's sync API owns this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _plant(database_url: str) -> str:
    """Customers and a staff member with a session; returns the session's cookie value."""
    await migrate.upgrade(database_url)
    engine = create_async_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            db.add_all(
                User(telegram_id=FIRST_CHAT + n, referral_code=f"e{n}", language="en" if n % 2 else "ru")
                for n in range(RECIPIENTS)
            )
            staff = Staff(username="marketer", password_hash="-", role=StaffRole.MARKETING)
            db.add(staff)
            await db.flush()
            token = await start_session(db, staff, method="password", user_agent="e2e", ip="127.0.0.1")
            await db.commit()
            return token
    finally:
        await engine.dispose()


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[tuple[str, str, TelegramBotApiEmulator, str, str]]:
    """(base URL, admin cookie, the emulator, its URL, database URL): the app under uvicorn (its lifespan on) with its
    bot pointed at the emulator."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'shop.sqlite3'}"
    cookie = _run(_plant(database_url))
    emulator = TelegramBotApiEmulator(global_rate=1000)
    emulator.blocked_users.update(FIRST_CHAT + n for n in range(BLOCKED))
    with serve(emulator.app) as api_url:
        settings = make_settings(
            database_url, bot_token=emulator.token, telegram_api_url=api_url, telegram_rate_per_second=RATE
        )
        port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", cookie, emulator, api_url, database_url
        finally:
            server.should_exit = True
            thread.join(timeout=20)


async def _send_when_started(database_url: str, api_url: str, token: str, stop: threading.Event) -> None:
    """What the worker does: once the broadcast is running, send it under its lease until it is done (by this
    sender, or by the app's own in-process jobs, which may take the lease first)."""
    resources = bot_resources(database_url, api_url, token, telegram_rate_per_second=RATE)
    try:
        while not stop.is_set():
            async with resources.sessionmaker() as db:
                running = await db.scalar(select(Broadcast.id).where(Broadcast.status == BroadcastStatus.RUNNING))
                done = await db.scalar(select(Broadcast.id).where(Broadcast.status == BroadcastStatus.DONE))
            if done is not None:
                return
            if running is not None:
                result = await run_broadcast(resources, running)
                if result.outcome == "done":
                    return
            await asyncio.sleep(0.3)
    finally:
        await resources.aclose()


def test_progress_counters_move_live_while_the_emulator_receives(app_server, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    base, cookie, emulator, api_url, database_url = app_server
    page, errors = browser_page(browser, width=390)  # a phone: the counters wrap, nothing scrolls sideways
    page.set_default_timeout(TIMEOUT)
    page.context.add_cookies([{"name": ADMIN_COOKIE, "value": cookie, "url": base}])
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm's question

    page.goto(f"{base}/admin/broadcasts/new")
    page.fill("#f-title", "Spring sale")
    page.fill('[id="f-bodies.ru"]', "<b>Скидка</b> 20%")
    page.fill('[id="f-bodies.en"]', "<b>Sale</b> 20% off")
    expect(page.get_by_test_id("reach-total")).to_have_text(str(RECIPIENTS))
    page.get_by_test_id("create-broadcast").click()
    expect(page).to_have_url(re.compile(r"/admin/broadcasts/\d+$"))
    expect(page.get_by_test_id("recipients")).to_contain_text(str(RECIPIENTS))

    stop = threading.Event()
    sender = ThreadPoolExecutor(1)
    sending = sender.submit(asyncio.run, _send_when_started(database_url, api_url, emulator.token, stop))
    try:
        page.get_by_role("button", name="Start now").click()
        sent = page.locator('#progress [data-count="sent"]')
        # Seen in between: some sent, not all, while the emulator has received some and not all.
        seen_between = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            shown = int(sent.inner_text() or 0)
            received = len(emulator.messages)
            if 0 < shown < RECIPIENTS - BLOCKED and 0 < received < RECIPIENTS - BLOCKED:
                seen_between = True
                shot(page, "admin-broadcast-progress-phone")
                break
            page.wait_for_timeout(100)
        assert seen_between, "the counters never showed a broadcast in progress"
        expect(sent).to_have_text(str(RECIPIENTS - BLOCKED), timeout=120_000)
        expect(page.locator('#progress [data-count="blocked"]')).to_have_text(str(BLOCKED))
        expect(page.locator('#progress [data-count="status"]')).to_have_text("done")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        sending.result(timeout=60)
    finally:
        stop.set()
        sender.shutdown(wait=True)
    assert len(emulator.messages) == RECIPIENTS - BLOCKED
    assert errors == []
