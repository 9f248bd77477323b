"""Async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import CompoundSelect, Select, TextClause, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.expression import SavepointClause

from app.config import Settings
from app.kit.metrics import DB_CONNECTIONS_IN_USE, DB_CONNECTIONS_LIMIT

# Below the usual idle timeouts of servers, proxies and firewalls (minutes), above a busy pool's turnover.
PING_AFTER_IDLE_SECONDS = 30


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine with pooling suited to the database kind. Its errors never carry the statement's parameters
    (customers' names, ids, tokens), which would otherwise land in every logged traceback."""
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url,
            echo=settings.db_echo,
            hide_parameters=True,
            connect_args={"timeout": 30},
        )
        _tune_sqlite(engine)
        _count_connections(engine)
        return engine
    engine = create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=1800,
    )
    DB_CONNECTIONS_LIMIT.set(settings.db_pool_size + settings.db_max_overflow)
    _begin_at_the_first_write(engine)
    _ping_after_idle(engine)
    _count_connections(engine)
    return engine


def _begin_at_the_first_write(engine: AsyncEngine) -> None:
    """PostgreSQL: a transaction begins at the first statement that writes or locks, as on SQLite (whose driver
    does that itself); the plain reads before it run on their own. A page that only reads then costs its queries
    and nothing else: no BEGIN and COMMIT round trips (with the former pre-ping's, five of a cabinet page's seven).

    Nothing is lost by it: under READ COMMITTED (the default, and the only level used here) every statement of a
    transaction sees its own snapshot anyway, so reads before the first write see what they would have seen inside
    it; what needs a lock asks for it (FOR UPDATE), and a locking read begins the transaction. From the first write
    on, everything up to COMMIT (or the rollback) is one transaction. A connection set to AUTOCOMMIT on purpose
    (execution_options) stays so: the driver adapter's `autocommit = False` restores the level SQLAlchemy set."""

    @event.listens_for(engine.sync_engine, "connect")
    def _reads_outside_a_transaction(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.autocommit = True

    @event.listens_for(engine.sync_engine, "checkin")
    def _again_for_the_next_checkout(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:  # None when the connection was invalidated
            dbapi_connection.autocommit = True

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _begin_before_a_write(
        connection: Any, _cursor: Any, _statement: str, _parameters: Any, context: Any, _executemany: bool
    ) -> None:
        if not _only_reads(context):
            connection.connection.dbapi_connection.autocommit = False


def _only_reads(context: Any) -> bool:
    """A SELECT that locks nothing (ORM or Core; a textual one when it begins with SELECT) and reads no server-side
    cursor (stream_results, yield_per: PostgreSQL keeps a cursor only inside a transaction)."""
    if context.execution_options.get("stream_results", False):
        return False
    statement = getattr(context.compiled, "statement", None)
    if isinstance(statement, Select | CompoundSelect):
        return statement._for_update_arg is None
    if isinstance(statement, TextClause):
        return statement.text.lstrip()[:6].upper() == "SELECT"
    return False


def _ping_after_idle(engine: AsyncEngine) -> None:
    """A connection that sat idle in the pool for PING_AFTER_IDLE_SECONDS is checked (one round trip) before it is
    handed out, and replaced if the server or a proxy dropped it meanwhile; a busy connection is not pinged, since
    pinging at every checkout (pool_pre_ping) cost a round trip per request. A connection broken while in use
    (the server restarted) fails its request once; SQLAlchemy then discards the whole pool's connections."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_since(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # any failure of the ping means: not this connection
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


def _count_connections(engine: AsyncEngine) -> None:
    """Connections in use, for the dashboard's pool panel: a pool that stays full makes requests wait."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(*_args: Any) -> None:
        DB_CONNECTIONS_IN_USE.inc()

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(*_args: Any) -> None:
        DB_CONNECTIONS_IN_USE.dec()


def _tune_sqlite(engine: AsyncEngine) -> None:
    # WAL lets the demo's web requests read while in-process jobs write; foreign keys are off by default.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # SQLite's own lower() knows only ASCII; customers' names are often Cyrillic (PostgreSQL's knows all).
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _take_the_write_lock_for_a_locking_read(
        connection: Any, cursor: Any, _statement: str, _parameters: Any, context: Any, _executemany: bool
    ) -> None:
        # SQLite drops FOR UPDATE from the SQL, and its driver opens a transaction only at the first write, so a
        # locking read would lock nothing: two requests could read the same row, both decide, both write (a lost
        # update, a second grant). Opening the transaction with BEGIN IMMEDIATE takes SQLite's one write lock at
        # that read, which is what FOR UPDATE asks for (for the whole database rather than a row); the other
        # transaction waits for it (busy_timeout). Plain reads keep opening no transaction.
        # A SAVEPOINT outside a transaction would open a deferred one, and the locking read after it would then take
        # only a read snapshot: a write committed elsewhere meanwhile makes this transaction's first write fail at
        # once ("database is locked", no waiting). Savepoints here always wrap writes, so they take the lock too.
        statement = getattr(getattr(context, "compiled", None), "statement", None)
        locking = getattr(statement, "_for_update_arg", None) is not None or isinstance(statement, SavepointClause)
        if locking and not connection.connection.driver_connection.in_transaction:
            cursor.execute("BEGIN IMMEDIATE")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends, rolls back on error (jobs and CLI use this)."""
    async with sessionmaker() as session, session.begin():
        yield session


@asynccontextmanager
async def standalone_transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A unit of work for one-off commands (CLI, demo preparation): its own engine, disposed afterwards."""
    engine = create_engine(settings)
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()


def insert_for(session: AsyncSession, table: Any) -> Any:
    """`INSERT` with `.on_conflict_do_nothing/do_update` in the session's dialect (both databases speak it)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
