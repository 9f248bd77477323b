"""What backup and restore refuse or report, and that a refused restore changes nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.backups.files import Backup, BackupError, RestoreRefused
from app.backups.service import make_backup, restore_backup
from app.config import Settings
from tests.backups.data import PgDatabases, fill, new_sqlite, snapshot

NOW = datetime(2026, 3, 2, 2, 50, 0, tzinfo=UTC)
Build = Callable[..., Settings]


async def _sqlite_backup(tmp_path: Path, backup_settings: Build) -> tuple[Settings, Backup]:
    source = await new_sqlite(tmp_path / "source.sqlite3")
    await fill(source, users=1)
    settings = backup_settings(source)
    return settings, await make_backup(settings, NOW)


async def test_a_target_holding_data_is_refused_without_force_and_replaced_with_it(
    tmp_path: Path, backup_settings: Build
) -> None:
    settings, backup = await _sqlite_backup(tmp_path, backup_settings)
    target = await new_sqlite(tmp_path / "busy.sqlite3")
    await fill(target, users=2)
    before = await snapshot(target)

    with pytest.raises(
        RestoreRefused, match=r"already holds data \(outbox, payments, .* and 4 more\); .* pass --force"
    ):
        await restore_backup(settings, backup.path, target)
    assert await snapshot(target) == before

    await restore_backup(settings, backup.path, target, force=True)
    assert await snapshot(target) == await snapshot(settings.database_url)


async def test_a_migrated_but_empty_target_is_not_in_use(tmp_path: Path, backup_settings: Build) -> None:
    settings, backup = await _sqlite_backup(tmp_path, backup_settings)
    target = await new_sqlite(tmp_path / "fresh.sqlite3")  # `vpnshop migrate` ran, nothing else
    await restore_backup(settings, backup.path, target)
    assert await snapshot(target) == await snapshot(settings.database_url)


async def test_postgresql_target_holding_data_is_refused_and_left_as_it_was(
    pg: PgDatabases, tmp_path: Path, backup_settings: Build
) -> None:
    source = await pg.create()
    await fill(source, users=1)
    settings = backup_settings(source)
    backup = await make_backup(settings, NOW)
    target = await pg.create()
    await fill(target, users=2)
    before = await snapshot(target)

    with pytest.raises(RestoreRefused, match="already holds data"):
        await restore_backup(settings, backup.path, target)
    assert await snapshot(target) == before

    await restore_backup(settings, backup.path, target, force=True)
    assert await snapshot(target) == await snapshot(source)


async def test_a_backup_of_the_other_kind_is_refused(pg: PgDatabases, tmp_path: Path, backup_settings: Build) -> None:
    settings, sqlite_backup = await _sqlite_backup(tmp_path, backup_settings)
    name = pg.name()
    with pytest.raises(RestoreRefused, match="is a sqlite backup; it cannot be restored into postgresql"):
        await restore_backup(settings, sqlite_backup.path, pg.url_of(name))
    assert not await pg.exists(name)

    source = await pg.create()
    pg_backup = await make_backup(backup_settings(source, backup_dir=str(tmp_path / "pg")), NOW)
    target = tmp_path / "untouched.sqlite3"
    with pytest.raises(RestoreRefused, match="is a postgresql backup; it cannot be restored into sqlite"):
        await restore_backup(settings, pg_backup.path, f"sqlite:///{target}")
    assert not target.exists()


async def test_a_corrupt_file_is_refused_before_anything_is_created(
    pg: PgDatabases, tmp_path: Path, backup_settings: Build
) -> None:
    source = await pg.create()
    settings = backup_settings(source)
    backup = await make_backup(settings, NOW)
    data = bytearray(backup.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.path.write_bytes(bytes(data))
    name = pg.name()

    with pytest.raises(RestoreRefused, match="is corrupt"):
        await restore_backup(settings, backup.path, pg.url_of(name))
    assert not await pg.exists(name)


async def test_a_file_that_matches_its_manifest_but_is_no_archive_is_refused(
    pg: PgDatabases, tmp_path: Path, backup_settings: Build
) -> None:
    source = await pg.create()
    settings = backup_settings(source)
    backup = await make_backup(settings, NOW)
    backup.path.write_bytes(b"PGDMP but not really")
    fake = Backup(backup.path, 20, hashlib.sha256(b"PGDMP but not really").hexdigest(), "postgresql", NOW)
    backup.manifest_path.write_text(json.dumps(fake.manifest()))
    name = pg.name()

    with pytest.raises(RestoreRefused, match="not a readable pg_dump archive"):
        await restore_backup(settings, backup.path, pg.url_of(name))
    assert not await pg.exists(name)


async def test_a_corrupt_sqlite_backup_is_refused_and_the_target_untouched(
    tmp_path: Path, backup_settings: Build
) -> None:
    settings, backup = await _sqlite_backup(tmp_path, backup_settings)
    data = bytearray(backup.path.read_bytes())
    data[100:120] = b"\x00" * 20
    backup.path.write_bytes(bytes(data))
    target = tmp_path / "target.sqlite3"

    with pytest.raises(RestoreRefused, match="is corrupt"):
        await restore_backup(settings, backup.path, f"sqlite:///{target}")
    assert not target.exists()


async def test_a_missing_file_or_manifest_is_refused(tmp_path: Path, backup_settings: Build) -> None:
    settings, backup = await _sqlite_backup(tmp_path, backup_settings)
    target = tmp_path / "target.sqlite3"
    with pytest.raises(RestoreRefused, match="backup file not found"):
        await restore_backup(settings, tmp_path / "nope.sqlite3", f"sqlite:///{target}")
    backup.manifest_path.unlink()
    with pytest.raises(RestoreRefused, match=r"no manifest .*: not a complete vpnshop backup"):
        await restore_backup(settings, backup.path, f"sqlite:///{target}")
    assert not target.exists()


async def test_a_target_url_of_another_database_is_refused(tmp_path: Path, backup_settings: Build) -> None:
    settings, backup = await _sqlite_backup(tmp_path, backup_settings)
    with pytest.raises(RestoreRefused, match="expected a database URL"):
        await restore_backup(settings, backup.path, "mysql://root@localhost/shop")


async def test_pg_dump_failing_reports_its_error_and_leaves_no_file(
    pg: PgDatabases, tmp_path: Path, backup_settings: Build
) -> None:
    settings = backup_settings(pg.url_of("vpnshop_bk_does_not_exist"))

    expected = r"(?s)pg_dump failed \(exit 1\): .*database \"vpnshop_bk_does_not_exist\" does not exist"
    with pytest.raises(BackupError, match=expected):
        await make_backup(settings, NOW)
    assert list((tmp_path / "backups").iterdir()) == []


async def test_pg_dump_missing_is_a_clear_error(
    pg: PgDatabases, tmp_path: Path, backup_settings: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = backup_settings(await pg.create())
    monkeypatch.setenv("PATH", str(tmp_path))  # no PostgreSQL client tools on it

    with pytest.raises(BackupError, match="pg_dump not found: install the PostgreSQL client tools"):
        await make_backup(settings, NOW)
    assert list((tmp_path / "backups").iterdir()) == []


async def test_an_unwritable_backup_dir_is_a_clear_error(tmp_path: Path, backup_settings: Build) -> None:
    source = await new_sqlite(tmp_path / "source.sqlite3")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(BackupError, match="cannot write into BACKUP_DIR"):
        await make_backup(backup_settings(source, backup_dir=str(blocker / "backups")), NOW)
