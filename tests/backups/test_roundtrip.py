"""Back up, restore into a new database, compare every table: PostgreSQL (pg_dump / pg_restore) and SQLite
(the online backup API)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from app.backups.files import file_digest
from app.backups.service import make_backup, restore_backup
from app.config import Settings
from app.db import create_engine, create_sessionmaker, transaction
from app.models import User
from tests.backups.data import CARD_SECRET, SUBSCRIPTION_URL, PgDatabases, fill, new_sqlite, read_secrets, snapshot
from tests.conftest import make_settings

NOW = datetime(2026, 3, 2, 2, 50, 0, tzinfo=UTC)
Build = Callable[..., Settings]
FILLED = {
    "alembic_version": 1,
    "plans": 1,
    "plan_prices": 1,
    "servers": 1,
    "users": 3,
    "subscriptions": 3,
    "vpn_accounts": 3,
    "payments": 3,
    "saved_payment_methods": 3,
    "outbox": 1,
}


async def test_postgresql_backup_restored_into_a_new_database_is_equal_table_by_table(
    pg: PgDatabases, backup_settings: Build
) -> None:
    source = await pg.create()
    await fill(source)
    settings = backup_settings(source)

    backup = await make_backup(settings, NOW)

    assert backup.path.name == "vpnshop-20260302T025000Z.dump"
    assert backup.kind == "postgresql"
    target_name = pg.name()  # restore creates it
    target = pg.url_of(target_name)
    await restore_backup(settings, backup.path, target)

    before, after = await snapshot(source), await snapshot(target)
    assert after == before
    assert backup.alembic_revision == before["alembic_version"][0][0]
    assert {table: len(rows) for table, rows in after.items() if rows} == FILLED
    assert await read_secrets(target) == (
        [SUBSCRIPTION_URL + str(n) for n in range(3)],
        [CARD_SECRET] * 3,
    )
    # Sequences came along: the restored database hands out the next ids, not ones already taken.
    assert await _add_user(target) == 4


async def test_sqlite_backup_restored_into_a_new_file_is_equal_table_by_table(
    tmp_path: Path, backup_settings: Build
) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")
    await fill(source)
    settings = backup_settings(source)

    backup = await make_backup(settings, NOW)

    assert backup.path.name == "vpnshop-20260302T025000Z.sqlite3"
    target = f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'new.sqlite3'}"
    await restore_backup(settings, backup.path, target)
    restored = await snapshot(target)
    assert restored == await snapshot(source)
    assert {table: len(rows) for table, rows in restored.items() if rows} == FILLED
    assert await read_secrets(target) == ([SUBSCRIPTION_URL + str(n) for n in range(3)], [CARD_SECRET] * 3)
    assert await _add_user(target) == 4


async def test_sqlite_backup_takes_only_committed_rows_while_a_writer_holds_its_transaction(
    tmp_path: Path, backup_settings: Build
) -> None:
    path = tmp_path / "live.sqlite3"
    source = await new_sqlite(path)
    await fill(source, users=1)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO users (telegram_id, referral_code, language, is_blocked, marketing_opt_out, is_demo, "
        "created_at, updated_at) VALUES (1, 'mid', 'ru', 0, 0, 0, '2026-01-01', '2026-01-01')"
    )
    try:
        backup = await make_backup(backup_settings(source), NOW)
    finally:
        writer.execute("COMMIT")
        writer.close()

    with sqlite3.connect(backup.path) as copy:
        codes = [row[0] for row in copy.execute("SELECT referral_code FROM users ORDER BY id")]
    assert codes == ["bk0"]
    assert sorted(path.name for path in backup.path.parent.iterdir()) == [backup.path.name, backup.manifest_path.name]


async def test_a_backup_is_published_whole_with_its_manifest_and_copied(tmp_path: Path, backup_settings: Build) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")
    settings = backup_settings(source, backup_copy_dir=str(tmp_path / "offsite"))

    backup = await make_backup(settings, NOW)

    names = sorted(path.name for path in (tmp_path / "backups").iterdir())
    assert names == ["vpnshop-20260302T025000Z.sqlite3", "vpnshop-20260302T025000Z.sqlite3.json"]
    manifest = json.loads(backup.manifest_path.read_text())
    assert manifest == {
        "format": 1,
        "file": backup.path.name,
        "kind": "sqlite",
        "size": backup.path.stat().st_size,
        "sha256": file_digest(backup.path)[0],
        "created_at": "2026-03-02T02:50:00+00:00",
        "alembic_revision": backup.alembic_revision,
    }
    copies = sorted(path.name for path in (tmp_path / "offsite").iterdir())
    assert copies == names
    copy = tmp_path / "offsite" / backup.path.name
    assert copy.read_bytes() == backup.path.read_bytes()
    assert json.loads((tmp_path / "offsite" / f"{backup.path.name}.json").read_text()) == manifest


async def test_two_backups_in_one_second_get_two_names(tmp_path: Path, backup_settings: Build) -> None:
    settings = backup_settings(await new_sqlite(tmp_path / "live.sqlite3"))
    first, second = await make_backup(settings, NOW), await make_backup(settings, NOW)
    assert (first.path.name, second.path.name) == (
        "vpnshop-20260302T025000Z.sqlite3",
        "vpnshop-20260302T025000Z-1.sqlite3",
    )


async def _add_user(url: str) -> int:
    engine = create_engine(make_settings(url))
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            session.add(User(telegram_id=99, referral_code="after-restore"))
        async with engine.connect() as connection:
            return await connection.scalar(select(User.id).where(User.referral_code == "after-restore"))
    finally:
        await engine.dispose()


async def test_a_backup_may_be_named_by_its_manifest(tmp_path: Path, backup_settings: Build) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")
    await fill(source, users=1)
    settings = backup_settings(source)
    backup = await make_backup(settings, NOW)
    target = f"sqlite:///{tmp_path / 'new.sqlite3'}"

    restored = await restore_backup(settings, backup.manifest_path, target)

    assert restored.path == backup.path
    assert await snapshot(target) == await snapshot(source)
