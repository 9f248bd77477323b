"""Retention (old backups deleted, the newest always kept, other files untouched) and the nightly job's rule for
when a backup is due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from app.backups.service import make_backup, prune_backups
from app.config import Settings
from app.kit.clock import FrozenClock
from tasks.backups import backup_database
from tests.backups.data import new_sqlite

START = datetime(2026, 1, 1, 2, 50, 0, tzinfo=UTC)
Build = Callable[..., Settings]
Freeze = Callable[[datetime], FrozenClock]
FOREIGN = ["notes.txt", "vpnshop-latest.dump", "other-20200101T000000Z.dump", "vpnshop-20200101T000000Z.tar"]


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _plant_foreign_files(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in FOREIGN:
        (directory / name).write_text("not ours")


async def test_backups_past_retention_are_deleted_in_both_directories_and_nothing_else(
    tmp_path: Path, backup_settings: Build
) -> None:
    settings = backup_settings(
        await new_sqlite(tmp_path / "live.sqlite3"), backup_copy_dir=str(tmp_path / "copy"), backup_retention_days=30
    )
    made = [await make_backup(settings, START + timedelta(days=day)) for day in (0, 7, 14, 21, 28, 35)]
    _plant_foreign_files(tmp_path / "backups")
    _plant_foreign_files(tmp_path / "copy")
    now = START + timedelta(days=40)  # cutoff: day 10

    report = prune_backups(settings, now)

    kept = [f"{backup.path.name}{suffix}" for backup in made[2:] for suffix in ("", ".json")]
    assert _names(tmp_path / "backups") == sorted(kept + FOREIGN)
    assert _names(tmp_path / "copy") == sorted(kept + FOREIGN)
    assert len(report.deleted) == 8  # two backups and their manifests, in two directories
    assert prune_backups(settings, now).deleted == []


async def test_the_newest_backup_is_kept_however_old(tmp_path: Path, backup_settings: Build) -> None:
    settings = backup_settings(await new_sqlite(tmp_path / "live.sqlite3"), backup_retention_days=30)
    await make_backup(settings, START)
    newest = await make_backup(settings, START + timedelta(days=1))

    prune_backups(settings, START + timedelta(days=400))

    assert _names(tmp_path / "backups") == [newest.path.name, newest.manifest_path.name]


async def test_leftovers_of_interrupted_backups_go_with_age(tmp_path: Path, backup_settings: Build) -> None:
    settings = backup_settings(await new_sqlite(tmp_path / "live.sqlite3"), backup_retention_days=30)
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "vpnshop-20251101T025000Z.dump.partial").write_bytes(b"half")  # a crash long ago
    (backups / "vpnshop-20251102T025000Z.dump").write_bytes(b"no manifest")  # crashed before its manifest
    (backups / "vpnshop-20260101T025000Z.dump.partial").write_bytes(b"being written")  # recent: may be running
    newest = await make_backup(settings, START + timedelta(days=5))

    prune_backups(settings, START + timedelta(days=6))

    assert _names(backups) == sorted(
        ["vpnshop-20260101T025000Z.dump.partial", newest.path.name, newest.manifest_path.name]
    )


async def test_the_job_backs_up_when_none_or_the_newest_is_a_week_old(
    tmp_path: Path, backup_settings: Build, freeze: Freeze
) -> None:
    settings = backup_settings(await new_sqlite(tmp_path / "live.sqlite3"), backup_interval_days=7)
    ctx = {"resources": SimpleNamespace(settings=settings)}
    clock = freeze(START)

    first = await backup_database(ctx)
    assert first["made"] == str(tmp_path / "backups" / "vpnshop-20260101T025000Z.sqlite3")

    for _ in range(6):  # the next six nights: not due
        clock.advance(days=1)
        assert (await backup_database(ctx))["made"] is None
    # The seventh night's run starts a few seconds earlier in the day than last week's; it is still due.
    clock.advance(days=1, seconds=-5)
    assert (await backup_database(ctx))["made"] == str(tmp_path / "backups" / "vpnshop-20260108T024955Z.sqlite3")
    assert len(list((tmp_path / "backups").glob("*.sqlite3"))) == 2


async def test_the_job_prunes_every_night(tmp_path: Path, backup_settings: Build, freeze: Freeze) -> None:
    settings = backup_settings(
        await new_sqlite(tmp_path / "live.sqlite3"), backup_interval_days=7, backup_retention_days=10
    )
    ctx = {"resources": SimpleNamespace(settings=settings)}
    clock = freeze(START)
    await backup_database(ctx)
    clock.advance(days=7)
    await backup_database(ctx)
    clock.advance(days=4)  # the first backup is now 11 days old, and no backup is due

    result = await backup_database(ctx)

    assert (result["made"], result["deleted"]) == (None, 2)
    assert _names(tmp_path / "backups") == ["vpnshop-20260108T025000Z.sqlite3", "vpnshop-20260108T025000Z.sqlite3.json"]


async def test_the_job_does_nothing_when_backups_are_disabled(
    tmp_path: Path, backup_settings: Build, freeze: Freeze
) -> None:
    settings = backup_settings(await new_sqlite(tmp_path / "live.sqlite3"), backup_enabled=False)
    freeze(START)
    assert await backup_database({"resources": SimpleNamespace(settings=settings)}) == {"enabled": False}
    assert not (tmp_path / "backups").exists()
