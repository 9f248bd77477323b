"""PostgreSQL through its own client tools: pg_dump's custom format to back up, pg_restore to verify and restore.

The tools speak libpq, not SQLAlchemy: the URL loses its "+asyncpg" and its password, which goes in PGPASSWORD
so it never shows in a process list.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.backups.files import BackupError

# asyncpg spells libpq's `sslmode` as `ssl`.
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
_STDERR_LIMIT = 2000
MAINTENANCE_DATABASE = "postgres"
# Written by `vpnshop migrate` into an otherwise empty database; its row does not make a database "in use".
_BOOKKEEPING_TABLES = {("public", "alembic_version")}


@dataclass(frozen=True)
class LibpqTarget:
    """A database as the PostgreSQL client tools address it."""

    url: str  # libpq URI without the password
    password: str | None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        # An unreachable host fails within seconds instead of hanging the job.
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env


def libpq_target(database_url: str) -> LibpqTarget:
    """The libpq URI (no password) and the password of a SQLAlchemy PostgreSQL URL."""
    url = make_url(database_url)
    query = dict(url.query)
    ssl = query.pop("ssl", None)
    if isinstance(ssl, str) and ssl in _SSL_MODES and "sslmode" not in query:
        query["sslmode"] = ssl
    libpq = url.set(drivername="postgresql", password=None, query=query)
    return LibpqTarget(libpq.render_as_string(hide_password=False), url.password)


def shown(database_url: str) -> str:
    """A URL safe to print: the password masked."""
    return make_url(database_url).render_as_string(hide_password=True)


async def run_tool(program: str, *args: str, env: dict[str, str]) -> str:
    """Run a PostgreSQL client tool; its stdout, or BackupError with its stderr."""
    try:
        process = await asyncio.create_subprocess_exec(
            program,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except FileNotFoundError:
        raise BackupError(
            f"{program} not found: install the PostgreSQL client tools (Debian: postgresql-client) "
            "of the server's major version or newer"
        ) from None
    try:
        stdout, stderr = await process.communicate()
    except asyncio.CancelledError:
        # A job timeout must not leave pg_dump running on its own.
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        message = stderr.decode(errors="replace").strip()[-_STDERR_LIMIT:] or "no error output"
        raise BackupError(f"{program} failed (exit {process.returncode}): {message}")
    return stdout.decode(errors="replace")


async def dump(database_url: str, into: Path) -> None:
    """pg_dump the database into `into`, in the custom format (compressed, restorable table by table)."""
    target = libpq_target(database_url)
    await run_tool(
        "pg_dump", "--format=custom", "--no-password", f"--file={into}", f"--dbname={target.url}", env=target.env()
    )


async def check_archive(path: Path) -> None:
    """Read the archive's table of contents: a truncated or foreign file fails here."""
    await run_tool("pg_restore", "--list", str(path), env=dict(os.environ))


async def restore(path: Path, database_url: str) -> None:
    """Replace the database's objects with the archive's, in one transaction: on any error nothing changes."""
    target = libpq_target(database_url)
    await run_tool(
        "pg_restore",
        "--clean",
        "--if-exists",
        "--no-owner",
        # Grants name roles the target server may not have; the app connects as the database's owner.
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
        f"--dbname={target.url}",
        str(path),
        env=target.env(),
    )


@asynccontextmanager
async def _connect(url: URL | str, *, autocommit: bool = False) -> AsyncIterator[AsyncConnection]:
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_async_engine(url, **options)
    try:
        async with engine.connect() as connection:
            yield connection
    except (DBAPIError, OSError) as exc:
        shown_url = url.render_as_string(hide_password=True) if isinstance(url, URL) else shown(url)
        raise BackupError(f"cannot use {shown_url}: {exc}") from None
    finally:
        await engine.dispose()


async def archive_revision(path: Path) -> str | None:
    """The Alembic revision recorded in an archive (None before the first migration), read from the archive
    itself so it is the one the dump holds."""
    script = await run_tool(
        "pg_restore", "--data-only", "--table=alembic_version", "--file=-", str(path), env=dict(os.environ)
    )
    lines = script.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and index + 1 < len(lines):
            value = lines[index + 1].strip()
            return None if value == "\\." else value
    return None


def _maintenance_url(database_url: str) -> URL:
    return make_url(database_url).set(database=MAINTENANCE_DATABASE)


async def database_exists(database_url: str) -> bool:
    name = make_url(database_url).database
    async with _connect(_maintenance_url(database_url)) as connection:
        found = await connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
    return found is not None


async def create_database(database_url: str) -> None:
    name = make_url(database_url).database or ""
    if not name:
        raise BackupError("the target URL names no database")
    quoted = '"' + name.replace('"', '""') + '"'
    async with _connect(_maintenance_url(database_url), autocommit=True) as connection:
        await connection.execute(text(f"CREATE DATABASE {quoted}"))


async def tables_with_rows(database_url: str) -> list[str]:
    """Tables of the database that hold at least one row (Alembic's own bookkeeping left out)."""
    async with _connect(database_url) as connection:
        tables = (
            await connection.execute(
                text(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' "
                    "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
                )
            )
        ).all()
        filled = []
        for schema, table in tables:
            if (schema, table) in _BOOKKEEPING_TABLES:
                continue
            quoted = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))
            if await connection.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {quoted})")):
                filled.append(table if schema == "public" else f"{schema}.{table}")
        return filled
