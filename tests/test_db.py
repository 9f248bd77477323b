"""The database layer: what the rest of the code may assume of both backends."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import create_sessionmaker
from app.models import Subscription
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
