"""Run Alembic migrations from code (the `vpnshop migrate` command, the demo, and the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def _run(database_url: str, action: str, revision: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_sync, database_url, action, revision)
    finally:
        await engine.dispose()


def _run_sync(sync_connection: AsyncConnection, database_url: str, action: str, revision: str) -> None:
    config = alembic_config(database_url)
    config.attributes["connection"] = sync_connection
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision` (head by default)."""
    _ensure_sqlite_dir(database_url)
    await _run(database_url, "upgrade", revision)


async def downgrade(database_url: str, revision: str) -> None:
    await _run(database_url, "downgrade", revision)


def upgrade_sync(database_url: str, revision: str = "head") -> None:
    asyncio.run(upgrade(database_url, revision))


def _ensure_sqlite_dir(database_url: str) -> None:
    if database_url.startswith("sqlite") and ":///" in database_url:
        path = database_url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
