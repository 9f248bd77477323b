"""The database layer: what the rest of the code may assume of both backends."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import db as app_db
from app.db import create_engine, create_sessionmaker
from app.models import Subscription
from tests.conftest import make_settings
from tests.factories import add_subscriber


async def test_a_locking_read_makes_the_next_locking_read_wait(engine: AsyncEngine, db: AsyncSession) -> None:
    """Read-decide-write under `with_for_update` must not lose an update on either backend. On SQLite, FOR UPDATE
    is dropped from the SQL and the driver opens its transaction only at the first write, so without our
    BEGIN IMMEDIATE both transactions read the same count and one increment is lost."""
    _, subscription = await add_subscriber(db, 4242)
    await db.commit()
    sessionmaker = create_sessionmaker(engine)
    first_has_read = asyncio.Event()

    async def add_one(wait_for_first: bool) -> None:
        if wait_for_first:
            await first_has_read.wait()
        async with sessionmaker() as session, session.begin():
            # Both spellings of a locking read: session.get(..., with_for_update=True) and select().with_for_update().
            if wait_for_first:
                locked = await session.scalar(select(Subscription).with_for_update())
            else:
                locked = await session.get_one(Subscription, subscription.id, with_for_update=True)
            failures = locked.renewal_failures
            if not wait_for_first:
                first_has_read.set()
                # Give the other transaction every chance to read the same count before this one writes.
                await asyncio.sleep(0.3)
            locked.renewal_failures = failures + 1

    await asyncio.gather(add_one(False), add_one(True))
    async with sessionmaker() as session:
        assert await session.scalar(select(Subscription.renewal_failures)) == 2


async def test_a_locking_read_inside_a_savepoint_holds_the_write_lock(engine: AsyncEngine, db: AsyncSession) -> None:
    """A staff form saves inside a savepoint: SAVEPOINT opened outside a transaction starts a deferred one on
    SQLite, so the locking read that follows took only a read snapshot; a write committed by another connection
    meanwhile then made this transaction's write fail at once with "database is locked" (seen in CI on the promo
    editor). The other writer must wait instead, and both writes land."""
    _, subscription = await add_subscriber(db, 4343)
    await db.commit()
    sessionmaker = create_sessionmaker(engine)

    async def other_writer() -> None:
        async with sessionmaker() as session, session.begin():
            await session.execute(update(Subscription).values(renewal_failures=Subscription.renewal_failures + 10))

    async with sessionmaker() as session:
        async with session.begin_nested():
            locked = await session.get_one(Subscription, subscription.id, with_for_update=True)
            failures = locked.renewal_failures
            writer = asyncio.create_task(other_writer())
            # Without the lock the other transaction commits here, before this one writes.
            await asyncio.wait([writer], timeout=1.0)
            locked.renewal_failures = failures + 1
        await session.commit()
    await writer
    async with sessionmaker() as session:
        assert await session.scalar(select(Subscription.renewal_failures)) == 11


async def _in_a_transaction(session: AsyncSession) -> bool:
    """Whether the session's connection is inside a transaction right now, as the database sees it."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if connection.dialect.name == "sqlite":
        return bool(driver.in_transaction)
    async with connection.engine.connect() as other:  # PostgreSQL's own view of that connection, from another
        query = text("SELECT state FROM pg_stat_activity WHERE pid = :pid")
        return await other.scalar(query, {"pid": driver.get_server_pid()}) == "idle in transaction"


async def test_reads_open_no_transaction_and_the_first_write_begins_one(engine: AsyncEngine, db: AsyncSession) -> None:
    """Both backends: a request that only reads costs its queries (no BEGIN and COMMIT round trips on PostgreSQL);
    the first write begins the transaction, and everything from it to the rollback is undone together."""
    _, subscription = await add_subscriber(db, 4444)
    await db.commit()
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        await session.scalar(select(Subscription.id))
        assert not await _in_a_transaction(session)
        await session.execute(update(Subscription).values(renewal_failures=5))
        assert await _in_a_transaction(session)
        assert await session.scalar(select(Subscription.renewal_failures)) == 5  # its own write, inside it
        await session.execute(update(Subscription).values(auto_renew=not subscription.auto_renew))
        await session.rollback()
    async with sessionmaker() as session:
        row = (await session.execute(select(Subscription.renewal_failures, Subscription.auto_renew))).one()
        assert tuple(row) == (0, subscription.auto_renew)
        await session.get_one(Subscription, subscription.id, with_for_update=True)
        assert await _in_a_transaction(session)  # a locking read begins it (the lock lasts until the end)
    async with sessionmaker() as session:  # so does a streamed read: PostgreSQL keeps a cursor only in a transaction
        assert [id_ async for id_ in await session.stream_scalars(select(Subscription.id))] == [subscription.id]


async def test_a_connection_dropped_while_idle_is_replaced_before_use(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a pooled connection idle for longer than PING_AFTER_IDLE_SECONDS is pinged at checkout and
    replaced when the server dropped it (restart, idle timeout); a recently used one is not pinged, and would fail."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    engine = create_engine(make_settings(database_url, db_pool_size=1, db_max_overflow=0))
    sessionmaker = create_sessionmaker(engine)

    async def drop_the_pooled_connection() -> None:
        async with sessionmaker() as session:
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
        killer = create_engine(make_settings(database_url))
        async with killer.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await killer.dispose()

    try:
        monkeypatch.setattr(app_db, "PING_AFTER_IDLE_SECONDS", 3600)
        await drop_the_pooled_connection()
        with pytest.raises(DBAPIError):
            async with sessionmaker() as session:
                await session.scalar(text("SELECT 1"))
        monkeypatch.setattr(app_db, "PING_AFTER_IDLE_SECONDS", 0)
        await drop_the_pooled_connection()
        async with sessionmaker() as session:
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
