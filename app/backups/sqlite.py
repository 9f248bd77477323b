"""SQLite through its online backup API: a consistent copy page by page while the demo keeps writing (WAL lets
the copy read while others write). Blocking calls; the service runs them in a thread."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from app.backups.files import BackupError

BUSY_TIMEOUT_SECONDS = 30
_BOOKKEEPING_TABLES = {"alembic_version"}


def database_path(database_url: str) -> Path:
    """The file of a `sqlite+aiosqlite:///path` URL."""
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"expected a SQLite database file, got {database_url!r}")
    return Path(database)


def dump(source: Path, into: Path) -> None:
    """Copy the live database `source` into the new file `into`, as one self-contained file."""
    if not source.is_file():
        raise BackupError(f"SQLite database not found: {source}")
    try:
        with (
            closing(sqlite3.connect(source, timeout=BUSY_TIMEOUT_SECONDS)) as live,
            closing(sqlite3.connect(into)) as copy,
        ):
            live.backup(copy)
            # The copy inherits WAL mode; a rollback journal keeps it one file, with no -wal beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {source} failed: {exc}") from None


def check(path: Path) -> None:
    """PRAGMA integrity_check on a backup file, opened read-only."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        raise BackupError(f"{path.name} is not a readable SQLite database: {exc}") from None
    if result != ["ok"]:
        raise BackupError(f"{path.name} fails SQLite's integrity check: {'; '.join(result[:5])}")


def schema_revision(path: Path) -> str | None:
    """The Alembic revision recorded in a SQLite file (None before the first migration)."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None
    return row[0] if row else None


def tables_with_rows(path: Path) -> list[str]:
    """Tables of the database file that hold at least one row (Alembic's own bookkeeping left out)."""
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)) as connection:
            names = [
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                    "ORDER BY name"
                )
            ]
            return [name for name in names if name not in _BOOKKEEPING_TABLES and _has_rows(connection, name)]
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the target database {path}: {exc}") from None


def _has_rows(connection: sqlite3.Connection, table: str) -> bool:
    quoted = '"' + table.replace('"', '""') + '"'
    return bool(connection.execute(f"SELECT EXISTS (SELECT 1 FROM {quoted})").fetchone()[0])


def restore(backup: Path, target: Path) -> None:
    """Replace the target database's content with the backup's, in one step of the backup API."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            closing(sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)) as source,
            closing(sqlite3.connect(target, timeout=BUSY_TIMEOUT_SECONDS)) as live,
        ):
            source.backup(live)
    except sqlite3.Error as exc:
        raise BackupError(f"restoring {backup.name} into {target} failed: {exc}") from None
