"""Placement: lowest accounts/(capacity × weight) among enabled servers with room, in a location if asked."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Server
from app.panels.placement import NoServerAvailable, choose_server
from tests.factories import add_account, add_server, add_subscriber


async def fill(db: AsyncSession, server: Server, count: int, first_telegram_id: int) -> None:
    for n in range(count):
        _, subscription = await add_subscriber(db, first_telegram_id + n)
        await add_account(db, server, subscription)


async def test_least_loaded_relative_to_capacity_and_weight(db: AsyncSession) -> None:
    small = await add_server(db, "small", capacity=10)
    big = await add_server(db, "big", capacity=100)
    await fill(db, small, 2, 100)  # 20 % full
    await fill(db, big, 10, 200)  # 10 % full
    assert (await choose_server(db)).id == big.id
    # Weight 3 makes the small server's load count as a third: 2 / (10 × 3) < 10 / 100.
    small.weight = 3
    await db.flush()
    assert (await choose_server(db)).id == small.id


async def test_full_and_disabled_servers_are_never_chosen(db: AsyncSession) -> None:
    full = await add_server(db, "full", capacity=1)
    await add_server(db, "off", is_enabled=False)  # empty, so it would win if it counted
    busy = await add_server(db, "busy", capacity=100)
    await fill(db, full, 1, 100)
    await fill(db, busy, 50, 200)
    assert (await choose_server(db)).id == busy.id


async def test_location_is_respected_and_no_room_is_a_clear_error(db: AsyncSession) -> None:
    await add_server(db, "nl-1", location="nl")
    de = await add_server(db, "de-1", location="de", capacity=1)
    assert (await choose_server(db, "de")).id == de.id
    await fill(db, de, 1, 100)
    with pytest.raises(NoServerAvailable, match="No server in de has room"):
        await choose_server(db, "de")
    with pytest.raises(NoServerAvailable):
        await choose_server(db, "fi")
