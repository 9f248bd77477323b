"""Async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.expression import SavepointClause

from app.config import Settings
from app.kit.metrics import DB_CONNECTIONS_IN_USE, DB_CONNECTIONS_LIMIT


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
        pool_pre_ping=True,
        pool_recycle=1800,
    )
    DB_CONNECTIONS_LIMIT.set(settings.db_pool_size + settings.db_max_overflow)
    _count_connections(engine)
    return engine


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
