"""`vpnshop backup` and `vpnshop restore`: through click's runner for every exit path, and as real commands."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import main
from app.config import Settings
from tests.backups.data import PgDatabases, fill, new_sqlite, snapshot
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET
from tests.demo_process import VPNSHOP, clean_env

Build = Callable[..., Settings]


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a developer's .env must not change what the commands see


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "BACKUP_COPY_DIR": "",
        "SECRET_KEY": TEST_SECRET,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "DEMO_MODE": "false",
        **extra,
    }


async def _invoke(args: list[str], env: dict[str, str]) -> Result:
    # The commands run their own event loop, so they run in a thread of their own here.
    return await asyncio.to_thread(CliRunner().invoke, main, args, env=env)


async def test_backup_prints_the_file_and_its_size(tmp_path: Path) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")

    result = await _invoke(["backup"], _env(source, tmp_path, BACKUP_COPY_DIR=str(tmp_path / "copy")))

    assert result.exit_code == 0, result.output
    [made] = (tmp_path / "backups").glob("vpnshop-*.sqlite3")
    assert result.stdout.startswith(f"backup written: {made} (")
    assert " KB, sha256 " in result.stdout
    assert f"copied to: {tmp_path / 'copy' / made.name}" in result.stdout
    assert (tmp_path / "copy" / made.name).read_bytes() == made.read_bytes()


async def test_restore_refuses_a_target_with_data_with_exit_code_2_and_force_replaces_it(tmp_path: Path) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")
    await fill(source, users=1)
    env = _env(source, tmp_path)
    assert (await _invoke(["backup"], env)).exit_code == 0
    [made] = (tmp_path / "backups").glob("vpnshop-*.sqlite3")
    target = await new_sqlite(tmp_path / "other.sqlite3")
    await fill(target, users=2)
    before = await snapshot(target)

    refused = await _invoke(["restore", str(made), "--database", target], env)

    assert refused.exit_code == 2
    assert refused.stderr.startswith("restore refused: ")
    assert "pass --force" in refused.stderr
    assert await snapshot(target) == before

    forced = await _invoke(["restore", str(made), "--database", target, "--force"], env)
    assert forced.exit_code == 0, forced.output
    assert f"restored {made.name}" in forced.stdout
    assert await snapshot(target) == await snapshot(source)


async def test_restore_defaults_to_database_url(tmp_path: Path) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")
    await fill(source, users=1)
    assert (await _invoke(["backup"], _env(source, tmp_path))).exit_code == 0
    [made] = (tmp_path / "backups").glob("vpnshop-*.sqlite3")
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"

    result = await _invoke(["restore", str(made)], _env(fresh, tmp_path))

    assert result.exit_code == 0, result.output
    assert await snapshot(fresh) == await snapshot(source)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["restore", "missing.sqlite3"], "restore refused: backup file not found: missing.sqlite3"),
        (["restore", "{backup}", "--database", "mysql://x@y/z"], "restore refused: expected a database URL"),
        (["restore", "{backup}", "--database", "postgresql://u@127.0.0.1/x"], "is a sqlite backup; it cannot"),
    ],
    ids=["missing file", "unknown database URL", "wrong kind"],
)
async def test_bad_input_exits_with_2_and_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")
    env = _env(source, tmp_path)
    assert (await _invoke(["backup"], env)).exit_code == 0
    [made] = (tmp_path / "backups").glob("vpnshop-*.sqlite3")

    result = await _invoke([arg.format(backup=made) for arg in args], env)

    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


async def test_missing_configuration_exits_with_2(tmp_path: Path) -> None:
    source = await new_sqlite(tmp_path / "live.sqlite3")
    result = await _invoke(["backup"], _env(source, tmp_path, SECRET_KEY="short"))
    assert result.exit_code == 2
    assert "SECRET_KEY" in result.stderr
    assert not (tmp_path / "backups").exists()


async def test_a_failing_backup_exits_with_1(pg: PgDatabases, tmp_path: Path) -> None:
    missing = pg.url_of(pg.name())  # named, never created
    result = await _invoke(["backup"], _env(missing, tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith("backup failed: pg_dump failed (exit 1): ")
    assert "does not exist" in result.stderr


async def test_the_real_commands_back_up_and_restore_postgresql(pg: PgDatabases, tmp_path: Path) -> None:
    source = await pg.create()
    await fill(source)
    target = pg.url_of(pg.name())
    # The commands take the plain URLs an operator writes.
    env = clean_env(**_env(source.replace("+asyncpg", ""), tmp_path))

    backup = await asyncio.to_thread(
        subprocess.run, [VPNSHOP, "backup"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert backup.returncode == 0, backup.stderr
    [made] = (tmp_path / "backups").glob("vpnshop-*.dump")
    assert str(made) in backup.stdout

    restore = await asyncio.to_thread(
        subprocess.run,
        [VPNSHOP, "restore", str(made), "--database", target.replace("+asyncpg", "")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert restore.returncode == 0, restore.stderr
    assert await snapshot(target) == await snapshot(source)
