"""Backup files on disk: their names, manifests, atomic publication and listing.

A backup is `vpnshop-<UTC yyyymmddTHHMMSSZ>[-n].<dump|sqlite3>` plus `<that name>.json`, its manifest. The data
file is written under a `.partial` name and renamed once complete and verified; the manifest is written last, so
a backup with a manifest is whole. Only names of this shape are ever listed, pruned or overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

DatabaseKind = Literal["postgresql", "sqlite"]

EXTENSIONS: dict[DatabaseKind, str] = {"postgresql": "dump", "sqlite": "sqlite3"}
MANIFEST_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_FORMAT = 1
_CHUNK = 1024 * 1024

NAME_RE = re.compile(
    r"^(?P<base>vpnshop-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<seq>\d{1,4}))?\.(?P<ext>dump|sqlite3))"
    r"(?P<suffix>\.json|\.partial|\.json\.partial)?$"
)


class BackupError(Exception):
    """A backup or restore failed; the message says why."""


class RestoreRefused(BackupError):
    """A restore was refused before anything was changed (bad file, wrong kind, data in the target)."""


@dataclass(frozen=True)
class Backup:
    """One backup file and what its manifest says about it."""

    path: Path
    size: int
    sha256: str
    kind: DatabaseKind
    created_at: datetime
    alembic_revision: str | None = None

    @property
    def manifest_path(self) -> Path:
        return manifest_path(self.path)

    def manifest(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "file": self.path.name,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
            "alembic_revision": self.alembic_revision,
        }


def manifest_path(data_path: Path) -> Path:
    return data_path.with_name(data_path.name + MANIFEST_SUFFIX)


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def stamp_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)


def reserve_path(directory: Path, kind: DatabaseKind, now: datetime) -> tuple[Path, Path]:
    """A free backup name for `now` and its `.partial` file, created empty here so that two backups started in
    the same second (the job and the CLI) never write into one file."""
    stamp = now.astimezone(UTC).strftime(STAMP_FORMAT)
    for seq in range(10_000):
        name = f"vpnshop-{stamp}{f'-{seq}' if seq else ''}.{EXTENSIONS[kind]}"
        final = directory / name
        if final.exists() or manifest_path(final).exists():
            continue
        partial = partial_path(final)
        try:
            partial.open("xb").close()
        except FileExistsError:
            continue
        return final, partial
    raise BackupError(f"no free backup name left in {directory} for {stamp}")


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(partial: Path, final: Path) -> None:
    """Make a finished `.partial` file visible under its final name, durably (data first, then the rename)."""
    _fsync(partial)
    os.replace(partial, final)
    _fsync(final.parent)


def write_manifest(backup: Backup) -> None:
    target = backup.manifest_path
    partial = partial_path(target)
    partial.write_text(json.dumps(backup.manifest(), indent=2) + "\n", encoding="utf-8")
    publish(partial, target)


def copy_backup(backup: Backup, directory: Path) -> Backup:
    """Copy a backup and its manifest into `directory`, atomically, checking the copy's checksum."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / backup.path.name
    partial = partial_path(target)
    try:
        digest = hashlib.sha256()
        with backup.path.open("rb") as source, partial.open("wb") as sink:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                sink.write(chunk)
        if digest.hexdigest() != backup.sha256:
            raise BackupError(f"the copy of {backup.path.name} does not match its checksum (changed while copying?)")
        publish(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    copied = Backup(target, backup.size, backup.sha256, backup.kind, backup.created_at, backup.alembic_revision)
    write_manifest(copied)
    return copied


def read_backup(path: Path) -> Backup:
    """The backup at `path` (or the one whose manifest `path` is) as its manifest describes it, after checking the
    file's size and checksum."""
    match = NAME_RE.match(path.name)
    if match is not None and match["suffix"] == MANIFEST_SUFFIX:
        path = path.with_name(match["base"])
    if not path.is_file():
        raise RestoreRefused(f"backup file not found: {path}")
    manifest_file = manifest_path(path)
    if not manifest_file.is_file():
        raise RestoreRefused(f"no manifest {manifest_file.name} beside {path.name}: not a complete vpnshop backup")
    try:
        data = json.loads(manifest_file.read_text(encoding="utf-8"))
        backup = Backup(
            path=path,
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            kind=_kind(data["kind"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            alembic_revision=data.get("alembic_revision"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RestoreRefused(f"the manifest {manifest_file.name} is unreadable: {exc}") from None
    digest, size = file_digest(path)
    if (digest, size) != (backup.sha256, backup.size):
        raise RestoreRefused(
            f"{path.name} is corrupt: {size} bytes with sha256 {digest[:12]}…, "
            f"its manifest says {backup.size} bytes with sha256 {backup.sha256[:12]}…"
        )
    return backup


def _kind(value: Any) -> DatabaseKind:
    if value not in EXTENSIONS:
        raise ValueError(f"unknown backup kind {value!r}")
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class OurFile:
    """A file in a backup directory named by us; `base` is the data file's name it belongs to."""

    path: Path
    base: str
    created_at: datetime
    is_data: bool
    is_manifest: bool


def our_files(directory: Path) -> list[OurFile]:
    """Every file of ours in `directory` (data, manifests, leftovers of interrupted writes); nothing else."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = NAME_RE.match(path.name)
        if match is None or not path.is_file():
            continue
        suffix = match["suffix"]
        found.append(
            OurFile(path, match["base"], stamp_time(match["stamp"]), suffix is None, suffix == MANIFEST_SUFFIX)
        )
    return found


def complete_backups(directory: Path) -> list[Backup]:
    """The whole backups in `directory` (data file and manifest), oldest first; the checksums are not read."""
    files = our_files(directory)
    data = {file.base for file in files if file.is_data}
    backups = []
    for file in files:
        if not file.is_manifest or file.base not in data:
            continue
        try:
            manifest = json.loads(file.path.read_text(encoding="utf-8"))
            backups.append(
                Backup(
                    path=file.path.with_name(file.base),
                    size=int(manifest["size"]),
                    sha256=str(manifest["sha256"]),
                    kind=_kind(manifest["kind"]),
                    created_at=datetime.fromisoformat(manifest["created_at"]),
                    alembic_revision=manifest.get("alembic_revision"),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable manifest is not a backup to count on
    return sorted(backups, key=lambda backup: (backup.created_at, sequence(backup.path.name)))


def sequence(name: str) -> int:
    """The `-n` of a name (0 without one): backups made within one second are ordered by it."""
    match = NAME_RE.match(name)
    return int(match["seq"]) if match and match["seq"] else 0
