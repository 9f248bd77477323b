"""Fixtures of the backup tests: fresh PostgreSQL databases, and settings pointing at temporary directories."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.config import Settings
from tests.backups.data import PgDatabases, pg_databases, pg_template
from tests.conftest import IN_CI, make_settings


@pytest.fixture(scope="session")
async def pg_template_name() -> AsyncIterator[str]:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        message = "pg_dump/pg_restore are not installed (Debian: postgresql-client)"
        if IN_CI:
            pytest.fail(f"{message}; CI requires them")
        pytest.skip(message)
    async for name in pg_template():
        yield name


@pytest.fixture
async def pg(pg_template_name: str) -> AsyncIterator[PgDatabases]:
    async for databases in pg_databases(pg_template_name):
        yield databases


@pytest.fixture
def backup_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a database URL with BACKUP_DIR (and, if asked, BACKUP_COPY_DIR) under tmp_path."""

    def build(database_url: str, **overrides: object) -> Settings:
        values: dict[str, object] = {"backup_dir": str(tmp_path / "backups")} | overrides
        return make_settings(database_url, **values)

    return build
