"""Shared fixtures: real servers where the suite needs them (PostgreSQL, Redis), failing in CI when absent."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app import migrate
from app.config import Settings, load_settings
from app.db import create_engine, create_sessionmaker
from app.kit.clock import FrozenClock, set_clock
from app.kit.crypto import configure_cipher, new_key
from app.models import Base

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def reachable(url: str) -> bool:
    parsed = urlparse(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, url: str) -> None:
    """Skip locally with a clear reason, but fail in CI: a missing server must never pass silently."""
    if reachable(url):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message} (CI requires it)")
    pytest.skip(message)


@pytest.fixture
def freeze() -> Iterator[Callable[[datetime], FrozenClock]]:
    """Stop the app's clock at a given instant (`clock = freeze(NOW)`; `clock.advance(...)` moves it)."""

    def start(at: datetime) -> FrozenClock:
        clock = FrozenClock(at)
        set_clock(clock)
        return clock

    yield start
    set_clock(None)


@pytest.fixture
def redis_url() -> str:
    """A real Redis (database 15 by default), flushed before the test."""
    require_server("Redis", REDIS_URL)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


# --- settings and databases -------------------------------------------------------------------------------


TEST_SECRET = "test-secret-key-" + "x" * 32
TEST_ENCRYPTION_KEY = new_key()


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Production-mode settings for tests; never reads a developer's .env."""
    values: dict[str, object] = {
        "_env_file": None,
        "secret_key": TEST_SECRET,
        "encryption_key": [TEST_ENCRYPTION_KEY],
        "database_url": database_url,
        "redis_url": "",
        "log_json": False,
    }
    values.update(overrides)
    return load_settings(**values)


async def _create_pg_database(admin_url: str, name: str) -> str:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def _drop_pg_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A migrated, throwaway database of each kind; tests using it run once per backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "test.sqlite3"
        url = f"sqlite+aiosqlite:///{path}"
        await migrate.upgrade(url)
        yield url
        return
    require_server("PostgreSQL", POSTGRES_URL)
    name = f"vpnshop_test_{uuid.uuid4().hex[:10]}"
    url = await _create_pg_database(POSTGRES_URL, name)
    await migrate.upgrade(url)
    yield url
    await _drop_pg_database(POSTGRES_URL, name)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    configure_cipher([TEST_ENCRYPTION_KEY], TEST_SECRET)
    engine = create_engine(make_settings(database_url))
    yield engine
    await engine.dispose()


async def _empty_tables(engine: AsyncEngine) -> None:
    # DELETE beats TRUNCATE here: TRUNCATE's fixed cost per table dominates for the few rows a test writes.
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        for table in tables:
            await connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session on a clean database (every table emptied after the test)."""
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        yield session
    await _empty_tables(engine)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def client(settings: Settings, db: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan included) over an in-process ASGI transport, on a clean database (the `db`
    fixture empties it afterwards)."""
    from app.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
