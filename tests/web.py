"""Helpers for tests that drive the customer pages over HTTP: signed Telegram initData, a browser session
cookie with its CSRF token, and a counter of the SQL statements one request runs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.sessions import SESSION_COOKIE, csrf_token, start_session
from app.auth.telegram import sign_init_data
from app.config import Settings
from app.kit.clock import utcnow
from app.main import create_app
from app.models import OutboxMessage, OutboxStatus, User
from app.outbox.service import dispatch

BOT_TOKEN = "4242:test-bot-token"


def init_data(
    user_id: int = 777, *, token: str = BOT_TOKEN, language: str = "en", age: timedelta = timedelta(0), **extra: str
) -> str:
    user = {"id": user_id, "first_name": "Ann", "username": "ann", "language_code": language}
    fields = {"auth_date": str(int((utcnow() - age).timestamp())), "user": json.dumps(user), **extra}
    return sign_init_data(fields, token)


def tma(raw: str | None = None, **kwargs: object) -> dict[str, str]:
    return {"authorization": f"tma {raw or init_data(**kwargs)}"}  # type: ignore[arg-type]


def htmx(target: str = "content") -> dict[str, str]:
    return {"hx-request": "true", "hx-target": target}


@asynccontextmanager
async def serve(
    settings: Settings, *, raise_app_exceptions: bool = True
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app over an in-process transport; `raise_app_exceptions=False` turns a crash into the 500 a real
    server would answer (for counting failures among many requests)."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield app, client


async def browser_session(client: httpx.AsyncClient, db: AsyncSession, user: User, settings: Settings) -> str:
    """Sign `user` in on `client` as the browser cabinet would; returns the session's CSRF token."""
    token = await start_session(db, user, ttl=timedelta(days=1), user_agent="pytest", ip="127.0.0.1")
    await db.commit()
    client.cookies.set(SESSION_COOKIE, token)
    return csrf_token(token, settings.secret_key)


@contextmanager
def count_queries(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs inside the block for the requests this task makes (httpx's ASGI
    transport runs the app in the caller's task); the in-process jobs' own statements, from their tasks, are not
    the page's."""
    statements: list[str] = []
    engine = app.state.resources.engine.sync_engine
    caller = asyncio.current_task()

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if asyncio.current_task() is caller:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def text_of(html: str) -> str:
    """Visible text, whitespace collapsed: what a reader would see."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


async def drain_outbox(app: FastAPI, *, within: float = 60.0) -> None:
    """Run the outbox until nothing is due. The app's own in-process dispatcher may hold some messages at
    the same moment (it is nudged after every commit), so this waits for those too instead of assuming that
    one dispatch call saw everything."""
    resources = app.state.resources
    deadline = asyncio.get_running_loop().time() + within
    while True:
        await dispatch({"resources": resources, "settings": resources.settings})
        async with resources.sessionmaker() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                # Due ones only: a message backing off after a failure (a bot token but no Telegram) waits for
                # its own time, which a test does not.
                .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.available_at <= utcnow())
            )
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{pending} outbox messages still pending after {within} s")
        await asyncio.sleep(0.05)


async def eventually(probe: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    """Wait until `probe()` is true (what another process sees after its refresher's next read), polling; the
    deadline is generous as the machine may be loaded, and no assertion depends on how fast it comes."""
    deadline = asyncio.get_running_loop().time() + within
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.1)
