"""Migrations: up, down and up again on both databases, and the models match the migrated schema."""

from __future__ import annotations

import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app import migrate
from app.models import Base
from tests.conftest import POSTGRES_URL, _create_pg_database, _drop_pg_database, require_server


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


async def _schema_drift(url: str) -> list:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
        )
    await engine.dispose()
    return diff


async def _round_trip(url: str) -> None:
    await migrate.upgrade(url)
    assert await _tables(url) == set(Base.metadata.tables)
    assert await _schema_drift(url) == []
    await migrate.downgrade(url, "base")
    assert await _tables(url) == set()
    await migrate.upgrade(url)
    assert await _tables(url) == set(Base.metadata.tables)


async def test_sqlite_upgrade_downgrade_upgrade(tmp_path) -> None:
    await _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}")


async def test_postgresql_upgrade_downgrade_upgrade() -> None:
    require_server("PostgreSQL", POSTGRES_URL)
    name = f"vpnshop_mig_{uuid.uuid4().hex[:8]}"
    url = await _create_pg_database(POSTGRES_URL, name)
    try:
        await _round_trip(url)
    finally:
        await _drop_pg_database(POSTGRES_URL, name)
