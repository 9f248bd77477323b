"""`vpnshop backup` and `vpnshop restore`. Refusals (bad input) exit with 2 and change nothing; a failure of the
work itself exits with 1."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from app.backups.files import BackupError, RestoreRefused
from app.backups.service import make_backup, normalize_url, restore_backup
from app.config import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value, unit = size / 1024, "KB"
    for bigger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


@click.command("backup")
def backup() -> None:
    """Back up the database now into BACKUP_DIR (and BACKUP_COPY_DIR when set)."""
    settings = _settings()
    try:
        made = asyncio.run(make_backup(settings))
    except BackupError as exc:
        click.echo(f"backup failed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"backup written: {made.path} ({_size(made.size)}, sha256 {made.sha256})")
    if settings.backup_copy_dir:
        click.echo(f"copied to: {Path(settings.backup_copy_dir) / made.path.name}")


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--database", "target", default=None, help="Target database URL (default: DATABASE_URL).")
@click.option("--force", is_flag=True, help="Replace a target database that already holds data.")
def restore(file: Path, target: str | None, force: bool) -> None:
    """Restore FILE (a backup made by `vpnshop backup`) into a database."""
    settings = _settings()
    try:
        restored = asyncio.run(restore_backup(settings, file, target, force=force))
    except RestoreRefused as exc:
        click.echo(f"restore refused: {exc}", err=True)
        sys.exit(2)
    except BackupError as exc:
        click.echo(f"restore failed: {exc}", err=True)
        sys.exit(1)
    shown = make_url(normalize_url(target or settings.database_url)).render_as_string(hide_password=True)
    click.echo(f"restored {restored.path.name} (made {restored.created_at.isoformat()}) into {shown}")
    if restored.alembic_revision:
        click.echo(f"schema revision {restored.alembic_revision}: run `vpnshop migrate` if this build is newer")
