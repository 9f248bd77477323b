"""Make, prune and restore database backups (SPEC §12, §13.5).

`make_backup` writes the database into BACKUP_DIR (and BACKUP_COPY_DIR when set); `prune_backups` keeps
BACKUP_RETENTION_DAYS of them, never fewer than one; `restore_backup` checks a backup before it touches the
target and refuses a target that already holds data unless forced.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from app.backups import postgres, sqlite
from app.backups.files import (
    Backup,
    BackupError,
    DatabaseKind,
    RestoreRefused,
    complete_backups,
    copy_backup,
    file_digest,
    our_files,
    publish,
    read_backup,
    reserve_path,
    write_manifest,
)
from app.config import Settings
from app.kit.clock import utcnow

# The job runs nightly at a fixed minute but finishes seconds apart from night to night: a backup made a
# little later in the day a week ago still counts as a week old.
DUE_SLACK = timedelta(hours=1)

__all__ = [
    "Backup",
    "BackupError",
    "PruneReport",
    "RestoreRefused",
    "backup_due",
    "database_kind",
    "make_backup",
    "newest_backup",
    "normalize_url",
    "prune_backups",
    "restore_backup",
]


def normalize_url(database_url: str) -> str:
    """A database URL in the async-driver form the app uses; RestoreRefused (bad input) for anything else."""
    if database_url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + database_url.split("://", 1)[1]
    if database_url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + database_url.split("://", 1)[1]
    if database_url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return database_url
    raise RestoreRefused("expected a database URL such as postgresql://user@host/db or sqlite:///path")


def database_kind(database_url: str) -> DatabaseKind:
    return "sqlite" if normalize_url(database_url).startswith("sqlite") else "postgresql"


async def make_backup(settings: Settings, now: datetime | None = None) -> Backup:
    """Back up DATABASE_URL into BACKUP_DIR (verified, with a manifest), then copy it to BACKUP_COPY_DIR."""
    now = (now or utcnow()).replace(microsecond=0)
    url = normalize_url(settings.database_url)
    kind = database_kind(url)
    final, partial = await asyncio.to_thread(_reserve, Path(settings.backup_dir), kind, now)
    try:
        if kind == "postgresql":
            await postgres.dump(url, partial)
            await postgres.check_archive(partial)
            revision = await postgres.archive_revision(partial)
        else:
            await asyncio.to_thread(sqlite.dump, sqlite.database_path(url), partial)
            await asyncio.to_thread(sqlite.check, partial)
            revision = await asyncio.to_thread(sqlite.schema_revision, partial)
        digest, size = await asyncio.to_thread(file_digest, partial)
        await asyncio.to_thread(publish, partial, final)
        backup = Backup(final, size, digest, kind, now, revision)
        await asyncio.to_thread(write_manifest, backup)
    except OSError as exc:  # disk full, permissions
        partial.unlink(missing_ok=True)
        raise BackupError(f"writing the backup {final} failed: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if settings.backup_copy_dir:
        try:
            await asyncio.to_thread(copy_backup, backup, Path(settings.backup_copy_dir))
        except OSError as exc:
            raise BackupError(
                f"backup {final} written, but copying it to BACKUP_COPY_DIR failed: {exc.strerror or exc}"
            ) from None
    return backup


def _reserve(directory: Path, kind: DatabaseKind, now: datetime) -> tuple[Path, Path]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return reserve_path(directory, kind, now)
    except OSError as exc:
        raise BackupError(f"cannot write into BACKUP_DIR {directory}: {exc.strerror or exc}") from None


def newest_backup(directory: Path) -> Backup | None:
    backups = complete_backups(directory)
    return backups[-1] if backups else None


def backup_due(settings: Settings, now: datetime) -> bool:
    """Whether the newest backup in BACKUP_DIR is BACKUP_INTERVAL_DAYS old (or there is none)."""
    newest = newest_backup(Path(settings.backup_dir))
    if newest is None:
        return True
    return now - newest.created_at >= timedelta(days=settings.backup_interval_days) - DUE_SLACK


@dataclass
class PruneReport:
    deleted: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def prune_backups(settings: Settings, now: datetime) -> PruneReport:
    """Delete our backups older than BACKUP_RETENTION_DAYS in BACKUP_DIR and BACKUP_COPY_DIR, keeping the newest
    backup of each directory whatever its age. Files not named by us are never touched."""
    cutoff = now - timedelta(days=settings.backup_retention_days)
    report = PruneReport()
    directories = [Path(settings.backup_dir)]
    if settings.backup_copy_dir:
        directories.append(Path(settings.backup_copy_dir))
    for directory in directories:
        newest = newest_backup(directory)
        keep = newest.path.name if newest else _newest_data_file(directory)
        for file in our_files(directory):
            if file.base == keep:
                report.kept.append(file.path)
            elif file.created_at < cutoff:
                try:
                    file.path.unlink()
                except FileNotFoundError:
                    continue  # another prune got there first
                report.deleted.append(file.path)
    return report


def _newest_data_file(directory: Path) -> str | None:
    """With no whole backup left, the newest data file is kept: it may still be restorable by hand."""
    data = sorted((file for file in our_files(directory) if file.is_data), key=lambda file: file.created_at)
    return data[-1].base if data else None


async def restore_backup(
    settings: Settings, path: Path | str, target_url: str | None = None, *, force: bool = False
) -> Backup:
    """Restore a backup into `target_url` (DATABASE_URL by default). Refuses, changing nothing, when the file is
    missing or does not match its manifest, when its kind does not match the target, or when the target holds
    data and `force` is not set. A PostgreSQL target that does not exist is created."""
    url = normalize_url(target_url or settings.database_url)
    kind = database_kind(url)
    backup = await asyncio.to_thread(read_backup, Path(path))
    if backup.kind != kind:
        raise RestoreRefused(f"{backup.path.name} is a {backup.kind} backup; it cannot be restored into {kind}")
    if kind == "postgresql":
        await _restore_postgresql(backup, url, force=force)
    else:
        await _restore_sqlite(backup, url, force=force)
    return backup


async def _restore_postgresql(backup: Backup, url: str, *, force: bool) -> None:
    try:
        await postgres.check_archive(backup.path)
    except BackupError as exc:
        raise RestoreRefused(f"{backup.path.name} is not a readable pg_dump archive: {exc}") from None
    if await postgres.database_exists(url):
        filled = [] if force else await postgres.tables_with_rows(url)
        if filled:
            raise RestoreRefused(_in_use(postgres.shown(url), filled))
    else:
        await postgres.create_database(url)
    await postgres.restore(backup.path, url)


async def _restore_sqlite(backup: Backup, url: str, *, force: bool) -> None:
    target = sqlite.database_path(url)
    try:
        await asyncio.to_thread(sqlite.check, backup.path)
        filled = [] if force else await asyncio.to_thread(sqlite.tables_with_rows, target)
    except BackupError as exc:
        raise RestoreRefused(str(exc)) from None
    if filled:
        raise RestoreRefused(_in_use(str(target), filled))
    await asyncio.to_thread(sqlite.restore, backup.path, target)


def _in_use(target: str, tables: list[str]) -> str:
    listed = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return f"{target} already holds data ({listed}); restore into an empty database or pass --force to replace it"
